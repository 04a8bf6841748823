"""``oneshotsam cohort`` without Ray: manifest checks with row numbers, the in-process
path (``--workers 1``, Ray not importable), Ctrl-C and resuming."""

from __future__ import annotations

import json
import sys
from pathlib import Path


from cohort_synth import make_cohort
from cohort_synth import run_cohort as _cohort


def _rows(manifest: Path) -> list[str]:
    return manifest.read_text().splitlines()


def test_bad_manifest_rows_reported_per_patient_before_anything_runs(tmp_path: Path, capsys) -> None:
    m = make_cohort(tmp_path / "data", n_patients=3, n_targets=1)
    lines = _rows(m)  # 1 header, P01 rows 2-3, P02 rows 4-5, P03 rows 6-7
    lines[3] = lines[3].replace("ref.nii.gz", "missing.nii.gz", 1)  # P02 reference image (row 4)
    lines[5] = lines[5].replace(",P03/ref_label.nii.gz,", ",,")  # P03 without a reference (row 6)
    lines.append("P01,again,P01/ref.nii.gz,P01/ref_label.nii.gz,")  # P01 second reference, row 8
    lines.append("P01,week1,P01/fu1.nii.gz,,")  # P01 duplicate visit, row 9
    bad = m.parent / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert _cohort(bad, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: bad manifest")
    line = err[0]
    assert "patient P02: row 4: image file not found" in line and "missing.nii.gz" in line
    assert "patient P03: rows 6, 7: no reference" in line
    assert "rows 2, 8: two or more references" in line
    assert "row 9: visit 'week1' already used on row 3" in line
    assert not out.exists()


def test_missing_column_and_unsafe_names(tmp_path: Path, capsys) -> None:
    m = tmp_path / "m.csv"
    m.write_text("patient,visit,image\nP1,a,x.nii.gz\n")
    assert _cohort(m, tmp_path / "o") == 2
    assert "row 1 (header) lacks the column(s) labels" in capsys.readouterr().err
    m2 = make_cohort(tmp_path / "data", n_patients=1, n_targets=1)
    lines = _rows(m2)
    lines[2] = lines[2].replace("week1", "../up", 1)
    m2.write_text("\n".join(lines) + "\n")
    assert _cohort(m2, tmp_path / "o") == 2
    assert "row 3: visit '../up' cannot be a file name" in capsys.readouterr().err


def test_workers_1_runs_in_process_without_ray_and_resumes_after_ctrl_c(
        tmp_path: Path, monkeypatch, capsys) -> None:
    import oneshotsam.cohort.patient as patient_mod

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    m = make_cohort(tmp_path / "data", n_patients=2, n_targets=1)
    out = tmp_path / "out"
    # Ray is needed for 2 workers: a clear error, nothing written
    assert _cohort(m, out, "--workers", "2") == 2
    assert "Ray is not installed" in capsys.readouterr().err

    real = patient_mod.run_target
    calls = []

    def interrupt_second(job, i, ref, ref_labels, progress=None):
        calls.append(job.patient)
        if len(calls) == 2:  # Ctrl-C while the second patient's target runs
            raise KeyboardInterrupt
        return real(job, i, ref, ref_labels, progress)

    monkeypatch.setattr(patient_mod, "run_target", interrupt_second)
    assert _cohort(m, out, "--workers", "1") == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    summ = json.loads((out / "summary.json").read_text())
    assert summ["interrupted"] is True and summ["mode"] == "in-process"
    assert [t["status"] for t in summ["targets"]] == ["done", "not run"]
    assert not [p for p in out.rglob(".*") if p.name != ".cohort-digests.json"]  # no staging / temp files
    first = {p.name: p.stat().st_ino for p in (out / "P01").iterdir()}
    assert sorted(first) == ["week1.report.json", "week1_oneshotsam.nii.gz", "week1_oneshotsam.seg.nrrd"]

    monkeypatch.setattr(patient_mod, "run_target", real)
    assert _cohort(m, out, "--workers", "1") == 0
    summ = json.loads((out / "summary.json").read_text())
    assert [t["status"] for t in summ["targets"]] == ["up-to-date", "done"]
    assert {p.name: p.stat().st_ino for p in (out / "P01").iterdir()} == first
    assert sorted(p.name for p in (out / "P02").iterdir()) == [
        "week1.report.json", "week1_oneshotsam.nii.gz", "week1_oneshotsam.seg.nrrd"]
    assert all(t["mean_dice"] > 0.5 for t in summ["targets"])
    csv_rows = (out / "summary.csv").read_text().splitlines()
    assert csv_rows[0].startswith(
        "patient,visit,row,status,seconds,cpu_seconds,confidence,n_flagged,flagged_slices,dice_1")
    assert len(csv_rows) == 3


def test_changed_input_or_setting_redoes_only_what_changed(tmp_path: Path) -> None:
    m = make_cohort(tmp_path / "data", n_patients=1, n_targets=2)
    out = tmp_path / "out"
    assert _cohort(m, out, "--workers", "1") == 0
    ino = {p.name: p.stat().st_ino for p in (out / "P01").iterdir()}
    # a new target image (same name, other contents): only that target is redone
    src = tmp_path / "data" / "P01"
    import SimpleITK as sitk

    img = sitk.ReadImage(str(src / "fu2.nrrd"))
    sitk.WriteImage(img * 0.99, str(src / "fu2.nrrd"))
    assert _cohort(m, out, "--workers", "1") == 0
    summ = json.loads((out / "summary.json").read_text())
    assert [t["status"] for t in summ["targets"]] == ["up-to-date", "done"]
    now = {p.name: p.stat().st_ino for p in (out / "P01").iterdir()}
    assert now["week1_oneshotsam.nii.gz"] == ino["week1_oneshotsam.nii.gz"]
    assert now["week2_oneshotsam.nrrd"] != ino["week2_oneshotsam.nrrd"]
    # another setting: everything is redone
    assert _cohort(m, out, "--workers", "1", "--contour-end-min-fit", "0.5") == 0
    summ = json.loads((out / "summary.json").read_text())
    assert [t["status"] for t in summ["targets"]] == ["done", "done"]
