"""PerSAM (Zhang et al. 2023), training-free, the baseline of P2SAM and Med-PerSAM.

Per reference label value: prototype = mean raw reference foreground feature
(grid cells whose centre lies inside the mask, by PerSAM's code: the mask
resized, normalised and padded like the image, bilinear to the grid, ``> 0``);
on a target, cosine similarity with the
L2-normalised features; positive point = argmax, negative point = argmin (valid
cells only); then PerSAM's cascade:

1. points, single mask, with target-semantic prompting (the unnormalised
   prototype added to the decoder tokens, ``decode(token_prototype=...)``) and,
   when the backend's ``decode`` accepts ``attn_sim`` (oneshotsam's SAM 1 and
   SAM 2 backends do), target-guided attention from the similarity map, built
   as the authors' code does (:func:`target_guided_attention`: standardised at
   image resolution, resized to the grid, sigmoid);
2. points + step-1 low-res logits, multimask, best predicted IoU;
3. points + box of the step-2 mask + its logits, multimask, best predicted IoU.

With a backend whose ``decode`` has no ``attn_sim`` the baseline runs without
target-guided attention (recorded in the report). An empty mask at any step is
a defined outcome: the class is reported absent for that target; an empty
step-2 mask (no box for step 3; the authors' code crashes there) also puts the
target on the review queue with the reason (``TargetResult.report["review"]``,
:func:`step2_empty`).

This module also holds the helpers P2SAM shares (encoding with per-image
geometry, assembling multi-class results). Imports numpy only at module level.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from oneshotsam.checks import check_reference
from oneshotsam.errors import OneShotError
from oneshotsam.methods.base import RunResult, TargetResult
from oneshotsam.progress import ProgressFn, no_progress
from oneshotsam.methods.features import (
    GridMapping, box_of_mask, combine_label_masks, extreme_points_xy, grid_mapping, masked_features,
    mean_prototype, reference_cells, similarity_maps)
from oneshotsam.types import Image2D

__all__ = ["PerSAMConfig", "PerSAM", "EncodedImage", "ImageEncoder", "ClassOutcome",
           "assemble_result", "labels_dtype", "target_guided_attention", "resize_bilinear"]


@dataclass(frozen=True)
class PerSAMConfig:
    """PerSAM settings (presets: ``oneshotsam/presets/persam.json``).

    Attributes:
        semantic_prompting: add the mean prototype to the decoder tokens (step 1).
        target_guided_attention: bias the token-to-image attention with the
            similarity map (step 1), when the backend supports it.
        cascade: run the two refinement steps (else step 1 only).
        window: intensity window the preset suggests (used by the CLI), or None.
        source: where the settings come from.
    """

    semantic_prompting: bool = True
    target_guided_attention: bool = True
    cascade: bool = True
    window: str | None = None
    source: str = ""


@dataclass
class EncodedImage:
    """One embedded image with its grid geometry (all image-frame ``(H, W)``)."""

    emb: Any
    feature_map: np.ndarray       # (C, G, G) float32 raw features
    valid_hw: tuple[int, int]
    mapping: GridMapping
    seconds: float


class ImageEncoder:
    """Embeds images through a backend (once each: the backend caches by content)
    and caches the :class:`GridMapping` per image size."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self._maps: dict[tuple, GridMapping] = {}

    def encode(self, image: Image2D) -> EncodedImage:
        if not isinstance(image, Image2D):
            raise OneShotError(f"images must be oneshotsam.types.Image2D; got {type(image).__name__}")
        t0 = time.perf_counter()
        emb = self.backend.embed(image.rgb_uint8())
        seconds = time.perf_counter() - t0
        fmap = np.asarray(self.backend.feature_map(emb), dtype=np.float32)
        valid = tuple(int(v) for v in self.backend.valid_grid_hw(emb))
        key = (image.shape_hw, valid)
        if key not in self._maps:
            self._maps[key] = grid_mapping(self.backend, image.shape_hw, valid)
        return EncodedImage(emb, fmap, valid, self._maps[key], seconds)


@dataclass
class ClassOutcome:
    """The answer for one label value on one target.

    ``mask`` ``(H, W)`` bool (empty = absent), ``low_res`` ``(4G, 4G)`` logits of
    the chosen mask, ``score`` its predicted IoU, ``report`` JSON-ready details.
    """

    mask: np.ndarray
    low_res: np.ndarray
    score: float
    report: dict[str, Any]


def labels_dtype(reference_labels: np.ndarray) -> np.dtype:
    """Output label dtype: the reference's integer dtype (bool -> uint8, float -> int32)."""
    dt = np.asarray(reference_labels).dtype
    if dt == bool:
        return np.dtype(np.uint8)
    if np.issubdtype(dt, np.integer):
        return dt
    return np.dtype(np.int32)


