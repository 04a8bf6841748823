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

import copy
import functools
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from oneshotsam.errors import OneShotError
from oneshotsam.types import Volume
from oneshotsam.volume.chain import Run, SliceOutcome, walk_runs
from oneshotsam.volume.engines import SliceEngine, SliceStack
from oneshotsam.volume.followup import (cross_seed, emit_target_events, fov_slices, review_followup,
                                        trim_contour_ends)
from oneshotsam.volume.gaps import Gap, plan_gaps, walk_gap
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
        window_desc: the window's text (reports).
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
    window_desc: str = ""

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


def _cross_seeds(ctx: JobContext, state: "JobState") -> bool:
    """A follow-up's anchors: its slices at the annotated positions predicted across
    visits (planning contours: ends trimmed, review flags against the typical change);
    returns cancelled."""
    rule = ctx.rule
    for r in state.seeds:
        state.anchors[r] = cross_seed(state.engine, r, ctx.ref_labels_by_slice[r], rule,
                                      ctx.ref_stack.pixel_area_mm2)
        if not ctx.progress.tick(f"{state.report['name']}: slice {r} from reference slice {r}"):
            return True
    if ctx.dense:
        trim_contour_ends(state.anchors, ctx.ref_labels_by_slice, ctx.cfg.contour_end_min_fit,
                          ctx.cfg.contour_end_max_slices)
        review_followup(state.anchors, ctx.ref_labels_by_slice, rule)
    return False


@dataclass
class JobState:
    """What one job built and keeps for an Update (all in the REFERENCE grid).

    Attributes:
        index: the job's target index (0 for a within-volume run).
        target: the follow-up volume, None for the reference itself.
        align: the alignment (identity within the volume).
        proc_stack: the processed volume's windowed slices.
        in_fov: processing slices inside the target's field of view.
        seeds: processing slices with an annotated reference slice.
        engine: the slice engine as trained for this job.
        anchors: slices with known labels (annotated, approved, corrected, erased,
            cross-visit seeds); ``outcomes``: every finished slice, anchors included.
        report: the job's report.
    """

    index: int
    target: Volume | None
    align: Any
    proc_stack: SliceStack
    in_fov: list[int]
    seeds: list[int]
    engine: SliceEngine
    anchors: dict[int, SliceOutcome] = field(default_factory=dict)
    outcomes: dict[int, SliceOutcome] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def followup(self) -> bool:
        return self.target is not None


def walk_gaps(ctx: JobContext, state: JobState, gaps: list[Gap]) -> bool:
    """The shared core: predict every slice of ``gaps`` from their anchors
    (:func:`oneshotsam.volume.gaps.walk_gap`), score them
    (:class:`oneshotsam.volume.confidence.GapScorer`) into ``state.outcomes``;
    within-volume slices are emitted as they are scored. Returns cancelled."""
    from oneshotsam.volume.confidence import GapScorer, end_stop

    eng, name = state.engine, state.report["name"]

    def walk(run, anchors, emit, limit=None):
        tick = lambda m: ctx.progress.tick(f"{name}: {m}")  # noqa: E731
        short = run if limit is None else Run(run.seed, run.direction, run.indices[:limit])
        out, cancelled = walk_runs([short], anchors, eng.step, ctx.rule, ctx.ref_stack.pixel_area_mm2,
                                   tick, state.proc_stack.plane, ctx.label_stats, eng.begin_run, emit)
        for k in ([] if cancelled or limit is None else run.indices[limit:]):
            out[k] = SliceOutcome(k, np.zeros_like(anchors[run.seed].labels), 0.0, False, "stopped",
                                  run.seed, {"reason": "past the structure's end estimated from the "
                                                       "annotated slices' areas"})
            if emit is not None:
                emit(out[k])
            if not tick(f"slice {k}: past the estimated end"):
                return out, True
        return out, cancelled

    emit = None
    if ctx.on_slice is not None and not state.followup:
        def emit(o: SliceOutcome) -> None:
            emit_within(o, ctx.on_slice, ctx.sg)
    for gap in gaps:
        scorer = GapScorer(gap, state.anchors, ctx.sg.positions_mm, ctx.rule, emit)
        try:
            limit = end_stop(gap, state.anchors, ctx.sg.positions_mm, ctx.rule.past_end)
            walked, cancelled = walk_gap(gap, state.anchors, functools.partial(walk, limit=limit),
                                         ctx.sg.positions_mm, scorer)
        finally:  # a method that stops by raising: its finished slices still come out
            scorer.flush()
        state.outcomes.update(walked)
        if cancelled:
            return True
    return False


