"""Review and correct: which slices did the user change since the last run?

The Logic records, per output segmentation, a content hash of every slice it
wrote (parameter node ``RunRecord``). A slice is the user's when it now holds
labels the run did not write (annotation, added slice) or when its content
differs from what the run wrote (edited; an emptied slice counts too). User
slices are never rewritten; those holding labels are corrections of the next
run ("Update"), emptied ones are erased (:func:`update_session`). MRML + numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

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


def update_session(sess: Any, self_mode: bool, reference: tuple[Any, Any], outputs: list[Output],
                   fixed: list[set[int]], progress: Any, on_slice: Callable[[Any], None],
                   call: Callable[[Callable[[], Any]], Any]) -> tuple[list[dict], bool]:
    """Update a kept :class:`~oneshotsam.volume.session.PropagationSession` with each
    output's corrections (``fixed``: labelled slices the user changed) and erased slices
    (protected ones the user emptied); ``reference`` = (engine Volume, labels) of the
    reference (self mode). Returns (engine reports, cancelled)."""
    from oneshotsam.geometry import volume_like

    reports: list[dict] = []
    for t, out in enumerate(outputs):
        if self_mode:
            vol, lab = reference
        else:
            vol = volume_from_node(out.volume_node)
            lab = call(lambda out=out: labels_from_segments(out.seg_node, out.segment_ids,
                                                            out.volume_node))
        axes = tuple(a for a in range(3) if a != out.array_axis)
        labelled = {int(k) for k in np.flatnonzero(np.asarray(lab).any(axis=axes))}
        erased = sorted(set(out.protected) - labelled)
        if not fixed[t] and not erased:
            continue
        res = sess.update(volume_like(vol, lab), sorted(fixed[t]), erased,
                          target_index=None if self_mode else t, progress=progress,
                          on_slice=on_slice)
        reports.append(res.report)
        if res.cancelled or getattr(progress, "cancelled", False):
            return reports, True
    return reports, False
