"""Volume pipeline: propagate a slice annotation through a volume and to follow-ups.

Public API (used by the Slicer logic, the command line and the benchmarks)::

    result = propagate(reference, reference_labels, targets=(), config=PropagationConfig(),
                       progress=no_progress, on_slice=None, method=None)

Frames: volumes are :class:`oneshotsam.types.Volume` (arrays ``[k, j, i]``,
``ijk_to_lps`` to LPS millimetres). Slicing along ``config.axis`` (axial,
coronal, sagittal) is decided by :func:`oneshotsam.geometry.slice_geometry`
of the REFERENCE volume; a follow-up target is aligned to the reference
(SimpleITK rigid/affine registration, see :mod:`oneshotsam.volume.align`),
resampled into the reference grid (so slices are paired by physical
position), segmented there, and the labels are mapped back into the target's
own grid with nearest-neighbour interpolation. Every :class:`SliceEvent` is
in the TARGET's own voxel grid.

The types live in :mod:`oneshotsam.volume.types` (re-exported here). One job per
output volume (:mod:`oneshotsam.volume.jobs`): the reference itself (no targets,
:func:`~oneshotsam.volume.jobs.within_job`) or each follow-up
(:func:`~oneshotsam.volume.jobs.followup_job`). :func:`start` validates the inputs
and builds what the jobs share; :class:`oneshotsam.volume.session.PropagationSession`
keeps it for Updates. This module imports numpy only at import time.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from oneshotsam.errors import OneShotError
from oneshotsam.methods.base import OneShotMethod
from oneshotsam.progress import ProgressFn, no_progress
from oneshotsam.types import Volume
from oneshotsam.volume.engines import SliceStack, build_engine
from oneshotsam.volume.followup import DENSE_MIN_SLICES, dense_followup
from oneshotsam.volume.gaps import plan_gaps
from oneshotsam.volume.jobs import (JobContext, JobProgress, JobState, followup_job, windowed,
                                    within_job)
from oneshotsam.volume.slices import annotated_slices, check_label_grid, resolve_reference_slices
from oneshotsam.volume.types import PropagationConfig, PropagationResult, SliceEvent, elapsed


def _window(reference: Volume, cfg: PropagationConfig) -> tuple[float, float, str]:
    from oneshotsam.intensity import compute_window, parse_window

    spec = parse_window(cfg.window if cfg.window else "auto")
    low, high = compute_window(np.asarray(reference.voxels), spec)
    return float(low), float(high), str(spec)


def _label_stats(stack: SliceStack, labels_by_slice: dict[int, np.ndarray]) -> dict[int, tuple[float, float]]:
    vals: dict[int, list[np.ndarray]] = {}
    for k, lab in labels_by_slice.items():
        plane = stack.plane(k)
        for v in np.unique(lab):
            if v:
                vals.setdefault(int(v), []).append(plane[lab == v])
    return {v: (float(np.concatenate(x).mean()), float(np.concatenate(x).std()))
            for v, x in vals.items()}


def _check_inputs(reference: Volume, reference_labels: Volume, targets: Sequence[Volume]) -> None:
    if not isinstance(reference, Volume) or not isinstance(reference_labels, Volume):
        raise OneShotError("propagate needs Volume objects (read them with oneshotsam.medio.read_volume)")
    for t in targets:
        if not isinstance(t, Volume):
            raise OneShotError("every target must be a Volume (read it with oneshotsam.medio.read_volume)")
    from oneshotsam.integrity import check_image_values

    for vol in (reference, *targets):
        check_image_values(np.asarray(vol.voxels), vol.meta.get("path") or vol.name or "a volume")


def start(reference: Volume, reference_labels: Volume, targets: Sequence[Volume],
          cfg: PropagationConfig, progress: ProgressFn, on_slice: Callable[[SliceEvent], None] | None,
          method: OneShotMethod | None) -> JobContext:
    """Validate the inputs and build what every job of a run shares (raises
    :class:`OneShotError` for bad input, before any work)."""
    from oneshotsam.geometry import get_slice, slice_geometry

    _check_inputs(reference, reference_labels, targets)
    cfg.validate()
    ref_lab = check_label_grid(reference, reference_labels)
    sg = slice_geometry(reference, cfg.axis)
    ref_slices = resolve_reference_slices(ref_lab, sg.array_axis, sg.axis, cfg.reference_slices)
    fixed = sorted(set(int(k) for k in cfg.fixed_slices) - set(ref_slices))
    for k in fixed:
        if not 0 <= k < sg.n_slices:
            raise OneShotError(f"fixed slice {k} is outside the volume (0..{sg.n_slices - 1})")
    low, high, window_desc = _window(reference, cfg)
    dense = dense_followup(ref_slices, len(targets))
    engine = build_engine(cfg, method, dense)
    ref_stack = SliceStack(windowed(reference.voxels, low, high), sg.array_axis, sg.spacing_rc_mm,
                           reference.name or "reference")
    ref_labels_by_slice = {k: np.asarray(get_slice(ref_lab, sg.array_axis, k)) for k in ref_slices}
    stats = _label_stats(ref_stack, ref_labels_by_slice) if cfg.stop_min_appearance > 0 else None
    anchors = list(ref_slices) + ([] if targets else fixed)
    steps = sum(len(g.indices) * (2 if g.lo is not None and g.hi is not None else 1)
                for g in plan_gaps(sg.n_slices, anchors))
    prog = JobProgress(progress, max(len(targets), 1) * max(steps, 1) + len(targets))
    return JobContext(cfg, reference, ref_lab, sg, ref_slices, fixed, ref_stack, ref_labels_by_slice,
                      (low, high), engine, stats, prog, on_slice, dict(reference_labels.meta), dense,
                      window_desc)


def run_jobs(ctx: JobContext, targets: Sequence[Volume]) -> tuple[list[Volume], list[dict], bool,
                                                                   list[JobState]]:
    """Run the jobs of ``ctx`` (the reference itself without targets); stops at a cancel.
    Returns (label volumes, job reports, cancelled, job states)."""
    volumes, reports, states, cancelled = [], [], [], False
    for ti, target in enumerate(targets or [None]):
        vol, rep, cancelled, state = within_job(ctx) if target is None else followup_job(ctx, ti, target)
        volumes.append(vol)
        reports.append(rep)
        states.append(state)
        if cancelled:
            break
    return volumes, reports, cancelled, states


def run_report(ctx: JobContext, job_reports: list[dict], cancelled: bool, t0: float) -> dict[str, Any]:
    """The run's report: configuration, reference, window, engine, jobs, review queue."""
    sg, reference = ctx.sg, ctx.reference
    return {
        "config": ctx.cfg.to_dict(),
        "reference": {"name": reference.name, "shape_kji": list(reference.shape_kji),
                      "spacing_mm": [round(s, 6) for s in reference.spacing_mm],
                      "axis": sg.axis, "array_axis": sg.array_axis,
                      "annotated_slices": [int(k) for k in annotated_slices(ctx.ref_lab, sg.array_axis)],
                      "reference_slices": [int(k) for k in ctx.ref_slices], "fixed_slices": ctx.fixed,
                      "label_values": sorted(int(v) for v in np.unique(ctx.ref_lab) if v)},
        "window": {"spec": ctx.window_desc, "low": ctx.window[0], "high": ctx.window[1]},
        "engine": ctx.engine.describe(),
        "targets": job_reports,
        "review_queue": list(job_reports[0]["review_queue"]) if job_reports else [],
        "cancelled": bool(cancelled),
        "seconds": elapsed(t0),
    }


