"""The one module that owns spatial conventions: LPS/RAS, affines, axes, slices, resampling.

Conventions (the affine is the single source of spatial truth, TorchIO style):

* The engine frame is LPS (DICOM / ITK / SimpleITK). Slicer's RAS appears only
  here: ``ijk_to_ras = LPS_TO_RAS @ ijk_to_lps`` (flip the first two rows).
* ``Volume.ijk_to_lps`` maps homogeneous ``(i, j, k, 1)`` to LPS millimetres;
  its column ``c`` (0 = i, 1 = j, 2 = k) is ``direction[:, c] * spacing[c]``.
  Arrays are stored ``[k, j, i]``, so *array axis* ``a`` (0 = k, 1 = j, 2 = i)
  is ijk column ``2 - a``.
* Slice orientation rule (fixed, the same for every volume, no flips):

  ========== ========================= ====== ====== ==========================
  array_axis plane                     rows   cols   2D array
  ========== ========================= ====== ====== ==========================
  0 (k)      ``voxels[index, :, :]``   j      i      ``(J, I)``
  1 (j)      ``voxels[:, index, :]``   k      i      ``(K, I)``
  2 (i)      ``voxels[:, :, index]``   k      j      ``(K, J)``
  ========== ========================= ====== ====== ==========================

  :func:`get_slice` returns that view and :func:`set_slice` is its exact
  inverse; :func:`slice_plane_to_lps` maps ``(col, row, 0, 1)`` of such a 2D
  slice to LPS.
* Anatomical slice normals are the RAS-positive directions: sagittal -> R
  (``(-1, 0, 0)`` in LPS), coronal -> A (``(0, -1, 0)``), axial -> S
  (``(0, 0, 1)``). A slice's position is the projection of its centre on that
  normal, in mm, so for axis-aligned volumes it equals Slicer's slice offset,
  and slices of two volumes can be paired by physical position.

Only numpy is imported at module level; SimpleITK and OpenCV are imported
lazily inside the functions that need them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from oneshotsam.errors import OneShotError
from oneshotsam.types import Volume

#: ``diag(-1, -1, 1, 1)``: maps LPS to RAS and back (it is its own inverse).
LPS_TO_RAS: np.ndarray = np.diag([-1.0, -1.0, 1.0, 1.0])
LPS_TO_RAS.flags.writeable = False

AXES = ("sagittal", "coronal", "axial")
#: anatomical normal of each slicing axis, in LPS (RAS-positive directions R, A, S)
NORMALS_LPS = {
    "sagittal": np.array([-1.0, 0.0, 0.0]),
    "coronal": np.array([0.0, -1.0, 0.0]),
    "axial": np.array([0.0, 0.0, 1.0]),
}
#: per array axis: (ijk column of the 2D rows, ijk column of the 2D cols, ijk column of the normal)
_PLANE_IJK = {0: (1, 0, 2), 1: (2, 0, 1), 2: (2, 1, 0)}
_INTERPOLATORS = ("linear", "nearest", "bspline")


# ----------------------------------------------------------------------------- affines
def ijk_to_ras(ijk_to_lps: np.ndarray) -> np.ndarray:
    """``(4, 4)`` ijk->RAS affine (Slicer's IJKToRAS) from an ijk->LPS affine."""
    return LPS_TO_RAS @ np.asarray(ijk_to_lps, dtype=np.float64)


def ras_to_lps_affine(ijk_to_ras_affine: np.ndarray) -> np.ndarray:
    """``(4, 4)`` ijk->LPS affine from an ijk->RAS affine (Slicer's IJKToRAS)."""
    return LPS_TO_RAS @ np.asarray(ijk_to_ras_affine, dtype=np.float64)


def affine_from_sitk(origin: Any, spacing: Any, direction: Any) -> np.ndarray:
    """``(4, 4)`` ijk->LPS affine from SimpleITK's origin, spacing and direction.

    Args:
        origin: LPS mm of voxel (0, 0, 0); 2 or 3 values.
        spacing: mm along i, j (, k); 2 or 3 values.
        direction: row-major flat 4 or 9 values (``GetDirection()``) or a square
            matrix; column ``c`` is the LPS unit direction of index axis ``c``.
            A 2D geometry is embedded with k along +S and 1 mm spacing.
    """
    o = np.asarray(origin, dtype=np.float64).ravel()
    s = np.asarray(spacing, dtype=np.float64).ravel()
    n = o.size
    if n not in (2, 3) or s.size != n or np.asarray(direction).size != n * n:
        raise ValueError(f"need 2D or 3D geometry; got origin {o}, spacing {s}")
    d = np.asarray(direction, dtype=np.float64).reshape(n, n)
    a = np.eye(4)
    a[:n, :n] = d * s[None, :]
    a[:n, 3] = o
    return a


def sitk_geometry(ijk_to_lps: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """``(origin, spacing, direction)`` for SimpleITK (3D; direction row-major flat 9)."""
    a = np.asarray(ijk_to_lps, dtype=np.float64)
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    direction = a[:3, :3] / spacing[None, :]
    return (tuple(float(v) for v in a[:3, 3]), tuple(float(v) for v in spacing),
            tuple(float(v) for v in direction.ravel()))


def sitk_to_volume(img: Any, name: str = "", meta: dict | None = None) -> Volume:
    """A scalar 2D or 3D ``SimpleITK.Image`` as a :class:`Volume` (2D -> one slice)."""
    import SimpleITK as sitk

    if img.GetNumberOfComponentsPerPixel() != 1:
        raise OneShotError(
            f"image {name!r} has {img.GetNumberOfComponentsPerPixel()} components per voxel; "
            "a volume must be scalar (convert it to grey levels first)")
    dim = img.GetDimension()
    if dim not in (2, 3):
        raise OneShotError(f"image {name!r} is {dim}D; only 2D and 3D images are supported "
                           "(split 4D series into one 3D file per time point)")
    arr = sitk.GetArrayFromImage(img)
    affine = affine_from_sitk(img.GetOrigin(), img.GetSpacing(), img.GetDirection())
    if dim == 2:
        arr = arr[None]
    return Volume(voxels=arr, ijk_to_lps=affine, name=name, meta=dict(meta or {}))


def volume_to_sitk(vol: Volume) -> Any:
    """The volume as a 3D ``SimpleITK.Image`` with its origin, spacing and direction
    (bool voxels become uint8, float16 float32)."""
    import SimpleITK as sitk

    arr = np.asarray(vol.voxels)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    origin, spacing, direction = sitk_geometry(vol.ijk_to_lps)
    img.SetOrigin(origin)
    img.SetSpacing(spacing)
    img.SetDirection(direction)
    return img


def volume_like(vol: Volume, voxels: np.ndarray, name: str | None = None,
                meta: dict | None = None) -> Volume:
    """A new volume on ``vol``'s grid holding ``voxels`` (shape must match)."""
    v = np.asarray(voxels)
    if v.shape != vol.voxels.shape:
        raise OneShotError(f"voxels {v.shape} do not fit the grid {vol.voxels.shape} of {vol.name!r}")
    return Volume(voxels=v, ijk_to_lps=vol.ijk_to_lps, name=vol.name if name is None else name,
                  meta=dict(vol.meta if meta is None else meta))


def same_grid(a: Volume, b: Volume, atol_mm: float = 1e-3) -> bool:
    """True when both volumes have the same shape and ijk->LPS affine (within ``atol_mm``)."""
    return a.voxels.shape == b.voxels.shape and bool(
        np.allclose(a.ijk_to_lps, b.ijk_to_lps, atol=atol_mm, rtol=0.0))


def ijk_to_lps_points(vol: Volume, points_ijk: np.ndarray) -> np.ndarray:
    """``(N, 3)`` LPS mm of ``(N, 3)`` (i, j, k) continuous indices."""
    p = np.atleast_2d(np.asarray(points_ijk, dtype=np.float64))
    return p @ vol.ijk_to_lps[:3, :3].T + vol.ijk_to_lps[:3, 3]


def lps_to_ijk_points(vol: Volume, points_lps: np.ndarray) -> np.ndarray:
    """``(N, 3)`` continuous (i, j, k) indices of ``(N, 3)`` LPS mm points."""
    p = np.atleast_2d(np.asarray(points_lps, dtype=np.float64))
    inv = np.linalg.inv(vol.ijk_to_lps)
    return p @ inv[:3, :3].T + inv[:3, 3]


# ----------------------------------------------------------------------------- slices
@dataclass(frozen=True)
class SliceGeometry:
    """How a volume is cut into 2D slices along one anatomical axis.

    Attributes:
        axis: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        array_axis: axis of the ``[k, j, i]`` array that is sliced (0 = k, 1 = j, 2 = i).
        n_slices: number of slices along it.
        spacing_rc_mm: in-plane pixel size ``(row_mm, col_mm)`` of :func:`get_slice` planes.
        normal_lps: ``(3,)`` unit anatomical normal in LPS (R, A or S direction;
            see module docstring), the same for every volume.
        positions_mm: ``(n_slices,)`` float64, projection of each slice centre on
            ``normal_lps``; ascending or descending with index depending on storage.
        thickness_mm: distance between neighbouring slice planes along the normal.
    """

    axis: str
    array_axis: int
    n_slices: int
    spacing_rc_mm: tuple[float, float]
    normal_lps: np.ndarray
    positions_mm: np.ndarray
    thickness_mm: float

    @property
    def index_step_sign(self) -> int:
        """+1 when positions grow with the slice index, -1 when they shrink."""
        if self.n_slices < 2:
            return 1
        return 1 if self.positions_mm[-1] >= self.positions_mm[0] else -1


def _check_axis(axis: str) -> str:
    a = str(axis).lower()
    if a not in NORMALS_LPS:
        raise OneShotError(f"unknown slicing axis {axis!r}: use one of axial, coronal, sagittal")
    return a


def anatomical_array_axes(ijk_to_lps: np.ndarray) -> dict[str, int]:
    """Map each of sagittal/coronal/axial to a distinct array axis (0 = k, 1 = j, 2 = i).

    The assignment maximises the summed |cosine| between each ijk direction and
    the anatomical axis (L-R for sagittal, A-P for coronal, S-I for axial), so it
    works for permuted storage (a sagittal acquisition), flips and oblique volumes.
    """
    m = np.asarray(ijk_to_lps, dtype=np.float64)[:3, :3]
    cos = np.abs(m / np.linalg.norm(m, axis=0)[None, :])  # [lps axis, ijk column]
    best, best_score = (0, 1, 2), -1.0
    for perm in itertools.permutations(range(3)):  # perm[lps axis] = ijk column
        score = sum(cos[a, perm[a]] for a in range(3))
        if score > best_score + 1e-9:
            best, best_score = perm, score
    return {name: 2 - best[lps_axis] for lps_axis, name in enumerate(AXES)}


def slice_positions_mm(vol: Volume, array_axis: int, normal_lps: np.ndarray) -> np.ndarray:
    """``(n,)`` projection on ``normal_lps`` of the centre of every slice along ``array_axis``."""
    _check_array_axis(array_axis)
    shape_ijk = np.array(vol.voxels.shape[::-1], dtype=np.float64)
    c = 2 - array_axis
    n = int(vol.voxels.shape[array_axis])
    centres = np.tile((shape_ijk - 1.0) / 2.0, (n, 1))
    centres[:, c] = np.arange(n)
    return ijk_to_lps_points(vol, centres) @ np.asarray(normal_lps, dtype=np.float64)


def slice_geometry(vol: Volume, axis: str = "axial") -> SliceGeometry:
    """The slicing of ``vol`` along an anatomical axis (see :class:`SliceGeometry`)."""
    axis = _check_axis(axis)
    array_axis = anatomical_array_axes(vol.ijk_to_lps)[axis]
    normal = NORMALS_LPS[axis].copy()
    row_c, col_c, nrm_c = _PLANE_IJK[array_axis]
    sp = np.linalg.norm(vol.ijk_to_lps[:3, :3], axis=0)
    positions = slice_positions_mm(vol, array_axis, normal)
    thickness = float(abs(vol.ijk_to_lps[:3, nrm_c] @ normal))
    normal.flags.writeable = False
    positions.flags.writeable = False
    return SliceGeometry(axis=axis, array_axis=array_axis, n_slices=int(vol.voxels.shape[array_axis]),
                         spacing_rc_mm=(float(sp[row_c]), float(sp[col_c])), normal_lps=normal,
                         positions_mm=positions, thickness_mm=thickness)


def _check_array_axis(array_axis: int) -> None:
    if array_axis not in (0, 1, 2):
        raise ValueError(f"array_axis must be 0 (k), 1 (j) or 2 (i); got {array_axis!r}")


def _slicer(array_axis: int, index: int, shape: tuple[int, ...]) -> tuple:
    _check_array_axis(array_axis)
    n = shape[array_axis]
    if not 0 <= int(index) < n:
        raise OneShotError(f"slice index {index} is outside 0..{n - 1} along array axis {array_axis}")
    sl: list[Any] = [slice(None)] * 3
    sl[array_axis] = int(index)
    return tuple(sl)


def get_slice(voxels_kji: np.ndarray, array_axis: int, index: int) -> np.ndarray:
    """The 2D ``(rows, cols)`` view of slice ``index`` along ``array_axis``
    (rule in the module docstring; read-only when the volume is)."""
    v = np.asarray(voxels_kji)
    return v[_slicer(array_axis, index, v.shape)]


def set_slice(voxels_kji: np.ndarray, array_axis: int, index: int, plane: np.ndarray) -> None:
    """Write ``plane`` (as returned by :func:`get_slice`) into ``voxels_kji`` in place.

    ``voxels_kji`` must be a writable array the caller owns (e.g. a copy of
    ``Volume.voxels``); ``plane`` is cast to its dtype.
    """
    sl = _slicer(array_axis, index, voxels_kji.shape)
    p = np.asarray(plane)
    if p.shape != voxels_kji[sl].shape:
        raise OneShotError(f"plane of shape {p.shape} does not fit slice {index} along array axis "
                           f"{array_axis} of shape {voxels_kji[sl].shape}")
    voxels_kji[sl] = p


def slice_plane_to_lps(vol: Volume, array_axis: int, index: int) -> np.ndarray:
    """``(4, 4)`` affine mapping ``(col, row, 0, 1)`` of slice ``index`` to LPS mm.

    Columns: the LPS step of one column, of one row, of one slice index, and the
    LPS position of pixel (0, 0) of the slice.
    """
    _check_array_axis(array_axis)
    a = vol.ijk_to_lps
    row_c, col_c, nrm_c = _PLANE_IJK[array_axis]
    ijk0 = np.zeros(4)
    ijk0[nrm_c] = index
    ijk0[3] = 1.0
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2] = a[:3, col_c], a[:3, row_c], a[:3, nrm_c]
    m[:3, 3] = (a @ ijk0)[:3]
    return m


# ----------------------------------------------------------------------------- resampling
def _sitk_interpolator(name: str) -> Any:
    import SimpleITK as sitk

    table = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor,
             "bspline": sitk.sitkBSpline}
    if name not in table:
        raise OneShotError(f"unknown interpolator {name!r}: use one of {', '.join(_INTERPOLATORS)}")
    return table[name]


