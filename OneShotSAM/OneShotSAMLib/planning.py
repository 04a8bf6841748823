"""What a run will do, decided before anything is loaded or written.

Input checks (with the reason Run is not possible yet), the target volumes
(plain volumes or items of a volume sequence), the reference slices (explicit,
the slice shown in the view of the slicing axis, or every annotated slice)
and the new output segmentation of a follow-up target. MRML + numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from oneshotsam.errors import OneShotError

from OneShotSAMLib import parameters as P
from OneShotSAMLib.mrml_bridge import copy_segment_style
from OneShotSAMLib.review import Output


def segment_ids(seg_node: Any, s: P.RunSettings) -> list[str]:
    """The annotated segments of the run, checked against the segmentation."""
    seg = seg_node.GetSegmentation()
    if not s.segment_ids:
        raise OneShotError("select the segment holding the annotation")
    for sid in s.segment_ids:
        if seg.GetSegment(sid) is None:
            raise OneShotError(f"segment '{sid}' is not in '{seg_node.GetName()}': "
                               "select an existing segment")
    return list(s.segment_ids)


def target_nodes(node: Any, s: P.RunSettings, ref_node: Any) -> list[tuple[Any, Any, int | None]]:
    """``(volume node, sequence node or None, item or None)`` of every follow-up target."""
    if s.target_mode == "self":
        return []
    if s.target_mode == "volumes":
        found = [(n, None, None) for n in P.target_volume_nodes(node)
                 if n is not None and n.GetID() != ref_node.GetID()]
    else:
        seq = node.GetNodeReference(P.REF_TARGET_SEQUENCE)
        if seq is None:
            raise OneShotError("select the volume sequence holding the follow-up visits")
        found = [(seq.GetNthDataNode(i), seq, i) for i in range(seq.GetNumberOfDataNodes())]
        found = [t for t in found if t[0] is not None and t[0].IsA("vtkMRMLScalarVolumeNode")
                 and not same_volume(t[0], ref_node)]
    if not found:
        raise OneShotError("no target volumes: choose follow-up volumes (or a sequence) "
                           "other than the reference, or target 'rest of this volume'")
    return found


def reference_slices(scene: Any, node: Any, s: P.RunSettings, ref_node: Any,
                     annotated: list[int]) -> list[int]:
    """The annotated slices used as references (along ``s.axis``).

    Explicit ``ReferenceSlices`` win; else ``ReferenceSliceSource`` "view" takes the
    slice shown in the view of the slicing axis; else every annotated slice.
    """
    from OneShotSAMLib.navigation import view_slice_index

    if s.reference_slices is not None:
        missing = [k for k in s.reference_slices if k not in annotated]
        if missing:
            raise OneShotError(f"reference slice(s) {missing} hold no annotation along the "
                               f"{s.axis} axis; annotated slices are {annotated}")
        return sorted(set(int(k) for k in s.reference_slices))
    if P.reference_source(node) == "view":
        k = view_slice_index(scene, ref_node, s.axis)
        if k is None:
            raise OneShotError(f"no slice view shows the {s.axis} orientation: set a view to "
                               f"{s.axis} or choose 'All annotated slices'")
        if k not in annotated:
            raise OneShotError(f"the {s.axis} view shows slice {k} of '{ref_node.GetName()}', "
                               f"which holds no annotation: scroll the view to an annotated "
                               f"slice ({annotated}) or choose 'All annotated slices'")
        return [k]
    return list(annotated)


def new_output(scene: Any, seg_node: Any, seg_ids: list[str], target: Any,
               sequence_node: Any = None, item: int | None = None) -> Output:
    """A new segmentation for one follow-up target, segments styled like the reference."""
    import slicer

    name = f"{target.GetName()} OneShotSAM"
    out_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    out_node.CreateDefaultDisplayNodes()
    if target.GetScene() is scene and target.GetParentTransformNode() is not None:
        out_node.SetAndObserveTransformNodeID(target.GetParentTransformNode().GetID())
    out_node.SetReferenceImageGeometryParameterFromVolumeNode(target)
    ids = []
    for sid in seg_ids:
        segment = slicer.vtkSegment()
        copy_segment_style(seg_node.GetSegmentation().GetSegment(sid), segment)
        new_id = out_node.GetSegmentation().GenerateUniqueSegmentID(sid)
        out_node.GetSegmentation().AddSegment(segment, new_id)
        ids.append(new_id)
    return Output(target, out_node, ids, target.GetName(), created=True,
                  sequence_node=sequence_node, item=item)


def same_volume(a: Any, b: Any) -> bool:
    """Same voxels and geometry (a sequence item that is the reference itself)."""
    import slicer.util

    from OneShotSAMLib.mrml_bridge import ijk_to_world_ras

    try:
        va, vb = slicer.util.arrayFromVolume(a), slicer.util.arrayFromVolume(b)
    except Exception:  # noqa: BLE001 - no image data
        return False
    return (va.shape == vb.shape and np.allclose(ijk_to_world_ras(a), ijk_to_world_ras(b))
            and np.array_equal(va, vb))


def blockers(node: Any) -> list[str]:
    """Why Run is not possible with these settings, cheapest checks only ([] = ready).

    No voxel is read: an empty annotation is reported when Run is pressed.
    """
    from OneShotSAMLib.weights import resolve_checkpoint

    try:
        s = P.read_settings(node)
    except OneShotError as exc:
        return [str(exc)]
    out = []
    ref = node.GetNodeReference(P.REF_REFERENCE_VOLUME)
    seg = node.GetNodeReference(P.REF_SEGMENTATION)
    if ref is None:
        out.append("choose the reference volume (the volume you annotated)")
    if seg is None or not s.segment_ids:
        out.append("choose the segment that holds your annotation")
    elif any(seg.GetSegmentation().GetSegment(sid) is None for sid in s.segment_ids):
        out.append(f"the chosen segment is no longer in '{seg.GetName()}': choose it again")
    if s.target_mode == "volumes" and ref is not None and not any(
            n is not None and n.GetID() != ref.GetID() for n in P.target_volume_nodes(node)):
        out.append("tick at least one follow-up volume (other than the reference)")
    if s.target_mode == "sequence" and node.GetNodeReference(P.REF_TARGET_SEQUENCE) is None:
        out.append("choose the volume sequence holding the follow-up visits")
    try:
        resolve_checkpoint(s.method, s.backend, s.checkpoint)
    except OneShotError as exc:
        out.append(str(exc))
    return out
