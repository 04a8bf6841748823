"""MRML <-> engine conversions: volume nodes, segments, per-slice writes.

Frames: MRML volume nodes map ``(i, j, k)`` to RAS through ``IJKToRAS`` and
their parent transforms; engine :class:`oneshotsam.types.Volume` objects map
to LPS (``ijk_to_lps``). The RAS/LPS conversion is done by
:mod:`oneshotsam.geometry` only. Arrays are ``[k, j, i]`` on both sides.

Nothing here modifies a user's volume node: voxels are copied, linear parent
transforms are folded into the copied geometry (the node keeps its transform).
Only MRML, VTK and numpy are used (no Qt), so this runs headless on slicer-core.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from oneshotsam.errors import OneShotError


def _vtk_to_np(m: Any) -> np.ndarray:
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)


def _np_to_vtk(a: np.ndarray) -> Any:
    import vtk

    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(a[r, c]))
    return m


def node_to_world_matrix(node: Any) -> np.ndarray:
    """``(4, 4)`` local-RAS -> world-RAS matrix of a transformable node's parents.

    Raises:
        OneShotError: the node sits under a non-linear transform (harden it first).
    """
    tnode = node.GetParentTransformNode()
    if tnode is None:
        return np.eye(4)
    if not tnode.IsTransformToWorldLinear():
        raise OneShotError(
            f"'{node.GetName()}' is under a non-linear transform ('{tnode.GetName()}'): "
            "harden the transform on a copy of the volume (Transforms module, 'Harden "
            "transform') and select that copy")
    import vtk

    m = vtk.vtkMatrix4x4()
    tnode.GetMatrixTransformToWorld(m)
    return _vtk_to_np(m)


def ijk_to_world_ras(volume_node: Any) -> np.ndarray:
    """``(4, 4)`` affine from ``(i, j, k, 1)`` to WORLD RAS mm (parent transforms applied)."""
    import vtk

    m = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(m)
    return node_to_world_matrix(volume_node) @ _vtk_to_np(m)


def volume_from_node(volume_node: Any, name: str | None = None) -> "Any":
    """Copy a scalar volume node into an engine ``Volume`` (LPS world frame).

    Returns:
        ``oneshotsam.types.Volume`` with ``voxels`` a ``[k, j, i]`` copy in the
        node's dtype and ``ijk_to_lps`` = LPS version of the world IJK->RAS affine.
    """
    import slicer.util

    from oneshotsam.geometry import ras_to_lps_affine
    from oneshotsam.types import Volume

    if volume_node is None or volume_node.GetImageData() is None:
        raise OneShotError("no volume selected (or the volume holds no image data): "
                           "select a loaded scalar volume")
    arr = slicer.util.arrayFromVolume(volume_node)
    if arr.ndim != 3:
        raise OneShotError(f"'{volume_node.GetName()}' is not a single-component 3D volume "
                           f"(array shape {arr.shape}); convert it to a scalar volume first")
    return Volume(voxels=np.array(arr, copy=True),
                  ijk_to_lps=ras_to_lps_affine(ijk_to_world_ras(volume_node)),
                  name=name or volume_node.GetName())


def labels_from_segments(segmentation_node: Any, segment_ids: Sequence[str],
                         volume_node: Any) -> np.ndarray:
    """Segments as one label map in a volume node's grid.

    Segment ``segment_ids[n]`` gets label value ``n + 1`` (later segments win
    where segments overlap). Parent transforms of both nodes are honoured by
    Slicer's export (resampling into the volume's grid, nearest neighbour).

    Returns:
        ``[k, j, i]`` uint8 array of the volume's shape (a copy).
    """
    import slicer
    import slicer.util

    shape = slicer.util.arrayFromVolume(volume_node).shape
    out = np.zeros(shape, dtype=np.uint8)
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    scene = volume_node.GetScene()
    for value, seg_id in enumerate(segment_ids, start=1):
        colors_before = _node_ids(scene, "vtkMRMLColorNode")
        tmp = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__oneshotsam_tmp__")
        try:
            if not logic.ExportSegmentsToLabelmapNode(segmentation_node, [seg_id], tmp, volume_node):
                raise OneShotError(f"could not read segment '{seg_id}' in the grid of "
                                   f"'{volume_node.GetName()}'")
            arr = slicer.util.arrayFromVolume(tmp)
            if arr.shape != shape:
                raise OneShotError("segment export did not match the volume grid "
                                   f"({arr.shape} vs {shape})")
            out[arr > 0] = value
        finally:
            _remove_with_helpers(scene, tmp, colors_before)
    return out


def _node_ids(scene: Any, class_name: str) -> set[str]:
    return {scene.GetNthNodeByClass(n, class_name).GetID()
            for n in range(scene.GetNumberOfNodesByClass(class_name))}


def _remove_with_helpers(scene: Any, node: Any, colors_before: set[str]) -> None:
    """Remove a temporary labelmap node with the display / storage nodes the export
    gave it and the colour table it created (one named after the segmentation), so
    that nothing of it is left in the scene (the Data module would list it)."""
    helpers = [node.GetNthDisplayNode(n) for n in range(node.GetNumberOfDisplayNodes())]
    helpers += [node.GetNthStorageNode(n) for n in range(node.GetNumberOfStorageNodes())]
    created = [d.GetColorNode() for d in helpers if hasattr(d, "GetColorNode") and d.GetColorNode() is not None
               and d.GetColorNode().GetID() not in colors_before]
    scene.RemoveNode(node)
    for h in helpers + created:
        if h is not None and h.GetScene() is scene:
            scene.RemoveNode(h)


def slice_extent(shape_kji: Sequence[int], array_axis: int, slice_index: int) -> tuple[int, ...]:
    """VTK extent ``(i0, i1, j0, j1, k0, k1)`` of one slice of a ``[k, j, i]`` grid."""
    k, j, i = (int(s) for s in shape_kji)
    ext = [0, i - 1, 0, j - 1, 0, k - 1]
    pair = {0: 4, 1: 2, 2: 0}[int(array_axis)]
    ext[pair] = ext[pair + 1] = int(slice_index)
    return tuple(ext)


class SliceWriter:
    """Writes 2D slices of one target grid into segments of a segmentation node.

    The one-slice image is written with ``MODE_MERGE_MIN`` then
    ``MODE_MERGE_MAX`` restricted to that slice's extent: exactly that slice of
    the segment becomes the mask; other slices and other segments stay as they are.
    The slab carries the segment's label value: on a shared labelmap layer
    Slicer 5.12 copies the written voxel values as they are (a slab of ones
    written into a segment with label value 2 would land in the segment with
    label value 1; measured in test_slicer_logic).
    """

    def __init__(self, segmentation_node: Any, volume_node: Any) -> None:
        import slicer
        import slicer.util

        self.segmentation_node = segmentation_node
        self.shape_kji = tuple(slicer.util.arrayFromVolume(volume_node).shape)
        # IJK -> segmentation-node local frame (both parent transforms folded in)
        seg_to_world = node_to_world_matrix(segmentation_node)
        self.ijk_to_seg = np.linalg.inv(seg_to_world) @ ijk_to_world_ras(volume_node)
        self._logic = slicer.vtkSlicerSegmentationsModuleLogic

    def slab(self, array_axis: int, slice_index: int, plane: np.ndarray) -> np.ndarray:
        """The ``[k, j, i]`` one-voxel-thick slab holding ``plane`` (uint8 0/1)."""
        from oneshotsam.geometry import set_slice

        shape = list(self.shape_kji)
        shape[int(array_axis)] = 1
        slab = np.zeros(shape, dtype=np.uint8)
        set_slice(slab, int(array_axis), 0, (np.asarray(plane) > 0).astype(np.uint8))
        return slab

    def write(self, segment_id: str, array_axis: int, slice_index: int, plane: np.ndarray) -> None:
        """Make slice ``slice_index`` of ``segment_id`` equal to ``plane > 0``."""
        import slicer
        import vtk
        from vtk.util import numpy_support

        n = self.shape_kji[int(array_axis)]
        if not 0 <= int(slice_index) < n:
            raise OneShotError(f"slice {slice_index} is outside the volume (0..{n - 1})")
        value = int(self.segmentation_node.GetSegmentation().GetSegment(segment_id).GetLabelValue())
        slab = self.slab(array_axis, slice_index, plane) * np.uint8(max(1, min(value, 255)))
        ext = slice_extent(self.shape_kji, array_axis, slice_index)
        img = slicer.vtkOrientedImageData()
        img.SetExtent(*ext)
        img.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        scal = numpy_support.numpy_to_vtk(np.ascontiguousarray(slab).ravel(), deep=True,
                                          array_type=vtk.VTK_UNSIGNED_CHAR)
        img.GetPointData().SetScalars(scal)
        img.SetImageToWorldMatrix(_np_to_vtk(self.ijk_to_seg))
        for mode in (self._logic.MODE_MERGE_MIN, self._logic.MODE_MERGE_MAX):
            if not self._logic.SetBinaryLabelmapToSegment(img, self.segmentation_node,
                                                          segment_id, mode, ext):
                raise RuntimeError(f"writing slice {slice_index} into segment {segment_id} failed")


def plane_hash(plane: np.ndarray) -> str:
    """Short content hash of a 2D label plane (values and shape)."""
    b = np.ascontiguousarray(np.asarray(plane), dtype=np.uint16)
    h = hashlib.sha1(b.tobytes())
    h.update(str(b.shape).encode())
    return h.hexdigest()[:16]


def copy_segment_style(source: Any, target: Any) -> None:
    """Copy name, colour and terminology of one vtkSegment to another."""
    target.SetName(source.GetName())
    target.SetColor(source.GetColor())
    if source.HasTerminology():
        target.SetTerminology(source.GetTerminology())


def shape_kji(volume_node: Any) -> tuple[int, int, int]:
    """``(k, j, i)`` dimensions of a volume node's image (no voxel copy)."""
    image = volume_node.GetImageData() if volume_node is not None else None
    if image is None:
        raise OneShotError("no volume selected (or the volume holds no image data): "
                           "select a loaded scalar volume")
    i, j, k = image.GetDimensions()
    return int(k), int(j), int(i)