def resample_volume(moving: Volume, reference: Volume, transform: Any = None,
                    interpolator: str = "linear", default_value: float = 0) -> Volume:
    """Resample ``moving`` onto ``reference``'s grid with SimpleITK.

    Args:
        transform: a ``SimpleITK.Transform`` mapping reference (output) physical
            LPS points to moving physical points (ITK's convention, as returned by
            a registration with the reference as fixed image); None = identity.
        interpolator: ``"nearest"`` (labels; keeps the dtype), ``"linear"`` or
            ``"bspline"`` (float32 output, float64 kept).
        default_value: value outside ``moving``.

    Returns: a new volume with ``reference``'s shape and affine, ``moving``'s name and meta.
    """
    import SimpleITK as sitk

    interp = _sitk_interpolator(interpolator)
    img = volume_to_sitk(moving)
    if interpolator != "nearest" and img.GetPixelID() != sitk.sitkFloat64:
        img = sitk.Cast(img, sitk.sitkFloat32)
    origin, spacing, direction = sitk_geometry(reference.ijk_to_lps)
    f = sitk.ResampleImageFilter()
    f.SetOutputOrigin(origin)
    f.SetOutputSpacing(spacing)
    f.SetOutputDirection(direction)
    f.SetSize([int(s) for s in reference.voxels.shape[::-1]])
    f.SetInterpolator(interp)
    f.SetDefaultPixelValue(float(default_value))
    f.SetOutputPixelType(img.GetPixelID())
    f.SetTransform(transform if transform is not None else sitk.Transform(3, sitk.sitkIdentity))
    out = sitk.GetArrayFromImage(f.Execute(img))
    if moving.voxels.dtype == bool and interpolator == "nearest":
        out = out.astype(bool)
    return Volume(voxels=out, ijk_to_lps=reference.ijk_to_lps, name=moving.name, meta=dict(moving.meta))


