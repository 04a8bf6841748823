"""Checks of a reference label map shared by every method and front end.

Ground floor: imports numpy, :mod:`oneshotsam.errors` and :mod:`oneshotsam.types` only.
"""

from __future__ import annotations

import numpy as np

from oneshotsam.errors import OneShotError
from oneshotsam.types import Image2D


def label_values(reference_labels: np.ndarray) -> list[int]:
    """Sorted non-zero label values of a reference label map (validated)."""
    lab = np.asarray(reference_labels)
    if lab.ndim != 2:
        raise OneShotError(f"reference labels must be a 2D label map; got shape {lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer) and lab.dtype != bool:
        if not np.all(np.isfinite(lab)) or not np.all(lab == np.round(lab)):
            raise OneShotError("reference labels must hold integer label values")
    values = sorted(int(v) for v in np.unique(lab) if v != 0)
    if not values:
        raise OneShotError(
            "the reference mask is empty: annotate the structure on the reference image "
            "(non-zero label values) and try again")
    return values


def check_reference(reference: Image2D, reference_labels: np.ndarray) -> list[int]:
    """Validate a reference pair and return its label values."""
    values = label_values(reference_labels)
    lab = np.asarray(reference_labels)
    if lab.shape != reference.shape_hw:
        raise OneShotError(
            f"reference mask is {lab.shape[1]}x{lab.shape[0]} pixels but the reference image "
            f"is {reference.shape_hw[1]}x{reference.shape_hw[0]}: they must share one pixel grid")
    for v in values:
        if np.all(lab == v):
            raise OneShotError(
                f"label {v} covers the whole reference image: a one-shot method needs "
                "background to contrast with; check that the mask is not inverted")
    return values
