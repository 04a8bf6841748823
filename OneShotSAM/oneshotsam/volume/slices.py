"""Slice bookkeeping: annotated slices, nearest references, slice images.

Frames: a "processing grid" is the reference volume's ``[k, j, i]`` grid; a
slice is ``get_slice(array, array_axis, index)`` from :mod:`oneshotsam.geometry`
(``(rows, cols)`` with in-plane spacing ``SliceGeometry.spacing_rc_mm``).
Numpy / OpenCV only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from oneshotsam.errors import OneShotError
from oneshotsam.types import Image2D, Volume

def check_label_grid(reference: Volume, labels: Volume) -> np.ndarray:
    """Validated integer ``(K, J, I)`` label array of ``labels`` (not a copy when
    already integer). Raises OneShotError when the grids differ or the labels
    are not integer."""
    from oneshotsam.geometry import same_grid

    if not same_grid(reference, labels, atol_mm=1e-3):
        raise OneShotError(
            f"the reference labels ({labels.name or 'labels'}: shape {labels.shape_kji}) are not on "
            f"the reference volume's grid ({reference.name or 'volume'}: shape {reference.shape_kji}) "
            "or have a different origin/spacing/direction: export or resample the labels onto the "
            "reference volume (in Slicer: export the segmentation with the volume as reference "
            "geometry) and try again")
    lab = np.asarray(labels.voxels)
    if lab.dtype == bool:
        return lab.astype(np.uint8)
    if not np.issubdtype(lab.dtype, np.integer):
        if not np.all(np.isfinite(lab)) or not np.all(lab == np.round(lab)):
            raise OneShotError("reference labels must hold integer label values (a label map), "
                               "not probabilities or intensities")
        lab = lab.astype(np.int32)
    if np.any(lab < 0):
        raise OneShotError("reference labels must be non-negative label values")
    return lab


def annotated_slices(labels_kji: np.ndarray, array_axis: int) -> list[int]:
    """Indices along ``array_axis`` holding any non-zero label, ascending."""
    axes = tuple(a for a in range(3) if a != array_axis)
    return [int(i) for i in np.nonzero(np.any(labels_kji != 0, axis=axes))[0]]


def resolve_reference_slices(labels_kji: np.ndarray, array_axis: int, axis_name: str,
                             requested: Sequence[int] | None) -> list[int]:
    """The annotated slice indices to use as references (validated).

    Raises OneShotError when no slice is annotated, or a requested slice is out
    of range or empty.
    """
    present = annotated_slices(labels_kji, array_axis)
    n = labels_kji.shape[array_axis]
    if requested is None:
        if not present:
            raise OneShotError(
                "the reference labels are empty: draw the structure on at least one slice of the "
                "reference volume (non-zero label values) and try again")
        return present
    out = sorted({int(k) for k in requested})
    if not out:
        raise OneShotError("--reference-slices is empty: give at least one slice index, or omit "
                           "it to use every annotated slice")
    for k in out:
        if k < 0 or k >= n:
            raise OneShotError(f"reference slice {k} is outside the volume ({n} {axis_name} slices, "
                               f"indices 0..{n - 1})")
        if k not in present:
            raise OneShotError(
                f"reference slice {k} ({axis_name}) has no label: annotated {axis_name} slices are "
                f"{_short(present)}; pick one of them or annotate slice {k}")
    return out


def slice_image(windowed_kji: np.ndarray, array_axis: int, index: int,
                spacing_rc_mm: tuple[float, float], name: str) -> tuple[Image2D, tuple[int, int]]:
    """The windowed slice as an :class:`Image2D` with square pixels.

    Returns the image and the slice's native ``(H, W)`` (to map labels back
    with :func:`from_square_pixels`).
    """
    from oneshotsam.geometry import get_slice

    plane = np.asarray(get_slice(windowed_kji, array_axis, index), dtype=np.float32)
    sq, sp = square_plane(plane, spacing_rc_mm, nearest=False)
    return Image2D(np.ascontiguousarray(np.clip(sq, 0.0, 1.0), dtype=np.float32), sp, name), \
        plane.shape[:2]


def is_square(spacing_rc_mm: tuple[float, float]) -> bool:
    """Pixels square within 2 %."""
    sr, sc = float(spacing_rc_mm[0]), float(spacing_rc_mm[1])
    return abs(sr - sc) <= 0.02 * max(sr, sc)


def square_plane(plane: np.ndarray, spacing_rc_mm: tuple[float, float],
                 nearest: bool) -> tuple[np.ndarray, tuple[float, float]]:
    """``plane`` resampled to square pixels (:func:`oneshotsam.geometry.inplane_resample_square`);
    the plane itself when already square. Returns (plane, (s, s) spacing)."""
    if is_square(spacing_rc_mm):
        return plane, (float(spacing_rc_mm[0]), float(spacing_rc_mm[1]))
    from oneshotsam.geometry import inplane_resample_square

    sq, s = inplane_resample_square(plane, spacing_rc_mm, "nearest" if nearest else "linear")
    return sq, (s, s)


def unsquare_plane(plane: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    """Labels back from square pixels to the native ``(H, W)`` (nearest)."""
    if plane.shape[:2] == tuple(shape_hw):
        return plane
    from oneshotsam.geometry import inplane_resample_back

    return inplane_resample_back(plane, tuple(shape_hw), "nearest")


def _short(ix: Sequence[int]) -> str:
    ix = list(ix)
    if not ix:
        return "none"
    if len(ix) > 8:
        return f"{ix[0]}..{ix[-1]} ({len(ix)} slices)"
    return ", ".join(str(i) for i in ix)
