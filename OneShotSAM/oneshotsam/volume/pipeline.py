"""Volume pipeline: propagate a slice annotation through a volume and to follow-ups.

Public API (fixed cross-team contract, used by the Slicer logic and the CLI)::

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

This module imports numpy only at import time.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from oneshotsam.methods.base import OneShotError, OneShotMethod, ProgressFn, no_progress
from oneshotsam.types import Volume


@dataclass(frozen=True)
class PropagationConfig:
    """Resolved settings of a volume propagation (all JSON-serialisable).

    Attributes:
        method: registry name of the 2D one-shot method (``"medpersam-warp"``,
            ``"medpersam"``, ``"p2sam"``, ``"persam"``).
        axis: slicing direction, ``"axial"``, ``"coronal"`` or ``"sagittal"``
            (chosen on the reference volume's direction, oblique volumes included).
        reference_slices: slice indices (along ``axis`` in the reference array)
            whose labels are the annotation; None = every slice with a non-zero label.
        align: register each follow-up target to the reference (rigid then
            affine, Mattes mutual information, multi-resolution) before pairing slices.
        window: intensity window text for :func:`oneshotsam.intensity.parse_window`
            (``"ct:lung"``, ``"percentile:0.5,99.5"``, ``"-910,590"``...); None = auto.
            Computed ONCE on the reference volume and applied identically to targets.
        preset, backend, checkpoint, device: passed to the method registry / backend factory.
        fixed_slices: target slice indices the user already approved (in the
            reference grid for within-volume runs): used as references, never rewritten.
        propagation: ``"auto"`` | ``"chain"`` (each slice from its already
            segmented neighbour) | ``"direct"`` (each slice from its physically
            nearest annotated slice) | ``"warp-volume"`` (one warping network
            trained on the whole volume, :mod:`oneshotsam.volume.warpvol`).
            ``auto`` = for ``medpersam-warp``: per-slice direct pairs (preset ``acdc-cpu``) for
            follow-ups of a reference annotated on >= 3 contiguous slices, else
            warp-volume; chain for the other methods (``volume/run.py``).
        registration: ``"rigid"`` or ``"affine"`` (affine is initialised by rigid).
        stop_min_area_ratio: a label ends on a slice whose predicted area is below
            this fraction of its area on the neighbouring (source) slice.
        stop_min_area_mm2: ... or below this physical area.
        stop_min_confidence: ... or whose method confidence is below this value.
        stop_min_appearance: ... or whose mean intensity z-score agreement with
            the annotated structure is below this (0 disables; see stoprule.py).
        review_confidence: slices with confidence below this are flagged for review.
        review_area_change: slices whose area changes by more than this factor
            relative to their source slice are flagged for review.
        extend_beyond_contour: follow-ups of a reference contoured on a contiguous
            run of >= 3 slices (a planning contour, :func:`run.dense_followup`):
            False (default) leaves the slices outside that run empty, because the
            contour says the structure ends there; True also walks outward from
            the run's ends with the absence rule (a structure that may have grown).
        contour_end_min_fit: follow-ups of a planning contour: walking inward from
            each end of a label's contour, the label is removed from slices whose
            label fit (``TargetResult.label_fit``) is below this (the structure got
            shorter; :func:`stoprule.contour_end_trims`); 0 disables. 0.85 was
            chosen on ACDC ED -> ES (docs/volume_propagation.md).
        contour_end_max_slices: ... at most this many slices per end.
        method_overrides: extra ``(key, value)`` settings for the method (or, for
            the warp-volume engine, ``VolumeWarpConfig`` fields such as ``steps``).
        seed: random seed (training-based methods).
    """

    method: str = "medpersam-warp"
    axis: str = "axial"
    reference_slices: tuple[int, ...] | None = None
    align: bool = True
    window: str | None = None
    preset: str | None = None
    backend: str | None = None
    checkpoint: str | None = None
    device: str = "auto"
    fixed_slices: tuple[int, ...] = ()
    propagation: str = "auto"
    registration: str = "affine"
    stop_min_area_ratio: float = 0.15
    stop_min_area_mm2: float = 4.0
    stop_min_confidence: float = 0.0
    stop_min_appearance: float = 0.0
    review_confidence: float = 0.5
    review_area_change: float = 1.6
    extend_beyond_contour: bool = False
    contour_end_min_fit: float = 0.85
    contour_end_max_slices: int = 1
    method_overrides: tuple[tuple[str, Any], ...] = ()
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["method_overrides"] = {k: v for k, v in self.method_overrides}
        for key in ("reference_slices", "fixed_slices"):
            if d[key] is not None:
                d[key] = [int(x) for x in d[key]]
        return d


@dataclass
class SliceEvent:
    """One finished slice of one target, in the TARGET's own voxel grid.

    Attributes:
        target_index: index into ``targets`` (0 for the reference itself when
            there are no targets).
        array_axis: axis of the target's ``[k, j, i]`` array that is sliced
            (from ``slice_geometry(target, config.axis)``).
        slice_index: slice index along ``array_axis``.
        labels: 2D integer label map, ``get_slice(target_labels, array_axis, slice_index)``.
        confidence: in ``[0, 1]`` (method evidence; 1 for annotated/fixed slices).
        flagged: True when a reviewer should check this slice first.
        info: JSON-serialisable details (source slice, areas, stop reason...).
    """

    target_index: int
    array_axis: int
    slice_index: int
    labels: np.ndarray
    confidence: float
    flagged: bool
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class PropagationResult:
    """Label volumes (one per target, or one for the reference) and the report.

    Attributes:
        label_volumes: in each target's own geometry (same shape and
            ``ijk_to_lps``), with the reference's label values; ``meta["segments"]``
            copied from the reference labels.
        report: JSON-serialisable (configuration, alignment, per-slice scores,
            processed/skipped/stopped slices, timings, cancelled flag).
        cancelled: True when the progress callback asked to stop; volumes then
            hold only the finished slices.
    """

    label_volumes: list[Volume]
    report: dict[str, Any]
    cancelled: bool = False


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

    Raises:
        OneShotError: bad input (no annotated slice, labels on another grid,
            unknown axis...), with advice.
    """
    from oneshotsam.volume.run import run_propagation

    return run_propagation(reference, reference_labels, targets, config, progress,
                           on_slice, method)


def elapsed(t0: float) -> float:
    """Seconds since ``t0`` (``time.perf_counter``), rounded for reports."""
    return round(time.perf_counter() - t0, 3)


__all__ = ["PropagationConfig", "SliceEvent", "PropagationResult", "propagate", "OneShotError"]