def _resize(plane: np.ndarray, shape_rc: tuple[int, int], interpolator: str) -> np.ndarray:
    """Resize ``(H, W)`` or ``(H, W, C)`` with pixel-centre alignment (edges aligned)."""
    h, w = plane.shape[:2]
    oh, ow = int(shape_rc[0]), int(shape_rc[1])
    if (oh, ow) == (h, w):
        return plane.copy()
    if interpolator == "nearest":
        rows = np.minimum(((np.arange(oh) + 0.5) * (h / oh)).astype(np.int64), h - 1)
        cols = np.minimum(((np.arange(ow) + 0.5) * (w / ow)).astype(np.int64), w - 1)
        return plane[rows[:, None], cols[None, :]]
    if interpolator != "linear":
        raise OneShotError(f"unknown interpolator {interpolator!r}: use linear or nearest")
    import cv2

    src = plane if plane.dtype in (np.float32, np.float64) else plane.astype(np.float32)
    return cv2.resize(src, (ow, oh), interpolation=cv2.INTER_LINEAR)


def inplane_resample_square(plane: np.ndarray, spacing_rc_mm: tuple[float, float],
                            interpolator: str = "linear") -> tuple[np.ndarray, float]:
    """Resample a 2D plane to square pixels of the finer of its two spacings.

    Args:
        plane: ``(H, W)`` or ``(H, W, C)``; not modified.
        spacing_rc_mm: ``(row_mm, col_mm)``.
        interpolator: ``"linear"`` (images; integer input gives float32) or
            ``"nearest"`` (labels; keeps dtype).

    Returns: ``(plane_sq, spacing_mm)`` with ``plane_sq`` of shape
    ``(round(H * row_mm / s), round(W * col_mm / s))`` and ``s = spacing_mm``.
    Square input is returned as a copy. Undo with :func:`inplane_resample_back`.
    """
    p = np.asarray(plane)
    sr, sc = (float(s) for s in spacing_rc_mm)
    if sr <= 0 or sc <= 0:
        raise OneShotError(f"pixel spacing must be positive; got {spacing_rc_mm}")
    s = min(sr, sc)
    shape = (max(1, int(round(p.shape[0] * sr / s))), max(1, int(round(p.shape[1] * sc / s))))
    return _resize(p, shape, interpolator), s


def inplane_resample_back(plane_sq: np.ndarray, shape_rc: tuple[int, int],
                          interpolator: str = "nearest") -> np.ndarray:
    """Inverse of :func:`inplane_resample_square`: back to the original ``(H, W)``
    (``"nearest"`` for labels, the default)."""
    return _resize(np.asarray(plane_sq), shape_rc, interpolator)
