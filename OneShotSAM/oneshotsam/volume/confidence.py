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
* ``area_ratio``: drawn area relative to the nearest anchor's;
* ``past_end_mm``: one-sided walks from an anchor that is not the largest, where the
  structure's end along the walk can be estimated from the two anchors' areas
  (:func:`end_estimate_mm`, an ellipsoid profile): how far past that end the slice lies;
* ``beyond``: drawn slices of one-sided walks only, the probability that the structure
  has already ended there (:func:`beyond_probability`).

``confidence`` = 1 - risk, the risk a logistic model of the evidence
(:func:`slice_risk`; its ORDER is what was measured, docs/volume_propagation.md,
"Review and correct"). A slice is flagged when its risk reaches :data:`FLAG_RISK`,
when a label stops on it (the walk's own flags), or when it is one of the last
:data:`TAIL_FLAGGED` slices drawn before a one-sided walk stopped, or when it is likely
drawn beyond the structure's end (``beyond`` >= :data:`BEYOND_FLAGGED`). The review queue
is ordered by what correcting the slice is expected to fix once Update has run
(:func:`correction_gains`, each slice's area weighed by the :data:`RISK_ORDER` risk), not
by the slice's own error nor by its flag. Numpy only.
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
#: logistic coefficients of the risk of a drawn slice, fitted on the LA tuning split with
#: the walk along the slices' optical flow (7 volumes, step 0 and 4 queue-order Updates,
#: 2191 drawn slices; leave-one-case-out AUROC 0.904; ``benchmarks/review_queue_la.py``,
#: docs/corrections.md, "The walk")
RISK_DRAWN = {"intercept": -2.9, "distance": 1.0, "dissimilarity": 2.6, "smaller": 7.4,
              "disagreement": 0.7}
#: ... of a slice left empty (rarely wrong unless the two sides disagree)
RISK_EMPTY = {"intercept": -3.4, "disagreement": 4.7}
#: a slice whose risk reaches this is flagged (its confidence below ``1 - FLAG_RISK``)
FLAG_RISK = 0.8
#: logistic coefficients of "a drawn slice of a one-sided walk lies beyond the structure's
#: end" (its truth is empty) on its distance to the anchor, fitted on the correction
#: benchmark's tuning split (7 LA volumes, 2 tumours; 598 slices, leave-one-case-out AUROC
#: 0.96; the area relative to the anchor and the image similarity added nothing): p = 0.5
#: at 18.5 mm
BEYOND = {"intercept": -8.7, "distance_cm": 4.7}
#: the end estimate (:func:`end_estimate_mm`) is made only from an anchor whose area is
#: at most this share of the largest anchor's: nearer the middle the profile says little
#: (LA tuning truth, ``benchmarks/end_estimate.py``: mean error 1.7 slices from anchors
#: next to the end, 7.0 from anchors half-way; without the limit, anchors a quarter of the
#: way were off by up to 59 slices)
END_FIT_MAX_AREA = 0.7
#: logistic coefficients of "the structure has ended" on the distance past the estimated
#: end (mm), fitted on the LA tuning split's true labels (7 volumes, anchors at every
#: slice whose area is <= END_FIT_MAX_AREA of the largest, 4827 slices beyond them;
#: leave-one-case-out AUROC 0.91; ``benchmarks/end_estimate.py``): p = 0.5 at 2.4 mm past
#: the estimate
END = {"intercept": -1.33, "per_mm": 0.56}
#: a drawn slice at least this likely beyond the structure's end is flagged
BEYOND_FLAGGED = 0.5
#: share of a wrong slice's area that drawing it fixes, when the structure is there (a slice
#: beyond the end is wrong all over); chosen on the correction benchmark's LA tuning split
#: (7 volumes, queue order replayed from one step 0, ``benchmarks/queue_replay.py``): 0.25
#: gave 0.835 / 0.861 / 0.880 / 0.901 mean Dice after 1..4 corrections against 0.830 /
#: 0.853 / 0.874 / 0.895 at 0.5 (0.15: within 0.003; 0.75 and 1.0: as 0.5)
INSIDE_WRONG_SHARE = 0.25
#: logistic coefficients of the risk that weighs a drawn slice's area in the review
#: queue's expected gain (``expected_wrong_px``, :func:`correction_gains`): those first fitted
#: for the network's walk, where the risk grew steeply with the distance to the anchor. Kept
#: for the ORDER because on the LA tuning split the queue replayed with them reached 0.894 /
#: 0.920 mean Dice after 2 / 4 corrections, against 0.887 / 0.904 with :data:`RISK_DRAWN`
#: (docs/corrections.md, "The walk")
RISK_ORDER = {"intercept": -2.3, "distance": 7.0, "dissimilarity": 1.3, "smaller": 9.1,
              "disagreement": 1.2}
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
        self.end = _end_of_walk(gap, anchors, self.pos) if self.outer else None

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
        if self.end is not None:
            big, c_mm = self.end
            ev["past_end_mm"] = round(float(abs(self.pos[k] - self.pos[big]) - c_mm), 2)
        if to_end is not None:
            ev["to_end"] = int(min(to_end, TAIL_LAG))
            if o.labels.any():
                ev["beyond"] = round(beyond_probability(ev), 4)
        risk = slice_risk(ev, bool(o.labels.any()), bool(self.full))
        stake = _area(o.labels) if o.labels.any() else (
            0.5 * _area(self.anchors[near].labels) if near is not None else 0.0)
        weight = slice_risk(ev, bool(o.labels.any()), bool(self.full), RISK_ORDER)
        ev["expected_wrong_px"] = round(weight * weight * stake, 2)
        o.info["evidence"] = ev
        o.info["method_confidence"] = round(float(o.confidence), 4)
        o.confidence = float(1.0 - risk)
        why = flag_reason(ev, risk)
        if why:
            o.flagged = True
            o.info["review"] = why
        if self.emit is not None:
            self.emit(o)


def flag_reason(ev: Mapping[str, float], risk: float) -> str:
    """Why a scored slice is flagged ("" = not flagged): likely drawn beyond the
    structure's end, likely wrong, or one of the last slices drawn before a stop."""
    if ev.get("beyond", 0.0) >= BEYOND_FLAGGED:
        return (f"likely drawn beyond the structure's end (p {ev['beyond']:.2f}): erase it if so, "
                f"Update then empties every slice beyond it")
    if risk >= FLAG_RISK:
        return f"likely wrong (confidence {1.0 - risk:.2f} < {1.0 - FLAG_RISK:.2f})"
    if 0 <= ev.get("to_end", -1) < TAIL_FLAGGED:
        return "last slices drawn before the structure was judged to end: check it does not run past"
    return ""


def beyond_probability(ev: Mapping[str, float]) -> float:
    """Probability that a drawn slice of a one-sided walk lies beyond the structure's end
    (its truth empty): a logistic model (:data:`BEYOND`) of its distance to the anchor
    or, where the end could be estimated (``past_end_mm``), a logistic model
    (:data:`END`) of the distance past that end, whichever is larger."""
    z = BEYOND["intercept"] + BEYOND["distance_cm"] * float(ev.get("distance_mm", 0.0)) / 10.0
    if "past_end_mm" in ev:
        z = max(z, END["intercept"] + END["per_mm"] * float(ev["past_end_mm"]))
    return float(1.0 / (1.0 + math.exp(-z)))


def end_estimate_mm(anchor_area: float, largest_area: float, distance_mm: float) -> float | None:
    """How far from the largest anchor the structure ends, on the side of an anchor
    ``distance_mm`` away with area ``anchor_area`` (any unit, as ``largest_area``): an
    ellipsoid profile through both, ``area(z) = largest * (1 - (z / c)**2)``, gives
    ``c = distance / sqrt(1 - anchor_area / largest_area)``. None when the anchor's share
    of the largest area exceeds :data:`END_FIT_MAX_AREA` (too near the middle to tell)."""
    if largest_area <= 0 or distance_mm <= 0:
        return None
    share = float(anchor_area) / float(largest_area)
    if not 0.0 < share <= END_FIT_MAX_AREA:
        return None
    return float(distance_mm) / math.sqrt(1.0 - share)


def _end_of_walk(gap: Gap, anchors: Mapping[int, SliceOutcome],
                 pos: np.ndarray) -> tuple[int, float] | None:
    """``(largest anchor, c_mm)`` for the one-sided walk of ``gap`` away from the largest
    non-empty anchor (:func:`end_estimate_mm`), or None (the walk starts at the largest
    anchor, runs towards it, or the estimate is not made)."""
    start = gap.lo if gap.lo is not None and anchors[gap.lo].labels.any() else gap.hi
    full = {k: _area(o.labels) for k, o in anchors.items() if o.labels.any()}
    if start is None or start not in full or len(full) < 2:
        return None
    big = max(full, key=lambda k: (full[k], -abs(k - start)))
    outward = gap.indices[0] > start if gap.indices else True
    if big == start or (big > start) == outward:
        return None
    c = end_estimate_mm(full[start], full[big], abs(float(pos[start]) - float(pos[big])))
    return None if c is None else (big, c)


def end_stop(gap: Gap, anchors: Mapping[int, SliceOutcome], positions_mm: np.ndarray,
             p_stop: float) -> int | None:
    """How many slices of ``gap``'s one-sided walk (outward from its non-empty anchor) to
    walk before it stops at the structure's end estimated from two anchors' areas
    (:func:`end_estimate_mm`): the first slice whose probability of lying past that end
    (:data:`END`) reaches ``p_stop`` (``StopRule.past_end``) and every slice beyond it
    are left empty. None = walk them all (two-sided gap, no estimate, ``p_stop`` outside
    (0, 1): off)."""
    full = [k for k in (gap.lo, gap.hi) if k is not None and anchors[k].labels.any()]
    if not 0.0 < p_stop < 1.0 or len(full) != 1:
        return None
    pos = np.asarray(positions_mm, dtype=np.float64)
    end = _end_of_walk(gap, anchors, pos)
    if end is None:
        return None
    big, c_mm = end
    past_mm = (math.log(p_stop / (1.0 - p_stop)) - END["intercept"]) / END["per_mm"]
    order = gap.indices if full[0] == gap.lo else gap.indices[::-1]
    for n, k in enumerate(order):
        if abs(float(pos[k]) - float(pos[big])) - c_mm >= past_mm:
            return n
    return None


def slice_risk(ev: Mapping[str, float], drawn: bool, has_anchor: bool,
               coefficients: Mapping[str, float] | None = None) -> float:
    """Probability in [0, 1] that a slice is not acceptable (its Dice with the truth below
    0.90, or drawn where the truth is empty or the reverse), from its evidence: a logistic
    model of the evidence (coefficients in :data:`RISK_DRAWN` / :data:`RISK_EMPTY`;
    ``coefficients`` replaces :data:`RISK_DRAWN`, e.g. :data:`RISK_ORDER`)."""
    if not has_anchor:
        return 0.0  # between erased slices: nothing drawn, by the user's word
    if drawn:
        c = RISK_DRAWN if coefficients is None else coefficients
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


def _beyond(o: SliceOutcome) -> float:
    ev = o.info.get("evidence") or {}
    if "beyond" in ev:
        return float(ev["beyond"])
    return beyond_probability(ev) if "to_end" in ev else 0.0


def correction_gains(outcomes: Mapping[int, SliceOutcome]) -> dict[int, float]:
    """``{slice: pixels expected to be fixed by correcting it and pressing Update}``.

    Seeds (``status == "seed"``) split the slices into stretches, as the Update does
    (:mod:`oneshotsam.volume.gaps`). In a stretch, ``ew(l)`` = :func:`expected_wrong` and
    ``d(l)`` = slices from ``l`` to the nearest non-empty bounding seed; correcting slice
    ``i`` makes it an anchor, so slice ``l`` is re-propagated from ``|l - i|`` slices away
    when that is nearer: ``redraw(i) = sum_l w(l) * (1 - min(d(l), |l - i|) / d(l))``, with
    ``w(l)`` = ``ew(l)`` for an empty slice and ``(1 - p_l) * INSIDE_WRONG_SHARE * ew(l)``
    for a drawn one (the part of its error a drawing fixes; ``p_l`` as below, 0 between
    two non-empty seeds).

    * between two non-empty seeds: ``redraw(i)`` (largest in the middle of a bad gap);
    * one-sided walk (one non-empty seed; ``s_1, s_2, ...`` outward from it): a drawn
      ``s_i`` lies beyond the structure's end with probability ``p_i`` = the largest
      :func:`beyond_probability` of ``s_1..s_i`` (once ended, ended); erasing it empties
      every slice from it outward (drawn area ``A_i``), else it is drawn:
      ``p_i * A_i + (1 - p_i) * redraw(s_i)`` (largest at the innermost slice likely
      beyond the end);
    * slices left empty, seeds and stretches without a non-empty seed: ``ew``.
    """
    seeds = sorted(k for k, o in outcomes.items() if o.status == "seed")
    gains = {k: expected_wrong(o) for k, o in outcomes.items()}
    keys = sorted(k for k, o in outcomes.items() if o.status != "seed")
    for lo, hi in zip([None, *seeds], [*seeds, None]):
        ix = [k for k in keys if (lo is None or k > lo) and (hi is None or k < hi)]
        full = [a for a in (lo, hi) if a is not None and outcomes[a].labels.any()]
        if not ix or not full:
            continue
        out = sorted(ix, key=lambda k: abs(k - full[0]))  # outward (one-sided walk)
        beyond, p = {}, 0.0
        for k in out:
            if len(full) == 1 and outcomes[k].labels.any():
                p = max(p, _beyond(outcomes[k]))  # once ended, ended
            beyond[k] = p if outcomes[k].labels.any() else 0.0
        w = {k: (1.0 - beyond[k]) * INSIDE_WRONG_SHARE * gains[k] if outcomes[k].labels.any()
             else gains[k] for k in ix}
        dist = {k: min(abs(k - a) for a in full) for k in ix}

        def redraw(i: int) -> float:
            return sum(w[k] * (1.0 - min(dist[k], abs(k - i)) / dist[k]) for k in ix)

        area_out = np.cumsum([_area(outcomes[k].labels) for k in out][::-1])[::-1]
        ended = 1.0 if not outcomes[out[-1]].labels.any() else max(beyond.values())
        for n, i in enumerate(out):
            if len(full) == 2:
                gains[i] = redraw(i)
            elif outcomes[i].labels.any():
                far = beyond.get(out[2 * n + 1], 0.0) if 2 * n + 1 < len(out) else ended
                if 2 * n + 1 < len(out) and not outcomes[out[2 * n + 1]].labels.any():
                    far = 1.0
                gains[i] = beyond[i] * float(area_out[n]) + (1.0 - beyond[i]) * (1.0 - far) * redraw(i)
    return gains


def review_queue(outcomes: Mapping[int, SliceOutcome]) -> list[int]:
    """Slice indices to review, ordered by what correcting the slice is expected to fix
    once Update has run (:func:`correction_gains`: the innermost slice likely beyond a
    structure's end, or the middle of a bad gap, before a wrong slice whose correction
    changes little else), then by ascending confidence and index. The flags do not
    reorder it: a flag says the slice itself is likely wrong, the order what a
    correction there is worth (a slice well inside a long walk, not yet flagged, can
    repair more slices beyond it than a flagged one near the end). Annotated, approved,
    corrected and erased slices are left out (a follow-up's cross-visit predictions are
    reviewed)."""
    gains = correction_gains(outcomes)
    rows = [o for o in outcomes.values() if o.status != "seed" or o.info.get("kind") == "cross-visit"]
    rows.sort(key=lambda o: (-round(gains[o.index], 6), float(o.confidence),
                             int(o.index)))
    return [int(o.index) for o in rows]


__all__ = ["GapScorer", "slice_risk", "beyond_probability", "flag_reason", "expected_wrong",
           "correction_gains", "review_queue", "TAIL_FLAGGED", "TAIL_LAG", "RISK_DRAWN", "RISK_EMPTY",
           "BEYOND", "BEYOND_FLAGGED", "END", "END_FIT_MAX_AREA", "end_estimate_mm", "end_stop"]
