"""Small synthetic MRML cases for the self-test and the pytest suite (offline, no data).

A case is a noisy volume holding a bright ellipsoid, a segmentation whose
segment holds the ellipsoid on a few annotated slices only, and the full
ground truth for checking. Geometry is configurable (spacing, origin,
direction) so LPS/RAS and oblique handling can be tested.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np


@dataclass
class SyntheticCase:
    """Nodes of a synthetic case.

    Attributes:
        volume_node: ``vtkMRMLScalarVolumeNode`` (float32 voxels in [0, 1]).
        segmentation_node: ``vtkMRMLSegmentationNode`` with one segment.
        segment_id: the annotated segment.
        truth_kji: ``[k, j, i]`` uint8 full ground truth of the ellipsoid.
        annotated: slice indices (along ``array_axis``) written into the segment.
    """

    volume_node: Any
    segmentation_node: Any
    segment_id: str
    truth_kji: np.ndarray
    annotated: tuple[int, ...]
    array_axis: int


def ellipsoid(shape_kji: Sequence[int], center_kji: Sequence[float],
              radii_kji: Sequence[float]) -> np.ndarray:
    """``[k, j, i]`` uint8 mask of an axis-aligned ellipsoid (voxel units)."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape_kji], indexing="ij")
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center_kji, radii_kji))
    return (r2 <= 1.0).astype(np.uint8)


def blob_voxels(truth_kji: np.ndarray, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """float32 image: 0.2 background, 0.8 inside the mask, Gaussian noise, clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    img = np.where(truth_kji > 0, 0.8, 0.2) + rng.normal(0.0, noise, truth_kji.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def add_volume(scene: Any, voxels_kji: np.ndarray, name: str, spacing: Sequence[float] = (1, 1, 1),
               origin: Sequence[float] = (0, 0, 0), directions: np.ndarray | None = None) -> Any:
    """A scalar volume node holding a copy of ``voxels_kji``.

    Args:
        spacing: ``(i, j, k)`` mm; origin: RAS mm; directions: ``(3, 3)`` IJK->RAS
            direction matrix (columns = i, j, k axes), identity when None.
    """
    import slicer.util
    import vtk

    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.SetSpacing(*[float(s) for s in spacing])
    node.SetOrigin(*[float(o) for o in origin])
    if directions is not None:
        m = vtk.vtkMatrix4x4()
        for r in range(3):
            for c in range(3):
                m.SetElement(r, c, float(directions[r][c]))
        node.SetIJKToRASDirectionMatrix(m)
    slicer.util.updateVolumeFromArray(node, np.array(voxels_kji, copy=True))
    return node


@dataclass(frozen=True)
class CaseSpec:
    """What :func:`make_case` builds.

    Attributes:
        shape_kji: ``(k, j, i)`` voxels.
        annotated: slice indices (along ``array_axis``) written into the segment.
        array_axis: array axis the annotated slices are taken along.
        spacing: ``(i, j, k)`` mm; origin: RAS mm; directions: ``(3, 3)`` IJK->RAS
            direction matrix (identity when None).
        seed: seed of the image noise.
        name: volume node name (the segmentation is "<name> segmentation").
        truth_kji: the ground truth; None = an ellipsoid filling 70 % of each axis.
        segment_name, color: of the one segment.
    """

    shape_kji: Sequence[int] = (12, 40, 48)
    annotated: Sequence[int] = (6,)
    array_axis: int = 0
    spacing: Sequence[float] = (1.0, 1.0, 2.0)
    origin: Sequence[float] = (0, 0, 0)
    directions: np.ndarray | None = field(default=None, compare=False)
    seed: int = 0
    name: str = "OneShotSAM synthetic"
    truth_kji: np.ndarray | None = field(default=None, compare=False)
    segment_name: str = "Blob"
    color: Sequence[float] = (0.9, 0.3, 0.2)


def make_case(scene: Any, spec: CaseSpec | None = None, **changes: Any) -> SyntheticCase:
    """Volume + segmentation with the truth written on the annotated slices only.

    ``spec`` (default :class:`CaseSpec`) with ``changes`` (its field names, e.g.
    ``annotated=(2, 9)``) replacing fields."""
    from OneShotSAMLib.mrml_bridge import SliceWriter
    from oneshotsam.geometry import get_slice

    s = replace(spec or CaseSpec(), **changes)
    annotated, array_axis, name, truth_kji = s.annotated, s.array_axis, s.name, s.truth_kji
    shape = tuple(int(n) for n in s.shape_kji)
    if truth_kji is None:
        center = [(n - 1) / 2.0 for n in shape]
        radii = [max(n * 0.35, 1.5) for n in shape]
        truth_kji = ellipsoid(shape, center, radii)
    vol = add_volume(scene, blob_voxels(truth_kji, s.seed), name, s.spacing, s.origin, s.directions)
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{name} segmentation")
    seg.CreateDefaultDisplayNodes()
    seg.SetReferenceImageGeometryParameterFromVolumeNode(vol)
    sid = seg.GetSegmentation().AddEmptySegment("", s.segment_name, list(s.color))
    writer = SliceWriter(seg, vol)
    for k in annotated:
        writer.write(sid, array_axis, int(k), get_slice(truth_kji, array_axis, int(k)))
    return SyntheticCase(vol, seg, sid, truth_kji, tuple(int(k) for k in annotated), array_axis)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two binary arrays (1.0 when both are empty)."""
    from oneshotsam.evaluate import dice as label_dice

    return label_dice(np.asarray(a) > 0, np.asarray(b) > 0, 1)