def array_axis_of(volume_node: Any, axis: str) -> int:
    """Array axis (0 = k, 1 = j, 2 = i) of anatomical ``axis`` in a volume node
    (from its world geometry only: no voxel copy)."""
    from oneshotsam.geometry import anatomical_array_axes, ras_to_lps_affine

    axes = anatomical_array_axes(ras_to_lps_affine(ijk_to_world_ras(volume_node)))
    if axis not in axes:
        raise OneShotError(f"unknown slicing axis {axis!r}; choose axial, coronal or sagittal")
    return int(axes[axis])


def slice_index_at_ras(volume_node: Any, ras_world: Sequence[float], axis: str) -> tuple[int, int]:
    """``(array_axis, slice_index)`` of the slice along ``axis`` through a world RAS point
    (e.g. the centre of the slice view showing that axis); the index is clamped into
    the volume. Reads the geometry only (no voxel copy)."""
    a = array_axis_of(volume_node, axis)
    ijk = np.linalg.inv(ijk_to_world_ras(volume_node)) @ np.r_[np.asarray(ras_world, float)[:3], 1.0]
    k = int(round(float(ijk[2 - a])))
    return a, int(min(max(k, 0), shape_kji(volume_node)[a] - 1))


def slice_center_ras(volume_node: Any, array_axis: int, slice_index: int) -> np.ndarray:
    """World RAS ``(3,)`` of the centre of one slice (to jump the views there)."""
    import slicer.util

    shape = slicer.util.arrayFromVolume(volume_node).shape
    ijk = [(shape[2] - 1) / 2.0, (shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0]
    ijk[2 - int(array_axis)] = float(slice_index)
    return (ijk_to_world_ras(volume_node) @ np.r_[ijk, 1.0])[:3]
