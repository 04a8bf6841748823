"""Implementation of :func:`oneshotsam.volume.pipeline.propagate` (see there).

One job per output volume: the reference itself (no targets) or each
follow-up. A job works in the REFERENCE grid (the processing grid): a
follow-up is aligned and resampled into it, seeds are predicted across
visits at the annotated slice positions, propagation runs outward from the
seeds (:mod:`oneshotsam.volume.chain`), and the labels are resampled back to
the follow-up's own grid (nearest neighbour). Numpy at import time.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from oneshotsam.methods.base import OneShotError, OneShotMethod, ProgressFn
from oneshotsam.types import Volume
from oneshotsam.volume.chain import SliceOutcome, plan_runs, walk_runs
from oneshotsam.volume.engines import MethodEngine, SliceStack
from oneshotsam.volume.pipeline import PropagationConfig, PropagationResult, SliceEvent, elapsed
from oneshotsam.volume.slices import annotated_slices, check_label_grid, resolve_reference_slices
from oneshotsam.volume.stoprule import StopRule

_AXES = ("axial", "coronal", "sagittal")


def _check_config(cfg: PropagationConfig) -> None:
    if cfg.axis not in _AXES:
        raise OneShotError(f"unknown axis {cfg.axis!r}: use one of {', '.join(_AXES)}")
    if cfg.propagation not in ("auto", "chain", "direct", "warp-volume"):
        raise OneShotError(f"unknown propagation {cfg.propagation!r}: use auto, chain, direct "
                           "or warp-volume")
    if not cfg.contour_end_min_fit >= 0 or cfg.contour_end_max_slices < 0:
        raise OneShotError(
            f"contour_end_min_fit ({cfg.contour_end_min_fit}) and contour_end_max_slices "
            f"({cfg.contour_end_max_slices}) must be >= 0 (0 disables the end trimming)")
    if cfg.registration not in ("rigid", "affine"):
        raise OneShotError(f"unknown registration {cfg.registration!r}: use rigid or affine")


def stop_rule_of(cfg: PropagationConfig) -> StopRule:
    return StopRule(cfg.stop_min_area_ratio, cfg.stop_min_area_mm2, cfg.stop_min_confidence,
                    cfg.stop_min_appearance, cfg.review_confidence, cfg.review_area_change)


def _window(reference: Volume, cfg: PropagationConfig) -> tuple[float, float, str]:
    from oneshotsam.intensity import compute_window, parse_window

    spec = parse_window(cfg.window if cfg.window else "auto")
    low, high = compute_window(np.asarray(reference.voxels), spec)
    return float(low), float(high), str(spec)


def _windowed(vol_voxels: np.ndarray, low: float, high: float) -> np.ndarray:
    from oneshotsam.intensity import apply_window

    return np.asarray(apply_window(np.asarray(vol_voxels), low, high), dtype=np.float32)


#: ``propagation="auto"`` with ``medpersam-warp`` on follow-ups of a reference contoured
#: on at least this many contiguous slices (a planning contour) registers each slice
#: pair across visits with the 2D method (one call per slice, ``direct`` mode) instead
#: of training one network per volume: ACDC ED (all slices) -> ES, measured in
#: docs/volume_propagation.md (engineer I).
DENSE_MIN_SLICES = 3
#: preset of that per-slice follow-up registration when none is given (measured on
#: ACDC ED -> ES pairs, docs/medpersam_cpu_preset.md).
DENSE_FOLLOWUP_PRESET = "acdc-cpu"


def dense_followup(ref_slices: Sequence[int], n_targets: int) -> bool:
    """True for follow-up targets of a reference annotated on a contiguous run of at
    least :data:`DENSE_MIN_SLICES` slices (every target slice then has an annotated
    reference slice at the same physical position after alignment)."""
    s = sorted(set(int(k) for k in ref_slices))
    return n_targets > 0 and len(s) >= DENSE_MIN_SLICES and s[-1] - s[0] + 1 == len(s)


def _engine(cfg: PropagationConfig, method: OneShotMethod | None, dense: bool = False):
    """(engine, method) for the configuration; builds the method when not injected.

    ``auto``: ``medpersam-warp`` -> per-slice cross-visit registration (``direct``)
    when ``dense`` (see :func:`dense_followup`), else the warp-volume engine; other
    methods -> ``chain``."""
    mode = cfg.propagation
    name = getattr(method, "name", cfg.method) if method is not None else cfg.method
    if mode == "auto" and name == "medpersam-warp" and dense:
        if method is None:
            from oneshotsam.methods.registry import build_method

            method = build_method(cfg.method, backend_name=cfg.backend, checkpoint=cfg.checkpoint,
                                  preset=cfg.preset or DENSE_FOLLOWUP_PRESET, device=cfg.device,
                                  **dict(cfg.method_overrides))
        return MethodEngine(method, "direct")
    if mode == "warp-volume" or (mode == "auto" and name == "medpersam-warp"):
        from oneshotsam.volume.warpvol import WarpVolumeEngine

        return WarpVolumeEngine.from_config(cfg, method)
    if method is None:
        from oneshotsam.methods.registry import build_method

        method = build_method(cfg.method, backend_name=cfg.backend, checkpoint=cfg.checkpoint,
                              preset=cfg.preset, device=cfg.device,
                              **dict(cfg.method_overrides))
    return MethodEngine(method, "chain" if mode == "auto" else mode)


def _label_stats(stack: SliceStack, labels_by_slice: dict[int, np.ndarray]) -> dict[int, tuple[float, float]]:
    vals: dict[int, list[np.ndarray]] = {}
    for k, lab in labels_by_slice.items():
        plane = stack.plane(k)
        for v in np.unique(lab):
            if v:
                vals.setdefault(int(v), []).append(plane[lab == v])
    return {v: (float(np.concatenate(x).mean()), float(np.concatenate(x).std()))
            for v, x in vals.items()}


class _Progress:
    def __init__(self, progress: ProgressFn, total: int) -> None:
        self.progress, self.total, self.done = progress, max(int(total), 1), 0

    def tick(self, message: str, n: int = 1) -> bool:
        self.done = min(self.done + n, self.total)
        return bool(self.progress(self.done, self.total, message))


def run_propagation(reference: Volume, reference_labels: Volume, targets: Sequence[Volume],
                    cfg: PropagationConfig, progress: ProgressFn,
                    on_slice: Callable[[SliceEvent], None] | None,
                    method: OneShotMethod | None) -> PropagationResult:
    from oneshotsam.geometry import slice_geometry

    t0 = time.perf_counter()
    if not isinstance(reference, Volume) or not isinstance(reference_labels, Volume):
        raise OneShotError("propagate needs Volume objects (read them with oneshotsam.medio.read_volume)")
    for t in targets:
        if not isinstance(t, Volume):
            raise OneShotError("every target must be a Volume (read it with oneshotsam.medio.read_volume)")
    _check_config(cfg)
    ref_lab = check_label_grid(reference, reference_labels)
    sg = slice_geometry(reference, cfg.axis)
    ref_slices = resolve_reference_slices(ref_lab, sg.array_axis, sg.axis, cfg.reference_slices)
    fixed = sorted(set(int(k) for k in cfg.fixed_slices) - set(ref_slices))
    for k in fixed:
        if not 0 <= k < sg.n_slices:
            raise OneShotError(f"fixed slice {k} is outside the volume (0..{sg.n_slices - 1})")
    low, high, window_desc = _window(reference, cfg)
    dense = dense_followup(ref_slices, len(targets))
    engine = _engine(cfg, method, dense)
    rule = stop_rule_of(cfg)
    ref_stack = SliceStack(_windowed(reference.voxels, low, high), sg.array_axis, sg.spacing_rc_mm,
                           reference.name or "reference")
    ref_labels_by_slice = {k: np.asarray(_get(ref_lab, sg.array_axis, k)) for k in ref_slices}
    stats = _label_stats(ref_stack, ref_labels_by_slice) if rule.min_appearance > 0 else None
    jobs = list(targets) if targets else [None]
    n_proc = sg.n_slices - (len(ref_slices) + len(fixed) if not targets else 0)
    prog = _Progress(progress, len(jobs) * max(n_proc, 1) + (len(targets) if targets else 0))
    from oneshotsam.volume.jobs import run_job

    volumes, job_reports, cancelled = [], [], False
    for ti, target in enumerate(jobs):
        vol, rep, cancelled = run_job(
            ti, target, reference, ref_lab, sg, ref_slices, fixed, ref_stack, ref_labels_by_slice,
            (low, high), engine, rule, stats, cfg, prog, on_slice,
            dict(reference_labels.meta), dense)
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


def _get(arr: np.ndarray, axis: int, k: int) -> np.ndarray:
    from oneshotsam.geometry import get_slice

    return get_slice(arr, axis, k)


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


__all__ = ["run_propagation", "stop_rule_of", "outcome_summary", "plan_runs", "walk_runs",
           "dense_followup", "DENSE_MIN_SLICES", "DENSE_FOLLOWUP_PRESET"]
