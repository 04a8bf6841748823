"""Per-slice confidence and the review queue: which slice is most likely wrong?

Weight-free evidence, gathered per slice while its gap is walked
(:mod:`oneshotsam.volume.gaps`) and kept in ``info["evidence"]``:

* ``disagreement``: between two annotations, 1 - Dice of the propagations from the
  two ends (large where the two disagree, i.e. where at least one of them is wrong);
* ``similarity``: the engine's confidence (warp: image similarity after warping times
  the share of warped pixels that look like the annotated structure);
* ``distance_mm``: physical distance to the nearest non-empty anchor;
* ``to_end``: outer gaps only, the number of slices between this slice and the
  slice where the walk stopped (0 = the last slice drawn): propagation runs on past a
  structure's end, so the last slices drawn before a stop are the most likely wrong
  (drawn beyond the end), and the first slices left empty after it are the next;
* ``area_ratio``: drawn area relative to the nearest anchor's.

``confidence`` in [0, 1] orders slices by how likely they are right (its ORDER is
what was measured; docs/volume_propagation.md, "Review queue"); a slice is flagged when
its confidence is below ``StopRule.review_confidence``, when a label stops on it, or
when it is one of the last ``TAIL_FLAGGED`` slices drawn before a stop. Numpy only.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from oneshotsam.volume.chain import SliceOutcome
from oneshotsam.volume.gaps import Gap
from oneshotsam.volume.stoprule import StopRule

#: the last slices drawn before a walk stopped are flagged (possibly beyond the structure's end)
TAIL_FLAGGED = 2
#: distance scale (mm) of the prior that farther slices are less reliable
DISTANCE_SCALE_MM = 40.0
#: how fast the risk of drawn slices falls with their distance from the stop (slices)
TAIL_SCALE = 3.0


def _area(labels: np.ndarray) -> float:
    return float(np.count_nonzero(labels))


def _outer_tail(gap: Gap, walked: Mapping[int, SliceOutcome]) -> dict[int, int]:
    """Per slice of an outer gap: signed slices to the last drawn slice (>= 0 drawn, < 0 empty)."""
    order = [k for k in (gap.indices if gap.lo is not None else gap.indices[::-1]) if k in walked]
    drawn = [k for k in order if walked[k].labels.any()]
    last = order.index(drawn[-1]) if drawn else -1
    return {k: last - i for i, k in enumerate(order)}


def score_gap(gap: Gap, walked: Mapping[int, SliceOutcome], anchors: Mapping[int, SliceOutcome],
              positions_mm: np.ndarray, rule: StopRule) -> None:
    """Set ``confidence``, ``flagged`` and ``info["evidence"]`` of the slices of one gap (in place)."""
    pos = np.asarray(positions_mm, dtype=np.float64)
    full = [k for k in (gap.lo, gap.hi) if k is not None and anchors[k].labels.any()]
    outer = gap.lo is None or gap.hi is None
    tail = _outer_tail(gap, walked) if outer and full else {}
    for k, o in walked.items():
        near = min(full, key=lambda a: abs(pos[a] - pos[k])) if full else None
        ev = {"similarity": round(float(o.confidence), 4),
              "distance_mm": round(float(abs(pos[k] - pos[near])) if near is not None else 0.0, 2)}
        if near is not None:
            ev["area_ratio"] = round(_area(o.labels) / max(_area(anchors[near].labels), 1.0), 4)
        if "disagreement" in o.info:
            ev["disagreement"] = float(o.info["disagreement"])
        if k in tail:
            ev["to_end"] = int(tail[k])
        risk = slice_risk(ev, bool(o.labels.any()), bool(full))
        o.info["evidence"] = ev
        o.info["method_confidence"] = round(float(o.confidence), 4)
        o.confidence = float(1.0 - risk)
        why = ""
        if o.confidence < rule.review_confidence:
            why = f"likely wrong (confidence {o.confidence:.2f} < {rule.review_confidence})"
        elif 0 <= ev.get("to_end", -1) < TAIL_FLAGGED:
            why = "last slices drawn before the structure was judged to end: check it does not run past"
        if why:
            o.flagged = True
            o.info["review"] = why


def slice_risk(ev: Mapping[str, float], drawn: bool, has_anchor: bool) -> float:
    """Risk in [0, 1) of one slice from its evidence (see the module docstring)."""
    if not has_anchor:
        return 0.0  # between erased slices: nothing drawn, by the user's word
    dist = 1.0 - math.exp(-float(ev.get("distance_mm", 0.0)) / DISTANCE_SCALE_MM)
    sim = 1.0 - float(ev.get("similarity", 1.0)) if drawn else 0.0
    risk = 0.3 * dist + 0.2 * min(max(sim, 0.0), 1.0)
    if "disagreement" in ev:
        risk += 0.5 * float(ev["disagreement"])
    if "to_end" in ev:
        t = float(ev["to_end"])
        risk += 0.5 * math.exp(-abs(t + 0.5) / TAIL_SCALE)
    return float(min(max(risk, 0.0), 0.999))


def review_queue(outcomes: Mapping[int, SliceOutcome]) -> list[int]:
    """Slice indices to review, most likely wrong first: flagged slices first, then by
    ascending confidence (ties: lower index); anchors (annotated, approved, corrected,
    cross-visit seeds are not anchors here) are left out."""
    rows = [o for o in outcomes.values() if o.status != "seed" or o.info.get("kind") == "cross-visit"]
    rows.sort(key=lambda o: (not o.flagged, float(o.confidence), int(o.index)))
    return [int(o.index) for o in rows]


__all__ = ["score_gap", "slice_risk", "review_queue", "TAIL_FLAGGED"]
