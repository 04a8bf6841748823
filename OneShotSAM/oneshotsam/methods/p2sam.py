"""P2SAM: part-aware prompts and distribution-guided retrieval (Zhao et al.).

Paper: ../shared/papers/p2sam.txt (Sec. 3.2, Appendix C Tables 9/10, Appendix
F Eq. 5); where the paper is silent, the authors' code (notes/methods.md).

Per reference label value (a multi-label reference runs one binary problem per
value; background = every grid cell outside that value, padding included, as
the authors' code):

* foreground cells = cells whose centre lies inside the mask (the authors'
  reduction: ``mask_to_grid_centre(mask) > 0``); their RAW features are
  clustered into ``n`` parts for every ``n`` in ``config.n_pos``
  (k-means++, ``n_init=10``, seed 0); prototype = L2-normalised part mean;
* medical mode: background features clustered likewise into ``m`` parts for
  every ``m`` in ``config.n_neg``; negatives = argmax of each background
  prototype's similarity map. Natural mode: one negative at the argmin of the
  mean foreground-part similarity (PerSAM style; ``n_neg = (0,)`` = none);
* on a target, for every candidate ``(n, m)``: positives = argmax of each part
  similarity, then the three-step decode. Medical mode (authors'
  ``p2sam_medical``): points, single mask -> points + step-1 low-res logits ->
  points + box of the current mask + logits, single mask each. Natural mode
  (authors' ``p2sam_perseg``): step 1 adds PerSAM's target-semantic prompting
  (mean reference feature) and target-guided attention (mean part similarity);
  steps 2 and 3 use multimask output and keep the best-scoring mask;
* retrieval: the predicted low-res logits resized bilinearly to the grid (cell
  centre sampling), target features where ``> 0``, vs all reference foreground
  features, exact OT cost
  (:mod:`oneshotsam.methods.retrieval`); empty prediction = infinite cost; the
  smallest cost wins. All candidates empty: the class is absent (empty labels,
  listed in ``TargetResult.absent``). A candidate whose step-2 mask was empty
  skips step 3 (no box; the authors' code crashes) and says so
  (``step2_empty``); when the answer comes from such candidates the target goes
  on the review queue (``TargetResult.report["review"]``).

Every image is encoded once (the backend caches by content); candidates only
cost decoder calls, and identical prompt sets (part counts that collapse) are
decoded once. A backend offering ``decode_batch`` gets all candidates of a
step in one call. The reference's k-means parts are reused while the same
reference is segmented again. Imports numpy only at module level.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from oneshotsam.checks import check_reference
from oneshotsam.errors import OneShotError
from oneshotsam.methods.base import RunResult, TargetResult
from oneshotsam.progress import ProgressFn, no_progress
from oneshotsam.methods.features import (
    PartPrototypes, box_of_mask, extreme_points_xy, lowres_to_grid, masked_features,
    mean_prototype, part_prototypes, reference_cells, similarity_maps)
from oneshotsam.methods.persam import (
    ClassOutcome, EncodedImage, ImageEncoder, _accepts, assemble_result, labels_dtype,
    prompts_report, step2_empty, target_guided_attention)
from oneshotsam.backends.base import Decoded
from oneshotsam.methods.retrieval import COSTS, DEFAULT_MAX_POINTS, DEFAULT_NUM_ITERMAX, retrieve
from oneshotsam.types import Image2D

__all__ = ["P2SAMConfig", "P2SAM"]


def _keep(dec: Decoded, i: int) -> Decoded:
    """The ``i``-th mask of a decoder output as a one-mask :class:`Decoded`."""
    return Decoded(dec.masks[i:i + 1], dec.scores[i:i + 1], dec.low_res_logits[i:i + 1])

MODES = ("medical", "natural")


@dataclass(frozen=True)
class P2SAMConfig:
    """P2SAM settings (presets: ``oneshotsam/presets/p2sam.json``).

    Attributes:
        mode: ``"medical"`` (negatives from background parts) or ``"natural"``
            (one PerSAM-style negative).
        n_pos: candidate foreground part counts (= positive points).
        n_neg: candidate background part counts (medical); natural mode:
            ``(1,)`` one negative or ``(0,)`` none.
        cost: OT ground cost, ``"sqeuclidean"`` (authors' code) or ``"cosine"``
            (paper Appendix F).
        max_ot_points: 0 (default, the authors' code) = exact OT on all
            cells; N > 0 bounds each point set by uniform-stride subsampling
            (a speed option, not the authors' method).
        ot_num_itermax: POT ``emd2`` iteration limit (authors: 1e7).
        kmeans_n_init: k-means restarts (10 = the authors' scikit-learn 1.0).
        seed: k-means ``random_state``.
        window: intensity window the preset suggests (CLI), or None.
        source: where the settings come from.
    """

    mode: str = "medical"
    n_pos: tuple[int, ...] = (1, 2, 3, 4, 5)
    n_neg: tuple[int, ...] = (1, 2, 3)
    cost: str = "sqeuclidean"
    max_ot_points: int = DEFAULT_MAX_POINTS
    ot_num_itermax: int = DEFAULT_NUM_ITERMAX
    kmeans_n_init: int = 10
    seed: int = 0
    window: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise OneShotError(f"P2SAM mode must be one of {MODES}; got {self.mode!r}")
        if self.cost not in COSTS:
            raise OneShotError(f"P2SAM cost must be one of {COSTS}; got {self.cost!r}")
        for what, rng, low in (("n_pos", self.n_pos, 1), ("n_neg", self.n_neg, 0)):
            vals = tuple(int(v) for v in np.atleast_1d(rng))
            if not vals or min(vals) < low:
                raise OneShotError(f"P2SAM {what} must be a non-empty list of counts >= {low}; "
                                   f"got {rng!r}")
            object.__setattr__(self, what, vals)
        if self.mode == "natural" and not set(self.n_neg) <= {0, 1}:
            raise OneShotError("natural mode places one negative at most: n_neg must be "
                               f"[1] or [0]; got {list(self.n_neg)}")
        if self.max_ot_points < 0 or self.ot_num_itermax < 1 or self.kmeans_n_init < 1:
            raise OneShotError("max_ot_points must be >= 0 and ot_num_itermax, kmeans_n_init >= 1")

    @property
    def candidates(self) -> list[tuple[int, int]]:
        """Candidate ``(n_pos, n_neg)`` pairs in retrieval order."""
        return [(n, m) for n in self.n_pos for m in self.n_neg]


@dataclass
class _ClassPrior:
    """Reference-side knowledge of one label value."""

    value: int
    fg_features: np.ndarray                          # (N, C) raw, every foreground cell
    fg_parts: dict[int, PartPrototypes]
    bg_parts: dict[int, PartPrototypes]
    n_fg_cells: int
    messages: list[str] = field(default_factory=list)

    @property
    def prototype(self) -> np.ndarray:
        """``(C,)`` unnormalised mean foreground feature (PerSAM's target embedding)."""
        return mean_prototype(self.fg_features)


class P2SAM:
    """P2SAM on any :class:`~oneshotsam.backends.base.PromptableSegmenter`."""

    name = "p2sam"
    #: the settings it was built from and where each came from (``from_preset``)
    settings = None

    def __init__(self, backend, config: P2SAMConfig = P2SAMConfig()) -> None:
        if backend is None:
            raise OneShotError("P2SAM needs a SAM backend: build one with "
                               "oneshotsam.backends.factory.create_backend(NAME, CHECKPOINT)")
        self.backend = backend
        self.config = config
        self.attention_supported = _accepts(backend.decode, "attn_sim")
        self._prior_cache: tuple[tuple, list[_ClassPrior]] | None = None

    @classmethod
    def from_preset(cls, preset: str | None = None, backend=None, device: str = "auto",
                    **overrides: Any) -> P2SAM:
        """Build from preset ``preset`` of ``presets/p2sam.json`` (None = the method's
        default) with ``overrides`` on top (:func:`oneshotsam.presets.resolve_settings`)."""
        from oneshotsam.presets import method_from_preset

        return method_from_preset(cls, P2SAMConfig, "p2sam", preset, backend, device, overrides)

    # -- reference ----------------------------------------------------------------
    def prepare_reference(self, ref: EncodedImage, reference_labels: np.ndarray,
                          values: Sequence[int]) -> list[_ClassPrior]:
        """Part prototypes of every label value (k-means once per part count)."""
        cfg = self.config
        lab = np.asarray(reference_labels)
        priors = []
        for v in values:
            cells = reference_cells(self.backend, lab == v, ref.mapping, f"reference label {v}")
            fg = masked_features(ref.feature_map, cells.foreground)
            # background = every grid cell outside the foreground, the padding of a
            # non-square SAM 1 input included (the authors' `ref_feat[ref_mask <= 0]`)
            bg = masked_features(ref.feature_map, ~cells.foreground)
            fg_parts = {n: part_prototypes(fg, n, cfg.seed, cfg.kmeans_n_init) for n in cfg.n_pos}
            bg_parts = {}
            if cfg.mode == "medical":
                bg_parts = {m: part_prototypes(bg, m, cfg.seed, cfg.kmeans_n_init)
                            for m in cfg.n_neg if m > 0}
            msgs = list(cells.messages) + [
                f"label {v}: {p.message}" for p in (*fg_parts.values(), *bg_parts.values())
                if p.message]
            priors.append(_ClassPrior(v, fg, fg_parts, bg_parts, fg.shape[0], msgs))
        return priors

    # -- run ----------------------------------------------------------------------
    def segment(self, reference: Image2D, reference_labels: np.ndarray,
                targets: Sequence[Image2D], progress: ProgressFn = no_progress) -> RunResult:
        """Segment every target like the reference (see the module docstring)."""
        values = check_reference(reference, reference_labels)
        encoder = ImageEncoder(self.backend)
        calls0 = getattr(self.backend, "encode_calls", 0)
        t0 = time.perf_counter()
        ref = encoder.encode(reference)
        lab = np.asarray(reference_labels)
        key = (ref.emb.key, lab.shape, lab.dtype.str,
               hashlib.sha1(np.ascontiguousarray(lab).tobytes()).hexdigest())
        if self._prior_cache is not None and self._prior_cache[0] == key:
            priors = self._prior_cache[1]  # same reference as the last call: reuse k-means
        else:
            priors = self.prepare_reference(ref, lab, values)
            self._prior_cache = (key, priors)
        ref_seconds = time.perf_counter() - t0
        dtype = labels_dtype(reference_labels)
        results: list[TargetResult] = []
        cancelled = False
        for i, target in enumerate(targets):
            results.append(self.segment_target(encoder.encode(target), priors, dtype, target.name))
            if not progress(i + 1, len(targets), f"p2sam: {target.name or i}"):
                cancelled = len(results) < len(targets)
                break
        report = {
            "method": self.name, "config": asdict(self.config), "cost": self.config.cost,
            "cost_note": ("squared Euclidean on raw features (authors' code)"
                          if self.config.cost == "sqeuclidean"
                          else "cosine distance 1 - cos (paper Appendix F, Eq. 5)"),
            "reference": {"encode_s": round(ref.seconds, 4),
                          "prepare_s": round(ref_seconds - ref.seconds, 4),
                          "classes": {str(p.value): {"foreground_cells": p.n_fg_cells}
                                      for p in priors}},
            "messages": [m for p in priors for m in p.messages],
            "encode_calls": getattr(self.backend, "encode_calls", 0) - calls0,
        }
        return RunResult(results, cancelled, report)

    def segment_target(self, enc: EncodedImage, priors: Sequence[_ClassPrior],
                       dtype: np.dtype = np.dtype(np.int32), name: str = "") -> TargetResult:
        """One target from an already encoded image and prepared priors."""
        timings = {"encode": enc.seconds, "decode": 0.0, "retrieval": 0.0}
        outcomes = {p.value: self._segment_class(enc, p, timings) for p in priors}
        rep: dict[str, Any] = {"target": name,
                               "timings_s": {k: round(v, 4) for k, v in timings.items()}}
        return assemble_result(outcomes, enc, dtype, rep)

    def _negative_points(self, enc: EncodedImage, prior: _ClassPrior, m: int,
                         pos_maps: np.ndarray, cache: dict[int, np.ndarray]) -> np.ndarray:
        """``(m', 2)`` image ``(x, y)`` negatives: natural mode the argmin of the mean
        part similarity, medical mode the argmax of each background part's."""
        if m == 0:
            return np.zeros((0, 2), dtype=np.float32)
        if self.config.mode == "natural":
            return extreme_points_xy(self.backend, pos_maps.mean(axis=0), enc.mapping, "min")
        if m not in cache:
            sims = similarity_maps(enc.feature_map, prior.bg_parts[m].prototypes)
            cache[m] = extreme_points_xy(self.backend, sims, enc.mapping, "max")
        return cache[m]

    def _three_step(self, enc: EncodedImage, pts: np.ndarray, lab: np.ndarray,
                    guide: dict[str, np.ndarray] | None = None):
        """The authors' three decoding steps; returns ``(Decoded of the kept mask,
        box of the step-2 mask or None, step-1 score)``.

        Medical mode (``guide`` None, their ``p2sam_medical``): points, single
        mask -> points + logits, single mask -> points + box + logits, single
        mask. Natural mode (``guide`` = ``{"token_prototype", "attn_sim"}``,
        their ``p2sam_perseg``): step 1 adds PerSAM's target-semantic prompting
        and target-guided attention; steps 2 and 3 use multimask output and keep
        the best-scoring mask. An empty step-2 mask skips the box (their code
        would crash).
        """
        multi = guide is not None
        dec = self.backend.decode(enc.emb, pts, lab, multimask=False, **(guide or {}))
        step1 = float(dec.scores[0])
        dec = self.backend.decode(enc.emb, pts, lab, mask_logits=dec.low_res_logits[0],
                                  multimask=multi)
        best = int(np.argmax(dec.scores)) if multi else 0
        box = box_of_mask(dec.masks[best])
        if box is not None:
            dec = self.backend.decode(enc.emb, pts, lab, box_xyxy=box,
                                      mask_logits=dec.low_res_logits[best], multimask=multi)
            best = int(np.argmax(dec.scores)) if multi else 0
        return _keep(dec, best), box, step1

    def _three_step_batched(self, enc: EncodedImage, prompts: list[tuple[np.ndarray, np.ndarray]]):
        """The same three steps for all prompt sets at once, through an optional
        ``backend.decode_batch(emb, points_xy (B, N, 2), point_labels (B, N)
        [-1 = padding], box_xyxy (B, 4) | None, mask_logits (B, 4G, 4G) | None,
        multimask) -> list[Decoded]``."""
        n = max(len(lab) for _, lab in prompts)
        pts = np.zeros((len(prompts), n, 2), np.float32)
        labs = np.full((len(prompts), n), -1, np.int64)
        for i, (p, lab) in enumerate(prompts):
            pts[i, : len(lab)], labs[i, : len(lab)] = p, lab
        batch = self.backend.decode_batch
        decs = batch(enc.emb, pts, labs, multimask=False)
        step1 = [float(d.scores[0]) for d in decs]
        decs = batch(enc.emb, pts, labs, mask_logits=np.stack([d.low_res_logits[0] for d in decs]),
                     multimask=False)
        boxes = [box_of_mask(d.masks[0]) for d in decs]
        idx = [i for i, b in enumerate(boxes) if b is not None]
        if idx:
            third = batch(enc.emb, pts[idx], labs[idx], box_xyxy=np.stack([boxes[i] for i in idx]),
                          mask_logits=np.stack([decs[i].low_res_logits[0] for i in idx]),
                          multimask=False)
            for i, d in zip(idx, third):
                decs[i] = d
        return list(zip(decs, boxes, step1))

    def _decode_all(self, enc: EncodedImage, prompts: list[tuple[np.ndarray, np.ndarray]],
                    guides: list[dict[str, np.ndarray] | None]):
        if (getattr(self.backend, "decode_batch", None) is not None and len(prompts) > 1
                and all(g is None for g in guides)):
            return self._three_step_batched(enc, prompts)
        return [self._three_step(enc, p, lab, gd) for (p, lab), gd in zip(prompts, guides)]

    def _guide(self, enc: EncodedImage, prior: _ClassPrior, maps: np.ndarray):
        """Natural mode's step-1 extras (their ``p2sam_perseg``): the unnormalised
        mean reference foreground feature as token prototype, and the mean part
        similarity map for target-guided attention, built as PerSAM's code does
        (:func:`~oneshotsam.methods.persam.target_guided_attention`). None in
        medical mode."""
        if self.config.mode != "natural":
            return None
        guide = {"token_prototype": prior.prototype}
        if self.attention_supported:
            guide["attn_sim"] = target_guided_attention(self.backend, maps.mean(axis=0),
                                                        enc.mapping)
        return guide

    def _segment_class(self, enc: EncodedImage, prior: _ClassPrior,
                       timings: dict[str, float]) -> ClassOutcome:
        cfg = self.config
        g = int(self.backend.grid_size)
        pos_cache = {}
        for n, parts in prior.fg_parts.items():
            maps = similarity_maps(enc.feature_map, parts.prototypes)
            pos_cache[n] = (maps, extreme_points_xy(self.backend, maps, enc.mapping, "max"))
        t0 = time.perf_counter()
        prompts, which, guides = [], [], []
        index: dict[bytes, int] = {}
        neg_cache: dict[int, np.ndarray] = {}
        for n, m in cfg.candidates:
            maps, pos_pts = pos_cache[n]
            pts = np.concatenate([pos_pts, self._negative_points(enc, prior, m, maps, neg_cache)])
            lab = np.concatenate([np.ones(len(pos_pts), np.int64),
                                  np.zeros(len(pts) - len(pos_pts), np.int64)])
            key = pts.tobytes() + lab.tobytes() + (str(n).encode() if cfg.mode == "natural" else b"")
            if key not in index:  # parts collapsed: same prompts as an earlier candidate
                index[key] = len(prompts)
                prompts.append((pts, lab))
                guides.append(self._guide(enc, prior, maps))
            which.append(index[key])
        outs = self._decode_all(enc, prompts, guides)
        decoded, feats, keys, cand_rep = [], [], [], []
        for (n, m), j in zip(cfg.candidates, which):
            (pts, lab), (dec, box, step1) = prompts[j], outs[j]
            grid_fg = lowres_to_grid(dec.low_res_logits[0], g) > 0  # authors: bilinear, > 0
            decoded.append((pts, lab, box, dec))
            feats.append(masked_features(enc.feature_map, grid_fg))
            keys.append(np.packbits(grid_fg).tobytes())
            cand_rep.append({"n_pos": n, "n_neg": m, "score": float(dec.scores[0]),
                             "step1_score": step1,
                             "area_px": int(np.count_nonzero(dec.masks[0])),
                             "grid_cells": int(grid_fg.sum()), "step2_empty": box is None})
        timings["decode"] += time.perf_counter() - t0
        res = retrieve(prior.fg_features, feats, cost=cfg.cost, max_points=cfg.max_ot_points,
                       num_itermax=cfg.ot_num_itermax, keys=keys)
        timings["retrieval"] += res.seconds
        for c, cost in zip(cand_rep, res.costs):
            c["cost"] = float(cost) if np.isfinite(cost) else None
        n_empty2 = sum(c["step2_empty"] for c in cand_rep)
        rep: dict[str, Any] = {"candidates": cand_rep, "cost": cfg.cost,
                               "step2_empty_candidates": n_empty2}
        if res.best is None:  # every candidate empty: the structure is absent
            pts, lab, box, dec = decoded[0]
            rep.update({"chosen": None, "absent": True, "score": float(dec.scores[0]),
                        "prompts": prompts_report(pts, lab, box), "area_px": 0})
            if n_empty2:
                rep.update(step2_empty(prior.value))
            hw = enc.mapping.image_hw
            return ClassOutcome(np.zeros(hw, bool), dec.low_res_logits[0], 0.0, rep)
        pts, lab, box, dec = decoded[res.best]
        mask = np.asarray(dec.masks[0], dtype=bool)
        rep.update({"chosen": {"n_pos": cand_rep[res.best]["n_pos"],
                               "n_neg": cand_rep[res.best]["n_neg"]},
                    "absent": False, "score": float(dec.scores[0]),
                    "prompts": prompts_report(pts, lab, box), "area_px": int(mask.sum())})
        if cand_rep[res.best]["step2_empty"]:
            rep.update(step2_empty(prior.value))
        return ClassOutcome(mask, dec.low_res_logits[0], float(dec.scores[0]), rep)
