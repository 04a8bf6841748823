"""The classical peer of the benchmarks: elastix (``itk-elastix``, what SlicerElastix runs).

A label map drawn on a MOVING image (the one-shot reference) is carried onto a
FIXED image (the target) by intensity registration, the way a user without a
learned method would do it:

1. elastix registers moving -> fixed with the default parameter maps ``affine``
   then ``bspline`` (``ParameterObject.GetDefaultParameterMap``): metric
   ``AdvancedMattesMutualInformation`` (the B-spline stage adds elastix's default
   ``TransformBendingEnergyPenalty``), optimiser
   ``AdaptiveStochasticGradientDescent``, ``RandomCoordinate`` sampler,
   smoothing pyramids, :attr:`ElastixSettings.resolutions` resolutions;
2. the iterations are pinned (:attr:`ElastixSettings.affine_iterations`,
   :attr:`ElastixSettings.bspline_iterations`, 256 each: the elastix defaults,
   written out so a later elastix release cannot change them silently), as are
   the sampler's seed (``RandomSeed``, so two runs give the same labels) and the
   number of spatial samples;
3. the B-spline grid: ``FinalGridSpacingInPhysicalUnits`` = the largest
   in-plane physical extent / :attr:`ElastixSettings.grid_cells` (32), e.g. 16 px
   on a 512 px film at unit spacing, 8 px on a 256 px cardiac slice;
4. transformix warps the moving labels with ``FinalBSplineInterpolationOrder 0``
   (nearest neighbour): the result lies on the fixed image's grid and holds the
   moving label values only.

Timing: wall seconds and CPU seconds (``time.process_time()``, which counts
every thread of this process, elastix's native threads included) of
registration + warping. Loading the itk modules (tens of seconds the first time
in a process) is excluded: :func:`load` does it once, before any timed call.

Threads: ``threads=None`` uses elastix's default (ITK's global default: the
machine's cores, or ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``); an integer sets
ITK's global default for the duration of the call (the filter's own
``number_of_threads`` argument crashed itk-elastix 0.25.4 with 2 threads on
512 px films: a segmentation fault). The count used is returned.

No front-end knowledge; numpy at import time, itk inside the functions.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from oneshotsam.errors import OneShotError

#: the pip package that provides ``itk.elastix_registration_method``
PIP_PACKAGE = "itk-elastix"


@dataclass(frozen=True)
class ElastixSettings:
    """Pinned elastix settings of the peer (see the module docstring).

    Attributes:
        affine_iterations: ``MaximumNumberOfIterations`` of every affine resolution.
        bspline_iterations: the same for the B-spline stage.
        resolutions: ``NumberOfResolutions`` of both stages (smoothing pyramid).
        grid_cells: final B-spline grid spacing = largest in-plane extent / this.
        spatial_samples: ``NumberOfSpatialSamples`` per iteration (elastix default 2048).
        seed: ``RandomSeed`` of the sampler.
        threads: ITK threads (None: elastix's default).
    """

    affine_iterations: int = 256
    bspline_iterations: int = 256
    resolutions: int = 4
    grid_cells: int = 32
    spatial_samples: int = 2048
    seed: int = 0
    threads: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PeerResult:
    """Labels on the fixed grid and what they cost.

    Attributes:
        labels: integer labels of the fixed image's shape (dtype of the moving labels).
        wall_seconds: registration + warping, wall clock.
        cpu_seconds: the same in process CPU time (all threads).
        threads: the ITK thread count the call ran with.
        grid_spacing: the B-spline ``FinalGridSpacingInPhysicalUnits`` used.
    """

    labels: np.ndarray
    wall_seconds: float
    cpu_seconds: float
    threads: int
    grid_spacing: float


_LOADED: dict[str, Any] = {}


def _itk():
    """The itk module with elastix, or a OneShotError saying how to get it."""
    if "itk" in _LOADED:
        return _LOADED["itk"]
    try:
        import itk

        itk.ElastixRegistrationMethod  # noqa: B018 (lazy attribute: loads elastix)
    except (ImportError, AttributeError):
        raise OneShotError(f"the elastix peer needs {PIP_PACKAGE}: run `pip install {PIP_PACKAGE}` "
                           "(or pass --no-peer to skip the peer)") from None
    _LOADED["itk"] = itk
    return itk


def available() -> bool:
    """True when itk-elastix can be imported (imports it)."""
    try:
        _itk()
        return True
    except OneShotError:
        return False


def load() -> None:
    """Import itk and load the elastix/transformix modules (one tiny untimed run), so
    that the first timed call does not pay for module loading."""
    if _LOADED.get("warm"):
        return
    a = np.zeros((24, 24), np.float32)
    a[6:18, 6:18] = 1.0
    register_2d(a, a, (a > 0).astype(np.uint8),
                settings=ElastixSettings(affine_iterations=1, bspline_iterations=1, resolutions=1))
    _LOADED["warm"] = True


def grid_spacing(shape: Sequence[int], spacing: Sequence[float], cells: int) -> float:
    """Final B-spline grid spacing (physical units): the largest in-plane extent / ``cells``.

    ``shape`` is in array order (``(H, W)`` or ``(K, H, W)``) and ``spacing`` in the
    same order; the in-plane dimensions are the last two."""
    extents = [float(n) * float(s) for n, s in zip(list(shape)[-2:], list(spacing)[-2:])]
    return max(extents) / float(cells)


def _itk_maps(itk, settings: ElastixSettings, shape: Sequence[int], spacing: Sequence[float]):
    po = itk.ParameterObject.New()
    gs = grid_spacing(shape, spacing, settings.grid_cells)
    maps = []
    for kind, iters in (("affine", settings.affine_iterations),
                        ("bspline", settings.bspline_iterations)):
        pm = (po.GetDefaultParameterMap(kind, settings.resolutions) if kind == "affine" else
              po.GetDefaultParameterMap(kind, settings.resolutions, gs))
        pm["MaximumNumberOfIterations"] = [str(int(iters))]
        pm["NumberOfSpatialSamples"] = [str(int(settings.spatial_samples))]
        pm["RandomSeed"] = [str(int(settings.seed))]
        pm["WriteResultImage"] = ["false"]
        maps.append(pm)
    return maps


def parameter_maps(settings: ElastixSettings, shape: Sequence[int],
                   spacing: Sequence[float]) -> list[dict[str, list[str]]]:
    """The two parameter maps (``{name: [values]}``, affine then B-spline) that a
    registration of images of ``shape`` / ``spacing`` (array order) runs with."""
    itk = _itk()
    return [{k: list(v) for k, v in dict(pm).items()}
            for pm in _itk_maps(itk, settings, shape, spacing)]


def _image(itk, array: np.ndarray, spacing: Sequence[float]):
    img = itk.image_from_array(np.ascontiguousarray(array, dtype=np.float32))
    img.SetSpacing([float(s) for s in reversed(list(spacing))])  # itk order: x (columns) first
    return img


def _register(fixed: np.ndarray, moving: np.ndarray, moving_labels: np.ndarray,
              spacing: Sequence[float], settings: ElastixSettings) -> PeerResult:
    itk = _itk()
    fixed, moving, labels = np.asarray(fixed), np.asarray(moving), np.asarray(moving_labels)
    if fixed.ndim != moving.ndim or labels.shape != moving.shape:
        raise OneShotError(f"elastix peer: moving image {moving.shape}, its labels {labels.shape} "
                           f"and the fixed image {fixed.shape} do not fit")
    if not np.issubdtype(labels.dtype, np.integer):
        raise OneShotError("elastix peer: the moving labels must be an integer array")
    po = itk.ParameterObject.New()
    for pm in _itk_maps(itk, settings, fixed.shape, spacing):
        po.AddParameterMap(pm)
    mt = itk.MultiThreaderBase
    before = int(mt.GetGlobalDefaultNumberOfThreads())
    threads = int(settings.threads) if settings.threads else before
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        if threads != before:
            mt.SetGlobalDefaultNumberOfThreads(threads)
        fi, mi = _image(itk, fixed, spacing), _image(itk, moving, spacing)
        _, tp = itk.elastix_registration_method(fi, mi, parameter_object=po, log_to_console=False)
        for i in range(tp.GetNumberOfParameterMaps()):
            tp.SetParameter(i, "FinalBSplineInterpolationOrder", "0")
        warped = np.asarray(itk.transformix_filter(_image(itk, labels, spacing), tp))
    except RuntimeError as exc:  # itk reports elastix failures as RuntimeError
        raise OneShotError(f"elastix failed: {str(exc).strip().splitlines()[-1]}") from None
    finally:
        if threads != before:
            mt.SetGlobalDefaultNumberOfThreads(before)
    out = np.rint(warped).astype(labels.dtype)
    if out.shape != fixed.shape:  # transformix writes on the fixed grid; guard anyway
        raise OneShotError(f"elastix peer: warped labels {out.shape} are not on the fixed grid "
                           f"{fixed.shape}")
    return PeerResult(out, time.perf_counter() - t0, time.process_time() - c0, threads,
                      grid_spacing(fixed.shape, spacing, settings.grid_cells))


def register_2d(fixed: np.ndarray, moving: np.ndarray, moving_labels: np.ndarray,
                spacing: Sequence[float] = (1.0, 1.0),
                settings: ElastixSettings = ElastixSettings()) -> PeerResult:
    """Carry ``moving_labels`` (on ``moving``, ``(H, W)``) onto ``fixed`` (``(H', W')``).

    ``spacing`` is the pixel size (rows, columns), shared by both images."""
    if np.asarray(fixed).ndim != 2:
        raise OneShotError(f"register_2d needs 2D images; got {np.asarray(fixed).shape}")
    return _register(fixed, moving, moving_labels, spacing, settings)


def register_3d(fixed: np.ndarray, moving: np.ndarray, moving_labels: np.ndarray,
                spacing: Sequence[float] = (1.0, 1.0, 1.0),
                settings: ElastixSettings = ElastixSettings()) -> PeerResult:
    """3D affine + B-spline: ``moving_labels`` (``(K, H, W)`` on ``moving``) onto ``fixed``.

    ``spacing`` is the voxel size in array order (slice, row, column). The two
    volumes are registered in voxel-index space scaled by ``spacing`` (origins and
    directions ignored): for two phases of one acquisition on the same grid
    (ACDC ED and ES), which is what the volume benchmark compares."""
    if np.asarray(fixed).ndim != 3:
        raise OneShotError(f"register_3d needs 3D volumes; got {np.asarray(fixed).shape}")
    return _register(fixed, moving, moving_labels, spacing, settings)


def register_slices(fixed: np.ndarray, moving: np.ndarray, moving_labels: np.ndarray,
                    slices: Sequence[int], spacing: Sequence[float] = (1.0, 1.0),
                    settings: ElastixSettings = ElastixSettings()) -> dict[int, PeerResult]:
    """Per-slice variant: for each index ``k`` of ``slices``, 2D registration of
    ``moving[k]`` (with ``moving_labels[k]``) to ``fixed[k]`` (ACDC ED slice -> the
    ES slice at the same index)."""
    return {int(k): register_2d(fixed[k], moving[k], moving_labels[k], spacing, settings)
            for k in slices}


__all__ = ["PIP_PACKAGE", "ElastixSettings", "PeerResult", "available", "load", "grid_spacing",
           "parameter_maps", "register_2d", "register_3d", "register_slices"]
