"""The browser app's run controller: one OneShotSAM Logic run at a time, off the UI thread.

Everything the clinician does (Run, Cancel, Update, Undo, Save) goes through
:class:`OneShotSAMLib.logic.OneShotSAMLogic` and its parameter node; this
module adds only what a web page needs around it:

* the Logic runs in a worker thread; every MRML change it makes goes back to
  the UI (asyncio) thread through the Logic's ``ui_call`` hook, so the scene,
  the views and the trame state are only touched there;
* progress (done, total, remaining seconds), the review rows and the
  slice-shown latencies are handed to the UI thread with
  ``loop.call_soon_threadsafe``;
* the views' render requests made during a step are held and, after a step
  that wrote slices, only the views that show a written slice render
  (:class:`OneShotSAMWeb.views.SliceViews`);
* Save writes the annotated segmentation as ``.seg.nrrd`` (names, colours,
  terminology, through Slicer's storage node) and as a NIfTI label map in the
  reference volume's grid, plus ``report.json``, each through a temporary
  file renamed into place.

No trame import here: :mod:`OneShotSAMWeb.app` binds it to the page.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Protocol

from oneshotsam.errors import OneShotError

from OneShotSAMLib import parameters as P
from OneShotSAMLib.logic import OneShotSAMLogic, RunOutcome, SliceRow
from OneShotSAMLib.outcome import review_order
from OneShotSAMWeb.runprogress import RunProgress


PUSH_INTERVAL_S = 0.25


class StepViews(Protocol):
    """What the controller needs of the app's slice views (:class:`OneShotSAMWeb.views.SliceViews`)."""

    def hold(self) -> ContextManager[Any]:
        """Hold the views' render requests made inside the block."""

    def show_written(self, scene: Any, written: list[tuple[str, int, int]]) -> list[str]:
        """Schedule the renders after a step that wrote ``written`` slices
        ((volume node id, array axis, slice index); empty for other steps); the
        ids of the views that will render."""


@dataclass
class RunStatus:
    """What the page shows about the current or last run (UI thread only).

    Attributes:
        running: a run is in progress.
        done, total: engine work units (``progress`` callback).
        percent, eta: the page's bar and remaining time (:mod:`OneShotSAMWeb.runprogress`).
        message: the engine's last progress message, or the outcome.
        rows: written slices, lowest confidence first (flagged ones first).
        error: the last run's error (an OneShotError's text), "" when none.
        shown_latency_s: per written slice shown in a view, seconds from the
            engine reporting it to the end of the first render of a view that
            shows it.
    """

    running: bool = False
    done: int = 0
    total: int = 0
    percent: int = 0
    eta: str = ""
    message: str = ""
    rows: list[SliceRow] = field(default_factory=list)
    error: str = ""
    cancelled: bool = False
    shown_latency_s: list[float] = field(default_factory=list)


def rank_rows(rows: list[SliceRow]) -> list[SliceRow]:
    """Order of the rows while a run streams them in (the engine's review queue does not
    exist yet): flagged slices first, then lowest confidence first. A finished run shows
    the Logic's order (:func:`OneShotSAMLib.outcome.review_order`)."""
    return sorted(rows, key=review_order((), self_mode=False))


