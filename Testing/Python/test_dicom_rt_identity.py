"""One patient per run: DICOM inputs (reference series, its RTSTRUCT / SEG, targets) of
another patient are refused before any work in ``propagate``, ``segment`` and ``cohort``,
unless ``--allow-other-patient`` is given, which the report records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dicom_synth import write_ct_series
from oneshotsam.cli import main
from oneshotsam.dicom_identity import check_same_patient, differences
from oneshotsam.errors import OneShotError
from test_dicom_rt_cli import FOLLOW_AFF, NAMES, SHAPE, TINY_DENSE, _propagate, planning  # noqa: F401

pydicom = pytest.importorskip("pydicom")

BASE = {"PatientID": "RT1", "PatientName": "RT^PATIENT", "PatientBirthDate": "19600101"}


@pytest.mark.parametrize("other, differ", [
    ({}, []),
    ({"PatientName": "rt^patient^^"}, []),                 # same name, other spelling of empty parts
    ({"PatientName": ""}, []),                              # absent name: not compared
    ({"PatientBirthDate": ""}, []),                         # absent birth date: not compared
    ({"PatientID": "RT2"}, ["PatientID"]),
    ({"PatientID": ""}, ["PatientID"]),                     # an ID against none: differs
    ({"PatientName": "OTHER^PATIENT"}, ["PatientName"]),
    ({"PatientBirthDate": "19600102"}, ["PatientBirthDate"]),
])
def test_identity_comparison_table(other, differ):
    assert differences(BASE, {**BASE, **other}) == differ


def _other_patient_followup(case, patient_id="RT2", name="OTHER^PATIENT", birth="19600101"):
    """The planning case's follow-up images, but of another patient."""
    import shutil

    folder = case["root"] / "followup"
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.PatientID, ds.PatientName, ds.PatientBirthDate = patient_id, name, birth
        ds.save_as(f)
    return folder


def test_propagate_refuses_another_patients_followup_and_writes_nothing(planning, capsys):
    _other_patient_followup(planning)
    out = planning["root"] / "never"
    assert _propagate(planning, out, ["--output-format", "rtstruct", *TINY_DENSE]) == 2
    err = capsys.readouterr().err
    assert "is not the patient of the reference series" in err and "PatientID 'RT1' vs 'RT2'" in err, err
    assert "--allow-other-patient" in err
    assert not out.exists()


def test_propagate_refuses_a_birth_date_mismatch(planning, capsys):
    _other_patient_followup(planning, patient_id="RT1", name="RT^PATIENT", birth="19710304")
    out = planning["root"] / "never"
    assert _propagate(planning, out, [*TINY_DENSE]) == 2
    assert "PatientBirthDate '19600101' vs '19710304'" in capsys.readouterr().err
    assert not out.exists()


def test_propagate_refuses_an_rtstruct_of_another_patient(planning, capsys):
    rs = pydicom.dcmread(planning["rs"])
    rs.PatientID = "RT9"
    rs.save_as(planning["rs"])
    out = planning["root"] / "never"
    assert _propagate(planning, out, [*TINY_DENSE]) == 2
    err = capsys.readouterr().err
    assert "the reference labels" in err and "'RT1' vs 'RT9'" in err, err
    assert not out.exists()


def test_allow_other_patient_runs_and_the_report_says_so(planning):
    _other_patient_followup(planning)
    out = planning["root"] / "out"
    assert _propagate(planning, out, ["--allow-other-patient", "--roi", "Liver", *TINY_DENSE]) == 0
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))["patient_identity"]
    assert rep["allow_other_patient"] is True
    assert len(rep["mismatches"]) == 1 and "'RT1' vs 'RT2'" in rep["mismatches"][0]
    assert [e["identity"]["PatientID"] for e in rep["inputs"]] == ["RT1", "RT1", "RT2"]


def test_same_patient_report_records_the_check(planning):
    out = planning["root"] / "out"
    assert _propagate(planning, out, ["--roi", "Liver", *TINY_DENSE]) == 0
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))["patient_identity"]
    assert (rep["allow_other_patient"], rep["patient_id"], rep["mismatches"]) == (False, "RT1", [])


