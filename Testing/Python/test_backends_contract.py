"""Contract tests shared by the SAM 1 and SAM 2 backends (tiny real architectures)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from oneshotsam.backends.factory import create_backend  # noqa: E402
from oneshotsam.errors import OneShotError  # noqa: E402

NAMES = ["sam-tiny-test", "sam2-tiny-test"]


@pytest.fixture(scope="module", params=NAMES)
def seg(request):
    torch.set_num_threads(1)
    return create_backend(request.param, random_weights=True, device="cpu")


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# (image_hw, prompt kwargs, multimask) -- points/boxes in the image frame
PROMPT_CASES = [
    ((96, 96), dict(points_xy=[[48, 48]], point_labels=[1]), False),
    ((96, 96), dict(points_xy=[[48, 48]], point_labels=[1]), True),
    ((96, 96), dict(points_xy=[[10, 10], [80, 70]], point_labels=[1, 0]), False),
    ((96, 96), dict(box_xyxy=[20, 20, 70, 60]), True),
    ((96, 96), dict(points_xy=[[30, 30]], point_labels=[1], box_xyxy=[0, 0, 95, 95]), False),
    # border points and edge-touching boxes
    ((96, 96), dict(points_xy=[[0, 0], [95, 95]], point_labels=[1, 1]), True),
    ((96, 96), dict(box_xyxy=[0, 0, 95, 95]), False),
    # non-square: tall and wide, border points (0, 0) and (W-1, H-1)
    ((160, 48), dict(points_xy=[[0, 0], [47, 159]], point_labels=[1, 0]), True),
    ((40, 150), dict(points_xy=[[0, 0], [149, 39]], point_labels=[1, 1],
                     box_xyxy=[0, 0, 149, 39]), False),
    ((40, 150), dict(), False),  # no prompt at all is allowed by SAM
]


@pytest.mark.parametrize("hw,prompts,multimask", PROMPT_CASES)
def test_decode_shapes(seg, hw, prompts, multimask):
    emb = seg.embed(_image(*hw))
    out = seg.decode(emb, multimask=multimask, **prompts)
    m = 3 if multimask else 1
    side = 4 * seg.grid_size
    assert out.masks.dtype == bool and out.masks.shape == (m, *hw)
    assert out.scores.dtype == np.float32 and out.scores.shape == (m,)
    assert out.low_res_logits.dtype == np.float32 and out.low_res_logits.shape == (m, side, side)
    assert np.isfinite(out.low_res_logits).all() and np.isfinite(out.scores).all()


def test_mask_logits_feedback_and_determinism(seg):
    img = _image(70, 110, seed=3)
    emb = seg.embed(img)
    a = seg.decode(emb, points_xy=[[50, 30]], point_labels=[1], multimask=True)
    b = seg.decode(emb, points_xy=[[50, 30]], point_labels=[1], multimask=True)
    np.testing.assert_array_equal(a.low_res_logits, b.low_res_logits)
    c = seg.decode(emb, points_xy=[[50, 30]], point_labels=[1], mask_logits=a.low_res_logits[0])
    assert c.masks.shape == (1, 70, 110)
    # a freshly built backend (same fixed seed) gives identical outputs
    other = create_backend(seg.name, random_weights=True, device="cpu")
    d = other.decode(other.embed(img), points_xy=[[50, 30]], point_labels=[1], multimask=True)
    np.testing.assert_allclose(d.low_res_logits, a.low_res_logits, rtol=0, atol=1e-5)
    np.testing.assert_allclose(other.feature_map(other.embed(img)), seg.feature_map(emb),
                               rtol=0, atol=1e-6)


def test_feature_map(seg):
    emb = seg.embed(_image(64, 128))
    f = seg.feature_map(emb)
    assert f.dtype == np.float32 and f.shape == (seg.token_dim, seg.grid_size, seg.grid_size)
    if seg.name.startswith("sam2"):
        assert seg.valid_grid_hw(emb) == (seg.grid_size, seg.grid_size)
    else:  # 64x128 -> resized 64x128 in a 128 input: content in the top half
        assert seg.valid_grid_hw(emb) == (seg.grid_size // 2, seg.grid_size)


def test_embedding_cache_counts_and_lru():
    seg = create_backend("sam-tiny-test", random_weights=True, cache_size=2)
    a, b, c = _image(32, 32, 1), _image(32, 32, 2), _image(32, 32, 3)
    ea = seg.embed(a)
    assert seg.encode_calls == 1
    assert seg.embed(a.copy()) is ea and seg.encode_calls == 1  # equal content: no encode
    seg.embed(b)
    assert seg.encode_calls == 2
    seg.embed(a)  # refresh a: b is now least recent
    seg.embed(c)  # evicts b
    assert seg.encode_calls == 3 and len(seg.cache) == 2
    seg.embed(a)
    assert seg.encode_calls == 3
    seg.embed(b)
    assert seg.encode_calls == 4
    # same bytes, other shape -> other key
    seg.embed(np.ascontiguousarray(a.reshape(16, 64, 3)))
    assert seg.encode_calls == 5


def test_cache_disabled():
    seg = create_backend("sam-tiny-test", random_weights=True, cache_size=0)
    img = _image(32, 32)
    seg.embed(img)
    seg.embed(img)
    assert seg.encode_calls == 2 and len(seg.cache) == 0


def test_embed_does_not_modify_input_and_accepts_grey(seg):
    img = _image(40, 50)
    before = img.copy()
    seg.embed(img)
    np.testing.assert_array_equal(img, before)
    grey = img[..., 0].copy()
    e1 = seg.embed(grey)
    e2 = seg.embed(np.repeat(grey[..., None], 3, axis=2))
    assert e1 is e2  # the grey image is the RGB image with equal channels


BAD_IMAGES = [
    np.zeros((20, 20, 3), np.float32),
    np.zeros((20, 20, 4), np.uint8),
    np.zeros((1, 20, 3), np.uint8),
    np.zeros((2, 20, 20, 3), np.uint8),
]


@pytest.mark.parametrize("img", BAD_IMAGES)
def test_bad_images(seg, img):
    with pytest.raises(OneShotError):
        seg.embed(img)


BAD_PROMPTS = [
    dict(points_xy=[[1, 2, 3]], point_labels=[1]),
    dict(points_xy=[[1, 2]], point_labels=[1, 0]),
    dict(points_xy=[[1, 2]], point_labels=[2]),
    dict(points_xy=[[np.nan, 2]], point_labels=[1]),
    dict(points_xy=[[1, 2]]),
    dict(box_xyxy=[10, 10, 5, 20]),
    dict(box_xyxy=[1, 2, 3]),
    dict(mask_logits=np.zeros((8, 8))),
    dict(token_prototype=np.zeros(5)),
    dict(attn_sim=np.zeros((3, 3))),
]


@pytest.mark.parametrize("prompts", BAD_PROMPTS)
def test_bad_prompts(seg, prompts):
    emb = seg.embed(_image(40, 40))
    with pytest.raises(OneShotError):
        seg.decode(emb, **prompts)


def test_embedding_of_other_backend_rejected():
    s1 = create_backend("sam-tiny-test", random_weights=True)
    s2 = create_backend("sam2-tiny-test", random_weights=True)
    with pytest.raises(OneShotError, match="same backend"):
        s2.decode(s1.embed(_image(32, 32)), points_xy=[[3, 3]], point_labels=[1])


def test_device_errors():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(OneShotError, match="CUDA"):
        create_backend("sam-tiny-test", random_weights=True, device="cuda")
    with pytest.raises(OneShotError, match="unknown backend"):
        create_backend("sam-vit-z", random_weights=True)
    with pytest.raises(OneShotError, match="random_weights"):
        create_backend("sam-tiny-test")



@pytest.mark.parametrize("name", NAMES)
def test_bf16_encoder_close_to_fp32(name):
    img = _image(64, 96, seed=9)
    fp = create_backend(name, random_weights=True, precision="fp32")
    bf = create_backend(name, random_weights=True, precision="bf16")
    assert (fp.precision, bf.precision) == ("fp32", "bf16")
    f32, f16 = fp.feature_map(fp.embed(img)), bf.feature_map(bf.embed(img))
    assert f16.dtype == np.float32 and np.isfinite(f16).all()
    assert np.abs(f16 - f32).max() <= 0.05 * np.abs(f32).max() + 1e-3
    out = bf.decode(bf.embed(img), points_xy=[[10, 10]], point_labels=[1])
    assert out.masks.shape == (1, 64, 96)
    with pytest.raises(OneShotError, match="precision"):
        create_backend(name, random_weights=True, precision="fp16")
