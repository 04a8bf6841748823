"""The simulated clinician of the correction benchmark and its scores (pure numpy).

Frames: label volumes are ``(K, J, I)`` integer arrays; "slice ``k``" is index ``k``
along ``axis`` (the array axis of the axial slices). Nothing here runs the method.

* :func:`slice_dice` / :func:`acceptable` / :func:`wrong_voxels`: one slice against
  the truth. A slice is **acceptable** when prediction and truth are both empty or
  their Dice is >= 0.90 (several labels: the mean Dice over the label values present
  in either);
* :func:`queue_choice`: the clinician of the "queue" order walks the product's review
  queue and corrects the first slice that is not acceptable (flagged slices that are
  acceptable are skipped); after the queue, the other slices in confidence order
  (lowest first; a slice the product reported no confidence for counts as 1.0; ties
  by distance to the nearest annotated slice, then index);
* :func:`oracle_choice`: the slice with the most wrong voxels (ties: lowest index);
* :func:`build_queue`: the review queue of a report without one: flagged slices by
  confidence (lowest first, ties by index);
* :func:`first_flag_wrong`: was the first flagged, not yet corrected slice really wrong;
* :func:`noc`: corrections needed to reach a Dice (capped at K);
* :func:`auroc`: of per-slice confidence against "slice not acceptable" (low
  confidence should mean wrong; ties count one half);
* :func:`spread_slices`: the peer's ``n`` drawn slices evenly spread over the
  structure's extent, both end slices included.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

#: a slice is acceptable at this Dice or above (or when prediction and truth are both empty)
ACCEPT_DICE = 0.90


def _plane(a: np.ndarray, axis: int, k: int) -> np.ndarray:
    return np.take(np.asarray(a), int(k), axis=axis)


def slice_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean Dice over the label values present in ``pred`` or ``truth`` (2D or any
    shape); 1.0 when both are empty."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    values = sorted(set(np.unique(pred[pred != 0]).tolist()) | set(np.unique(truth[truth != 0]).tolist()))
    if not values:
        return 1.0
    ds = []
    for v in values:
        p, t = pred == v, truth == v
        ds.append(2.0 * float(np.logical_and(p, t).sum()) / float(p.sum() + t.sum()))
    return float(np.mean(ds))


def acceptable(pred_plane: np.ndarray, truth_plane: np.ndarray) -> bool:
    """Both empty, or :func:`slice_dice` >= :data:`ACCEPT_DICE`."""
    return slice_dice(pred_plane, truth_plane) >= ACCEPT_DICE


def wrong_voxels(pred_plane: np.ndarray, truth_plane: np.ndarray) -> int:
    """Voxels whose label differs from the truth."""
    return int((np.asarray(pred_plane) != np.asarray(truth_plane)).sum())


def slice_states(pred: np.ndarray, truth: np.ndarray, axis: int) -> list[bool]:
    """``acceptable`` of every slice along ``axis``."""
    return [acceptable(_plane(pred, axis, k), _plane(truth, axis, k))
            for k in range(np.asarray(pred).shape[axis])]


def build_queue(records: Mapping[int, tuple[float, bool]]) -> list[int]:
    """The flagged slices of ``{slice: (confidence, flagged)}``, lowest confidence first
    (ties by index): the review queue of a report that has none."""
    return sorted((k for k, (_, f) in records.items() if f), key=lambda k: (records[k][0], k))


def _distance(k: int, annotated: Iterable[int]) -> int:
    a = list(annotated)
    return min(abs(k - x) for x in a) if a else 0


def queue_order(n_slices: int, queue: Sequence[int], records: Mapping[int, tuple[float, bool]],
                done: Iterable[int]) -> list[int]:
    """The order the queue clinician looks at the slices: the review queue, then every
    other slice by confidence (unreported = 1.0), distance to the nearest slice of
    ``done`` (annotated or corrected), index; slices of ``done`` are left out."""
    done = set(int(k) for k in done)
    first = [int(k) for k in queue if 0 <= int(k) < n_slices and int(k) not in done]
    seen = set(first)
    rest = [k for k in range(n_slices) if k not in done and k not in seen]
    rest.sort(key=lambda k: (float(records[k][0]) if k in records else 1.0, _distance(k, done), k))
    return list(dict.fromkeys(first)) + rest


def queue_choice(pred: np.ndarray, truth: np.ndarray, axis: int, queue: Sequence[int],
                 records: Mapping[int, tuple[float, bool]], done: Iterable[int]) -> int | None:
    """The slice the queue clinician corrects: the first of :func:`queue_order` that is
    not acceptable; None when every slice left is acceptable."""
    for k in queue_order(np.asarray(pred).shape[axis], queue, records, done):
        if not acceptable(_plane(pred, axis, k), _plane(truth, axis, k)):
            return k
    return None


def oracle_choice(pred: np.ndarray, truth: np.ndarray, axis: int, done: Iterable[int]) -> int | None:
    """The slice (not in ``done``) with the most wrong voxels (ties: lowest index); None
    when no slice left has a wrong voxel."""
    done = set(int(k) for k in done)
    other = tuple(a for a in range(np.asarray(pred).ndim) if a != axis)
    wrong = (np.asarray(pred) != np.asarray(truth)).sum(axis=other)
    best, best_k = 0, None
    for k in range(wrong.shape[0]):
        if k not in done and int(wrong[k]) > best:
            best, best_k = int(wrong[k]), k
    return best_k


def first_flag_wrong(pred: np.ndarray, truth: np.ndarray, axis: int, queue: Sequence[int],
                     records: Mapping[int, tuple[float, bool]], done: Iterable[int]) -> bool | None:
    """Whether the first flagged slice of the queue (not in ``done``) is not acceptable;
    None when no such slice is flagged."""
    done = set(int(k) for k in done)
    for k in queue:
        k = int(k)
        if k in done or not records.get(k, (1.0, False))[1]:
            continue
        return not acceptable(_plane(pred, axis, k), _plane(truth, axis, k))
    return None


def correct(pred: np.ndarray, truth: np.ndarray, axis: int, k: int) -> tuple[np.ndarray, bool]:
    """``pred`` with slice ``k`` replaced by the truth (a copy) and whether the truth is
    empty there (the correction erases the structure)."""
    out = np.array(pred, copy=True)
    idx = [slice(None)] * out.ndim
    idx[axis] = int(k)
    t = _plane(truth, axis, k)
    out[tuple(idx)] = t
    return out, not bool(np.any(t))


def noc(dices: Sequence[float], threshold: float) -> tuple[int, bool]:
    """``(corrections, reached)``: the first step ``j`` (0 = no correction) whose Dice is
    >= ``threshold``; ``(K, False)`` when no step reaches it (``K = len(dices) - 1``)."""
    for j, d in enumerate(dices):
        if d is not None and not math.isnan(float(d)) and float(d) >= threshold:
            return j, True
    return len(dices) - 1, False


def auroc(confidence: Sequence[float], wrong: Sequence[bool]) -> float:
    """Probability that a wrong slice has a LOWER confidence than an acceptable one
    (ties count one half); NaN when either group is empty."""
    c = np.asarray(confidence, dtype=np.float64)
    w = np.asarray(wrong, dtype=bool)
    bad, good = c[w], c[~w]
    if bad.size == 0 or good.size == 0:
        return math.nan
    less = (bad[:, None] < good[None, :]).sum()
    ties = (bad[:, None] == good[None, :]).sum()
    return float((less + 0.5 * ties) / (bad.size * good.size))


def extent(truth: np.ndarray, axis: int) -> tuple[int, int] | None:
    """First and last slice (along ``axis``) holding any label; None when empty."""
    other = tuple(a for a in range(np.asarray(truth).ndim) if a != axis)
    idx = np.nonzero((np.asarray(truth) != 0).any(axis=other))[0]
    return (int(idx[0]), int(idx[-1])) if idx.size else None


def spread_slices(first: int, last: int, n: int, largest: int) -> list[int]:
    """``n`` slices evenly spread over ``first..last`` with both ends included
    (``first + round(i * (last - first) / (n - 1))``, halves rounded up); ``[largest]``
    for ``n == 1``; every slice when ``n`` exceeds the extent."""
    if n <= 1:
        return [int(largest)]
    span = last - first
    if n > span:
        return list(range(first, last + 1))
    return sorted({first + int(math.floor(i * span / (n - 1) + 0.5)) for i in range(n)})


def keep_slices(truth: np.ndarray, axis: int, slices: Iterable[int]) -> np.ndarray:
    """A label array holding ``truth`` on ``slices`` only (what the peer's user drew)."""
    out = np.zeros_like(np.asarray(truth))
    for k in slices:
        idx = [slice(None)] * out.ndim
        idx[axis] = int(k)
        out[tuple(idx)] = _plane(truth, axis, k)
    return out


def beyond_structure(pred: np.ndarray, truth: np.ndarray, axis: int) -> list[int]:
    """Slices labelled by ``pred`` where ``truth`` is empty (predicted beyond the structure)."""
    other = tuple(a for a in range(np.asarray(pred).ndim) if a != axis)
    p = (np.asarray(pred) != 0).any(axis=other)
    t = (np.asarray(truth) != 0).any(axis=other)
    return [int(k) for k in np.nonzero(p & ~t)[0]]


__all__ = ["ACCEPT_DICE", "slice_dice", "acceptable", "wrong_voxels", "slice_states",
           "build_queue", "queue_order", "queue_choice", "oracle_choice", "first_flag_wrong",
           "correct", "noc", "auroc", "extent", "spread_slices", "keep_slices",
           "beyond_structure"]
