"""The one training loop of the warping model (2D cohorts, pairs, volumes, follow-ups).

Both trainers -- :class:`.warp_train.WarpSession` (one reference, 2D targets) and
:class:`oneshotsam.volume.warpvol.WarpVolumeEngine` (slices of a volume and its
follow-ups) -- differ only in how one step's loss is made (which image pairs,
which L_aug copies); the optimiser steps, the stopping rule, cancellation and the
record of the run are here.

Imports torch lazily (inside :func:`fit`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from oneshotsam.methods.medpersam.warp_adapt import ConvergenceRule


@dataclass
class FitRecord:
    """What one training run did.

    Attributes:
        steps: optimiser steps run.
        max_steps: the rule's ceiling.
        stopped: why it stopped (:meth:`ConvergenceRule.reason`, or ``"cancelled"``).
        cancelled: the tick callback asked to stop.
        seconds: wall seconds of the loop.
        losses: total loss of every step.
        parts: per step, the named loss terms (``{"loss": ..., "warp": ...}``).
    """

    steps: int = 0
    max_steps: int = 0
    stopped: str = ""
    cancelled: bool = False
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    parts: list[dict] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Report fields: steps, ceiling, why it stopped, first / last / final loss
        (``loss_final`` = mean of the last 10 steps: the per-step loss is noisy)."""
        ls = self.losses
        return {"steps": self.steps, "max_steps": self.max_steps, "stopped": self.stopped,
                "seconds": round(self.seconds, 3), "cancelled": self.cancelled,
                "loss_first": ls[0] if ls else None, "loss_last": ls[-1] if ls else None,
                "loss_final": sum(ls[-10:]) / len(ls[-10:]) if ls else None}


def fit(model: Any, optimizer: Any, step_loss: Callable[[int], tuple[Any, dict]],
        rule: ConvergenceRule, tick: Callable[[int, int], bool],
        tick_every: int = 1, bf16: bool = False) -> FitRecord:
    """Run optimiser steps on ``model`` until ``rule`` stops them.

    Args:
        model: the ``torch.nn.Module`` trained (put in train mode, then eval mode).
        optimizer: its optimiser (kept by the caller across calls, e.g. retraining).
        step_loss: ``step_loss(step) -> (loss tensor, {name: float})`` for step
            ``step`` (0-based); draws its own batch.
        rule: floor, ceiling and convergence test.
        tick: ``tick(done, max_steps) -> bool`` every ``tick_every`` steps; False
            cancels (the model keeps the weights reached so far).
        bf16: bfloat16 autocast (CPU only).
    Returns:
        :class:`FitRecord` of this run only.
    """
    import torch

    rec = FitRecord(max_steps=rule.max_steps)
    t0 = time.perf_counter()
    model.train()
    try:
        for s in range(rule.max_steps):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss, parts = step_loss(s)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            rec.losses.append(value)
            rec.parts.append({**parts, "loss": value})
            rec.steps = s + 1
            if (s + 1) % tick_every == 0 and not tick(s + 1, rule.max_steps):
                rec.cancelled = True
                break
            if rule.should_stop(rec.losses):
                break
    finally:
        model.eval()
        rec.seconds = time.perf_counter() - t0
    rec.stopped = "cancelled" if rec.cancelled else rule.reason(rec.losses)
    return rec


__all__ = ["FitRecord", "fit"]
