"""Test-time training of Med-PerSAM's warping model (paper sections 3.1, 3.3; appendix B).

:class:`WarpSession` holds one reference (image + label map) and a set of target
images, trains the NICE-Trans-style network of :mod:`.nice_trans` on (reference,
target) pairs plus augmented reference pairs (``L_train`` = ``L_warp`` + ``L_aug``,
Eq. 1-3), optionally with pseudo-labels (``L_retrain``, section 3.3), and warps the
reference labels onto each target (Eq. 4).

Grids and frames:

* **working grid**: every image (reference and targets, any sizes) is converted to
  grey and resized to ``resolution x resolution`` (aspect ratio NOT kept: each image
  is stretched to the square, so the flow lives in normalised image coordinates and
  the same normalised point of two images of different shapes corresponds). With
  ``roi_margin`` set, every image is first cropped to the same normalised box: the
  bounding box of the reference labels grown by ``roi_margin`` times its size on each
  side (useful for follow-up pairs of one patient where the structure is small).
* the network's flow (pixels of the working grid, (row, col), pull convention, see
  :mod:`.nice_trans`) is converted to normalised units, upsampled bilinearly to the
  target's full ``(H, W)`` and used to sample the reference's full-resolution one-hot
  labels (bilinear): the answer is computed at full resolution.

Two models (``WarpConfig.model``): ``"network"``, the NICE-Trans-style network above,
one for all targets; ``"field"``, each target's own affine + displacement pyramid
(:mod:`.flow_field`) optimised directly with the same losses by the same loop (no
L_aug copies; every step moves every target once). A field target whose start search
(``field.search_shift``) found a better start than the identity is optimised from
both (two slots of the field) and warped with the one that ends more similar.

Per-target instance optimisation (``finetune_steps`` > 0, CPU presets): before a
target is warped, a copy of the trained network is fine-tuned for a few steps on that
(reference, target) pair with the same losses -- still test-time training of the same
model -- and the shared weights are restored afterwards.

This module imports torch lazily (inside methods) so that ``WarpConfig`` can be built
without torch.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping, Sequence

import numpy as np

from oneshotsam.checks import check_reference
from oneshotsam.errors import OneShotError
from oneshotsam.progress import ProgressFn, no_progress
from oneshotsam.methods.medpersam.warp_config import WarpConfig, WarpResult
from oneshotsam.types import Image2D


def _grey(img: Image2D, percentiles: tuple[float, float] | None) -> np.ndarray:
    """``(H, W)`` float32 in [0, 1]: the registration's view of ``img``."""
    from oneshotsam.methods.medpersam.warp_adapt import registration_intensity
    return registration_intensity(img.grey(), percentiles)


