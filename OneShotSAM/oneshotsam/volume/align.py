"""Align a follow-up volume to the reference (SimpleITK 3D registration).

The registration uses the reference as the FIXED image and the follow-up as
the MOVING image, so the resulting transform maps reference LPS points to
follow-up LPS points: exactly what :func:`oneshotsam.geometry.resample_volume`
takes to bring the follow-up into the reference grid. Its inverse maps
labels predicted in the reference grid back to the follow-up's own grid.

Method: rigid (Euler 3D, centred by image geometry) then, optionally, affine
initialised by the rigid result; Mattes mutual information (32 bins, 20 %
random sampling, fixed seed), regular-step gradient descent with scales from
physical shift, 3-level pyramid (shrink 4/2/1, smoothing 2/1/0 voxels; the
shrink factor is capped so a thin volume keeps at least 4 voxels per axis).
The affine result is kept only when it improves the metric over the rigid
one, and any result only when it improves over the identity; otherwise the
simpler transform is reported with the reason. Bit-reproducible: every ITK
filter of the registration (pyramid, metric, optimiser) runs on one thread
(SimpleITK's process-wide default is set to 1 for the call and restored), so
the same inputs give the same transform in any process, whatever the load
(with several threads the metric's per-thread sums are combined in a varying
order and the transform differs in its last digits from run to run, which the
test-time training downstream can amplify into different labels).
SimpleITK is imported lazily.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from oneshotsam.types import Volume


@dataclass
class AlignResult:
    """A follow-up's alignment to the reference.

    Attributes:
        transform: ``SimpleITK.Transform`` reference LPS -> target LPS (None = identity).
        kind: "identity" | "rigid" | "affine".
        report: JSON-serialisable (metric before/after, iterations, parameters,
            matrix and translation in LPS mm, seconds, reason when identity kept).
    """

    transform: Any
    kind: str
    report: dict[str, Any] = field(default_factory=dict)

    def inverse(self) -> Any:
        """Transform target LPS -> reference LPS (None for identity)."""
        return None if self.transform is None else self.transform.GetInverse()

    def target_to_reference_points(self, points_lps: np.ndarray) -> np.ndarray:
        """``(N, 3)`` target LPS points mapped into the reference frame."""
        p = np.atleast_2d(np.asarray(points_lps, dtype=np.float64))
        inv = self.inverse()
        if inv is None:
            return p.copy()
        return np.array([inv.TransformPoint(tuple(float(c) for c in q)) for q in p])


def identity_alignment(reason: str) -> AlignResult:
    return AlignResult(None, "identity", {"kind": "identity", "reason": reason})


def _as_float_image(vol: Volume, low: float, high: float):
    import SimpleITK as sitk

    from oneshotsam.geometry import volume_to_sitk

    img = sitk.Cast(volume_to_sitk(vol), sitk.sitkFloat32)
    span = max(high - low, 1e-6)
    return sitk.Clamp((img - float(low)) / float(span), sitk.sitkFloat32, 0.0, 1.0)


def _pyramid(fixed) -> tuple[list[int], list[float]]:
    smallest = min(fixed.GetSize())
    shrink = [f for f in (4, 2, 1) if smallest // f >= 4 or f == 1]
    smooth = [{4: 2.0, 2: 1.0, 1: 0.0}[f] for f in shrink]
    return shrink, smooth


def _register(fixed, moving, initial, iterations: int, seed: int):
    import SimpleITK as sitk

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.2, 7919 + int(seed))  # 0 would mean wall clock
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-3,
                                                 numberOfIterations=iterations,
                                                 relaxationFactor=0.5)
    reg.SetOptimizerScalesFromPhysicalShift()
    shrink, smooth = _pyramid(fixed)
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel(smooth)
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(initial, inPlace=False)
    reg.SetNumberOfThreads(1)  # deterministic (random sampling is split across threads otherwise)
    out = reg.Execute(fixed, moving)
    return out, reg


def _metric(fixed, moving, transform, seed: int) -> float:
    import SimpleITK as sitk

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.2, 7919 + int(seed))  # 0 would mean wall clock
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetInitialTransform(transform)
    reg.SetNumberOfThreads(1)
    return float(reg.MetricEvaluate(fixed, moving))


def _flatten(tx) -> Any:
    """A composite/wrapped result as one plain transform with an inverse."""
    import SimpleITK as sitk

    if isinstance(tx, sitk.CompositeTransform) and tx.GetNumberOfTransforms() == 1:
        tx = tx.GetNthTransform(0)
    kind = tx.GetName()
    if kind == "Euler3DTransform":
        return sitk.Euler3DTransform(tx)
    if kind == "AffineTransform":
        return sitk.AffineTransform(tx)
    return tx


def _matrix_report(tx) -> dict[str, Any]:
    m = np.array(tx.GetMatrix(), dtype=np.float64).reshape(3, 3)
    t = np.array(tx.GetTranslation(), dtype=np.float64)
    c = np.array(tx.GetCenter(), dtype=np.float64)
    offset = t + c - m @ c  # x_target = m @ x_ref + offset
    u, s, vt = np.linalg.svd(m)
    rot = u @ vt  # closest rotation (polar decomposition); s = principal scales
    return {"matrix_ref_to_target": np.round(m, 6).tolist(),
            "offset_mm": np.round(offset, 4).tolist(),
            "rotation_deg": round(float(np.degrees(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1, 1)))), 3),
            "scales": np.round(s, 4).tolist()}


@contextmanager
def _itk_one_thread() -> Iterator[None]:
    """SimpleITK's process-wide default thread count set to 1 inside, restored after."""
    import SimpleITK as sitk

    old = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(old)


