"""What DICOM exports really look like: slices without SliceThickness (DICOM SEG spacing from
the positions, dciodvfy-clean), what an output needs checked before the run, a planning
series missing its end slices (which ROI lost which slices, in report.json), a SEG read
onto another series, ROI numbers kept, a ROI named twice."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from dicom_synth import affine, phantom, write_ct_series
from oneshotsam import medio
from oneshotsam.cli import main
from oneshotsam.dicom_rt import select_rois
from oneshotsam.errors import OneShotError
from oneshotsam.label_outputs import check_formats, write_label_formats
from oneshotsam.types import Volume
from test_dicom_rt_cli import NAMES, SHAPE, TINY_DENSE, _propagate, planning  # noqa: F401
from test_dicom_rt_write import dciodvfy_errors

pydicom = pytest.importorskip("pydicom")


def _edit_slices(folder, edit) -> None:
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        edit(ds)
        ds.save_as(f)


def _series(tmp_path, shape=(6, 30, 34), edit=None):
    aff = affine((0.8, 1.1, 2.5), (-30.0, -25.0, 12.0))
    vol, masks = phantom(shape, aff)
    write_ct_series(tmp_path / "ct", vol.voxels, aff)
    if edit is not None:
        _edit_slices(tmp_path / "ct", edit)
    return medio.read_volume(tmp_path / "ct"), masks


def _drop_thickness(ds):
    del ds.SliceThickness


def _empty_thickness(ds):
    ds.SliceThickness = None


@pytest.mark.parametrize("edit", [_drop_thickness, _empty_thickness], ids=["absent", "empty"])
def test_dicom_seg_without_slice_thickness_takes_the_spacing_of_the_positions(tmp_path, edit):
    ref, masks = _series(tmp_path, edit=edit)
    lab = np.zeros(ref.shape_kji, np.uint8)
    lab[masks["Liver"]] = 1
    lab[masks["Nodules"]] = 2
    out = write_label_formats(Volume(lab, ref.ijk_to_lps, "l"), ["dicom-seg"], tmp_path / "o", "c",
                              grid=ref)["dicom-seg"]
    assert dciodvfy_errors(out) == []
    pm = pydicom.dcmread(out).SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert (float(pm.SliceThickness), float(pm.SpacingBetweenSlices)) == (2.5, 2.5)
    assert [float(v) for v in pm.PixelSpacing] == [1.1, 0.8]
    assert np.array_equal(np.asarray(medio.read_label_volume(out, reference=ref).voxels), lab)
    assert all("SliceThickness" not in pydicom.dcmread(f) or pydicom.dcmread(f).SliceThickness in (None, "")
               for f in (tmp_path / "ct").iterdir())  # the inputs stay as they were


def _no_frame_of_reference(ds):
    del ds.FrameOfReferenceUID


def _no_pixel_spacing(ds):
    del ds.PixelSpacing


@pytest.mark.parametrize("fmt, edit, message", [
    ("rtstruct", _no_frame_of_reference, "no Frame of Reference UID"),
    ("dicom-seg", _no_pixel_spacing, "no valid PixelSpacing"),
])
def test_what_a_dicom_output_needs_is_checked_before_the_run(tmp_path, fmt, edit, message):
    ref, _ = _series(tmp_path, edit=edit)
    with pytest.raises(OneShotError, match=message):
        check_formats(["nifti", fmt], [ref], ["followup/"])
    assert check_formats(["nifti"], [ref]) == ("nifti",)


def test_propagate_refuses_an_unwritable_seg_target_before_the_work(planning, capsys):
    _edit_slices(planning["root"] / "followup", _no_pixel_spacing)
    out = planning["root"] / "never"
    assert _propagate(planning, out, ["--output-format", "dicom-seg", *TINY_DENSE]) == 2
    err = capsys.readouterr().err
    assert "--output-format dicom-seg for" in err and "PixelSpacing" in err, err
    assert not out.exists()


def test_planning_series_missing_its_end_slices_reports_the_lost_contours(planning, capsys):
    plan = planning["root"] / "plan"
    for f in plan.iterdir():  # the export lost the first and the last slice
        if pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber in (1, SHAPE[0]):
            f.unlink()
    out = planning["root"] / "out"
    assert _propagate(planning, out, ["--roi", "Body Ring", "Liver", *TINY_DENSE]) == 0
    err = capsys.readouterr().err
    assert "'Body Ring' on 2 slice(s) at 0, 17.5 mm; 'Liver' on 1 slice(s) at 17.5 mm" in err, err
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["contours_outside_series"] == [  # the ring has 2 contours per slice; the liver
        {"roi": "Body Ring", "roi_number": 1, "slices_mm": [0.0, 17.5], "contours": 4},  # spans 1..7
        {"roi": "Liver", "roi_number": 2, "slices_mm": [17.5], "contours": 1}]


def test_seg_on_a_series_missing_end_slices_reports_the_lost_frames(tmp_path):
    ref, masks = _series(tmp_path)
    lab = np.zeros(ref.shape_kji, np.uint8)
    lab[masks["Body Ring"]] = 1
    seg = write_label_formats(Volume(lab, ref.ijk_to_lps, "l", {"segments": [
        {"value": 1, "name": "Body Ring", "color": [1, 0, 0]}]}), ["dicom-seg"], tmp_path / "o", "c",
        grid=ref)["dicom-seg"]
    last = max((tmp_path / "ct").iterdir(), key=lambda f: pydicom.dcmread(f).InstanceNumber)
    last.unlink()
    short = medio.read_volume(tmp_path / "ct")
    back = medio.read_label_volume(seg, reference=short)
    assert back.meta["contours_outside_series"] == [
        {"roi": "Body Ring", "roi_number": 1, "slices_mm": [24.5], "frames": 1}]
    assert np.array_equal(np.asarray(back.voxels), lab[:-1])


def test_a_seg_read_onto_another_series_says_so(tmp_path):
    ref, masks = _series(tmp_path)
    lab = masks["Liver"].astype(np.uint8)
    seg = write_label_formats(Volume(lab, ref.ijk_to_lps, "l"), ["dicom-seg"], tmp_path / "o", "c",
                              grid=ref)["dicom-seg"]
    series = ref.meta["dicom_series"]
    shutil.move(tmp_path / "ct", tmp_path / "first")
    write_ct_series(tmp_path / "again", np.zeros(ref.shape_kji, np.int16), np.asarray(ref.ijk_to_lps),
                    frame_uid=series.frame_of_reference_uid, study_uid=series.study_instance_uid)
    other = medio.read_volume(tmp_path / "again")
    with pytest.raises(OneShotError, match="was derived from another series .* not from the series in"):
        medio.read_label_volume(seg, reference=other)


def test_roi_numbers_of_the_reference_are_kept(planning):
    rs = pydicom.dcmread(planning["rs"])
    new = {1: 14, 2: 22, 3: 5}
    for seq, key in ((rs.StructureSetROISequence, "ROINumber"), (rs.ROIContourSequence, "ReferencedROINumber"),
                     (rs.RTROIObservationsSequence, "ReferencedROINumber")):
        for it in seq:
            setattr(it, key, new[int(getattr(it, key))])
    rs.save_as(planning["rs"])
    out = planning["root"] / "out"
    assert _propagate(planning, out, ["--roi", "Liver", "Body Ring", "--output-format", "rtstruct",
                                      *TINY_DENSE]) == 0
    written = next(out.glob("*.rtstruct.dcm"))
    ds = pydicom.dcmread(written)
    assert [(str(r.ROIName), int(r.ROINumber)) for r in ds.StructureSetROISequence] == [
        ("Liver", 22), ("Body Ring", 14)]
    assert [int(r.ReferencedROINumber) for r in ds.ROIContourSequence] == [22, 14]
    assert dciodvfy_errors(written) == []


@pytest.mark.parametrize("wanted", [["LV", "LV"], ["LV", "Myo", " lv"]])
def test_a_roi_named_twice_is_refused(wanted):
    with pytest.raises(OneShotError, match="more than once"):
        select_rois(["LV", "Myo", "RV"], wanted, "rs.dcm")
    assert select_rois(["LV", "Myo", "RV"], ["RV", "LV"], "rs.dcm") == [2, 0]


def test_propagate_refuses_roi_twice(planning, capsys):
    out = planning["root"] / "never"
    assert _propagate(planning, out, ["--roi", "Liver", "Liver", *TINY_DENSE]) == 2
    assert "'Liver' more than once" in capsys.readouterr().err and not out.exists()


def test_a_slice_file_target_names_the_outputs_after_its_series(planning):
    one = sorted((planning["root"] / "followup").iterdir())[3]  # any slice of the series
    out = planning["root"] / "out"
    r = planning["root"]
    assert main(["propagate", "--reference-volume", str(r / "plan"), "--reference-labels", str(planning["rs"]),
                 "--roi", "Liver", "--targets", str(one), "--output-dir", str(out), "--window=-1000,500",
                 "--device", "cpu", "--quiet", "--output-format", "rtstruct", "nifti", *TINY_DENSE]) == 0
    assert sorted(p.name for p in out.iterdir()) == [  # write_ct_series: Series Number 2
        "followup_series2_oneshotsam.nii.gz", "followup_series2_oneshotsam.rtstruct.dcm", "report.json"]


def test_segment_reports_the_lost_contours_too(planning, capsys):
    r = planning["root"]
    for f in (r / "plan").iterdir():  # the planning export lost its last slice
        if pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber == SHAPE[0]:
            f.unlink()
    out = r / "seg_out"
    assert main(["segment", "--method", "medpersam-warp", "--reference-image", str(r / "plan"),
                 "--reference-mask", str(planning["rs"]), "--roi", "Liver", "--reference-slice", "4",
                 "--targets", str(r / "followup"), "--target-slices", "4", "--output-dir", str(out),
                 "--window=-1000,500", "--device", "cpu", "--quiet", "--preset", "paper",
                 "--set", "resolution=32", "--set", "epochs=1", "--set", "batch_size=2", "--set", "max_steps=2",
                 "--set", 'net={"enc_channels": 4, "dec_channels": 4, "n_levels": 2}']) == 0
    assert "'Liver' on 1 slice(s) at 17.5 mm" in capsys.readouterr().err
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["contours_outside_series"] == [
        {"roi": "Liver", "roi_number": 2, "slices_mm": [17.5], "contours": 1}]


def test_propagate_writes_a_valid_seg_on_a_followup_without_slice_thickness(planning):
    _edit_slices(planning["root"] / "followup", _drop_thickness)
    out = planning["root"] / "out"
    assert _propagate(planning, out, ["--roi", *NAMES, "--output-format", "dicom-seg", "nifti",
                                      *TINY_DENSE]) == 0
    seg = out / "followup_oneshotsam.seg.dcm"
    assert dciodvfy_errors(seg) == []
    fu = medio.read_volume(planning["root"] / "followup")
    nifti = np.asarray(medio.read_label_volume(out / "followup_oneshotsam.nii.gz").voxels)
    assert np.array_equal(np.asarray(medio.read_label_volume(seg, reference=fu).voxels), nifti)
