"""Per-slice confidence and the review queue: which slice is most likely wrong?

Weight-free evidence, gathered per slice while its gap is walked
(:mod:`oneshotsam.volume.gaps`) and kept in ``info["evidence"]``:

* ``disagreement``: between two annotations, 1 - Dice of the propagations from the
  two ends (large where the two disagree, i.e. where at least one of them is wrong);
* ``similarity``: the engine's confidence (warp: image similarity after warping times
  the share of warped pixels that look like the annotated structure);
* ``distance_mm``: physical distance to the nearest non-empty anchor;
* ``to_end``: one-sided walks only, the slices between this slice and the last slice
  drawn before the walk stopped (0 = the last drawn, negative = left empty after it),
  counted up to :data:`TAIL_LAG`: propagation runs on past a structure's end;
* ``area_ratio``: drawn area relative to the nearest anchor's.

``confidence`` = 1 - risk, the risk a logistic model of the evidence
(:func:`slice_risk`; its ORDER is what was measured, docs/volume_propagation.md,
"Review and correct"). A slice is flagged when its risk reaches :data:`FLAG_RISK`,
when a label stops on it (the walk's own flags), or when it is one of the last
:data:`TAIL_FLAGGED` slices drawn before a one-sided walk stopped. The review queue
puts flagged slices first, by expected wrong area (:func:`expected_wrong`). Numpy only.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import numpy as np

from oneshotsam.volume.chain import SliceOutcome
from oneshotsam.volume.gaps import Gap
from oneshotsam.volume.stoprule import StopRule

#: the last slices drawn before a walk stopped are flagged (possibly beyond the structure's end)
TAIL_FLAGGED = 2
#: distance scale (mm): the distance term is ``1 - exp(-distance / scale)``
DISTANCE_SCALE_MM = 40.0
#: logistic coefficients of the risk of a drawn slice, fitted on the LA tuning split
#: (docs/volume_propagation.md, "Review queue")
RISK_DRAWN = {"intercept": -2.3, "distance": 7.0, "dissimilarity": 1.3, "smaller": 9.1,
              "disagreement": 1.2}
#: ... of a slice left empty (rarely wrong unless the two sides disagree)
RISK_EMPTY = {"intercept": -3.4, "disagreement": 4.7}
#: a slice whose risk reaches this is flagged (its confidence below ``1 - FLAG_RISK``)
FLAG_RISK = 0.8
#: ``to_end`` is counted up to this many slices (farther = the same); an outer walk's slice
#: is scored once this many drawn slices came after it
TAIL_LAG = 4


def _area(labels: np.ndarray) -> float:
    return float(np.count_nonzero(labels))


class GapScorer:
    """Scores the slices of one gap as :func:`~oneshotsam.volume.gaps.walk_gap` finishes
    them (call it with each outcome, in walk order; then :meth:`flush`) and hands each
    scored slice, once, to ``emit``. An outer gap's slice is held back until its
    ``to_end`` is known up to :data:`TAIL_LAG` (the walk stopped, or that many drawn
    slices came after it), so slices still appear while the walk runs."""

    def __init__(self, gap: Gap, anchors: Mapping[int, SliceOutcome], positions_mm: np.ndarray,
                 rule: StopRule, emit: Callable[[SliceOutcome], None] | None = None) -> None:
        self.pos = np.asarray(positions_mm, dtype=np.float64)
        self.full = [k for k in (gap.lo, gap.hi) if k is not None and anchors[k].labels.any()]
        self.anchors, self.rule, self.emit = anchors, rule, emit
        self.outer = len(self.full) == 1  # walked from one side: where it stopped matters
        self.held: list[SliceOutcome] = []
        self.drawn: list[int] = []  # positions in ``held`` order of the drawn slices
        self.seen = 0
        self.ended = False

    def __call__(self, o: SliceOutcome) -> None:
        if not self.outer:
            self._score(o, None)
            return
        self.held.append(o)
        if o.labels.any() and not self.ended:
            self.drawn.append(self.seen)
        else:
            self.ended = True
        self.seen += 1
        self._release(final=self.ended)

    def flush(self) -> None:
        """Score what is still held (the walk finished or was cancelled)."""
        self._release(final=True)

    def _release(self, final: bool) -> None:
        first = self.seen - len(self.held)
        last = self.drawn[-1] if self.drawn else first - 1
        while self.held:
            i = first
            after = sum(1 for d in self.drawn if d > i)
            if not final and after < TAIL_LAG:
                return
            self._score(self.held.pop(0), last - i)
            first += 1

    def _score(self, o: SliceOutcome, to_end: int | None) -> None:
        k = o.index
        near = min(self.full, key=lambda a: abs(self.pos[a] - self.pos[k])) if self.full else None
        ev: dict[str, float] = {"similarity": round(float(o.confidence), 4), "distance_mm": round(
            float(abs(self.pos[k] - self.pos[near])) if near is not None else 0.0, 2)}
        if near is not None:
            ev["area_ratio"] = round(_area(o.labels) / max(_area(self.anchors[near].labels), 1.0), 4)
        if "disagreement" in o.info:
            ev["disagreement"] = float(o.info["disagreement"])
        if to_end is not None:
            ev["to_end"] = int(min(to_end, TAIL_LAG))
        risk = slice_risk(ev, bool(o.labels.any()), bool(self.full))
        stake = _area(o.labels) if o.labels.any() else (
            0.5 * _area(self.anchors[near].labels) if near is not None else 0.0)
        ev["expected_wrong_px"] = round(risk * risk * stake, 2)
        o.info["evidence"] = ev
        o.info["method_confidence"] = round(float(o.confidence), 4)
        o.confidence = float(1.0 - risk)
        why = ""
        if risk >= FLAG_RISK:
            why = f"likely wrong (confidence {o.confidence:.2f} < {1.0 - FLAG_RISK:.2f})"
        elif 0 <= ev.get("to_end", -1) < TAIL_FLAGGED:
            why = "last slices drawn before the structure was judged to end: check it does not run past"
        if why:
            o.flagged = True
            o.info["review"] = why
        if self.emit is not None:
            self.emit(o)


def slice_risk(ev: Mapping[str, float], drawn: bool, has_anchor: bool) -> float:
    """Probability in [0, 1] that a slice is not acceptable (its Dice with the truth below
    0.90, or drawn where the truth is empty or the reverse), from its evidence: a logistic
    model of the evidence (coefficients in :data:`RISK_DRAWN` / :data:`RISK_EMPTY`)."""
    if not has_anchor:
        return 0.0  # between erased slices: nothing drawn, by the user's word
    if drawn:
        c = RISK_DRAWN
        z = (c["intercept"] + c["distance"] * (1.0 - math.exp(-float(ev.get("distance_mm", 0.0))
                                                              / DISTANCE_SCALE_MM))
             + c["dissimilarity"] * min(max(1.0 - float(ev.get("similarity", 1.0)), 0.0), 1.0)
             + c["smaller"] * (1.0 - min(float(ev.get("area_ratio", 1.0)), 1.0))
             + c["disagreement"] * float(ev.get("disagreement", 0.0)))
    else:
        z = RISK_EMPTY["intercept"] + RISK_EMPTY["disagreement"] * float(ev.get("disagreement", 0.0))
    return float(1.0 / (1.0 + math.exp(-z)))


def expected_wrong(o: SliceOutcome) -> float:
    """Risk squared times the area at stake (pixels: the drawn area, or for an empty slice
    half the nearest anchor's); what the review queue is ordered by (squared: a sure error
    on a mid-sized slice before a doubtful one on the largest)."""
    ev = o.info.get("evidence")
    if ev is None:
        return (1.0 - float(o.confidence)) * _area(o.labels)
    return float(ev.get("expected_wrong_px", 0.0))


def review_queue(outcomes: Mapping[int, SliceOutcome]) -> list[int]:
    """Slice indices to review: flagged slices first, each group ordered by the expected
    wrong area (:func:`expected_wrong`: a likely wrong slice with much drawn is worth more
    than a likely wrong speck at the structure's end), then by ascending confidence and
    index. Annotated, approved, corrected and erased slices are left out (a follow-up's
    cross-visit predictions are reviewed)."""
    rows = [o for o in outcomes.values() if o.status != "seed" or o.info.get("kind") == "cross-visit"]
    rows.sort(key=lambda o: (not o.flagged, -expected_wrong(o), float(o.confidence), int(o.index)))
    return [int(o.index) for o in rows]


__all__ = ["GapScorer", "slice_risk", "expected_wrong", "review_queue", "TAIL_FLAGGED", "TAIL_LAG",
           "RISK_DRAWN", "RISK_EMPTY"]
