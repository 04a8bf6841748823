"""What a correction on a planning contour's follow-up tells its other slices.

Every slice of such a follow-up is its own cross-visit seed (predicted from the
reference slice at its position), so an Update walks no gap again. What a correction
does say about the neighbours (:func:`label_ends_rule`):

* a label the prediction drew on the corrected slice but the clinician left out has
  ENDED there on this visit (at end-systole the base descends, so the basal slices
  lose the ventricles): it is removed from the slices beyond the corrected one (away
  from the middle of the label's predicted extent), up to the next edited slice;
* with ``shape_carry`` > 0, WHERE the prediction was wrong: the cross-visit
  registration's error is alike on adjacent slices, so each label's local shape change
  on the corrected slice (:func:`shape_change`: the corrected minus the predicted
  signed distance, smoothed) is added, times ``shape_carry``, to that label's signed
  distance on the two slices next to it (:func:`carry_shape`);
* with ``walk_weight`` > 0, what the neighbour looks like from the corrected slice: the
  session registers the corrected slice onto its two neighbours inside the contour, on
  the same visit (``MethodEngine.walk_from``: one 2D registration call), and the walked
  labels are fused with the neighbour's (:func:`fuse_walks`, signed distances; a walked
  label whose Dice with the neighbour's is under :data:`WALK_MIN_DICE` is left out: the
  structure changes there faster than a walk follows).

A slice with nothing to change keeps every voxel; edited slices (and slices the Update
left alone for another reason: the caller's ``frozen``) are never touched; a slice the
rules reach is rebuilt from the first run's labels, so edits never compound.

Measured (docs/corrections.md, ACDC ED -> ES tuning split): the local shape carry at
:data:`SHAPE_CARRY` 0.5 gained +0.007 Dice per neighbour slice (1069 slice pairs) and
+0.001 to +0.002 in 3D after 1 to 4 corrections; the walks at :data:`NEIGHBOUR_WALK`
0.5, on top of it, +0.004 / +0.004 / +0.008 more in 3D after 2 / 3 / 4 corrections (the
end slices of the contour, where the heart changes most between slices, are left out: a
walk there lowered them by 0.05); no step lower. Not kept: carrying one size change per label (a
uniform signed-distance offset) decaying with distance (-0.018 after 2 corrections).
An Update with walks costs one 2D registration call per new correction (about 1 s CPU
for two neighbours).

Frames: the follow-up's own grid, ``(K, J, I)`` label arrays; slice ``k`` is index
``k`` along ``axis``; distances in pixels of the slice. Numpy at import time (SciPy
inside).
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from oneshotsam.volume.gaps import signed_distance

#: weight of a corrected slice's local shape change on its two neighbours (0 = off);
#: chosen among 0.3 / 0.5 / 0.7 on the ACDC ED -> ES tuning split (docs/corrections.md)
SHAPE_CARRY = 0.5
#: weight of the labels walked (registered on the same visit) from a corrected slice onto
#: each of its two neighbours inside the contour (0 = off); 0.5 against 0.7 on 12 ACDC ED ->
#: ES tuning patients: +0.005 / +0.009 after 2 / 4 corrections against +0.006 / +0.007 and
#: one step lower (docs/corrections.md)
NEIGHBOUR_WALK = 0.5
#: a label walked onto a neighbour is fused only when its Dice with the neighbour's label
#: reaches this (0 = always): on one held-out ACDC patient a 76-px apical right ventricle
#: walked onto its basal neighbour (predicted 517 px, truth 471) left 52 px; chosen among
#: 0 / 0.3 / 0.5 / 0.7 on the ACDC ED -> ES tuning split (0.3: the queue's Dice +0.000 /
#: +0.001 / +0.001 after 2 / 3 / 4 corrections against 0; docs/corrections.md)
WALK_MIN_DICE = 0.3
#: Gaussian smoothing (pixels) of the shape change before it is carried
SHAPE_CARRY_SMOOTH_PX = 3.0
#: the shape change is clipped to +- this many pixels
SHAPE_CARRY_CLIP_PX = 10.0


def _plane(a: np.ndarray, axis: int, k: int) -> np.ndarray:
    return np.take(a, int(k), axis=axis)


def label_ends(pred: np.ndarray, truth: np.ndarray) -> set[int]:
    """Labels drawn on the predicted ``(H, W)`` plane that the corrected plane left out
    (none when the corrected plane is empty: an erased slice is the caller's rule)."""
    if not np.any(truth):
        return set()
    return {int(v) for v in np.unique(pred) if v} - {int(v) for v in np.unique(truth) if v}


def ended_labels(base: np.ndarray, current: np.ndarray, axis: int,
                 edited: Mapping[int, str]) -> dict[int, set[int]]:
    """``{slice: labels to remove there}``: for each corrected slice ``s`` (its labels in
    ``current`` differ from ``base``) and each label of :func:`label_ends`, the slices from
    ``s`` outward, away from the median slice of the label's extent in ``base``, up to the
    next slice of ``edited`` (or the volume's end)."""
    other = tuple(a for a in range(base.ndim) if a != axis)
    out: dict[int, set[int]] = {}
    for s in sorted(edited):
        if edited[s] != "corrected":
            continue
        for v in sorted(label_ends(_plane(base, axis, s), _plane(current, axis, s))):
            held = np.nonzero((base == v).any(axis=other))[0]
            step = 1 if s > float(np.median(held)) else -1
            k = s + step
            while 0 <= k < base.shape[axis] and k not in edited:
                out.setdefault(k, set()).add(v)
                k += step
    return out


def shape_change(predicted: np.ndarray, corrected: np.ndarray) -> dict[int, np.ndarray]:
    """Per label drawn on both ``(H, W)`` planes: the corrected minus the predicted signed
    distance, clipped to :data:`SHAPE_CARRY_CLIP_PX` and smoothed by
    :data:`SHAPE_CARRY_SMOOTH_PX` (negative where the correction grew the label)."""
    from scipy import ndimage as ndi

    out = {}
    for v in (int(x) for x in np.unique(predicted) if x):
        if (corrected == v).any():
            d = np.clip(signed_distance(corrected == v) - signed_distance(predicted == v),
                        -SHAPE_CARRY_CLIP_PX, SHAPE_CARRY_CLIP_PX)
            out[v] = ndi.gaussian_filter(d, SHAPE_CARRY_SMOOTH_PX) if SHAPE_CARRY_SMOOTH_PX else d
    return out


def _reshaped(plane: np.ndarray, distance: Callable[[int, np.ndarray], np.ndarray]) -> np.ndarray:
    """``plane``'s labels from new signed distances: ``distance(label, its signed distance on
    plane)`` per label of ``plane``; each pixel takes the label with the lowest distance
    where that is negative (no label is added)."""
    values = [int(v) for v in np.unique(plane) if v]
    if not values:
        return np.array(plane, copy=True)
    stack = np.stack([distance(v, signed_distance(plane == v)) for v in values])
    best = np.asarray(values)[np.argmin(stack, axis=0)]
    return np.where(stack.min(axis=0) < 0, best, 0).astype(plane.dtype)


def carry_shape(plane: np.ndarray, changes: list[dict[int, np.ndarray]], weight: float) -> np.ndarray:
    """``plane``'s labels reshaped by the neighbours' :func:`shape_change` maps: each label's
    signed distance plus ``weight`` times the mean of its changes; a pixel takes the label
    with the lowest distance where that is negative. Labels are neither added nor
    taken from other planes (a label absent from ``plane`` stays absent)."""
    if not changes or weight <= 0:
        return np.array(plane, copy=True)

    def moved(v: int, d: np.ndarray) -> np.ndarray:
        ch = [c[v] for c in changes if v in c]
        return d + weight * np.mean(ch, axis=0) if ch else d

    return _reshaped(plane, moved)


def fuse_walks(plane: np.ndarray, walks: list[np.ndarray], weight: float) -> np.ndarray:
    """``plane``'s labels fused with labels walked onto the same slice from corrected
    neighbours: per label of ``plane``, ``(1 - weight)`` times its signed distance plus
    ``weight`` times the mean of the walks' (those that hold the label). No label is added."""
    if not walks or weight <= 0:
        return np.array(plane, copy=True)

    def alike(w: np.ndarray, v: int) -> bool:
        a, b = w == v, plane == v
        return bool(a.any()) and 2.0 * np.count_nonzero(a & b) >= WALK_MIN_DICE * (
            np.count_nonzero(a) + np.count_nonzero(b))

    def fused(v: int, d: np.ndarray) -> np.ndarray:
        held = [signed_distance(w == v) for w in walks if alike(w, v)]
        return (1.0 - weight) * d + weight * np.mean(held, axis=0) if held else d

    return _reshaped(plane, fused)


def label_ends_rule(base: np.ndarray, current: np.ndarray, axis: int, edited: Mapping[int, str],
                    frozen: set[int] | frozenset = frozenset(), shape_carry: float = 0.0,
                    walks: Mapping[int, list[np.ndarray]] | None = None,
                    walk_weight: float = 0.0) -> tuple[np.ndarray, set[int]]:
    """The follow-up's labels with :func:`ended_labels` applied, with ``shape_carry`` > 0
    the corrected slices' :func:`shape_change` carried to their neighbours, and with
    ``walk_weight`` > 0 the ``walks`` fused in (:func:`fuse_walks`).

    Args:
        base: ``(K, J, I)`` the follow-up's labels from the first run.
        current: the labels now (edited slices hold the user's labels, kept exactly).
        axis: the array axis of the slices.
        edited: ``{slice: "corrected" | "erased" | "approved"}``, every edit so far.
        frozen: slices left as they are in ``current``.
        shape_carry: weight of :func:`carry_shape` (0 = labels' ends only).
        walks: ``{slice: [(H, W) labels walked onto it from a corrected neighbour]}``.
        walk_weight: weight of the walks in :func:`fuse_walks`.

    Returns:
        ``(labels, changed)``: a new array and the slices whose voxels differ from
        ``current``. A slice a rule reaches is rebuilt from ``base`` (minus its ended
        labels, reshaped by its corrected neighbours, fused with the walks onto it; edits
        never compound); every other slice is ``current``'s.
    """
    out = np.array(current, copy=True)
    ends = ended_labels(base, current, axis, edited)
    changes: dict[int, dict[int, np.ndarray]] = {}
    if shape_carry > 0:
        changes = {s: shape_change(_plane(base, axis, s), _plane(current, axis, s))
                   for s, kind in edited.items() if kind == "corrected"}
    walks = {k: w for k, w in (walks or {}).items() if w} if walk_weight > 0 else {}
    reached = (set(ends) | set(walks)
               | {s + d for s in changes for d in (-1, 1) if 0 <= s + d < base.shape[axis]})
    changed = set()
    for k in sorted(reached):
        if k in edited or k in frozen:
            continue
        plane = np.array(_plane(base, axis, k), copy=True)
        plane[np.isin(plane, sorted(ends.get(k, ())))] = 0
        near = [changes[s] for s in (k - 1, k + 1) if s in changes]
        if near:
            plane = carry_shape(plane, near, shape_carry)
        if k in walks:
            plane = fuse_walks(plane, walks[k], walk_weight)
        if not np.array_equal(plane, _plane(current, axis, k)):
            idx = [slice(None)] * out.ndim
            idx[axis] = k
            out[tuple(idx)] = plane
            changed.add(k)
    return out, changed


def neighbour_walks(ctx, state, tsg, proc_of_t: list[int], cache: dict) -> dict[int, list[np.ndarray]]:
    """A planning contour's follow-up: ``{target slice: [labels]}`` walked (registered on
    this visit, ``engine.walk_from``) from each corrected slice onto its two neighbours
    strictly inside the contour, in the follow-up's own grid.

    Args:
        ctx, state: the session's :class:`~oneshotsam.volume.jobs.JobContext` and the
            follow-up's :class:`~oneshotsam.volume.jobs.JobState` (anchors on the
            processing grid; ``state.engine`` as trained).
        tsg: the follow-up's slice geometry; ``proc_of_t``: processing slice of each of
            its slices.
        cache: kept by the caller between Updates: one registration call per corrected
            slice and its labels, so an Update registers only for the corrections it brings.

    Returns ``{}`` with :data:`NEIGHBOUR_WALK` 0 or an engine without ``walk_from``."""
    from oneshotsam.geometry import get_slice, set_slice
    from oneshotsam.volume.jobs import labels_in_target

    engine = state.engine
    if NEIGHBOUR_WALK <= 0 or not hasattr(engine, "walk_from"):
        return {}
    lo, hi = min(ctx.ref_labels_by_slice), max(ctx.ref_labels_by_slice)

    def predicted(n: int) -> bool:
        o = state.anchors.get(n) or state.outcomes.get(n)
        return o is not None and o.info.get("kind") == "cross-visit"

    walked: dict[int, list[np.ndarray]] = {}
    for s, o in sorted(state.anchors.items()):
        if o.info.get("kind") != "corrected" or not np.any(o.labels):
            continue
        dsts = [n for n in (s - 1, s + 1) if lo < n < hi and predicted(n)]
        key = (s, np.asarray(o.labels).tobytes(), tuple(dsts))
        if key not in cache:
            cache[key] = engine.walk_from(s, np.asarray(o.labels), dsts)
        for n, lab in cache[key].items():
            walked.setdefault(n, []).append(lab)
    out: dict[int, list[np.ndarray]] = {}
    for i in range(max((len(v) for v in walked.values()), default=0)):
        lab_proc = np.zeros(ctx.ref_lab.shape, dtype=ctx.ref_lab.dtype)
        for n, labs in walked.items():
            if i < len(labs):
                set_slice(lab_proc, ctx.sg.array_axis, n, labs[i])
        lab_t = labels_in_target(ctx, state, lab_proc)
        for t in range(tsg.n_slices):
            if i < len(walked.get(proc_of_t[t], ())):
                out.setdefault(t, []).append(np.asarray(get_slice(lab_t, tsg.array_axis, t)))
    return out


__all__ = ["SHAPE_CARRY", "SHAPE_CARRY_SMOOTH_PX", "SHAPE_CARRY_CLIP_PX", "label_ends", "ended_labels",
           "shape_change", "carry_shape", "fuse_walks", "label_ends_rule", "NEIGHBOUR_WALK",
           "neighbour_walks"]
