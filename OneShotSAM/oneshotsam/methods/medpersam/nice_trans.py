"""2D NICE-Trans-style warping network of Med-PerSAM (paper section 3.1, appendix B.3).

Architecture (2D port of NICE-Trans, Meng et al. 2023, as Med-PerSAM B.3 describes it):

* one shared convolutional encoder applied to the moving (reference) and the fixed
  (target) image; ``n_levels + 1`` scales (1, 1/2, ..., 1/2**n_levels), ``enc_channels``
  (16 in B.3) doubled per scale up to ``max_channels``;
* an **affine step** at the coarsest scale: a 2x3 matrix predicted from pooled
  features, with the scale terms (0,0) and (1,1) initialised to 1 and learned as
  residuals (B.3) -- the head is zero-initialised so the initial affine is identity;
* **coarse-to-fine deformable steps** (4 in B.3): at each scale the moving
  features are warped with the current flow, concatenated with the fixed features
  and the upsampled decoder state, and a residual displacement is predicted and
  composed with the current flow. Displacement heads are zero-initialised, so an
  untrained network returns the identity warp (zero flow).

Optional NICE-Trans transformer decoder (``transformer_depth > 0``, the ``*-paper``
presets; :mod:`.nice_trans_blocks`, MONAI Swin blocks): every registration step from
``transformer_min_scale`` up -- the affine step included -- replaces its conv block by a
1x1 projection + Swin stage; ``dec_doubling`` widens the decoder to ``dec_channels * 2**s``
at scale ``s`` and ``affine_only_coarsest`` puts the 4 deformable steps one scale finer
than the affine step, as NICE-Trans does. The defaults keep the conv-only decoder.

Flow convention (pinned by ``Testing/Python/test_medpersam_warp_convention.py``):

* a flow ``u`` is a dense displacement field of shape ``(B, 2, H, W)`` float32,
  **in pixels of the grid it is defined on**, channel 0 = row (y, down), channel 1 =
  column (x, right) -- the convention of MONAI's ``networks.blocks.Warp`` (reproduced
  without MONAI by :class:`.torch_losses.Warp`);
* it is a *backward* (pull) map from the fixed/target grid into the moving/reference
  image: ``warped[r, c] = moving(r + u[0, r, c], c + u[1, r, c])`` (bilinear,
  ``align_corners=True`` pixel centres, border padding). A constant ``u[0] = +3``
  therefore moves image content 3 pixels UP; ``u[1] = +3`` moves it 3 pixels LEFT.
* :func:`flow_to_normalized` converts it to ``torch.grid_sample`` units so a flow
  computed on a small working grid can be upsampled and applied to images of any
  size (normalised coordinates are resolution independent).

This module imports torch at module level: import it lazily (only inside functions of
modules that ``oneshotsam`` imports eagerly).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class NetConfig:
    """Size of the warping network.

    Attributes:
        enc_channels: first encoder width (16, paper B.3).
        dec_channels: decoder width (32, paper B.3).
        n_levels: number of deformable registration levels (4, paper B.3); the encoder
            has ``n_levels + 1`` scales and the affine step runs at the coarsest one.
        max_channels: cap of the doubling encoder widths.
        finest_scale: scale index (0 = working resolution, 1 = half) of the last
            deformable level; the flow is upsampled from there to the working grid.
        convs_per_block: 3x3 conv + LeakyReLU layers per encoder/decoder block.
        affine: whether to run the affine step (paper B.3: yes).
        transformer_depth: Swin blocks per registration step (NICE-Trans: 4); 0 =
            conv-only decoder (the CPU presets; all fields below are then unused
            except ``dec_doubling`` / ``affine_only_coarsest``).
        head_dim: channels per attention head (NICE-Trans: 16, i.e. heads =
            width / 16 at every scale).
        window_size: attention window in pixels (NICE-Trans: 5 in 3D; ours: 8,
            which divides the power-of-two 2D grids).
        mlp_ratio: MLP hidden width / block width (NICE-Trans / Swin: 4).
        dec_doubling: decoder width ``dec_channels * 2**s`` at scale ``s`` (NICE-Trans)
            instead of a constant ``dec_channels``.
        affine_only_coarsest: the coarsest scale runs only the affine step and the
            deformable steps run at scales ``n_levels - 1 .. finest_scale`` (NICE-Trans)
            instead of ``n_levels .. finest_scale``.
        transformer_min_scale: steps at finer scales keep the conv block (NICE-Trans's
            last, full-resolution step is a conv block: 1).
    """

    enc_channels: int = 16
    dec_channels: int = 32
    n_levels: int = 4
    max_channels: int = 256
    finest_scale: int = 1
    convs_per_block: int = 2
    affine: bool = True
    transformer_depth: int = 0
    head_dim: int = 16
    window_size: int = 8
    mlp_ratio: float = 4.0
    dec_doubling: bool = False
    affine_only_coarsest: bool = False
    transformer_min_scale: int = 1

    def __post_init__(self) -> None:
        from oneshotsam.errors import OneShotError
        if self.transformer_depth < 0 or self.head_dim < 1 or self.window_size < 1 or self.mlp_ratio <= 0:
            raise OneShotError(
                "net: transformer_depth must be >= 0 and head_dim, window_size, mlp_ratio > 0 "
                f"(got {self.transformer_depth}, {self.head_dim}, {self.window_size}, {self.mlp_ratio})")
        first = self.n_levels - 1 if self.affine_only_coarsest else self.n_levels
        if first < self.finest_scale:
            raise OneShotError(
                f"net: no deformable level between scale {first} and finest_scale "
                f"{self.finest_scale}; lower finest_scale or raise n_levels")


def _block(cin: int, cout: int, n: int, stride: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, stride if i == 0 else 1, 1),
                   nn.LeakyReLU(0.2, inplace=True)]
    return nn.Sequential(*layers)


def make_warp() -> nn.Module:
    """MONAI's ``networks.blocks.Warp`` (bilinear, border padding), as its torch-only
    copy :class:`.torch_losses.Warp` (no MONAI import: ~10 CPU-s of start-up)."""
    from oneshotsam.methods.medpersam.torch_losses import Warp
    return Warp(mode="bilinear", padding_mode="border")


def upsample_flow(flow: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Resize a pixel-unit flow ``(B, 2, h, w)`` to ``size_hw`` (bilinear, align_corners)
    and rescale its values so it stays in pixels of the new grid."""
    h, w = flow.shape[-2:]
    H, W = size_hw
    if (h, w) == (H, W):
        return flow
    up = F.interpolate(flow, size=(H, W), mode="bilinear", align_corners=True)
    sy = (H - 1) / max(h - 1, 1)
    sx = (W - 1) / max(w - 1, 1)
    return torch.cat([up[:, :1] * sy, up[:, 1:] * sx], dim=1)


