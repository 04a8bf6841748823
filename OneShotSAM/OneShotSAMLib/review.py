"""Review and correct: which slices did the user change since the last run?

The Logic records, per output segmentation, a content hash of every slice it
wrote (parameter node ``RunRecord``). A slice is the user's when it now holds
labels the run did not write (annotation, added slice) or when its content
differs from what the run wrote (edited; an emptied slice counts too). User
slices are never rewritten; those holding labels become references of the
next run ("Update"). MRML + numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from oneshotsam.errors import OneShotError

from OneShotSAMLib.mrml_bridge import SliceWriter, labels_from_segments, plane_hash, volume_from_node


@dataclass
class Output:
    """One output of a run: a target volume and the segments written for it.

    Attributes:
        array_axis: sliced axis of the target's ``[k, j, i]`` array (-1 until known).
        protected: slice indices never written (the user's slices).
        written: slice index -> :func:`plane_hash` of the label plane written.
        created: the segmentation node was created by this run (undo removes it).
        sequence_node, item: for a sequence target, the volume sequence (main scene)
            and the item number of ``volume_node`` in it (None otherwise).
    """

    volume_node: Any
    seg_node: Any
    segment_ids: list[str]
    target_name: str
    array_axis: int = -1
    protected: set[int] = field(default_factory=set)
    written: dict[int, str] = field(default_factory=dict)
    writer: SliceWriter | None = None
    created: bool = False
    sequence_node: Any = None
    item: int | None = None


def resolve_volume(scene: Any, o: dict) -> Any:
    """The target volume node of a RunRecord output (a sequence item or a scene node)."""
    if o.get("sequence"):
        seq = scene.GetNodeByID(o["sequence"])
        return None if seq is None else seq.GetNthDataNode(int(o["sequence_item"]))
    return scene.GetNodeByID(o["volume"])


def user_slices(labels_kji: Any, array_axis: int, written: dict[str, str]) -> tuple[set[int], set[int]]:
    """``(user, labelled)`` slice sets of a label volume given the run's hashes.

    ``user``: slices holding labels the run did not write, or whose content
    differs from what it wrote; ``labelled``: slices with any label.
    """
    from oneshotsam.geometry import get_slice

    user, labelled = set(), set()
    for k in range(labels_kji.shape[array_axis]):
        plane = get_slice(labels_kji, array_axis, k)
        old = written.get(str(k))
        has = bool(plane.any())
        if (old is None and has) or (old is not None and plane_hash(plane) != old):
            user.add(k)
        if has:
            labelled.add(k)
    return user, labelled


def plan_update(scene: Any, record: dict) -> tuple[list[Output], list[set[int]], list[int]]:
    """Outputs of the last run, extra reference slices per output, reference slices.

    Self mode: references = every user slice holding labels; fixed = those that
    were not references of the first run. Follow-up mode: per target, the user
    slices holding labels (few-shot within the target).

    Raises:
        OneShotError: a node of the last run is gone, or (follow-ups) nothing was edited.
    """
    from oneshotsam.geometry import slice_geometry

    outs: list[Output] = []
    fixed: list[set[int]] = []
    for o in record["outputs"]:
        vol = resolve_volume(scene, o)
        segn = scene.GetNodeByID(o["segmentation"])
        if vol is None or segn is None:
            raise OneShotError("a node of the last run was deleted: press Run instead of Update")
        a = int(o["array_axis"])
        if a < 0:
            a = slice_geometry(volume_from_node(vol), record["axis"]).array_axis
        out = Output(vol, segn, list(o["segment_ids"]), o["target_name"], a)
        if o.get("sequence"):
            out.sequence_node, out.item = scene.GetNodeByID(o["sequence"]), int(o["sequence_item"])
        lab = labels_from_segments(segn, out.segment_ids, vol)
        user, labelled = user_slices(lab, a, o["written"])
        out.protected = set(o.get("protected", [])) | user
        outs.append(out)
        fixed.append((user | set(o.get("protected", []))) & labelled)
    if record["mode"] == "self":
        return outs, [fixed[0] - set(record["reference_slices"])], sorted(fixed[0])
    if not any(fixed):
        raise OneShotError("no slice was edited since the last run: correct some slices "
                           "in the Segment Editor first, then press Update")
    return outs, fixed, list(record["reference_slices"])
