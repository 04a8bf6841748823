"""The re-run mask decoder equals the packages' own predictors; PerSAM additions;
mask <-> grid frames (SAM 1 pads, SAM 2 stretches)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from oneshotsam.backends.factory import create_backend  # noqa: E402

NAMES = ["sam-tiny-test", "sam2-tiny-test"]
# SAM2ImagePredictor builds SAM2Transforms with torch.jit.script (deprecated)
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="module", params=NAMES)
def seg(request):
    torch.set_num_threads(1)
    return create_backend(request.param, random_weights=True, device="cpu")


def _stock_predictor(seg):
    if seg.name.startswith("sam2"):
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        pred = SAM2ImagePredictor(seg.model)
        g = seg.grid_size
        pred._bb_feat_sizes = [(4 * g, 4 * g), (2 * g, 2 * g), (g, g)]  # assumes 1024 otherwise
        return pred
    from segment_anything import SamPredictor

    return SamPredictor(seg.model)


# (image_hw, predict kwargs for both APIs)
STOCK_CASES = [
    ((90, 140), dict(point_coords=np.array([[10.0, 20.0], [139.0, 89.0]]),
                     point_labels=np.array([1, 0]), multimask_output=True)),
    ((90, 140), dict(point_coords=np.array([[70.5, 44.0]]), point_labels=np.array([1]),
                     multimask_output=False)),
    ((150, 60), dict(box=np.array([0.0, 10.0, 59.0, 149.0]), multimask_output=False)),
    ((150, 60), dict(point_coords=np.array([[0.0, 0.0]]), point_labels=np.array([1]),
                     box=np.array([0.0, 0.0, 30.0, 40.0]), multimask_output=True)),
]


@pytest.mark.parametrize("hw,kw", STOCK_CASES)
def test_equals_stock_predictor(seg, hw, kw):
    img = np.random.default_rng(7).integers(0, 256, (*hw, 3), dtype=np.uint8)
    pred = _stock_predictor(seg)
    with torch.inference_mode():
        pred.set_image(img)
        masks, scores, low = pred.predict(**kw)
        # second round with the low-res logits as mask prompt
        masks2, scores2, low2 = pred.predict(**{**kw, "mask_input": low[:1],
                                                "multimask_output": False})
    emb = seg.embed(img)
    ours = seg.decode(emb, points_xy=kw.get("point_coords"), point_labels=kw.get("point_labels"),
                      box_xyxy=kw.get("box"), multimask=kw["multimask_output"])
    np.testing.assert_allclose(ours.low_res_logits, low, rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours.scores, scores, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(ours.masks, masks.astype(bool))
    ours2 = seg.decode(emb, points_xy=kw.get("point_coords"),
                       point_labels=kw.get("point_labels"), box_xyxy=kw.get("box"),
                       mask_logits=low[0], multimask=False)
    np.testing.assert_allclose(ours2.low_res_logits, low2, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(ours2.masks, masks2.astype(bool))


def test_token_prototype(seg):
    img = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    emb = seg.embed(img)
    kw = dict(points_xy=[[20, 30]], point_labels=[1], multimask=True)
    base = seg.decode(emb, **kw)
    zero = seg.decode(emb, token_prototype=np.zeros(seg.token_dim, np.float32), **kw)
    np.testing.assert_allclose(zero.low_res_logits, base.low_res_logits, rtol=0, atol=1e-6)
    proto = seg.feature_map(emb).mean(axis=(1, 2))
    moved = seg.decode(emb, token_prototype=proto * 50, **kw)
    assert np.abs(moved.low_res_logits - base.low_res_logits).max() > 1e-3


def test_attn_sim_changes_output(seg):
    img = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    emb = seg.embed(img)
    kw = dict(points_xy=[[20, 30]], point_labels=[1])
    base = seg.decode(emb, **kw)
    g = seg.grid_size
    sim = np.zeros((g, g))
    sim[: g // 2] = 1.0
    guided = seg.decode(emb, attn_sim=sim, **kw)
    assert guided.masks.shape == base.masks.shape
    assert np.abs(guided.low_res_logits - base.low_res_logits).max() > 1e-4


def test_mask_to_grid_sam1_padding():
    seg = create_backend("sam-tiny-test", random_weights=True)
    g = seg.grid_size  # 8 on a 128 input; a 64x128 image fills the top half
    mask = np.zeros((64, 128), bool)
    mask[:, :64] = True  # left half
    grid = seg.mask_to_grid(mask, (64, 128))
    expected = np.zeros((g, g), np.float32)
    expected[: g // 2, : g // 2] = 1.0
    np.testing.assert_allclose(grid, expected, atol=1e-5)
    # grid -> image drops the padding rows: the full content grid maps to all ones
    content = np.zeros((g, g), np.float32)
    content[: g // 2] = 1.0
    img = seg.grid_to_image(content, (64, 128))
    assert img.shape == (64, 128)
    # bilinear from cell centres: rows above the last content-cell centre (y = 56) are
    # exactly 1, the last half cell blends towards the padding but stays above 0.5
    np.testing.assert_allclose(img[:56], 1.0, atol=1e-5)
    assert np.all(img[56:] > 0.5) and np.all(np.diff(img[56:, 0]) <= 0)


def test_mask_to_grid_sam2_stretch():
    seg = create_backend("sam2-tiny-test", random_weights=True)
    g = seg.grid_size
    mask = np.zeros((64, 128), bool)
    mask[:, :64] = True  # left half: stretched, covers the left half of every grid row
    grid = seg.mask_to_grid(mask, (64, 128))
    expected = np.zeros((g, g), np.float32)
    expected[:, : g // 2] = 1.0
    np.testing.assert_allclose(grid, expected, atol=1e-5)
    ones = seg.grid_to_image(np.ones((g, g), np.float32), (64, 128))
    np.testing.assert_allclose(ones, 1.0, atol=1e-6)


# (image_hw, mask box rows/cols) -- round trip IoU for block masks
ROUND_TRIP_CASES = [((96, 96), (slice(20, 70), slice(30, 80))),
                    ((60, 150), (slice(10, 50), slice(40, 120))),
                    ((150, 60), (slice(30, 120), slice(5, 50)))]


@pytest.mark.parametrize("hw,box", ROUND_TRIP_CASES)
def test_grid_round_trip(seg, hw, box):
    mask = np.zeros(hw, bool)
    mask[box] = True
    back = seg.grid_to_image(seg.mask_to_grid(mask, hw), hw) > 0.5
    iou = (back & mask).sum() / (back | mask).sum()
    assert iou > 0.75, iou
    logits = seg.mask_to_logits(mask, hw)
    side = 4 * seg.grid_size
    assert logits.shape == (side, side) and logits.dtype == np.float32
    assert logits.max() == pytest.approx(8.0) and logits.min() == pytest.approx(-8.0)
    # the logits prompt, upsampled like SAM's low-res masks, reproduces the mask
    up = torch.nn.functional.interpolate(torch.as_tensor(logits)[None, None],
                                         size=(seg.input_size,) * 2, mode="bilinear")
    assert up.shape[-1] == seg.input_size


@pytest.mark.parametrize("chunk", [1, 64])
def test_decode_batch_equals_sequential(seg, chunk, monkeypatch):
    monkeypatch.setattr(seg, "decode_batch_size", chunk)
    img = np.random.default_rng(5).integers(0, 256, (70, 100, 3), dtype=np.uint8)
    emb = seg.embed(img)
    side = 4 * seg.grid_size
    pts = np.array([[[10, 10], [50, 40], [0, 0]],     # 2 points + padding
                    [[20, 30], [99, 69], [60, 5]],    # 3 points
                    [[30, 30], [0, 0], [0, 0]],       # 1 point + padding
                    [[5, 60], [40, 20], [0, 0]]], float)
    labs = np.array([[1, 0, -1], [1, 1, 0], [1, -1, -1], [0, 1, -1]])
    boxes = np.array([[0, 0, 99, 69], [10, 10, 60, 50], [20, 20, 40, 40], [5, 5, 50, 65]], float)
    logits = np.random.default_rng(0).normal(size=(4, side, side)).astype(np.float32) * 4
    for kw in (dict(), dict(box_xyxy=boxes), dict(box_xyxy=boxes, mask_logits=logits)):
        for multimask in (False, True):
            batch = seg.decode_batch(emb, pts, labs, multimask=multimask, **kw)
            assert len(batch) == 4
            for i, d in enumerate(batch):
                keep = labs[i] >= 0
                one = seg.decode(emb, points_xy=pts[i][keep], point_labels=labs[i][keep],
                                 box_xyxy=None if "box_xyxy" not in kw else boxes[i],
                                 mask_logits=None if "mask_logits" not in kw else logits[i],
                                 multimask=multimask)
                np.testing.assert_allclose(d.low_res_logits, one.low_res_logits, atol=1e-4)
                np.testing.assert_allclose(d.scores, one.scores, atol=1e-5)
                assert d.masks.shape == one.masks.shape
                assert (d.masks != one.masks).mean() < 1e-3  # logits equal to float noise
    boxes_only = seg.decode_batch(emb, box_xyxy=boxes)
    assert [d.masks.shape for d in boxes_only] == [(1, 70, 100)] * 4


def test_decode_batch_errors(seg):
    from oneshotsam.errors import OneShotError

    emb = seg.embed(np.zeros((30, 30, 3), np.uint8))
    with pytest.raises(OneShotError):
        seg.decode_batch(emb)
    with pytest.raises(OneShotError):
        seg.decode_batch(emb, np.zeros((2, 1, 2)), np.ones((3, 1), int))
    with pytest.raises(OneShotError):
        seg.decode_batch(emb, np.zeros((2, 1, 2)), np.full((2, 1), 3))


def test_sam1_sdpa_attention_same_features():
    img = np.random.default_rng(4).integers(0, 256, (100, 128, 3), dtype=np.uint8)
    stock = create_backend("sam-tiny-test", random_weights=True, fast_attention=False)
    fast = create_backend("sam-tiny-test", random_weights=True, fast_attention=True)
    np.testing.assert_allclose(fast.feature_map(fast.embed(img)),
                               stock.feature_map(stock.embed(img)), rtol=0, atol=1e-5)
