"""The walk's per-label opening (``VolumeWarpConfig.open_fraction``): hand-checkable masks,
then one real warp engine walking an annotation with a thin spur."""

from __future__ import annotations

import numpy as np
import pytest

from oneshotsam.volume.warpvol import VolumeWarpConfig, _inscribed_radius_px, _open_labels

_YY, _XX = np.mgrid[:40, :40]


def _disc(cy: float, cx: float, r: float) -> np.ndarray:
    return (_YY - cy) ** 2 + (_XX - cx) ** 2 <= r * r


def _disc_with_spur(width: int) -> np.ndarray:
    m = _disc(20, 14, 8)
    m[20:20 + width, 22:36] = True  # a spur `width` pixels wide, 14 long, to the right
    return m


# (name, labels, radius per label, expected labels)
CASES = [
    ("radius 0: unchanged", _disc_with_spur(1).astype(np.uint8), {1: 0}, _disc_with_spur(1).astype(np.uint8)),
    ("radius 1 cuts a 1-px spur", _disc_with_spur(1).astype(np.uint8), {1: 1}, _disc(20, 14, 8).astype(np.uint8)),
    ("a label without a radius is kept",
     _disc_with_spur(1).astype(np.uint8) * 2, {1: 3}, _disc_with_spur(1).astype(np.uint8) * 2),
    ("empty", np.zeros((40, 40), np.uint8), {1: 2}, np.zeros((40, 40), np.uint8)),
]


@pytest.mark.parametrize("name,labels,radius,expected", CASES, ids=[c[0] for c in CASES])
def test_open_labels_table(name, labels, radius, expected):
    out = _open_labels(labels, radius)
    assert out.dtype == labels.dtype
    np.testing.assert_array_equal(out, expected)


def test_thin_ring_label_with_radius_0_survives_beside_an_opened_one():
    """Myocardium-like: a 3-px ring (radius 0 from its own thickness) around a cavity opened by 2."""
    cavity = _disc(20, 20, 9)
    ring = _disc(20, 20, 12) & ~cavity
    labels = np.where(ring, 2, np.where(cavity, 3, 0)).astype(np.uint8)
    out = _open_labels(labels, {2: 0, 3: 2})
    np.testing.assert_array_equal(out == 2, ring)
    assert (out == 3).sum() >= 0.97 * cavity.sum() and not ((out == 3) & ~cavity).any()


@pytest.mark.parametrize("mask,expected", [(np.zeros((5, 5), bool), 0.0), (_disc(20, 20, 6), 6.08),
                                           (np.pad(np.ones((3, 9), bool), 2), 2.0)])
def test_inscribed_radius(mask, expected):
    """The largest distance to a background pixel centre."""
    assert _inscribed_radius_px(mask) == pytest.approx(expected, abs=0.01)


def test_default_fraction_is_the_preset_value():
    assert VolumeWarpConfig().open_fraction == VolumeWarpConfig.from_overrides({}).open_fraction == 0.15


def test_walked_slices_lose_a_thin_spur_the_annotation_keeps():
    """A bright 1-px spur is drawn with the ball on slice 3; the refinement keeps it (it is
    bright) so a walk without the opening carries it to every slice; with it, the walked
    slices lose it and the annotated slice keeps it."""
    pytest.importorskip("torch")
    import torch

    from oneshotsam.types import Volume
    from oneshotsam.volume.pipeline import PropagationConfig, propagate
    from volume_synth import affine, ellipsoid, sample

    tiny = (("steps", 4), ("resolution", 32), ("batch", 2), ("aug_per_step", 1), ("cross_repeat", 1))
    shape = (8, 32, 32)
    aff = affine((1.0, 1.0, 1.5), (0, 0, 0))
    ball = ellipsoid((16, 15, 5), (9, 9, 3))
    vol = sample(lambda p: 0.2 + 0.7 * ball(p), shape, aff, "tiny")
    truth = (sample(ball, shape, aff).voxels > 0.5).astype(np.uint8)
    img = np.array(vol.voxels, dtype=np.float32)
    spur = np.zeros(shape[1:], bool)
    spur[15:17, 24:31] = True  # right of the ball, on every slice
    img[:, spur] = 0.9
    vol = Volume(img, vol.ijk_to_lps, "tiny")
    lab = np.zeros_like(truth)
    lab[3] = truth[3]
    lab[3][spur] = 1
    assert lab[3][15, 23] == 1 and truth[3][15, 23] == 1  # the spur touches the ball

    def run(fraction):
        torch.manual_seed(0)
        cfg = PropagationConfig(method="medpersam-warp", window="0,1", device="cpu",
                                method_overrides=tiny + (("open_fraction", fraction),))
        res = propagate(vol, Volume(lab, aff, "lab"), config=cfg)
        return np.asarray(res.label_volumes[0].voxels), res.report

    plain, _ = run(0.0)
    opened, report = run(0.4)
    assert report["engine"]["settings"]["open_fraction"] == 0.4
    np.testing.assert_array_equal(opened[3], lab[3])
    far = np.zeros_like(spur)
    far[15:17, 26:31] = True  # the spur's half away from the ball
    walked = [k for k in (2, 4) if plain[k].any()]
    assert walked == [2, 4] and all(plain[k][far].sum() >= 6 for k in walked)
    assert all(opened[k][far].sum() == 0 and opened[k].sum() > 0.8 * plain[k].sum() for k in walked)
