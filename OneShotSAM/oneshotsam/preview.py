"""Colour overlay previews of 2D label maps: what a person sees in any image viewer.

A label PNG holds values 1, 2, ... that look black in an image viewer;
``segment`` writes ``<output stem>_preview.png`` beside it: the target image
in grey (or its colours) with each label filled in a distinct colour at
:data:`ALPHA` and its outline in full colour. numpy and SimpleITK only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oneshotsam.fileformats import SEGMENT_PALETTE, atomic_write, split_suffix

#: label 1, 2, ... colours (RGB 0-255): the segment colours of the .seg.nrrd outputs
PALETTE = np.array(SEGMENT_PALETTE, dtype=np.float32) * 255
ALPHA = 0.45
SUFFIX = "_preview.png"


def preview_name(label_file_name: str) -> str:
    """``heart_oneshotsam.png`` -> ``heart_oneshotsam_preview.png``."""
    return split_suffix(label_file_name)[0] + SUFFIX


def overlay_rgb(image: np.ndarray, labels: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """``(H, W, 3)`` uint8: ``image`` (``(H, W)`` grey or ``(H, W, 3)``, values in
    [0, 1]) with every label > 0 blended in its colour and outlined."""
    img = np.clip(np.asarray(image, dtype=np.float32), 0, 1) * 255
    rgb = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img.copy()
    lab = np.asarray(labels)
    if lab.shape != rgb.shape[:2]:
        raise ValueError(f"labels {lab.shape} and image {rgb.shape[:2]} differ")
    for value in np.unique(lab[lab > 0]):
        inside = lab == value
        colour = PALETTE[(int(value) - 1) % len(PALETTE)]
        rgb[inside] = (1 - alpha) * rgb[inside] + alpha * colour
        pad = np.pad(inside, 1)
        edge = inside & ~(pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:])
        rgb[edge] = colour
    return np.round(rgb).astype(np.uint8)


def write_preview(image: np.ndarray, labels: np.ndarray, path: str | Path) -> Path:
    """Write :func:`overlay_rgb` as an RGB PNG (to a temporary name, then renamed)."""
    import SimpleITK as sitk

    rgb = overlay_rgb(image, labels)
    return atomic_write(path, lambda tmp: sitk.WriteImage(
        sitk.GetImageFromArray(rgb, isVector=True), tmp))
