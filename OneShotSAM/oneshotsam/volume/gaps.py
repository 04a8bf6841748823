"""Propagation between anchors: the slices of a volume split into gaps.

Anchors are slices whose labels are known: annotated, approved, corrected or erased
(empty) by the user, or predicted across visits for a follow-up. Sorted anchors
split the other slices into GAPS: the slices strictly between two consecutive
anchors, plus the two outer gaps (first anchor -> start of the volume, last
anchor -> end). A gap depends on its two bounding anchors only, so after a
correction only the gaps touching a changed anchor are recomputed and every other
slice stays as it was (:class:`oneshotsam.volume.session.PropagationSession`).

* outer gap: walked outward from its anchor with the absence rule
  (:func:`oneshotsam.volume.chain.walk_runs`); an empty anchor (erased) leaves it
  empty: the structure ended there;
* inner gap between two non-empty anchors: walked from BOTH ends; each slice is the
  signed-distance fusion (:func:`fuse_many`) of the two walks' predictions and of the
  two anchors' shapes (weight :data:`ANCHOR_SHAPE`). Per label, a walk's weight is
  ``area**AREA_POWER / d**IDW_POWER`` (:func:`side_weight`; ``area`` the label's area on
  the walk's anchor, ``d`` the physical distance to it): a walk is reliable near its
  anchor, and it carries a structure well towards smaller cross-sections but poorly
  towards larger ones (the warp does not create area it has not seen: on the LA tuning
  split a walk towards a growing cross-section kept 0.79 of the true area after one
  slice and 0.26 after eight, one towards a shrinking one 1.00 and 1.04). The walks'
  disagreement is kept per slice (``info["disagreement"]`` = 1 - Dice) for the review
  queue;
* inner gap with one empty anchor: walked from the non-empty one only (the
  structure ends at the empty slice; nothing is drawn beyond it).
Numpy (and scipy.ndimage, lazily) only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from oneshotsam.volume.chain import Run, SliceOutcome, walk_runs


@dataclass(frozen=True)
class Gap:
    """Slices strictly between anchors ``lo`` and ``hi`` (None = the volume's end), ascending."""

    lo: int | None
    hi: int | None
    indices: tuple[int, ...]


def plan_gaps(n_slices: int, anchors: list[int], first: int = 0, last: int | None = None) -> list[Gap]:
    """The gaps of ``anchors`` over slices ``first..last`` (inclusive; default the whole volume)."""
    last = n_slices - 1 if last is None else last
    a = sorted(set(int(k) for k in anchors))
    out = []
    bounds = [None, *a, None]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        start = first if lo is None else lo + 1
        stop = last if hi is None else hi - 1
        ix = tuple(range(max(start, first), min(stop, last) + 1))
        if ix and not (lo is None and hi is None):
            out.append(Gap(lo, hi, ix))
    return out


def gaps_touching(gaps: list[Gap], changed: set[int]) -> list[Gap]:
    """The gaps bounded by an anchor of ``changed``."""
    return [g for g in gaps if g.lo in changed or g.hi in changed]


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """``(H, W)`` signed distance in pixels to the edge of ``mask``: negative inside,
    positive outside (an empty mask: +1e3 everywhere; a full one: -1e3)."""
    from scipy import ndimage as ndi

    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return np.full(m.shape, 1e3)
    if m.all():
        return np.full(m.shape, -1e3)
    return ndi.distance_transform_edt(~m) - ndi.distance_transform_edt(m)


def fuse_labels(a: np.ndarray, b: np.ndarray, w_a: float, shrink: bool = False) -> np.ndarray:
    """Per label value, interpolate the signed distance maps of ``a`` and ``b``
    (weight ``w_a`` on ``a``, ``1 - w_a`` on ``b``) and keep pixels inside. A label
    present on one side only is kept as that side drew it (``shrink=False``: between two
    annotations holding it, the walk that lost it most likely stopped too early) or
    shrinks towards the other side by its equivalent radius (``shrink=True``). Overlaps
    go to the lower-valued label."""
    out = np.zeros_like(a)
    values = sorted({int(v) for v in np.unique(a) if v} | {int(v) for v in np.unique(b) if v})
    for v in values:
        ma, mb = a == v, b == v
        if not ma.any() or not mb.any():
            one = ma if ma.any() else mb
            if not shrink:
                out[one & (out == 0)] = v
                continue
        sa, sb = signed_distance(ma), signed_distance(mb)
        for s, m, other in ((sa, ma, mb), (sb, mb, ma)):
            if not m.any():
                radius = np.sqrt(other.sum() / np.pi)
                s[...] = radius + (signed_distance(other) if other.any() else 0)
        fused = w_a * sa + (1.0 - w_a) * sb
        out[(fused <= 0) & (out == 0)] = v
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of the non-zero pixels (label-wise mean over values present in either); 1 for two empties."""
    values = {int(v) for v in np.unique(a) if v} | {int(v) for v in np.unique(b) if v}
    if not values:
        return 1.0
    return float(np.mean([2.0 * ((a == v) & (b == v)).sum() / max(1, (a == v).sum() + (b == v).sum())
                          for v in values]))


#: between two anchors: the weight of the two anchors' shapes (signed distances, as
#: "Fill between slices") beside the two walks' predictions, and the powers of distance
#: and anchor area in the walks' weights (:func:`side_weight`; the shapes' weights use
#: distance only). Chosen together on the LA tuning split (7 volumes; anchors at 3 and at
#: 5 slices spread over the atrium plus the largest slice; 3D Dice of the slices between
#: anchors, docs/corrections.md "Gap fusion"): distance 2 / area 3 / shape 0.25 scored
#: 0.876 (worst 0.850) at 3 slices and 0.896 (0.878) at 5, against 0.750 (0.701) and
#: 0.866 (0.825) for the linear weights / shape 0.5 used before and 0.739 / 0.857 for
#: Fill between slices on the same slices; distance powers 1.5 to 2, area powers 3 to 4
#: are within 0.001
IDW_POWER = 2.0
AREA_POWER = 3.0
ANCHOR_SHAPE = 0.25


def side_weight(d_lo_mm: float, d_hi_mm: float, power: float | None = None,
                area_lo: float = 1.0, area_hi: float = 1.0, area_power: float = 0.0) -> float:
    """Weight of the ``lo`` side at a slice ``d_lo_mm`` from ``lo`` and ``d_hi_mm`` from
    ``hi``: ``u_lo / (u_lo + u_hi)`` with ``u = area**area_power / d**power`` (inverse
    distance, times the anchor's area to ``area_power``; 1 on ``lo``, 0 on ``hi``;
    equal areas: 0.5 half-way). ``power`` None = :data:`IDW_POWER`; ``power`` 1 with
    ``area_power`` 0 is the linear interpolation weight."""
    power = IDW_POWER if power is None else float(power)
    if d_lo_mm <= 0 or d_hi_mm <= 0:
        return 1.0 if d_lo_mm <= 0 else 0.0
    if area_lo <= 0 or area_hi <= 0:
        return 1.0 if area_hi <= 0 < area_lo else (0.0 if area_lo <= 0 < area_hi else 0.5)
    # in logs: areas to the 3rd power and more overflow nothing, and ratios stay exact
    z = (area_power * (np.log(area_lo) - np.log(area_hi))
         + power * (np.log(d_hi_mm) - np.log(d_lo_mm)))
    return float(1.0 / (1.0 + np.exp(-z)))

def fusion_weights(d_lo_mm: float, d_hi_mm: float, lo_labels: np.ndarray, hi_labels: np.ndarray,
                   values, power: float | None = None, area_power: float | None = None,
                   shape: float | None = None) -> dict[int, list[float]]:
    """Per label value of ``values``: the weights of (walk from lo, walk from hi, lo's shape,
    hi's shape) at a slice ``d_lo_mm`` / ``d_hi_mm`` from the two anchors (labels
    ``lo_labels`` / ``hi_labels``, ``(H, W)``), for :func:`fuse_many`. The walks share
    ``1 - shape`` by :func:`side_weight` with the anchors' areas of the label; the shapes
    share ``shape`` by distance only. None = :data:`IDW_POWER`, :data:`AREA_POWER`,
    :data:`ANCHOR_SHAPE`."""
    s = ANCHOR_SHAPE if shape is None else float(shape)
    q = AREA_POWER if area_power is None else float(area_power)
    w = side_weight(d_lo_mm, d_hi_mm, power)
    out = {}
    for v in (int(x) for x in values if x):
        wv = side_weight(d_lo_mm, d_hi_mm, power, float(np.count_nonzero(lo_labels == v)),
                         float(np.count_nonzero(hi_labels == v)), q)
        out[v] = [(1 - s) * wv, (1 - s) * (1 - wv), s * w, s * (1 - w)]
    return out


#: ``walk(run, anchors, emit) -> (outcomes, cancelled)``: :func:`walk_runs` with the job's
#: engine bound; ``emit(outcome)`` (or None) hears every finished slice in walk order
WalkFn = Callable[[Run, Mapping[int, SliceOutcome], Any], tuple[dict[int, SliceOutcome], bool]]


def walk_gap(gap: Gap, anchors: Mapping[int, SliceOutcome], walk: WalkFn, positions_mm: np.ndarray,
             done: Callable[[SliceOutcome], None] | None = None) -> tuple[dict[int, SliceOutcome], bool]:
    """Predict every slice of ``gap`` (see the module docstring); ``done(outcome)`` hears each
    slice once, as soon as it is final (outward from the anchor; fused slices during the
    second walk). Returns (outcomes, cancelled)."""
    ix = list(gap.indices)
    done = done or (lambda o: None)
    full = {k: bool(np.any(anchors[k].labels)) for k in (gap.lo, gap.hi) if k is not None}
    if not any(full.values()):
        side = gap.lo if gap.lo is not None else gap.hi
        why = "the slice at its end was erased: the structure ends there"
        out = {}
        for k in (ix if side == gap.lo else ix[::-1]):
            out[k] = SliceOutcome(k, np.zeros_like(anchors[side].labels), 0.0, False, "stopped",
                                  side, {"reason": why})
            done(out[k])
        return out, False
    if not (full.get(gap.lo) and full.get(gap.hi)):  # one side (outer gap, or towards an erased end)
        run = Run(gap.lo, +1, ix) if full.get(gap.lo) else Run(gap.hi, -1, ix[::-1])
        return walk(run, anchors, done)
    up, cancelled = walk(Run(gap.lo, +1, ix), anchors, None)
    if cancelled:
        return {}, True
    pos = np.asarray(positions_mm, dtype=np.float64)
    fused: dict[int, SliceOutcome] = {}

    def on_down(o: SliceOutcome) -> None:
        fused[o.index] = _fuse_one(gap, up[o.index], o, pos, anchors)
        done(fused[o.index])

    _, cancelled = walk(Run(gap.hi, -1, ix[::-1]), anchors, on_down)
    return fused, cancelled


def fuse_many(maps: list[np.ndarray], weights: list[float] | Mapping[int, list[float]]) -> np.ndarray:
    """Per label value, the weighted mean of the signed distance maps of the ``maps``
    that hold it (weights renormalised over those), inside kept; overlaps go to the
    lower-valued label. ``weights``: one per map, or ``{label: one per map}``."""
    out = np.zeros_like(maps[0])
    values = sorted({int(v) for m in maps for v in np.unique(m) if v})
    for v in values:
        wv = weights[v] if isinstance(weights, Mapping) else weights
        held = [(m == v, w) for m, w in zip(maps, wv) if w > 0 and (m == v).any()]
        total = sum(w for _, w in held)
        fused = sum(w * signed_distance(m) for m, w in held) / total
        out[(fused <= 0) & (out == 0)] = v
    return out


def _fuse_one(gap: Gap, a: SliceOutcome, b: SliceOutcome, pos: np.ndarray,
              anchors: Mapping[int, SliceOutcome] | None = None) -> SliceOutcome:
    """Slice ``a.index`` walked from ``gap.lo`` (``a``) and from ``gap.hi`` (``b``), fused
    with the shape interpolated between the two anchors (weight :data:`ANCHOR_SHAPE`)."""
    k = a.index
    d_lo, d_hi = abs(pos[k] - pos[gap.lo]), abs(pos[gap.hi] - pos[k])
    w_lo = side_weight(d_lo, d_hi)  # distance only: the anchors' shapes, the confidence
    walk_w = {}
    if anchors is not None:
        s = ANCHOR_SHAPE
        lo_lab, hi_lab = np.asarray(anchors[gap.lo].labels), np.asarray(anchors[gap.hi].labels)
        seen = np.union1d(np.unique(a.labels), np.unique(b.labels))  # absent from both walks:
        shapes = [np.where(np.isin(x, seen), x, 0) for x in (lo_lab, hi_lab)]  # stays absent
        weights = fusion_weights(d_lo, d_hi, lo_lab, hi_lab, seen)
        walk_w = {v: w[0] / (1 - s) if s < 1 else 0.5 for v, w in weights.items()}
        labels = (fuse_many([np.asarray(a.labels), np.asarray(b.labels), *shapes], weights)
                  if weights else np.zeros_like(np.asarray(a.labels)))
    else:
        labels = fuse_labels(np.asarray(a.labels), np.asarray(b.labels), w_lo)
    agree = dice(np.asarray(a.labels), np.asarray(b.labels))
    info = {"source": [int(gap.lo), int(gap.hi)], "weight_lo": round(float(w_lo), 4),
            "walk_weight_lo": {str(v): round(float(w), 4) for v, w in walk_w.items()},
            "idw_power": IDW_POWER, "area_power": AREA_POWER,
            "anchor_shape": ANCHOR_SHAPE if anchors is not None else 0.0,
            "disagreement": round(1.0 - agree, 4), "from_lo": a.info, "from_hi": b.info}
    conf = w_lo * a.confidence + (1.0 - w_lo) * b.confidence
    status = "predicted" if labels.any() else "stopped"
    return SliceOutcome(k, labels, float(conf), bool(a.flagged or b.flagged), status,
                        int(gap.lo if w_lo >= 0.5 else gap.hi), info)


__all__ = ["Gap", "plan_gaps", "gaps_touching", "signed_distance", "fuse_labels", "fuse_many", "dice", "walk_gap",
           "ANCHOR_SHAPE", "IDW_POWER", "AREA_POWER", "side_weight", "fusion_weights"]
