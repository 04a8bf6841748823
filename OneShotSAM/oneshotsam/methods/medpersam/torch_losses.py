"""Torch-only copies of the few MONAI pieces the CPU warping path uses.

Why: ``import monai`` runs ``monai/__init__.py``, which loads every submodule
(``monai.apps`` -> ``networks.nets`` -> torchvision -> ``torch._dynamo``, scipy, sympy,
matplotlib, ``monai.data`` ...), and Python runs a package's ``__init__`` before any of
its submodules, so even ``from monai.losses import SSIMLoss`` pays it. Measured on the
shared 2-core machine: ``python -c "import torch"`` 4.4 CPU-s, ``import torch, monai``
14.8 CPU-s -- about 10 CPU-s of start-up for a weight-free command whose budget is
8 CPU-s for a whole 2D pair. The pieces below are small, so they are reproduced here
and ``oneshotsam segment --method medpersam-warp`` imports no MONAI module at all.
MONAI stays for the Swin blocks of the paper-size net (:mod:`.nice_trans_blocks`,
``transformer_depth > 0``).

Each piece reproduces one MONAI class or function of MONAI 1.6.1 (the version checked,
``monai>=1.3`` in pyproject), with the same construction and operation order so that
values and gradients agree to float rounding (``Testing/Python/test_torch_losses.py``
compares them on random inputs where MONAI is installed):

* :func:`ssim_and_cs` -- ``monai.metrics.regression.compute_ssim_and_cs`` with the
  Gaussian window of ``_gaussian_kernel`` (2D; k1 = 0.01, k2 = 0.03; "valid" convolution,
  inputs cast to float32);
* :class:`SSIMLoss` -- ``monai.losses.SSIMLoss(spatial_dims=2)``: mean over the batch of
  ``1 - mean SSIM map`` of each sample (channels and pixels);
* :class:`LocalNCCLoss` -- ``monai.losses.LocalNormalizedCrossCorrelationLoss``
  (2D, rectangular kernel, smooth_nr 0, smooth_dr 1e-5, mean): zero-padded separable
  box sums (``monai.networks.layers.separable_filtering``: pad W, pad H, sum along H,
  then along W), returns ``-mean(squared local NCC)``;
* :func:`diffusion_loss` -- ``monai.losses.DiffusionLoss()`` (normalize False, mean):
  central differences ``(x[i+1] - x[i-1]) / 2`` along each spatial axis, every other
  spatial axis sliced to ``[1:-1]``, summed squares, mean over batch, channels, pixels;
* :class:`DiceCELoss` -- ``monai.losses.DiceCELoss(softmax=True)`` (include_background,
  no one-hot conversion, batch False, smooth_nr = smooth_dr = 1e-5, mean): Dice
  ``1 - (2 tp + 1e-5) / (2 tp + fp + fn + 1e-5)`` per (sample, class) on the softmax, and
  ``torch.nn.CrossEntropyLoss`` on the logits. A target with as many channels as the
  input is used as class probabilities (MONAI >= 1.2; older MONAI took its argmax --
  the same number for the one-hot targets used here); a ``(B, 1, ...)`` target holds
  class indices;
* :class:`Warp` -- ``monai.networks.blocks.Warp(mode="bilinear", padding_mode="border")``
  on PyTorch's ``grid_sample`` (MONAI's path when its C++ extension is not compiled, the
  pip wheel's case): the pixel displacement ``ddf`` ``(B, 2, H, W)`` (channel 0 = row,
  1 = column) is added to the identity pixel grid, each axis mapped to [-1, 1] by
  ``p * 2 / max(n - 1, 1) - 1`` and sampled with ``align_corners=True``.

Imports torch at module level: import this module lazily.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

#: MONAI's SSIM stability constants (``SSIMLoss`` / ``compute_ssim_and_cs`` defaults)
SSIM_K1, SSIM_K2 = 0.01, 0.03


def gaussian_window(win_size: int, sigma: float, channels: int) -> torch.Tensor:
    """``(channels, 1, win, win)`` normalised Gaussian window, as MONAI's
    ``metrics.regression._gaussian_kernel`` builds it (outer product of two 1D windows)."""
    dist = torch.arange(start=(1 - win_size) / 2, end=(1 + win_size) / 2, step=1)
    g = torch.exp(-torch.pow(dist / sigma, 2) / 2)
    g = (g / g.sum()).unsqueeze(dim=0)
    return torch.matmul(g.t(), g).expand(channels, 1, win_size, win_size)


def ssim_and_cs(y_pred: torch.Tensor, y: torch.Tensor, win_size: int = 7, sigma: float = 1.5,
                data_range: float = 1.0, k1: float = SSIM_K1,
                k2: float = SSIM_K2) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM map and contrast sensitivity of ``(B, C, H, W)`` images ("valid" windows:
    ``(B, C, H - win + 1, W - win + 1)``); MONAI's ``compute_ssim_and_cs`` (2D, Gaussian)."""
    if y.shape != y_pred.shape:
        raise ValueError(f"y_pred and y should have same shapes, got {y_pred.shape} and {y.shape}.")
    y_pred = y_pred.to(torch.float32)
    y = y.to(torch.float32)
    c = y_pred.size(1)
    kernel = gaussian_window(win_size, sigma, c).to(y_pred)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    mu_x = F.conv2d(y_pred, kernel, groups=c)
    mu_y = F.conv2d(y, kernel, groups=c)
    mu_xx = F.conv2d(y_pred * y_pred, kernel, groups=c)
    mu_yy = F.conv2d(y * y, kernel, groups=c)
    mu_xy = F.conv2d(y_pred * y, kernel, groups=c)
    sigma_x = mu_xx - mu_x * mu_x
    sigma_y = mu_yy - mu_y * mu_y
    sigma_xy = mu_xy - mu_x * mu_y
    cs = (2 * sigma_xy + c2) / (sigma_x + sigma_y + c2)
    ssim = ((2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1)) * cs
    return ssim, cs


