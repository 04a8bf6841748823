"""Volume engine for ``medpersam-warp``: ONE warping network per volume.

Med-PerSAM (paper section 3.1) trains a warping network at test time on
(reference, target) pairs. Warping a far slice straight onto the single
annotated slice is poor when the structure changes size along the volume, so
for volumes this engine trains one network
(:class:`~oneshotsam.methods.medpersam.nice_trans.NiceTrans2D` with
:class:`~oneshotsam.methods.medpersam.losses.WarpLosses`) on

* every pair of ADJACENT processing slices, in both directions
  (``L_warp = l_img L_img + l_reg ||grad phi||^2``, paper Eq. 1);
* for a follow-up, the cross-visit pairs (reference slice ``r`` -> aligned
  follow-up slice ``r``) of the annotated slices, over-sampled;
* the paper's ``L_aug`` on the annotated slice(s): the annotated slice warped
  onto augmented copies of itself (Table 13 transforms), with the DiceCE
  loss between the warped and the augmented masks (Eq. 3).

Propagation then chains: slice ``k``'s labels are warped onto slice ``k +- 1``
with the network's flow for that pair (one forward pass per slice: bounded
memory, no stack of embeddings). Confidence = image similarity after warping
(SSIM or LNCC in [0, 1]) times the fraction of warped label pixels that pass
the appearance refinement (per label: ``class_confidence``). Flows are in normalised coordinates, so a flow
computed on the small working grid is applied to the native-resolution labels
(nearest via argmax of the bilinearly warped one-hot).

Torch is imported lazily (inside methods).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

import numpy as np

from oneshotsam.methods.base import TargetResult

#: network of the CPU volume preset (measured on LA: see docs/volume_propagation.md)
_NET = {"enc_channels": 8, "dec_channels": 16, "n_levels": 3, "max_channels": 32,
        "finest_scale": 1, "convs_per_block": 1, "affine": True}
_LOSS = {"image_loss": "ncc", "ncc_window": 9, "lambda_img": 1.0, "lambda_reg": 0.75,
         "lambda_aug": 0.1, "lambda_seg": 1.0, "lambda_ce": 0.001}

#: how a walk carries labels to the next slice (``VolumeWarpConfig.walk_flow``)
WALK_FLOWS = ("farneback", "network")


@dataclass(frozen=True)
class VolumeWarpConfig:
    """Settings of the volume warp engine (source in brackets).

    Attributes:
        net: NetConfig fields [B.3 architecture, CPU-sized: measured].
        loss: LossConfig fields [B.1; Table 12 weights; NCC for MR/CT slices with
            black padding, B.1].
        resolution: long side of the working grid in pixels (physical aspect
            kept; sides rounded to multiples of 2**n_levels) [measured].
        steps: optimiser steps, within-volume propagation [measured on LA].
        followup_steps: optimiser steps for a follow-up (cross-visit pairs are the
            harder registration) [measured on ACDC ED->ES: docs/volume_propagation.md].
        batch: adjacent/cross pairs per step [measured].
        aug_per_step: augmented annotated copies per step (L_aug) [Eq. 3].
        cross_repeat: over-sampling of the cross-visit pairs [measured].
        lr: AdamW learning rate [B.4 1e-4 for 30 epochs; higher for a short
            schedule: measured].
        refine_sigma: appearance refinement after each warp: pixels of label
            ``v`` whose (3x3 median-filtered) windowed intensity is more than
            ``refine_sigma`` standard deviations from ``v``'s mean on the
            annotated slice(s) are removed, holes filled (0 disables). This lets
            a structure shrink to nothing where it ends, so the area rule of
            :mod:`oneshotsam.volume.stoprule` can stop it [measured on LA]. The same
            value refines a planning contour's cross-visit predictions, which the 2D
            method makes (:func:`oneshotsam.volume.engines.build_engine`) [measured on
            ACDC ED -> ES: docs/corrections.md].
        open_fraction: within a volume, after each slice-to-slice warp and its
            refinement, each label is opened (erosion then dilation) by a disc of
            ``floor(open_fraction * r)`` native pixels, ``r`` the radius of the largest
            disc inside that label on the annotated slice(s): parts narrower than about
            ``open_fraction`` of the structure's width (a leak through a gap in the
            refinement, the last sliver of a walk past the structure's end) are cut off
            before they are carried on to the next slice; a thin structure (a
            myocardium: ``r`` of 4-5 pixels) is left as it is; 0 disables. Not applied
            across visits [measured on the LA tuning split: docs/corrections.md, "The
            walk"].
        walk_flow: how a within-volume walk carries a slice's labels onto its
            neighbour before the refinement and the opening: ``"farneback"`` along
            the dense optical flow between the two native slices
            (:mod:`oneshotsam.volume.slice_flow`), ``"network"`` along the trained
            warp's flow. The trained warp still gives the step's image similarity
            (its confidence) and every cross-visit prediction [measured on the LA
            and ACDC ED tuning splits: docs/corrections.md, "The walk"].
        flow_window_px: the optical flow's averaging window, in pixels of the native
            slice (odd, at least 3; larger = smoother). Pixels, not mm: 7 px was best
            or tied on 0.625 mm LA slices and on 1.4 mm ACDC slices alike [measured:
            as ``walk_flow``].
        cross_flow_weight: a planning contour's follow-up (each slice predicted from
            the reference slice at its position by the 2D method): weight of the labels
            carried along the optical flow between the two slices
            (:mod:`oneshotsam.volume.slice_flow`, ``flow_window_px``) in a signed-distance
            fusion with the method's prediction, before the refinement; only labels the
            method predicted are fused (0 disables). Their agreement is also evidence
            for the slice's review [measured on the ACDC ED -> ES tuning split:
            docs/corrections.md].
        roi_margin: crop every slice to the box of the annotated labels (union
            over annotated slices) grown per side by this fraction of its larger
            physical side; None = whole slices. Keeps the small working grid on
            the structure instead of the background [measured on ACDC/LA].
        threads: torch threads (None = leave).
        intensity_percentiles: each volume (reference and processed, cropped to
            the ROI) is mapped by its own (low, high) percentiles to [0, 1] for
            the registration (one window per volume; None = as windowed), the
            same function as the 2D trainer
            (:func:`~oneshotsam.methods.medpersam.warp_adapt.registration_intensity`).
        converge_window, converge_tol, min_steps: > 0 = stop training on loss
            convergence between ``min_steps`` and ``steps``/``followup_steps``
            (:class:`~oneshotsam.methods.medpersam.warp_adapt.ConvergenceRule`);
            0 = the fixed step count (not yet measured on volumes).
    """

    net: dict = field(default_factory=lambda: dict(_NET))
    loss: dict = field(default_factory=lambda: dict(_LOSS))
    resolution: int = 128
    steps: int = 120
    followup_steps: int = 300
    batch: int = 8
    aug_per_step: int = 2
    cross_repeat: int = 8
    lr: float = 2e-3
    refine_sigma: float = 2.5
    open_fraction: float = 0.15
    walk_flow: str = "farneback"
    flow_window_px: int = 7
    cross_flow_weight: float = 0.25
    roi_margin: float | None = 0.5
    threads: int | None = None
    intensity_percentiles: tuple[float, float] | None = (0.5, 99.5)
    converge_window: int = 0
    converge_tol: float = 0.01
    min_steps: int = 0

    def __post_init__(self) -> None:
        from oneshotsam.errors import OneShotError

        if self.walk_flow not in WALK_FLOWS:
            raise OneShotError(f"walk_flow {self.walk_flow!r} is not known: use one of "
                               f"{', '.join(WALK_FLOWS)}")
        if (isinstance(self.flow_window_px, bool) or not isinstance(self.flow_window_px, int)
                or self.flow_window_px < 3 or self.flow_window_px % 2 == 0):
            raise OneShotError(f"flow_window_px must be an odd whole number of pixels >= 3, "
                               f"got {self.flow_window_px!r}")
        if not 0.0 <= float(self.cross_flow_weight) <= 1.0:
            raise OneShotError(f"cross_flow_weight must lie in [0, 1], got {self.cross_flow_weight!r}")

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any], preset: str = "volume") -> "VolumeWarpConfig":
        """Preset ``preset`` of ``medpersam.json`` (the VolumeWarpConfig fields of
        its entry) with ``overrides`` on top; unknown keys raise a OneShotError."""
        return cls.resolve(overrides, preset)[0]

    @classmethod
    def resolve(cls, overrides: dict[str, Any], preset: str = "volume") -> tuple[Any, Any]:
        """``(config, settings)``: :meth:`from_overrides` and the merge's record
        (:class:`oneshotsam.presets.ResolvedSettings`: where each value came from)."""
        from oneshotsam.presets import resolve_settings

        settings = resolve_settings("volume warp engine", preset,
                                    known={f.name for f in fields(cls)}, user=overrides,
                                    presets="medpersam", check=(cls,), only_known=True)
        kw = dict(settings.values)
        if kw.get("intensity_percentiles") is not None:
            kw["intensity_percentiles"] = tuple(kw["intensity_percentiles"])
        return cls(**kw), settings


def _inscribed_radius_px(mask: np.ndarray) -> float:
    """Radius in pixels of the largest disc inside ``mask`` (0 for an empty mask)."""
    from scipy import ndimage as ndi

    return float(ndi.distance_transform_edt(mask).max()) if np.any(mask) else 0.0


def _open_labels(labels: np.ndarray, radius_px: dict[int, int]) -> np.ndarray:
    """Per label value ``v`` of ``(H, W)`` ``labels``, a morphological opening by a disc of
    ``radius_px[v]`` pixels (missing or 0: as it is); same shape and dtype."""
    import cv2

    out = np.zeros_like(labels)
    for v in sorted(int(x) for x in np.unique(labels) if x):
        m = (labels == v).astype(np.uint8)
        r = int(radius_px.get(v, 0))
        if r > 0:
            disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
            m = cv2.morphologyEx(m, cv2.MORPH_OPEN, disc)
        out[(m > 0) & (out == 0)] = v
    return out


def _work_hw(native_hw: tuple[int, int], spacing_rc: tuple[float, float], res: int,
             mult: int) -> tuple[int, int]:
    ph, pw = native_hw[0] * spacing_rc[0], native_hw[1] * spacing_rc[1]
    s = res / max(ph, pw)
    return (max(mult * 2, int(round(ph * s / mult)) * mult),
            max(mult * 2, int(round(pw * s / mult)) * mult))


class WarpVolumeEngine:
    """See module docstring. Use through :func:`oneshotsam.volume.pipeline.propagate`."""

    def __init__(self, vcfg: VolumeWarpConfig = VolumeWarpConfig(), device: str = "cpu",
                 seed: int = 0) -> None:
        self.vcfg, self.device, self.seed = vcfg, device, seed
        self.history: list[float] = []
        self.timing: dict[str, float] = {}
        self.inscribed_px: dict[int, float] = {}  # per label: largest inscribed radius on the annotation

    @classmethod
    def from_config(cls, cfg, method=None) -> "WarpVolumeEngine":
        """Settings: the ``volume`` preset chosen for this situation
        (:func:`~oneshotsam.methods.medpersam.warp_choice.choose_warp_settings`),
        the method overrides of ``cfg`` on top."""
        from oneshotsam.methods.medpersam.warp_choice import Situation, choose_warp_settings

        from oneshotsam.devices import resolve_device

        device = resolve_device(cfg.device)
        overrides = dict(cfg.method_overrides)
        choice = choose_warp_settings(Situation("volume", 1, (1, 1), (1, 1), device))
        vcfg, settings = VolumeWarpConfig.resolve(overrides, choice.preset)
        eng = cls(vcfg, device, cfg.seed)
        eng.chosen = {"preset": choice.preset, "reasons": list(choice.reasons),
                      "user_settings": overrides, "from": settings.report()["from"]}
        return eng

    def describe(self) -> dict[str, Any]:
        return {"engine": "warp-volume", "method": "medpersam-warp", "device": self.device,
                "settings": asdict(self.vcfg), "chosen_settings": getattr(self, "chosen", None), "seconds": self.timing,
                "train_steps": len(self.history), "train_stopped": getattr(self, "stopped", None),
                "loss_first_last": [round(self.history[0], 4), round(self.history[-1], 4)]
                if self.history else []}

    # ------------------------------------------------------------------ training
    def prepare(self, ref, proc, ref_slices: list[int], ref_labels: dict[int, np.ndarray],
                followup: bool, tick: Callable[[str], bool]) -> bool:
        import torch
        import torch.nn.functional as F

        from oneshotsam.methods.medpersam.losses import LossConfig, WarpLosses
        from oneshotsam.methods.medpersam.nice_trans import NetConfig, NiceTrans2D
        from oneshotsam.methods.medpersam.warp_adapt import ConvergenceRule, registration_intensity
        from oneshotsam.volume.appearance import label_stats

        t0 = time.perf_counter()
        v = self.vcfg
        if v.threads:
            torch.set_num_threads(int(v.threads))
        torch.manual_seed(self.seed)
        self.ref, self.proc = ref, proc
        self.values = sorted({int(x) for lab in ref_labels.values() for x in np.unique(lab) if x})
        self.stats = label_stats([(ref.plane(r), ref_labels[r]) for r in ref_slices], self.values,
                                 min_px=1)
        self.inscribed_px = {v_: max(_inscribed_radius_px(ref_labels[r] == v_) for r in ref_slices)
                             for v_ in self.values}
        net_cfg = NetConfig(**v.net)
        self.box = self._roi(proc.native_hw, proc.spacing_rc_mm, [ref_labels[r] for r in ref_slices])
        r0, r1, c0, c1 = self.box
        self.work_hw = _work_hw((r1 - r0, c1 - c0), proc.spacing_rc_mm, v.resolution,
                                2 ** net_cfg.n_levels)
        dev = torch.device(self.device)

        def stack(s, idx):
            # one intensity window over the whole (cropped) volume, then the slices idx
            a = np.stack([s.plane(k)[r0:r1, c0:c1] for k in range(s.n_slices)])[:, None]
            a = registration_intensity(a, v.intensity_percentiles)[list(idx)]
            return F.interpolate(torch.from_numpy(a).to(dev), size=self.work_hw, mode="bilinear",
                                 align_corners=True)

        n = proc.n_slices
        self.proc_w = stack(proc, range(n))
        self.ref_w = stack(ref, ref_slices) if followup else None
        self.ref_pos = {r: i for i, r in enumerate(ref_slices)}
        self.losses = WarpLosses(LossConfig(**v.loss))
        self.net = NiceTrans2D(net_cfg).to(dev)
        walk = not followup or len(set(ref_slices)) < n  # slices left to chain through
        pairs = [(k, k + 1) for k in range(n - 1)] + [(k + 1, k) for k in range(n - 1)] if walk else []
        busy = self.proc_w.flatten(1).std(dim=1) > 1e-3  # skip empty (outside-FOV) slices
        pairs = [(a, b) for a, b in pairs if busy[a] and busy[b]]
        cross = [(r, r) for r in ref_slices] * v.cross_repeat if followup else []
        aug_src = [(self.ref_w[self.ref_pos[r]] if followup else self.proc_w[r], ref_labels[r])
                   for r in ref_slices]
        aug_src = [(img[None], self._onehot_work(lab[r0:r1, c0:c1])) for img, lab in aug_src]
        from oneshotsam.methods.medpersam.augment import AugConfig, augment_pair
        from oneshotsam.methods.medpersam.warp_fit import AdamW, fit
        opt = AdamW(self.net.parameters(), lr=v.lr)
        gen = torch.Generator().manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)

        aug_cfg = AugConfig()
        lam = self.losses.cfg
        n_steps = v.followup_steps if followup else v.steps
        rule = ConvergenceRule(v.min_steps, n_steps, v.converge_window, v.converge_tol)

        def step_loss(_step: int):
            items = [("adj", pairs[i]) for i in rng.integers(0, len(pairs), v.batch)] if pairs else []
            if cross:
                items += [("cross", cross[i]) for i in rng.integers(0, len(cross), max(1, v.batch // 4))]
            loss = torch.zeros((), device=dev)
            if items:
                mov = torch.cat([self.proc_w[a:a + 1] if kind == "adj" else self.ref_w[self.ref_pos[a]][None]
                                 for kind, (a, _) in items])
                fix = torch.cat([self.proc_w[b:b + 1] for _, (_, b) in items])
                flow = self.net(mov, fix)
                loss = self.losses.warp_loss(self._warp(mov, flow), fix, flow)
            if v.aug_per_step > 0 and aug_src:
                img, oh = aug_src[int(rng.integers(0, len(aug_src)))]
                a_img, a_oh = augment_pair(img, oh, v.aug_per_step, aug_cfg, gen)
                flow = self.net(img, a_img)
                l_aug = (self.losses.warp_loss(self._warp(img, flow), a_img, flow)
                         + lam.lambda_seg * self.losses.seg(self._warp(oh, flow), a_oh))
                loss = loss + lam.lambda_aug * l_aug
            return loss, {}

        rec = fit(self.net, opt, step_loss, rule,
                  lambda d, n: tick(f"training warp network: step {d}/{n}"), tick_every=10)
        self.history.extend(rec.losses)  # this training run's losses (one run per target)
        self.stopped = rec.stopped
        self.timing["train"] = round(time.perf_counter() - t0, 3)
        return not rec.cancelled

    def _roi(self, hw, spacing_rc, labels: list[np.ndarray]) -> tuple[int, int, int, int]:
        """``(r0, r1, c0, c1)`` crop box (see ``VolumeWarpConfig.roi_margin``)."""
        if self.vcfg.roi_margin is None:
            return 0, hw[0], 0, hw[1]
        union = np.any(np.stack([np.asarray(x) != 0 for x in labels]), axis=0)
        rows, cols = np.nonzero(union.any(axis=1))[0], np.nonzero(union.any(axis=0))[0]
        side_mm = max((rows[-1] - rows[0] + 1) * spacing_rc[0], (cols[-1] - cols[0] + 1) * spacing_rc[1])
        mr = int(np.ceil(self.vcfg.roi_margin * side_mm / spacing_rc[0]))
        mc = int(np.ceil(self.vcfg.roi_margin * side_mm / spacing_rc[1]))
        return (max(0, rows[0] - mr), min(hw[0], rows[-1] + 1 + mr),
                max(0, cols[0] - mc), min(hw[1], cols[-1] + 1 + mc))

    def _warp(self, moving, flow):
        from oneshotsam.methods.medpersam.nice_trans import warp_any

        return warp_any(moving, flow)

    def _onehot(self, labels: np.ndarray):
        import torch

        lab = np.asarray(labels)
        chans = [lab == 0] + [lab == v for v in self.values]
        return torch.from_numpy(np.stack(chans).astype(np.float32))[None].to(self.device)

    def _onehot_work(self, labels: np.ndarray):
        import torch.nn.functional as F

        oh = F.interpolate(self._onehot(labels), size=self.work_hw, mode="bilinear",
                           align_corners=True)
        return oh / oh.sum(dim=1, keepdim=True).clamp_min(1e-6)

    # ------------------------------------------------------------------ inference
    def _refine(self, out: np.ndarray, plane: np.ndarray) -> np.ndarray:
        """Appearance refinement (see ``VolumeWarpConfig.refine_sigma``)."""
        from oneshotsam.volume.appearance import refine_labels

        return refine_labels(out, plane, self.stats, self.vcfg.refine_sigma)

    def _predict(self, moving_w, fixed_w, labels: np.ndarray, dst_plane: np.ndarray,
                 walk: bool = False, src_plane: np.ndarray | None = None) -> TargetResult:
        import torch

        from oneshotsam.methods.medpersam.nice_trans import upsample_flow

        r0, r1, c0, c1 = self.box
        full = np.asarray(labels)
        labels = full[r0:r1, c0:c1]
        plane = dst_plane[r0:r1, c0:c1]
        along_flow = walk and self.vcfg.walk_flow == "farneback" and src_plane is not None
        with torch.no_grad():
            flow = self.net(moving_w[None], fixed_w[None])
            sim = float(self.losses.similarity(self._warp(moving_w[None], flow), fixed_w[None])[0])
            if not along_flow:
                probs = self._warp(self._onehot(labels), upsample_flow(flow, tuple(labels.shape)))
                probs = probs[0].cpu().numpy()
        if along_flow:  # the labels follow the slices' optical flow (see walk_flow)
            from oneshotsam.volume.slice_flow import pull_labels, slice_flow

            flow_rc = slice_flow(src_plane[r0:r1, c0:c1], plane, self.vcfg.flow_window_px)
            warped = pull_labels(labels, flow_rc)
        else:
            values = np.array([0] + self.values)
            probs[~np.isin(values, np.unique(labels))] = -1.0  # a label absent on src cannot appear
            warped = values[np.argmax(probs, axis=0)].astype(full.dtype)
        crop = self._refine(warped, plane)
        # per label: fraction of the warped pixels that look like the annotated structure
        kept = {int(v): float(((crop == v) & (warped == v)).sum() / max(1, (warped == v).sum()))
                for v in self.values if (warped == v).any()}
        radii = {v: int(self.vcfg.open_fraction * r) for v, r in self.inscribed_px.items()}
        if walk and any(radii.values()):
            crop = _open_labels(crop, radii)
        out = np.zeros_like(full)
        out[r0:r1, c0:c1] = crop
        conf = sim * (float(np.mean(list(kept.values()))) if kept else 1.0)
        return TargetResult(out, confidence=conf,
                            class_confidence={v: sim * kept.get(v, 1.0) for v in self.values},
                            report={"similarity": round(sim, 4), "appearance_kept": kept})

    def begin_run(self, run: Any, seed_labels: np.ndarray) -> None:
        """Nothing to batch: each step is one forward pass (see :class:`SliceEngine`)."""

    def step(self, src: int, src_labels: np.ndarray, dst: int) -> TargetResult:
        return self._predict(self.proc_w[src], self.proc_w[dst], src_labels, self.proc.plane(dst),
                             walk=True, src_plane=self.proc.plane(src))

    def cross(self, r: int, labels_hw: np.ndarray) -> TargetResult:
        return self._predict(self.ref_w[self.ref_pos[r]], self.proc_w[r], labels_hw, self.proc.plane(r))
