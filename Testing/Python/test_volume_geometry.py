"""Follow-up geometry: slices paired by PHYSICAL position and labels written back
in the target's own grid (flips, oblique, permuted axes, anisotropic voxels,
a moved follow-up recovered by registration). A stand-in method labels bright
pixels, so the right answer is known: the target's own bright voxels."""

from __future__ import annotations

import numpy as np
import pytest

from oneshotsam.geometry import get_slice, slice_geometry
from oneshotsam.types import Volume
from oneshotsam.volume.pipeline import PropagationConfig, SliceEvent, propagate
from volume_synth import BrightMethod, CopyMethod, affine, ellipsoid, moved, rotation, sample


def world(p: np.ndarray) -> np.ndarray:
    """Faint asymmetric body (0.3 and 0.45) with a bright, asymmetric structure
    (1.0): an ellipsoid plus an off-centre lump, so rotations are identifiable."""
    body = np.maximum(ellipsoid((0, 0, 0), (20, 16, 14))(p) * 0.3,
                      ellipsoid((-12, 9, 2), (5, 4, 6))(p) * 0.45)
    bright = np.maximum(ellipsoid((2, -1, 0), (7, 5, 8))(p), ellipsoid((8, 4, 3), (3, 3, 3))(p))
    return np.maximum(body, bright)


REF_AFF = affine((1.2, 1.2, 2.0), (-24, -24, -22))
REF_SHAPE = (23, 40, 40)


