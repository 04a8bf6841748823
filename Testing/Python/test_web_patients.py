"""The browser app opens one patient per session: a DICOM volume of another patient, given
on the command line or with the page's Load button, is refused with nothing loaded; the
server's ``--allow-other-patient`` lets it through with a warning on the page, and Save's
``report.json`` records the check (``patient_identity``).

The session's check (:class:`OneShotSAMWeb.patients.PatientGuard`) on a table of loads;
then the page in headless Chromium (a real server, real DICOM series written with
pydicom, uploaded through the page's file input)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from dicom_synth import write_ct_series
from oneshotsam.errors import OneShotError
from web_harness import (CHROMIUM, TINY, Server, free_port, launch_chromium, save, synthetic_volume,
                         wait_http)

pytest.importorskip("pydicom")

SHAPE_KJI = (6, 32, 32)


def _series(folder: Path, patient_id: str) -> Path:
    """A CT series of patient ``patient_id`` (a bright square in noise: not constant)."""
    vox = np.random.default_rng(0).normal(0, 20, SHAPE_KJI) + 100
    vox[:, 10:22, 10:22] += 500
    write_ct_series(folder, vox.astype(np.int16), np.diag([1.0, 1.0, 2.0, 1.0]),
                    patient=f"PATIENT^{patient_id}", patient_id=patient_id)
    return folder


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> dict[str, Path]:
    """Two series of patient A (reference and follow-up), one of patient B, one NRRD."""
    root = tmp_path_factory.mktemp("patients")
    nrrd = root / "atlas.nrrd"
    synthetic_volume(nrrd, (6, 16, 16))
    return {"A": _series(root / "a_plan", "A"), "A2": _series(root / "a_followup", "A"),
            "B": _series(root / "b", "B"), "nrrd": nrrd}


def _files(folder: Path) -> list[str]:
    return sorted(str(f) for f in folder.iterdir())


#: loads in order: (source "cli" | "page", inputs), the last one refused?,
#: and after the loads that passed: (patient_id, number of mismatches)
CASES = [
    ([("cli", ["A"]), ("page", ["A2"])], False, ("A", 0)),
    ([("cli", ["A"]), ("page", ["B"])], True, ("A", 0)),
    ([("cli", ["A", "A2"]), ("page", ["nrrd"])], False, ("A", 0)),
    ([("cli", ["nrrd"]), ("page", ["A"]), ("page", ["B"])], True, ("A", 0)),
    ([("page", ["A", "B"])], True, (None, 0)),                     # one upload, two patients
    ([("page", ["B"]), ("cli", ["A"])], True, ("B", 0)),
]


def _paths(series: dict[str, Path], names: list[str], source: str) -> list[str]:
    if source == "cli":
        return [str(series[n]) for n in names]
    return [f for n in names for f in (_files(series[n]) if series[n].is_dir() else [str(series[n])])]


@pytest.mark.parametrize("loads, refused, after", CASES)
def test_session_check_of_every_load(series, loads, refused, after):
    from OneShotSAMWeb.patients import PatientGuard

    guard = PatientGuard()
    for i, (source, names) in enumerate(loads):
        paths = _paths(series, names, source)
        if refused and i == len(loads) - 1:
            n_before = len(guard.inputs)
            with pytest.raises(OneShotError, match="is not the patient of .*nothing was loaded.*"
                                                   "--allow-other-patient"):
                guard.admit(paths, from_page=source == "page")
            assert len(guard.inputs) == n_before  # the refused load is not recorded
        else:
            assert guard.admit(paths, from_page=source == "page") == ""
    rec = guard.record()
    assert (rec["patient_id"], len(rec["mismatches"])) == after
    assert rec["allow_other_patient"] is False and rec["override_used"] is False


def test_allow_other_patient_loads_with_a_warning_that_stays(series):
    from OneShotSAMWeb.patients import PatientGuard

    guard = PatientGuard(allow_other_patient=True)
    assert guard.admit([str(series["A"])], from_page=False) == ""
    warning = guard.admit(_files(series["B"]), from_page=True)
    assert warning.startswith("WARNING (--allow-other-patient)") and "'A' vs 'B'" in warning
    assert guard.admit(_files(series["A2"]), from_page=True) == warning  # still shown
    rec = guard.record()
    assert rec["override_used"] is True and rec["allow_other_patient"] is True
    assert [(e["what"], e["identity"]["PatientID"]) for e in rec["inputs"]] == [
        ("reference volume", "A"), ("file opened on the page (load 1)", "B"),
        ("file opened on the page (load 2)", "A")]
    assert rec["inputs"][1]["path"].endswith(f"(+{SHAPE_KJI[0] - 1} more files)")


# ---------------------------------------------------------------- the page
def _browser_ready() -> None:
    pytest.importorskip("trame_slicer")
    pytest.importorskip("slicer_layer_dm")
    pytest.importorskip("playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")


@contextmanager
def _upload(srv: Server, files: list[str], wait_for: str) -> Iterator[Any]:
    """Open the page, give ``files`` to its Load button, wait until ``wait_for`` (JS) holds."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        try:
            page = b.new_page(viewport={"width": 1600, "height": 900})
            page.goto(srv.url)
            page.wait_for_selector("input[type=file]", state="attached", timeout=120000)
            page.locator("input[type=file]").first.set_input_files(files)
            page.wait_for_function(wait_for, timeout=120000)
            yield page
        finally:
            b.close()


@pytest.mark.parametrize("allow", [False, True])
def test_page_load_of_another_patient(tmp_path, series, allow):
    _browser_ready()
    out = tmp_path / "out"
    srv = Server([str(series["A"]), "--port", str(free_port()), "--output-dir", str(out), "--device", "cpu",
                  *TINY, *(["--allow-other-patient"] if allow else [])], tmp_path / "server.log")
    try:
        wait_http(srv.url)
        done = ("() => document.querySelector('#osam-message').innerText.startsWith('loaded ')"
                " || document.querySelector('#osam-error').innerText.length > 0")
        with _upload(srv, _files(series["B"]), done) as page:
            if not allow:  # refused: the page says why, nothing of patient B is loaded
                err = page.inner_text("#osam-error")
                assert "is not the patient of the reference volume" in err and "'A' vs 'B'" in err, err
                assert "--allow-other-patient" in err and "nothing was loaded" in err, err
                assert page.inner_text("#osam-message").startswith("loaded 0 of")
                assert not page.locator("#osam-patient-warning").is_visible()
                save(page, 1)  # the first patient's volume is still open (the scene was not cleared)
                rec = json.loads((out / "report.json").read_text(encoding="utf-8"))["patient_identity"]
                assert rec["override_used"] is False and rec["mismatches"] == []
                assert [e["identity"]["PatientID"] for e in rec["inputs"]] == ["A"]
                return
            msg = page.inner_text("#osam-message")
            assert msg.startswith("loaded 1 of"), msg
            assert not page.locator("#osam-error").is_visible()
            warning = page.inner_text("#osam-patient-warning")
            assert warning.startswith("WARNING (--allow-other-patient)") and "'A' vs 'B'" in warning, warning
            save(page, 1)
        rec = json.loads((out / "report.json").read_text(encoding="utf-8"))["patient_identity"]
        assert rec["allow_other_patient"] is True and rec["override_used"] is True
        assert [e["identity"]["PatientID"] for e in rec["inputs"]] == ["A", "B"]
        assert len(rec["mismatches"]) == 1 and "'A' vs 'B'" in rec["mismatches"][0]
    finally:
        srv.stop()
