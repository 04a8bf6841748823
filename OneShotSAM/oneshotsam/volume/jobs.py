"""One propagation job: the reference volume itself, or one follow-up target.

Frames: processing happens in the REFERENCE grid. A follow-up is resampled
into it with the alignment transform (reference LPS -> target LPS), so the
processing slice ``k`` and reference slice ``k`` lie at the same physical
position; labels go back to the target's own grid with the inverse
transform and nearest-neighbour interpolation, and events are emitted per
TARGET slice (its own ``slice_geometry``). Numpy at import time.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from oneshotsam.methods.base import OneShotError
from oneshotsam.types import Volume
from oneshotsam.volume.chain import SliceOutcome, plan_runs, walk_runs
from oneshotsam.volume.engines import SliceStack
from oneshotsam.volume.pipeline import PropagationConfig, SliceEvent, elapsed
from oneshotsam.volume.stoprule import (StopRule, contour_end_trims, decide_label, followup_review,
                                        review_flag)


def _set(arr: np.ndarray, axis: int, k: int, plane: np.ndarray) -> None:
    from oneshotsam.geometry import set_slice

    set_slice(arr, axis, k, plane)


def _cross_seed(engine, r: int, ref_labels: np.ndarray, rule: StopRule, pixel_area: float) -> SliceOutcome:
    """Seed of a follow-up at reference slice ``r`` (same physical position)."""
    res = engine.cross(r, ref_labels)
    pred = np.asarray(res.labels)
    labels = np.zeros_like(ref_labels)
    decisions = []
    for v in [int(x) for x in np.unique(ref_labels) if x]:
        m = pred == v
        conf = float(res.class_confidence.get(v, res.confidence))
        d = decide_label(rule, v, m, ref_labels == v, pixel_area, conf, v in res.absent)
        decisions.append(d)
        if d.present:
            labels[m] = v
    flagged, why = review_flag(rule, float(res.confidence), decisions)
    fit = {int(v): float(f) for v, f in res.label_fit.items()}
    info: dict[str, Any] = {"kind": "cross-visit", "reference_slice": int(r),
                            "labels": {str(d.value): {"present": d.present,
                                                      "area_mm2": round(d.area_mm2, 2),
                                                      **({"fit": round(fit[d.value], 4)}
                                                         if d.value in fit else {}),
                                                      **({"stop": d.reason} if d.reason else {})}
                                       for d in decisions}}
    if why:
        info["review"] = why
    return SliceOutcome(r, labels, float(res.confidence), flagged, "seed", None, info)


def _trim_contour_ends(outcomes: dict[int, SliceOutcome], ref_labels_by_slice: dict[int, np.ndarray],
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


def _review_followup(outcomes: dict[int, SliceOutcome], ref_labels_by_slice: dict[int, np.ndarray],
                     rule: StopRule) -> None:
    """Re-flag the cross-visit seeds of a planning contour's follow-up with
    :func:`followup_review` (slices where a label was removed keep their flag)."""
    areas, conf = {}, {}
    for k, o in outcomes.items():
        if o.info.get("kind") != "cross-visit" or k not in ref_labels_by_slice:
            continue
        if any("stop" in d for d in o.info.get("labels", {}).values()):
            continue
        ref = ref_labels_by_slice[k]
        areas[k] = {int(v): (float((o.labels == v).sum()), float((ref == v).sum()))
                    for v in np.unique(ref) if v}
        conf[k] = o.confidence
    for k, (flag, why) in followup_review(rule, conf, areas).items():
        o = outcomes[k]
        o.flagged = flag
        o.info.pop("review", None)
        if why:
            o.info["review"] = why


def _fov_slices(target: Volume, reference: Volume, transform, array_axis: int) -> list[int]:
    """Processing slices that intersect the target's field of view."""
    from oneshotsam.geometry import resample_volume

    ones = Volume(np.ones(target.shape_kji, dtype=np.uint8), target.ijk_to_lps, "fov")
    inside = np.asarray(resample_volume(ones, reference, transform, "nearest", 0).voxels)
    axes = tuple(a for a in range(3) if a != array_axis)
    return [int(k) for k in np.nonzero(inside.any(axis=axes))[0]]