def flow_to_normalized(flow: torch.Tensor) -> torch.Tensor:
    """Pixel flow ``(B, 2, H, W)`` (row, col) -> normalised ``(B, H, W, 2)`` (x, y)
    displacement in ``grid_sample`` units (align_corners=True)."""
    h, w = flow.shape[-2:]
    ny = flow[:, 0] * (2.0 / max(h - 1, 1))
    nx = flow[:, 1] * (2.0 / max(w - 1, 1))
    return torch.stack([nx, ny], dim=-1)


def identity_grid(b: int, h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(B, H, W, 2)`` normalised identity sampling grid (x, y), align_corners=True."""
    theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], device=device, dtype=dtype)
    return F.affine_grid(theta.expand(b, 2, 3), [b, 1, h, w], align_corners=True)


def warp_any(moving: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Warp ``moving`` ``(B, C, Hm, Wm)`` with a pixel flow defined on any grid.

    The flow ``(B, 2, h, w)`` is upsampled to the output grid ``out_hw`` = the flow's
    grid. The moving image may have another size: sampling is in normalised
    coordinates, so a flow computed between two working-resolution images applies
    to the full-resolution moving image.
    """
    b, _, h, w = flow.shape
    grid = identity_grid(b, h, w, flow.device, flow.dtype) + flow_to_normalized(flow)
    if moving.shape[0] != b:
        moving = moving.expand(b, *moving.shape[1:])
    return F.grid_sample(moving, grid, mode=mode, padding_mode="border", align_corners=True)


def affine_to_flow(theta: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """A ``(B, 2, 3)`` affine in ``affine_grid`` normalised (x, y) coordinates ->
    pixel flow ``(B, 2, H, W)`` (row, col) on a grid of ``size_hw``."""
    H, W = size_hw
    b = theta.shape[0]
    grid = F.affine_grid(theta, [b, 1, H, W], align_corners=True)
    d = grid - identity_grid(b, H, W, theta.device, theta.dtype)
    return torch.stack([d[..., 1] * ((H - 1) / 2.0), d[..., 0] * ((W - 1) / 2.0)], dim=1)


class NiceTrans2D(nn.Module):
    """Affine + coarse-to-fine deformable registration network (paper B.3).

    ``forward(moving, fixed)`` takes ``(B, 1, H, W)`` float32 images in [0, 1] (B
    may be 1 for ``moving`` and larger for ``fixed``) with H, W divisible by
    ``2**n_levels`` (transformer steps accept any size: MONAI pads the windows);
    returns the pixel flow ``(B, 2, H, W)`` (see module docstring) that warps
    ``moving`` onto ``fixed``.
    """

    def __init__(self, cfg: NetConfig = NetConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        n = cfg.n_levels
        chans = [min(cfg.enc_channels * 2 ** s, cfg.max_channels) for s in range(n + 1)]
        self.enc_chans = chans
        self.encoder = nn.ModuleList(
            [_block(1, chans[0], cfg.convs_per_block)]
            + [_block(chans[s - 1], chans[s], cfg.convs_per_block, stride=2) for s in range(1, n + 1)])
        coarsest = n
        first = n - 1 if cfg.affine_only_coarsest else n
        self.scales = list(range(first, cfg.finest_scale - 1, -1))  # coarse -> fine
        d = cfg.dec_channels
        self.affine_stage = None  # transformer body of the affine step (NICE-Trans)
        state_ch = 0
        if cfg.affine and self._use_transformer(coarsest):
            state_ch = self._width(coarsest)
            self.affine_stage = self._step_body(2 * chans[coarsest], coarsest)
        self.dec_blocks = nn.ModuleList()
        self.flow_heads = nn.ModuleList()
        for s in self.scales:
            cin = 2 * chans[s] + state_ch + 2
            self.dec_blocks.append(self._step_body(cin, s))
            state_ch = self._width(s)
            head = nn.Conv2d(state_ch, 2, 3, 1, 1)
            nn.init.zeros_(head.weight)  # identity warp at start (B.3)
            nn.init.zeros_(head.bias)
            self.flow_heads.append(head)
        if cfg.affine:
            aff_in = self._width(coarsest) if self.affine_stage is not None else 2 * chans[coarsest]
            self.affine_head = nn.Sequential(
                nn.Linear(aff_in, d), nn.LeakyReLU(0.2, inplace=True), nn.Linear(d, 6))
            nn.init.zeros_(self.affine_head[-1].weight)  # residual around identity (B.3)
            nn.init.zeros_(self.affine_head[-1].bias)
        self.warp = make_warp()

    def _width(self, s: int) -> int:
        return self.cfg.dec_channels * 2 ** s if self.cfg.dec_doubling else self.cfg.dec_channels

    def _use_transformer(self, s: int) -> bool:
        return self.cfg.transformer_depth > 0 and s >= self.cfg.transformer_min_scale

    def _step_body(self, cin: int, s: int) -> nn.Module:
        """Conv block, or 1x1 projection + Swin stage (NICE-Trans), ``cin -> width(s)``."""
        if not self._use_transformer(s):
            return _block(cin, self._width(s), self.cfg.convs_per_block)
        from oneshotsam.methods.medpersam.nice_trans_blocks import TransformerStep
        c = self.cfg
        return TransformerStep(cin, self._width(s), c.transformer_depth, c.head_dim,
                               c.window_size, c.mlp_ratio)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for blk in self.encoder:
            x = blk(x)
            feats.append(x)
        return feats

    def affine_theta(self, fm: torch.Tensor, ff: torch.Tensor,
                     state: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 2, 3)`` affine: identity + learned residual (scale init 1, B.3), from
        the pooled coarsest features, or the pooled affine-step ``state`` when given."""
        if state is not None:
            pooled = state.mean(dim=(2, 3))
        else:
            pooled = torch.cat([fm.mean(dim=(2, 3)), ff.mean(dim=(2, 3))], dim=1)
        res = self.affine_head(pooled).view(-1, 2, 3)
        eye = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], device=res.device, dtype=res.dtype)
        return eye + res

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        b = fixed.shape[0]
        if moving.shape[0] == 1 and b > 1:  # one reference: encode it once
            fm = [f.expand(b, *f.shape[1:]) for f in self.encode(moving)]
            ff = self.encode(fixed)
        else:
            both = self.encode(torch.cat([moving, fixed], dim=0))
            fm = [f[:b] for f in both]
            ff = [f[b:] for f in both]
        top = self.cfg.n_levels
        size = tuple(ff[top].shape[-2:])
        state = None
        if self.affine_stage is not None:
            state = self.affine_stage(torch.cat([fm[top], ff[top]], dim=1))
        if self.cfg.affine:
            theta = self.affine_theta(fm[top], ff[top], state)
            self._last_affine = theta  # read by the trainer (regulariser on the deformable part)
            flow = affine_to_flow(theta, size)
        else:
            flow = ff[top].new_zeros(b, 2, *size)
        for i, s in enumerate(self.scales):
            size = tuple(ff[s].shape[-2:])
            flow = upsample_flow(flow, size)
            wm = self.warp(fm[s], flow)
            parts = [wm, ff[s], flow]
            if state is not None:
                parts.append(F.interpolate(state, size=size, mode="bilinear", align_corners=False))
            state = self.dec_blocks[i](torch.cat(parts, dim=1))
            res = self.flow_heads[i](state)
            flow = res + self.warp(flow, res)  # compose: u'(x) = v(x) + u(x + v(x))
        return upsample_flow(flow, tuple(fixed.shape[-2:]))


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def flow_stats(flow: torch.Tensor, theta: torch.Tensor | None = None) -> dict:
    """Summary of a pixel flow ``(1, 2, H, W)``: mean / max displacement (pixels),
    fraction of folded pixels (Jacobian determinant of x -> x + u(x) <= 0, forward
    differences) and the affine matrix when given."""
    f = flow[0].detach().float()
    mag = torch.sqrt((f ** 2).sum(0))
    dy_r = torch.diff(f[0], dim=0)[:, :-1]
    dy_c = torch.diff(f[0], dim=1)[:-1, :]
    dx_r = torch.diff(f[1], dim=0)[:, :-1]
    dx_c = torch.diff(f[1], dim=1)[:-1, :]
    jac = (1 + dy_r) * (1 + dx_c) - dy_c * dx_r
    out = {"mean_disp_px": float(mag.mean()), "max_disp_px": float(mag.max()),
           "folding_fraction": float((jac <= 0).float().mean())}
    if theta is not None:
        out["affine"] = [[round(float(v), 5) for v in row] for row in theta[0].detach().float().cpu()]
    return out
