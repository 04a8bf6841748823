"""OneShotSAM Logic: from an annotated segment to propagated segments, in MRML.

MRML + numpy only (no Qt, no dialogs): runs inside Slicer and headless on
slicer-core. Long work reports through ``progress(done, total, message) ->
bool`` (False cancels; finished slices are kept) and each finished slice is
written into its output segment as it arrives (:class:`SliceWriter`).

Outputs:
* target mode ``"self"``: the rest of the reference volume is written into the
  annotated segment(s) themselves; slices holding the user's labels are never
  rewritten.
* ``"volumes"`` / ``"sequence"``: one new segmentation node per target, in the
  target's geometry (same parent transform), segments named, coloured and
  tagged (terminology) like the reference ones.
Every written segment gets the status "in progress". One undo step
(:meth:`OneShotSAMLogic.undo`) restores the scene as before the last run.

Review and correct: :meth:`OneShotSAMLogic.run` with ``update=True`` reads
which written slices the user changed since (content hash per slice in the
parameter node's RunRecord), uses them as additional references and rewrites
only the slices the user has not touched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from oneshotsam.methods.base import OneShotError, ProgressFn, no_progress

from OneShotSAMLib import parameters as P
from OneShotSAMLib.mrml_bridge import (SliceWriter, copy_segment_style, labels_from_segments,
                                       plane_hash, volume_from_node)
from OneShotSAMLib.review import Output, plan_update


@dataclass
class SliceRow:
    """One written slice for the review table (sorted lowest confidence first)."""

    target_name: str
    volume_node_id: str
    output_index: int
    array_axis: int
    slice_index: int
    confidence: float
    flagged: bool


@dataclass
class RunOutcome:
    """What a run did.

    Attributes:
        rows: written slices, lowest confidence first.
        cancelled: the progress callback asked to stop (finished slices kept).
        output_segmentation_ids: MRML IDs of the segmentations written into.
        report: the engine's JSON report plus the Logic's timings.
    """

    rows: list[SliceRow]
    cancelled: bool
    output_segmentation_ids: list[str]
    report: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class ProgressClock:
    """Remaining-time estimate for a progress callback (linear in work units)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def remaining_s(self, done: int, total: int) -> float | None:
        if done <= 0 or total <= 0 or done > total:
            return None
        return (time.perf_counter() - self.t0) / done * (total - done)


