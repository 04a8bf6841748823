"""Follow-up visits: how slices of a follow-up are paired with the reference.

Every cross-visit rule lives here:

* :func:`dense_followup`: is the reference a planning contour (annotated on a
  contiguous run of at least :data:`DENSE_MIN_SLICES` slices)? Then each
  follow-up slice is predicted from the reference slice at the same physical
  position (``direct`` pairs) and the contour's extent bounds the result;
* :func:`cross_seed`: the follow-up's slice at a reference slice's position
  (after alignment both lie at processing index ``r``), with the absence rule;
* :func:`trim_contour_ends` / :func:`review_followup`: a structure that got
  shorter is trimmed from its contour's ends; review flags compare each slice
  with the volume's typical change;
* :func:`fov_slices`: processing slices inside the follow-up's field of view;
* :func:`emit_target_events`: one :class:`SliceEvent` per TARGET slice (the
  target's own slicing) mapped to the processing slice at its position.

Frames: the processing grid is the REFERENCE grid; a follow-up is resampled into
it with the alignment transform (reference LPS -> target LPS). Numpy at import time.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from oneshotsam.types import Volume
from oneshotsam.volume.chain import SliceOutcome
from oneshotsam.volume.stoprule import (FOLLOWUP_RISK_ORDER, StopRule, boundary_share,
                                        contour_end_trims, decide_label, followup_review,
                                        followup_flagged, followup_risk, followup_stake,
                                        review_flag, typical_area_change)
from oneshotsam.volume.types import SliceEvent

#: ``propagation="auto"`` with ``medpersam-warp`` on follow-ups of a reference contoured
#: on at least this many contiguous slices (a planning contour) registers each slice
#: pair across visits with the 2D method (one call per slice, ``direct`` mode) instead
#: of training one network per volume (measured in docs/volume_propagation.md).
DENSE_MIN_SLICES = 3


def dense_followup(ref_slices: Sequence[int], n_targets: int) -> bool:
    """True for follow-up targets of a reference annotated on a contiguous run of at
    least :data:`DENSE_MIN_SLICES` slices (every target slice then has an annotated
    reference slice at the same physical position after alignment)."""
    s = sorted(set(int(k) for k in ref_slices))
    return n_targets > 0 and len(s) >= DENSE_MIN_SLICES and s[-1] - s[0] + 1 == len(s)


def cross_seed(engine, r: int, ref_labels: np.ndarray, rule: StopRule,
               pixel_area_mm2: float) -> SliceOutcome:
    """Seed of a follow-up at reference slice ``r`` (same physical position).

    ``ref_labels`` is the ``(H, W)`` annotation of reference slice ``r``;
    ``engine.cross`` predicts the follow-up's processing slice ``r`` from it."""
    res = engine.cross(r, ref_labels)
    pred = np.asarray(res.labels)
    labels = np.zeros_like(ref_labels)
    decisions = []
    for v in [int(x) for x in np.unique(ref_labels) if x]:
        m = pred == v
        conf = float(res.class_confidence.get(v, res.confidence))
        d = decide_label(rule, v, m, ref_labels == v, pixel_area_mm2, conf, v in res.absent)
        decisions.append(d)
        if d.present:
            labels[m] = v
    flagged, why = review_flag(rule, float(res.confidence), decisions,
                               res.report.get("review", ()))
    fit = {int(v): float(f) for v, f in res.label_fit.items()}
    info: dict[str, Any] = {"kind": "cross-visit", "reference_slice": int(r),
                            "labels": {str(d.value): {"present": d.present,
                                                      "area_mm2": round(d.area_mm2, 2),
                                                      **({"fit": round(fit[d.value], 4)}
                                                         if d.value in fit else {}),
                                                      **({"stop": d.reason} if d.reason else {})}
                                       for d in decisions}}
    if "appearance_kept" in res.report:  # the appearance refinement's share of each label kept
        info["appearance_kept"] = {str(v): f for v, f in res.report["appearance_kept"].items()}
    if "flow_agreement" in res.report:  # the method's and the optical flow's labels agree
        info["flow_agreement"] = float(res.report["flow_agreement"])
    if why:
        info["review"] = why
    return SliceOutcome(r, labels, float(res.confidence), flagged, "seed", None, info)


