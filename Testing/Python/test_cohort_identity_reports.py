"""``oneshotsam cohort``: every target's own ``<visit>.report.json`` records the patient
check of its inputs (reference series, its RTSTRUCT, the target), and whether
``--allow-other-patient`` let another patient's images through -- not only summary.json.

In-process runs (``--workers 1``) on real DICOM series and an RTSTRUCT written by the
engine (``test_dicom_rt_cli.planning``), tiny dense warp schedule."""

from __future__ import annotations

import json

import pytest

from dicom_synth import copy_series
from oneshotsam.cli import main
from test_dicom_rt_cli import TINY_DENSE, planning  # noqa: F401

pydicom = pytest.importorskip("pydicom")


def _series_of(case, visit: str, patient_id: str) -> str:
    """The planning case's follow-up images as ``<root>/<visit>``, of patient ``patient_id``."""
    folder = copy_series(case["root"] / "followup", case["root"] / visit)
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.PatientID, ds.PatientName = patient_id, f"PATIENT^{patient_id}"
        ds.save_as(f)
    return str(folder)


def _cohort(case, targets: list[tuple[str, str]], allow: bool) -> dict[str, dict]:
    """Run a one-patient cohort (plan + ``targets``: (visit, folder)); each visit's report."""
    r = case["root"]
    manifest = r / "cohort.csv"
    manifest.write_text("patient,visit,image,labels\n" f"RT1,plan,{r / 'plan'},{case['rs']}\n"
                        + "".join(f"RT1,{visit},{folder},\n" for visit, folder in targets), encoding="utf-8")
    out = r / "cohort"
    assert main(["cohort", str(manifest), "--output-dir", str(out), "--workers", "1", "--quiet",
                 "--window=-1000,500", "--device", "cpu", "--roi", "Liver", *TINY_DENSE]
                + (["--allow-other-patient"] if allow else [])) == 0
    return {visit: json.loads((out / "RT1" / f"{visit}.report.json").read_text(encoding="utf-8"))
            for visit, _ in targets}


#: (targets: visit -> PatientID of its series ("RT1" = the planning patient), --allow-other-patient,
#:  expected per visit: (override_used, number of mismatches))
CASES = [
    ({"followup": "RT1"}, False, {"followup": (False, 0)}),
    ({"followup": "RT1"}, True, {"followup": (False, 0)}),
    ({"followup": "RT1", "stranger": "RT7"}, True, {"followup": (False, 0), "stranger": (True, 1)}),
]


@pytest.mark.parametrize("ids, allow, expected", CASES)
def test_each_target_report_records_its_patient_check(planning, ids, allow, expected):  # noqa: F811
    targets = [(visit, str(planning["root"] / visit) if visit == "followup"
                else _series_of(planning, visit, pid)) for visit, pid in ids.items()]
    reports = _cohort(planning, targets, allow)
    for visit, (used, n_mismatches) in expected.items():
        rec = reports[visit]["patient_identity"]
        assert rec["allow_other_patient"] is allow, visit
        assert rec["override_used"] is used, visit
        assert rec["patient_id"] == "RT1", visit
        assert len(rec["mismatches"]) == n_mismatches, (visit, rec["mismatches"])
        whats = [e["what"] for e in rec["inputs"]]
        assert whats == ["reference image (row 2)", "reference labels (row 2)",
                         f"target (row {3 + list(ids).index(visit)})"], whats
        assert rec["inputs"][2]["identity"]["PatientID"] == ids[visit], visit
        if used:
            assert "'RT1' vs 'RT7'" in rec["mismatches"][0], rec["mismatches"]
