"""Implementation of :func:`oneshotsam.volume.pipeline.propagate` (see there).

One job per output volume (:mod:`oneshotsam.volume.jobs`): the reference itself
(no targets) or each follow-up. A job works in the REFERENCE grid (the
processing grid): a follow-up is aligned and resampled into it, seeds are
predicted across visits at the annotated slice positions
(:mod:`oneshotsam.volume.followup`), propagation runs outward from the seeds
(:mod:`oneshotsam.volume.chain`), and the labels are resampled back to the
follow-up's own grid (nearest neighbour). Numpy at import time.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from oneshotsam.errors import OneShotError
from oneshotsam.methods.base import OneShotMethod
from oneshotsam.progress import ProgressFn
from oneshotsam.types import Volume
from oneshotsam.volume.engines import SliceStack, build_engine
from oneshotsam.volume.followup import DENSE_MIN_SLICES, dense_followup
from oneshotsam.volume.jobs import JobContext, JobProgress, outcome_summary, run_job, windowed
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


def run_propagation(reference: Volume, reference_labels: Volume, targets: Sequence[Volume],
                    cfg: PropagationConfig, progress: ProgressFn,
                    on_slice: Callable[[SliceEvent], None] | None,
                    method: OneShotMethod | None) -> PropagationResult:
    """See :func:`oneshotsam.volume.pipeline.propagate`."""
    from oneshotsam.geometry import get_slice, slice_geometry

    t0 = time.perf_counter()
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
    jobs = list(targets) if targets else [None]
    n_proc = sg.n_slices - (len(ref_slices) + len(fixed) if not targets else 0)
    prog = JobProgress(progress, len(jobs) * max(n_proc, 1) + (len(targets) if targets else 0))
    ctx = JobContext(cfg, reference, ref_lab, sg, ref_slices, fixed, ref_stack, ref_labels_by_slice,
                     (low, high), engine, stats, prog, on_slice, dict(reference_labels.meta), dense)
    volumes, job_reports, cancelled = [], [], False
    for ti, target in enumerate(jobs):
        vol, rep, cancelled = run_job(ctx, ti, target)
        volumes.append(vol)
        job_reports.append(rep)
        if cancelled:
            break
    report: dict[str, Any] = {
        "config": cfg.to_dict(),
        "reference": {"name": reference.name, "shape_kji": list(reference.shape_kji),
                      "spacing_mm": [round(s, 6) for s in reference.spacing_mm],
                      "axis": sg.axis, "array_axis": sg.array_axis,
                      "annotated_slices": [int(k) for k in annotated_slices(ref_lab, sg.array_axis)],
                      "reference_slices": [int(k) for k in ref_slices], "fixed_slices": fixed,
                      "label_values": sorted(int(v) for v in np.unique(ref_lab) if v)},
        "window": {"spec": window_desc, "low": low, "high": high},
        "engine": engine.describe(),
        "targets": job_reports,
        "cancelled": bool(cancelled),
        "seconds": elapsed(t0),
    }
    return PropagationResult(volumes, report, bool(cancelled))


__all__ = ["run_propagation", "outcome_summary", "dense_followup", "DENSE_MIN_SLICES"]
