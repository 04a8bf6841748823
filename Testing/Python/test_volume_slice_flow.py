"""The walk's optical flow (``oneshotsam.volume.slice_flow``, ``VolumeWarpConfig.walk_flow``):
hand-checkable tables for the label transport and bad windows, a shifted disc, then one
real warp engine walking a structure that drifts sideways from slice to slice."""

from __future__ import annotations

import numpy as np
import pytest

from oneshotsam.errors import OneShotError
from oneshotsam.volume.slice_flow import pull_labels, slice_flow
from oneshotsam.volume.warpvol import VolumeWarpConfig

_YY, _XX = np.mgrid[:48, :48]


def _disc(cy: float, cx: float, r: float) -> np.ndarray:
    return (_YY - cy) ** 2 + (_XX - cx) ** 2 <= r * r


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


@pytest.mark.parametrize("window", [1, 2, 4, 0, -3])
def test_slice_flow_refuses_an_even_or_tiny_window(window):
    plane = np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match="odd and >= 3"):
        slice_flow(plane, plane, window)


_LAB = np.array([[0, 1, 2],
                 [3, 4, 5]], dtype=np.uint8)
# (name, flow (fx, fy) everywhere, expected): out[y, x] = labels[y + fy, x + fx], 0 outside
PULLS = [("zero flow", (0.0, 0.0), _LAB),
         ("one column right", (1.0, 0.0), np.array([[1, 2, 0], [4, 5, 0]], np.uint8)),
         ("one row down", (0.0, 1.0), np.array([[3, 4, 5], [0, 0, 0]], np.uint8)),
         ("one column left", (-1.0, 0.0), np.array([[0, 0, 1], [0, 3, 4]], np.uint8))]


@pytest.mark.parametrize("name,fxy,expected", PULLS, ids=[p[0] for p in PULLS])
def test_pull_labels_table(name, fxy, expected):
    flow = np.zeros(_LAB.shape + (2,), np.float32)
    flow[..., 0], flow[..., 1] = fxy
    out = pull_labels(_LAB, flow)
    assert out.dtype == _LAB.dtype
    np.testing.assert_array_equal(out, expected)


def test_pull_labels_refuses_a_flow_of_another_grid():
    with pytest.raises(ValueError, match="does not match"):
        pull_labels(_LAB, np.zeros((3, 3, 2), np.float32))


def test_identical_slices_keep_the_labels():
    src = 0.1 + 0.8 * _disc(24, 24, 9)
    lab = _disc(24, 24, 9).astype(np.uint8)
    np.testing.assert_array_equal(pull_labels(lab, slice_flow(src, src.copy(), 9)), lab)


@pytest.mark.parametrize("dy,dx", [(0, 3), (2, -2), (-3, 0)])
def test_a_shifted_disc_is_followed(dy, dx):
    """A bright disc moved by (dy, dx) px between two slices: the labels carried along the
    flow match the moved disc much better than the labels left where they were."""
    src_mask, dst_mask = _disc(24, 24, 9), _disc(24 + dy, 24 + dx, 9)
    src, dst = 0.1 + 0.8 * src_mask, 0.1 + 0.8 * dst_mask
    pulled = pull_labels(src_mask.astype(np.uint8), slice_flow(src, dst, 9)) == 1
    assert _dice(pulled, dst_mask) >= 0.9 > _dice(src_mask, dst_mask) + 0.05


def test_contrast_change_alone_is_not_motion():
    """One joint intensity window: the same disc, 20 % darker on the second slice, stays put."""
    src = 0.1 + 0.8 * _disc(24, 24, 9)
    lab = _disc(24, 24, 9).astype(np.uint8)
    assert _dice(pull_labels(lab, slice_flow(src, 0.8 * src, 9)) == 1, lab == 1) >= 0.97


@pytest.mark.parametrize("over,match", [({"walk_flow": "demons"}, "walk_flow 'demons' is not known"),
                                        ({"flow_window_px": 0}, "odd whole number of pixels >= 3"),
                                        ({"flow_window_px": 8}, "odd whole number of pixels >= 3"),
                                        ({"flow_window_px": 7.5}, "flow_window_px expects an integer")])
def test_bad_settings_say_what_to_use(over, match):
    with pytest.raises(OneShotError, match=match):
        VolumeWarpConfig.from_overrides(over)


def test_default_is_the_preset_value():
    cfg = VolumeWarpConfig.from_overrides({})
    assert (cfg.walk_flow, cfg.flow_window_px) == (VolumeWarpConfig().walk_flow, VolumeWarpConfig().flow_window_px) == (
        "farneback", 7)


def test_walk_follows_a_structure_drifting_sideways():
    """A ball whose centre moves 2 px sideways per slice, annotated on its middle slice:
    walked along the slices' optical flow, the outer slices overlap the truth better than
    walked along the (tiny, barely trained) network's flow, and the report says which."""
    pytest.importorskip("torch")
    import torch

    from oneshotsam.types import Volume
    from oneshotsam.volume.pipeline import PropagationConfig, propagate
    from volume_synth import affine

    shape = (9, 48, 48)
    zz, yy, xx = np.mgrid[:shape[0], :shape[1], :shape[2]]
    truth = ((yy - 24) ** 2 + (xx - (24 + 2 * (zz - 4))) ** 2 <= 8 ** 2).astype(np.uint8)
    rng = np.random.default_rng(0)
    img = (0.15 + 0.7 * truth + 0.02 * rng.standard_normal(shape)).astype(np.float32)
    aff = affine((1.0, 1.0, 1.0), (0, 0, 0))
    lab = np.zeros_like(truth)
    lab[4] = truth[4]
    tiny = (("steps", 4), ("resolution", 32), ("batch", 2), ("aug_per_step", 1), ("cross_repeat", 1),
            ("flow_window_px", 9))

    def run(flow):
        torch.manual_seed(0)
        cfg = PropagationConfig(method="medpersam-warp", window="0,1", device="cpu",
                                method_overrides=tiny + (("walk_flow", flow),))
        res = propagate(Volume(img, aff, "drift"), Volume(lab, aff, "lab"), config=cfg)
        return np.asarray(res.label_volumes[0].voxels), res.report

    along, report = run("farneback")
    network, _ = run("network")
    assert report["engine"]["settings"]["walk_flow"] == "farneback"
    np.testing.assert_array_equal(along[4], lab[4])
    outer = [1, 2, 6, 7]
    d_along = np.mean([_dice(along[k] == 1, truth[k] == 1) for k in outer])
    d_network = np.mean([_dice(network[k] == 1, truth[k] == 1) for k in outer])
    assert d_along >= 0.85 and d_along > d_network + 0.05
