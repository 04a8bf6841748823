"""The one training loop of the warping model (2D cohorts, pairs, volumes, follow-ups).

Both trainers -- :class:`.warp_train.WarpSession` (one reference, 2D targets) and
:class:`oneshotsam.volume.warpvol.WarpVolumeEngine` (slices of a volume and its
follow-ups) -- differ only in how one step's loss is made (which image pairs,
which L_aug copies); the optimiser steps, the stopping rule, cancellation and the
record of the run are here, with the optimiser both use (:class:`AdamW`).

Imports torch lazily (inside :func:`fit` and :class:`AdamW`).
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


class AdamW:
    """AdamW with torch's own update function, its state kept here.

    Each :meth:`step` calls ``torch.optim.adamw.adamw`` -- the function that
    ``torch.optim.AdamW.step`` calls -- with the same defaults (betas 0.9 / 0.999,
    eps 1e-8, no AMSGrad), so the weights are those of ``torch.optim.AdamW`` step
    for step. What it avoids: ``torch.optim.Optimizer.step`` imports
    ``torch._dynamo`` on its first call (about 2.8 CPU-s), a large part of a
    one-pair command's budget.

    Args:
        params: the tensors trained (``model.parameters()``).
        lr: learning rate.
        weight_decay: decoupled weight decay.
    """

    def __init__(self, params: Any, lr: float, weight_decay: float = 1e-2,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        import torch
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("AdamW needs at least one parameter that requires grad")
        self.lr, self.weight_decay, self.betas, self.eps = float(lr), float(weight_decay), betas, eps
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.steps = [torch.tensor(0.0, dtype=torch.float32) for _ in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) the gradients of the parameters."""
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def step(self) -> None:
        """One AdamW update of the parameters that have a gradient."""
        import torch
        from torch.optim.adamw import adamw
        have = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not have:
            return
        pick = lambda xs: [xs[i] for i in have]
        with torch.no_grad():
            adamw(pick(self.params), [self.params[i].grad for i in have], pick(self.exp_avgs),
                  pick(self.exp_avg_sqs), [], pick(self.steps), amsgrad=False,
                  beta1=self.betas[0], beta2=self.betas[1], lr=self.lr,
                  weight_decay=self.weight_decay, eps=self.eps, maximize=False)


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


__all__ = ["AdamW", "FitRecord", "fit"]
