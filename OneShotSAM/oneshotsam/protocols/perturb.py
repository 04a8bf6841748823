"""Photometric perturbations of the ``jsrt-perturb`` protocol (Med-PerSAM appendix D).

The paper (appendix D.1, Table 16) perturbs test images with colour jitter
(torchvision ``ColorJitter`` brightness 0.3, contrast 0.3, i.e. factors drawn
in [0.7, 1.3]), Gaussian noise (standard deviation 0.1 of the [0, 1] range,
probability 0.5) and Gaussian blur (kernel 7, sigma drawn in (0.1, 2.0),
probability 0.5). Here every perturbation is applied to every image at ONE
fixed level, the end of the paper's range, so that the drop measures the full
effect and a rerun gives the same images:

=============  ==========================================================================
name           what (images in grey levels 0..255, result rounded and clipped to uint8)
=============  ==========================================================================
brightness     ``x * 1.3`` (ColorJitter brightness 0.3, upper end)
contrast       ``m + 0.7 (x - m)``, ``m`` the image mean (ColorJitter contrast 0.3, lower end)
gamma          ``255 (x / 255) ** 1.5`` (not in the paper; our level)
noise          ``x + N(0, 25.5)`` (sd 0.1 of the range, Table 16), seeded per image
blur           Gaussian, kernel 7 x 7, sigma 2.0 (Table 16, upper end), reflected border
=============  ==========================================================================

The noise of an image comes from ``numpy.random.default_rng([seed, crc32(key)])``
where ``key`` is the image's name: the same image gets the same noise whatever
the order of the run. Numpy at import time; OpenCV for the blur.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from oneshotsam.errors import OneShotError


@dataclass(frozen=True)
class Perturbation:
    """One perturbation kind at its fixed level (see the module docstring)."""

    name: str
    level: float
    description: str


PERTURBATIONS: dict[str, Perturbation] = {p.name: p for p in (
    Perturbation("brightness", 1.3, "brightness factor 1.3 (Med-PerSAM Table 16: ColorJitter "
                 "brightness 0.3, upper end)"),
    Perturbation("contrast", 0.7, "contrast factor 0.7 around the image mean (Table 16: "
                 "ColorJitter contrast 0.3, lower end)"),
    Perturbation("gamma", 1.5, "gamma 1.5 (not in the paper; our level)"),
    Perturbation("noise", 0.1, "Gaussian noise, sd 0.1 of the grey range = 25.5 levels "
                 "(Table 16), every image, seeded per image"),
    Perturbation("blur", 2.0, "Gaussian blur, kernel 7, sigma 2.0 (Table 16: sigma in "
                 "(0.1, 2.0), upper end)"),
)}
KINDS = tuple(PERTURBATIONS)


def image_seed(seed: int, key: str) -> np.random.Generator:
    """The random generator of image ``key`` (independent of the run's order)."""
    return np.random.default_rng([int(seed), zlib.crc32(str(key).encode("utf-8"))])


def perturb(image: np.ndarray, kind: str, seed: int = 0, key: str = "") -> np.ndarray:
    """``image`` (2D grey, 0..255) perturbed by ``kind`` at its fixed level; uint8."""
    if kind not in PERTURBATIONS:
        raise OneShotError(f"unknown perturbation {kind!r}: choose from {', '.join(KINDS)}")
    x = np.asarray(image, dtype=np.float64)
    if x.ndim != 2:
        raise OneShotError(f"perturbations work on 2D grey images; got shape {x.shape}")
    level = PERTURBATIONS[kind].level
    if kind == "brightness":
        y = x * level
    elif kind == "contrast":
        y = x.mean() + level * (x - x.mean())
    elif kind == "gamma":
        y = 255.0 * (np.clip(x, 0, 255) / 255.0) ** level
    elif kind == "noise":
        y = x + image_seed(seed, key).normal(0.0, level * 255.0, size=x.shape)
    else:
        import cv2

        y = cv2.GaussianBlur(x, (7, 7), sigmaX=level, sigmaY=level,
                             borderType=cv2.BORDER_REFLECT_101)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


__all__ = ["Perturbation", "PERTURBATIONS", "KINDS", "image_seed", "perturb"]
