"""Geometry conventions: LPS/RAS, SimpleITK affines, slicing, resampling (small hand-checkable cases)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from oneshotsam import geometry as g
from oneshotsam.errors import OneShotError
from oneshotsam.types import Volume


def rot(axis: str, deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


OBLIQUE = rot("x", 30) @ rot("z", 30)
# sagittal acquisition: i -> P, j -> I, k -> L (slices stacked left-right)
SAGITTAL_STORAGE = np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], dtype=float)

GEOMETRIES = [  # (id, origin, spacing, direction 3x3)
    ("identity", (0, 0, 0), (1, 1, 1), np.eye(3)),
    ("ras-stored", (10, -20, 5), (1, 1, 1), np.diag([-1.0, -1.0, 1.0])),
    ("oblique", (-3.5, 7.25, 100), (0.8, 0.8, 2.5), OBLIQUE),
    ("anisotropic", (1, 2, 3), (0.5, 0.7, 3.0), np.eye(3)),
    ("sagittal-storage", (0, 0, 0), (2.0, 0.9, 1.1), SAGITTAL_STORAGE),
]


def make_volume(origin, spacing, direction, shape_kji=(5, 6, 7), dtype=np.int16) -> Volume:
    aff = g.affine_from_sitk(origin, spacing, np.asarray(direction).ravel())
    vox = np.arange(np.prod(shape_kji), dtype=dtype).reshape(shape_kji)
    return Volume(voxels=vox, ijk_to_lps=aff, name="v")


@pytest.mark.parametrize("lps, ras", [
    ((1, 2, 3), (-1, -2, 3)),
    ((-10.5, 0, -7), (10.5, 0, -7)),
    ((0, 0, 0), (0, 0, 0)),
])
def test_lps_ras_points(lps, ras):
    assert np.allclose((g.LPS_TO_RAS @ np.array([*lps, 1.0]))[:3], ras)


@pytest.mark.parametrize("case", GEOMETRIES, ids=[c[0] for c in GEOMETRIES])
def test_ras_lps_affine_round_trip(case):
    _, origin, spacing, direction = case
    a = g.affine_from_sitk(origin, spacing, direction.ravel())
    ras = g.ijk_to_ras(a)
    assert np.allclose(ras[:2], -a[:2]) and np.allclose(ras[2:], a[2:])
    assert np.allclose(g.ras_to_lps_affine(ras), a)


@pytest.mark.parametrize("case", GEOMETRIES, ids=[c[0] for c in GEOMETRIES])
def test_affine_matches_simpleitk(case):
    _, origin, spacing, direction = case
    img = sitk.Image([7, 6, 5], sitk.sitkInt16)
    img.SetOrigin(origin)
    img.SetSpacing(spacing)
    img.SetDirection(direction.ravel().tolist())
    a = g.affine_from_sitk(img.GetOrigin(), img.GetSpacing(), img.GetDirection())
    for ijk in [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (6, 5, 4), (2.5, 1.25, 3.0)]:
        expected = img.TransformContinuousIndexToPhysicalPoint(ijk)
        assert np.allclose((a @ np.array([*ijk, 1.0]))[:3], expected, atol=1e-9)
    o, s, d = g.sitk_geometry(a)
    assert np.allclose(o, origin) and np.allclose(s, spacing) and np.allclose(d, direction.ravel())
    vol = g.sitk_to_volume(img)
    back = g.volume_to_sitk(vol)
    assert np.allclose(back.GetOrigin(), origin) and np.allclose(back.GetSpacing(), spacing)
    assert np.allclose(back.GetDirection(), direction.ravel())
    assert vol.spacing_mm == pytest.approx(spacing)


def test_affine_from_sitk_2d_embeds_k_along_s():
    a = g.affine_from_sitk((1, 2), (0.5, 0.25), (1, 0, 0, -1))
    assert np.allclose(a, [[0.5, 0, 0, 1], [0, -0.25, 0, 2], [0, 0, 1, 0], [0, 0, 0, 1]])


@pytest.mark.parametrize("direction, expected", [
    (np.eye(3), {"axial": 0, "coronal": 1, "sagittal": 2}),
    (np.diag([-1.0, -1.0, -1.0]), {"axial": 0, "coronal": 1, "sagittal": 2}),
    (SAGITTAL_STORAGE, {"axial": 1, "coronal": 2, "sagittal": 0}),
    (SAGITTAL_STORAGE @ rot("y", 20), {"axial": 1, "coronal": 2, "sagittal": 0}),
    # coronal acquisition: i -> L, j -> I, k -> P
    (np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float), {"axial": 1, "coronal": 0, "sagittal": 2}),
    (OBLIQUE, {"axial": 0, "coronal": 1, "sagittal": 2}),
])
def test_slice_geometry_picks_anatomical_array_axis(direction, expected):
    vol = make_volume((0, 0, 0), (1.0, 1.5, 2.0), direction)
    for axis, array_axis in expected.items():
        sg = g.slice_geometry(vol, axis)
        assert sg.array_axis == array_axis, axis
        assert sg.n_slices == vol.voxels.shape[array_axis]
        assert sg.positions_mm.shape == (sg.n_slices,)


def test_slice_geometry_spacing_and_thickness_follow_the_rule():
    vol = make_volume((0, 0, 0), (0.5, 0.7, 3.0), np.eye(3))  # spacing i, j, k
    assert g.slice_geometry(vol, "axial").spacing_rc_mm == (0.7, 0.5)  # rows j, cols i
    assert g.slice_geometry(vol, "coronal").spacing_rc_mm == (3.0, 0.5)  # rows k, cols i
    assert g.slice_geometry(vol, "sagittal").spacing_rc_mm == (3.0, 0.7)  # rows k, cols j
    assert g.slice_geometry(vol, "axial").thickness_mm == pytest.approx(3.0)
    assert g.slice_geometry(vol, "sagittal").thickness_mm == pytest.approx(0.5)


@pytest.mark.parametrize("k_dir, sign", [(1.0, 1), (-1.0, -1)])
def test_positions_are_centre_projections_on_the_normal(k_dir, sign):
    vol = make_volume((0, 0, 50), (1, 1, 2.5), np.diag([1.0, 1.0, k_dir]))  # shape (5, 6, 7)
    sg = g.slice_geometry(vol, "axial")
    assert np.allclose(sg.normal_lps, [0, 0, 1])
    assert np.allclose(sg.positions_mm, 50 + k_dir * 2.5 * np.arange(5))
    assert sg.index_step_sign == sign
    # the physical centre of slice 3 is at its position along S
    centre = g.ijk_to_lps_points(vol, [(3.0, 2.5, 3)])[0]
    assert centre @ sg.normal_lps == pytest.approx(sg.positions_mm[3])


def test_flipped_storage_pairs_slices_by_position_not_index():
    a = make_volume((0, 0, 0), (1, 1, 2), np.eye(3))
    b = make_volume((0, 0, 8), (1, 1, 2), np.diag([1.0, 1.0, -1.0]))  # same space, k reversed
    pa, pb = g.slice_geometry(a).positions_mm, g.slice_geometry(b).positions_mm
    assert [int(np.argmin(np.abs(pb - p))) for p in pa] == [4, 3, 2, 1, 0]


@pytest.mark.parametrize("array_axis, index, expected_shape", [(0, 2, (6, 7)), (1, 5, (5, 7)), (2, 0, (5, 6))])
def test_get_set_slice_round_trip(array_axis, index, expected_shape):
    vol = make_volume((0, 0, 0), (1, 1, 1), np.eye(3))
    plane = g.get_slice(vol.voxels, array_axis, index)
    assert plane.shape == expected_shape
    ref = [vol.voxels[index], None, None] if array_axis == 0 else (
        [None, vol.voxels[:, index], None] if array_axis == 1 else [None, None, vol.voxels[:, :, index]])
    ref = ref[array_axis]
    assert np.array_equal(plane, ref)
    work = np.zeros_like(vol.voxels)
    g.set_slice(work, array_axis, index, plane)
    assert np.array_equal(g.get_slice(work, array_axis, index), plane)
    assert work.sum() == plane.sum()  # nothing else written
    with pytest.raises(OneShotError):
        g.set_slice(work, array_axis, index, plane.T if plane.shape[0] != plane.shape[1] else plane[:-1])


def test_get_slice_of_volume_is_read_only_and_index_checked():
    vol = make_volume((0, 0, 0), (1, 1, 1), np.eye(3))
    with pytest.raises(ValueError):
        g.get_slice(vol.voxels, 0, 0)[0, 0] = 1
    for bad in (5, -1):
        with pytest.raises(OneShotError):
            g.get_slice(vol.voxels, 0, bad)


@pytest.mark.parametrize("case", GEOMETRIES, ids=[c[0] for c in GEOMETRIES])
@pytest.mark.parametrize("array_axis", [0, 1, 2])
def test_slice_plane_to_lps_places_pixels(case, array_axis):
    _, origin, spacing, direction = case
    vol = make_volume(origin, spacing, direction)
    index = 2
    m = g.slice_plane_to_lps(vol, array_axis, index)
    plane = g.get_slice(vol.voxels, array_axis, index)
    for row, col in [(0, 0), (1, 3), (plane.shape[0] - 1, plane.shape[1] - 1)]:
        kji = [row, col]
        kji.insert(array_axis, index)  # voxel of plane[row, col]
        assert plane[row, col] == vol.voxels[tuple(kji)]
        expected = g.ijk_to_lps_points(vol, [kji[::-1]])[0]
        assert np.allclose((m @ [col, row, 0, 1])[:3], expected)


def _blob_volume(affine: np.ndarray, centre_ijk, shape=(16, 16, 16)) -> Volume:
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    ci, cj, ck = centre_ijk
    vox = np.exp(-((i - ci) ** 2 + (j - cj) ** 2 + (k - ck) ** 2) / 2.0).astype(np.float32)
    return Volume(voxels=vox, ijk_to_lps=affine)


@pytest.mark.parametrize("direction", [np.eye(3), rot("z", 30) @ rot("x", 20), SAGITTAL_STORAGE])
def test_resample_lands_bright_voxel_at_its_physical_point(direction):
    moving_aff = g.affine_from_sitk((5.0, -3.0, 2.0), (1.2, 1.2, 1.5), direction.ravel())
    moving = _blob_volume(moving_aff, (7, 8, 6))
    p_lps = g.ijk_to_lps_points(moving, [(7, 8, 6)])[0]
    ref = Volume(np.zeros((40, 40, 40), np.float32), g.affine_from_sitk((-15, -20, -15), (1, 1, 1), np.eye(3).ravel()))
    out = g.resample_volume(moving, ref)
    assert out.voxels.shape == ref.voxels.shape and np.allclose(out.ijk_to_lps, ref.ijk_to_lps)
    peak_ijk = np.array(np.unravel_index(np.argmax(out.voxels), out.voxels.shape)[::-1], float)
    assert np.linalg.norm(g.ijk_to_lps_points(ref, [peak_ijk])[0] - p_lps) <= 0.87  # within half a voxel diagonal
    # with a transform (reference point -> moving point = p + t), the blob appears at P - t
    t = (3.0, -2.0, 4.0)
    out_t = g.resample_volume(moving, ref, transform=sitk.TranslationTransform(3, t))
    peak_t = np.array(np.unravel_index(np.argmax(out_t.voxels), out_t.voxels.shape)[::-1], float)
    assert np.linalg.norm(g.ijk_to_lps_points(ref, [peak_t])[0] - (p_lps - t)) <= 0.87


def test_resample_with_rigid_transform_moves_blob_to_inverse_point():
    moving = _blob_volume(np.eye(4), (8, 8, 8))
    p_lps = np.array([8.0, 8.0, 8.0])
    tf = sitk.Euler3DTransform((8.0, 8.0, 8.0), np.radians(20), np.radians(-10), np.radians(35), (2.0, -1.0, 1.5))
    out = g.resample_volume(moving, Volume(np.zeros((16, 16, 16), np.float32), np.eye(4)), transform=tf)
    expected = np.array(tf.GetInverse().TransformPoint(tuple(p_lps)))  # reference point that maps onto P
    peak = np.array(np.unravel_index(np.argmax(out.voxels), out.voxels.shape)[::-1], float)
    assert np.linalg.norm(peak - expected) <= 0.87


def test_resample_nearest_keeps_label_values_and_dtype():
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[1:3, 1:3, 1:3] = 7
    moving = Volume(labels, np.diag([2.0, 2.0, 2.0, 1.0]))
    ref = Volume(np.zeros((8, 8, 8), np.uint8), np.eye(4))
    out = g.resample_volume(moving, ref, interpolator="nearest", default_value=0)
    assert out.voxels.dtype == np.uint8 and set(np.unique(out.voxels)) == {0, 7}
    assert out.voxels[3, 3, 3] == 7 and out.voxels[0, 0, 0] == 0
    assert (out.voxels == 7).sum() == 4 ** 3  # 2x2x2 voxels of 2 mm = 4x4x4 of 1 mm
    with pytest.raises(OneShotError):
        g.resample_volume(moving, ref, interpolator="cubic-ish")


@pytest.mark.parametrize("shape, spacing, expected_shape, expected_s", [
    ((4, 6), (2.0, 1.0), (8, 6), 1.0),
    ((4, 6), (1.0, 1.5), (4, 9), 1.0),
    ((3, 3), (0.5, 0.5), (3, 3), 0.5),
])
def test_inplane_square_round_trip(shape, spacing, expected_shape, expected_s):
    labels = (np.arange(np.prod(shape)) % 5).reshape(shape).astype(np.uint8)
    sq, s = g.inplane_resample_square(labels, spacing, interpolator="nearest")
    assert sq.shape == expected_shape and s == expected_s and sq.dtype == np.uint8
    back = g.inplane_resample_back(sq, shape)
    assert np.array_equal(back, labels)
    img = labels.astype(np.float32)
    sq_img, _ = g.inplane_resample_square(img, spacing)
    assert sq_img.dtype == np.float32 and sq_img.shape == expected_shape
    assert sq_img.min() >= img.min() and sq_img.max() <= img.max()


def test_inplane_nearest_is_exact_duplication():
    plane = np.array([[1, 2], [3, 4]], np.int32)
    sq, _ = g.inplane_resample_square(plane, (3.0, 1.0), interpolator="nearest")
    assert np.array_equal(sq, [[1, 2], [1, 2], [1, 2], [3, 4], [3, 4], [3, 4]])


def test_unknown_axis_is_a_user_error():
    vol = make_volume((0, 0, 0), (1, 1, 1), np.eye(3))
    with pytest.raises(OneShotError, match="axial, coronal, sagittal"):
        g.slice_geometry(vol, "transverse")


def test_volume_like_and_same_grid():
    vol = make_volume((0, 0, 0), (1, 1, 1), np.eye(3))
    lab = g.volume_like(vol, np.zeros(vol.voxels.shape, np.uint8), name="lab")
    assert g.same_grid(vol, lab) and lab.name == "lab"
    other = make_volume((0, 0, 0.1), (1, 1, 1), np.eye(3))
    assert not g.same_grid(vol, other)
    assert np.allclose(g.lps_to_ijk_points(vol, g.ijk_to_lps_points(vol, [(1, 2, 3)])), [(1, 2, 3)])
    with pytest.raises(OneShotError):
        g.volume_like(vol, np.zeros((2, 2, 2)))
