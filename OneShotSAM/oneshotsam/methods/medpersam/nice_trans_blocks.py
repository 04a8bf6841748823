"""Swin-transformer registration steps of the 2D NICE-Trans port (paper B.3).

NICE-Trans (Meng et al., MICCAI 2023) runs, at every registration step of its decoder,
a stage of Swin Transformer blocks on the concatenation of the fixed features, the
moving features warped by the current transformation and the upsampled decoder state,
after a 1x1 convolution to the stage width; the step's affine / residual deformable
head reads the stage output. This module provides that stage for 2D feature maps,
built from MONAI's :class:`monai.networks.nets.swin_unetr.SwinTransformerBlock`
(window attention with relative position bias, alternating shifted windows, MLP);
no attention is implemented here.

Feature maps are ``(B, C, H, W)`` float32 (channels first, as the conv decoder);
MONAI's blocks work on channels-last ``(B, H, W, C)`` tensors internally. Any H, W
work: MONAI pads to a multiple of the window and shrinks the window (without shift)
along axes shorter than it.

This module imports torch and MONAI at module level: import it lazily.
"""

from __future__ import annotations

import torch
from torch import nn


class SwinStage2D(nn.Module):
    """``depth`` MONAI Swin blocks (even blocks: regular windows, odd: shifted by
    ``window_size // 2``), ``(B, C, H, W) -> (B, C, H, W)`` with ``C = dim``."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int = 8,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        from monai.networks.nets.swin_unetr import SwinTransformerBlock
        self.window_size = (int(window_size),) * 2
        self.shift_size = tuple(w // 2 for w in self.window_size)
        self.blocks = nn.ModuleList([
            SwinTransformerBlock(dim=dim, num_heads=num_heads, window_size=self.window_size,
                                 shift_size=(0, 0) if i % 2 == 0 else self.shift_size,
                                 mlp_ratio=mlp_ratio, qkv_bias=True)
            for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from monai.networks.nets.swin_unetr import compute_mask, get_window_size
        h, w = x.shape[-2:]
        window, shift = get_window_size((h, w), self.window_size, self.shift_size)
        mask = None
        if any(s > 0 for s in shift):  # only shifted blocks read the mask (as MONAI's BasicLayer)
            hp = -(-h // window[0]) * window[0]
            wp = -(-w // window[1]) * window[1]
            mask = compute_mask([hp, wp], window, shift, x.device)
        y = x.permute(0, 2, 3, 1).contiguous()  # (B, H, W, C)
        for blk in self.blocks:
            y = blk(y, mask)
        return y.permute(0, 3, 1, 2).contiguous()


class TransformerStep(nn.Module):
    """One NICE-Trans registration step body: 1x1 conv ``in_channels -> dim`` (the
    concatenated fixed / warped-moving / flow / state channels) then a
    :class:`SwinStage2D`. ``(B, in_channels, H, W) -> (B, dim, H, W)``.

    The number of heads is the largest divisor of ``dim`` not above ``dim // head_dim``
    (exactly ``dim / head_dim`` for the power-of-two widths of the presets)."""

    def __init__(self, in_channels: int, dim: int, depth: int, head_dim: int = 16,
                 window_size: int = 8, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=1)
        heads = max(h for h in range(1, max(1, dim // head_dim) + 1) if dim % h == 0)
        self.stage = SwinStage2D(dim, depth, heads, window_size, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage(self.proj(x))