class WarpSession:
    """One test-time training session (one reference, many targets); see module doc."""

    def __init__(self, cfg: WarpConfig, reference: Image2D, reference_labels: np.ndarray,
                 targets: Sequence[Image2D], device: str = "cpu", seed: int = 0) -> None:
        import torch

        from oneshotsam.methods.medpersam.losses import WarpLosses
        from oneshotsam.methods.medpersam.nice_trans import NiceTrans2D
        from oneshotsam.methods.medpersam.warp_adapt import histogram_match
        from oneshotsam.methods.medpersam.warp_fit import AdamW

        self.values = check_reference(reference, reference_labels)
        if len(targets) == 0:
            raise OneShotError("no target images given: pass at least one image to segment")
        self.cfg = cfg
        from oneshotsam.devices import resolve_device

        self.device = torch.device(resolve_device(device))
        self.n_targets = len(targets)
        self.target_hw = [t.shape_hw for t in targets]
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        lab = np.asarray(reference_labels)
        self.roi = self._roi_box(lab) if cfg.roi_margin is not None else (0.0, 1.0, 0.0, 1.0)
        # full-resolution one-hot of the reference (channel 0 background)
        oh = np.stack([lab == 0] + [lab == v for v in self.values]).astype(np.float32)
        self.ref_onehot_full = torch.from_numpy(oh)[None].to(self.device)
        pct = cfg.intensity_percentiles
        ref_grey = _grey(reference, pct)
        self.ref = self._to_work(ref_grey)
        self.ref_onehot = self._to_work_multi(oh)
        match = (lambda g: histogram_match(g, ref_grey)) if cfg.histogram_match else (lambda g: g)
        self.targets = torch.cat([self._to_work(match(_grey(t, pct))) for t in targets], dim=0)
        self.smoothing_sigmas = self._match_noise(cfg.noise_match) if cfg.noise_match else []
        self.field = cfg.model == "field"
        self.losses = WarpLosses(cfg.loss)
        # slot k of the model trains against target slot_target[k] (one slot per target,
        # plus a second slot, from the searched start, for a field target whose search moved)
        self.slot_target = list(range(self.n_targets))
        self.start_search: dict | None = None
        self.start_used: dict[int, str] = {}  # field targets with two starts: which one won
        if self.field:
            self.net = self._field_slots()
        else:
            self.net = NiceTrans2D(cfg.net).to(self.device)
        self.opt = AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.pseudo: dict[int, Any] = {}
        self.history: list[dict] = []
        self.cancelled = False
        self.rounds = 0

    # ----------------------------------------------------------------- grids
    def _roi_box(self, lab: np.ndarray) -> tuple[float, float, float, float]:
        """Normalised (y0, y1, x0, x1) in [0, 1] around the reference labels."""
        h, w = lab.shape
        rows = np.flatnonzero((lab != 0).any(axis=1))
        cols = np.flatnonzero((lab != 0).any(axis=0))
        m = float(self.cfg.roi_margin)
        y0, y1 = rows[0] / (h - 1), rows[-1] / (h - 1)
        x0, x1 = cols[0] / (w - 1), cols[-1] / (w - 1)
        gy, gx = (y1 - y0) * m + 0.02, (x1 - x0) * m + 0.02
        return max(0.0, y0 - gy), min(1.0, y1 + gy), max(0.0, x0 - gx), min(1.0, x1 + gx)

    def _to_work_multi(self, arr_chw: np.ndarray):
        """``(C, H, W)`` -> ``(1, C, S, S)`` on the working grid (area-like resize)."""
        import torch
        import torch.nn.functional as F
        t = torch.from_numpy(np.array(arr_chw, dtype=np.float32, copy=True))[None].to(self.device)
        S = self.cfg.resolution
        if self.roi != (0.0, 1.0, 0.0, 1.0):
            h, w = t.shape[-2:]
            y0, y1, x0, x1 = self.roi
            big = (max(S, int(round((y1 - y0) * h))), max(S, int(round((x1 - x0) * w))))
            t = F.grid_sample(t, _box_grid(self.roi, big, t), mode="bilinear", align_corners=True)
        return F.interpolate(t, size=(S, S), mode="bilinear", antialias=True, align_corners=False)

    def _to_work(self, grey: np.ndarray):
        return self._to_work_multi(grey[None]).clamp(0, 1)

    def _match_noise(self, factor: float) -> list[float]:
        """Smooth (in place) the working-grid images whose noise exceeds ``factor``
        times the cleanest image's (and :data:`.warp_adapt.NOISE_FLOOR`) down to that
        level; returns the Gaussian sigma used per image (reference first, 0 = none)."""
        import torch

        from oneshotsam.methods.medpersam.warp_adapt import noise_sd, noise_targets, smooth_to_noise
        imgs = [self.ref[0, 0]] + [t[0] for t in self.targets]
        arrays = [x.cpu().numpy() for x in imgs]
        estimates = [noise_sd(a) for a in arrays]
        goals = noise_targets(estimates, factor)
        sigmas = []
        for i, (a, sd, goal) in enumerate(zip(arrays, estimates, goals)):
            out, sigma = smooth_to_noise(a, goal, sd=sd) if goal is not None else (a, 0.0)
            sigmas.append(round(sigma, 3))
            if sigma:
                t = torch.from_numpy(np.array(out, dtype=np.float32)).to(self.device)
                if i == 0:
                    self.ref[0, 0] = t
                else:
                    self.targets[i - 1, 0] = t
        return sigmas

    def _field_slots(self):
        """The ``field`` model: one slot per target from the identity, and for each
        target whose start search (``cfg.field.search_shift``) found a better start,
        a second slot from there; :meth:`warp_target` keeps the slot that ends more
        similar to the target."""
        import torch

        from oneshotsam.methods.medpersam.flow_field import (FlowField2D, identity_affine,
                                                             search_starts, start_candidates)
        from oneshotsam.methods.medpersam.nice_trans import make_warp
        fc = self.cfg.field
        eye = identity_affine(self.ref)
        starts = [eye] * self.n_targets
        if fc.search_shift > 0:
            found = search_starts(fc, self.ref, self.targets, self.losses.similarity, make_warp())
            moved = [i for i in range(self.n_targets) if not torch.equal(found[i], eye)]
            self.slot_target += moved
            starts += [found[i] for i in moved]
            self.start_search = {"candidates": len(start_candidates(fc)), "two_starts": len(moved)}
        net = FlowField2D(fc, len(self.slot_target), self.cfg.resolution).to(self.device)
        net.set_start(torch.stack(starts))
        return net

    # -------------------------------------------------------------- training
    def _forward(self, fixed, idx: Sequence[int]):
        """Flow (B,2,S,S) from reference to ``fixed`` (targets ``idx``, or L_aug
        copies for the network) and its deformable part."""
        from oneshotsam.methods.medpersam.nice_trans import affine_to_flow
        flow = self.net(self.ref, fixed, idx) if self.field else self.net(self.ref, fixed)
        theta = getattr(self.net, "_last_affine", None)  # set by the forward pass
        if theta is not None:
            aff = affine_to_flow(theta, tuple(fixed.shape[-2:]))
            return flow, flow - aff
        return flow, flow

    def _step_loss(self, idx: Sequence[int], n_aug: int):
        """Loss of one step: ``L_warp`` on targets ``idx`` (+ pseudo-label DiceCE,
        L_retrain) and the weighted ``L_aug`` on ``n_aug`` augmented reference pairs;
        one network call for both (the reference is encoded once)."""
        import torch
        cfg, L = self.cfg, self.losses
        b = len(idx)
        fixed = self.targets[[self.slot_target[i] for i in idx]]
        use_aug = n_aug > 0 and cfg.loss.lambda_aug > 0
        if use_aug:
            from oneshotsam.methods.medpersam.augment import augment_pair
            aimg, amask = augment_pair(self.ref, self.ref_onehot, n_aug, cfg.augment, self.gen)
            fixed = torch.cat([fixed, aimg], dim=0)
        flow, deform = self._forward(fixed, list(idx))
        warped = self.net.warp(self.ref.expand(fixed.shape[0], -1, -1, -1), flow)
        lw = L.warp_loss(warped[:b], fixed[:b], deform[:b])
        loss = lw
        parts = {"warp": float(lw.detach())}
        sel = [k for k, i in enumerate(idx) if self.slot_target[i] in self.pseudo]
        need_mask = bool(sel) or use_aug
        if need_mask:
            rows = sel + (list(range(b, b + n_aug)) if use_aug else [])
            wm = self.net.warp(self.ref_onehot.expand(len(rows), -1, -1, -1), flow[rows])
        if sel:
            tgt = torch.cat([self.pseudo[self.slot_target[idx[k]]] for k in sel], dim=0)
            ls = cfg.loss.lambda_seg * L.seg(wm[:len(sel)], tgt)
            loss = loss + ls * len(sel) / b
            parts["retrain"] = float(ls.detach())
        if use_aug:  # weighting of Eq. 2: losses.WarpLosses.aug_loss
            la = L.aug_loss(L.warp_loss(warped[b:], fixed[b:], deform[b:]),
                            L.seg(wm[len(sel):], amask))
            loss = loss + la
            parts["aug"] = float(la.detach())
        return loss, parts

    def _run_steps(self, rule, batch: int, progress: ProgressFn, label: str):
        """Steps over shuffled epochs of the targets through :func:`.warp_fit.fit`
        until ``rule`` (a :class:`~.warp_adapt.ConvergenceRule`) stops them."""
        from oneshotsam.methods.medpersam.warp_fit import fit
        cfg = self.cfg
        n_aug = cfg.aug_per_step if cfg.aug_per_step is not None else batch
        if self.field:
            n_aug = 0  # a field belongs to one target: no augmented copies
        order: list[int] = []

        def step_loss(step: int):
            nonlocal order
            if self.field:  # stages in the first training only; retraining moves everything
                self.net.set_stage(step) if self.rounds == 0 else self.net.all_stages()
            if len(order) < batch:
                order += list(self.rng.permutation(len(self.slot_target)))
            idx, order = order[:batch], order[batch:]
            return self._step_loss(idx, n_aug)

        try:
            rec = fit(self.net, self.opt, step_loss, rule,
                      lambda d, n: progress(d, n, f"{label} step {d}/{n}"),
                      bf16=cfg.bf16 and self.device.type == "cpu")
        finally:
            if self.field:
                self.net.all_stages()
        self.history.extend(rec.parts)
        self.cancelled = self.cancelled or rec.cancelled
        return rec

    def batch(self) -> int:
        """Targets per optimiser step: ``batch_size`` (at most all targets) for the
        network; every target for the ``field`` model (each step moves every
        target's own deformation once)."""
        return len(self.slot_target) if self.field else min(self.cfg.batch_size, self.n_targets)

    def planned_steps(self, epochs: int) -> int:
        """Most optimiser steps a training call of ``epochs`` epochs may run."""
        return self.schedule(epochs).max_steps

    def schedule(self, epochs: int):
        """The :class:`~.warp_adapt.ConvergenceRule` of a training call of ``epochs``.

        Fixed schedule (``converge_window`` 0): ``epochs`` epochs clamped to
        ``[min_steps, max_steps]``. Converging schedule: that count is the floor,
        and training goes on while the loss still improves, up to ``max_steps``.
        """
        from oneshotsam.methods.medpersam.warp_adapt import ConvergenceRule
        cfg = self.cfg
        batch = self.batch()
        n = max(epochs * math.ceil(self.n_targets / batch), cfg.min_steps)
        n = min(n, cfg.max_steps) if cfg.max_steps is not None else n
        if cfg.converge_window > 0 and cfg.max_steps is not None:
            return ConvergenceRule(min_steps=n, max_steps=cfg.max_steps,
                                   window=cfg.converge_window, tol=cfg.converge_tol)
        return ConvergenceRule(min_steps=n, max_steps=n)

    def train(self, epochs: int | None = None, pseudo_labels: Mapping[int, np.ndarray] | None = None,
              progress: ProgressFn = no_progress) -> dict:
        """Train the warping model (``L_train``; with ``pseudo_labels`` ``L_retrain``).

        Args:
            epochs: None = ``cfg.epochs`` for the first call and ``cfg.retrain_epochs``
                afterwards (B.4).
            pseudo_labels: ``{target_index: (H, W) label map in that target's grid
                with reference label values}``; adds DiceCE(warped mask, pseudo-label)
                for those targets (section 3.3). Replaces earlier pseudo-labels.
            progress: called after each optimiser step; False cancels (the model
                keeps the weights reached so far; ``self.cancelled`` is set).
        Returns:
            ``{"steps", "max_steps", "stopped", "seconds", "loss_first", "loss_last",
            "loss_final", "cancelled", "history"}``; ``loss_final`` = mean loss of the
            last 10 steps (the per-step loss is noisy: random batches, L_aug copies).
        """
        import torch
        if pseudo_labels is not None:
            self.set_pseudo_labels(pseudo_labels)
        if epochs is None:
            epochs = self.cfg.epochs if self.rounds == 0 else self.cfg.retrain_epochs
        rule = self.schedule(int(epochs))
        old = torch.get_num_threads()
        if self.cfg.threads:
            torch.set_num_threads(int(self.cfg.threads))
        try:
            rec = self._run_steps(rule, self.batch(), progress,
                                  "warp training" if self.rounds == 0 else "warp retraining")
        finally:
            torch.set_num_threads(old)
        self.rounds += 1
        return {**rec.summary(), "history": rec.parts}

    def set_pseudo_labels(self, pseudo_labels: Mapping[int, np.ndarray]) -> None:
        """Store pseudo-labels (target grid, reference values) on the working grid."""
        self.pseudo = {}
        for i, lab in pseudo_labels.items():
            i = int(i)
            if not 0 <= i < self.n_targets:
                raise OneShotError(f"pseudo-label for target {i} but there are {self.n_targets} targets")
            lab = np.asarray(lab)
            if lab.shape != self.target_hw[i]:
                raise OneShotError(f"pseudo-label {i} is {lab.shape}, target is {self.target_hw[i]}")
            oh = np.stack([~np.isin(lab, self.values)] + [lab == v for v in self.values]).astype(np.float32)
            w = self._to_work_multi(oh)
            self.pseudo[i] = _harden(w)

    # --------------------------------------------------------------- warping
    def _finetuned_flow(self, index: int):
        import torch
        cfg = self.cfg
        fixed = self.targets[index:index + 1]
        if self.field:  # the slot of this target that ends most similar to it
            slots = [k for k, t in enumerate(self.slot_target) if t == index]
            with torch.no_grad():
                fx = fixed.expand(len(slots), -1, -1, -1)
                flows = self._forward(fx, slots)[0]
                sims = self.losses.similarity(self.net.warp(self.ref.expand_as(fx), flows), fx)
            k = int(sims.argmax())
            self.net._last_affine = self.net._last_affine[k:k + 1]
            if len(slots) > 1:
                self.start_used[index] = "searched" if k else "identity"
            return flows[k:k + 1]
        if cfg.finetune_steps <= 0:
            with torch.no_grad():
                self.net.eval()
                return self._forward(fixed, [index])[0]
        from oneshotsam.methods.medpersam.warp_fit import AdamW
        saved = copy.deepcopy(self.net.state_dict())
        opt = AdamW(self.net.parameters(), lr=cfg.finetune_lr, weight_decay=cfg.weight_decay)
        self.net.train()
        n_aug = 0 if cfg.aug_per_step == 0 else 1
        try:
            for _ in range(cfg.finetune_steps):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16 and self.device.type == "cpu"):
                    loss, _ = self._step_loss([index], n_aug)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            with torch.no_grad():
                self.net.eval()
                return self._forward(fixed, [index])[0]
        finally:
            self.net.load_state_dict(saved)

    def warp_target(self, index: int) -> WarpResult:
        """Warp the reference labels onto target ``index`` (Eq. 4) at its full size."""
        import torch

        from oneshotsam.methods.medpersam.nice_trans import flow_stats
        if not 0 <= index < self.n_targets:
            raise OneShotError(f"target index {index} out of range 0..{self.n_targets - 1}")
        old = torch.get_num_threads()
        if self.cfg.threads:
            torch.set_num_threads(int(self.cfg.threads))
        try:
            flow = self._finetuned_flow(index).float().detach()
            with torch.no_grad():
                fixed = self.targets[index:index + 1]
                warped = self.net.warp(self.ref, flow)
                sim = float(self.losses.similarity(warped, fixed)[0])
                stats = flow_stats(flow, getattr(self.net, "_last_affine", None))
                if index in self.start_used:
                    stats["start"] = self.start_used[index]
                local, whole = self._local_similarity(warped, fixed, flow)
                probs = self._full_res_probs(flow, self.target_hw[index])
        finally:
            torch.set_num_threads(old)
        vals = np.array([0] + self.values)
        labels = vals[probs.argmax(0)].astype(np.min_scalar_type(max(self.values)))
        fit = {v: x / max(whole, 1e-6) for v, x in local.items()}
        return WarpResult(probs=probs, labels=labels, similarity=sim, flow_stats=stats,
                          local_similarity=local, label_fit=fit)

    def _local_similarity(self, warped, fixed, flow) -> tuple[dict[int, float], float]:
        """Mean SSIM map (MONAI's, Gaussian window of ``ssim_window``) of the warped
        reference vs the target inside each warped label grown by 2 pixels (working
        grid), and the map's mean (= the SSIM similarity of SSIM presets)."""
        import torch.nn.functional as F
        from oneshotsam.methods.medpersam.torch_losses import ssim_and_cs

        w = int(self.cfg.loss.ssim_window)
        smap, _ = ssim_and_cs(warped.float(), fixed.float(), w, 1.5, 1.0)
        whole = float(smap.mean())
        smap = F.pad(smap, (w // 2,) * 4, mode="replicate")[0, 0]
        onehot = self.net.warp(self.ref_onehot, flow)[0]
        out: dict[int, float] = {}
        for c, v in enumerate(self.values, start=1):
            m = F.max_pool2d((onehot[c:c + 1] > 0.5).float()[None], 5, 1, 2)[0, 0] > 0
            out[v] = float(smap[m].mean()) if bool(m.any()) else 0.0
        return out, whole

    def _full_res_probs(self, flow, hw: tuple[int, int]) -> np.ndarray:
        """Sample the full-res reference one-hot through the working-grid flow."""
        import torch
        import torch.nn.functional as F

        from oneshotsam.methods.medpersam.nice_trans import flow_to_normalized
        H, W = hw
        y0, y1, x0, x1 = self.roi
        # working-grid position of every target pixel (normalised to [-1, 1] of the ROI)
        ys = (torch.linspace(0, 1, H) - y0) / max(y1 - y0, 1e-6) * 2 - 1
        xs = (torch.linspace(0, 1, W) - x0) / max(x1 - x0, 1e-6) * 2 - 1
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        pos = torch.stack([gx, gy], dim=-1)[None].to(flow)
        nflow = flow_to_normalized(flow).permute(0, 3, 1, 2)  # (1, 2[x,y], S, S)
        d = F.grid_sample(nflow, pos, mode="bilinear", padding_mode="border", align_corners=True)
        src = pos + d.permute(0, 2, 3, 1)  # ROI-normalised source position in the reference
        # ROI-normalised -> reference-image-normalised coordinates
        sx = ((src[..., 0] + 1) / 2 * (x1 - x0) + x0) * 2 - 1
        sy = ((src[..., 1] + 1) / 2 * (y1 - y0) + y0) * 2 - 1
        grid = torch.stack([sx, sy], dim=-1)
        p = F.grid_sample(self.ref_onehot_full, grid.to(self.ref_onehot_full), mode="bilinear",
                          padding_mode="border", align_corners=True)[0]
        inside = ((pos[0, ..., 0].abs() <= 1) & (pos[0, ..., 1].abs() <= 1))
        if not bool(inside.all()):  # outside the ROI: background
            bg = torch.zeros_like(p)
            bg[0] = 1
            p = torch.where(inside[None], p, bg)
        p = p / p.sum(0, keepdim=True).clamp_min(1e-6)
        return p.cpu().numpy().astype(np.float32)


def _box_grid(roi, size_hw, like):
    """Sampling grid (1, h, w, 2) over a normalised (y0, y1, x0, x1) box."""
    import torch
    y0, y1, x0, x1 = roi
    ys = torch.linspace(2 * y0 - 1, 2 * y1 - 1, size_hw[0])
    xs = torch.linspace(2 * x0 - 1, 2 * x1 - 1, size_hw[1])
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)[None].to(like)


def _harden(p):
    import torch.nn.functional as F
    return F.one_hot(p.argmax(1), p.shape[1]).permute(0, 3, 1, 2).to(p)
