"""Reading DICOM RT Structure Sets and SEG onto a DICOM series: geometry, holes, several
contours per slice, ROI selection, and the clear refusals (Frame of Reference, empty ROI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dicom_synth import affine, dice, phantom, rotation, write_ct_series
from oneshotsam import medio
from oneshotsam.errors import OneShotError

pydicom = pytest.importorskip("pydicom")

GEOMETRIES = {  # (shape_kji, affine): non-unit, anisotropic spacing, non-square matrix
    "axial": ((9, 40, 56), affine((0.8, 1.1, 2.5), (-30.0, -25.0, 12.0))),
    "oblique": ((8, 44, 52), affine((0.9, 0.7, 3.0), (12.0, -40.0, -5.0),
                                    rotation("z", 25) @ rotation("x", 15) @ rotation("y", -10))),
}


def _series(tmp_path: Path, name: str):
    shape, aff = GEOMETRIES[name]
    vol, masks = phantom(shape, aff)
    uids = write_ct_series(tmp_path / f"ct_{name}", vol.voxels, aff)
    return tmp_path / f"ct_{name}", vol, masks, uids


def _ellipse_xy(c, r, n=96):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([c[0] + r[0] * np.cos(t), c[1] + r[1] * np.sin(t)])


def _analytic_rtstruct(path: Path, series_dir: Path, aff: np.ndarray, shape, frame_uid=None) -> dict:
    """An RTSTRUCT drawn as polygons in mm (pydicom): 'Ring' (outer + hole contour on
    every slice), 'Pair' (two contours per slice), 'Marker' (a POINT only: no contour).
    Returns the expected pixel-centre masks."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    K, J, I = shape
    heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(series_dir.iterdir())]
    by_k = {int(round(np.linalg.solve(aff[:3, :3], np.asarray(h.ImagePositionPatient, float) - aff[:3, 3])[2])): h
            for h in heads}
    ii, jj = np.meshgrid(np.arange(I), np.arange(J))
    inside = lambda c, r: ((ii - c[0]) / r[0]) ** 2 + ((jj - c[1]) / r[1]) ** 2 <= 1.0  # noqa: E731
    shapes = {"Ring": [((I * .5, J * .5), (I * .4, J * .4)), ((I * .5, J * .5), (I * .22, J * .2))],
              "Pair": [((I * .4, J * .5), (I * .07, J * .1)), ((I * .6, J * .5), (I * .07, J * .08))]}
    expected = {}
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.StudyInstanceUID = "RTSTRUCT", heads[0].PatientID, heads[0].StudyInstanceUID
    fr = pydicom.Dataset()
    fr.FrameOfReferenceUID = frame_uid or heads[0].FrameOfReferenceUID
    ds.ReferencedFrameOfReferenceSequence = [fr]
    rois, conts = [], []
    for n, (name, ells) in enumerate(list(shapes.items()) + [("Marker", [])], start=1):
        roi = pydicom.Dataset()
        roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = n, name, fr.FrameOfReferenceUID
        rois.append(roi)
        rc = pydicom.Dataset()
        rc.ReferencedROINumber, rc.ROIDisplayColor = n, [40 * n, 200, 255 - 30 * n]
        items, m = [], np.zeros(shape, bool)
        for k in range(1, K - 1):
            plane = np.zeros((J, I), bool)
            for c, r in ells:
                xy = _ellipse_xy(c, r)
                lps = np.column_stack([xy, np.full(len(xy), k), np.ones(len(xy))]) @ aff.T
                it = pydicom.Dataset()
                it.ContourGeometricType, it.NumberOfContourPoints = "CLOSED_PLANAR", len(xy)
                it.ContourData = [f"{v:.5f}" for v in lps[:, :3].ravel()]
                ref = pydicom.Dataset()
                ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = by_k[k].SOPClassUID, by_k[k].SOPInstanceUID
                it.ContourImageSequence = [ref]
                items.append(it)
                plane ^= inside(c, r)
            m[k] = plane
        if name == "Marker":
            it = pydicom.Dataset()
            it.ContourGeometricType, it.NumberOfContourPoints = "POINT", 1
            it.ContourData = [f"{v:.4f}" for v in (aff @ [I / 2, J / 2, 2, 1])[:3]]
            items.append(it)
        rc.ContourSequence = items
        conts.append(rc)
        expected[name] = m
    ds.StructureSetROISequence, ds.ROIContourSequence = rois, conts
    ds.save_as(path, enforce_file_format=True)
    return expected


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_polygons_in_mm_rasterise_onto_the_series(tmp_path, geometry):
    folder, vol, _, _ = _series(tmp_path, geometry)
    ref = medio.read_volume(folder)
    expected = _analytic_rtstruct(tmp_path / "rs.dcm", folder, vol.ijk_to_lps, vol.shape_kji)
    lab = medio.read_label_volume(tmp_path / "rs.dcm", reference=ref, rois=["Ring", "Pair"])
    assert lab.shape_kji == vol.shape_kji and np.allclose(lab.ijk_to_lps, vol.ijk_to_lps, atol=1e-4)
    names = [s["name"] for s in lab.meta["segments"]]
    assert names == ["Ring", "Pair"]
    assert lab.meta["segments"][0]["color"] == pytest.approx([40 / 255, 200 / 255, 225 / 255])
    for value, name in enumerate(names, start=1):
        d = dice(np.asarray(lab.voxels) == value, expected[name])
        assert d >= 0.98, (name, d)
    # the ring has a hole on every contoured slice, the pair two islands
    k = vol.shape_kji[0] // 2
    assert not (np.asarray(lab.voxels)[k, vol.shape_kji[1] // 2, vol.shape_kji[2] // 2])


def test_roi_selection_errors_list_the_rois(tmp_path):
    folder, vol, _, _ = _series(tmp_path, "axial")
    ref = medio.read_volume(folder)
    _analytic_rtstruct(tmp_path / "rs.dcm", folder, vol.ijk_to_lps, vol.shape_kji)
    with pytest.raises(OneShotError, match=r"'Liver' is not in .*'Ring', 'Pair', 'Marker'"):
        medio.read_label_volume(tmp_path / "rs.dcm", reference=ref, rois=["Liver"])
    with pytest.raises(OneShotError, match=r"'Marker' .*no contour on any slice"):
        medio.read_label_volume(tmp_path / "rs.dcm", reference=ref)  # default: all ROIs
    lab = medio.read_label_volume(tmp_path / "rs.dcm", reference=ref, rois=["pair"])  # case-insensitive
    assert [s["name"] for s in lab.meta["segments"]] == ["Pair"] and int(np.asarray(lab.voxels).max()) == 1
    with pytest.raises(OneShotError, match="needs the image series"):
        medio.read_label_volume(tmp_path / "rs.dcm")


def test_frame_of_reference_mismatch_is_refused(tmp_path):
    folder, vol, _, _ = _series(tmp_path, "axial")
    ref = medio.read_volume(folder)
    _analytic_rtstruct(tmp_path / "rs.dcm", folder, vol.ijk_to_lps, vol.shape_kji, frame_uid="1.2.3.4.5")
    with pytest.raises(OneShotError, match="Frame of Reference 1.2.3.4.5"):
        medio.read_label_volume(tmp_path / "rs.dcm", reference=ref, rois=["Ring"])


@pytest.mark.filterwarnings("ignore:'FileDataset.is_:DeprecationWarning")  # rt-utils' own pydicom use
def test_rt_utils_structure_set_reads_back_exactly(tmp_path):
    """An RTSTRUCT written by rt-utils (square pixels: its writer is right there) from drawn
    masks, on an oblique series with a non-square matrix, reads back voxel for voxel."""
    rt_utils = pytest.importorskip("rt_utils")
    shape = (7, 36, 50)
    aff = affine((0.8, 0.8, 2.0), (5.0, -20.0, 30.0), rotation("z", 30) @ rotation("x", -12))
    vol, masks = phantom(shape, aff)
    write_ct_series(tmp_path / "ct", vol.voxels, aff)
    rs = rt_utils.RTStructBuilder.create_new(dicom_series_path=str(tmp_path / "ct"))
    for n, (name, m) in enumerate(masks.items()):
        rs.add_roi(mask=np.transpose(m, (1, 2, 0)), color=[30 + 60 * n, 90, 200], name=name)
    rs.save(str(tmp_path / "rs_rtutils.dcm"))
    ref = medio.read_volume(tmp_path / "ct")
    lab = medio.read_label_volume(tmp_path / "rs_rtutils.dcm", reference=ref)
    assert [s["name"] for s in lab.meta["segments"]] == list(masks)
    for value, (name, m) in enumerate(masks.items(), start=1):
        assert dice(np.asarray(lab.voxels) == value, m) >= 0.98
        assert np.array_equal(np.asarray(lab.voxels) == value, m), name  # holes and pairs included


def test_dicom_seg_built_with_highdicom_reads_back(tmp_path):
    hd = pytest.importorskip("highdicom")
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    folder, vol, masks, _ = _series(tmp_path, "oblique")
    ref = medio.read_volume(folder)
    series = ref.meta["dicom_series"]
    descs = [hd.seg.SegmentDescription(
        segment_number=n, segment_label=name, segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Tissue, algorithm_type="MANUAL",
        display_color=hd.color.CIELabColor.from_rgb(200, 40 * n, 10)) for n, name in enumerate(masks, 1)]
    arr = np.stack([masks[n] for n in masks], axis=-1).astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=series.datasets(pixels=True), pixel_array=arr, segmentation_type="BINARY",
        segment_descriptions=descs, series_instance_uid=generate_uid(), series_number=5,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="test",
        manufacturer_model_name="test", software_versions="1", device_serial_number="1")
    seg.save_as(tmp_path / "seg.dcm")
    lab = medio.read_label_volume(tmp_path / "seg.dcm", reference=ref, rois=["Nodules", "Liver"])
    assert [s["name"] for s in lab.meta["segments"]] == ["Nodules", "Liver"]
    assert lab.meta["segments"][1]["color"] == pytest.approx([200 / 255, 80 / 255, 10 / 255], abs=0.02)
    assert np.array_equal(np.asarray(lab.voxels) == 1, masks["Nodules"])
    assert np.array_equal(np.asarray(lab.voxels) == 2, masks["Liver"] & ~masks["Nodules"])
    with pytest.raises(OneShotError, match="'Lung' is not in"):
        medio.read_label_volume(tmp_path / "seg.dcm", reference=ref, rois=["Lung"])