def trim_contour_ends(outcomes: dict[int, SliceOutcome], ref_labels_by_slice: dict[int, np.ndarray],
                      min_fit: float, max_slices: int) -> None:
    """Apply :func:`contour_end_trims` to the cross-visit seeds (in place; trimmed
    slices are flagged for review with the reason)."""
    label_slices: dict[int, list[int]] = {}
    for k, lab in ref_labels_by_slice.items():
        for v in np.unique(lab):
            if v:
                label_slices.setdefault(int(v), []).append(int(k))
    present = {k: {int(v) for v in np.unique(o.labels) if v} for k, o in outcomes.items()}
    fits = {k: {int(v): float(d["fit"]) for v, d in o.info.get("labels", {}).items() if "fit" in d}
            for k, o in outcomes.items()}
    for k, values in contour_end_trims(label_slices, present, fits, min_fit, max_slices).items():
        o = outcomes[k]
        for v in sorted(values):
            o.labels = np.where(o.labels == v, 0, o.labels).astype(o.labels.dtype)
            d = o.info["labels"][str(v)]
            d["present"] = False
            d["stop"] = (f"label fit {fits[k][v]:.2f} < {min_fit} at the contour's end: the "
                         "structure got shorter along the slice axis")
        o.flagged = True
        o.info["review"] = f"label(s) {sorted(values)} trimmed at the contour's end"


def review_followup(outcomes: dict[int, SliceOutcome], ref_labels_by_slice: dict[int, np.ndarray],
                    rule: StopRule) -> None:
    """Score the cross-visit seeds of a planning contour's follow-up: ``confidence`` =
    1 - :func:`followup_risk`, ``info["evidence"]`` with the ``expected_wrong_px`` the
    review queue ranks by (the risk under :data:`FOLLOWUP_RISK_ORDER`, ``risk_order``,
    times :func:`followup_stake`), ``flagged`` by :func:`followup_flagged` on that risk;
    a flagged slice's ``info["review"]`` says why (with
    :func:`followup_review`'s area reason or the contour-end trim, when there is one)."""
    areas, conf, scored = {}, {}, {}
    for k, o in outcomes.items():
        if o.info.get("kind") != "cross-visit" or k not in ref_labels_by_slice:
            continue
        ref = ref_labels_by_slice[k]
        a = {int(v): (float((o.labels == v).sum()), float((ref == v).sum())) for v in np.unique(ref) if v}
        o.info.setdefault("method_confidence", round(float(o.confidence), 4))
        scored[k] = a
        if not any("stop" in d for d in o.info.get("labels", {}).values()):
            areas[k], conf[k] = a, float(o.info["method_confidence"])
    for k, (flag, why) in followup_review(rule, conf, areas).items():
        o = outcomes[k]
        o.info.pop("review", None)
        if why:
            o.info["review"] = why
    _score_followup(outcomes, scored, sorted(ref_labels_by_slice))