def within_job(ctx: JobContext) -> tuple[Volume, dict[str, Any], bool, JobState]:
    """Propagate through the reference volume itself from its annotated and approved
    slices; returns (label volume, report, cancelled, state)."""
    from oneshotsam.geometry import get_slice
    from oneshotsam.volume.align import identity_alignment

    t0 = time.perf_counter()
    n = ctx.sg.n_slices
    state = JobState(0, None, identity_alignment("within-volume propagation"), ctx.ref_stack,
                     list(range(n)), list(ctx.ref_slices), ctx.engine,
                     report={"index": 0, "name": ctx.reference.name, "skipped_outside_fov": []})
    cancelled = _prepare_engine(ctx, state)
    if not cancelled:
        for r in ctx.ref_slices:
            state.anchors[r] = SliceOutcome(r, np.asarray(ctx.ref_labels_by_slice[r]), 1.0, False,
                                            "seed", None, {"kind": "annotated"})
        for k in ctx.fixed:
            state.anchors[k] = SliceOutcome(k, np.asarray(get_slice(ctx.ref_lab, ctx.sg.array_axis, k)),
                                            1.0, False, "seed", None, {"kind": "fixed"})
        state.outcomes.update(state.anchors)
        cancelled = walk_gaps(ctx, state, plan_gaps(n, list(state.anchors)))
        if ctx.on_slice is not None:
            for k in sorted(state.anchors):
                emit_within(state.anchors[k], ctx.on_slice, ctx.sg)
    state.engine = copy.copy(ctx.engine)  # as trained for this job (the next job retrains)
    return (*finish_job(ctx, state, cancelled, t0), state)


def followup_job(ctx: JobContext, ti: int, target: Volume) -> tuple[Volume, dict[str, Any], bool,
                                                                     JobState]:
    """Propagate onto follow-up ``ti``: align, predict its slices at the annotated
    positions across visits, then fill the gaps between them. For a planning contour
    (``ctx.dense``) and unless ``cfg.extend_beyond_contour``, slices beyond the
    contour stay empty (the contour says the structure ends there).
    Returns (label volume in the target's grid, report, cancelled, state)."""
    t0 = time.perf_counter()
    report: dict[str, Any] = {"index": ti, "name": target.name}
    align, proc_stack, in_fov, cancelled = _prepare_followup(ctx, ti, target, report)
    seeds = [r for r in ctx.ref_slices if r in in_fov]
    report["skipped_outside_fov"] = [k for k in range(ctx.sg.n_slices) if k not in in_fov]
    if not seeds:
        raise OneShotError(
            f"no annotated slice of the reference lies inside the field of view of "
            f"{report['name']!r}: check that it is the same patient/region, or disable --no-align")
    state = JobState(ti, target, align, proc_stack, in_fov, seeds, ctx.engine, report=report)
    if not cancelled:
        cancelled = _prepare_engine(ctx, state)
    if not cancelled:
        cancelled = _cross_seeds(ctx, state)
        state.outcomes.update(state.anchors)
    if not cancelled and ctx.dense and not ctx.cfg.extend_beyond_contour:
        beyond = [k for k in in_fov if k not in state.anchors
                  and not min(ctx.ref_slices) <= k <= max(ctx.ref_slices)]
        report["beyond_contour"] = {
            "slices": beyond,
            "rule": "left empty: the reference contour ends before them "
                    "(extend_beyond_contour=True walks outward with the absence rule)"}
        cancelled = not ctx.progress.tick(
            f"{report['name']}: {len(beyond)} slices beyond the contour left empty", len(beyond))
    elif not cancelled:
        cancelled = walk_gaps(ctx, state, plan_gaps(ctx.sg.n_slices, list(state.anchors),
                                                    min(in_fov), max(in_fov)))
    state.engine = copy.copy(ctx.engine)  # as trained for this job (the next job retrains)
    return (*finish_job(ctx, state, cancelled, t0), state)


