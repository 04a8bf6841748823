"""Data types of volume propagation: the configuration, per-slice events and the result.

Frames: volumes are :class:`oneshotsam.types.Volume` (arrays ``[k, j, i]``,
``ijk_to_lps`` to LPS millimetres); a :class:`SliceEvent` is in the TARGET's
own voxel grid. Every default of a propagation setting lives here (the stop
rule's in :class:`oneshotsam.volume.stoprule.StopRule`, read from here); front
ends build the configuration through :mod:`oneshotsam.settings`.

This module imports numpy only at import time.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from oneshotsam.errors import OneShotError
from oneshotsam.types import Volume
from oneshotsam.volume.stoprule import StopRule

#: slicing directions (``PropagationConfig.axis``)
AXES = ("axial", "coronal", "sagittal")
#: ``PropagationConfig.propagation`` modes
PROPAGATION_MODES = ("auto", "chain", "direct", "warp-volume")
#: ``PropagationConfig.registration`` kinds of follow-up alignment
REGISTRATIONS = ("rigid", "affine")
_RULE = StopRule()


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
            ``auto`` = for ``medpersam-warp``: per-slice direct pairs (settings chosen per pair) for
            follow-ups of a reference annotated on >= 3 contiguous slices, else
            warp-volume; chain for the other methods (:mod:`oneshotsam.volume.engines`).
        registration: ``"rigid"`` or ``"affine"`` (affine is initialised by rigid).
        stop_min_area_ratio: a label ends on a slice whose predicted area is below
            this fraction of its area on the neighbouring (source) slice.
        stop_min_area_mm2: ... or below this physical area.
        stop_min_confidence: ... or whose method confidence is below this value.
        stop_min_appearance: ... or whose mean intensity z-score agreement with
            the annotated structure is below this (0 disables; see stoprule.py).
        stop_past_end: a walk outward from an annotated slice that is not the
            largest stops where it lies past the structure's end, estimated from the
            two slices' areas (an ellipsoid profile), with at least this probability
            (:func:`oneshotsam.volume.confidence.end_stop`; 0.75 chosen on the LA tuning
            split, docs/corrections.md); 0 disables.
        review_confidence: slices with confidence below this are flagged for review.
        review_area_change: slices whose area changes by more than this factor
            relative to their source slice are flagged for review.
        extend_beyond_contour: follow-ups of a reference contoured on a contiguous
            run of >= 3 slices (a planning contour, :func:`oneshotsam.volume.followup.dense_followup`):
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
    stop_min_area_ratio: float = _RULE.min_area_ratio
    stop_min_area_mm2: float = _RULE.min_area_mm2
    stop_min_confidence: float = _RULE.min_confidence
    stop_min_appearance: float = _RULE.min_appearance
    review_confidence: float = _RULE.review_confidence
    review_area_change: float = _RULE.review_area_change
    stop_past_end: float = _RULE.past_end
    extend_beyond_contour: bool = False
    contour_end_min_fit: float = 0.85
    contour_end_max_slices: int = 1
    method_overrides: tuple[tuple[str, Any], ...] = ()
    seed: int = 0

    def stop_rule(self) -> StopRule:
        """The absence rule and review thresholds of this configuration."""
        return StopRule(self.stop_min_area_ratio, self.stop_min_area_mm2, self.stop_min_confidence,
                        self.stop_min_appearance, self.review_confidence, self.review_area_change,
                        self.stop_past_end)

    def validate(self) -> None:
        """Raise :class:`OneShotError` (with the valid choices) for a setting out of range."""
        if self.axis not in AXES:
            raise OneShotError(f"unknown axis {self.axis!r}: use one of {', '.join(AXES)}")
        if self.propagation not in PROPAGATION_MODES:
            raise OneShotError(f"unknown propagation {self.propagation!r}: use "
                               f"{', '.join(PROPAGATION_MODES)}")
        if not self.contour_end_min_fit >= 0 or self.contour_end_max_slices < 0:
            raise OneShotError(
                f"contour_end_min_fit ({self.contour_end_min_fit}) and contour_end_max_slices "
                f"({self.contour_end_max_slices}) must be >= 0 (0 disables the end trimming)")
        if not (isinstance(self.stop_past_end, (int, float)) and 0.0 <= self.stop_past_end < 1.0):
            raise OneShotError(f"stop_past_end must be a probability in [0, 1) (0 disables the stop "
                               f"at the estimated end), got {self.stop_past_end!r}")
        if self.registration not in REGISTRATIONS:
            raise OneShotError(f"unknown registration {self.registration!r}: use "
                               f"{' or '.join(REGISTRATIONS)}")
        for name in ("stop_min_area_ratio", "stop_min_area_mm2", "stop_min_confidence",
                     "stop_min_appearance", "review_confidence", "review_area_change"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise OneShotError(f"{name} must be a finite number >= 0, got {value!r}")

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
        state: what an Update reuses (the run's shared context and per-job state:
            trained engine, anchors, per-slice outcomes), kept by
            :class:`oneshotsam.volume.session.PropagationSession`; not part of the report.
    """

    label_volumes: list[Volume]
    report: dict[str, Any]
    cancelled: bool = False
    state: Any = field(default=None, repr=False, compare=False)


def elapsed(t0: float) -> float:
    """Seconds since ``t0`` (``time.perf_counter``), rounded for reports."""
    return round(time.perf_counter() - t0, 3)


__all__ = ["AXES", "PROPAGATION_MODES", "REGISTRATIONS", "PropagationConfig", "SliceEvent",
           "PropagationResult", "elapsed"]
