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
(:meth:`OneShotSAMLogic.undo`) restores the scene as before the last run; it
holds node references of its own scene and is dropped when that scene closes
(Slicer reuses node IDs after a close).

Review and correct: :meth:`OneShotSAMLogic.run` with ``update=True`` reads
which written slices the user changed since (content hash per slice in the
parameter node's RunRecord): edited slices holding labels are corrections, emptied
ones are erased (the structure ends there). The Logic keeps the run's
:class:`~oneshotsam.volume.session.PropagationSession` (trained engine, per-slice
results), so an Update recomputes only the slices between a correction and its
nearest annotated or corrected neighbours, without training again, and rewrites
only those; the user's slices are never rewritten. Without a kept session (the
scene was reloaded, or after Undo) Update propagates again from the corrections.
Update repeats the recorded run (its target mode, axis, reference and outputs),
whatever the controls show now. :attr:`OneShotSAMLogic.rows` is the review table, in
the engine's review-queue order, within the annotated volume and on each follow-up target
(:func:`~OneShotSAMLib.outcome.review_order`).

Before the first slice the progress callback hears what is happening
("loading the SAM model ...", training steps) with ``total == 0`` or under
the last slice count; a cancel there also stops model training
(:class:`~OneShotSAMLib.progress.ProgressMethod`). Engine messages are put in
the module's words (:func:`~OneShotSAMLib.messages.for_slicer`).
"""

from __future__ import annotations

import dataclasses
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from oneshotsam.errors import OneShotError
from oneshotsam.progress import ProgressFn, no_progress

from OneShotSAMLib import parameters as P
from OneShotSAMLib import planning
from OneShotSAMLib.messages import for_slicer
from OneShotSAMLib.mrml_bridge import SliceWriter, labels_from_segments, plane_hash, volume_from_node
from OneShotSAMLib.outcome import RunOutcome, SliceRow, review_order
from OneShotSAMLib.progress import ProgressClock, ProgressMethod, ProgressRelay
from OneShotSAMLib.review import Output, plan_update, update_session
from OneShotSAMLib.undo import UndoSnapshot

__all__ = ["OneShotSAMLogic", "SliceRow", "RunOutcome", "ProgressClock"]


@dataclass
class _Inputs:
    """Resolved inputs of one run (internal)."""

    settings: P.RunSettings
    record: dict
    ref_node: Any = None
    seg_node: Any = None
    seg_ids: list[str] = field(default_factory=list)
    reference: Any = None          # engine Volume of the reference (None: follow-up update)
    ref_labels: Any = None         # [k, j, i] labels of the reference
    ref_slices: list[int] = field(default_factory=list)
    annotated: list[int] = field(default_factory=list)
    targets: list[tuple[Any, Any, int | None]] = field(default_factory=list)
    planned: tuple | None = None   # update: plan_update's (outputs, fixed, ref_slices)


class OneShotSAMLogic:
    """Runs the engine's volume pipeline on MRML nodes. ``scene`` defaults to ``slicer.mrmlScene``.

    Attributes:
        rows: the last run's written slices (filled while it runs; cleared when
            the scene closes or the run is undone).
    """

    def __init__(self, scene: Any = None) -> None:
        if scene is None:
            import slicer

            scene = slicer.mrmlScene
        self.scene = scene
        self._undo: UndoSnapshot | None = None
        self._outputs: list[Output] = []
        self._method_cache: tuple[tuple, Any] | None = None
        self._session: tuple[str, Any] | None = None  # (RunRecord token, PropagationSession)
        self.rows: list[SliceRow] = []
        self._generation = 0  # scene closes seen; a run stops writing when it changes
        ref = weakref.ref(self)

        def on_close(caller: Any, event: Any) -> None:
            logic = ref()
            if logic is not None:
                logic.on_scene_close()

        tag = scene.AddObserver(scene.StartCloseEvent, on_close)
        weakref.finalize(self, scene.RemoveObserver, tag)

    # ---------------------------------------------------------------- scene
    def on_scene_close(self) -> None:
        """Forget everything of the closing scene: undo step, review rows, outputs.
        A run in progress stops at its next step and writes nothing more."""
        self._generation += 1
        self._undo = None
        self._session = None
        self._outputs = []
        self.rows = []

    def parameter_node(self) -> Any:
        return P.get_parameter_node(self.scene)

    def blockers(self, param_node: Any | None = None) -> list[str]:
        """Why Run is not possible now ([] = ready); cheap, for the Run button's hint."""
        return planning.blockers(param_node or self.parameter_node())

    # ---------------------------------------------------------------- run
    def run(self, param_node: Any | None = None, progress: ProgressFn = no_progress,
            method: Any = None, update: bool = False,
            on_row: Callable[[SliceRow], None] | None = None,
            ui_call: Callable[[Callable[[], Any]], Any] | None = None) -> RunOutcome:
        """Propagate the annotation as the parameter node says.

        Args:
            param_node: the module's parameter node (default: the singleton).
            progress: ``progress(done, total, message) -> bool``; False cancels
                (also while the model loads or trains); ``total == 0`` = busy.
            method: a ready engine method (tests, self-test); None = built from
                settings (cached: the next run with the same model reuses it).
            update: review-and-correct re-run of the recorded last run.
            on_row: called after each written slice (the Widget adds it to its table).
            ui_call: ``ui_call(fn)`` runs the zero-argument ``fn`` (a step that
                changes MRML) and returns its result. A front end that calls
                ``run`` off its UI thread passes one that executes ``fn`` on the UI
                thread and waits, so MRML is only changed there while the engine
                computes (and the model loads) in the caller's thread. Default: ``fn()``.

        Raises:
            OneShotError: bad input, with what to do (in the module's words).
        """
        t0 = time.perf_counter()
        node = param_node or self.parameter_node()
        generation = self._generation

        def live(done: int, total: int, message: str) -> bool:  # False once the scene closed
            return self._generation == generation and bool(progress(done, total, message))

        relay = ProgressRelay(live)
        relay.generation = generation
        call = ui_call or _direct
        try:
            inp = call(lambda: self._inputs(node, update))
            relay.busy("checking the model and its weights")
            if method is None:
                method = self._load_method(inp.settings, relay)
            if relay.cancelled:
                return RunOutcome([], True, [], {"cancelled": True}, time.perf_counter() - t0)
            return self._propagate(node, inp, relay, method, on_row, t0, call)
        except OneShotError as exc:
            raise OneShotError(for_slicer(str(exc))) from exc

    def _inputs(self, node: Any, update: bool) -> _Inputs:
        """Read and check everything of the run (nothing is loaded or written)."""
        from oneshotsam.geometry import slice_geometry
        from oneshotsam.integrity import check_image_values

        s = P.read_settings(node)
        P.propagation_config(s)  # every setting checked before anything is touched
        record = P.read_run_record(node) if update else {}
        if update and not record:
            raise OneShotError("nothing to update: run the propagation first, edit slices, "
                               "then press Update")
        if update:  # the recorded run, whatever the controls show now
            s = dataclasses.replace(s, target_mode=record.get("mode", s.target_mode),
                                    axis=record.get("axis", s.axis))
            inp = _Inputs(s, record, planned=plan_update(self.scene, record))
            if s.target_mode != "self":
                return inp
            out0 = inp.planned[0][0]
            inp.ref_node, inp.seg_node, inp.seg_ids = out0.volume_node, out0.seg_node, out0.segment_ids
        else:
            inp = _Inputs(s, record, node.GetNodeReference(P.REF_REFERENCE_VOLUME),
                          node.GetNodeReference(P.REF_SEGMENTATION))
            if inp.ref_node is None:
                raise OneShotError("select the reference volume (the volume you annotated)")
            if inp.seg_node is None:
                raise OneShotError("select the segmentation that holds the annotation")
            inp.seg_ids = planning.segment_ids(inp.seg_node, s)
        inp.reference = volume_from_node(inp.ref_node)
        check_image_values(inp.reference.voxels, inp.reference.name)  # as the command line
        if not update:  # every volume checked before any node is touched
            inp.targets = planning.target_nodes(node, s, inp.ref_node)
            for t in inp.targets:
                check_image_values(volume_from_node(t[0]).voxels, t[0].GetName())
        inp.ref_labels = labels_from_segments(inp.seg_node, inp.seg_ids, inp.ref_node)
        if not inp.ref_labels.any():
            raise OneShotError(
                "the selected segment is empty inside the reference volume: paint the "
                "structure on at least one slice of this volume (a segment drawn on "
                "another volume must overlap it)")
        axis = slice_geometry(inp.reference, s.axis).array_axis
        inp.annotated = sorted(int(k) for k in np.flatnonzero(
            inp.ref_labels.any(axis=tuple(a for a in range(3) if a != axis))))
        if not update:
            inp.ref_slices = planning.reference_slices(self.scene, node, s, inp.ref_node,
                                                       inp.annotated)
        return inp

    def _load_method(self, s: P.RunSettings, relay: ProgressRelay) -> Any:
        """The SAM-based method of the settings, loaded once per model (None: the
        engine builds its own, e.g. medpersam-warp)."""
        from oneshotsam.methods.registry import build_method, needs_backend

        from OneShotSAMLib.weights import resolve_checkpoint

        checkpoint = resolve_checkpoint(s.method, s.backend, s.checkpoint)
        if not needs_backend(s.method):
            relay.busy("starting: importing PyTorch and preparing the volumes")
            return None
        key = (s.method, s.backend, checkpoint, s.preset, s.device,
               tuple(sorted((k, repr(v)) for k, v in s.method_overrides.items())))
        if self._method_cache is not None and self._method_cache[0] == key:
            relay.busy(f"using the loaded model {s.backend}")
            return self._method_cache[1]
        self._method_cache = None  # free the previous model first
        if not relay.busy(f"loading the SAM model {s.backend} (this can take a minute)"):
            return None
        method = build_method(s.method, backend_name=s.backend, checkpoint=checkpoint,
                              preset=s.preset, device=s.device, **s.method_overrides)
        self._method_cache = (key, method)
        relay.busy(f"model {s.backend} loaded; preparing the volumes")
        return method

    def release_model(self) -> None:
        """Forget the loaded model (frees its memory)."""
        self._method_cache = None

    def _propagate(self, node: Any, inp: _Inputs, relay: ProgressRelay, method: Any,
                   on_row: Callable[[SliceRow], None] | None, t0: float,
                   call: Callable[[Callable[[], Any]], Any]) -> RunOutcome:
        from oneshotsam.geometry import volume_like
        from oneshotsam.volume import session as session_mod
        from oneshotsam.volume.pipeline import propagate

        s, update = inp.settings, inp.planned is not None
        sess = self._kept_session(inp.record) if update else None
        old_rows = list(self.rows)
        if update:
            outputs, fixed, ref_slices = inp.planned
        else:
            ref_slices = inp.ref_slices
            if s.target_mode == "self":
                outputs = [Output(inp.ref_node, inp.seg_node, inp.seg_ids, inp.ref_node.GetName(),
                                  planning_axis(inp), protected=set(inp.annotated))]
            else:
                outputs = call(lambda: [planning.new_output(self.scene, inp.seg_node, inp.seg_ids, *t)
                                        for t in inp.targets])
            fixed = [set() for _ in outputs]
        self._undo = call(lambda: UndoSnapshot.take(self.scene, outputs, node))
        self._outputs = outputs
        self.rows = []
        write_now = self._writer(outputs, on_row, relay.generation)

        def write_event(ev: Any) -> None:
            call(lambda: write_now(ev))
        wrapped = ProgressMethod(method, relay) if method is not None else None

        def config(reference_slices: Any, fixed_slices: Any) -> Any:
            cfg = P.propagation_config(s, reference_slices, fixed_slices)
            return dataclasses.replace(cfg, checkpoint=self._method_checkpoint(s))

        reports: list[dict] = []
        cancelled, error = False, None
        token = inp.record.get("session") if sess is not None else None
        try:
            if sess is not None:
                reports, cancelled = update_session(sess, inp.settings.target_mode == "self",
                                                    (inp.reference, inp.ref_labels), outputs, fixed,
                                                    relay, write_event, call)
            elif update and s.target_mode != "self":
                # few-shot within each follow-up target from its corrected slices
                for t, out in enumerate(outputs):
                    if not fixed[t]:
                        continue
                    tvol = volume_from_node(out.volume_node)
                    tlab = call(lambda out=out: labels_from_segments(out.seg_node, out.segment_ids,
                                                                     out.volume_node))
                    cfg = config(tuple(sorted(fixed[t])), tuple(sorted(fixed[t])))

                    def on_t(ev: Any, t: int = t) -> None:
                        ev.target_index = t
                        write_event(ev)

                    res = propagate(tvol, volume_like(tvol, tlab), (), cfg, relay, on_t, wrapped)
                    reports.append(res.report)
                    if res.cancelled or relay.cancelled:
                        cancelled = True
                        break
            else:
                targets = [volume_from_node(o.volume_node) for o in outputs] \
                    if s.target_mode != "self" else []
                cfg = config(tuple(ref_slices),
                             tuple(sorted(fixed[0])) if s.target_mode == "self" else ())
                if update:  # no kept session: propagate again from the corrections
                    res = propagate(inp.reference, volume_like(inp.reference, inp.ref_labels),
                                    targets, cfg, relay, write_event, wrapped)
                else:
                    kept = session_mod.PropagationSession(inp.reference, cfg, targets, wrapped)
                    res = kept.run(volume_like(inp.reference, inp.ref_labels), relay, write_event)
                    if not (res.cancelled or relay.cancelled):
                        import uuid

                        token = uuid.uuid4().hex
                        self._session = (token, kept)
                reports.append(res.report)
                cancelled = res.cancelled or relay.cancelled
        except OneShotError as exc:  # a cancelled method ends early: not an error
            cancelled, error = True, None if relay.cancelled else exc
        finally:  # the record always matches what was written (Update, Undo)
            if self._generation == relay.generation:  # not into a scene opened since
                call(lambda: self._finish(node, s, outputs, ref_slices, inp.record, update, token))
        if error is not None:
            raise error
        cancelled = cancelled or self._generation != relay.generation
        if sess is not None:  # slices an Update did not recompute keep their rows
            new = {(r.output_index, r.slice_index) for r in self.rows}
            mine = {(t, k) for t, o in enumerate(outputs) for k in o.protected}
            self.rows += [r for r in old_rows if (r.output_index, r.slice_index) not in new | mine]
        self.rows.sort(key=review_order(reports, inp.settings.target_mode == "self"))
        return RunOutcome(rows=list(self.rows), cancelled=cancelled,
                          output_segmentation_ids=[o.seg_node.GetID() for o in outputs],
                          report={"engine": reports, "cancelled": cancelled,
                                  "seconds": round(time.perf_counter() - t0, 3)},
                          seconds=time.perf_counter() - t0)

    def _kept_session(self, record: dict) -> Any:
        """The session of the recorded run, when this Logic still holds it."""
        if self._session is not None and record.get("session") == self._session[0]:
            return self._session[1]
        return None

    def _method_checkpoint(self, s: P.RunSettings) -> str | None:
        from OneShotSAMLib.weights import resolve_checkpoint

        try:
            return resolve_checkpoint(s.method, s.backend, s.checkpoint)
        except OneShotError:  # an injected method brings its own model
            return s.checkpoint

    def _writer(self, outputs: list[Output], on_row: Callable[[SliceRow], None] | None,
                generation: int) -> Callable[[Any], None]:
        """The engine's on_slice: write one finished slice, add its review row
        (nothing once the scene was closed)."""

        def write_event(ev: Any) -> None:
            out = outputs[ev.target_index]
            k = int(ev.slice_index)
            if k in out.protected or self._generation != generation:
                return
            if out.writer is None:
                out.writer = SliceWriter(out.seg_node, out.volume_node)
            out.array_axis = int(ev.array_axis)
            lab = np.asarray(ev.labels)
            for value, sid in enumerate(out.segment_ids, start=1):
                out.writer.write(sid, ev.array_axis, k, lab == value)
            out.written[k] = plane_hash(lab)
            seq = out.sequence_node
            proc = (ev.info or {}).get("processing_slice")
            row = SliceRow(out.target_name, out.volume_node.GetID() or "", ev.target_index,
                           int(ev.array_axis), k, float(ev.confidence), bool(ev.flagged),
                           seq.GetID() if seq is not None else None, out.item,
                           int(proc) if proc is not None else None)
            self.rows.append(row)
            if on_row is not None:
                on_row(row)

        return write_event

    # ---------------------------------------------------------------- review rows
    def locate_row(self, row: SliceRow) -> Any:
        """Where a review row's slice is (:class:`~OneShotSAMLib.navigation.Location`);
        a sequence row moves the sequence browser to its item.

        Raises:
            OneShotError: the row's volume is gone.
        """
        from OneShotSAMLib.navigation import locate

        if 0 <= row.output_index < len(self._outputs):
            o = self._outputs[row.output_index]
            return locate(self.scene, o.volume_node, row.array_axis, row.slice_index,
                          o.sequence_node, o.item)
        if row.sequence_node_id is not None:
            seq = self.scene.GetNodeByID(row.sequence_node_id)
            return locate(self.scene, None, row.array_axis, row.slice_index, seq, row.sequence_item)
        return locate(self.scene, self.scene.GetNodeByID(row.volume_node_id), row.array_axis,
                      row.slice_index)

    # ---------------------------------------------------------------- undo
    def can_undo(self) -> bool:
        return self._undo is not None and self._undo.valid(self.scene)

    def undo(self) -> None:
        """Restore the scene as before the last run (one step).

        Only nodes of the run's own scene are touched, by reference; after a
        scene close there is nothing to undo.
        """
        if not self.can_undo():
            self._undo = None
            raise OneShotError("nothing to undo")
        u, self._undo = self._undo, None
        u.restore()
        self.rows, self._outputs, self._session = [], [], None

    # ---------------------------------------------------------------- record
    def _finish(self, node: Any, s: P.RunSettings, outputs: list[Output], ref_slices: list[int],
                record: dict, update: bool, session: str | None = None) -> None:
        import slicer

        logic = slicer.vtkSlicerSegmentationsModuleLogic
        outs = []
        for t, o in enumerate(outputs):
            for sid in o.segment_ids:
                logic.SetSegmentStatus(o.seg_node.GetSegmentation().GetSegment(sid), logic.InProgress)
            written = dict(record["outputs"][t]["written"]) if update else {}
            written.update({str(k): h for k, h in o.written.items()})
            seq = o.sequence_node
            entry = {"segmentation": o.seg_node.GetID(), "segment_ids": o.segment_ids,
                     "target_name": o.target_name, "array_axis": o.array_axis,
                     "protected": sorted(o.protected if not update
                                         else set(record["outputs"][t].get("protected", []))),
                     "written": written, "volume": o.volume_node.GetID(),
                     "sequence": seq.GetID() if seq is not None else None,
                     "sequence_item": o.item if seq is not None else None}
            outs.append(entry)
        P.write_run_record(node, {"mode": s.target_mode, "axis": s.axis, "session": session,
                                  "reference_slices": list(ref_slices), "outputs": outs})


def _direct(fn: Callable[[], Any]) -> Any:
    return fn()


def planning_axis(inp: _Inputs) -> int:
    """Sliced array axis of the reference (self mode output)."""
    from oneshotsam.geometry import slice_geometry

    return slice_geometry(inp.reference, inp.settings.axis).array_axis
