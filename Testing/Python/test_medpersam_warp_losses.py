"""Loss terms of the Med-PerSAM warping model on hand-checkable cases (paper B.1)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from oneshotsam.methods.medpersam.losses import LossConfig, WarpLosses  # noqa: E402


@pytest.fixture(scope="module")
def ssim():
    return WarpLosses(LossConfig(image_loss="ssim"))


@pytest.fixture(scope="module")
def ncc():
    return WarpLosses(LossConfig(image_loss="ncc"))


def _img(seed=0, n=1, s=24):
    return torch.rand(n, 1, s, s, generator=torch.Generator().manual_seed(seed))


def test_image_losses_identical_images(ssim, ncc):
    a = _img()
    assert float(ssim.image(a, a)) == pytest.approx(0.0, abs=1e-5)   # 1 - SSIM
    assert float(ncc.image(a, a)) == pytest.approx(-1.0, abs=1e-3)   # -LNCC
    assert float(ssim.similarity(a, a)[0]) == pytest.approx(1.0, abs=1e-5)
    assert float(ncc.similarity(a, a)[0]) == pytest.approx(1.0, abs=1e-3)


def test_image_losses_rank_similar_above_unrelated(ssim, ncc):
    a, b = _img(0), _img(1)
    near = (a + 0.05 * b).clamp(0, 1)
    for L in (ssim, ncc):
        assert float(L.image(a, near)) < float(L.image(a, b))


def test_ncc_is_invariant_to_affine_intensity(ncc):
    a = _img(2)
    assert float(ncc.image(a, 0.5 * a)) == pytest.approx(-1.0, abs=1e-3)
    # an offset is exact inside the image; MONAI zero-pads the windows at the border
    assert float(ncc.image(a, 0.5 * a + 0.2)) < -0.9


# (flow, expected ||grad phi||^2 = mean over (batch, channel, pixels) of sum_dims (d u_c / d dim)^2)
def _ramp(a_row: float, a_col: float, s: int = 16):
    r, c = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32),
                          indexing="ij")
    f = torch.zeros(1, 2, s, s)
    f[0, 0] = a_row * r  # row displacement grows along rows
    f[0, 1] = a_col * c
    return f


REG_CASES = [
    (torch.zeros(1, 2, 16, 16), 0.0),
    (torch.full((1, 2, 16, 16), 3.0), 0.0),   # translation: no penalty
    (_ramp(0.5, 0.0), 0.25 / 2),              # one channel with gradient 0.5
    (_ramp(1.0, 2.0), (1.0 + 4.0) / 2),
]


@pytest.mark.parametrize("flow,expected", REG_CASES)
def test_diffusion_regulariser(ssim, flow, expected):
    assert float(ssim.reg(flow)) == pytest.approx(expected, rel=1e-5, abs=1e-7)


def _onehot(lab, c=3):
    return torch.nn.functional.one_hot(lab, c).permute(0, 3, 1, 2).float()


def test_seg_loss_perfect_wrong_and_ce_weight(ssim):
    lab = torch.zeros(1, 12, 12, dtype=torch.long)
    lab[0, 2:6, 2:6], lab[0, 7:11, 5:10] = 1, 2
    t = _onehot(lab)
    assert float(ssim.seg(t, t)) == pytest.approx(0.0, abs=1e-3)
    wrong = _onehot((lab + 1) % 3)
    v = float(ssim.seg(wrong, t))
    # Dice term ~1, CE term = 0.001 * -log(1e-6 / ~1) ~ 0.0138 (B.1 weight 0.001)
    assert 1.0 < v < 1.03
    half = 0.5 * t + 0.5 * wrong
    assert 0.3 < float(ssim.seg(half, t)) < 0.7


def test_unknown_image_loss_is_rejected():
    with pytest.raises(ValueError, match="'ssim', 'ncc' or 'mi'"):
        WarpLosses(LossConfig(image_loss="mse"))


def test_mutual_information_loss_ranks_and_reports_ssim_similarity():
    """MI (MONAI's global Parzen estimate): lowest for the image itself, lower for a
    contrast-inverted copy (MI ignores the intensity mapping) than for an unrelated
    image; its similarity is SSIM's (MI has no fixed upper bound)."""
    mi = WarpLosses(LossConfig(image_loss="mi"))
    a, b = _img(0, s=32), _img(1, s=32)
    same, inverted, other = (float(mi.image(a, x)) for x in (a, 1 - a, b))
    assert same <= inverted + 1e-4 and inverted < other
    assert float(mi.similarity(a, a)[0]) == pytest.approx(1.0, abs=1e-5)


def test_aug_loss_weighting_readings():
    """Eq. 2 with Table 12's lambda_aug = 0.1 and B.1's segmentation weight 1, on an
    augmented pair whose parts are known: an identical image with a zero flow
    (L_warp = 0 + 0.75 * 0) and a completely wrong warped mask (L_seg ~ 1.0138)."""
    img = _img(3, s=24)
    flow = torch.zeros(1, 2, 24, 24)
    lab = torch.zeros(1, 12, 12, dtype=torch.long)
    lab[0, 2:6, 2:6] = 1
    t, wrong = _onehot(lab), _onehot(1 - lab)
    for reading in ("warp", "whole"):
        L = WarpLosses(LossConfig(image_loss="ssim", lambda_aug=0.1, aug_weighting=reading))
        warp = L.warp_loss(img, img, flow)
        seg = L.seg(wrong, t)
        assert float(warp) == pytest.approx(0.0, abs=1e-4)
        expected = float(seg) if reading == "warp" else 0.1 * float(seg)
        assert float(L.aug_loss(warp, seg)) == pytest.approx(expected, rel=1e-6)
    # plain numbers: 0.1 * 2 + 1 * 3 (default reading) vs 0.1 * (2 + 3)
    two, three = torch.tensor(2.0), torch.tensor(3.0)
    assert float(WarpLosses(LossConfig()).aug_loss(two, three)) == pytest.approx(3.2)
    whole = WarpLosses(LossConfig(aug_weighting="whole"))
    assert float(whole.aug_loss(two, three)) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        LossConfig(aug_weighting="seg")
