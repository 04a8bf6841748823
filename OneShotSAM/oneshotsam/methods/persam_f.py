"""PerSAM-F (Zhang et al. 2023, "Personalize Segment Anything Model with One Shot",
Sec. 2.4): PerSAM with two mask weights learned on the reference in seconds.

As the authors' code (``persam_f.py``, github ZrrSkywalker/Personalize-SAM,
commit a7e87245; golden test ``Testing/Python/test_golden_persam_f.py``), per
reference label value:

* reference: foreground cells by PerSAM's rule (``reference_cells(rule="persam")``);
  prototype = ``(max + mean) / 2`` of the raw foreground features (elementwise
  max), L2-normalised; ONE positive point at the argmax of its similarity on the
  reference image itself (no negative point);
* training: SAM's three multimask outputs for that point, as logits at image
  resolution (``backend.lowres_to_image``), are summed with weights
  ``(1 - w1 - w2, w1, w2)``, ``w`` initialised to 1/3; ``w`` gets ``epochs``
  steps of AdamW (lr 1e-3, eps 1e-4, torch's weight decay 0.01) with cosine
  annealing over the epochs, on Dice + sigmoid focal loss (alpha 0.25, gamma 2)
  against the reference mask. SAM is frozen and its outputs do not change, so
  they are computed once (their loop repeats the same decode every epoch);
* target: positive point = argmax of the similarity; multimask decode; the
  weighted sum of the three image logits ``> 0`` is the step-1 mask and the
  weighted sum of the low-res logits its mask prompt; step 2 = point + box of
  that mask + that prompt, multimask, best score; step 3 = point + box of
  step 2's mask + its logits, multimask, best score. PerSAM-F uses neither
  target-guided attention nor target-semantic prompting.

An empty step-1 or step-2 mask (their code crashes on ``x.min()``) makes the
label absent on that target and puts the target on the review queue
(``TargetResult.report["review"]``). Imports numpy at module level; torch
(for the training) lazily.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from oneshotsam.checks import check_reference
from oneshotsam.errors import OneShotError
from oneshotsam.methods.base import RunResult, TargetResult
from oneshotsam.methods.features import (
    box_of_mask, extreme_points_xy, masked_features, reference_cells, similarity_maps)
from oneshotsam.methods.persam import (
    ClassOutcome, EncodedImage, ImageEncoder, assemble_result, labels_dtype, prompts_report,
    step2_empty)
from oneshotsam.progress import ProgressFn, no_progress
from oneshotsam.types import Image2D

__all__ = ["PerSAMFConfig", "PerSAMF", "train_mask_weights"]


@dataclass(frozen=True)
class PerSAMFConfig:
    """PerSAM-F settings (presets: ``oneshotsam/presets/persam-f.json``).

    Attributes:
        epochs: training steps of the two mask weights (authors: 1000).
        lr: AdamW learning rate (authors: 1e-3).
        window: intensity window the preset suggests (used by the CLI), or None.
        source: where the settings come from.
    """

    epochs: int = 1000
    lr: float = 1e-3
    window: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if int(self.epochs) < 0 or not float(self.lr) > 0:
            raise OneShotError(f"PerSAM-F needs epochs >= 0 and lr > 0; got epochs="
                               f"{self.epochs}, lr={self.lr}")


def train_mask_weights(logits_hw: np.ndarray, mask: np.ndarray, epochs: int = 1000,
                       lr: float = 1e-3) -> tuple[np.ndarray, dict[str, float]]:
    """Fit the two mask-scale weights of PerSAM-F (torch): ``epochs`` AdamW steps with a cosine
    learning rate on Dice + focal loss of the weighted sum of SAM's three mask logits against
    the reference mask (the mixture weights start at a third each).

    Args:
        logits_hw: ``(3, H, W)`` float32 SAM multimask logits in the image frame.
        mask: ``(H, W)`` reference mask (``> 0`` = inside).
    Returns:
        ``((3,) float32 weights (1 - w1 - w2, w1, w2), {"dice", "focal"}`` of the
        last step).
    """
    import torch
    import torch.nn.functional as F

    lg = torch.as_tensor(np.asarray(logits_hw, np.float32)).flatten(1)
    gt = torch.as_tensor(np.asarray(mask) > 0).float().flatten()[None]
    w = torch.nn.Parameter(torch.ones(2, 1) / 3)
    opt = torch.optim.AdamW([w], lr=float(lr), eps=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(int(epochs), 1))
    dice = focal = torch.zeros(())
    for _ in range(int(epochs)):
        x = (lg * torch.cat((1 - w.sum(0).unsqueeze(0), w), dim=0)).sum(0).unsqueeze(0)
        p = x.sigmoid()
        dice = (1 - (2 * (p * gt).sum(-1) + 1) / (p.sum(-1) + gt.sum(-1) + 1)).sum()
        ce = F.binary_cross_entropy_with_logits(x, gt, reduction="none")
        p_t = p * gt + (1 - p) * (1 - gt)
        focal = ((0.25 * gt + 0.75 * (1 - gt)) * ce * (1 - p_t) ** 2).mean(1).sum()
        opt.zero_grad()
        (dice + focal).backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        weights = torch.cat((1 - w.sum(0).unsqueeze(0), w), dim=0).reshape(-1)
    return weights.numpy().astype(np.float32), {"dice": float(dice.detach()), "focal": float(focal.detach())}


@dataclass
class _Prior:
    value: int
    prototype: np.ndarray          # (C,) (max + mean) / 2, unnormalised
    weights: np.ndarray            # (3,) mask weights
    report: dict[str, Any]
    messages: tuple[str, ...]


class PerSAMF:
    """PerSAM-F on a backend offering ``lowres_to_image`` (oneshotsam's SAM 1 / SAM 2)."""

    name = "persam-f"
    #: the settings it was built from and where each came from (``from_preset``)
    settings = None

    def __init__(self, backend, config: PerSAMFConfig = PerSAMFConfig()) -> None:
        if backend is None:
            raise OneShotError("PerSAM-F needs a SAM backend: build one with "
                               "oneshotsam.backends.factory.create_backend(NAME, CHECKPOINT)")
        if getattr(backend, "lowres_to_image", None) is None:
            raise OneShotError(f"PerSAM-F trains on SAM's logits at image resolution; backend "
                               f"{getattr(backend, 'name', backend)!r} has no lowres_to_image: "
                               "use a SAM or SAM 2 backend from oneshotsam.backends.factory")
        self.backend = backend
        self.config = config

    @classmethod
    def from_preset(cls, preset: str | None = None, backend=None, device: str = "auto",
                    **overrides: Any) -> PerSAMF:
        """Build from preset ``preset`` of ``presets/persam-f.json`` (None = the method's
        default) with ``overrides`` on top (:func:`oneshotsam.presets.resolve_settings`)."""
        from oneshotsam.presets import method_from_preset

        return method_from_preset(cls, PerSAMFConfig, "persam-f", preset, backend, device, overrides)

    def prepare(self, ref: EncodedImage, lab: np.ndarray, value: int) -> _Prior:
        """Prototype, reference point and trained mask weights of one label value."""
        m = lab == value
        cells = reference_cells(self.backend, m, ref.mapping, f"reference label {value}",
                                rule="persam")
        feats = masked_features(ref.feature_map, cells.foreground)
        proto = feats.max(axis=0) / 2 + feats.mean(axis=0) / 2
        sim = similarity_maps(ref.feature_map, proto)[0]
        pt = extreme_points_xy(self.backend, sim, ref.mapping, "max")
        dec = self.backend.decode(ref.emb, pt, np.ones(1, np.int64), multimask=True)
        t0 = time.perf_counter()
        logits = self.backend.lowres_to_image(dec.low_res_logits, ref.mapping.image_hw)
        weights, loss = train_mask_weights(logits, m, self.config.epochs, self.config.lr)
        rep = {"foreground_cells": int(feats.shape[0]), "point_xy": pt[0].tolist(),
               "mask_weights": [round(float(v), 6) for v in weights],
               "final_loss": {k: round(v, 6) for k, v in loss.items()},
               "train_s": round(time.perf_counter() - t0, 4)}
        return _Prior(value, proto, weights, rep, cells.messages)

    def segment(self, reference: Image2D, reference_labels: np.ndarray,
                targets: Sequence[Image2D], progress: ProgressFn = no_progress) -> RunResult:
        """Train on the reference, then segment every target (module docstring)."""
        values = check_reference(reference, reference_labels)
        encoder = ImageEncoder(self.backend)
        ref = encoder.encode(reference)
        lab = np.asarray(reference_labels)
        priors = [self.prepare(ref, lab, v) for v in values]
        dtype = labels_dtype(lab)
        results: list[TargetResult] = []
        cancelled = False
        for i, target in enumerate(targets):
            enc = encoder.encode(target)
            t0 = time.perf_counter()
            outcomes = {p.value: self._segment_class(enc, p) for p in priors}
            rep = {"target": target.name, "timings_s": {
                "encode": round(enc.seconds, 4), "decode": round(time.perf_counter() - t0, 4)}}
            results.append(assemble_result(outcomes, enc, dtype, rep))
            if not progress(i + 1, len(targets), f"persam-f: {target.name or i}"):
                cancelled = len(results) < len(targets)
                break
        report = {"method": self.name, "config": asdict(self.config),
                  "messages": [m for p in priors for m in p.messages],
                  "reference": {str(p.value): p.report for p in priors}}
        return RunResult(results, cancelled, report)

    def _segment_class(self, enc: EncodedImage, prior: _Prior) -> ClassOutcome:
        sim = similarity_maps(enc.feature_map, prior.prototype)[0]
        pts = extreme_points_xy(self.backend, sim, enc.mapping, "max")
        lab = np.ones(1, np.int64)
        dec = self.backend.decode(enc.emb, pts, lab, multimask=True)
        w = prior.weights.astype(np.float32)
        high = (self.backend.lowres_to_image(dec.low_res_logits, enc.mapping.image_hw)
                * w[:, None, None]).sum(0)
        low = (dec.low_res_logits * w[:, None, None]).sum(0)
        scores = [[float(v) for v in dec.scores]]
        mask, box, best = high > 0, box_of_mask(high > 0), None
        for _ in range(2):  # steps 2 and 3
            if box is None:
                break
            dec = self.backend.decode(enc.emb, pts, lab, box_xyxy=box, mask_logits=low,
                                      multimask=True)
            best = int(np.argmax(dec.scores))
            scores.append([float(v) for v in dec.scores])
            mask, low = np.asarray(dec.masks[best], bool), dec.low_res_logits[best]
            step_box, box = box, box_of_mask(mask)
        rep: dict[str, Any] = {"prompts": prompts_report(pts, lab, None), "steps": len(scores),
                               "step_scores": scores, "mask_weights": w.tolist()}
        if best is None:  # the weighted step-1 mask was empty: no box for step 2
            rep.update({"score": 0.0, "area_px": 0, "absent": True, "review": (
                f"label {prior.value}: the weighted step-1 mask was empty, so the cascade "
                "could not run and the label is reported absent: check this target")})
            return ClassOutcome(np.zeros(enc.mapping.image_hw, bool), low, 0.0, rep)
        rep["prompts"]["box_xyxy"] = np.asarray(step_box, dtype=float).tolist()
        rep.update({"score": float(dec.scores[best]), "area_px": int(mask.sum()),
                    "absent": not bool(mask.any())})
        if len(scores) == 2:  # step 2's mask was empty
            rep.update(step2_empty(prior.value))
        return ClassOutcome(mask, low, float(dec.scores[best]), rep)
