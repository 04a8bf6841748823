"""medpersam-warp adapts to the situation: per-image intensity normalisation for the
registration (one function for the 2D and the volume trainer) and a schedule that
stops on convergence of the loss within a floor and a ceiling."""

from __future__ import annotations

import numpy as np
import pytest
from oneshotsam.errors import OneShotError
from oneshotsam.methods.medpersam.warp_adapt import (
    ConvergenceRule,
    histogram_match,
    noise_sd,
    noise_targets,
    registration_intensity,
    smooth_to_noise,
)


def test_washed_out_image_is_stretched_to_the_full_range_and_input_untouched():
    rng = np.random.default_rng(0)
    full = rng.integers(0, 256, (40, 50)).astype(np.uint8)
    washed = (239 + full // 16).astype(np.uint8)  # 16 grey levels near white, as JPCLN031
    before = washed.copy()
    a, b = registration_intensity(full), registration_intensity(washed)
    assert np.array_equal(washed, before)
    assert a.dtype == np.float32 and b.dtype == np.float32 and b.shape == washed.shape
    assert b.min() == 0.0 and b.max() == 1.0
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99  # same picture, same scale
    raw = registration_intensity(washed / 255.0, None)
    assert np.allclose(raw, washed / 255.0) and raw.min() > 0.9  # None: as given


def test_a_volume_gets_one_window_for_all_its_slices():
    vol = np.stack([np.full((8, 8), 10.0), np.full((8, 8), 20.0), np.full((8, 8), 30.0)])
    out = registration_intensity(vol, (0.0, 100.0))
    assert np.allclose(out[:, 0, 0], [0.0, 0.5, 1.0])
    assert np.array_equal(registration_intensity(np.full((4, 4), 7.0)), np.zeros((4, 4), np.float32))


def test_convergence_rule_floor_ceiling_and_plateau():
    rule = ConvergenceRule(min_steps=40, max_steps=100, window=10, tol=0.01)
    flat = [1.0] * 100
    stops = [n for n in range(1, 101) if rule.should_stop(flat[:n])]
    assert stops[0] == 40  # plateau from the start: stops at the floor
    falling = [1.0 / (1 + 0.5 * k) for k in range(100)]  # keeps improving by > 1 % per block
    assert [n for n in range(1, 101) if rule.should_stop(falling[:n])] == [100]
    fixed = ConvergenceRule(min_steps=0, max_steps=30, window=0)
    assert [n for n in range(1, 31) if fixed.should_stop(flat[:n])] == [30]
    assert fixed.reason(flat[:30]) == "fixed schedule"
    assert rule.reason(flat[:40]).startswith("converged")
    assert ConvergenceRule(min_steps=50, max_steps=20).min_steps == 20
    with pytest.raises(OneShotError):
        ConvergenceRule(max_steps=-1)


torch = pytest.importorskip("torch")

from oneshotsam.methods.medpersam.warp_method import MedPerSAMWarp  # noqa: E402
from oneshotsam.methods.medpersam.warp_train import WarpConfig, WarpSession  # noqa: E402
from oneshotsam.types import Image2D  # noqa: E402

TINY = dict(resolution=64, batch_size=2, epochs=1,
            net={"enc_channels": 4, "dec_channels": 8, "max_channels": 16, "n_levels": 3})


def _phantom(s=64):
    r, c = np.mgrid[0:s, 0:s].astype(np.float32)
    a = np.exp(-((r - 22) ** 2 + (c - 24) ** 2) / (2 * 7.0 ** 2))
    img = (0.15 + 0.7 * a).clip(0, 1).astype(np.float32)
    return img, (a > 0.5).astype(np.uint8)


def test_registration_sees_the_same_image_whatever_its_contrast():
    img, lab = _phantom()
    washed = 0.94 + 0.06 * img  # a washed-out copy of the same film
    cfg = WarpConfig.from_dict(TINY)
    s1 = WarpSession(cfg, Image2D(img), lab, [Image2D(washed)])
    s2 = WarpSession(cfg, Image2D(washed), lab, [Image2D(img)])
    assert torch.allclose(s1.ref, s2.ref, atol=1e-5)
    assert torch.allclose(s1.targets, s2.targets, atol=1e-5)
    raw = WarpSession(WarpConfig.from_dict({**TINY, "intensity_percentiles": None}),
                      Image2D(washed), lab, [Image2D(img)])
    assert float(raw.ref.min()) > 0.9  # without normalisation the loss sees the washed-out film


def test_converging_schedule_stops_between_floor_and_ceiling_and_reports_it():
    img, lab = _phantom()
    # tol 10: every block "improves too little", so training stops at the floor
    m = MedPerSAMWarp.from_preset("paper", device="cpu", **{
        **TINY, "min_steps": 6, "max_steps": 40, "converge_window": 2, "converge_tol": 10.0})
    out = m.segment(Image2D(img), lab, [Image2D(img)] * 2)
    rep = out.report
    assert rep["train_steps"] == 6 and rep["train_max_steps"] == 40
    assert rep["train_stopped"].startswith("converged")
    assert np.isfinite(rep["loss_final"]) and rep["train_seconds"] >= 0
    assert rep["intensity_percentiles"] == (0.5, 99.5)


# ------------------------------------------------------------------ noise matching
@pytest.mark.parametrize("image, expected", [
    (np.full((32, 32), 0.4), 0.0),                                     # constant
    (np.add.outer(np.arange(32.0), 2 * np.arange(32.0)) / 100.0, 0.0),  # linear ramp: mask is blind to it
    (np.zeros((2, 40)), 0.0),                                          # too small for the 3 x 3 mask
])
def test_noise_estimate_is_zero_for_noiseless_images(image, expected):
    assert noise_sd(image) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("sd", [0.01, 0.05, 0.1])
def test_noise_estimate_recovers_white_noise(sd):
    img = 0.5 + np.random.default_rng(1).normal(0.0, sd, (256, 256))
    assert noise_sd(img) == pytest.approx(sd, rel=0.05)


def test_noise_estimate_rejects_a_volume():
    with pytest.raises(ValueError, match="2D"):
        noise_sd(np.zeros((3, 8, 8)))


@pytest.mark.parametrize("estimates, factor, expected", [
    ([0.010, 0.002], 1.5, [0.004, None]),    # noisy reference, clean target: floor 0.004
    ([0.002, 0.020, 0.010], 1.5, [None, 0.004, 0.004]),
    ([0.020, 0.020], 1.5, [None, None]),     # equally noisy: nothing to match
    ([0.030, 0.010], 2.0, [0.020, None]),    # goal = factor x the cleanest
    ([0.001], 1.5, [None]),
    ([], 1.5, []),
])
def test_noise_targets_table(estimates, factor, expected):
    got = noise_targets(estimates, factor)
    assert [g is None for g in got] == [e is None for e in expected]
    assert [g for g in got if g is not None] == pytest.approx([e for e in expected if e is not None])


def test_smoothing_brings_noise_down_and_leaves_clean_images_alone():
    rng = np.random.default_rng(2)
    clean, _ = _phantom(96)
    noisy = (clean + rng.normal(0, 0.05, clean.shape)).astype(np.float32)
    out, sigma = smooth_to_noise(noisy, 0.01)
    assert sigma > 0 and out.shape == noisy.shape and noise_sd(out) < 0.02 < noise_sd(noisy)
    same, sigma0 = smooth_to_noise(clean, 0.01)
    assert sigma0 == 0.0 and np.array_equal(same, clean)


def test_noisy_reference_is_smoothed_clean_target_is_not_and_the_report_says_so():
    img, lab = _phantom()
    noisy = np.clip(img + np.random.default_rng(3).normal(0, 0.08, img.shape), 0, 1).astype(np.float32)
    cfg = WarpConfig.from_dict({**TINY, "noise_match": 1.5})
    s = WarpSession(cfg, Image2D(noisy), lab, [Image2D(img)])
    assert s.smoothing_sigmas[0] > 0 and s.smoothing_sigmas[1] == 0.0
    assert noise_sd(s.ref[0, 0].numpy()) < 0.5 * noise_sd(
        WarpSession(WarpConfig.from_dict(TINY), Image2D(noisy), lab, [Image2D(img)]).ref[0, 0].numpy())
    m = MedPerSAMWarp.from_preset("paper", device="cpu", **{**TINY, "noise_match": 1.5})
    rep = m.segment(Image2D(noisy), lab, [Image2D(img)]).report
    assert rep["noise_smoothing"]["reference_sigma_px"] > 0
    assert rep["noise_smoothing"]["targets_smoothed"] == 0
    off = MedPerSAMWarp.from_preset("paper", device="cpu", **TINY).segment(Image2D(noisy), lab, [Image2D(img)])
    assert "noise_smoothing" not in off.report


def test_histogram_matching_undoes_a_monotone_grey_mapping():
    """A gamma-distorted copy of an image, matched to the original's histogram,
    comes back close to the original (the mapping is monotone); the input is kept."""
    img, _ = _phantom(96)
    img = np.clip(img + np.random.default_rng(4).normal(0, 0.02, img.shape), 0, 1).astype(np.float32)
    gamma = img ** 2.0
    before = gamma.copy()
    out = histogram_match(gamma, img)
    assert np.array_equal(gamma, before) and out.dtype == np.float32 and out.shape == img.shape
    assert np.abs(out - img).mean() < 0.25 * np.abs(gamma - img).mean()
