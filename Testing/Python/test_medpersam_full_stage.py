"""Med-PerSAM SAM stage rules (appendix C.1, section 3.4) with a fake decoder."""

from __future__ import annotations

import numpy as np
import pytest

from oneshotsam.backends.base import Decoded
from oneshotsam.methods.medpersam.prompts import PromptConfig
from oneshotsam.methods.medpersam.sam_stage import (
    SamStageConfig,
    assign_classes,
    run_class,
    scaled_kernel,
    segment_classes,
    select_output,
    smooth_mask,
)

H = W = 64


def _rect(r0, r1, c0, c1, shape=(H, W)):
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


class FakeBackend:
    """Records decode() calls and answers scripted outputs (image frame = 64x64)."""

    grid_size = 8
    input_size = 128
    token_dim = 4

    def __init__(self, outputs):
        self.outputs = list(outputs)
        self.calls: list[dict] = []

    def grid_to_image(self, grid, hw):
        import cv2
        return cv2.resize(np.asarray(grid, np.float32), (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)

    def mask_to_logits(self, mask, hw):
        import cv2
        cov = cv2.resize(np.asarray(mask, np.float32), (32, 32), interpolation=cv2.INTER_AREA)
        return (8.0 * (2 * cov - 1)).astype(np.float32)

    def decode(self, emb, **kw):
        self.calls.append(kw)
        return self.outputs[len(self.calls) - 1]


class FakeMapping:
    def upsample_lowres(self, low):
        import cv2
        return cv2.resize(np.asarray(low, np.float32), (W, H), interpolation=cv2.INTER_LINEAR)


def _decoded(masks, scores):
    masks = np.asarray(masks, bool)
    low = np.stack([np.where(m[::2, ::2], 5.0, -5.0) for m in masks]).astype(np.float32)
    return Decoded(masks=masks, scores=np.asarray(scores, np.float32), low_res_logits=low)


CFG = SamStageConfig(prompts=PromptConfig(3, 3, 5, work_size=64), refine_iterations=1,
                     smooth_kernel=3)


# ------------------------------------------------------------------ pure rules

@pytest.mark.parametrize("stage,scores,expected", [
    (0, [0.9], 0), (0, [0.1, 0.9, 0.5], 0),  # first stage: the single output
    (1, [0.2, 0.9, 0.5], 1), (2, [0.7, 0.1, 0.8], 2), (1, [0.5, 0.5, 0.1], 0),  # ties: first
])
def test_select_output(stage, scores, expected):
    assert select_output(stage, np.array(scores)) == expected


# (per-class logits for a 1x4 image, label values, optional masks, expected labels)
ASSIGN_CASES = [
    ([[3, -1, -2, 0.5]], [7], None, [7, 0, 0, 7]),
    ([[3, -1, -2, 0.5], [1, 2, -3, 0.5]], [1, 2], None, [1, 2, 0, 1]),  # tie -> lower index
    ([[-1, -1, -1, -1], [-2, -0.5, -3, -1]], [1, 2], None, [0, 0, 0, 0]),  # all < 0 -> bg
    ([[4, 4, 4, 4], [5, 1, 5, 1]], [3, 9], None, [9, 3, 9, 3]),
    # smoothed masks decide who competes: a filled hole (negative logit) stays foreground
    ([[-1, 2, -3, 0.5], [-2, 3, -4, -1]], [1, 2], [[1, 1, 0, 1], [0, 0, 0, 0]], [1, 1, 0, 1]),
]


@pytest.mark.parametrize("logits,values,masks,expected", ASSIGN_CASES)
def test_assign_classes_rule(logits, values, masks, expected):
    lg = np.asarray(logits, np.float32)[:, None, :]
    m = None if masks is None else np.asarray(masks, bool)[:, None, :]
    out = assign_classes(lg, values, masks=m)
    np.testing.assert_array_equal(out[0], expected)


def test_smooth_mask_removes_spur_fills_hole_keeps_thin():
    m = _rect(10, 40, 10, 40)
    m[20:24, 20:24] = False   # hole
    m[50, 50] = True          # isolated pixel
    out = smooth_mask(m, 3)
    assert not out[50, 50] and out[20:24, 20:24].all()
    np.testing.assert_array_equal(out, _rect(10, 40, 10, 40))
    thin = _rect(30, 31, 5, 60)   # opening would erase it -> kept
    np.testing.assert_array_equal(smooth_mask(thin, 3), thin)
    m0 = m.copy()
    smooth_mask(m, 3)
    np.testing.assert_array_equal(m, m0)  # input untouched


def test_scaled_kernel():
    assert scaled_kernel(3, 256, (256, 256)) == 3
    assert scaled_kernel(3, 256, (512, 400)) == 7   # 6 -> odd
    assert scaled_kernel(7, 256, (64, 64)) == 3     # 1.75 -> 2 -> odd 3
    assert scaled_kernel(3, 256, (32, 32)) == 1


# ------------------------------------------------------------------ refinement with a fake decoder

def test_refinement_single_then_best_of_three():
    warped = _rect(12, 44, 12, 44)
    stage0 = _rect(10, 40, 10, 40)
    stage0[20:22, 20:22] = False  # hole -> filled before becoming the next mask prompt
    stage0[60, 60] = True         # spur -> removed
    three = [_rect(0, 5, 0, 5), _rect(14, 46, 16, 48), _rect(30, 60, 30, 60)]
    be = FakeBackend([_decoded([stage0], [0.7]), _decoded(three, [0.2, 0.9, 0.5])])
    proto = np.arange(4, dtype=np.float32)
    oc = run_class(be, None, FakeMapping(), warped, np.zeros((8, 8), np.float32), proto, CFG, label=3)
    assert len(be.calls) == 2
    c0, c1 = be.calls
    assert c0["multimask"] is False and c1["multimask"] is True
    np.testing.assert_array_equal(c0["mask_logits"], be.mask_to_logits(warped, (H, W)))
    smoothed0 = smooth_mask(stage0, 3)
    np.testing.assert_array_equal(c1["mask_logits"], be.mask_to_logits(smoothed0, (H, W)))
    np.testing.assert_allclose(c1["box_xyxy"], [10, 10, 39, 39])  # box of the smoothed stage-0 mask
    for c in (c0, c1):
        np.testing.assert_array_equal(c["token_prototype"], proto)
        assert (c["point_labels"] == 1).sum() == 5 and (c["point_labels"] == 0).sum() == 5
    np.testing.assert_array_equal(oc.mask, smooth_mask(three[1], 3))
    assert oc.score == pytest.approx(0.9)
    assert [s["chosen"] for s in oc.stages] == [0, 1]
    assert [s["multimask"] for s in oc.stages] == [False, True]
    assert oc.logits.shape == (H, W) and not oc.absent


def test_more_refinement_iterations_and_prompt_switches():
    cfg = SamStageConfig(prompts=PromptConfig(3, 3, 5, work_size=64), refine_iterations=2,
                         use_points=False, target_semantic=False)
    sq = _rect(10, 40, 10, 40)
    be = FakeBackend([_decoded([sq], [0.5]), _decoded([sq, sq, sq], [0.1, 0.2, 0.3]),
                      _decoded([sq, sq, sq], [0.6, 0.2, 0.3])])
    oc = run_class(be, None, FakeMapping(), sq, np.zeros((8, 8)), np.ones(4), cfg)
    assert [c["multimask"] for c in be.calls] == [False, True, True]
    assert [s["chosen"] for s in oc.stages] == [0, 2, 0]
    assert all("points_xy" not in c and "token_prototype" not in c for c in be.calls)
    assert all("box_xyxy" in c and "mask_logits" in c for c in be.calls)


def test_empty_warped_mask_is_absent_without_sam_call():
    be = FakeBackend([])
    oc = run_class(be, None, FakeMapping(), np.zeros((H, W), bool), np.zeros((8, 8)), None, CFG)
    assert oc.absent and not oc.mask.any() and be.calls == [] and oc.prompts.empty


def test_empty_sam_output_keeps_warped_mask():
    warped = _rect(10, 40, 10, 40)
    be = FakeBackend([_decoded([np.zeros((H, W), bool)], [0.3])])
    oc = run_class(be, None, FakeMapping(), warped, np.zeros((8, 8)), None, CFG)
    assert len(be.calls) == 1 and not oc.absent
    np.testing.assert_array_equal(oc.mask, warped)
    assert oc.score == 0.0 and oc.logits is None and "warped mask" in oc.messages[0]


def test_segment_classes_one_mask_prompt_per_class_and_highest_logit():
    warped = np.zeros((H, W), np.uint8)
    warped[5:30, 5:30] = 1
    warped[34:60, 34:60] = 2
    # SAM answers: class 1 grows into class 2's square with low logits; class 2 confident there
    m1, m2 = _rect(5, 45, 5, 45), _rect(34, 60, 34, 60)
    d1 = Decoded(m1[None], np.array([0.8], np.float32),
                 np.where(m1[::2, ::2], 1.0, -5.0)[None].astype(np.float32))
    d2 = Decoded(m2[None], np.array([0.9], np.float32),
                 np.where(m2[::2, ::2], 6.0, -5.0)[None].astype(np.float32))
    cfg = SamStageConfig(prompts=PromptConfig(3, 3, 5, work_size=64), refine_iterations=0)
    be = FakeBackend([d1, d2])
    labels, outs = segment_classes(be, None, FakeMapping(), warped, [1, 2],
                                   {1: np.zeros((8, 8)), 2: np.zeros((8, 8))}, {}, cfg)
    assert len(be.calls) == 2
    np.testing.assert_array_equal(be.calls[0]["mask_logits"], be.mask_to_logits(warped == 1, (H, W)))
    np.testing.assert_array_equal(be.calls[1]["mask_logits"], be.mask_to_logits(warped == 2, (H, W)))
    assert labels[50, 50] == 2 and labels[20, 20] == 1 and labels[40, 20] == 1 and labels[62, 2] == 0
    assert set(outs) == {1, 2} and labels.dtype == np.int32


@pytest.mark.parametrize("seed", range(6))
def test_smooth_mask_hole_filling_equals_whole_image_fill(seed):
    from scipy.ndimage import binary_fill_holes
    rng = np.random.default_rng(seed)
    m = rng.uniform(size=(40, 50)) < 0.55          # noisy blob with many holes
    m[:, : rng.integers(0, 20)] = False
    if seed % 2:
        m[0, :] = True                             # touching the border
    np.testing.assert_array_equal(smooth_mask(m, 1), binary_fill_holes(m))