def test_segment_refuses_another_patients_target(planning, capsys):
    r = planning["root"]
    _other_patient_followup(planning)
    out = r / "never"
    rc = main(["segment", "--method", "medpersam-warp", "--reference-image", str(r / "plan"),
               "--reference-mask", str(planning["rs"]), "--roi", "Liver", "--reference-slice", "4",
               "--targets", str(r / "followup"), "--output-dir", str(out), "--window=-1000,500",
               "--device", "cpu", "--quiet"])
    assert rc == 2 and "is not the patient of the reference image" in capsys.readouterr().err
    assert not out.exists()


def test_cohort_refuses_another_patients_target_before_running(planning, capsys):
    r = planning["root"]
    write_ct_series(r / "stranger", np.zeros(SHAPE, np.int16), FOLLOW_AFF, patient="X^Y", patient_id="RT7")
    manifest = r / "cohort.csv"
    manifest.write_text("patient,visit,image,labels\n"
                        f"RT1,plan,{r / 'plan'},{planning['rs']}\n"
                        f"RT1,followup,{r / 'followup'},\n"
                        f"RT1,stranger,{r / 'stranger'},\n", encoding="utf-8")
    out = r / "cohort"
    rc = main(["cohort", str(manifest), "--output-dir", str(out), "--workers", "1", "--quiet",
               "--window=-1000,500", "--device", "cpu", "--roi", *NAMES, *TINY_DENSE])
    err = capsys.readouterr().err
    assert rc == 2 and "patient 'RT1'" in err and "target (row 4)" in err and "'RT7'" in err, err
    assert not out.exists()


def test_nifti_inputs_carry_no_identity(tmp_path):
    from oneshotsam import medio
    from oneshotsam.types import Volume

    a = tmp_path / "a.nii.gz"
    medio.write_label_volume(Volume(np.zeros((3, 4, 5), np.uint8), np.eye(4), "a"), a)
    rec = check_same_patient([("reference series", a), ("target", a)])
    assert rec["patient_id"] is None and [e["identity"] for e in rec["inputs"]] == [None, None]
    with pytest.raises(OneShotError, match="--allow-other-patient"):
        d = tmp_path / "d"
        write_ct_series(d, np.zeros((2, 4, 5), np.int16), np.eye(4), patient_id="A")
        e = tmp_path / "e"
        write_ct_series(e, np.zeros((2, 4, 5), np.int16), np.eye(4), patient_id="B")
        check_same_patient([("reference series", d), ("NIfTI", a), ("target", e)])


def test_browser_app_refuses_volumes_of_two_patients(tmp_path, capsys):
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parents[2] / "OneShotSAM"))
    try:
        from OneShotSAMWeb.cli import check_web_patients
    finally:
        _sys.path.pop(0)
    write_ct_series(tmp_path / "a", np.zeros((2, 4, 5), np.int16), np.eye(4), patient_id="A")
    write_ct_series(tmp_path / "b", np.zeros((2, 4, 5), np.int16), np.eye(4), patient_id="B")
    with pytest.raises(OneShotError, match="follow-up volume .* is not the patient of the reference volume"):
        check_web_patients([str(tmp_path / "a"), str(tmp_path / "b")])
    rec = check_web_patients([str(tmp_path / "a"), str(tmp_path / "b")], allow_other_patient=True)
    assert rec["allow_other_patient"] and "WARNING (--allow-other-patient)" in capsys.readouterr().err
    assert check_web_patients([str(tmp_path / "a"), str(tmp_path / "a")])["mismatches"] == []


def test_cohort_with_allow_other_patient_records_it_in_the_summary(planning):
    r = planning["root"]
    _other_patient_followup(planning)
    manifest = r / "cohort.csv"
    manifest.write_text("patient,visit,image,labels\n"
                        f"RT1,plan,{r / 'plan'},{planning['rs']}\n"
                        f"RT1,followup,{r / 'followup'},\n", encoding="utf-8")
    out = r / "cohort"
    assert main(["cohort", str(manifest), "--output-dir", str(out), "--workers", "1", "--quiet",
                 "--window=-1000,500", "--device", "cpu", "--roi", "Liver", "--allow-other-patient",
                 *TINY_DENSE]) == 0
    rec = json.loads((out / "summary.json").read_text(encoding="utf-8"))["patient_identity"]
    assert rec["allow_other_patient"] is True
    assert list(rec["mismatches"]) == ["RT1"] and "'RT1' vs 'RT2'" in rec["mismatches"]["RT1"][0]