def align_volumes(reference: Volume, target: Volume, window: tuple[float, float],
                  kind: str = "affine", iterations: int = 100, seed: int = 0) -> AlignResult:
    """Register ``target`` (moving) to ``reference`` (fixed), bit-reproducibly
    (one ITK thread, see the module docstring).

    Args:
        window: ``(low, high)`` intensity window (the run's, shared by both volumes).
        kind: "rigid" or "affine".
    """
    with _itk_one_thread():
        return _align(reference, target, window, kind, iterations, seed)


def _align(reference: Volume, target: Volume, window: tuple[float, float],
           kind: str, iterations: int, seed: int) -> AlignResult:
    import SimpleITK as sitk

    t0 = time.perf_counter()
    fixed = _as_float_image(reference, *window)
    moving = _as_float_image(target, *window)
    rigid0 = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                               sitk.CenteredTransformInitializerFilter.GEOMETRY)
    before = _metric(fixed, moving, sitk.Euler3DTransform(), seed)
    report: dict[str, Any] = {"metric": "Mattes mutual information (lower is better)",
                              "metric_identity": round(before, 6)}
    try:
        rigid, reg = _register(fixed, moving, rigid0, iterations, seed)
        rigid = _flatten(rigid)
        report["rigid"] = {"metric": round(float(reg.GetMetricValue()), 6),
                           "iterations": int(reg.GetOptimizerIteration()),
                           "stop": reg.GetOptimizerStopConditionDescription()}
        best, best_kind = rigid, "rigid"
        if kind == "affine":
            aff0 = sitk.AffineTransform(3)
            aff0.SetCenter(rigid.GetCenter())
            aff0.SetMatrix(rigid.GetMatrix())
            aff0.SetTranslation(rigid.GetTranslation())
            aff, reg2 = _register(fixed, moving, aff0, iterations, seed)
            aff = _flatten(aff)
            m_rigid, m_aff = _metric(fixed, moving, rigid, seed), _metric(fixed, moving, aff, seed)
            report["affine"] = {"metric": round(float(reg2.GetMetricValue()), 6),
                                "iterations": int(reg2.GetOptimizerIteration()),
                                "stop": reg2.GetOptimizerStopConditionDescription(),
                                "kept": bool(m_aff < m_rigid)}
            if m_aff < m_rigid:  # the affine stage can wander: keep it only when it helps
                best, best_kind = aff, "affine"
    except RuntimeError as exc:  # ITK failure (e.g. no overlap): keep identity, say why
        report.update(kind="identity", reason=f"registration failed: {exc}".splitlines()[0],
                      seconds=round(time.perf_counter() - t0, 3))
        return AlignResult(None, "identity", report)
    after = _metric(fixed, moving, best, seed)
    report["metric_aligned"] = round(after, 6)
    report["seconds"] = round(time.perf_counter() - t0, 3)
    if not after < before:
        report.update(kind="identity",
                      reason="registration did not improve mutual information over the identity")
        return AlignResult(None, "identity", report)
    report["kind"] = best_kind
    report.update(_matrix_report(best))
    return AlignResult(best, best_kind, report)
