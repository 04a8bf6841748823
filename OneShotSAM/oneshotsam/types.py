"""Core data types with explicit frames and units.

Conventions (used everywhere in the engine):

* 2D arrays are indexed ``[row, col]`` (= ``[y, x]``). Pixel coordinates given as
  points are ``(x, y)`` = ``(col, row)`` and named ``*_xy``; boxes are
  ``(x0, y0, x1, y1)`` in pixels and named ``*_xyxy``.
* 3D arrays are indexed ``[k, j, i]`` (slice, row, column), as returned by
  ``SimpleITK.GetArrayFromImage`` and by Slicer's ``arrayFromVolume``.
* The physical frame of the engine is LPS (DICOM / ITK). RAS (Slicer) appears
  only in :mod:`oneshotsam.geometry`, which owns every conversion.
* Images handed to methods are float32 in ``[0, 1]`` after intensity windowing
  (:mod:`oneshotsam.intensity`); label maps are integer arrays whose non-zero
  values are the user's label values (kept as they are in every output).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


@dataclass(frozen=True)
class Image2D:
    """A 2D image ready for a method.

    Attributes:
        pixels: ``(H, W)`` grey or ``(H, W, 3)`` RGB, float32 in ``[0, 1]``
            (windowed; see :mod:`oneshotsam.intensity`). Read-only.
        spacing_mm: pixel size ``(row_mm, col_mm)``.
        name: identifier used in reports and output file names (file stem).
    """

    pixels: np.ndarray
    spacing_mm: tuple[float, float] = (1.0, 1.0)
    name: str = ""

    def __post_init__(self) -> None:
        p = np.asarray(self.pixels)
        if p.ndim not in (2, 3) or (p.ndim == 3 and p.shape[2] != 3):
            raise ValueError(
                f"Image2D.pixels must be (H, W) or (H, W, 3); got shape {p.shape}")
        if p.dtype != np.float32:
            raise ValueError(
                f"Image2D.pixels must be float32 in [0, 1] (window it with "
                f"oneshotsam.intensity first); got dtype {p.dtype}")
        if not np.isfinite(p).all():
            raise ValueError(
                f"image {self.name!r} contains NaN or Inf pixels; replace or mask them "
                "before segmenting")
        object.__setattr__(self, "pixels", _readonly(p))
        object.__setattr__(self, "spacing_mm", tuple(float(s) for s in self.spacing_mm))

    @property
    def shape_hw(self) -> tuple[int, int]:
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])

    @property
    def is_rgb(self) -> bool:
        return self.pixels.ndim == 3

    def grey(self) -> np.ndarray:
        """``(H, W)`` float32 luminance in [0, 1] (the image itself when grey)."""
        if not self.is_rgb:
            return self.pixels
        w = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return (self.pixels @ w).astype(np.float32)

    def rgb_uint8(self) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB, the input format of SAM's predictors."""
        p = self.pixels if self.is_rgb else np.repeat(self.pixels[..., None], 3, axis=2)
        return np.clip(np.rint(p * 255.0), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Volume:
    """A 3D image with its index-to-physical affine.

    Attributes:
        voxels: ``(K, J, I)`` array (slice, row, column). Read-only; any dtype.
        ijk_to_lps: ``(4, 4)`` affine mapping homogeneous ``(i, j, k, 1)``
            (note the order: column, row, slice) to LPS millimetres. It holds
            spacing, direction and origin; :mod:`oneshotsam.geometry` derives
            everything else from it.
        name: identifier (file stem).
        meta: free-form metadata (e.g. segment names and colours of a
            ``.seg.nrrd``), never used for geometry.
    """

    voxels: np.ndarray
    ijk_to_lps: np.ndarray
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        v = np.asarray(self.voxels)
        if v.ndim != 3:
            raise ValueError(
                f"Volume.voxels must be 3D (K, J, I); got shape {v.shape}. "
                "A 2D image is not a volume: use the 2D 'segment' command for it.")
        a = np.asarray(self.ijk_to_lps, dtype=np.float64)
        if a.shape != (4, 4):
            raise ValueError(f"Volume.ijk_to_lps must be (4, 4); got {a.shape}")
        if abs(np.linalg.det(a[:3, :3])) < 1e-12:
            raise ValueError("Volume.ijk_to_lps is singular (zero spacing or degenerate direction)")
        object.__setattr__(self, "voxels", _readonly(v))
        object.__setattr__(self, "ijk_to_lps", _readonly(a))

    @property
    def shape_kji(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.voxels.shape)  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along (i, j, k) in millimetres."""
        return tuple(float(s) for s in np.linalg.norm(self.ijk_to_lps[:3, :3], axis=0))  # type: ignore[return-value]