class RunController:
    """Runs the Logic for the page.

    Args:
        scene: the app's ``vtkMRMLScene``.
        loop: the UI thread's asyncio loop (trame's); :meth:`start` called from the
            running loop uses that one.
        on_change: called on the UI thread whenever :attr:`status` changed.
        views: the app's slice views: render requests are held during each
            step the Logic runs on the UI thread, then the views that show its
            changes render; None (scripts): no views.
    """

    def __init__(self, scene: Any, loop: asyncio.AbstractEventLoop,
                 on_change: Callable[[], None], views: StepViews | None = None) -> None:
        self.scene = scene
        self.loop = loop
        self.logic = OneShotSAMLogic(scene)
        self.status = RunStatus()
        self._on_change = on_change
        self._views = views
        self._step_written: list[tuple[str, int, int]] | None = None
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending_shown: list[tuple[float, set[str]]] = []
        self._last_push = 0.0
        self._push_handle: asyncio.TimerHandle | None = None
        self.last_outcome: RunOutcome | None = None
        self.ui_thread = threading.get_ident()
        self._rows_before: list[SliceRow] = []  # the review rows Undo brings back
        self._progress = RunProgress()
        #: the app's patient check of the volumes it opened (``report.json``'s ``patient_identity``)
        self.patient_identity: Callable[[], dict[str, Any]] | None = None

    # ---------------------------------------------------------------- run
    def start(self, update: bool = False, method: Any = None) -> None:
        """Start a run (or an Update) in a worker thread; the parameter node must be set."""
        if self.status.running:
            raise OneShotError("a run is already in progress: wait for it or press Cancel")
        try:
            self.loop = asyncio.get_running_loop()  # the UI loop serving this request
        except RuntimeError:
            pass  # called outside the loop (scripts): keep the loop given at construction
        self.ui_thread = threading.get_ident()
        self._cancel.clear()
        self._pending_shown = []
        self._rows_before = list(self.status.rows)
        self._progress = RunProgress()
        self.status = RunStatus(running=True, message="starting")
        self._on_change()
        self._thread = threading.Thread(target=self._work, args=(update, method),
                                        name="oneshotsam-run", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        """Ask the running engine to stop (finished slices are kept)."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker ended (scripts and tests); True when it did."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _work(self, update: bool, method: Any) -> None:
        _lower_this_thread_priority()

        def progress(done: int, total: int, message: str) -> bool:
            self.loop.call_soon_threadsafe(self._set_progress, done, total, message)
            return not self._cancel.is_set()

        def on_row(row: SliceRow) -> None:
            if self._step_written is not None:  # inside a step on the UI thread
                self._step_written.append((row.volume_node_id, row.array_axis, row.slice_index))
            self.loop.call_soon_threadsafe(self._add_row, row)

        n_modules = len(sys.modules)
        try:
            out = self.logic.run(progress=progress, method=method, update=update,
                                 on_row=on_row, ui_call=self._ui_call)
        except OneShotError as exc:
            result: tuple[RunOutcome | None, str] = (None, str(exc))
        except Exception as exc:  # noqa: BLE001 - shown on the page, not lost in a thread
            result = (None, f"unexpected {type(exc).__name__}: {exc}")
        else:
            result = (out, "")
        if len(sys.modules) > n_modules:
            settle_heap()
        self.loop.call_soon_threadsafe(self._finish, *result)

    def _ui_call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the UI thread and return its result (the Logic's ``ui_call``)."""
        if threading.get_ident() == self.ui_thread:
            return fn()
        t_report = time.perf_counter()

        async def on_ui() -> Any:
            if self._views is None:
                return fn()
            written: list[tuple[str, int, int]] = []
            self._step_written = written
            try:
                with self._views.hold():
                    result = fn()
            finally:  # the views render what the step changed, even if it failed
                self._step_written = None
                shown = self._views.show_written(self.scene, written)
            if written and shown:
                self._pending_shown.append((t_report, set(shown)))
            return result

        return asyncio.run_coroutine_threadsafe(on_ui(), self.loop).result()

    def view_rendered(self, view_id: str) -> None:
        """The app calls this after slice view ``view_id`` rendered (UI thread):
        closes the latencies of the slices that view shows."""
        if not self._pending_shown:
            return
        now = time.perf_counter()
        waiting = []
        for t, ids in self._pending_shown:
            if view_id in ids:
                self.status.shown_latency_s.append(now - t)
            else:
                waiting.append((t, ids))
        self._pending_shown = waiting

    # ---------------------------------------------------------------- UI-thread updates
    def _set_progress(self, done: int, total: int, message: str) -> None:
        if not self.status.running:
            return
        self.status.done, self.status.total, self.status.message = done, total, message
        self._progress.update(done, total, message)
        self.status.percent, self.status.eta = self._progress.percent, self._progress.eta
        self._push_soon()

    def _add_row(self, row: SliceRow) -> None:
        self.status.rows = rank_rows(self.status.rows + [row])
        if len(self.status.rows) == 1:  # the first slice: show at once that slices arrive
            self._push()
        else:
            self._push_soon()

    def _push_soon(self) -> None:
        """Push the status now, or once :data:`PUSH_INTERVAL_S` after the last push.

        The page needs about four updates a second; every update re-renders the
        page in the browser, which then answers clicks later."""
        if self._push_handle is not None:
            return
        wait = self._last_push + PUSH_INTERVAL_S - time.perf_counter()
        if wait <= 0:
            self._push()
        else:
            self._push_handle = self.loop.call_later(wait, self._push)

    def _push(self) -> None:
        if self._push_handle is not None:
            self._push_handle.cancel()
            self._push_handle = None
        self._last_push = time.perf_counter()
        self._on_change()

    def _finish(self, out: RunOutcome | None, error: str) -> None:
        if self._push_handle is not None:  # the page has not seen the last progress yet
            self._push()
        self.status.running = False
        self.status.eta = ""
        if out is not None and not out.cancelled:
            self.status.percent = 100
        self.status.error = error
        self.last_outcome = out
        if out is not None:
            self.status.rows = list(out.rows)  # the Logic's review order (engine queue)
            self.status.cancelled = out.cancelled
            self.status.message = (f"cancelled: {len(out.rows)} slice(s) kept" if out.cancelled
                                   else f"finished: {len(out.rows)} slice(s) in {out.seconds:.1f} s")
        else:
            self.status.message = "failed"
        self._on_change()

    # ---------------------------------------------------------------- undo / save
    def undo(self) -> None:
        if self.status.running:
            raise OneShotError("wait for the run to finish (or Cancel) before Undo")
        self.logic.undo()
        # the scene is as before the last run: so is the review table
        self.status = RunStatus(message="last run undone", rows=self._rows_before)
        self._rows_before = []
        self._on_change()

    def save(self, output_dir: Path, stem: str | None = None) -> list[Path]:
        """Write every output segmentation of the last run (UI thread).

        ``<stem>_oneshotsam.seg.nrrd`` and ``<stem>_oneshotsam.nii.gz`` per output
        segmentation (stem: the volume's name; :func:`oneshotsam.writer.output_stem`) and
        ``report.json``, never over a file the app loaded; returns the written paths.
        """
        if self.status.running:
            raise OneShotError("wait for the run to finish (or Cancel) before saving")
        node = self.logic.parameter_node()
        record = P.read_run_record(node)
        ref = node.GetNodeReference(P.REF_REFERENCE_VOLUME)
        seg = node.GetNodeReference(P.REF_SEGMENTATION)
        if ref is None or seg is None:
            raise OneShotError("nothing to save: load a volume and paint a segment first")
        items = [(seg, ref, list(P.read_settings(node).segment_ids))]
        if record and record.get("mode") != "self":
            items = [(self.scene.GetNodeByID(o["segmentation"]), self.scene.GetNodeByID(o["volume"]),
                      list(o["segment_ids"])) for o in record["outputs"]] + items
        from oneshotsam.writer import check_not_inputs, output_stem

        items = [(s, v, ids, output_stem(_safe_stem(stem if (stem and s is seg) else v.GetName())))
                 for s, v, ids in items if s is not None and v is not None and ids]
        check_not_inputs([output_dir / f"{n}{suf}" for *_, n in items for suf in (".seg.nrrd", ".nii.gz")]
                         + [output_dir / "report.json"], _files_loaded(self.scene))
        output_dir.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        for seg_node, vol_node, ids, name in items:
            written += write_segmentation(seg_node, vol_node, ids, output_dir, name)
        report = {"run_record": record, "settings": _settings_dict(node),
                  "engine": self.last_outcome.report if self.last_outcome else None,
                  "rows": [r.__dict__ for r in self.status.rows],
                  "shown_latency_s": [round(x, 4) for x in self.status.shown_latency_s],
                  "patient_identity": self.patient_identity() if self.patient_identity else None}
        written.append(_atomic_write_text(output_dir / "report.json",
                                          json.dumps(report, indent=2, default=str)))
        return written


def settle_heap() -> None:
    """Collect garbage once, then exempt every surviving object from later collections.

    Python's full garbage collections hold the GIL while they scan every tracked
    object; with torch, VTK and trame loaded (and MONAI, SciPy... that the engine
    imports on its first run) each took 0.4-0.6 s, triggered by the engine
    thread's allocations every few seconds, and the page answered nothing
    meanwhile. The long-lived objects are built at start and by a run that
    imported modules: called then, later collections scan only newer objects
    (milliseconds). Objects frozen here are still freed by reference counting.
    """
    gc.collect()
    gc.freeze()


def _lower_this_thread_priority(increment: int = 5) -> None:
    """Nice the calling (engine) thread so the UI thread wins the CPU on a busy
    machine (Linux: threads are scheduled separately; elsewhere a no-op)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + increment)
    except (AttributeError, OSError):
        pass


def _settings_dict(node: Any) -> dict[str, Any]:
    s = P.read_settings(node)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.__dict__.items()}


def _files_loaded(scene: Any) -> list[str]:
    """Every file the scene's storage nodes read (Save never writes over one)."""
    out = []
    for n in range(scene.GetNumberOfNodesByClass("vtkMRMLStorageNode")):
        st = scene.GetNthNodeByClass(n, "vtkMRMLStorageNode")
        out += [st.GetFileName() or ""] + [st.GetNthFileName(k) for k in range(st.GetNumberOfFileNames())]
    return [f for f in out if f]


def _safe_stem(name: str) -> str:
    from oneshotsam.medio import path_stem

    name = path_stem(name)  # 'synth.nrrd' -> 'synth'
    keep = "".join(c if (c.isalnum() or c in "-_.") else "_" for c in name).strip("._")
    return keep or "segmentation"


def _atomic_write_text(path: Path, text: str) -> Path:
    """``text`` to a temporary name beside ``path``, then renamed (the engine's writer)."""
    from oneshotsam.fileformats import atomic_write

    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_segmentation(seg_node: Any, volume_node: Any, segment_ids: list[str], output_dir: Path,
                       stem: str) -> list[Path]:
    """``<stem>.seg.nrrd`` (Slicer storage node: names, colours, terminology; the
    reference volume's full grid) and ``<stem>.nii.gz`` (segment ``n`` = label
    ``n + 1``, the volume's grid and geometry), each written to a temporary name
    and renamed."""
    import slicer

    from oneshotsam.geometry import volume_like
    from oneshotsam.medio import write_label_volume
    from OneShotSAMLib.mrml_bridge import labels_from_segments, volume_from_node

    seg_path = output_dir / f"{stem}.seg.nrrd"
    tmp_seg = output_dir / f".{stem}.tmp.seg.nrrd"
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetCropToMinimumExtent(False)
    storage.SetFileName(str(tmp_seg))
    seg_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    if not storage.WriteData(seg_node):
        raise OneShotError(f"could not write {seg_path}")
    os.replace(tmp_seg, seg_path)

    labels = labels_from_segments(seg_node, segment_ids, volume_node)
    nii = write_label_volume(volume_like(volume_from_node(volume_node), labels, name=stem),
                             output_dir / f"{stem}.nii.gz")
    return [seg_path, Path(nii)]
