"""One propagation job: the reference volume itself, or one follow-up target.

Frames: processing happens in the REFERENCE grid. A follow-up is resampled
into it with the alignment transform (reference LPS -> target LPS), so the
processing slice ``k`` and reference slice ``k`` lie at the same physical
position; labels go back to the target's own grid with the inverse
transform and nearest-neighbour interpolation, and events are emitted per
TARGET slice (its own ``slice_geometry``; :mod:`oneshotsam.volume.followup`).
Everything the jobs of one run share is one :class:`JobContext`.
Numpy at import time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from oneshotsam.errors import OneShotError
from oneshotsam.types import Volume
from oneshotsam.volume.chain import SliceOutcome, plan_runs, walk_runs
from oneshotsam.volume.engines import SliceEngine, SliceStack
from oneshotsam.volume.followup import (cross_seed, emit_target_events, fov_slices, review_followup,
                                        trim_contour_ends)
from oneshotsam.volume.stoprule import StopRule
from oneshotsam.volume.types import PropagationConfig, SliceEvent, elapsed


class JobProgress:
    """Counts finished work units of a whole run and forwards them to a
    ``progress(done, total, message) -> bool`` callback (False cancels)."""

    def __init__(self, progress: Callable[[int, int, str], bool], total: int) -> None:
        self.progress, self.total, self.done = progress, max(int(total), 1), 0

    def tick(self, message: str, n: int = 1) -> bool:
        self.done = min(self.done + n, self.total)
        return bool(self.progress(self.done, self.total, message))


@dataclass
class JobContext:
    """What every job of one propagation run shares (all in the REFERENCE grid).

    Attributes:
        cfg: the run's configuration.
        reference: the reference volume; ``ref_lab`` its validated ``(K, J, I)`` labels.
        sg: ``slice_geometry(reference, cfg.axis)``.
        ref_slices: annotated slices used as references; ``fixed``: approved
            slices (within-volume runs only), both ascending indices along ``sg.array_axis``.
        ref_stack: the reference's windowed slices; ``ref_labels_by_slice``: the
            ``(H, W)`` labels of each reference slice.
        window: ``(low, high)`` intensity window shared by every volume.
        engine: the slice engine (:class:`oneshotsam.volume.engines.SliceEngine`).
        label_stats: per label value ``(mean, std)`` of windowed intensity inside
            the annotation (appearance test), None when disabled.
        progress: the run's :class:`JobProgress`.
        on_slice: called per finished target slice, or None.
        label_meta: ``meta`` of the reference labels (segment names, colours).
        dense: the reference is a planning contour (:func:`followup.dense_followup`).
    """

    cfg: PropagationConfig
    reference: Volume
    ref_lab: np.ndarray
    sg: Any
    ref_slices: list[int]
    fixed: list[int]
    ref_stack: SliceStack
    ref_labels_by_slice: dict[int, np.ndarray]
    window: tuple[float, float]
    engine: SliceEngine
    label_stats: dict[int, tuple[float, float]] | None
    progress: JobProgress
    on_slice: Callable[[SliceEvent], None] | None = None
    label_meta: dict | None = None
    dense: bool = False

    @property
    def rule(self) -> StopRule:
        return self.cfg.stop_rule()


def windowed(vol_voxels: np.ndarray, low: float, high: float) -> np.ndarray:
    """``(K, J, I)`` float32 in [0, 1]: ``vol_voxels`` through the window ``[low, high]``."""
    from oneshotsam.intensity import apply_window

    return np.asarray(apply_window(np.asarray(vol_voxels), low, high), dtype=np.float32)


def outcome_summary(outcomes: dict[int, SliceOutcome]) -> dict[str, Any]:
    """JSON lists of processed / stopped slices and per-slice scores."""
    per = []
    for k in sorted(outcomes):
        o = outcomes[k]
        per.append({"slice": int(k), "status": o.status, "confidence": round(float(o.confidence), 4),
                    "flagged": bool(o.flagged), **o.info})
    return {
        "slices_seed": [int(k) for k in sorted(outcomes) if outcomes[k].status == "seed"],
        "slices_predicted": [int(k) for k in sorted(outcomes) if outcomes[k].status == "predicted"],
        "slices_stopped": [int(k) for k in sorted(outcomes) if outcomes[k].status == "stopped"],
        "slices_flagged": [int(k) for k in sorted(outcomes) if outcomes[k].flagged],
        "per_slice": per,
    }


def _prepare_followup(ctx: JobContext, ti: int, target: Volume, report: dict[str, Any]):
    """Align ``target``, resample it into the processing grid; returns
    ``(alignment, processing stack, in-FOV slices, cancelled)``."""
    from oneshotsam.geometry import resample_volume, same_grid
    from oneshotsam.volume.align import align_volumes, identity_alignment

    cfg, reference, sg = ctx.cfg, ctx.reference, ctx.sg
    report["shape_kji"] = list(target.shape_kji)
    report["spacing_mm"] = [round(s, 6) for s in target.spacing_mm]
    if cfg.align:
        align = align_volumes(reference, target, ctx.window, cfg.registration, seed=cfg.seed)
    else:
        align = identity_alignment("disabled (--no-align): slices paired by physical position only")
    report["alignment"] = align.report
    cancelled = not ctx.progress.tick(f"{report['name']}: aligned ({align.kind})")
    if same_grid(target, reference) and align.transform is None:
        proc_vox = np.asarray(target.voxels)
        in_fov = list(range(sg.n_slices))
    else:
        proc_vox = np.asarray(resample_volume(target, reference, align.transform, "linear",
                                              float(np.min(target.voxels))).voxels)
        in_fov = fov_slices(target, reference, align.transform, sg.array_axis)
    proc_stack = SliceStack(windowed(proc_vox, *ctx.window), sg.array_axis, sg.spacing_rc_mm,
                            target.name or f"target{ti}")
    if ctx.fixed:
        report["note"] = "fixed_slices apply to the reference volume only; ignored for targets"
    return align, proc_stack, in_fov, cancelled


def _seed_outcomes(ctx: JobContext, followup: bool, seeds_idx: list[int],
                   report: dict[str, Any]) -> tuple[dict[int, SliceOutcome], bool]:
    """Seeds of the job: cross-visit predictions (follow-up) or the annotated and
    fixed slices (within-volume); returns ``(outcomes, cancelled)``."""
    from oneshotsam.geometry import get_slice

    outcomes: dict[int, SliceOutcome] = {}
    rule = ctx.rule
    for r in seeds_idx:
        if followup:
            o = cross_seed(ctx.engine, r, ctx.ref_labels_by_slice[r], rule,
                           ctx.ref_stack.pixel_area_mm2)
        else:
            o = SliceOutcome(r, np.asarray(ctx.ref_labels_by_slice[r]), 1.0, False, "seed", None,
                             {"kind": "annotated"})
        outcomes[r] = o
        if followup and not ctx.progress.tick(f"{report['name']}: slice {r} from reference slice {r}"):
            return outcomes, True
    if not followup:
        for k in ctx.fixed:
            outcomes[k] = SliceOutcome(k, np.asarray(get_slice(ctx.ref_lab, ctx.sg.array_axis, k)),
                                       1.0, False, "seed", None, {"kind": "fixed"})
    return outcomes, False


def _walk(ctx: JobContext, outcomes: dict[int, SliceOutcome], proc_stack: SliceStack,
          in_fov: list[int], followup: bool, report: dict[str, Any]) -> bool:
    """Propagate outward from the seeds (in place); returns cancelled."""
    sg = ctx.sg
    lo, hi = min(in_fov), max(in_fov)
    runs = plan_runs(sg.n_slices, sg.positions_mm, sorted(outcomes))
    for run in runs:
        run.indices = [k for k in run.indices if lo <= k <= hi]
    emit = None
    if ctx.on_slice is not None and not followup:
        def emit(o: SliceOutcome) -> None:
            emit_within(o, ctx.on_slice, sg)
    walked, cancelled = walk_runs(
        runs, outcomes, ctx.engine.step, ctx.rule, ctx.ref_stack.pixel_area_mm2,
        lambda m: ctx.progress.tick(f"{report['name']}: {m}"), proc_stack.plane, ctx.label_stats,
        ctx.engine.begin_run, emit)
    outcomes.update(walked)
    return cancelled


def run_job(ctx: JobContext, ti: int, target: Volume | None) -> tuple[Volume, dict[str, Any], bool]:
    """Run job ``ti`` (``target`` None = the reference volume itself); returns
    (label volume in the target's geometry, report, cancelled).

    For a planning contour (``ctx.dense``) and unless ``cfg.extend_beyond_contour``,
    a follow-up is predicted on the contoured run of slices only (the contour
    says the structure ends there)."""
    from oneshotsam.geometry import resample_volume, same_grid
    from oneshotsam.volume.align import identity_alignment

    t0 = time.perf_counter()
    cfg, reference, sg = ctx.cfg, ctx.reference, ctx.sg
    followup = target is not None
    report: dict[str, Any] = {"index": ti, "name": (target.name if followup else reference.name)}
    n = sg.n_slices
    cancelled = False
    if followup:
        align, proc_stack, in_fov, cancelled = _prepare_followup(ctx, ti, target, report)
    else:
        align = identity_alignment("within-volume propagation")
        proc_stack, in_fov = ctx.ref_stack, list(range(n))
    seeds_idx = [r for r in ctx.ref_slices if r in in_fov]
    report["skipped_outside_fov"] = [k for k in range(n) if k not in in_fov]
    if not seeds_idx:
        raise OneShotError(
            f"no annotated slice of the reference lies inside the field of view of "
            f"{report['name']!r}: check that it is the same patient/region, or disable --no-align")
    t_train = time.perf_counter()
    if not cancelled:
        cancelled = not ctx.engine.prepare(ctx.ref_stack, proc_stack, seeds_idx,
                                           ctx.ref_labels_by_slice, followup,
                                           lambda m: ctx.progress.tick(m, 0))
    report["seconds_prepare"] = elapsed(t_train)
    outcomes: dict[int, SliceOutcome] = {}
    if not cancelled:
        outcomes, cancelled = _seed_outcomes(ctx, followup, seeds_idx, report)
    if not cancelled and followup and ctx.dense:
        trim_contour_ends(outcomes, ctx.ref_labels_by_slice, cfg.contour_end_min_fit,
                          cfg.contour_end_max_slices)
        review_followup(outcomes, ctx.ref_labels_by_slice, ctx.rule)
    contour_only = followup and ctx.dense and not cfg.extend_beyond_contour
    if not cancelled and contour_only:
        beyond = [k for k in in_fov if k not in outcomes
                  and not min(ctx.ref_slices) <= k <= max(ctx.ref_slices)]
        report["beyond_contour"] = {
            "slices": beyond,
            "rule": "left empty: the reference contour ends before them "
                    "(extend_beyond_contour=True walks outward with the absence rule)"}
        cancelled = not ctx.progress.tick(
            f"{report['name']}: {len(beyond)} slices beyond the contour left empty", len(beyond))
    elif not cancelled:
        cancelled = _walk(ctx, outcomes, proc_stack, in_fov, followup, report)
    lab_proc = np.zeros(ctx.ref_lab.shape, dtype=ctx.ref_lab.dtype)
    from oneshotsam.geometry import set_slice

    for k, o in outcomes.items():
        set_slice(lab_proc, sg.array_axis, k, o.labels)
    meta = dict(ctx.label_meta or {})
    if followup:
        if same_grid(target, reference) and align.transform is None:
            out = lab_proc
        else:
            lv = Volume(lab_proc, reference.ijk_to_lps, "labels")
            out = np.asarray(resample_volume(lv, target, align.inverse(), "nearest", 0).voxels)
        vol = Volume(out.astype(ctx.ref_lab.dtype, copy=False), target.ijk_to_lps, target.name, meta)
        if ctx.on_slice is not None:
            emit_target_events(ti, vol, target, reference, align, sg, outcomes, cfg.axis,
                               ctx.on_slice)
    else:
        vol = Volume(lab_proc, reference.ijk_to_lps, reference.name, meta)
        if ctx.on_slice is not None:
            for k in sorted(outcomes):
                if outcomes[k].status == "seed":
                    emit_within(outcomes[k], ctx.on_slice, sg)
    report.update(outcome_summary(outcomes))
    report["seconds"] = elapsed(t0)
    report["cancelled"] = bool(cancelled)
    return vol, report, cancelled


def emit_within(o: SliceOutcome, on_slice: Callable[[SliceEvent], None], sg) -> None:
    """The event of one finished slice of a within-volume run (reference grid = target grid)."""
    on_slice(SliceEvent(0, sg.array_axis, int(o.index), np.asarray(o.labels), float(o.confidence),
                        bool(o.flagged), {"status": o.status, **o.info}))


__all__ = ["JobContext", "JobProgress", "run_job", "windowed", "outcome_summary", "emit_within"]
