"""A planning contour's follow-up: each cross-visit prediction fused with the labels
carried along the optical flow between the two visits' slices
(``VolumeWarpConfig.cross_flow_weight``, ``MethodEngine._fuse_cross_flow``).

The stand-in registration is the identity (it copies the reference slice's labels), so
what moves the labels is the flow alone: a disc that moved between the visits is met
part of the way, by the weight."""

from __future__ import annotations

import numpy as np
import pytest

from oneshotsam.errors import OneShotError
from oneshotsam.types import Volume
from oneshotsam.volume.pipeline import PropagationConfig, propagate

from volume_synth import FitCopyMethod, affine


class IdentityWarp(FitCopyMethod):
    """The identity registration under the weight-free method's name (so that the
    follow-up of a planning contour takes the per-slice ``direct`` engine)."""

    name = "medpersam-warp"


def _disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) <= radius ** 2


def _contour_and_followup(shift_px: int):
    """An 8-slice reference with a bright textured disc (label 1) on slices 1..6 and a
    follow-up where the disc moved ``shift_px`` columns; returns reference, labels,
    follow-up and the follow-up's true disc."""
    rng = np.random.default_rng(0)
    texture = rng.uniform(0.0, 0.15, (64, 64)).astype(np.float32)
    ref_plane = texture + 0.8 * _disc((64, 64), (32, 26), 10)
    fu_plane = np.roll(ref_plane, shift_px, axis=1)
    img = np.zeros((8, 64, 64), np.float32)
    fu = np.zeros((8, 64, 64), np.float32)
    lab = np.zeros((8, 64, 64), np.uint8)
    img[1:7], fu[1:7] = ref_plane, fu_plane
    lab[1:7] = _disc((64, 64), (32, 26), 10)
    return img, lab, fu, np.roll(lab[3].astype(bool), shift_px, axis=1)


def _run(weight: float | None, shift_px: int = 6):
    img, lab, fu, true = _contour_and_followup(shift_px)
    aff = affine((1.0, 1.0, 2.0), (0, 0, 0))
    sets = (("refine_sigma", 0.0),) + ((("cross_flow_weight", weight),) if weight is not None else ())
    cfg = PropagationConfig(method="medpersam-warp", window="0,1", device="cpu", align=False,
                            method_overrides=sets)
    res = propagate(Volume(img, aff, "ref"), Volume(lab, aff, "lab"), [Volume(fu, aff, "fu")],
                    cfg, method=IdentityWarp())
    return res, np.asarray(res.label_volumes[0].voxels), true


def _centre_col(mask: np.ndarray) -> float:
    return float(np.nonzero(mask)[1].mean())


# weight -> how far the label's centre moves towards the disc, as a share of the shift
@pytest.mark.parametrize("weight,lo,hi", [(0.0, 0.0, 0.0), (0.25, 0.15, 0.35), (0.5, 0.4, 0.6),
                                          (1.0, 0.85, 1.1)])
def test_the_fusion_moves_the_labels_by_the_flow_s_weight(weight, lo, hi):
    res, out, true = _run(weight)
    moved = (_centre_col(out[3] == 1) - 26.0) / 6.0
    assert lo <= moved <= hi
    eng = res.report["engine"]
    if weight > 0:
        assert eng["cross_flow_weight"] == weight and eng["flow_window_px"] == 7
    else:
        assert "cross_flow_weight" not in eng
        np.testing.assert_array_equal(out[3], np.roll(true, -6, axis=1).astype(out.dtype))


def test_the_default_fuses_a_quarter_and_records_the_agreement():
    """The ``volume`` preset's weight (0.25) is the default; each slice's report holds the
    agreement (Dice) between the method's and the flow's labels: here the identity against
    a disc of radius 10 px moved 6 px (their Dice: 0.62), against 1.0 for a follow-up that
    did not move."""
    res, out, true = _run(None)
    assert res.report["engine"]["cross_flow_weight"] == 0.25
    per = {p["slice"]: p for p in res.report["targets"][0]["per_slice"]}
    assert 0.55 < per[3]["flow_agreement"] < 0.7
    dice_fused = 2 * np.sum((out[3] == 1) & true) / (np.sum(out[3] == 1) + true.sum())
    dice_identity = 2 * np.sum(np.roll(true, -6, axis=1) & true) / (2 * true.sum())
    assert dice_fused > dice_identity + 0.03
    still, _, _ = _run(None, shift_px=0)
    per0 = {p["slice"]: p for p in still.report["targets"][0]["per_slice"]}
    assert per0[3]["flow_agreement"] == 1.0


def test_a_label_the_method_left_out_is_not_brought_back():
    from oneshotsam.volume.engines import MethodEngine, SliceStack

    class DropAll(IdentityWarp):
        def segment(self, reference, labels, targets):
            run = super().segment(reference, labels, targets)
            for r in run.results:
                r.labels = np.zeros_like(r.labels)
            return run

    img, lab, fu, _ = _contour_and_followup(6)
    eng = MethodEngine(DropAll(), "direct", cross_flow_weight=0.5)
    ref = SliceStack(img, 0, (1.0, 1.0), "ref")
    proc = SliceStack(fu, 0, (1.0, 1.0), "fu")
    eng.prepare(ref, proc, [1, 2, 3, 4, 5, 6], {k: lab[k] for k in range(1, 7)}, True, lambda m: True)
    res = eng.cross(3, lab[3])
    assert not np.any(res.labels)
    assert res.report["flow_agreement"] == 0.0


@pytest.mark.parametrize("weight", [-0.1, 1.5])
def test_a_weight_outside_zero_one_is_refused(weight):
    from oneshotsam.volume.warpvol import VolumeWarpConfig

    with pytest.raises(OneShotError, match="cross_flow_weight"):
        VolumeWarpConfig.from_overrides({"cross_flow_weight": weight})
