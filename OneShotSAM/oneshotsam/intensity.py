"""Intensity windowing: the one place raw pixel values become float32 in [0, 1].

A window is computed ONCE per image or volume (:func:`compute_window` on the
whole array) and then applied to every slice with the same ``(low, high)``
(:func:`apply_window`), so reference and target slices of one volume share one
intensity scale. Inputs are never modified.

Window kinds:

* ``ct``: a named CT preset in Hounsfield units (``CT_PRESETS``).
* ``explicit``: a given ``[low, high]``.
* ``percentile``: ``[p_low, p_high]`` percentiles (MR; default 0.5 / 99.5),
  optionally over non-zero voxels only (ignores the black background of MR).
* ``auto``: uint8 / bool -> their full range; anything else -> percentile.

Text forms accepted by :func:`parse_window`: ``"lung"``, ``"ct:lung"``,
``"percentile"``, ``"percentile:1,99"``, ``"percentile:1,99:nonzero"``,
``"-910,590"``, ``"auto"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oneshotsam.errors import OneShotError
from oneshotsam.types import Image2D

#: CT windows as (width, level) in HU. Standard display windows as tabulated in
#: radiology teaching references (e.g. Radiopaedia, "Windowing (CT)"):
#: lung W1500/L-600, mediastinum W350/L50, abdomen (soft tissue) W400/L40,
#: brain W80/L40, bone W1800/L400.
CT_WINDOWS_WL = {
    "lung": (1500.0, -600.0),
    "mediastinum": (350.0, 50.0),
    "abdomen": (400.0, 40.0),
    "brain": (80.0, 40.0),
    "bone": (1800.0, 400.0),
}
#: CT presets as (low, high) HU. "p2sam-lung4d" is the [-910, 590] HU window the
#: P2SAM authors' code applies to 4D-Lung before 8-bit conversion (methods.md).
CT_PRESETS: dict[str, tuple[float, float]] = {
    **{k: (lv - w / 2.0, lv + w / 2.0) for k, (w, lv) in CT_WINDOWS_WL.items()},
    "p2sam-lung4d": (-910.0, 590.0),
}
DEFAULT_PERCENTILES = (0.5, 99.5)
#: above this many values, percentiles are computed on a fixed strided subsample
_PERCENTILE_MAX_VALUES = 8_000_000
_KINDS = ("ct", "percentile", "explicit", "auto")
_FORMS = ('"lung" or "ct:lung" (presets: ' + ", ".join(CT_PRESETS) + '), "percentile", '
          '"percentile:1,99", "percentile:1,99:nonzero", "-910,590" (explicit low,high), "auto"')


@dataclass(frozen=True)
class WindowSpec:
    """How to window an image.

    Attributes:
        kind: ``"ct"``, ``"percentile"``, ``"explicit"`` or ``"auto"``.
        preset: CT preset name (kind ``"ct"``).
        low, high: explicit window in the image's units (kind ``"explicit"``).
        percentiles: ``(p_low, p_high)`` in 0..100 (kind ``"percentile"``/``"auto"``).
        nonzero: compute percentiles over non-zero values only.
    """

    kind: str = "auto"
    preset: str | None = None
    low: float | None = None
    high: float | None = None
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    nonzero: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise OneShotError(f"unknown window kind {self.kind!r}: use one of {', '.join(_KINDS)}")
        if self.kind == "ct" and self.preset not in CT_PRESETS:
            raise OneShotError(f"unknown CT window preset {self.preset!r}: use one of {', '.join(CT_PRESETS)}")
        if self.kind == "explicit":
            if self.low is None or self.high is None or not float(self.low) < float(self.high):
                raise OneShotError(f"an explicit window needs low < high; got [{self.low}, {self.high}]")
        p0, p1 = (float(p) for p in self.percentiles)
        if not 0.0 <= p0 < p1 <= 100.0:
            raise OneShotError(f"percentiles must satisfy 0 <= low < high <= 100; got {self.percentiles}")
        object.__setattr__(self, "percentiles", (p0, p1))

    def describe(self) -> str:
        """The spec in :func:`parse_window`'s text form."""
        if self.kind == "ct":
            return f"ct:{self.preset}"
        if self.kind == "explicit":
            return f"{self.low:g},{self.high:g}"
        if self.kind == "percentile":
            return f"percentile:{self.percentiles[0]:g},{self.percentiles[1]:g}" + (
                ":nonzero" if self.nonzero else "")
        return "auto"


