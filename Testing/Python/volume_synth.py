"""Synthetic volumes with known physical geometry for the volume tests (helper, not a test).

A "world" is an analytic function of LPS millimetres; a volume samples it on
its own grid (any spacing, origin, direction), so two volumes of the same
world show the same structure at the same physical points.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from oneshotsam.checks import label_values
from oneshotsam.methods.base import RunResult, TargetResult
from oneshotsam.types import Image2D, Volume


def affine(spacing: Sequence[float], origin: Sequence[float], direction=None) -> np.ndarray:
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float).reshape(3, 3)
    a = np.eye(4)
    a[:3, :3] = d * np.asarray(spacing, dtype=float)[None, :]
    a[:3, 3] = origin
    return a


def rotation(axis: str, degrees: float) -> np.ndarray:
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    if axis == "x":
        return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


def sample(world: Callable[[np.ndarray], np.ndarray], shape_kji: Sequence[int], ijk_to_lps: np.ndarray,
           name: str = "vol", dtype=np.float32) -> Volume:
    """Volume of ``shape_kji`` on ``ijk_to_lps`` holding ``world(points_lps)``."""
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape_kji], indexing="ij")
    ijk = np.stack([i, j, k], axis=-1).reshape(-1, 3).astype(float)
    pts = ijk @ ijk_to_lps[:3, :3].T + ijk_to_lps[:3, 3]
    return Volume(world(pts).reshape(tuple(shape_kji)).astype(dtype), ijk_to_lps, name)


def ellipsoid(center, radii) -> Callable[[np.ndarray], np.ndarray]:
    c, r = np.asarray(center, float), np.asarray(radii, float)
    return lambda p: (np.sum(((p - c) / r) ** 2, axis=1) <= 1.0).astype(np.float32)


def moved(world, rot: np.ndarray, shift) -> Callable[[np.ndarray], np.ndarray]:
    """The world after a rigid motion x -> rot @ x + shift (sampled by the inverse)."""
    inv = np.linalg.inv(rot)
    return lambda p: world((p - np.asarray(shift, float)) @ inv.T)


class BrightMethod:
    """A deterministic stand-in 2D method: label ``v`` = bright pixels (> 0.5)
    connected to (a dilation of) the reference's ``v`` region; absent when
    none. Records every call."""

    name = "bright-test"

    def __init__(self, reach: int = 3) -> None:
        self.reach = reach
        self.calls: list[tuple[str, list[str]]] = []

    def segment(self, reference: Image2D, reference_labels, targets, progress=None) -> RunResult:
        from scipy import ndimage as ndi

        values = label_values(reference_labels)
        self.calls.append((reference.name, [t.name for t in targets]))
        out = []
        for t in targets:
            lab = np.zeros(t.shape_hw, dtype=np.asarray(reference_labels).dtype)
            absent = []
            for v in values:
                src = np.asarray(reference_labels) == v
                if src.shape != t.shape_hw:
                    src = np.zeros(t.shape_hw, bool)
                near = ndi.binary_dilation(src, iterations=self.reach)
                bright = t.grey() > 0.5
                comp, _ = ndi.label(bright)
                ids = np.unique(comp[near & bright])
                m = np.isin(comp, ids[ids > 0])
                if m.any():
                    lab[m] = v
                else:
                    absent.append(v)
            out.append(TargetResult(lab, 0.9, {v: 0.9 for v in values}, {}, absent))
        return RunResult(out)


class CopyMethod(BrightMethod):
    """Stand-in that does not search: label ``v`` = reference's ``v`` pixels that
    are bright in the target (so a misaligned pair loses overlap)."""

    name = "copy-test"
    keep_dark = False  # True: copy the reference labels unchanged
    report_fit = False  # True: label_fit = bright fraction of each label's region

    def segment(self, reference: Image2D, reference_labels, targets, progress=None) -> RunResult:
        values = label_values(reference_labels)
        ref = np.asarray(reference_labels)
        out = []
        for t in targets:
            bright = t.grey() > 0.5
            lab = ref.copy() if self.keep_dark else np.where(bright & (ref > 0), ref, 0).astype(ref.dtype)
            absent = [v for v in values if not (lab == v).any()]
            fit = {v: float(bright[ref == v].mean()) for v in values} if self.report_fit else {}
            out.append(TargetResult(lab, 0.9, {v: 0.9 for v in values}, {}, absent, fit))
        return RunResult(out)


class FitCopyMethod(CopyMethod):
    """Stand-in registration: copies the reference labels unchanged and reports, as
    ``label_fit``, the fraction of each label's region that is bright in the target
    (an identity "registration" whose local evidence drops where the target shows
    something else)."""

    name = "fitcopy-test"
    keep_dark = True
    report_fit = True
