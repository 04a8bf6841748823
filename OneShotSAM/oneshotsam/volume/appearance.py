"""Appearance refinement: keep a predicted label only where the slice looks like it.

A registration moves a contour; it does not know whether the pixels it lands on
look like the structure. :func:`refine_labels` removes, per label, the pixels whose
(3x3 median-filtered) windowed intensity lies more than ``sigma`` standard
deviations from the label's mean on its annotated source (:func:`label_stats`), then
fills the holes that left with the label's own or background pixels only (a ring
such as a myocardium must not swallow the cavity labelled as another class). It
only removes: nothing is drawn that the registration did not draw.

Used after every slice-to-slice warp of the volume engine (statistics from the
annotated slices, :mod:`oneshotsam.volume.warpvol`) and after every cross-visit
prediction of a planning contour's follow-up (statistics from the reference slice
at the same position, :class:`oneshotsam.volume.engines.MethodEngine`).

Frames: ``(H, W)`` native slice grids, labels integer, planes float32 windowed
intensities of the same grid. Numpy at import time (OpenCV and SciPy inside).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

#: a label with fewer annotated pixels than this on its source has no statistics
#: (its prediction is kept as it is)
MIN_STATS_PX = 2


def label_stats(pairs: Iterable[tuple[np.ndarray, np.ndarray]], values: Iterable[int],
                min_px: int = MIN_STATS_PX) -> dict[int, tuple[float, float]]:
    """``{label: (mean, sd)}`` of the windowed intensities under each label over the
    ``(plane, labels)`` pairs (sd floored at 1e-3); labels with fewer than ``min_px``
    pixels are left out."""
    pairs = [(np.asarray(p, dtype=np.float32), np.asarray(lab)) for p, lab in pairs]
    out = {}
    for v in values:
        px = np.concatenate([p[lab == v] for p, lab in pairs]) if pairs else np.zeros(0)
        if px.size >= max(1, min_px):
            out[int(v)] = (float(px.mean()), float(max(px.std(), 1e-3)))
    return out


def refine_labels(labels: np.ndarray, plane: np.ndarray, stats: Mapping[int, tuple[float, float]],
                  sigma: float) -> np.ndarray:
    """``labels`` with each label of ``stats`` kept only where ``plane`` looks like it.

    Args:
        labels: ``(H, W)`` integer labels (a prediction).
        plane: ``(H, W)`` windowed intensities of the slice predicted.
        stats: ``{label: (mean, sd)}`` from :func:`label_stats`; labels not in it are
            kept as they are.
        sigma: the band in standard deviations; ``<= 0`` returns ``labels`` unchanged.

    Returns:
        A new ``(H, W)`` array of ``labels``' dtype; every pixel is ``labels``' or 0,
        except holes of a kept label filled with that label (from background only).
    """
    labels = np.asarray(labels)
    if sigma <= 0 or not stats:
        return labels.copy()
    import cv2
    from scipy import ndimage as ndi

    smooth = cv2.medianBlur(np.ascontiguousarray(plane, dtype=np.float32), 3)
    res = np.where(np.isin(labels, list(stats)), 0, labels).astype(labels.dtype)
    for v, (mu, sd) in stats.items():
        own = labels == v
        if not own.any():
            continue
        m = own & (np.abs(smooth - mu) <= sigma * sd)
        res[ndi.binary_fill_holes(m) & (own | (labels == 0)) & (res == 0)] = v
    return res


__all__ = ["MIN_STATS_PX", "label_stats", "refine_labels"]
