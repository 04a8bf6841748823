"""What the warp trainers adapt to the situation: intensity scale and schedule length.

Shared by the 2D trainer (:mod:`.warp_train`) and the volume trainer
(:mod:`oneshotsam.volume.warpvol`), so that both see images the same way and
stop training by the same rule.

* :func:`registration_intensity`: the intensities the registration loss sees.
  Each image (2D) or each volume (3D, one window for all its slices) is mapped
  by its own robust percentiles to ``[0, 1]``, so a washed-out reference (a film
  using ~16 grey levels) and a full-range target are compared on the same scale.
  Only the registration input changes: the outputs (label maps) are warped
  labels, never intensities, so they keep the input's own format.
* :func:`histogram_match`: a target's grey levels mapped onto the reference's
  histogram (setting ``histogram_match``).
* :func:`noise_sd`, :func:`noise_targets`, :func:`smooth_to_noise`: an image much
  noisier than the cleanest of the run is smoothed, on the working grid, down to
  about that level (setting ``noise_match``).
* :class:`ConvergenceRule`: stop training when the loss has stopped improving,
  within a floor and a ceiling of optimiser steps, so that four targets and four
  hundred each get the steps they need.

Imports numpy only (OpenCV / SimpleITK inside the functions that use them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oneshotsam.intensity import WindowSpec, apply_window, compute_window


def registration_intensity(array: np.ndarray,
                           percentiles: tuple[float, float] | None = (0.5, 99.5)) -> np.ndarray:
    """New float32 array of ``array``'s shape, mapped linearly so that its
    ``percentiles[0]`` value goes to 0 and ``percentiles[1]`` to 1 (clipped).

    Args:
        array: one image ``(H, W)`` or one volume ``(..., H, W)``; one window is
            computed over the whole array (a volume keeps one scale across slices).
        percentiles: ``(low, high)`` in 0..100; None returns ``array`` as float32
            unchanged (the caller's own [0, 1] scale).
    Returns:
        float32 in ``[0, 1]``; a constant array maps to 0. The input is untouched.
    """
    a = np.asarray(array)
    if percentiles is None:
        return np.array(a, dtype=np.float32, copy=True)
    low, high = compute_window(a, WindowSpec("percentile", percentiles=tuple(percentiles)))
    return apply_window(a, low, high)


def histogram_match(image: np.ndarray, reference: np.ndarray, levels: int = 128,
                    match_points: int = 15) -> np.ndarray:
    """New float32 ``image`` whose grey levels are mapped (monotonically) so that its
    histogram follows ``reference``'s: SimpleITK's ``HistogramMatchingImageFilter``
    (``levels`` histogram bins, ``match_points`` quantiles, no mean threshold).
    Both 2D; inputs untouched."""
    import SimpleITK as sitk

    f = sitk.HistogramMatchingImageFilter()
    f.SetNumberOfHistogramLevels(int(levels))
    f.SetNumberOfMatchPoints(int(match_points))
    f.ThresholdAtMeanIntensityOff()
    out = f.Execute(sitk.GetImageFromArray(np.asarray(image, dtype=np.float32)),
                    sitk.GetImageFromArray(np.asarray(reference, dtype=np.float32)))
    return sitk.GetArrayFromImage(out).astype(np.float32)


#: Immerkaer's noise-estimation mask (a difference of two Laplacians: blind to
#: linear ramps and to most smooth structure, sensitive to pixel noise).
_NOISE_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)


def noise_sd(image: np.ndarray) -> float:
    """Estimated standard deviation of additive white noise in a 2D ``image``
    (J. Immerkaer, "Fast noise variance estimation", CVIU 64(2), 1996):
    ``sqrt(pi / 2) / (6 (H - 2) (W - 2)) * sum |image * M|`` over the interior,
    ``M`` the 3 x 3 mask above. Same unit as ``image``; 0 for images under 3 x 3.
    """
    x = np.asarray(image, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"noise_sd needs a 2D image; got shape {x.shape}")
    h, w = x.shape
    if h < 3 or w < 3:
        return 0.0
    r = sum(_NOISE_MASK[i, j] * x[i:h - 2 + i, j:w - 2 + j] for i in range(3) for j in range(3))
    return float(np.sqrt(np.pi / 2.0) * np.abs(r).sum() / (6.0 * (h - 2) * (w - 2)))


#: Noise (on the [0, 1] scale of the working grid) below which an image is never smoothed.
NOISE_FLOOR = 0.004


def noise_targets(estimates: list[float], factor: float) -> list[float | None]:
    """Per image, the noise level to smooth it down to, or None to leave it:
    images above ``factor`` times the smallest estimate (and above
    :data:`NOISE_FLOOR`) go down to ``max(factor * smallest, NOISE_FLOOR)``."""
    if not estimates:
        return []
    goal = max(float(factor) * min(estimates), NOISE_FLOOR)
    return [goal if e > goal else None for e in estimates]


def smooth_to_noise(image: np.ndarray, target_sd: float, max_sigma: float = 3.0,
                    sd: float | None = None) -> tuple[np.ndarray, float]:
    """``image`` (2D float) Gaussian-smoothed so that its white noise falls to about
    ``target_sd``, and the sigma used (pixels; 0 = returned unchanged, when the
    estimate is already at most ``target_sd``). ``sd``: the image's
    :func:`noise_sd` when the caller has it (None = estimated here).

    A Gaussian of sigma ``s`` >= ~1 px divides the standard deviation of white noise
    by ``2 sqrt(pi) s``; ``s`` is capped at ``max_sigma`` so structures survive.
    """
    sd = noise_sd(image) if sd is None else float(sd)
    if target_sd <= 0 or sd <= target_sd:
        return np.asarray(image), 0.0
    import cv2

    sigma = float(min(max_sigma, max(0.5, sd / (target_sd * 2.0 * np.sqrt(np.pi)))))
    k = 2 * int(np.ceil(3 * sigma)) + 1
    out = cv2.GaussianBlur(np.asarray(image, dtype=np.float32), (k, k), sigmaX=sigma, sigmaY=sigma,
                           borderType=cv2.BORDER_REFLECT_101)
    return out, sigma


@dataclass(frozen=True)
class ConvergenceRule:
    """When a training run stops.

    The loss of every step is recorded; after each block of ``window`` steps the
    mean loss of that block is compared with the mean of the block before. Training
    stops when the relative improvement ``(prev - cur) / |prev|`` falls below
    ``tol`` (and at least ``min_steps`` were run), or at ``max_steps``.

    Attributes:
        min_steps: floor of optimiser steps.
        max_steps: ceiling of optimiser steps.
        window: block length in steps; 0 = no convergence test (run ``max_steps``).
        tol: relative improvement per block below which training has converged.
    """

    min_steps: int = 0
    max_steps: int = 100
    window: int = 0
    tol: float = 0.01

    def __post_init__(self) -> None:
        if self.max_steps < 0 or self.min_steps < 0 or self.window < 0 or self.tol < 0:
            from oneshotsam.errors import OneShotError
            raise OneShotError(f"convergence settings must be non-negative; got {self}")
        if self.min_steps > self.max_steps:
            object.__setattr__(self, "min_steps", self.max_steps)

    def should_stop(self, losses: list[float]) -> bool:
        """True when the run whose per-step losses so far are ``losses`` is done."""
        n = len(losses)
        if n >= self.max_steps:
            return True
        if self.window <= 0 or n < max(self.min_steps, 2 * self.window) or n % self.window:
            return False
        cur = float(np.mean(losses[n - self.window:]))
        prev = float(np.mean(losses[n - 2 * self.window:n - self.window]))
        return (prev - cur) / max(abs(prev), 1e-8) < self.tol

    def reason(self, losses: list[float]) -> str:
        """Why a run with these losses stopped (for reports)."""
        if self.window > 0 and len(losses) < self.max_steps:
            return f"converged (loss improved < {self.tol:g} over the last {self.window} steps)"
        return "step ceiling" if self.window > 0 else "fixed schedule"