def run_job(ti: int, target: Volume | None, reference: Volume, ref_lab: np.ndarray, sg,
            ref_slices: list[int], fixed: list[int], ref_stack: SliceStack,
            ref_labels_by_slice: dict[int, np.ndarray], window: tuple[float, float], engine,
            rule: StopRule, stats, cfg: PropagationConfig, prog,
            on_slice: Callable[[SliceEvent], None] | None,
            label_meta: dict | None = None,
            dense: bool = False) -> tuple[Volume, dict[str, Any], bool]:
    """Run one job; returns (label volume in the target's geometry, report, cancelled).

    ``dense``: the reference is a planning contour (:func:`run.dense_followup`);
    unless ``cfg.extend_beyond_contour``, a follow-up is then predicted on the
    contoured run of slices only (the contour says the structure ends there)."""
    from oneshotsam.geometry import resample_volume, same_grid
    from oneshotsam.volume.align import align_volumes, identity_alignment
    from oneshotsam.volume.run import outcome_summary

    t0 = time.perf_counter()
    followup = target is not None
    report: dict[str, Any] = {"index": ti, "name": (target.name if followup else reference.name)}
    n = sg.n_slices
    cancelled = False
    if followup:
        report["shape_kji"] = list(target.shape_kji)
        report["spacing_mm"] = [round(s, 6) for s in target.spacing_mm]
        if cfg.align:
            align = align_volumes(reference, target, window, cfg.registration, seed=cfg.seed)
        else:
            align = identity_alignment("disabled (--no-align): slices paired by physical position only")
        report["alignment"] = align.report
        cancelled = not prog.tick(f"{report['name']}: aligned ({align.kind})")
        if same_grid(target, reference) and align.transform is None:
            proc_vox = np.asarray(target.voxels)
            in_fov = list(range(n))
        else:
            proc_vox = np.asarray(resample_volume(target, reference, align.transform, "linear",
                                                  float(np.min(target.voxels))).voxels)
            in_fov = _fov_slices(target, reference, align.transform, sg.array_axis)
        from oneshotsam.volume.run import _windowed

        proc_stack = SliceStack(_windowed(proc_vox, *window), sg.array_axis, sg.spacing_rc_mm,
                                target.name or f"target{ti}")
        if fixed:
            report["note"] = "fixed_slices apply to the reference volume only; ignored for targets"
    else:
        align = identity_alignment("within-volume propagation")
        proc_stack, in_fov = ref_stack, list(range(n))
    outcomes: dict[int, SliceOutcome] = {}
    events_by_proc: dict[int, SliceOutcome] = {}
    pixel_area = ref_stack.pixel_area_mm2
    seeds_idx = [r for r in ref_slices if r in in_fov]
    report["skipped_outside_fov"] = [k for k in range(n) if k not in in_fov]
    if not seeds_idx:
        raise OneShotError(
            f"no annotated slice of the reference lies inside the field of view of "
            f"{report['name']!r}: check that it is the same patient/region, or disable --no-align")
    t_train = time.perf_counter()
    if not cancelled:
        cancelled = not engine.prepare(ref_stack, proc_stack, seeds_idx, ref_labels_by_slice,
                                       followup, lambda m: prog.tick(m, 0))
    report["seconds_prepare"] = elapsed(t_train)
    if not cancelled:
        for r in seeds_idx:
            if followup:
                o = _cross_seed(engine, r, ref_labels_by_slice[r], rule, pixel_area)
            else:
                o = SliceOutcome(r, np.asarray(ref_labels_by_slice[r]), 1.0, False, "seed", None,
                                 {"kind": "annotated"})
            outcomes[r] = o
            if followup and not prog.tick(f"{report['name']}: slice {r} from reference slice {r}"):
                cancelled = True
                break
        if not followup:
            from oneshotsam.geometry import get_slice

            for k in fixed:
                outcomes[k] = SliceOutcome(k, np.asarray(get_slice(ref_lab, sg.array_axis, k)), 1.0,
                                           False, "seed", None, {"kind": "fixed"})
    if not cancelled and followup and dense:
        _trim_contour_ends(outcomes, ref_labels_by_slice, cfg.contour_end_min_fit,
                           cfg.contour_end_max_slices)
        _review_followup(outcomes, ref_labels_by_slice, rule)
    contour_only = followup and dense and not cfg.extend_beyond_contour
    if not cancelled and contour_only:
        beyond = [k for k in in_fov if k not in outcomes and not min(ref_slices) <= k <= max(ref_slices)]
        report["beyond_contour"] = {
            "slices": beyond,
            "rule": "left empty: the reference contour ends before them "
                    "(extend_beyond_contour=True walks outward with the absence rule)"}
        cancelled = not prog.tick(f"{report['name']}: {len(beyond)} slices beyond the contour left empty",
                                  len(beyond))
    elif not cancelled:
        seeds = sorted(outcomes)
        lo, hi = min(in_fov), max(in_fov)
        runs = [r for r in plan_runs(n, sg.positions_mm, seeds)]
        for run in runs:
            run.indices = [k for k in run.indices if lo <= k <= hi]
        label_stats = stats
        walked, cancelled = walk_runs(
            runs, outcomes, engine.step, rule, pixel_area,
            lambda m: prog.tick(f"{report['name']}: {m}"), proc_stack.plane, label_stats,
            getattr(engine, "begin_run", None),
            (lambda o: _emit_within(o, on_slice, sg)) if (on_slice and not followup) else None)
        outcomes.update(walked)
    lab_proc = np.zeros(ref_lab.shape, dtype=ref_lab.dtype)
    for k, o in outcomes.items():
        _set(lab_proc, sg.array_axis, k, o.labels)
    meta = dict(label_meta or {})
    if followup:
        if same_grid(target, reference) and align.transform is None:
            out = lab_proc
        else:
            lv = Volume(lab_proc, reference.ijk_to_lps, "labels")
            out = np.asarray(resample_volume(lv, target, align.inverse(), "nearest", 0).voxels)
        vol = Volume(out.astype(ref_lab.dtype, copy=False), target.ijk_to_lps, target.name, meta)
        if on_slice is not None:
            _emit_target(ti, vol, target, reference, align, sg, outcomes, cfg.axis, on_slice)
    else:
        vol = Volume(lab_proc, reference.ijk_to_lps, reference.name, meta)
        if on_slice is not None:
            for k in sorted(outcomes):
                if outcomes[k].status == "seed":
                    _emit_within(outcomes[k], on_slice, sg)
    report.update(outcome_summary(outcomes))
    report["seconds"] = elapsed(t0)
    report["cancelled"] = bool(cancelled)
    return vol, report, cancelled


def _emit_within(o: SliceOutcome, on_slice, sg) -> None:
    on_slice(SliceEvent(0, sg.array_axis, int(o.index), np.asarray(o.labels), float(o.confidence),
                        bool(o.flagged), {"status": o.status, **o.info}))


def _emit_target(ti: int, vol: Volume, target: Volume, reference: Volume, align, sg,
                 outcomes: dict[int, SliceOutcome], axis: str, on_slice) -> None:
    """One event per target slice (target's own slicing) whose physical position
    maps to a finished processing slice."""
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
