"""Writing label volumes as RTSTRUCT and DICOM SEG on a DICOM series: they read back to the
same labels, names and colours, reference the series (Frame of Reference, Study, Series,
every slice), keep its patient and study identity, and pass dciodvfy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dicom_synth import affine, dice, phantom, rotation, write_ct_series
from oneshotsam import medio
from oneshotsam.label_outputs import check_formats, write_label_formats
from oneshotsam.errors import OneShotError
from oneshotsam.types import Volume

pydicom = pytest.importorskip("pydicom")

GEOMETRIES = {
    "axial": ((9, 40, 56), affine((0.8, 1.1, 2.5), (-30.0, -25.0, 12.0))),
    "oblique": ((8, 44, 52), affine((0.9, 0.7, 3.0), (12.0, -40.0, -5.0),
                                    rotation("z", 25) @ rotation("x", 15) @ rotation("y", -10))),
    "flipped": ((6, 30, 34), affine((1.2, 0.6, 1.5), (80.0, 60.0, -20.0), np.diag([-1.0, 1.0, -1.0]))),
}
SEGMENTS = [{"value": 2, "name": "Body Ring", "color": [0.9, 0.1, 0.2]},
            {"value": 5, "name": "Liver", "color": [0.2, 0.6, 0.3]},
            {"value": 7, "name": "Nodules", "color": [0.1, 0.2, 0.95]}]


def dciodvfy_errors(path: Path) -> list[str]:
    """Error lines of ``dciodvfy`` on one file; skips the test when dciodvfy is absent."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy not found: install Debian's dicom3tools (apt-get install dicom3tools) "
                    "to check written DICOM files")
    r = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    return [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("Error")]


def _labels_on_series(tmp_path: Path, name: str):
    shape, aff = GEOMETRIES[name]
    vol, masks = phantom(shape, aff)
    uids = write_ct_series(tmp_path / "ct", vol.voxels, aff, patient="DOE^JANE", patient_id="P-77")
    ref = medio.read_volume(tmp_path / "ct")
    lab = np.zeros(shape, np.uint8)
    for s, m in zip(SEGMENTS, masks.values()):
        lab[m] = s["value"]
    return ref, Volume(lab, ref.ijk_to_lps, "labels", {"segments": SEGMENTS}), masks, uids


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_rtstruct_and_seg_round_trip(tmp_path, geometry):
    ref, labels, masks, uids = _labels_on_series(tmp_path, geometry)
    files = write_label_formats(labels, ["rtstruct", "dicom-seg", "nifti", "seg-nrrd"],
                                tmp_path / "out", "case", grid=ref)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "case.nii.gz", "case.rtstruct.dcm", "case.seg.dcm", "case.seg.nrrd"]
    for fmt in ("rtstruct", "dicom-seg"):
        back = medio.read_label_volume(files[fmt], reference=ref)
        assert [s["name"] for s in back.meta["segments"]] == [s["name"] for s in SEGMENTS]
        for n, s in enumerate(SEGMENTS, start=1):
            got = np.asarray(back.voxels) == n
            want = np.asarray(labels.voxels) == s["value"]
            assert dice(got, want) >= 0.98
            assert np.array_equal(got, want), (fmt, s["name"])  # exact in fact
            assert back.meta["segments"][n - 1]["color"] == pytest.approx(s["color"], abs=0.02)
        assert dciodvfy_errors(files[fmt]) == []
    ds = pydicom.dcmread(files["rtstruct"])
    assert ds.Modality == "RTSTRUCT" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.3"
    assert (str(ds.PatientName), ds.PatientID, ds.StudyInstanceUID) == ("DOE^JANE", "P-77", uids["study"])
    assert ds.SeriesInstanceUID != uids["series"]
    fr = ds.ReferencedFrameOfReferenceSequence[0]
    assert fr.FrameOfReferenceUID == uids["frame"] and ds.FrameOfReferenceUID == uids["frame"]
    study = fr.RTReferencedStudySequence[0]
    assert study.ReferencedSOPInstanceUID == uids["study"]
    ser = study.RTReferencedSeriesSequence[0]
    assert ser.SeriesInstanceUID == uids["series"]
    assert sorted(i.ReferencedSOPInstanceUID for i in ser.ContourImageSequence) == sorted(uids["sops"])
    assert [r.ROINumber for r in ds.StructureSetROISequence] == [2, 5, 7]
    assert all(r.ReferencedFrameOfReferenceUID == uids["frame"] for r in ds.StructureSetROISequence)
    contour_refs = {c.ContourImageSequence[0].ReferencedSOPInstanceUID
                    for rc in ds.ROIContourSequence for c in rc.ContourSequence}
    assert contour_refs <= set(uids["sops"])
    assert max(len(str(v)) for rc in ds.ROIContourSequence for c in rc.ContourSequence
               for v in c.ContourData) <= 16
    seg = pydicom.dcmread(files["dicom-seg"])
    assert (seg.PatientID, seg.StudyInstanceUID, seg.FrameOfReferenceUID) == ("P-77", uids["study"], uids["frame"])
    assert {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence} \
        == set(uids["sops"])


def test_dicom_formats_need_a_dicom_grid_and_write_nothing_on_error(tmp_path):
    ref, labels, _, _ = _labels_on_series(tmp_path, "axial")
    plain = Volume(np.asarray(labels.voxels), labels.ijk_to_lps, "plain")
    with pytest.raises(OneShotError, match="needs a DICOM series target"):
        check_formats(["nifti", "rtstruct"], [plain])
    with pytest.raises(OneShotError, match="unknown output format 'png'"):
        check_formats(["png"], [ref])
    assert check_formats(["nifti", "nifti", "seg-nrrd"], [plain]) == ("nifti", "seg-nrrd")
    shifted = np.asarray(labels.ijk_to_lps).copy()
    shifted[2, 3] += 7.0  # not on the series' slices any more
    with pytest.raises(OneShotError, match="slice positions do not match"):
        write_label_formats(Volume(np.asarray(labels.voxels), shifted, "x"), ["nifti", "rtstruct"],
                            tmp_path / "out", "case", grid=ref)
    assert [p.name for p in (tmp_path / "out").iterdir()] == []  # not even the NIfTI


def test_a_label_absent_from_the_voxels_stays_a_named_empty_roi(tmp_path):
    ref, labels, _, _ = _labels_on_series(tmp_path, "axial")
    lab = np.asarray(labels.voxels).copy()
    lab[lab == 5] = 0
    out = write_label_formats(Volume(lab, labels.ijk_to_lps, "l", {"segments": SEGMENTS}), ["rtstruct"],
                              tmp_path / "o", "c", grid=ref)["rtstruct"]
    ds = pydicom.dcmread(out)
    assert [r.ROIName for r in ds.StructureSetROISequence] == ["Body Ring", "Liver", "Nodules"]
    assert "ContourSequence" not in ds.ROIContourSequence[1]
    assert dciodvfy_errors(out) == []
    with pytest.raises(OneShotError, match="'Liver' .*no contour on any slice"):
        medio.read_label_volume(out, reference=ref)
    back = medio.read_label_volume(out, reference=ref, rois=["Nodules", "Body Ring"])
    assert np.array_equal(np.asarray(back.voxels) == 1, lab == 7)
