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

The types live in :mod:`oneshotsam.volume.types` (re-exported here); the
implementation in :mod:`oneshotsam.volume.run` (one job per output volume,
:mod:`oneshotsam.volume.jobs`). This module imports numpy only at import time.
"""

from __future__ import annotations

from typing import Callable, Sequence

from oneshotsam.errors import OneShotError
from oneshotsam.methods.base import OneShotMethod
from oneshotsam.progress import ProgressFn, no_progress
from oneshotsam.types import Volume
from oneshotsam.volume.run import run_propagation
from oneshotsam.volume.types import PropagationConfig, PropagationResult, SliceEvent


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
    return run_propagation(reference, reference_labels, targets, config, progress,
                           on_slice, method)


__all__ = ["PropagationConfig", "SliceEvent", "PropagationResult", "propagate", "OneShotError"]
