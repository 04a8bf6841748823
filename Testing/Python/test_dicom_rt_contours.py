"""Written contours enclose exactly the labelled voxels: a planning system that fills them
by the usual rule (pixels whose centre is inside the polygon, even-odd over a ROI's
contours on a slice; here OpenCV's ``pointPolygonTest``, independent of our reader) reads
back the labels voxel for voxel, and the polygon area is the voxel area. Round trips both
ways: labels -> RTSTRUCT -> labels, and RTSTRUCTs of other writers (rt-utils, polygons in
mm) -> labels -> RTSTRUCT -> labels."""

from __future__ import annotations

import numpy as np
import pytest

from dicom_synth import affine, dice, phantom, rotation, write_ct_series
from oneshotsam import geometry, medio
from oneshotsam.contours import mask_contours, polygon_area
from oneshotsam.label_outputs import write_label_formats
from oneshotsam.types import Volume
from test_dicom_rt_read import _analytic_rtstruct

pydicom = pytest.importorskip("pydicom")
cv2 = pytest.importorskip("cv2")


def planning_fill(contours_xy: list[np.ndarray], shape_rc: tuple[int, int]) -> np.ndarray:
    """A planning system's reading: pixel centres strictly inside an odd number of the
    polygons (OpenCV's point-in-polygon test; on the line does not count)."""
    out = np.zeros(shape_rc, bool)
    jj, ii = np.mgrid[0:shape_rc[0], 0:shape_rc[1]]
    for c in contours_xy:
        poly = np.asarray(c, np.float32).reshape(-1, 1, 2)
        inside = np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), False) > 0
                           for x, y in zip(ii.ravel(), jj.ravel())]).reshape(shape_rc)
        out ^= inside
    return out


def _m(rows: list[str]) -> np.ndarray:
    return np.array([[ch == "#" for ch in r] for r in rows])