class OneShotSAMLogic:
    """Runs the engine's volume pipeline on MRML nodes. ``scene`` defaults to ``slicer.mrmlScene``."""

    def __init__(self, scene: Any = None) -> None:
        if scene is None:
            import slicer

            scene = slicer.mrmlScene
        self.scene = scene
        self._undo: dict[str, Any] | None = None

    # ---------------------------------------------------------------- parameters
    def parameter_node(self) -> Any:
        return P.get_parameter_node(self.scene)

    # ---------------------------------------------------------------- run
    def run(self, param_node: Any | None = None, progress: ProgressFn = no_progress,
            method: Any = None, update: bool = False,
            on_row: Callable[[SliceRow], None] | None = None,
            ui_call: Callable[[Callable[[], Any]], Any] | None = None) -> RunOutcome:
        """Propagate the annotation as the parameter node says.

        Args:
            param_node: the module's parameter node (default: the singleton).
            progress: ``progress(done, total, message) -> bool``; False cancels.
            method: a ready engine method (tests, self-test); None = built from settings.
            update: review-and-correct re-run of the last run (see module docstring).
            on_row: called after each written slice (the Widget refreshes its table).
            ui_call: ``ui_call(fn)`` runs the zero-argument ``fn`` (every step that
                reads or changes MRML) and returns its result. A front end that
                calls ``run`` off its UI thread passes one that executes ``fn`` on
                the UI thread and waits, so MRML and VTK are only touched there
                while the engine computes on numpy arrays in the caller's thread.
                Default: ``fn()`` directly.

        Raises:
            OneShotError: bad input, with what to do.
        """
        from oneshotsam.geometry import slice_geometry, volume_like
        from oneshotsam.volume.pipeline import PropagationConfig, propagate

        t0 = time.perf_counter()
        call = ui_call or _direct
        node = param_node or call(self.parameter_node)
        s = call(lambda: P.read_settings(node))
        ref_node = call(lambda: node.GetNodeReference(P.REF_REFERENCE_VOLUME))
        seg_node = call(lambda: node.GetNodeReference(P.REF_SEGMENTATION))
        if ref_node is None:
            raise OneShotError("select the reference volume (the volume you annotated)")
        if seg_node is None:
            raise OneShotError("select the segmentation that holds the annotation")
        seg_ids = call(lambda: self._segment_ids(seg_node, s))
        record = call(lambda: P.read_run_record(node)) if update else {}
        if update and not record:
            raise OneShotError("nothing to update: run the propagation first, edit slices, "
                               "then press Update")

        reference = call(lambda: volume_from_node(ref_node))
        ref_labels = call(lambda: labels_from_segments(seg_node, seg_ids, ref_node))
        if not ref_labels.any():
            raise OneShotError(
                "the selected segment is empty inside the reference volume: paint the "
                "structure on at least one slice of this volume (a segment drawn on "
                "another volume must overlap it)")
        axis = slice_geometry(reference, s.axis).array_axis
        annotated = sorted(int(k) for k in np.flatnonzero(
            ref_labels.any(axis=tuple(a for a in range(3) if a != axis))))

        targets_nodes = call(lambda: self._target_nodes(node, s, ref_node))
        outputs, fixed, ref_slices = call(lambda: self._plan(
            node, s, seg_node, seg_ids, ref_node, targets_nodes, annotated, axis, record, update))
        call(lambda: self._snapshot(outputs))
        rows: list[SliceRow] = []

        def write_event(ev: Any) -> None:
            call(lambda: write_now(ev))

        def write_now(ev: Any) -> None:
            out = outputs[ev.target_index]
            k = int(ev.slice_index)
            if k in out.protected:
                return
            if out.writer is None:
                out.writer = SliceWriter(out.seg_node, out.volume_node)
            out.array_axis = int(ev.array_axis)
            lab = np.asarray(ev.labels)
            for value, sid in enumerate(out.segment_ids, start=1):
                out.writer.write(sid, ev.array_axis, k, lab == value)
            out.written[k] = plane_hash(lab)
            row = SliceRow(out.target_name, out.volume_node.GetID() or "", ev.target_index,
                           int(ev.array_axis), k, float(ev.confidence), bool(ev.flagged))
            rows.append(row)
            if on_row is not None:
                on_row(row)

        config_kw = dict(method=s.method, axis=s.axis, align=s.align, window=s.window,
                         preset=s.preset, backend=s.backend, checkpoint=s.checkpoint,
                         device=s.device,
                         method_overrides=tuple(sorted(s.method_overrides.items())))
        reports: list[dict] = []
        cancelled = False
        if update and record.get("mode") != "self":
            # few-shot within each follow-up target from its corrected slices
            for t, out in enumerate(outputs):
                if not fixed[t]:
                    continue
                tvol = call(lambda out=out: volume_from_node(out.volume_node))
                tlab = call(lambda out=out: labels_from_segments(out.seg_node, out.segment_ids,
                                                                 out.volume_node))
                cfg = PropagationConfig(reference_slices=tuple(sorted(fixed[t])),
                                        fixed_slices=tuple(sorted(fixed[t])), **config_kw)

                def on_t(ev: Any, t: int = t) -> None:
                    ev.target_index = t
                    write_event(ev)

                res = propagate(tvol, volume_like(tvol, tlab), (), cfg, progress, on_t, method)
                reports.append(res.report)
                if res.cancelled:
                    cancelled = True
                    break
        else:
            targets = call(lambda: [volume_from_node(o.volume_node) for o in outputs]) \
                if s.target_mode != "self" else []
            cfg = PropagationConfig(reference_slices=tuple(ref_slices),
                                    fixed_slices=tuple(sorted(fixed[0])) if s.target_mode == "self" else (),
                                    **config_kw)
            res = propagate(reference, volume_like(reference, ref_labels), targets, cfg,
                            progress, write_event, method)
            reports.append(res.report)
            cancelled = res.cancelled

        call(lambda: self._finish(node, s, outputs, ref_slices, fixed, record, update))
        rows.sort(key=lambda r: (r.confidence, r.output_index, r.slice_index))
        return RunOutcome(rows=rows, cancelled=cancelled,
                          output_segmentation_ids=call(lambda: [o.seg_node.GetID() for o in outputs]),
                          report={"engine": reports, "cancelled": cancelled,
                                  "seconds": round(time.perf_counter() - t0, 3)},
                          seconds=time.perf_counter() - t0)

    # ---------------------------------------------------------------- undo
    def can_undo(self) -> bool:
        return self._undo is not None

    def undo(self) -> None:
        """Restore the scene as before the last run (one step)."""
        if self._undo is None:
            raise OneShotError("nothing to undo")
        u, self._undo = self._undo, None
        for node_id, saved in u["segmentations"].items():
            n = self.scene.GetNodeByID(node_id)
            if n is not None:
                n.GetSegmentation().DeepCopy(saved)
                n.Modified()
        for node_id in u["created"]:
            n = self.scene.GetNodeByID(node_id)
            if n is not None:
                self.scene.RemoveNode(n)
        pnode = self.parameter_node()
        pnode.SetParameter("RunRecord", u["record"])

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _segment_ids(seg_node: Any, s: P.RunSettings) -> list[str]:
        seg = seg_node.GetSegmentation()
        if not s.segment_ids:
            raise OneShotError("select the segment holding the annotation")
        for sid in s.segment_ids:
            if seg.GetSegment(sid) is None:
                raise OneShotError(f"segment '{sid}' is not in '{seg_node.GetName()}': "
                                   "select an existing segment")
        return list(s.segment_ids)

    def _target_nodes(self, node: Any, s: P.RunSettings, ref_node: Any) -> list[Any]:
        if s.target_mode == "self":
            return []
        if s.target_mode == "volumes":
            nodes = [n for n in P.target_volume_nodes(node)
                     if n is not None and n.GetID() != ref_node.GetID()]
        else:
            seq = node.GetNodeReference(P.REF_TARGET_SEQUENCE)
            if seq is None:
                raise OneShotError("select the volume sequence holding the follow-up visits")
            nodes = [seq.GetNthDataNode(i) for i in range(seq.GetNumberOfDataNodes())]
            nodes = [n for n in nodes if n is not None and n.IsA("vtkMRMLScalarVolumeNode")]
            nodes = [n for n in nodes if not _same_volume(n, ref_node)]
        if not nodes:
            raise OneShotError("no target volumes: choose follow-up volumes (or a sequence) "
                               "other than the reference, or target 'rest of this volume'")
        return nodes

    def _plan(self, node: Any, s: P.RunSettings, seg_node: Any, seg_ids: list[str],
              ref_node: Any, target_nodes: list[Any], annotated: list[int], axis: int,
              record: dict, update: bool) -> tuple[list[Output], list[set[int]], list[int]]:
        """Outputs, user slices per output (never rewritten) and the reference slices."""
        if update:
            return plan_update(self.scene, record)

        if s.reference_slices is not None:
            missing = [k for k in s.reference_slices if k not in annotated]
            if missing:
                raise OneShotError(f"reference slice(s) {missing} hold no annotation along the "
                                   f"{s.axis} axis; annotated slices are {annotated}")
            ref_slices = sorted(set(int(k) for k in s.reference_slices))
        else:
            ref_slices = annotated
        if s.target_mode == "self":
            out = Output(ref_node, seg_node, seg_ids, ref_node.GetName(), axis,
                          protected=set(annotated))
            return [out], [set()], ref_slices
        outs = [self._new_output(seg_node, seg_ids, t) for t in target_nodes]
        return outs, [set() for _ in outs], ref_slices

    def _new_output(self, seg_node: Any, seg_ids: list[str], target: Any) -> Output:
        import slicer

        name = f"{target.GetName()} OneShotSAM"
        out_node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        out_node.CreateDefaultDisplayNodes()
        if target.GetScene() is self.scene and target.GetParentTransformNode() is not None:
            out_node.SetAndObserveTransformNodeID(target.GetParentTransformNode().GetID())
        out_node.SetReferenceImageGeometryParameterFromVolumeNode(target)
        ids = []
        for sid in seg_ids:
            segment = slicer.vtkSegment()
            copy_segment_style(seg_node.GetSegmentation().GetSegment(sid), segment)
            new_id = out_node.GetSegmentation().GenerateUniqueSegmentID(sid)
            out_node.GetSegmentation().AddSegment(segment, new_id)
            ids.append(new_id)
        return Output(target, out_node, ids, target.GetName(), created=True)

    def _snapshot(self, outputs: list[Output]) -> None:
        import slicer

        saved: dict[str, Any] = {}
        created = [o.seg_node.GetID() for o in outputs if o.created]
        for o in outputs:
            if o.created or o.seg_node.GetID() in saved:
                continue
            copy = slicer.vtkSegmentation()
            copy.DeepCopy(o.seg_node.GetSegmentation())
            saved[o.seg_node.GetID()] = copy
        pnode = self.parameter_node()
        self._undo = {"segmentations": saved, "created": created,
                      "record": pnode.GetParameter("RunRecord")}

    def _finish(self, node: Any, s: P.RunSettings, outputs: list[Output], ref_slices: list[int],
                fixed: list[set[int]], record: dict, update: bool) -> None:
        import slicer

        logic = slicer.vtkSlicerSegmentationsModuleLogic
        outs = []
        for t, o in enumerate(outputs):
            for sid in o.segment_ids:
                logic.SetSegmentStatus(o.seg_node.GetSegmentation().GetSegment(sid), logic.InProgress)
            written = dict(record["outputs"][t]["written"]) if update else {}
            written.update({str(k): h for k, h in o.written.items()})
            seq = P.REF_TARGET_SEQUENCE if o.volume_node.GetScene() is not self.scene else None
            entry = {"segmentation": o.seg_node.GetID(), "segment_ids": o.segment_ids,
                     "target_name": o.target_name, "array_axis": o.array_axis,
                     "protected": sorted(o.protected if not update
                                         else set(record["outputs"][t].get("protected", []))),
                     "written": written, "volume": o.volume_node.GetID(),
                     "sequence": node.GetNodeReferenceID(seq) if seq else None,
                     "sequence_item": _sequence_item(node, o.volume_node) if seq else None}
            outs.append(entry)
        mode = record.get("mode", s.target_mode) if update else s.target_mode
        P.write_run_record(node, {"mode": mode, "axis": s.axis, "reference_slices": ref_slices,
                                  "outputs": outs})


def _direct(fn: Callable[[], Any]) -> Any:
    return fn()


def _same_volume(a: Any, b: Any) -> bool:
    """Same voxels and geometry (a sequence item that is the reference itself)."""
    import slicer.util

    from OneShotSAMLib.mrml_bridge import ijk_to_world_ras

    try:
        va, vb = slicer.util.arrayFromVolume(a), slicer.util.arrayFromVolume(b)
    except Exception:  # noqa: BLE001 - no image data
        return False
    return (va.shape == vb.shape and np.allclose(ijk_to_world_ras(a), ijk_to_world_ras(b))
            and np.array_equal(va, vb))


def _sequence_item(node: Any, volume_node: Any) -> int | None:
    seq = node.GetNodeReference(P.REF_TARGET_SEQUENCE)
    for i in range(seq.GetNumberOfDataNodes()):
        if seq.GetNthDataNode(i) is volume_node:
            return i
    return None
