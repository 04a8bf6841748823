"""``oneshotsam cohort`` keeps data safe without Ray: resume does not depend on the folder
the command runs from, one run per output folder (a lock naming the first run), no patient
named like the summary, ground-truth grids checked before any work, and every file the
summary names exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cohort_synth import make_cohort
from cohort_synth import run_cohort as _cohort


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def test_resume_does_not_depend_on_the_folder_the_command_runs_from(tmp_path: Path, monkeypatch) -> None:
    m = make_cohort(tmp_path / "data", n_patients=1, n_targets=1)
    first, other = tmp_path / "here", tmp_path / "elsewhere" / "deeper"
    first.mkdir()
    other.mkdir(parents=True)
    monkeypatch.chdir(first)
    assert _cohort(m, Path("out"), "--workers", "1") == 0  # a relative --output-dir
    out = first / "out"
    written = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "summary" not in p.name}
    monkeypatch.chdir(other)
    for given in (Path("../../here/out"), out):  # the same folder named from elsewhere
        assert _cohort(m, given, "--workers", "1") == 0
        summ = _summary(out)
        assert [t["status"] for t in summ["targets"]] == ["up-to-date"]
        t = summ["targets"][0]
        for k in ("labels", "segmentation", "report"):
            assert Path(t[k]).is_absolute() and Path(t[k]).is_file(), (k, t[k])
        assert summ["output_dir"] == str(out)
    assert {p: p.stat().st_mtime_ns for p in written} == written  # nothing recomputed


_HOLDER = """
import sys
from oneshotsam.cohort.lock import OutputLock
lock = OutputLock(sys.argv[1], ["cohort", "first.csv", "--output-dir", sys.argv[1]]).acquire()
print("held", flush=True)
sys.stdin.read()  # hold until the test closes stdin
lock.release()
"""


def test_second_run_into_a_locked_folder_is_refused_naming_the_first(tmp_path: Path, capsys) -> None:
    m = make_cohort(tmp_path / "data", n_patients=1, n_targets=1)
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, encoding="utf-8")
    try:
        assert first.stdout.readline().strip() == "held"
        assert _cohort(m, out, "--workers", "1") == 2
        err = capsys.readouterr().err
        assert f"{out} is in use by another cohort run (pid {first.pid} on host" in err
        assert "oneshotsam cohort first.csv --output-dir" in err and "nothing was run" in err
        assert sorted(p.name for p in out.iterdir()) == [".cohort.lock"]  # nothing else written
    finally:
        first.stdin.close()
        first.wait(30)
    assert not (out / ".cohort.lock").exists()  # the first run released it
    assert _cohort(m, out, "--workers", "1") == 0
    assert not (out / ".cohort.lock").exists()  # and so did this one


def test_lock_of_a_run_that_is_gone_is_taken_over(tmp_path: Path) -> None:
    m = make_cohort(tmp_path / "data", n_patients=1, n_targets=1)
    out = tmp_path / "out"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, encoding="utf-8", check=True)
    out.mkdir()
    import socket

    (out / ".cohort.lock").write_text(json.dumps({"pid": int(gone.stdout), "host": socket.gethostname(),
                                                  "argv": ["cohort", "killed.csv"], "id": "x"}),
                                      encoding="utf-8")
    assert _cohort(m, out, "--workers", "1") == 0
    assert not (out / ".cohort.lock").exists()


@pytest.mark.parametrize("name, message", [
    ("summary.csv", "row 4: patient 'summary.csv' would collide with the cohort's own OUT/summary.csv"),
    ("Summary.JSON", "row 4: patient 'Summary.JSON' would collide with the cohort's own OUT/summary.json"),
    ("p01", "row 4: patient 'p01' differs from patient 'P01' only in case"),
])
def test_patient_named_like_the_summary_or_another_patient_is_refused(
        tmp_path: Path, capsys, name: str, message: str) -> None:
    m = make_cohort(tmp_path / "data", n_patients=2, n_targets=1)
    text = m.read_text(encoding="utf-8").replace("P02,", f"{name},")  # rows 4 and 5
    m.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    assert _cohort(m, out, "--workers", "1") == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_ground_truth_of_another_size_is_refused_before_any_work(tmp_path: Path, capsys, monkeypatch) -> None:
    import SimpleITK as sitk

    import oneshotsam.cohort.patient as patient_mod

    m = make_cohort(tmp_path / "data", n_patients=2, n_targets=1)
    gt = tmp_path / "data" / "P02" / "fu1_gt.nii.gz"  # row 5
    sitk.WriteImage(sitk.Image([32, 30, 8], sitk.sitkUInt8), str(gt))
    calls = []
    monkeypatch.setattr(patient_mod, "run_patient", lambda *a, **k: calls.append(a))
    out = tmp_path / "out"
    assert _cohort(m, out, "--workers", "1") == 2
    err = capsys.readouterr().err
    assert "1 ground truth(s) not on their target's grid (nothing was run" in err
    assert f"patient P02 row 5: ground_truth {gt} has 32x30x8 voxels" in err and "32x32x8" in err
    assert not out.exists() and not calls


def _rec(tmp_path: Path, status: str, files: dict[str, str]) -> dict:
    return {"patient": "P", "visit": "v", "status": status, "error": "", "host": "node7", **files}


def test_summary_rows_whose_files_are_not_here_become_failed(tmp_path: Path) -> None:
    from oneshotsam.cohort.preflight import check_listed_files

    here = {k: tmp_path / f"v.{k}" for k in ("labels", "segmentation", "report")}
    for p in here.values():
        p.write_text("x", encoding="utf-8")
    full = {k: str(p) for k, p in here.items()}
    rel = os.path.relpath(here["labels"])
    cases = [  # (status, files) -> status after, error mentions
        ("done", full, "done", ""),
        ("up-to-date", full, "up-to-date", ""),
        ("done", dict(full, labels=str(tmp_path / "gone.nii.gz")), "failed", "gone.nii.gz"),
        ("done", dict(full, labels=rel), "failed", rel),  # relative: not where the caller looks
        ("failed", {"labels": "", "segmentation": "", "report": ""}, "failed", ""),
        ("not run", {}, "not run", ""),
    ]
    recs = [_rec(tmp_path, s, f) for s, f, _, _ in cases]
    assert check_listed_files(recs) == 2
    for rec, (_, _, after, mention) in zip(recs, cases):
        assert rec["status"] == after
        if after == "failed" and mention:
            assert mention in rec["error"] and "written by host node7 are not on this machine" in rec["error"]
            assert "same absolute path" in rec["error"]


def test_help_and_docs_say_how_to_start_and_join_a_head(capsys) -> None:
    from oneshotsam.cli import main

    with pytest.raises(SystemExit):
        main(["cohort", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "RAY_AUTH_TOKEN or ~/.ray/auth_token" in text and "private local Ray" in text
    doc = (Path(__file__).resolve().parents[2] / "docs" / "cohort.md").read_text(encoding="utf-8")
    for step in ("ray get-auth-token --generate", "ray start --head --port 6379",
                 "scp HEAD:~/.ray/auth_token ~/.ray/auth_token", "export RAY_AUTH_TOKEN=",
                 "--address HEAD:6379", 'ray.init(address="local")'):
        assert step in doc, step


def test_a_checkpoint_enters_the_keys_by_its_contents_not_by_how_its_path_is_written(
        tmp_path: Path, monkeypatch) -> None:
    from oneshotsam.cohort.execute import plan
    from oneshotsam.cohort.manifest import read_manifest
    from oneshotsam.volume.types import PropagationConfig

    patients = read_manifest(make_cohort(tmp_path / "data", n_patients=1, n_targets=1))
    ckpt = tmp_path / "weights" / "model.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"weights A")

    def planned(checkpoint: str) -> tuple[str, str]:
        jobs, _ = plan(patients, PropagationConfig(checkpoint=checkpoint), tmp_path / "out")
        return jobs[0].keys[0], jobs[0].config.checkpoint

    monkeypatch.chdir(ckpt.parent)
    key_rel, sent_rel = planned("model.pt")  # relative to the folder the command runs in
    monkeypatch.chdir(tmp_path)
    key_abs, sent_abs = planned(str(ckpt))
    assert key_rel == key_abs and sent_rel == sent_abs == str(ckpt)  # workers get the absolute path
    ckpt.write_bytes(b"weights B, retrained")  # same path, other contents
    assert planned(str(ckpt))[0] != key_abs