def propagate(
    reference: Volume,
    reference_labels: Volume,
    targets: Sequence[Volume] = (),
    config: PropagationConfig = PropagationConfig(),
    progress: ProgressFn = no_progress,
    on_slice: Callable[[SliceEvent], None] | None = None,
    method: OneShotMethod | None = None,
) -> PropagationResult:
    """Segment the annotated structure on every slice of the reference (no
    targets) or of each follow-up target.

    Args:
        reference: the annotated volume (any dtype; windowed internally).
        reference_labels: integer labels on the SAME grid as ``reference``
            (shape and ``ijk_to_lps``); annotated on one or several slices.
        targets: follow-up volumes of the same patient (any grid/orientation).
        config: see :class:`PropagationConfig`.
        progress: ``progress(done, total, message) -> bool``; False cancels
            (the run returns what it finished, ``cancelled=True``).
        on_slice: called once per finished target slice (target's own grid).
        method: a ready 2D method (e.g. built on a tiny model); None = built
            from ``config`` through the method registry.

    Returns: the label volumes and the report; per slice ``confidence`` (its order
    ranks how likely the slice is wrong), ``flagged``, and ``review_queue`` per job
    (and of the first job at the top level). To correct and Update, use
    :class:`oneshotsam.volume.session.PropagationSession` instead.

    Raises:
        OneShotError: bad input (no annotated slice, labels on another grid,
            unknown axis...), with advice.
    """
    t0 = time.perf_counter()
    ctx = start(reference, reference_labels, targets, config, progress, on_slice, method)
    volumes, job_reports, cancelled, states = run_jobs(ctx, targets)
    return PropagationResult(volumes, run_report(ctx, job_reports, cancelled, t0), bool(cancelled),
                             (ctx, states))


__all__ = ["PropagationConfig", "SliceEvent", "PropagationResult", "propagate", "start", "run_jobs",
           "run_report", "OneShotError", "DENSE_MIN_SLICES"]
