"""Medical I/O: 2D images, volumes, DICOM series, Slicer .seg.nrrd; geometry kept on write-back."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from oneshotsam import geometry as g
from oneshotsam import medio
from oneshotsam.errors import OneShotError
from oneshotsam.types import Volume

_C, _S = np.cos(np.radians(30)), np.sin(np.radians(30))
OBLIQUE_DIR = np.array([[_C, -_S, 0], [_S, _C, 0], [0, 0, 1.0]]) @ np.array([[1, 0, 0], [0, _C, -_S], [0, _S, _C]])


def write_sitk(arr: np.ndarray, path: Path, spacing=None, origin=None, direction=None, vector=False) -> Path:
    img = sitk.GetImageFromArray(arr, isVector=vector)
    if spacing is not None:
        img.SetSpacing(spacing)
    if origin is not None:
        img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    sitk.WriteImage(img, str(path))
    return path


@pytest.mark.parametrize("path, stem, suffix, out", [
    ("a/case1.nii.gz", "case1", ".nii.gz", "case1_oneshotsam.nii.gz"),
    ("case1.NII", "case1", ".nii", "case1_oneshotsam.nii.gz"),
    ("x/seg.seg.nrrd", "seg", ".seg.nrrd", "seg_oneshotsam.seg.nrrd"),
    ("img.nrrd", "img", ".nrrd", "img_oneshotsam.nrrd"),
    ("photo.JPG", "photo", ".jpg", "photo_oneshotsam.png"),
    ("s.tif", "s", ".tif", "s_oneshotsam.png"),
    ("scan.mhd", "scan", ".mhd", "scan_oneshotsam.mha"),
    ("im.1.png", "im.1", ".png", "im.1_oneshotsam.png"),
])
def test_suffixes_and_output_names(path, stem, suffix, out):
    assert medio.split_suffix(path) == (stem, suffix)
    assert medio.output_name_for(path) == out


def test_output_name_for_a_dicom_folder(tmp_path):
    d = tmp_path / "CT_series"
    d.mkdir()
    assert medio.output_name_for(d) == "CT_series_oneshotsam.nii.gz"


GREY8 = (np.arange(12, dtype=np.uint8).reshape(3, 4) * 20)
GREY16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
RGB = np.stack([GREY8, GREY8 // 2, 255 - GREY8], axis=-1)
RGBA = np.concatenate([RGB, np.full((3, 4, 1), 128, np.uint8)], axis=-1)

READ_CASES = [  # (id, file name, array written, isVector, expected array)
    ("png-grey8", "a.png", GREY8, False, GREY8),
    ("png-grey16", "a.png", GREY16, False, GREY16),
    ("png-rgb", "a.png", RGB, True, RGB),
    ("png-rgba", "a.png", RGBA, True, RGB),
    ("nifti-2d-int16", "a.nii.gz", GREY16.astype(np.int16) - 1000, False, GREY16.astype(np.int16) - 1000),
    ("mha-2d-float", "a.mha", GREY8.astype(np.float32) / 7, False, GREY8.astype(np.float32) / 7),
]


@pytest.mark.parametrize("case", READ_CASES, ids=[c[0] for c in READ_CASES])
def test_read_image2d_keeps_pixels_and_dtype(tmp_path, case):
    _, name, arr, vector, expected = case
    p = write_sitk(arr, tmp_path / name, vector=vector)
    raw = medio.read_image2d(p)
    assert raw.array.dtype == expected.dtype and np.array_equal(raw.array, expected)
    assert raw.shape_hw == (3, 4) and raw.name == "a"
    with pytest.raises(ValueError):
        raw.array[0, 0] = 1  # read-only


def test_read_jpg_is_rgb_uint8(tmp_path):
    p = write_sitk(np.full((8, 8, 3), 100, np.uint8), tmp_path / "a.jpg", vector=True)
    raw = medio.read_image2d(p)
    assert raw.array.shape == (8, 8, 3) and raw.array.dtype == np.uint8
    assert abs(int(raw.array.mean()) - 100) <= 2


@pytest.mark.parametrize("shape_kji, singleton, expected_rc", [
    ((1, 3, 4), 0, (0.7, 0.5)),  # one k slice: rows j, cols i
    ((3, 1, 4), 1, (2.0, 0.5)),  # one j row: rows k, cols i
    ((3, 4, 1), 2, (2.0, 0.7)),  # one i column: rows k, cols j
])
def test_single_slice_3d_reads_as_2d_and_writes_back(tmp_path, shape_kji, singleton, expected_rc):
    arr = np.arange(12, dtype=np.int16).reshape(shape_kji)
    spacing, origin = (0.5, 0.7, 2.0), (3.0, -4.0, 12.5)
    p = write_sitk(arr, tmp_path / "one.nii.gz", spacing, origin, tuple(OBLIQUE_DIR.ravel()))
    raw = medio.read_image2d(p)
    assert raw.array.shape == tuple(s for a, s in enumerate(shape_kji) if a != singleton)
    assert raw.spacing_mm == pytest.approx(expected_rc)
    labels = (raw.array % 3).astype(np.uint8)
    out = medio.write_label_image_like(labels, raw, tmp_path / "out" / medio.output_name_for(p))
    back = sitk.ReadImage(str(out))
    assert back.GetSize() == sitk.ReadImage(str(p)).GetSize()
    assert np.allclose(back.GetSpacing(), spacing) and np.allclose(back.GetOrigin(), origin)
    assert np.allclose(back.GetDirection(), OBLIQUE_DIR.ravel(), atol=1e-6)
    assert np.array_equal(sitk.GetArrayFromImage(back), np.expand_dims(labels, singleton))


def test_multi_slice_volume_is_not_a_2d_image(tmp_path):
    p = write_sitk(np.zeros((5, 4, 4), np.int16), tmp_path / "vol.nii.gz")
    with pytest.raises(OneShotError, match="5 slices"):
        medio.read_image2d(p)


@pytest.mark.parametrize("content", [b"", b"not an image at all" * 10, b"\x89PNG\r\n\x1a\n broken"])
def test_unreadable_file_names_file_and_formats(tmp_path, content):
    p = tmp_path / "broken.png"
    p.write_bytes(content)
    with pytest.raises(OneShotError) as err:
        medio.read_image2d(p)
    assert "broken.png" in str(err.value) and "NIfTI" in str(err.value)
    with pytest.raises(OneShotError, match="broken.png"):
        medio.read_volume(p)


def test_missing_file(tmp_path):
    with pytest.raises(OneShotError, match="not found"):
        medio.read_image2d(tmp_path / "nope.png")


@pytest.mark.parametrize("src, max_label, out_dtype", [
    ("a.png", 3, np.uint8), ("a.jpg", 3, np.uint8), ("a.png", 300, np.uint16),
])
def test_write_png_labels_like_input(tmp_path, src, max_label, out_dtype):
    p = write_sitk(np.zeros((6, 5, 3), np.uint8), tmp_path / src, vector=True)
    raw = medio.read_image2d(p)
    labels = np.zeros((6, 5), np.int64)
    labels[1:3, 2:4] = max_label
    out = medio.write_label_image_like(labels, raw, tmp_path / medio.output_name_for(p))
    assert out.name == "a_oneshotsam.png"
    back = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert back.dtype == out_dtype and np.array_equal(back, labels)
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []  # no temp left


@pytest.mark.parametrize("labels, match", [
    (np.zeros((5, 6), np.uint8), "pixel grid"),
    (np.full((6, 5), -1, np.int16), "negative"),
    (np.full((6, 5), 0.5, np.float32), "integer"),
])
def test_bad_labels_write_nothing(tmp_path, labels, match):
    raw = medio.read_image2d(write_sitk(np.zeros((6, 5), np.uint8), tmp_path / "a.png"))
    out_dir = tmp_path / "out"
    with pytest.raises(OneShotError, match=match):
        medio.write_label_image_like(labels, raw, out_dir / "a.png")
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_refuses_lossy_or_unknown_label_format(tmp_path):
    raw = medio.read_image2d(write_sitk(np.zeros((6, 5), np.uint8), tmp_path / "a.png"))
    for name in ("a.jpg", "a.gif"):
        with pytest.raises(OneShotError):
            medio.write_label_image_like(np.zeros((6, 5), np.uint8), raw, tmp_path / name)


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path, monkeypatch):
    raw = medio.read_image2d(write_sitk(np.zeros((6, 5), np.uint8), tmp_path / "a.png"))
    out = tmp_path / "res.png"
    out.write_bytes(b"previous")

    def boom(img, path, *a):
        Path(path).write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", boom)
    with pytest.raises(RuntimeError):
        medio.write_label_image_like(np.zeros((6, 5), np.uint8), raw, out)
    assert out.read_bytes() == b"previous"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.png", "res.png"]


VOLUME_GEOMETRIES = [
    ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), tuple(np.eye(3).ravel())),
    ((10.0, -20.0, 5.0), (0.5, 0.7, 3.0), (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0)),
    ((-3.5, 7.25, 100.0), (0.8, 0.8, 2.5), tuple(OBLIQUE_DIR.ravel())),
]


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha", ".seg.nrrd"])
@pytest.mark.parametrize("geom", VOLUME_GEOMETRIES, ids=["identity", "ras-flip-aniso", "oblique"])
def test_label_volume_round_trip_matches_simpleitk(tmp_path, suffix, geom):
    origin, spacing, direction = geom
    lab = np.zeros((4, 5, 6), np.uint8)
    lab[1:3, 2:4, 1:5] = 2
    lab[0, 0, 0] = 7
    vol = Volume(lab, g.affine_from_sitk(origin, spacing, direction), name="lab")
    out = medio.write_label_volume(vol, tmp_path / f"lab{suffix}")
    back = medio.read_label_volume(out)
    assert np.array_equal(back.voxels, lab) and np.allclose(back.ijk_to_lps, vol.ijk_to_lps, atol=1e-5)
    ref = sitk.ReadImage(str(out))  # SimpleITK reads .seg.nrrd as plain NRRD
    assert np.array_equal(sitk.GetArrayFromImage(ref), lab)
    assert np.allclose(ref.GetOrigin(), origin, atol=1e-5) and np.allclose(ref.GetSpacing(), spacing)
    assert np.allclose(ref.GetDirection(), direction, atol=1e-6)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_read_volume_keeps_voxels_and_geometry(tmp_path, suffix):
    origin, spacing, direction = VOLUME_GEOMETRIES[2]
    arr = (np.arange(60, dtype=np.int16).reshape(3, 4, 5) - 30) * 17
    p = write_sitk(arr, tmp_path / f"ct{suffix}", spacing, origin, direction)
    vol = medio.read_volume(p)
    assert vol.name == "ct" and vol.voxels.dtype == np.int16 and np.array_equal(vol.voxels, arr)
    img = sitk.ReadImage(str(p))
    assert np.allclose(vol.ijk_to_lps, g.affine_from_sitk(img.GetOrigin(), img.GetSpacing(), img.GetDirection()))


def test_read_volume_rejects_2d_and_non_integer_labels(tmp_path):
    with pytest.raises(OneShotError, match="2D"):
        medio.read_volume(write_sitk(np.zeros((4, 4), np.uint8), tmp_path / "a.png"))
    p = write_sitk(np.full((2, 3, 3), 0.5, np.float32), tmp_path / "f.nii.gz")
    with pytest.raises(OneShotError, match="integer"):
        medio.read_label_volume(p)
    q = write_sitk(np.full((2, 3, 3), 2.0, np.float32), tmp_path / "f2.nii.gz")
    assert medio.read_label_volume(q).voxels.dtype == np.uint8


def write_dicom_series(arr_kji: np.ndarray, folder: Path, spacing, origin, direction) -> list[Path]:
    """One DICOM file per slice with the tags a series reader needs (:func:`medio.write_dicom_series`)."""
    series_uid = "1.2.826.0.1.3680043.2.1125.1." + str(int(time.time()))
    vol = Volume(arr_kji, g.affine_from_sitk(origin, spacing, direction))
    return medio.write_dicom_series(vol, folder, {
        "0008|0060": "CT", "0020|000e": series_uid, "0020|000d": series_uid + ".1",
        "0018|0050": str(spacing[2]), "0028|1053": "1", "0028|1052": "0"})


@pytest.mark.parametrize("direction", [(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), tuple(OBLIQUE_DIR.ravel())],
                         ids=["axial", "oblique"])
def test_dicom_series_folder(tmp_path, direction):
    arr = (np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) - 50)
    spacing, origin = (0.7, 0.8, 2.5), (-10.0, 20.0, 30.0)
    files = write_dicom_series(arr, tmp_path / "series", spacing, origin, direction)
    for src in (tmp_path / "series", files[2]):  # the folder, or one file of the series
        vol = medio.read_volume(src)
        assert np.array_equal(vol.voxels, arr)
        assert np.allclose(vol.ijk_to_lps, g.affine_from_sitk(origin, spacing, direction), atol=1e-4)
        assert vol.meta["dicom_series_uid"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OneShotError, match="no DICOM"):
        medio.read_volume(empty)


TERM = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
        "~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^")


def test_seg_nrrd_names_colours_terminology_round_trip(tmp_path):
    import slicerio

    aff = g.affine_from_sitk((1, 2, 3), (0.5, 0.5, 2.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1))
    seg = slicerio.create_segmentation((6, 5, 4), aff)  # shape in i, j, k
    liver = np.zeros((6, 5, 4), bool)
    liver[1:3, 1:3, 1:3] = True
    seg_tmp = np.zeros((6, 5, 4), bool)
    seg_tmp[4:6, 0:2, 0:1] = True
    slicerio.add_segment(seg, liver, {"name": "liver", "color": [0.8, 0.2, 0.1],
                                      "terminology": slicerio.segmentation.terminology_entry_from_string(TERM)})
    slicerio.add_segment(seg, seg_tmp, {"name": "tumour", "color": [0.1, 0.9, 0.3]})
    slicerio.write_segmentation(str(tmp_path / "in.seg.nrrd"), seg)

    vol = medio.read_label_volume(tmp_path / "in.seg.nrrd")
    assert vol.voxels.shape == (4, 5, 6) and np.allclose(vol.ijk_to_lps, aff)
    assert np.array_equal(vol.voxels == 1, liver.transpose(2, 1, 0))
    segs = {s["value"]: s for s in vol.meta["segments"]}
    assert segs[1]["name"] == "liver" and segs[1]["color"] == pytest.approx([0.8, 0.2, 0.1])
    assert segs[1]["terminology"] == TERM and segs[2]["name"] == "tumour"

    medio.write_label_volume(vol, tmp_path / "out.seg.nrrd")
    again = slicerio.read_segmentation(str(tmp_path / "out.seg.nrrd"))
    names = {s["name"]: s for s in again["segments"]}
    assert set(names) == {"liver", "tumour"}
    assert names["tumour"]["color"] == pytest.approx([0.1, 0.9, 0.3])
    assert slicerio.segmentation.terminology_entry_to_string(names["liver"]["terminology"]) == TERM
    assert np.array_equal(slicerio.segment_mask(again, names["liver"]), liver)


def test_seg_nrrd_overlapping_layers_get_one_value_each(tmp_path):
    import slicerio

    seg = slicerio.create_segmentation((4, 4, 2), np.eye(4))
    a = np.zeros((4, 4, 2), bool)
    a[0:3, 0:3] = True
    b = np.zeros((4, 4, 2), bool)
    b[2:4, 2:4] = True  # overlaps a at [2, 2, :]
    slicerio.add_segment(seg, a, {"name": "a"})
    slicerio.add_segment(seg, b, {"name": "b"})
    assert seg["voxels"].ndim == 4  # two layers
    slicerio.write_segmentation(str(tmp_path / "o.seg.nrrd"), seg)
    vol = medio.read_label_volume(tmp_path / "o.seg.nrrd")
    assert [s["name"] for s in vol.meta["segments"]] == ["a", "b"]
    assert vol.meta["overlapping_voxels"] == 2
    assert (vol.voxels == 2).sum() == b.sum() and (vol.voxels == 1).sum() == a.sum() - 2


def test_default_segments_for_unnamed_labels():
    segs = medio.segments_for([3, 1], [{"value": 3, "name": "LV", "color": [1, 0, 0]}])
    assert [s["value"] for s in segs] == [1, 3]
    assert segs[0]["name"] == "Segment_1" and segs[1]["name"] == "LV" and segs[1]["color"] == [1, 0, 0]


@pytest.mark.data
def test_real_files(data_root):
    raw = medio.read_image2d(data_root / "jsrt" / "images" / "JPCLN001.png")
    assert raw.array.shape == (512, 512) and raw.array.dtype == np.uint8
    rgb = medio.read_image2d(data_root / "cvc" / "images" / "01.png")
    assert rgb.array.shape == (288, 384, 3)
    ed = medio.read_volume(data_root / "acdc" / "patient001_ED.nii.gz")
    lab = medio.read_label_volume(data_root / "acdc" / "patient001_ED_label.nii.gz")
    assert ed.voxels.shape == lab.voxels.shape and set(np.unique(lab.voxels)) <= {0, 1, 2, 3}
    brain = medio.read_volume(data_root / "pyradiomics" / "brain1_image.nrrd")
    assert brain.spacing_mm == pytest.approx((0.78125, 0.78125, 6.5))
    assert g.slice_geometry(brain, "axial").array_axis == 0


def test_seg_nrrd_opens_in_slicer_mrml(tmp_path):
    """Our .seg.nrrd is read by Slicer's own storage node (slicer-core), names and colours intact."""
    slicer = pytest.importorskip("slicer")
    lab = np.zeros((3, 4, 5), np.uint8)
    lab[1, 1:3, 1:4] = 4
    vol = Volume(lab, g.affine_from_sitk((1, 2, 3), (0.5, 0.6, 2.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1)),
                 meta={"segments": [{"value": 4, "name": "tumour", "color": [0.9, 0.1, 0.2], "terminology": TERM}]})
    out = medio.write_label_volume(vol, tmp_path / "t.seg.nrrd")
    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(out))
    assert storage.ReadData(node) == 1
    seg = node.GetSegmentation()
    assert seg.GetNumberOfSegments() == 1
    s = seg.GetNthSegment(0)
    assert s.GetName() == "tumour" and np.allclose(s.GetColor(), (0.9, 0.1, 0.2), atol=1e-4)
    assert s.GetLabelValue() == 4


def test_grey_alpha_png_and_palette_mask(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    a = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    im = pil.fromarray(a, mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    im.save(tmp_path / "pal.png")
    assert medio.read_image2d(tmp_path / "pal.png").array.shape == (2, 3, 3)  # an image: colours
    mask = medio.read_label_image2d(tmp_path / "pal.png")  # a mask: palette indices = labels
    assert mask.array.shape == (2, 3) and np.array_equal(mask.array, a)
    pil.fromarray(np.dstack([a * 100, np.full_like(a, 255)]), mode="LA").save(tmp_path / "la.png")
    la = medio.read_image2d(tmp_path / "la.png")  # ITK cannot read grey+alpha: OpenCV fallback
    assert la.array.shape == (2, 3) and np.array_equal(la.array, a * 100)
    grey = medio.read_label_image2d(write_sitk(a, tmp_path / "g.png"))
    assert np.array_equal(grey.array, a)