class SSIMLoss(nn.Module):
    """``1 - SSIM`` averaged over the batch (MONAI ``SSIMLoss(spatial_dims=2)``, Gaussian
    window ``win_size``, sigma 1.5, reduction mean)."""

    def __init__(self, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5) -> None:
        super().__init__()
        self.data_range, self.win_size, self.sigma = data_range, win_size, sigma

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.ndim != 4:
            raise ValueError(f"expected (B, C, H, W) images, got shape {tuple(input.shape)}")
        smap, _ = ssim_and_cs(input, target, self.win_size, self.sigma, self.data_range)
        per_sample = smap.view(smap.shape[0], -1).mean(1, keepdim=True).view(-1, 1)
        return torch.mean(1 - per_sample)


def _box_sum(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Zero-padded separable filtering of ``(B, C, H, W)`` with a 1D ``kernel`` along both
    axes, in MONAI ``separable_filtering``'s order (pad W, pad H, filter H, filter W)."""
    c = x.shape[1]
    p = (kernel.shape[0] - 1) // 2
    k = kernel.to(x)
    x = F.pad(x, [p, p, 0, 0], mode="constant")
    x = F.pad(x, [0, 0, p, p], mode="constant")
    x = F.conv2d(x, k.reshape(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.reshape(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)


class LocalNCCLoss(nn.Module):
    """``-mean`` squared local normalised cross-correlation over ``kernel_size``-pixel
    square windows (MONAI ``LocalNormalizedCrossCorrelationLoss(spatial_dims=2,
    kernel_type="rectangular")``: smooth_nr 0, smooth_dr 1e-5, reduction mean)."""

    def __init__(self, kernel_size: int = 3, smooth_nr: float = 0.0, smooth_dr: float = 1e-5) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_size = kernel_size
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.ndim != 4:
            raise ValueError(f"expecting pred with 2 spatial dimensions, got pred of shape {pred.shape}")
        if target.shape != pred.shape:
            raise ValueError(f"ground truth has differing shape ({target.shape}) from pred ({pred.shape})")
        kernel = torch.ones(self.kernel_size)
        vol = torch.sum(torch.matmul(kernel.unsqueeze(-1), kernel.unsqueeze(0))).to(pred)
        t2, p2, tp = target * target, pred * pred, target * pred
        t_sum, p_sum = _box_sum(target, kernel), _box_sum(pred, kernel)
        t2_sum, p2_sum, tp_sum = _box_sum(t2, kernel), _box_sum(p2, kernel), _box_sum(tp, kernel)
        t_avg, p_avg = t_sum / vol, p_sum / vol
        cross = tp_sum - p_avg * t_sum
        floor = torch.as_tensor(self.smooth_dr, dtype=t2_sum.dtype, device=t2_sum.device)
        t_var = torch.max(t2_sum - t_avg * t_sum, floor)
        p_var = torch.max(p2_sum - p_avg * p_sum, floor)
        ncc = (cross * cross + self.smooth_nr) / (t_var * p_var)
        return torch.mean(ncc).neg()


def diffusion_loss(flow: torch.Tensor) -> torch.Tensor:
    """``||grad u||^2`` of a displacement ``(B, D, *spatial)`` with ``D`` = number of
    spatial axes (MONAI ``DiffusionLoss()``): central differences, other axes sliced to
    ``[1:-1]``, squares summed over axes, mean over batch, components and pixels."""
    if flow.ndim not in (3, 4, 5):
        raise ValueError(f"Expecting 3-d, 4-d or 5-d pred, instead got pred of shape {flow.shape}")
    if any(n <= 2 for n in flow.shape[2:]):
        raise ValueError(f"All spatial dimensions must be > 2, got spatial dimensions {flow.shape[2:]}")
    if flow.shape[1] != flow.ndim - 2:
        raise ValueError(f"Number of vector components, i.e. number of channels of the input DDF, "
                         f"{flow.shape[1]}, does not match number of spatial dimensions, {flow.ndim - 2}")
    total = None
    for dim in range(2, flow.ndim):
        hi = [slice(None), slice(None)] + [slice(1, -1)] * (flow.ndim - 2)
        lo = list(hi)
        hi[dim], lo[dim] = slice(2, None), slice(None, -2)
        g = (flow[tuple(hi)] - flow[tuple(lo)]) / 2.0
        total = g ** 2 if total is None else total + g ** 2
    return torch.mean(total)


class DiceCELoss(nn.Module):
    """``lambda_dice * Dice + lambda_ce * CE`` of logits ``(B, N, ...)`` (MONAI
    ``DiceCELoss(softmax=True)``, smooth 1e-5, reduction mean); see module docstring."""

    def __init__(self, lambda_dice: float = 1.0, lambda_ce: float = 1.0,
                 smooth_nr: float = 1e-5, smooth_dr: float = 1e-5) -> None:
        super().__init__()
        if lambda_dice < 0.0 or lambda_ce < 0.0:
            raise ValueError("lambda_dice and lambda_ce should be no less than 0.0.")
        self.lambda_dice, self.lambda_ce = lambda_dice, lambda_ce
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)

    def dice(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n = input.shape[1]
        if n == 1:
            warnings.warn("single channel prediction, `softmax=True` ignored.", stacklevel=2)
        else:
            input = torch.softmax(input, 1)
        if target.shape != input.shape:
            raise AssertionError(f"ground truth has different shape ({target.shape}) from input ({input.shape})")
        axes = list(range(2, input.ndim))
        tp = torch.sum(input * target, dim=axes)
        fp = (torch.sum(input, dim=axes) - tp) * 0.5
        fn = (torch.sum(target, dim=axes) - tp) * 0.5
        f = 1 - (2 * tp + self.smooth_nr) / (2 * (tp + fp + fn) + self.smooth_dr)
        return torch.mean(f)

    def ce(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.shape[1] == 1:
            if not torch.is_floating_point(target):
                target = target.to(dtype=input.dtype)
            return F.binary_cross_entropy_with_logits(input, target)
        if target.shape[1] == 1 and input.shape[1] != 1:
            target = torch.squeeze(target, dim=1).long()
        elif not torch.is_floating_point(target):
            target = target.to(dtype=input.dtype)
        return F.cross_entropy(input, target)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.dim() != target.dim():
            raise ValueError(f"input {tuple(input.shape)} and target {tuple(target.shape)} "
                             "should have the same number of dimensions")
        if target.shape[1] not in (1, input.shape[1]):
            raise ValueError("number of channels for target is neither 1 (without one-hot encoding) "
                             f"nor the same as input, got shape {input.shape} and {target.shape}.")
        return self.lambda_dice * self.dice(input, target) + self.lambda_ce * self.ce(input, target)


class Warp(nn.Module):
    """Pull-warp ``image`` ``(B, C, H, W)`` by a pixel displacement ``ddf`` ``(B, 2, H, W)``
    ((row, col), bilinear, border padding, ``align_corners=True``): MONAI
    ``networks.blocks.Warp``'s PyTorch path. No parameters or buffers (a state_dict of a
    network holding it is the same as with MONAI's)."""

    def __init__(self, mode: str = "bilinear", padding_mode: str = "border") -> None:
        super().__init__()
        self.mode, self.padding_mode = mode, padding_mode

    def forward(self, image: torch.Tensor, ddf: torch.Tensor) -> torch.Tensor:
        nd = image.ndim - 2
        if nd not in (2, 3):
            raise ValueError(f"Warp needs a (B, C, H, W) or (B, C, D, H, W) image, got shape "
                             f"{tuple(image.shape)} ({nd} spatial dimensions)")
        want = (image.shape[0], nd) + tuple(image.shape[2:])
        if ddf.shape != want:
            raise ValueError(f"Given input {nd}-d image shape {image.shape}, the input DDF shape must "
                             f"be {want}, Got {ddf.shape} instead.")
        sizes = tuple(ddf.shape[2:])
        mesh = torch.meshgrid(*[torch.arange(0, n) for n in sizes], indexing="ij")
        grid = torch.stack(mesh, dim=0)[None].to(ddf) + ddf  # (B, nd, *spatial), pixels
        axes = [grid[:, i] * 2 / max(n - 1, 1) - 1 for i, n in enumerate(sizes)]
        grid = torch.stack(axes[::-1], dim=-1)  # (B, *spatial, nd), (x, y[, z]) order
        return F.grid_sample(image, grid, mode=self.mode, padding_mode=self.padding_mode,
                             align_corners=True)