def assemble_result(outcomes: dict[int, ClassOutcome], enc: EncodedImage, dtype: np.dtype,
                    report: dict[str, Any]) -> TargetResult:
    """Combine per-class outcomes: highest upsampled logit wins where classes
    overlap, background where none predicts; confidence = mean predicted IoU of
    the present classes (0 when all are absent). Class reports holding a
    ``"review"`` reason are gathered into ``report["review"]`` (and the
    messages), which report.json carries and the volume path's review flag reads."""
    hw = enc.mapping.image_hw
    present = {v: o for v, o in outcomes.items() if o.mask.any()}
    if len(present) > 1:
        logits = {v: enc.mapping.upsample_lowres(o.low_res) for v, o in present.items()}
    else:
        logits = {v: np.zeros(hw, np.float32) for v in present}
    labels = combine_label_masks({v: o.mask for v, o in present.items()}, logits, hw, dtype)
    class_conf = {v: (float(np.clip(o.score, 0.0, 1.0)) if v in present else 0.0)
                  for v, o in outcomes.items()}
    absent = sorted(v for v in outcomes if v not in present)
    conf = float(np.mean([class_conf[v] for v in present])) if present else 0.0
    report["classes"] = {str(v): o.report for v, o in outcomes.items()}
    review = [o.report["review"] for o in outcomes.values() if o.report.get("review")]
    if review:  # reasons for a reviewer; the volume path flags the slice with them
        report.setdefault("review", []).extend(review)
        report.setdefault("messages", []).extend(review)
    if absent:
        report.setdefault("messages", []).append(
            f"label(s) {absent} judged absent from {report.get('target', 'the target')}: "
            "every prompt set gave an empty mask")
    return TargetResult(labels=labels, confidence=conf, class_confidence=class_conf,
                        report=report, absent=absent)


def step2_empty(value: int) -> dict[str, Any]:
    """Report fields of a cascade whose step-2 mask was empty: step 3 (the box
    prompt) cannot run, the label comes out empty (absent), and the target is
    put on the review queue (``TargetResult.report["review"]``): the authors'
    code crashes here, so there is no published answer to fall back on."""
    return {"step2_empty": True,
            "review": f"label {value}: the step-2 mask was empty, so step 3 (box prompt) "
                      "was skipped and the label is reported absent: check this target"}


def prompts_report(points_xy: np.ndarray, point_labels: np.ndarray, box) -> dict[str, Any]:
    return {"points_xy": np.round(np.asarray(points_xy, dtype=float), 2).tolist(),
            "point_labels": np.asarray(point_labels).astype(int).tolist(),
            "box_xyxy": None if box is None else np.asarray(box, dtype=float).tolist()}


