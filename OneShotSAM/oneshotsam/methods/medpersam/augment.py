"""Augmented reference pairs for ``L_aug`` (paper Eq. 2, appendix B.2, Table 13).

Batched torch implementation: one random geometric transform per sample (rotation,
translation, scaling, shearing, random crop -- the crop folded into the same affine,
then resized back as torchvision's RandomResizedCrop does) applied identically to the
image (bilinear) and the one-hot mask (bilinear, then hardened by argmax), plus colour
jitter (brightness and contrast; saturation and hue of Table 13 have no effect on the
grey images the warping model uses). Written with torch directly because the
transform must be shared between image and mask for a whole batch at once, which
MONAI's per-sample dictionary transforms do one sample at a time.

Angles are degrees; translation is a fraction of the image size (Table 13: a
decimal value is a fraction); the geometry is in ``affine_grid`` normalised
coordinates (align_corners=True).

Imports torch at module level: import this module lazily.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugConfig:
    """Table 13, Shenzhen / OdontoAI / CAMUS / JSRT column (identical for the four)."""

    rotation_deg: tuple[float, float] = (-10.0, 10.0)
    translation: tuple[float, float] = (0.0, 0.1)
    scaling: tuple[float, float] = (0.9, 1.1)
    shear_deg: tuple[float, float] = (-10.0, 10.0)
    brightness: float = 0.2
    contrast: float = 0.2
    crop_scale: tuple[float, float] = (0.9, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.1)
    crop_p: float = 0.5


def _u(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def random_affines(n: int, cfg: AugConfig, g: torch.Generator) -> torch.Tensor:
    """``(n, 2, 3)`` sampling matrices (output normalised (x, y) -> input)."""
    rot = torch.deg2rad(_u(g, n, *cfg.rotation_deg))
    sh = torch.deg2rad(_u(g, n, *cfg.shear_deg))
    sc = _u(g, n, *cfg.scaling)
    tmag = _u(g, n, *cfg.translation) * 2.0  # fraction of size -> normalised units
    tang = _u(g, n, 0.0, 2 * math.pi)
    c, s = torch.cos(rot), torch.sin(rot)
    # forward map A = R * Shear * Scale; sampling uses its inverse
    fwd = torch.zeros(n, 3, 3)
    fwd[:, 0, 0] = c * sc
    fwd[:, 0, 1] = (c * torch.tan(sh) - s) * sc
    fwd[:, 1, 0] = s * sc
    fwd[:, 1, 1] = (s * torch.tan(sh) + c) * sc
    fwd[:, 0, 2] = tmag * torch.cos(tang)
    fwd[:, 1, 2] = tmag * torch.sin(tang)
    fwd[:, 2, 2] = 1.0
    inv = torch.linalg.inv(fwd)
    # random resized crop (probability crop_p): output p -> crop-window point
    crop = torch.eye(3).repeat(n, 1, 1)
    do = torch.rand(n, generator=g) < cfg.crop_p
    area = _u(g, n, *cfg.crop_scale)
    ratio = torch.exp(_u(g, n, math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1])))
    cw = torch.sqrt(area * ratio).clamp(max=1.0)
    ch = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (torch.rand(n, generator=g) * 2 - 1) * (1 - cw)
    cy = (torch.rand(n, generator=g) * 2 - 1) * (1 - ch)
    crop[do, 0, 0] = cw[do]
    crop[do, 1, 1] = ch[do]
    crop[do, 0, 2] = cx[do]
    crop[do, 1, 2] = cy[do]
    # output point -> crop window (in the augmented frame) -> source image
    return (inv @ crop)[:, :2, :]


def augment_pair(image: torch.Tensor, onehot: torch.Tensor, n: int, cfg: AugConfig,
                 g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` augmented copies of a reference pair.

    Args:
        image: ``(1, 1, H, W)`` float in [0, 1].
        onehot: ``(1, 1+C, H, W)`` one-hot float (channel 0 background).
    Returns:
        ``(n, 1, H, W)`` images in [0, 1] and ``(n, 1+C, H, W)`` hard one-hot masks.
    """
    theta = random_affines(n, cfg, g).to(image)
    h, w = image.shape[-2:]
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=True)
    img = F.grid_sample(image.expand(n, -1, -1, -1), grid, mode="bilinear",
                        padding_mode="zeros", align_corners=True)
    m = F.grid_sample(onehot.expand(n, -1, -1, -1), grid, mode="bilinear",
                      padding_mode="zeros", align_corners=True)
    oh = F.one_hot(m.argmax(1), onehot.shape[1]).permute(0, 3, 1, 2).to(onehot)
    b = _u(g, n, 1 - cfg.brightness, 1 + cfg.brightness).to(image).view(n, 1, 1, 1)
    ct = _u(g, n, 1 - cfg.contrast, 1 + cfg.contrast).to(image).view(n, 1, 1, 1)
    img = (img * b).clamp(0, 1)
    mean = img.mean(dim=(2, 3), keepdim=True)
    img = ((img - mean) * ct + mean).clamp(0, 1)
    return img, oh