def _prepare_engine(ctx: JobContext, state: JobState) -> bool:
    """Train the engine for this job; returns cancelled."""
    t = time.perf_counter()
    ok = ctx.engine.prepare(ctx.ref_stack, state.proc_stack, state.seeds, ctx.ref_labels_by_slice,
                            state.followup, lambda m: ctx.progress.tick(m, 0))
    state.report["seconds_prepare"] = elapsed(t)
    return not ok


def job_volume(ctx: JobContext, state: JobState) -> Volume:
    """The job's label volume in the target's own geometry (the reference's without a target)."""
    from oneshotsam.geometry import set_slice

    lab_proc = np.zeros(ctx.ref_lab.shape, dtype=ctx.ref_lab.dtype)
    for k, o in state.outcomes.items():
        set_slice(lab_proc, ctx.sg.array_axis, k, o.labels)
    meta = dict(ctx.label_meta or {})
    if not state.followup:
        return Volume(lab_proc, ctx.reference.ijk_to_lps, ctx.reference.name, meta)
    out = labels_in_target(ctx, state, lab_proc)
    return Volume(out.astype(ctx.ref_lab.dtype, copy=False), state.target.ijk_to_lps,
                  state.target.name, meta)


def labels_in_target(ctx: JobContext, state: JobState, lab_proc: np.ndarray) -> np.ndarray:
    """A follow-up's labels on the processing grid (the reference's, ``(K, J, I)``) in the
    follow-up's own grid (nearest neighbour through the alignment)."""
    from oneshotsam.geometry import resample_volume, same_grid

    target, align = state.target, state.align
    if same_grid(target, ctx.reference) and align.transform is None:
        return lab_proc
    lv = Volume(lab_proc, ctx.reference.ijk_to_lps, "labels")
    return np.asarray(resample_volume(lv, target, align.inverse(), "nearest", 0).voxels)


def finish_job(ctx: JobContext, state: JobState, cancelled: bool,
               t0: float) -> tuple[Volume, dict[str, Any], bool]:
    """Label volume, report (per-slice scores, review queue) and events of a finished job."""
    from oneshotsam.volume.confidence import review_queue

    vol = job_volume(ctx, state)
    if state.followup and ctx.on_slice is not None:
        emit_target_events(state.index, vol, state.target, ctx.reference, state.align, ctx.sg,
                           state.outcomes, ctx.cfg.axis, ctx.on_slice)
    report = state.report
    report.update(outcome_summary(state.outcomes))
    report["review_queue"] = review_queue(state.outcomes)
    report["seconds"] = elapsed(t0)
    report["cancelled"] = bool(cancelled)
    return vol, report, cancelled


def emit_within(o: SliceOutcome, on_slice: Callable[[SliceEvent], None], sg) -> None:
    """The event of one finished slice of a within-volume run (reference grid = target grid)."""
    on_slice(SliceEvent(0, sg.array_axis, int(o.index), np.asarray(o.labels), float(o.confidence),
                        bool(o.flagged), {"status": o.status, **o.info}))


__all__ = ["JobContext", "JobProgress", "JobState", "within_job", "followup_job", "walk_gaps",
           "finish_job", "job_volume", "labels_in_target", "windowed", "outcome_summary", "emit_within"]
