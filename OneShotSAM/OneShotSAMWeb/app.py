"""The OneShotSAM browser app: trame-slicer views and segment editor + the OneShotSAM panel.

Left: trame-slicer's own segmentation app pieces (slice views on real MRML
with window/level, volume loading, segment editor effects, segment names and
colours, its undo/redo). Right: the OneShotSAM panel in a clinician's order:
volumes (reference, follow-ups), annotate (paint / erase / draw shortcuts),
targets, method and preset, Run with progress, remaining time and Cancel,
the review list (the review queue's order; a click jumps the
views), Update, Undo of the last run, Save with download links.

The workflow is the Slicer module's: parameter node + :class:`OneShotSAMLogic`
(through :class:`OneShotSAMWeb.session.RunController`); this file only binds
it to widgets. Element ids prefixed ``osam-`` are stable for tests.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oneshotsam.errors import OneShotError

from OneShotSAMLib import parameters as P
from OneShotSAMWeb.editor import (attach_effect_views, brush_on_shown_slice, presets,
                                  register_slicer_modules)
from OneShotSAMWeb.loading import check_uploads_first, not_loaded_message, read_volumes

LAYOUT_ID = "OneShotSAM"
TARGET_MODES = [{"title": "Rest of this volume", "value": "self"},
                {"title": "Loaded follow-up volumes", "value": "volumes"}]


@dataclass(frozen=True)
class WebConfig:
    """Settings of one app instance (from ``oneshotsam web``).

    Attributes:
        volumes: files or DICOM folders loaded at start (first = reference).
        host, port: where the server listens.
        output_dir: where Save writes.
        token: access token (required beyond the loopback), None on loopback.
        method, preset, backend, checkpoint: initial method settings (None = the method's default).
        method_overrides: preset overrides (``--set KEY=VALUE``).
        device: engine device (``auto``, ``cpu``, ``cuda``).
        allow_other_patient: ``--allow-other-patient``: DICOM volumes of another patient load,
            with a warning on the page (:mod:`OneShotSAMWeb.patients`).
    """

    volumes: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8080
    output_dir: Path = Path("oneshotsam-web-output")
    token: str | None = None
    method: str = "medpersam-warp"
    preset: str | None = None
    backend: str | None = None
    checkpoint: str | None = None
    method_overrides: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    allow_other_patient: bool = False


class OneShotSAMWebApp:
    """Builds the app on a trame server; :meth:`start` serves it."""

    def __init__(self, server: Any, cfg: WebConfig) -> None:
        from trame_slicer import module as trame_slicer_module
        from trame_slicer.app.logic import SegmentationAppLogic
        from trame_slicer.app.ui import SegmentationAppUI
        from trame_slicer.core import SlicerApp

        from OneShotSAMWeb.page import ViewLabels
        from OneShotSAMWeb.patients import PatientGuard
        from OneShotSAMWeb.review import ReviewTable, SegmentWatch
        from OneShotSAMWeb.session import RunController
        from OneShotSAMWeb.views import SliceViews

        self.server, self.cfg = server, cfg
        server.enable_module(trame_slicer_module)
        self.slicer_app = SlicerApp()
        register_slicer_modules(self.slicer_app)
        self.views = SliceViews()
        self.views.register(self.slicer_app.view_manager, server)  # before trame-slicer's factories
        self.viewer = SegmentationAppLogic(server, self.slicer_app)
        self._set_layout()  # before the UI builds the grid: only these three views are created
        self.ui = SegmentationAppUI(server, self.viewer.layout_manager)
        self.viewer.set_ui(self.ui)
        self.ui.layout.title.set_text("OneShotSAM")
        self.ui.layout.drawer.width = 280  # the segment editor: room for the views at 1280 px
        attach_effect_views(self.slicer_app)
        brush_on_shown_slice(self.viewer)
        self.labels = ViewLabels(server, self.slicer_app.view_manager)
        self.labels.watch()
        self.run = RunController(self.slicer_app.scene, asyncio.get_event_loop(),
                                 on_change=self._push_status, views=self.views)
        self.review = ReviewTable()
        self.patients = PatientGuard(cfg.allow_other_patient)
        self.run.patient_identity = self.patients.record  # into Save's report.json
        self._saved: dict[str, Path] = {}
        self._n_saves = 0
        self.segment_watch = SegmentWatch(self._refresh_annotation)
        self._init_state()
        from OneShotSAMWeb.panel import build_panel

        build_panel(self)
        self.viewer._load_files_logic.volume_loaded.connect(self._on_volume_loaded)
        # files given on the page: each one loaded or answered (trame-slicer drops unreadable ones)
        self.viewer._load_files_logic._on_load_volume_files = self._load_page_files
        check_uploads_first(self.viewer._load_files_logic, self.ui.load_volume_items_buttons,
                            self._admit_page_files)
        server.controller.on_server_bind.add(self._on_bind)
        server.controller.on_server_ready.add(self._on_ready)
        if cfg.volumes:
            self.load_volumes(list(cfg.volumes))

    # ---------------------------------------------------------------- set-up
    def _set_layout(self) -> None:
        from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

        lm = self.viewer.layout_manager
        lm.register_layout(LAYOUT_ID, Layout(LayoutDirection.Horizontal, [
            ViewLayoutDefinition.axial_view(),
            Layout(LayoutDirection.Vertical, [ViewLayoutDefinition.coronal_view(),
                                              ViewLayoutDefinition.sagittal_view()])]))
        self.viewer._layout_button_logic.data.current_layout_id = LAYOUT_ID
        lm.set_layout(LAYOUT_ID)


    def _init_state(self) -> None:
        from OneShotSAMWeb.page import FAVICON

        st = self.server.state
        st.trame__title = "OneShotSAM"
        st.trame__favicon = FAVICON  # trame-slicer's points to another host
        st.osam_volumes = []
        st.osam_reference = None
        st.osam_followups = []
        st.osam_target_modes = TARGET_MODES
        st.osam_target_mode = "self"
        st.osam_methods = [{"title": k, "value": v} for k, v in P.METHODS.items()]
        st.osam_method = self.cfg.method
        st.osam_presets = presets(self.cfg.method)
        st.osam_preset = self.cfg.preset or ""
        st.osam_running = False
        st.osam_progress = 0
        st.osam_remaining = ""
        st.osam_message = "load a volume, paint the structure on one slice, then Run"
        st.osam_error = ""
        st.osam_patient_warning = ""
        st.osam_rows = []
        st.osam_n_rows = 0
        st.osam_n_flagged = 0
        st.osam_current = -1
        st.osam_annotated = "nothing painted yet"
        st.osam_annotated_warn = False
        st.osam_viewing = ""
        st.osam_saved = []
        st.osam_can_undo = False
        st.osam_can_update = False
        st.osam_latency_max_s = None
        st.change("osam_method")(self._on_method_changed)

    def _on_bind(self, wslink_server: Any) -> None:
        from OneShotSAMWeb.security import make_middleware

        app = wslink_server.app  # aiohttp, before it starts: middlewares can still be added
        app.middlewares.append(make_middleware(self.cfg.host, self.cfg.token))
        app.router.add_get("/download/{name}", self._download)

    async def _download(self, request: Any) -> Any:
        from aiohttp import web

        name = request.match_info["name"]
        path = self._saved.get(name)
        if path is None or not path.is_file():
            raise web.HTTPNotFound(text="no such saved file")
        return web.FileResponse(path, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    def _on_ready(self, **_: Any) -> None:
        self.labels.watch()
        for view in self.slicer_app.view_manager.get_slice_views():
            view.render_window().AddObserver(
                "EndEvent", lambda *_a, vid=view.get_singleton_tag(): self.run.view_rendered(vid))

    # ---------------------------------------------------------------- volumes
    def load_volumes(self, paths: list[str]) -> None:
        """Load files / DICOM folders (first = reference) as the page's Load button does."""
        for p in paths:
            if not Path(p).exists():
                raise OneShotError(f"volume not found: {p}")
        self.server.state.osam_patient_warning = self.patients.admit(paths, from_page=False)
        volumes, failed = read_volumes(self.slicer_app.io_manager, paths)
        if failed:
            raise OneShotError(f"could not read {', '.join(failed)}: give NIfTI, NRRD, MHA "
                               "files or a DICOM folder")
        self._show_loaded(volumes)

    def _show_loaded(self, volumes: list[Any]) -> None:
        if volumes:
            self.slicer_app.display_manager.show_volume(volumes[0], do_reset_views=True)
            self.viewer._load_files_logic.volume_loaded(volumes[0])
            self.labels.fit_all()

    def _admit_page_files(self, paths: list[str]) -> bool:
        """Before a page upload replaces the scene: another patient's DICOM files are
        refused, the scene kept (:mod:`OneShotSAMWeb.patients`)."""
        try:
            self.server.state.osam_patient_warning = self.patients.admit(paths, from_page=True)
            return True
        except OneShotError as exc:
            self.run.status.error = str(exc)
            self.run.status.message = f"loaded 0 of {len(paths)} file(s)"
            self._push_status()
            return False

    def _load_page_files(self, paths: list[str]) -> None:
        """Files given with the page's Load button: each one loaded or named in a message."""
        volumes, failed = read_volumes(self.slicer_app.io_manager, paths)
        self._show_loaded(volumes)
        status = self.run.status  # the page's message and error lines, until the next run
        status.error = not_loaded_message(failed)
        status.message = f"loaded {len(volumes)} of {len(paths)} file(s)"
        self._push_status()

    def _volume_nodes(self) -> list[Any]:
        scene = self.slicer_app.scene
        return [n for n in (scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
                            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")))
                if not n.IsA("vtkMRMLLabelMapVolumeNode")
                and not n.GetName().startswith("__oneshotsam_tmp__")]

    def _on_volume_loaded(self, volume_node: Any) -> None:
        editor = self.slicer_app.segmentation_editor
        if editor.active_segmentation is not None and editor.n_segments == 0:
            editor.add_empty_segment(segment_name="Structure", segment_color=[0.95, 0.35, 0.2])
        vols = self._volume_nodes()
        st = self.server.state
        st.osam_volumes = [{"title": v.GetName(), "value": v.GetID()} for v in vols]
        st.osam_reference = volume_node.GetID()
        st.osam_followups = [v.GetID() for v in vols if v.GetID() != volume_node.GetID()]
        st.osam_target_mode = "self"
        self.run.status.rows = []
        self.review = type(self.review)()
        self._watch_segmentation()
        self._push_status()
        self.segment_watch.changed()

    def set_reference(self, node_id: str) -> None:
        node = self.slicer_app.scene.GetNodeByID(node_id)
        if node is None:
            return
        self.slicer_app.display_manager.show_volume(node, do_reset_views=True)
        editor = self.slicer_app.segmentation_editor
        if editor.active_segmentation_node is not None:
            editor.set_active_segmentation(editor.active_segmentation_node, node)

    # ---------------------------------------------------------------- run
    def _on_method_changed(self, osam_method: str, **_: Any) -> None:
        self.server.state.osam_presets = presets(osam_method)
        if self.server.state.osam_preset not in [p["value"] for p in self.server.state.osam_presets]:
            self.server.state.osam_preset = ""

    def write_parameters(self) -> None:
        """Parameter node <- the page's choices (the same node the Slicer widget binds)."""
        st = self.server.state
        editor = self.slicer_app.segmentation_editor
        scene = self.slicer_app.scene
        ref = scene.GetNodeByID(st.osam_reference) if st.osam_reference else None
        seg = editor.active_segmentation_node
        if ref is None:
            raise OneShotError("load a volume first (Load button, or give it to 'oneshotsam web')")
        if seg is None or editor.n_segments == 0:
            raise OneShotError("add a segment and paint the structure on one slice first")
        mode = st.osam_target_mode
        targets = tuple(n for n in (scene.GetNodeByID(i) for i in (st.osam_followups or []))
                        if n is not None and n.GetID() != ref.GetID()) if mode == "volumes" else ()
        node = self.run.logic.parameter_node()
        P.set_inputs(node, ref, seg, targets)
        same_method = st.osam_method == self.cfg.method
        P.write_settings(node, P.RunSettings(
            method=st.osam_method, preset=st.osam_preset or None, device=self.cfg.device,
            backend=self.cfg.backend if same_method else None,
            checkpoint=self.cfg.checkpoint if same_method else None,
            target_mode=mode, segment_ids=tuple(editor.get_segment_ids()),
            method_overrides=dict(self.cfg.method_overrides) if same_method else {}))

    def start_run(self, update: bool = False) -> None:
        try:
            if not update:
                self.write_parameters()
            self.slicer_app.segmentation_editor.deactivate_effect()  # no brush during the run
            self.review.current = None
            self.run.start(update=update)
        except OneShotError as exc:  # shown until the next run (kept by every status push)
            self.run.status.error = str(exc)
            self._push_status()

    def cancel_run(self) -> None:
        self.run.cancel()
        self.server.state.osam_message = "cancelling: finished slices are kept"

    def undo_run(self) -> None:
        try:
            self.run.undo()
            self.server.state.osam_error = ""
        except OneShotError as exc:
            self.server.state.osam_error = str(exc)
        self._render_slice_views()

    def save_clicked(self) -> None:
        """The Save button (returns nothing: a trame callback's result goes to the page)."""
        self.save()

    def save(self) -> list[Path]:
        """Write the segmentation: the last run's outputs, or before any run the annotation."""
        st = self.server.state
        try:
            if not P.read_run_record(self.run.logic.parameter_node()) and not self.run.status.running:
                self.write_parameters()  # nothing run yet: save what is painted
            paths = self.run.save(Path(self.cfg.output_dir))
        except OneShotError as exc:
            st.osam_error = str(exc)
            return []
        self._saved = {p.name: p for p in paths}
        st.osam_saved = [{"name": p.name, "url": f"download/{p.name}", "path": str(p)} for p in paths]
        self._n_saves += 1
        status = self.run.status  # kept by the next status push (e.g. the one after a run)
        status.message = f"save {self._n_saves}: {len(paths)} file(s) in {self.cfg.output_dir}"
        status.error = ""
        self._push_status()
        return paths

    def jump_to(self, index: int) -> None:
        """Centre every slice view on review row ``index`` (its volume shown)."""
        import slicer

        rows = self.run.status.rows
        if not 0 <= index < len(rows):
            return
        row = rows[index]
        try:  # the Logic resolves the row (a sequence item moves its browser there)
            where = self.run.logic.locate_row(row)
        except OneShotError:
            return
        vol = where.volume_node
        if vol.GetID() != self._shown_volume_id():
            self.slicer_app.display_manager.show_volume(vol)
        r, a, s = (float(x) for x in where.ras)
        slicer.vtkMRMLSliceNode.JumpAllSlices(self.slicer_app.scene, r, a, s,
                                              slicer.vtkMRMLSliceNode.CenteredJumpSlice)
        self.review.current = index
        self.server.state.osam_current = index
        self.server.state.osam_viewing = f"{row.target_name}: slice {row.slice_index}"

    def step_flagged(self, step: int) -> None:
        """Jump to the next (1) or previous (-1) flagged slice of the review table."""
        i = self.review.step_flagged(self.run.status.rows, step)
        if i is not None:
            self.jump_to(i)

    def approve_current(self) -> None:
        """Mark (or unmark) the slice shown as approved."""
        rows, i = self.run.status.rows, self.review.current
        if i is not None and 0 <= i < len(rows):
            self.review.toggle_approved(rows[i])
            self._push_status()

    # ---------------------------------------------------------------- annotation watch
    def _watch_segmentation(self) -> None:
        """Watch the annotated segmentation and the last run's outputs."""
        record = P.read_run_record(self.run.logic.parameter_node()) or {}
        self.segment_watch.watch([self.slicer_app.segmentation_editor.active_segmentation_node]
                                 + [self.slicer_app.scene.GetNodeByID(o["segmentation"])
                                    for o in record.get("outputs", [])])

    def _refresh_annotation(self) -> None:
        """Annotation summary (before a run) and corrected rows (after it)."""
        from OneShotSAMWeb.review import summarise

        if self.run.status.running:
            return
        st = self.server.state
        ref = self.slicer_app.scene.GetNodeByID(st.osam_reference) if st.osam_reference else None
        st.osam_annotated, st.osam_annotated_warn, self.review.corrected = summarise(
            self.run.logic.parameter_node(), ref, self.slicer_app.segmentation_editor)
        self._push_status()

    def _shown_volume_id(self) -> str | None:
        views = self.slicer_app.view_manager.get_slice_views()
        return views[0].get_background_volume_id() if views else None

    # ---------------------------------------------------------------- UI-thread callbacks
    def _render_slice_views(self) -> None:
        for view in self.slicer_app.view_manager.get_slice_views():
            view.schedule_render()

    def _push_status(self) -> None:
        from OneShotSAMWeb.page import RUNNING_CSS

        s = self.run.status
        rows = self.review.rows(s.rows)
        if not s.running and self.server.state.osam_running:  # a run just ended
            self._watch_segmentation()
            self.segment_watch.changed()
        self.running_style.update(RUNNING_CSS if s.running else "")
        with self.server.state as st:
            st.osam_running = s.running
            st.osam_progress = s.percent
            st.osam_remaining = s.eta
            st.osam_n_flagged = sum(1 for r in s.rows if r.flagged)
            st.osam_current = -1 if self.review.current is None else self.review.current
            st.osam_message = s.message
            st.osam_error = s.error
            st.osam_rows = rows
            st.osam_n_rows = len(rows)
            st.osam_can_undo = self.run.logic.can_undo() and not s.running
            st.osam_can_update = bool(P.read_run_record(self.run.logic.parameter_node())) \
                and not s.running
            st.osam_latency_max_s = round(max(s.shown_latency_s), 3) if s.shown_latency_s else None