def _pair(text: str, what: str) -> tuple[float, float]:
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise OneShotError(f"cannot read {what} from {text!r}: write two numbers like -910,590") from None


def parse_window(text: str | WindowSpec | None) -> WindowSpec:
    """Parse a window given on the command line or in a preset (forms in the module docstring)."""
    if isinstance(text, WindowSpec):
        return text
    if text is None or not str(text).strip():
        return WindowSpec("auto")
    t = str(text).strip().lower()
    if t == "auto":
        return WindowSpec("auto")
    if t.startswith("ct:"):
        return WindowSpec("ct", preset=t[3:].strip())
    if t in CT_PRESETS:
        return WindowSpec("ct", preset=t)
    if t.startswith("percentile") or t.startswith("mr"):
        rest = t.split(":")[1:]
        nonzero = bool(rest) and rest[-1].strip() in ("nonzero", "nz")
        if nonzero:
            rest = rest[:-1]
        if len(rest) > 1:
            raise OneShotError(f"cannot read window {text!r}: use one of {_FORMS}")
        pct = _pair(rest[0], "percentiles") if rest else DEFAULT_PERCENTILES
        return WindowSpec("percentile", percentiles=pct, nonzero=nonzero)
    if "," in t:
        lo, hi = _pair(t[len("explicit:"):] if t.startswith("explicit:") else t, "a window")
        return WindowSpec("explicit", low=lo, high=hi)
    raise OneShotError(f"unknown window {text!r}: use one of {_FORMS}")


def _check_finite(a: np.ndarray) -> None:
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        n = int(a.size - np.count_nonzero(np.isfinite(a)))
        raise OneShotError(
            f"the image holds {n} NaN or infinite values: replace them first (for example with "
            "numpy.nan_to_num, or mask them to the background value) and run again")


def compute_window(array: np.ndarray, spec: WindowSpec | str | None = None) -> tuple[float, float]:
    """``(low, high)`` for ``array`` (a whole 2D image or 3D volume, grey or RGB).

    A constant image gives ``(v, v + 1)`` so that ``high > low`` always holds.
    Raises :class:`OneShotError` on NaN / Inf values or an empty array.
    """
    spec = parse_window(spec)
    a = np.asarray(array)
    if a.size == 0:
        raise OneShotError("cannot window an empty image")
    _check_finite(a)
    if spec.kind == "ct":
        return CT_PRESETS[spec.preset]  # type: ignore[index]
    if spec.kind == "explicit":
        return float(spec.low), float(spec.high)  # type: ignore[arg-type]
    if spec.kind == "auto" and a.dtype in (np.uint8, np.bool_):
        return 0.0, (255.0 if a.dtype == np.uint8 else 1.0)
    values = a.ravel()
    if spec.nonzero:
        nz = values[values != 0]
        values = nz if nz.size else values
    if values.size > _PERCENTILE_MAX_VALUES:
        values = values[:: int(np.ceil(values.size / _PERCENTILE_MAX_VALUES))]
    lo, hi = (float(v) for v in np.percentile(values, spec.percentiles))
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


def apply_window(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """New float32 array ``clip((array - low) / (high - low), 0, 1)``; the input is untouched."""
    low, high = float(low), float(high)
    if not high > low:
        raise OneShotError(f"window needs low < high; got [{low}, {high}]")
    a = np.asarray(array)
    _check_finite(a)
    out = np.subtract(a, low, dtype=np.float32)
    out *= np.float32(1.0 / (high - low))
    np.clip(out, 0.0, 1.0, out=out)
    return out


def to_image2d(array: np.ndarray, window: tuple[float, float] | WindowSpec | str | None = None,
               spacing_mm: tuple[float, float] = (1.0, 1.0), name: str = "") -> Image2D:
    """Window a raw ``(H, W)`` or ``(H, W, 3)`` array into an :class:`Image2D`.

    ``window`` is a precomputed ``(low, high)`` (e.g. from the whole volume) or a
    spec to compute on this array alone.
    """
    a = np.asarray(array)
    if isinstance(window, tuple) and len(window) == 2 and not isinstance(window, WindowSpec):
        low, high = window
    else:
        low, high = compute_window(a, window)
    return Image2D(pixels=apply_window(a, low, high), spacing_mm=spacing_mm, name=name)