def _score_followup(outcomes: dict[int, SliceOutcome], areas: dict[int, dict[int, tuple[float, float]]],
                    ref_slices: list[int]) -> None:
    """Confidence and evidence of the scored cross-visit seeds (:func:`review_followup`)."""
    median = typical_area_change(areas)
    largest = max([float(np.count_nonzero(outcomes[k].labels)) for k in areas] + [1.0])
    for k, a in areas.items():
        o = outcomes[k]
        drawn = float(np.count_nonzero(o.labels))
        dev = max([abs(math.log(f / ref / median[v])) for v, (f, ref) in a.items()
                   if f > 0 and ref > 0 and median.get(v, 0) > 0] or [0.0])
        fits = [float(d["fit"]) for d in o.info.get("labels", {}).values()
                if d.get("present") and "fit" in d]
        fit = min(fits) if fits else 1.0
        agree = o.info.get("flow_agreement")
        edge = boundary_share(o.labels)
        args = (fit, float(o.info["method_confidence"]), dev, drawn / largest, agree, edge)
        risk, order = followup_risk(*args), followup_risk(*args, coefficients=FOLLOWUP_RISK_ORDER)
        from_end = min(k - ref_slices[0], ref_slices[-1] - k)
        stake = followup_stake(drawn, from_end)
        o.info["evidence"] = {"fit": round(fit, 4), "similarity": o.info["method_confidence"],
                              "deviation": round(dev, 4), "size": round(drawn / largest, 4),
                              **({"flow_agreement": agree} if agree is not None else {}),
                              "from_end": int(from_end), "boundary": round(edge, 4),
                              "risk_order": round(order, 4),
                              "expected_wrong_px": round(order * stake, 2)}
        o.confidence = float(1.0 - risk)
    most = max([o.info["evidence"]["expected_wrong_px"] for k, o in outcomes.items() if k in areas]
               or [0.0])
    for k in areas:
        o = outcomes[k]
        ev = o.info["evidence"]
        o.flagged = followup_flagged(ev["risk_order"], ev["expected_wrong_px"], most)
        why = o.info.pop("review", "")
        if o.flagged:
            o.info["review"] = "; ".join(x for x in (f"likely wrong (confidence {o.confidence:.2f})",
                                                     why) if x)


def fov_slices(target: Volume, reference: Volume, transform, array_axis: int) -> list[int]:
    """Processing slices (along ``array_axis`` of the reference grid) that intersect
    the target's field of view; ``transform`` maps reference LPS -> target LPS."""
    from oneshotsam.geometry import resample_volume

    ones = Volume(np.ones(target.shape_kji, dtype=np.uint8), target.ijk_to_lps, "fov")
    inside = np.asarray(resample_volume(ones, reference, transform, "nearest", 0).voxels)
    axes = tuple(a for a in range(3) if a != array_axis)
    return [int(k) for k in np.nonzero(inside.any(axis=axes))[0]]


def emit_target_events(ti: int, vol: Volume, target: Volume, reference: Volume, align, sg,
                       outcomes: dict[int, SliceOutcome], axis: str,
                       on_slice: Callable[[SliceEvent], None]) -> None:
    """One event per target slice (target's own slicing along ``axis``) whose
    physical position maps to a finished processing slice; ``vol`` is the
    target's label volume in its own grid, ``sg`` the reference's slice geometry."""
    from oneshotsam.geometry import get_slice, ijk_to_lps_points, lps_to_ijk_points, slice_geometry

    tsg = slice_geometry(target, axis)
    shape_ijk = np.array(target.shape_kji[::-1], dtype=np.float64)
    c = 2 - tsg.array_axis
    centres = np.tile((shape_ijk - 1) / 2.0, (tsg.n_slices, 1))
    centres[:, c] = np.arange(tsg.n_slices)
    ref_pts = align.target_to_reference_points(ijk_to_lps_points(target, centres))
    ref_k = lps_to_ijk_points(reference, ref_pts)[:, 2 - sg.array_axis]
    for s in range(tsg.n_slices):
        k = int(np.clip(np.rint(ref_k[s]), 0, sg.n_slices - 1))
        o = outcomes.get(k)
        if o is None:
            continue
        on_slice(SliceEvent(ti, tsg.array_axis, s, np.asarray(get_slice(vol.voxels, tsg.array_axis, s)),
                            float(o.confidence), bool(o.flagged),
                            {"status": o.status, "processing_slice": k}))


__all__ = ["DENSE_MIN_SLICES", "dense_followup", "cross_seed",
           "trim_contour_ends", "review_followup", "fov_slices", "emit_target_events"]