def _reference():
    ref = sample(world, REF_SHAPE, REF_AFF, "ref")
    lab = Volume((np.asarray(ref.voxels) > 0.5).astype(np.uint8), REF_AFF, "lab")
    return ref, lab


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two binary masks (:func:`oneshotsam.evaluate.dice`)."""
    from oneshotsam.evaluate import dice as label_dice

    return label_dice(np.asarray(a) > 0, np.asarray(b) > 0, 1)


def centroid_lps(vol: Volume, mask: np.ndarray) -> np.ndarray:
    k, j, i = np.nonzero(mask)
    ijk = np.stack([i, j, k], 1).astype(float)
    return (ijk @ vol.ijk_to_lps[:3, :3].T + vol.ijk_to_lps[:3, 3]).mean(0)


OBLIQUE = rotation("z", 25) @ rotation("x", 12)
PERMUTED = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0.0]])  # i -> S, j -> L, k -> P (sagittal-like storage)
TARGET_GRIDS = {
    "same-grid": (REF_SHAPE, REF_AFF),
    "lps-ras-flip": ((24, 38, 42), affine((1.1, 1.3, 2.1), (23, 22, -23), np.diag([-1.0, -1.0, 1.0]))),
    "oblique-anisotropic": ((18, 44, 40), affine((1.0, 1.1, 2.6), (-22, -25, -20), OBLIQUE)),
    "permuted-axes": ((36, 34, 30), affine((1.5, 1.3, 1.4), (-22, -23, 22), PERMUTED)),
}


@pytest.mark.parametrize("grid", sorted(TARGET_GRIDS))
def test_no_align_labels_land_on_the_same_physical_points(grid: str) -> None:
    shape, aff = TARGET_GRIDS[grid]
    if grid == "permuted-axes":  # origin so that the grid covers the structure
        aff = aff.copy()
        aff[:3, 3] = -(aff[:3, :3] @ (np.array(shape[::-1]) - 1) / 2.0)
    ref, lab = _reference()
    tgt = sample(world, shape, aff, "visit2")
    events: list[SliceEvent] = []
    cfg = PropagationConfig(method="bright-test", propagation="chain", window="0,1", align=False)
    res = propagate(ref, lab, [tgt], cfg, on_slice=events.append, method=BrightMethod())
    out = res.label_volumes[0]
    assert out.shape_kji == tgt.shape_kji and np.array_equal(out.ijk_to_lps, tgt.ijk_to_lps)
    truth = np.asarray(tgt.voxels) > 0.5
    pred = np.asarray(out.voxels) > 0
    assert dice(pred, truth) > 0.9, grid
    vox = np.linalg.norm(tgt.ijk_to_lps[:3, :3], axis=0).max()
    assert np.linalg.norm(centroid_lps(out, pred) - centroid_lps(tgt, truth)) < vox
    # events are in the TARGET's own slicing and agree with the written volume
    tsg = slice_geometry(tgt, "axial")
    assert events and {e.array_axis for e in events} == {tsg.array_axis}
    for e in events:
        np.testing.assert_array_equal(e.labels, get_slice(out.voxels, tsg.array_axis, e.slice_index))
    assert res.report["targets"][0]["alignment"]["kind"] == "identity"


def test_moved_followup_is_aligned_and_written_back() -> None:
    """A follow-up whose anatomy moved (rotation 8 deg + shift 5 mm) on an oblique,
    anisotropic grid: registration recovers the motion; without it the labels miss."""
    ref, lab = _reference()
    rot = rotation("z", 8.0)
    shift = (4.0, -3.0, 5.0)
    aff = affine((1.3, 1.1, 2.4), (-26, -22, -20), rotation("x", 10))
    tgt = sample(moved(world, rot, shift), (22, 42, 38), aff, "visit2")
    truth = np.asarray(tgt.voxels) > 0.5
    base = PropagationConfig(method="bright-test", propagation="chain", window="0,1",
                             registration="rigid")
    aligned = propagate(ref, lab, [tgt], base, method=CopyMethod())
    rep = aligned.report["targets"][0]["alignment"]
    assert rep["kind"] == "rigid" and rep["metric_aligned"] < rep["metric_identity"]
    assert abs(rep["rotation_deg"] - 8.0) < 1.5
    assert np.allclose(rep["offset_mm"], shift, atol=0.5)
    d_aligned = dice(np.asarray(aligned.label_volumes[0].voxels) > 0, truth)
    unaligned = propagate(ref, lab, [tgt], PropagationConfig(
        method="copy-test", propagation="chain", window="0,1", align=False), method=CopyMethod())
    d_unaligned = dice(np.asarray(unaligned.label_volumes[0].voxels) > 0, truth)
    assert d_aligned > 0.85 and d_unaligned < d_aligned - 0.2, (d_aligned, d_unaligned)


def test_coronal_axis_on_anisotropic_voxels_uses_square_pixels() -> None:
    """Coronal slices of a 1.2 x 1.2 x 2 mm volume have non-square pixels; the
    method sees square ones and the labels come back on the native grid."""
    ref, lab = _reference()
    sg = slice_geometry(ref, "coronal")
    seen = []

    class Spy(BrightMethod):
        def segment(self, reference, reference_labels, targets, progress=None):
            seen.append((reference.spacing_mm, reference.shape_hw))
            return super().segment(reference, reference_labels, targets, progress)

    truth = np.asarray(lab.voxels)
    mid = int(np.argmax(truth.sum(axis=(0, 2))))
    one = np.zeros_like(truth)
    one[:, mid, :] = truth[:, mid, :]
    res = propagate(ref, Volume(one, REF_AFF), config=PropagationConfig(
        method="bright-test", propagation="chain", window="0,1", axis="coronal"), method=Spy())
    assert sg.array_axis == 1 and sg.spacing_rc_mm == (2.0, 1.2)
    assert all(abs(s[0] - s[1]) < 1e-6 for s, _ in seen)
    assert seen[0][1] == (round(REF_SHAPE[0] * 2.0 / 1.2), REF_SHAPE[2])
    assert dice(np.asarray(res.label_volumes[0].voxels) > 0, truth > 0) > 0.95


def test_alignment_is_bit_reproducible_and_leaves_itk_threads_as_they_were() -> None:
    """The same follow-up aligned three times, with SimpleITK's process default at 4
    threads, gives the SAME transform to the last bit (one ITK thread inside: with
    several, the metric's per-thread sums are added in a varying order), and the
    process default is 4 again afterwards."""
    import SimpleITK as sitk

    from oneshotsam.volume.align import align_volumes

    ref, _ = _reference()
    aff = affine((1.3, 1.1, 2.4), (-26, -22, -20), rotation("x", 10))
    tgt = sample(moved(world, rotation("z", 8.0), (4.0, -3.0, 5.0)), (22, 42, 38), aff, "visit2")
    old = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(4)
    try:
        params = [align_volumes(ref, tgt, (0.0, 1.0)).transform.GetParameters() for _ in range(3)]
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 4
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(old)
    assert params[0] == params[1] == params[2]
