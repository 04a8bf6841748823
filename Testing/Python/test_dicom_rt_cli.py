"""DICOM RT through the command line: ``propagate`` from an RTSTRUCT on a planning series to a
shifted, rotated follow-up series (RTSTRUCT / SEG out, identical to the NIfTI output),
``segment`` with an RTSTRUCT reference, and bad DICOM input: exit 2, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dicom_synth import affine, dice, phantom, rotation, write_ct_series
from oneshotsam import medio
from oneshotsam.cli import main
from oneshotsam.label_outputs import write_label_formats
from oneshotsam.types import Volume
from test_dicom_rt_write import dciodvfy_errors

pydicom = pytest.importorskip("pydicom")

SHAPE = (8, 40, 48)
PLAN_AFF = affine((1.0, 1.0, 2.5), (-24.0, -20.0, 0.0))
#: the follow-up: patient rotated by 8 degrees about S and shifted; the anatomy sits at the
#: same voxel positions of a rotated, shifted grid, i.e. moved in physical space
FOLLOW_AFF = affine((1.0, 1.0, 2.5), (-20.0, -23.0, 2.5), rotation("z", 8.0))
NAMES = ["Body Ring", "Liver", "Nodules"]
TINY_DENSE = ["--set", "resolution=32", "--set", "min_steps=2", "--set", "max_steps=2", "--set",
              'net={"enc_channels": 4, "dec_channels": 8, "max_channels": 16, "n_levels": 3}']


@pytest.fixture()
def planning(tmp_path):
    """Planning series with an RTSTRUCT (written by the engine from drawn masks), and a
    follow-up series of the same patient in another Frame of Reference and study."""
    vol, masks = phantom(SHAPE, PLAN_AFF)
    write_ct_series(tmp_path / "plan", vol.voxels, PLAN_AFF, patient="RT^PATIENT", patient_id="RT1")
    plan = medio.read_volume(tmp_path / "plan")
    lab = np.zeros(SHAPE, np.uint8)
    for n, m in enumerate(masks.values(), start=1):
        lab[m] = n
    segs = [{"value": n, "name": name, "color": [0.2 * n, 0.9, 0.1]} for n, name in enumerate(NAMES, 1)]
    rs = write_label_formats(Volume(lab, plan.ijk_to_lps, "plan"), ["rtstruct"], tmp_path / "rt", "plan",
                             segments=segs, grid=plan)["rtstruct"]
    fvol, fmasks = phantom(SHAPE, FOLLOW_AFF)
    fu = write_ct_series(tmp_path / "followup", fvol.voxels, FOLLOW_AFF, patient="RT^PATIENT",
                         patient_id="RT1", seed=3)
    return {"root": tmp_path, "rs": rs, "masks": masks, "fmasks": fmasks, "fu": fu}


def _propagate(case, out: Path, extra=()) -> int:
    r = case["root"]
    return main(["propagate", "--reference-volume", str(r / "plan"), "--reference-labels", str(case["rs"]),
                 "--targets", str(r / "followup"), "--output-dir", str(out), "--window=-1000,500",
                 "--device", "cpu", "--quiet", *extra])


def test_propagate_rtstruct_to_followup_matches_nifti(planning):
    out = planning["root"] / "out"
    rc = _propagate(planning, out, ["--output-format", "nifti", "rtstruct", "dicom-seg", "--roi", *NAMES,
                                    *TINY_DENSE])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "followup_oneshotsam.nii.gz", "followup_oneshotsam.rtstruct.dcm", "followup_oneshotsam.seg.dcm", "report.json"]
    fu = medio.read_volume(planning["root"] / "followup")
    nifti = np.asarray(medio.read_label_volume(out / "followup_oneshotsam.nii.gz").voxels)
    for fmt in ("rtstruct", "seg"):
        back = medio.read_label_volume(out / f"followup_oneshotsam.{fmt}.dcm", reference=fu)
        assert [s["name"] for s in back.meta["segments"]] == NAMES
        assert np.array_equal(np.asarray(back.voxels), nifti)  # voxel-exact
        assert dciodvfy_errors(out / f"followup_oneshotsam.{fmt}.dcm") == []
    ds = pydicom.dcmread(out / "followup_oneshotsam.rtstruct.dcm")
    fr = ds.ReferencedFrameOfReferenceSequence[0]
    assert fr.FrameOfReferenceUID == planning["fu"]["frame"] and ds.StudyInstanceUID == planning["fu"]["study"]
    refs = fr.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert refs.SeriesInstanceUID == planning["fu"]["series"]
    assert sorted(i.ReferencedSOPInstanceUID for i in refs.ContourImageSequence) == sorted(planning["fu"]["sops"])
    assert [list(r.ROIDisplayColor) for r in ds.ROIContourSequence] == [[51, 230, 26], [102, 230, 26], [153, 230, 26]]
    assert (ds.PatientID, str(ds.PatientName)) == ("RT1", "RT^PATIENT")
    # the propagated labels land on the moved anatomy (a tiny untrained warp: loose bound)
    report = json.loads((out / "report.json").read_text())
    assert report["outputs"][0]["files"]["rtstruct"].endswith("followup_oneshotsam.rtstruct.dcm")
    assert dice(nifti == 1, planning["fmasks"]["Body Ring"]) > 0.5


def _expect_refused(capsys, case, out: Path, match: str, extra=()) -> None:
    assert _propagate(case, out, extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err, err
    assert not out.exists()


def test_bad_dicom_input_exits_2_and_writes_nothing(planning, capsys):
    from pydicom.uid import generate_uid

    r = planning["root"]
    out = r / "never"
    _expect_refused(capsys, planning, out, "is not in", ["--roi", "Spleen"])
    # a follow-up series with a slice missing
    files = sorted((r / "followup").iterdir())
    gone = r / "kept.dcm"
    mid = next(f for f in files if pydicom.dcmread(f).InstanceNumber == 4)
    shutil.move(mid, gone)
    _expect_refused(capsys, planning, out, "slice(s) missing")
    shutil.move(gone, mid)
    # a duplicated slice (same position, new instance)
    ds = pydicom.dcmread(mid)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(r / "followup" / "dup.dcm")
    _expect_refused(capsys, planning, out, "duplicated slices")
    (r / "followup" / "dup.dcm").unlink()
    # two series in one folder
    other = r / "other"
    write_ct_series(other, np.zeros(SHAPE, np.int16), FOLLOW_AFF, description="another series")
    for f in other.iterdir():
        shutil.copy(f, r / "followup" / ("x_" + f.name))
    _expect_refused(capsys, planning, out, "holds 2 DICOM image series")
    for f in (r / "followup").glob("x_*"):
        f.unlink()
    # an RTSTRUCT whose Frame of Reference is not the planning series'
    rs = pydicom.dcmread(planning["rs"])
    rs.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = "1.2.3.999"
    rs.save_as(planning["rs"])
    _expect_refused(capsys, planning, out, "Frame of Reference 1.2.3.999")


def test_empty_roi_and_non_dicom_target_are_refused(planning, capsys, tmp_path):
    r = planning["root"]
    rs = pydicom.dcmread(planning["rs"])
    del rs.ROIContourSequence[1].ContourSequence  # 'Liver' has no contour any more
    rs.save_as(planning["rs"])
    out = r / "never"
    _expect_refused(capsys, planning, out, "'Liver' in")
    fu = medio.read_volume(r / "followup")
    import SimpleITK as sitk
    from oneshotsam.geometry import volume_to_sitk

    sitk.WriteImage(volume_to_sitk(Volume(np.asarray(fu.voxels), fu.ijk_to_lps)), str(tmp_path / "fu.nii.gz"))
    rc = main(["propagate", "--reference-volume", str(r / "plan"), "--reference-labels", str(planning["rs"]),
               "--roi", "Body Ring", "--targets", str(tmp_path / "fu.nii.gz"), "--output-dir", str(out),
               "--output-format", "rtstruct", "--window=-1000,500", "--quiet"])
    assert rc == 2 and "needs a DICOM series target" in capsys.readouterr().err and not out.exists()


def test_segment_with_an_rtstruct_reference_writes_rtstruct(planning):
    r = planning["root"]
    out = r / "seg_out"
    rc = main(["segment", "--method", "medpersam-warp", "--reference-image", str(r / "plan"),
               "--reference-mask", str(planning["rs"]), "--roi", "Liver", "--reference-slice", "4",
               "--targets", str(r / "followup"), "--target-slices", "3", "4", "--output-dir", str(out),
               "--output-format", "rtstruct", "nifti", "--window=-1000,500", "--device", "cpu", "--quiet",
               "--preset", "paper", "--set", "resolution=32", "--set", "epochs=1", "--set", "batch_size=2",
               "--set", "max_steps=2", "--set", 'net={"enc_channels": 4, "dec_channels": 4, "n_levels": 2}'])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["followup_oneshotsam.nii.gz", "followup_oneshotsam.rtstruct.dcm", "report.json"]
    fu = medio.read_volume(r / "followup")
    back = medio.read_label_volume(out / "followup_oneshotsam.rtstruct.dcm", reference=fu)
    assert [s["name"] for s in back.meta["segments"]] == ["Liver"]
    assert np.array_equal(np.asarray(back.voxels), np.asarray(medio.read_label_volume(out / "followup_oneshotsam.nii.gz").voxels))
    assert dciodvfy_errors(out / "followup_oneshotsam.rtstruct.dcm") == []


def test_cohort_takes_dicom_folders_and_rtstruct(planning):
    """A manifest row with a DICOM folder and an RTSTRUCT reference; RTSTRUCT out equals the
    cohort's own NIfTI output and ``propagate``'s, and a rerun skips the target."""
    r = planning["root"]
    manifest = r / "cohort.csv"
    manifest.write_text("patient,visit,image,labels\n"
                        f"RT1,plan,{r / 'plan'},{planning['rs']}\n"
                        f"RT1,followup,{r / 'followup'},\n")
    out = r / "cohort"
    args = ["cohort", str(manifest), "--output-dir", str(out), "--workers", "1", "--quiet",
            "--window=-1000,500", "--device", "cpu", "--roi", *NAMES,
            "--output-format", "nifti", "rtstruct", *TINY_DENSE]
    assert main(args) == 0
    names = sorted(p.name for p in (out / "RT1").iterdir())
    assert names == ["followup.report.json", "followup_oneshotsam.nii.gz", "followup_oneshotsam.rtstruct.dcm"]
    fu = medio.read_volume(r / "followup")
    nifti = np.asarray(medio.read_label_volume(out / "RT1" / "followup_oneshotsam.nii.gz").voxels)
    back = medio.read_label_volume(out / "RT1" / "followup_oneshotsam.rtstruct.dcm", reference=fu)
    assert [s["name"] for s in back.meta["segments"]] == NAMES
    assert np.array_equal(np.asarray(back.voxels), nifti)
    assert dciodvfy_errors(out / "RT1" / "followup_oneshotsam.rtstruct.dcm") == []
    assert _propagate(planning, r / "single", ["--roi", *NAMES, *TINY_DENSE]) == 0
    single = np.asarray(medio.read_label_volume(r / "single" / "followup_oneshotsam.nii.gz").voxels)
    assert np.array_equal(single, nifti)  # the same engine path as propagate
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "RT1").iterdir()}
    assert main(args) == 0  # rerun: up to date, nothing rewritten
    assert {p.name: p.stat().st_mtime_ns for p in (out / "RT1").iterdir()} == mtimes
    summary = json.loads((out / "summary.json").read_text())
    assert [t["status"] for t in summary["targets"]] == ["up-to-date"]


def test_cohort_refuses_dicom_output_for_nifti_targets(tmp_path, planning):
    r = planning["root"]
    medio.write_label_volume(Volume(np.zeros(SHAPE, np.uint8), PLAN_AFF, "x"), tmp_path / "fu.nii.gz")
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("patient,visit,image,labels\n"
                        f"RT1,plan,{r / 'plan'},{planning['rs']}\n"
                        f"RT1,fu,{tmp_path / 'fu.nii.gz'},\n")
    out = tmp_path / "cohort"
    assert main(["cohort", str(manifest), "--output-dir", str(out), "--workers", "1", "--quiet",
                 "--output-format", "rtstruct"]) == 2
    assert not out.exists()