CASES = {  # mask, expected number of contours (outer boundaries + holes)
    "one pixel": (_m(["...", ".#.", "..."]), 1),
    "one-pixel line": (_m([".....", ".###.", "....."]), 1),
    "diagonal pair": (_m(["....", ".#..", "..#.", "...."]), 2),
    "ring": (_m([".....", ".###.", ".#.#.", ".###.", "....."]), 2),
    "island in a hole": (_m(["#######", "#.....#", "#.###.#", "#.#.#.#", "#.###.#", "#.....#",
                             "#######"]), 4),
    "touching the border": (_m(["##.", "#..", "..#"]), 2),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_contours_enclose_exactly_the_pixels(name):
    mask, n_contours = CASES[name]
    cs = mask_contours(mask)
    assert len(cs) == n_contours
    assert all(len(c) >= 4 for c in cs)  # never a 1-2 point "closed" contour
    assert all(np.allclose((c + 0.5) % 1.0, 0.0) for c in cs)  # vertices at pixel corners
    assert sum(polygon_area(c) for c in cs) == pytest.approx(mask.sum())  # holes count negative
    assert np.array_equal(planning_fill(cs, mask.shape), mask)


def test_one_pixel_is_a_unit_square():
    (c,) = mask_contours(CASES["one pixel"][0])
    assert sorted(map(tuple, c)) == [(0.5, 0.5), (0.5, 1.5), (1.5, 0.5), (1.5, 1.5)]


def test_random_masks_read_back_by_the_planning_rule():
    rng = np.random.default_rng(7)
    for _ in range(40):
        mask = rng.random((rng.integers(2, 12), rng.integers(2, 12))) < rng.uniform(0.2, 0.8)
        cs = mask_contours(mask)
        assert np.array_equal(planning_fill(cs, mask.shape), mask)
        assert sum(polygon_area(c) for c in cs) == pytest.approx(mask.sum())


def _planning_read(path, ref: Volume) -> dict[str, np.ndarray]:
    """Every ROI of an RTSTRUCT filled by :func:`planning_fill` on ``ref``'s slices."""
    ds = pydicom.dcmread(path)
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    out = {}
    for rc in ds.ROIContourSequence:
        per_k: dict[int, list[np.ndarray]] = {}
        for c in rc.get("ContourSequence", []):
            assert c.ContourGeometricType == "CLOSED_PLANAR" and int(c.NumberOfContourPoints) >= 4
            ijk = geometry.lps_to_ijk_points(ref, np.asarray(c.ContourData, float).reshape(-1, 3))
            per_k.setdefault(int(round(ijk[0, 2])), []).append(ijk[:, :2])
        m = np.zeros(ref.shape_kji, bool)
        for k, cs in per_k.items():
            m[k] = planning_fill(cs, ref.shape_kji[1:])
        out[names[int(rc.ReferencedROINumber)]] = m
    return out


def _write_rtstruct(labels: np.ndarray, ref: Volume, names: list[str], out_dir) -> object:
    segs = [{"value": n, "name": name, "color": [0.5, 0.5, 0.5]} for n, name in enumerate(names, 1)]
    return write_label_formats(Volume(labels, ref.ijk_to_lps, "l"), ["rtstruct"], out_dir, "rs",
                               segments=segs, grid=ref)["rtstruct"]


def test_labels_to_rtstruct_to_labels_by_the_planning_rule(tmp_path):
    shape = (6, 36, 44)
    aff = affine((0.7, 1.2, 2.0), (-15.0, 8.0, 40.0), rotation("z", 20) @ rotation("x", 10))
    vol, masks = phantom(shape, aff)
    write_ct_series(tmp_path / "ct", vol.voxels, aff)
    ref = medio.read_volume(tmp_path / "ct")
    lab = np.zeros(shape, np.uint8)
    for n, m in enumerate(masks.values(), start=1):
        lab[m] = n
    rs = _write_rtstruct(lab, ref, list(masks), tmp_path / "o")
    back = _planning_read(rs, ref)
    for n, name in enumerate(masks, start=1):
        assert np.array_equal(back[name], lab == n), name
    # polygon area x slice spacing = voxel volume, per ROI (mm^3)
    ds = pydicom.dcmread(rs)
    normal = np.cross(aff[:3, 0], aff[:3, 1])
    normal /= np.linalg.norm(normal)
    for rc, (n, name) in zip(ds.ROIContourSequence, enumerate(masks, start=1)):
        area = 0.0
        for c in rc.ContourSequence:
            p = np.asarray(c.ContourData, float).reshape(-1, 3)
            area += 0.5 * float(np.cross(p - p[0], np.roll(p, -1, axis=0) - p[0]).sum(axis=0) @ normal)
        # (Contour Data has 4 decimals in mm: the area agrees to 1e-4 of the voxel volume)
        assert abs(area) * 2.0 == pytest.approx(np.count_nonzero(lab == n) * 0.7 * 1.2 * 2.0, rel=1e-4), name


@pytest.mark.filterwarnings("ignore:'FileDataset.is_:DeprecationWarning")  # rt-utils' own pydicom use
def test_rt_utils_structure_set_to_labels_to_rtstruct(tmp_path):
    rt_utils = pytest.importorskip("rt_utils")
    shape = (5, 32, 40)
    aff = affine((0.9, 0.9, 2.5), (5.0, -20.0, 30.0), rotation("z", 15))
    vol, masks = phantom(shape, aff)
    write_ct_series(tmp_path / "ct", vol.voxels, aff)
    rs = rt_utils.RTStructBuilder.create_new(dicom_series_path=str(tmp_path / "ct"))
    for name, m in masks.items():
        rs.add_roi(mask=np.transpose(m, (1, 2, 0)), color=[30, 90, 200], name=name)
    rs.save(str(tmp_path / "rtutils.dcm"))
    ref = medio.read_volume(tmp_path / "ct")
    lab = np.asarray(medio.read_label_volume(tmp_path / "rtutils.dcm", reference=ref).voxels)
    for n, m in enumerate(masks.values(), start=1):
        assert np.array_equal(lab == n, m)
    back = _planning_read(_write_rtstruct(lab, ref, list(masks), tmp_path / "o"), ref)
    for name, m in masks.items():
        assert np.array_equal(back[name], m), name


def test_polygons_of_another_writer_to_labels_to_rtstruct(tmp_path):
    shape = (6, 40, 48)
    aff = affine((0.8, 1.1, 2.5), (-30.0, -25.0, 12.0))
    vol, _ = phantom(shape, aff)
    write_ct_series(tmp_path / "ct", vol.voxels, aff)
    expected = _analytic_rtstruct(tmp_path / "poly.dcm", tmp_path / "ct", aff, shape)
    ref = medio.read_volume(tmp_path / "ct")
    lab = np.asarray(medio.read_label_volume(tmp_path / "poly.dcm", reference=ref,
                                             rois=["Ring", "Pair"]).voxels)
    assert dice(lab == 1, expected["Ring"]) > 0.95 and dice(lab == 2, expected["Pair"]) > 0.9
    back = _planning_read(_write_rtstruct(lab, ref, ["Ring", "Pair"], tmp_path / "o"), ref)
    assert np.array_equal(back["Ring"], lab == 1) and np.array_equal(back["Pair"], lab == 2)
