"""The absence rule: where does a propagated structure end?

Propagation walks outward from an annotated slice, one slice at a time. For
each label value ``v`` still alive, the 2D method predicts ``v`` on the next
slice ``dst`` from the previous slice ``src``. The label is judged ABSENT on
``dst`` (removed there, and no longer propagated further in that direction: no
leaping over gaps) when any of these holds, using only the method's own
evidence:

1. the method itself reports ``v`` absent (``TargetResult.absent``);
2. the predicted area is below ``min_area_mm2`` (physical, so independent of
   pixel size);
3. the predicted area shrank below ``min_area_ratio`` times the area of ``v``
   on ``src`` (a structure ends smoothly: a collapse means the method found
   nothing that matches);
4. the method's class confidence is below ``min_confidence`` (SAM predicted
   IoU, retrieval score, warp similarity; 0 disables);
5. ``min_appearance`` > 0 and the mean windowed intensity inside the
   prediction is unlike the annotated structure: ``exp(-z^2 / 2)`` with
   ``z = |mean_dst - mean_ref| / std_ref`` below ``min_appearance``.

A walk outward from an annotation that is not the largest also stops where it has
passed the structure's end estimated from the two annotations' areas
(``past_end``; :func:`oneshotsam.volume.confidence.end_stop`).

A positive prompt is therefore never forced onto a slice: an empty or
collapsing prediction stops the label. Follow-ups of a planning contour have
the mirror rule, :func:`contour_end_trims`: a structure that got shorter
is trimmed from its contour's ends inward where the method's label fit says
the target shows something else. Review flags mark low confidence,
large area changes, the last slice before a stop and what the method itself
asks a reviewer to check.
Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import math

import numpy as np


@dataclass(frozen=True)
class StopRule:
    """Thresholds of the absence rule (see module docstring)."""

    min_area_ratio: float = 0.15
    min_area_mm2: float = 4.0
    min_confidence: float = 0.0
    min_appearance: float = 0.0
    review_confidence: float = 0.5
    review_area_change: float = 1.6
    #: a one-sided walk away from the largest annotation stops where it is at least this
    #: likely past the structure's end estimated from two annotations' areas
    #: (:func:`oneshotsam.volume.confidence.end_stop`); 0 disables
    past_end: float = 0.75


@dataclass
class LabelDecision:
    """Verdict for one label value on one destination slice."""

    value: int
    present: bool
    area_mm2: float
    src_area_mm2: float
    confidence: float
    appearance: float | None
    reason: str  # "" when present


def appearance_score(image: np.ndarray, mask: np.ndarray, ref_mean: float, ref_std: float) -> float:
    """``exp(-z^2/2)`` agreement of the mean intensity inside ``mask`` with the
    annotated structure's ``(ref_mean, ref_std)`` (windowed units); 0 for an
    empty mask."""
    if not mask.any():
        return 0.0
    z = abs(float(image[mask].mean()) - ref_mean) / max(ref_std, 1e-3)
    return float(np.exp(-0.5 * z * z))


def decide_label(rule: StopRule, value: int, pred_mask: np.ndarray, src_mask: np.ndarray,
                 pixel_area_mm2: float, confidence: float, method_absent: bool,
                 appearance: float | None = None) -> LabelDecision:
    """Apply the absence rule to one label on one slice.

    Args:
        pred_mask, src_mask: ``(H, W)`` bool masks of ``value`` on dst and src
            (same pixel grid; ``pixel_area_mm2`` is the area of one pixel).
        confidence: method confidence for this label in [0, 1].
        method_absent: the method itself judged the label absent.
        appearance: :func:`appearance_score` or None when not computed.
    """
    area = float(pred_mask.sum()) * pixel_area_mm2
    src_area = float(src_mask.sum()) * pixel_area_mm2
    reason = ""
    if method_absent:
        reason = "method reports the structure absent"
    elif area < rule.min_area_mm2:
        reason = f"predicted area {area:.1f} mm2 < {rule.min_area_mm2} mm2"
    elif src_area > 0 and area < rule.min_area_ratio * src_area:
        reason = (f"predicted area collapsed to {area / src_area:.2f} of the neighbouring slice "
                  f"(< {rule.min_area_ratio})")
    elif rule.min_confidence > 0 and confidence < rule.min_confidence:
        reason = f"confidence {confidence:.2f} < {rule.min_confidence}"
    elif rule.min_appearance > 0 and appearance is not None and appearance < rule.min_appearance:
        reason = f"appearance {appearance:.2f} unlike the annotated structure (< {rule.min_appearance})"
    return LabelDecision(int(value), reason == "", area, src_area, float(confidence), appearance,
                         reason)


def review_flag(rule: StopRule, confidence: float, decisions: list[LabelDecision],
                reasons: Sequence[str] = ()) -> tuple[bool, str]:
    """Should a reviewer check this slice first? Returns (flag, why).

    ``reasons``: what the method itself asks a reviewer to check
    (``TargetResult.report["review"]``, e.g. a PerSAM / P2SAM cascade whose
    step-2 mask was empty); any reason flags the slice."""
    if reasons:
        return True, "; ".join(str(r) for r in reasons)
    if confidence < rule.review_confidence:
        return True, f"confidence {confidence:.2f} < {rule.review_confidence}"
    for d in decisions:
        if not d.present:
            return True, f"label {d.value} stops here: {d.reason}"
        if d.src_area_mm2 > 0 and d.area_mm2 > 0:
            change = max(d.area_mm2 / d.src_area_mm2, d.src_area_mm2 / d.area_mm2)
            if change > rule.review_area_change:
                return True, f"label {d.value} area changed x{change:.2f} from its neighbour"
    return False, ""


def contour_end_trims(label_slices: dict[int, list[int]], present: dict[int, set[int]],
                      fits: dict[int, dict[int, float]], min_fit: float,
                      max_slices: int = 1) -> dict[int, set[int]]:
    """Where has a contoured structure shortened at the follow-up?

    For a reference contoured on every slice of a structure (a planning contour),
    each follow-up slice is predicted from the reference slice at the same
    position, so a structure that got shorter along the slice axis (a heart's
    base descending at end-systole, a shrinking tumour) is still drawn on its old
    end slices. From each end of label ``v``'s contour, walking inward, ``v`` is
    removed from a slice whose label fit (:attr:`TargetResult.label_fit`: image
    agreement inside ``v`` relative to the whole slice) is below ``min_fit``, or
    already absent there; the walk stops at the first slice that fits, at a
    slice without fit evidence, at the best-fitting slice (never removed) and
    after ``max_slices`` slices, so a label is only ever shortened from its ends
    (no holes) and by a bounded amount (small structures fit poorly everywhere;
    the measurements behind the bound are in docs/volume_propagation.md).

    Args:
        label_slices: ``{v: reference slices contoured with v}``.
        present: ``{slice: label values predicted there}``.
        fits: ``{slice: {v: fit}}``; a missing value = no evidence.
        min_fit: threshold; ``<= 0`` disables the rule.
        max_slices: at most this many slices examined from each end.

    Returns:
        ``{slice: label values to remove}`` (only slices with removals).
    """
    out: dict[int, set[int]] = {}
    if min_fit <= 0:
        return out
    for v, ks in label_slices.items():
        ks = sorted(set(int(k) for k in ks))
        scored = [k for k in ks if v in fits.get(k, {})]
        if len(ks) < 2 or not scored:
            continue
        best = max(scored, key=lambda k: fits[k][v])
        for order in (ks, ks[::-1]):
            for k in order[:max(int(max_slices), 0)]:
                if k == best:
                    break
                if v not in present.get(k, set()):
                    continue  # already absent there: keep walking inward
                f = fits.get(k, {}).get(v)
                if f is None or f >= min_fit:
                    break
                out.setdefault(k, set()).add(v)
    return out


def typical_area_change(areas: Mapping[int, Mapping[int, tuple[float, float]]]) -> dict[int, float]:
    """Per label, the median over slices of follow-up area / reference area (slices where
    both are non-zero): the volume's typical change, e.g. a heart contracting at ES.
    ``areas``: ``{slice: {v: (follow-up area, reference area)}}`` in any one unit."""
    ratios: dict[int, list[float]] = {}
    for a in areas.values():
        for v, (f, ref) in a.items():
            if f > 0 and ref > 0:
                ratios.setdefault(v, []).append(f / ref)
    return {v: float(np.median(r)) for v, r in ratios.items()}


def followup_review(rule: StopRule, confidence: dict[int, float],
                    areas: dict[int, dict[int, tuple[float, float]]]) -> dict[int, tuple[bool, str]]:
    """Review flags of a planning contour's follow-up, slice by slice.

    A follow-up is expected to differ from the reference (that is what it
    measures: a heart at end-systole, a treated tumour), so a label's area change
    on a slice (follow-up / reference at the same position) is judged against
    that label's MEDIAN change over the volume: a slice is flagged when it departs
    from it by more than ``review_area_change`` either way, or when its confidence
    is below ``review_confidence``. (Slices where a label was removed are flagged
    by the caller, with the reason.)

    Args:
        confidence: ``{slice: method confidence}``.
        areas: ``{slice: {v: (follow-up area, reference area)}}`` in any one unit.

    Returns:
        ``{slice: (flagged, why)}`` for every slice of ``areas``.
    """
    median = typical_area_change(areas)
    out: dict[int, tuple[bool, str]] = {}
    for k, a in areas.items():
        c = float(confidence.get(k, 1.0))
        if c < rule.review_confidence:
            out[k] = (True, f"confidence {c:.2f} < {rule.review_confidence}")
            continue
        why = ""
        for v in sorted(a):
            f, ref = a[v]
            if f > 0 and ref > 0 and v in median:
                rel = (f / ref) / median[v]
                if max(rel, 1.0 / rel) > rule.review_area_change:
                    why = (f"label {v} changed x{f / ref:.2f} from the reference slice; the "
                           f"volume's typical change is x{median[v]:.2f}")
                    break
        out[k] = (bool(why), why)
    return out


#: logistic model of "a follow-up slice predicted from the reference slice at its position
#: is not acceptable" (Dice < 0.90) on ``z = fit + confidence - deviation * dev + size * rel
#: - agreement * ln(1 - agree) - edge * boundary``: ``fit`` the lowest label fit on the
#: slice, ``confidence`` the method's, ``dev`` the largest ``|ln(label's area change / the
#: volume's median change)|``, ``rel`` the slice's drawn area over the largest drawn slice's
#: (small slices are harder),
#: ``agree`` the Dice between the method's labels and those carried along the optical flow
#: between the two visits' slices (``VolumeWarpConfig.cross_flow_weight``; clipped at
#: ``agree_max``, and ``agree_unknown`` where there is no flow: the tuning median),
#: ``boundary`` the largest share of a drawn label's pixels on its boundary (a label's Dice
#: falls with a one-pixel contour error as fast as that share: thin and small labels fail
#: first); fitted on the ACDC ED -> ES tuning split of the correction benchmark (34 patients,
#: 331 slices, pooled AUROC 0.890, 0.867 without the boundary; docs/corrections.md; the
#: weights of ``dev`` and ``rel`` chosen there by pooled AUROC from 0..0.5 and 0..0.3, the
#: agreement's from 0..0.5, the boundary's from 0..1 by 0.05: 0.3, picked 0.3 or 0.35 with
#: each patient left out in turn)
FOLLOWUP_RISK = {"intercept": 48.97, "z": -24.45, "deviation": 0.1, "size": 0.075,
                 "agreement": 0.05, "agree_max": 0.999, "agree_unknown": 0.88, "edge": 0.3}
#: the same model without the boundary term (its fit before the boundary was added), which
#: weighs each slice's pixels in the review queue's order and decides the flags: with the
#: boundary there, the replayed queue put thin labels first and fixed fewer pixels per
#: correction (tuning: 0.8959 against 0.8969 mean Dice after 2 corrections, first-flag
#: precision 0.94 against 0.98; docs/corrections.md)
FOLLOWUP_RISK_ORDER = {**FOLLOWUP_RISK, "intercept": 47.6, "z": -22.75, "edge": 0.0}
#: the pixels at stake on the first and on the second slice from either end of the contour are
#: multiplied by ``1 + this`` (a structure shifts along the slice axis between visits: the
#: end slices hold the most wrong pixels); chosen on the same split by the wrong pixels the
#: first two picks of the review queue hold (plateau for 1 to 2)
FOLLOWUP_END_STAKE = (1.0, 1.0)
#: a follow-up slice is flagged when its risk reaches this and its expected wrong pixels reach
#: :data:`FOLLOWUP_FLAG_SHARE` of the volume's largest; chosen on the same split among
#: (0.5, 0.8, 0.9) x (0, 0.3, 0.5): first-flag precision 0.93 with the queue 0.003 below the
#: most-wrong-first order after 2 corrections (0.8 / 0.3: precision 0.80)
FOLLOWUP_FLAG_RISK = 0.9
FOLLOWUP_FLAG_SHARE = 0.5


def followup_risk(fit: float, confidence: float, deviation: float, size: float,
                  agreement: float | None = None, boundary: float = 0.0,
                  coefficients: Mapping[str, float] | None = None) -> float:
    """Probability that a follow-up slice is not acceptable (:data:`FOLLOWUP_RISK`, or
    ``coefficients`` such as :data:`FOLLOWUP_RISK_ORDER`): ``fit`` its lowest label fit (1 =
    as well as the whole slice; 1.0 when unknown), ``confidence`` the method's,
    ``deviation``, ``size``, ``agreement`` (None: unknown) and ``boundary``
    (:func:`boundary_share`) as in :data:`FOLLOWUP_RISK`."""
    c = FOLLOWUP_RISK if coefficients is None else coefficients
    agree = min(float(c["agree_unknown"] if agreement is None else agreement), c["agree_max"])
    z = (float(fit) + float(confidence) - c["deviation"] * float(deviation) + c["size"] * float(size)
         - c["agreement"] * math.log(1.0 - agree) - c["edge"] * float(boundary))
    x = c["intercept"] + c["z"] * z
    return float(1.0 / (1.0 + math.exp(-max(min(x, 50.0), -50.0))))


def boundary_share(labels: np.ndarray) -> float:
    """The largest, over the label values drawn in ``labels`` (2D), share of the label's
    pixels that touch a pixel outside it (4-neighbourhood; the image border counts as
    outside); 0.0 when nothing is drawn. A disc of radius r pixels: about 2 / r."""
    lab = np.asarray(labels)
    best = 0.0
    for v in np.unique(lab):
        if v == 0:
            continue
        m = np.pad(lab == v, 1)
        inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
        n = int(m.sum())
        best = max(best, 1.0 - float(inner.sum()) / n)
    return best


def followup_stake(area_px: float, from_end: int) -> float:
    """Pixels at stake on a follow-up slice ``from_end`` slices from the nearer end of the
    reference contour (0 = the end slice): its drawn area times ``1 +``
    :data:`FOLLOWUP_END_STAKE` on the two slices at either end."""
    e = int(from_end)
    return float(area_px) * (1.0 + (FOLLOWUP_END_STAKE[e] if 0 <= e < len(FOLLOWUP_END_STAKE) else 0.0))


def followup_flagged(risk: float, expected_wrong_px: float, most_px: float) -> bool:
    """Flag a follow-up slice for review first: its risk reaches :data:`FOLLOWUP_FLAG_RISK`
    and its expected wrong pixels reach :data:`FOLLOWUP_FLAG_SHARE` of ``most_px`` (the
    largest of the volume's slices)."""
    return bool(risk >= FOLLOWUP_FLAG_RISK and expected_wrong_px >= FOLLOWUP_FLAG_SHARE * most_px
                and expected_wrong_px > 0)