def resize_bilinear(img: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` -> ``out_hw`` float64, torch's ``F.interpolate(mode="bilinear")``
    with ``size=`` given (half-pixel centres, ``align_corners=False``, no
    antialias: a downscale samples, it does not average)."""
    a = np.asarray(img, dtype=np.float64)

    def axis(n_in: int, n_out: int):
        src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    r0, r1, fr = axis(a.shape[0], int(out_hw[0]))
    c0, c1, fc = axis(a.shape[1], int(out_hw[1]))
    rows = a[r0] * (1.0 - fr)[:, None] + a[r1] * fr[:, None]
    return np.ascontiguousarray(rows[:, c0] * (1.0 - fc)[None] + rows[:, c1] * fc[None])


def target_guided_attention(backend, similarity: np.ndarray, mapping: GridMapping
                            ) -> np.ndarray:
    """PerSAM's target-guided attention term ``(G, G)`` float32 in (0, 1), the
    ``attn_sim`` a backend adds to the softmaxed token-to-image attention.

    As their code (``persam.py``; P2SAM's ``p2sam_perseg`` alike): the ``(G, G)``
    cosine similarity is brought to the image as for point picking
    (``backend.similarity_to_image``: x4 bilinear, SAM's post-processing),
    standardised THERE (``(s - mean) / std``, unbiased std, over the ``H x W``
    image), resized bilinearly from ``(H, W)`` straight to ``G x G`` and passed
    through a sigmoid. On a non-square SAM 1 input this stretches the image over
    the whole grid, padding included (the authors' behaviour, kept: the
    alternative of standardising on the grid could not be measured better
    without weights). A backend without ``similarity_to_image`` gets the same
    steps on the grid map itself.
    """
    sim = np.asarray(similarity, dtype=np.float32)
    g = int(sim.shape[-1])
    up = getattr(backend, "similarity_to_image", None)
    img = (np.asarray(up(sim[None], mapping.image_hw), dtype=np.float64)[0] if up is not None
           else sim.astype(np.float64))
    z = (img - img.mean()) / max(float(img.std(ddof=1)), 1e-12)
    z = resize_bilinear(z, (g, g)) if z.shape != (g, g) else z
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def _accepts(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


@dataclass
class _Prior:
    value: int
    prototype: np.ndarray          # (C,) raw mean
    n_cells: int
    messages: tuple[str, ...]


class PerSAM:
    """PerSAM on any :class:`~oneshotsam.backends.base.PromptableSegmenter`."""

    name = "persam"
    #: the settings it was built from and where each came from (``from_preset``)
    settings = None

    def __init__(self, backend, config: PerSAMConfig = PerSAMConfig()) -> None:
        if backend is None:
            raise OneShotError("PerSAM needs a SAM backend: build one with "
                               "oneshotsam.backends.factory.create_backend(NAME, CHECKPOINT)")
        self.backend = backend
        self.config = config
        self.attention_supported = _accepts(backend.decode, "attn_sim")

    @classmethod
    def from_preset(cls, preset: str | None = None, backend=None, device: str = "auto",
                    **overrides: Any) -> PerSAM:
        """Build from preset ``preset`` of ``presets/persam.json`` (None = the method's
        default) with ``overrides`` on top (:func:`oneshotsam.presets.resolve_settings`)."""
        from oneshotsam.presets import method_from_preset

        return method_from_preset(cls, PerSAMConfig, "persam", preset, backend, device, overrides)

    def segment(self, reference: Image2D, reference_labels: np.ndarray,
                targets: Sequence[Image2D], progress: ProgressFn = no_progress) -> RunResult:
        """Segment every target like the reference (see the module docstring)."""
        values = check_reference(reference, reference_labels)
        encoder = ImageEncoder(self.backend)
        calls0 = getattr(self.backend, "encode_calls", 0)
        ref = encoder.encode(reference)
        lab = np.asarray(reference_labels)
        priors = []
        for v in values:
            cells = reference_cells(self.backend, lab == v, ref.mapping, f"reference label {v}",
                                    rule="persam")
            feats = masked_features(ref.feature_map, cells.foreground)
            priors.append(_Prior(v, mean_prototype(feats), feats.shape[0], cells.messages))
        use_attn = self.config.target_guided_attention and self.attention_supported
        messages = [m for p in priors for m in p.messages]
        if self.config.target_guided_attention and not self.attention_supported:
            messages.append(f"backend {self.backend.name!r} has no attn_sim: PerSAM runs "
                            "without target-guided attention")
        results: list[TargetResult] = []
        cancelled = False
        dtype = labels_dtype(lab)
        for i, target in enumerate(targets):
            enc = encoder.encode(target)
            t0 = time.perf_counter()
            outcomes = {p.value: self._segment_class(enc, p, use_attn) for p in priors}
            rep = {"target": target.name, "timings_s": {
                "encode": round(enc.seconds, 4), "decode": round(time.perf_counter() - t0, 4)}}
            results.append(assemble_result(outcomes, enc, dtype, rep))
            if not progress(i + 1, len(targets), f"persam: {target.name or i}"):
                cancelled = len(results) < len(targets)
                break
        report = {"method": self.name, "config": asdict(self.config),
                  "target_guided_attention": use_attn, "messages": messages,
                  "reference": {str(p.value): {"foreground_cells": p.n_cells} for p in priors},
                  "encode_calls": getattr(self.backend, "encode_calls", 0) - calls0}
        return RunResult(results, cancelled, report)

    def _segment_class(self, enc: EncodedImage, prior: _Prior, use_attn: bool) -> ClassOutcome:
        sim = similarity_maps(enc.feature_map, prior.prototype)[0]
        pts = np.concatenate([extreme_points_xy(self.backend, sim, enc.mapping, "max"),
                              extreme_points_xy(self.backend, sim, enc.mapping, "min")])
        lab = np.array([1, 0], dtype=np.int64)
        kw: dict[str, Any] = {}
        if self.config.semantic_prompting:
            kw["token_prototype"] = prior.prototype
        if use_attn:
            kw["attn_sim"] = target_guided_attention(self.backend, sim, enc.mapping)
        dec = self.backend.decode(enc.emb, pts, lab, multimask=False, **kw)
        best, box, scores = 0, None, [[float(v) for v in dec.scores]]
        if self.config.cascade:
            dec = self.backend.decode(enc.emb, pts, lab, mask_logits=dec.low_res_logits[0],
                                      multimask=True)
            best = int(np.argmax(dec.scores))
            scores.append([float(v) for v in dec.scores])
            box = box_of_mask(dec.masks[best])
            if box is not None:
                dec = self.backend.decode(enc.emb, pts, lab, box_xyxy=box,
                                          mask_logits=dec.low_res_logits[best], multimask=True)
                best = int(np.argmax(dec.scores))
                scores.append([float(v) for v in dec.scores])
        mask = np.asarray(dec.masks[best], dtype=bool)
        rep = {"prompts": prompts_report(pts, lab, box), "steps": len(scores),
               "step_scores": scores, "score": float(dec.scores[best]),
               "area_px": int(mask.sum()), "absent": not bool(mask.any())}
        if self.config.cascade and box is None:
            rep.update(step2_empty(prior.value))
        return ClassOutcome(mask, dec.low_res_logits[best], float(dec.scores[best]), rep)
