"""Per-target deformation fields optimised directly (instance optimisation).

The other model of the warping stage (``WarpConfig.model = "field"``): instead of a
network that predicts a flow from an image pair, every target owns its deformation,
an affine matrix plus a displacement pyramid, and the training loop of
:mod:`.warp_fit` optimises those numbers with the same losses (SSIM + diffusion,
Eq. 1). With one target (a pair) the network is trained on that pair alone anyway;
optimising the deformation itself reaches the same Dice in about a tenth of the
steps at a fraction of the cost per step (docs/warp_adaptive.md, pairs of five kinds).

Parameterisation, for target ``i`` on an ``S x S`` working grid:

* affine: ``theta_i = I + r_i``, a ``(2, 3)`` matrix in ``affine_grid`` normalised
  (x, y) coordinates; ``r_i`` starts at zero (identity);
* displacement: the sum over ``scales`` of zero-initialised ``(2, S / 2**s, S / 2**s)``
  grids, each upsampled bilinearly to ``S x S``; one unit = ``S / 8`` working pixels,
  so the coarse and fine grids share one learning rate; (row, col) pull convention
  of :mod:`.nice_trans`;
* flow = affine flow + displacement (pixels of the working grid). The deformable part
  (``flow - affine flow``) is what the diffusion regulariser sees.

Start (:func:`search_starts`): with ``search_shift`` > 0 the candidate start
(:func:`start_candidates`: shifts, optionally scales) whose warped reference is most
similar to the target is found by exhaustive search, as classical registration
initialises its optimiser, so that a structure that moved further than the gradient
steps follow is found. The session optimises such a target from both starts (two
slots of this module) and keeps the one that ends more similar
(:class:`.warp_train.WarpSession`; measurements in docs/warp_adaptive.md). Training
coarse to fine: the first ``affine_steps`` steps move only the affine
matrices (the displacement stays zero and gets no gradient); then the pyramid levels
join one at a time, coarsest first, every ``level_steps`` steps. Without the affine
stage the fine grids absorbed what the affine part should do (the 4D-Lung tumour pair:
0.43 instead of 0.85); with the levels joining one by one the cardiac ED -> ES pairs
gained 0.007 over all levels at once (docs/warp_adaptive.md).

This module imports torch at module level: import it lazily.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from oneshotsam.errors import OneShotError
from oneshotsam.methods.medpersam.nice_trans import affine_to_flow, make_warp

#: one displacement unit in working-grid pixels is ``S / UNIT_DIVISOR``
UNIT_DIVISOR = 8


@dataclass(frozen=True)
class FieldConfig:
    """Shape and schedule of the per-target fields.

    Attributes:
        scales: grid levels of the displacement pyramid, coarsest first; level
            ``s`` has ``S / 2**s`` points per side (at least 2).
        affine_steps: optimiser steps that move only the affine matrices before
            the displacement joins.
        level_steps: after the affine stage, steps between one pyramid level
            joining and the next (coarse to fine); 0 = all levels at once.
        search_shift: before any step, each target's affine starts from the best of
            a grid of candidates (:func:`start_candidates`): shifts up to this much
            in ``affine_grid`` units (the crop spans [-1, 1]); 0 = start from the
            identity.
        search_step: spacing of the shift grid.
        search_scales: isotropic scales tried at every shift (1.0 = none).
        search_pool: the candidates are compared on the working grid average-pooled
            by this factor (a start needs the gross layout, not fine texture).
    """

    scales: tuple[int, ...] = (3, 2, 1)
    affine_steps: int = 50
    level_steps: int = 0
    search_shift: float = 0.0
    search_step: float = 0.1
    search_scales: tuple[float, ...] = (1.0,)
    search_pool: int = 2

    def __post_init__(self) -> None:
        if any(int(s) < 0 for s in self.scales) or self.affine_steps < 0 or self.level_steps < 0:
            raise OneShotError(f"field: scales, affine_steps and level_steps must be >= 0, got "
                               f"{self.scales}, {self.affine_steps} and {self.level_steps}")
        if self.search_shift < 0 or self.search_step <= 0 or not self.search_scales \
                or any(float(x) <= 0 for x in self.search_scales) or self.search_pool < 1:
            raise OneShotError(f"field: search_shift must be >= 0, search_step > 0, "
                               f"search_scales positive and search_pool >= 1, got "
                               f"{self.search_shift}, {self.search_step}, {self.search_scales} "
                               f"and {self.search_pool}")


def identity_affine(like: torch.Tensor) -> torch.Tensor:
    """The ``(2, 3)`` identity affine (``affine_grid`` units), dtype / device of ``like``."""
    return torch.eye(2, 3, dtype=like.dtype, device=like.device)


def start_candidates(cfg: FieldConfig) -> torch.Tensor:
    """Candidate starting affines ``(K, 2, 3)`` (``affine_grid`` units): every scale of
    ``cfg.search_scales`` at every shift of the square grid ``-search_shift ..
    +search_shift`` (step ``search_step``, zero included); the identity comes first."""
    n = round(float(cfg.search_shift) / float(cfg.search_step))
    shifts = [k * float(cfg.search_step) for k in range(-n, n + 1)]
    cands = [(1.0, 0.0, 0.0)]
    cands += [(float(s), tx, ty) for s in cfg.search_scales for ty in shifts for tx in shifts
              if (float(s), tx, ty) != (1.0, 0.0, 0.0)]
    return torch.tensor([[[s, 0.0, tx], [0.0, s, ty]] for s, tx, ty in cands])


def search_starts(cfg: FieldConfig, reference: torch.Tensor, targets: torch.Tensor,
                  similarity, warp) -> torch.Tensor:
    """Best starting affine of each target among :func:`start_candidates`.

    Args:
        cfg: the candidates and the pooling of the comparison grid.
        reference: ``(1, 1, S, S)`` working-grid reference; ``targets``: ``(N, 1, S, S)``.
        similarity: ``(warped, fixed) -> (B,)`` similarity, higher is better.
        warp: ``(image, flow) -> warped`` (the model's warp).
    Returns:
        ``(N, 2, 3)`` affines; a target whose best candidate is no better than the
        identity gets the identity. The reference is warped once per candidate.
    """
    cands = start_candidates(cfg).to(reference)
    k = int(cfg.search_pool)
    with torch.no_grad():  # on a pooled grid: a start needs the layout, not fine texture
        ref, tgts = F.avg_pool2d(reference, k), F.avg_pool2d(targets, k)
        warped = warp(ref.expand(len(cands), -1, -1, -1), affine_to_flow(cands, tuple(ref.shape[-2:])))
        best = [int(similarity(warped, t[None].expand_as(warped)).argmax()) for t in tgts]
    return cands[best]


class FlowField2D(nn.Module):
    """Affine + displacement pyramid for each of ``n_targets`` targets (module doc).

    Args:
        cfg: :class:`FieldConfig`.
        n_targets: number of targets (one deformation each).
        size: side ``S`` of the square working grid.
    """

    def __init__(self, cfg: FieldConfig, n_targets: int, size: int) -> None:
        super().__init__()
        if n_targets < 1 or size < 2:
            raise ValueError(f"FlowField2D needs n_targets >= 1 and size >= 2, got {n_targets}, {size}")
        self.cfg, self.size = cfg, int(size)
        self.affine_res = nn.Parameter(torch.zeros(n_targets, 2, 3))
        self.grids = nn.ParameterList(
            nn.Parameter(torch.zeros(n_targets, 2, max(2, size >> int(s)), max(2, size >> int(s))))
            for s in cfg.scales)
        self.warp = make_warp()
        self.deformable, self.active_levels = True, len(self.grids)
        self._last_affine: torch.Tensor | None = None

    def set_start(self, theta: torch.Tensor) -> None:
        """Start target ``i``'s affine at ``theta[i]`` (``(n_targets, 2, 3)``)."""
        with torch.no_grad():
            self.affine_res.copy_(theta.to(self.affine_res) - identity_affine(self.affine_res))

    def set_stage(self, step: int) -> None:
        """The stage of training step ``step`` (0-based): affine only before
        ``cfg.affine_steps``; then the pyramid levels join one at a time, coarsest
        first, every ``cfg.level_steps`` steps (all at once when 0)."""
        c = self.cfg
        self.deformable = step >= c.affine_steps
        if not self.deformable or c.level_steps <= 0:
            self.active_levels = len(self.grids)
        else:
            self.active_levels = min(len(self.grids), (step - c.affine_steps) // c.level_steps + 1)

    def all_stages(self) -> None:
        """Every part on (after training: warping uses the whole deformation)."""
        self.deformable, self.active_levels = True, len(self.grids)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor, index) -> torch.Tensor:
        """Flow ``(B, 2, S, S)`` (working-grid pixels, (row, col), pull) of targets
        ``index`` (``B`` indices); ``moving`` / ``fixed`` only fix the grid size."""
        idx = torch.as_tensor(list(index), dtype=torch.long, device=self.affine_res.device)
        S = self.size
        if tuple(fixed.shape[-2:]) != (S, S):
            raise ValueError(f"FlowField2D was built for a {S} x {S} grid, got {tuple(fixed.shape[-2:])}")
        eye = identity_affine(self.affine_res)
        theta = eye + self.affine_res[idx]
        self._last_affine = theta
        flow = affine_to_flow(theta, (S, S))
        if self.deformable and len(self.grids):
            disp = sum(F.interpolate(g[idx], size=(S, S), mode="bilinear", align_corners=True)
                       for g in list(self.grids)[:self.active_levels])
            flow = flow + disp * (S / UNIT_DIVISOR)
        return flow


__all__ = ["UNIT_DIVISOR", "FieldConfig", "FlowField2D", "identity_affine", "search_starts",
           "start_candidates"]
