"""The review table and the annotation summary of the browser app (no trame here).

* :func:`annotated_slices`: the slices of the reference volume that hold the
  annotation, along the run's slicing axis (every one becomes a reference and
  is kept as painted): the page says which before a run.
* :func:`corrected_slices`: the written slices the user changed since the run
  wrote them (the Logic's run record keeps a hash of every written slice;
  the same test as Update's, :func:`OneShotSAMLib.review.user_slices`).
* :func:`summarise` puts both together for the page; :class:`SegmentWatch`
  calls it (debounced) when a watched segmentation changes.
* :class:`ReviewTable`: the rows as the page shows them (slice, confidence,
  state flagged / corrected / approved; in the Logic's review order), the row
  shown, next / previous flagged row, approval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def annotated_slices(ref_node: Any, seg_node: Any, segment_ids: list[str], axis: str) -> list[int]:
    """0-based indices (along ``axis`` of the reference) of the slices holding any
    of ``segment_ids``; [] when nothing is painted."""
    from oneshotsam.geometry import slice_geometry

    from OneShotSAMLib.mrml_bridge import labels_from_segments, volume_from_node

    if ref_node is None or seg_node is None or not segment_ids:
        return []
    labels = labels_from_segments(seg_node, segment_ids, ref_node)
    if not labels.any():
        return []
    a = slice_geometry(volume_from_node(ref_node), axis).array_axis
    return [int(k) for k in np.flatnonzero(labels.any(axis=tuple(x for x in range(3) if x != a)))]


def describe_annotated(slices: list[int]) -> tuple[str, bool]:
    """The page's line about the annotated slices and whether it is a warning."""
    if not slices:
        return "nothing painted yet", False
    if len(slices) == 1:
        return f"annotated: slice {slices[0]}", False
    shown = ", ".join(str(k) for k in slices[:12]) + (", ..." if len(slices) > 12 else "")
    return (f"{len(slices)} slices are annotated ({shown}): each is used as a reference and "
            "kept as painted. Erase the ones you did not mean to paint.", True)


def corrected_slices(scene: Any, record: dict) -> set[tuple[int, int]]:
    """``(output index, slice)`` of the written slices changed since the run."""
    from OneShotSAMLib.mrml_bridge import labels_from_segments
    from OneShotSAMLib.review import resolve_volume, user_slices

    out: set[tuple[int, int]] = set()
    for t, o in enumerate((record or {}).get("outputs", [])):
        vol, seg = resolve_volume(scene, o), scene.GetNodeByID(o["segmentation"])
        if vol is None or seg is None or int(o.get("array_axis", -1)) < 0:
            continue
        lab = labels_from_segments(seg, list(o["segment_ids"]), vol)
        user, _ = user_slices(lab, int(o["array_axis"]), o["written"])
        out |= {(t, k) for k in user if str(k) in o["written"]}
    return out


@dataclass
class ReviewTable:
    """What the review table shows (UI thread only).

    Attributes:
        corrected: ``(output index, slice)`` changed by the user since the run.
        approved: ``(output index, slice)`` the user approved.
        current: index (into the rows given to :meth:`rows`) of the row shown, or None.
    """

    corrected: set[tuple[int, int]] = field(default_factory=set)
    approved: set[tuple[int, int]] = field(default_factory=set)
    current: int | None = None

    def state(self, row: Any) -> str:
        key = (row.output_index, row.slice_index)
        if key in self.corrected:
            return "corrected"
        if key in self.approved:
            return "approved"
        return "flagged" if row.flagged else ""

    def rows(self, rows: list[Any]) -> list[dict[str, Any]]:
        """The page's rows (``rows`` already in review order)."""
        return [{"i": i, "slice": r.slice_index, "target": r.target_name,
                 "conf": f"{r.confidence:.2f}", "flagged": bool(r.flagged), "state": self.state(r)}
                for i, r in enumerate(rows)]

    def step_flagged(self, rows: list[Any], step: int) -> int | None:
        """Index of the next (``step`` = 1) or previous (-1) flagged row after the
        current one, wrapping around; None when no row is flagged."""
        flagged = [i for i, r in enumerate(rows) if r.flagged]
        if not flagged:
            return None
        cur = -1 if self.current is None else self.current
        if step > 0:
            after = [i for i in flagged if i > cur]
            return after[0] if after else flagged[0]
        before = [i for i in flagged if i < cur] if self.current is not None else []
        return before[-1] if before else flagged[-1]

    def toggle_approved(self, row: Any) -> None:
        key = (row.output_index, row.slice_index)
        self.approved.symmetric_difference_update({key})


def summarise(param_node: Any, ref_node: Any, editor: Any) -> tuple[str, bool, set[tuple[int, int]]]:
    """``(annotation line, is a warning, corrected rows)``: before a run the
    annotated slices of the editor's segmentation in ``ref_node``; after it the
    corrected slices of the run's outputs."""
    from OneShotSAMLib import parameters as P

    record = P.read_run_record(param_node)
    if record:
        return "", False, corrected_slices(param_node.GetScene(), record)
    seg = editor.active_segmentation_node
    ids = list(editor.get_segment_ids()) if seg is not None else []
    text, warn = describe_annotated(annotated_slices(ref_node, seg, ids, P.read_settings(param_node).axis))
    return text, warn, set()


class SegmentWatch:
    """Calls ``on_change`` once, ``delay_s`` after the last of a burst of changes of
    any watched segmentation (a brush stroke modifies it many times); UI thread."""

    def __init__(self, on_change: Any, delay_s: float = 0.3) -> None:
        self.on_change, self.delay_s = on_change, delay_s
        self._watched: set[str] = set()
        self._handle: Any = None

    def watch(self, nodes: list[Any]) -> None:
        import slicer

        for node in nodes:
            if node is None or node.GetID() in self._watched:
                continue
            self._watched.add(node.GetID())
            seg = node.GetSegmentation()
            for ev in (slicer.vtkSegmentation.SourceRepresentationModified,
                       slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved):
                seg.AddObserver(ev, lambda *_a: self.changed())

    def changed(self) -> None:
        import asyncio

        if self._handle is not None:
            self._handle.cancel()
        self._handle = asyncio.get_event_loop().call_later(self.delay_s, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self.on_change()
