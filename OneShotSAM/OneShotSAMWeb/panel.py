"""The OneShotSAM panel (right-hand drawer) of the browser app: widgets only.

Sections in a clinician's order: Volumes, Annotate (which slices hold the
annotation), Propagate (targets, method, preset, Run / Cancel with progress
and remaining time), Review (a table: slice, confidence, state flagged /
corrected / approved; in the review queue's order; a click jumps the
views; next / previous flagged and approve by button or key n / p / a;
Update; Undo), Save (any time: the annotation before a run, the result after;
download links). The panel is a column whose review table takes the height
left, so the whole panel works from a 1280 x 720 window up. Every action calls
a method of :class:`OneShotSAMWeb.app.OneShotSAMWebApp`.
"""

from __future__ import annotations

from typing import Any

PANEL_WIDTH = 340


def build_panel(app: Any) -> None:
    """Add the right-hand drawer, the page's style and keyboard script to ``app.ui.layout``."""
    from trame.widgets import client, html
    from trame.widgets import vuetify3 as v
    from trame_slicer.segmentation import (SegmentationEffectDraw, SegmentationEffectErase,
                                           SegmentationEffectPaint)

    from OneShotSAMWeb.page import PAGE_CSS, PAGE_JS

    editor = app.slicer_app.segmentation_editor
    compact = {"density": "compact", "hide_details": True, "classes": "mb-2"}

    def effect(kind: Any) -> Any:
        def activate() -> None:  # returns nothing: a trame callback's result is sent to the page
            editor.set_active_effect_type(kind)
        return activate

    with app.ui.layout:
        client.Style(PAGE_CSS)
        app.running_style = client.Style("")
        client.Script(PAGE_JS)
        with v.VNavigationDrawer(location="right", permanent=True, width=PANEL_WIDTH,
                                 disable_resize_watcher=True, disable_route_watcher=True):
            with html.Div(classes="pa-2 d-flex flex-column", id="osam-panel",
                          style="height: 100%; overflow-y: auto;"):
                html.Div("1. Volumes", classes="text-subtitle-2")
                with html.Div(classes="d-flex ga-2"):
                    v.VSelect(id="osam-reference", label="Reference (annotated)",
                              items=("osam_volumes",), v_model=("osam_reference",),
                              update_modelValue=(app.set_reference, "[$event]"),
                              disabled=("osam_running",), **compact)
                    v.VSelect(id="osam-followups", label="Follow-ups", multiple=True,
                              items=("osam_volumes.filter(x => x.value !== osam_reference)",),
                              v_model=("osam_followups",), disabled=("osam_running",), **compact)
                html.Div("{{ osam_patient_warning }}", id="osam-patient-warning",
                         v_show=("osam_patient_warning",), classes="text-caption text-warning mb-1")

                html.Div("2. Annotate one slice", classes="text-subtitle-2")
                with html.Div(classes="d-flex ga-1 mb-1"):
                    v.VBtn("Paint", id="osam-paint", size="small", prepend_icon="mdi-brush",
                           click=effect(SegmentationEffectPaint), disabled=("osam_running",))
                    v.VBtn("Erase", id="osam-erase", size="small", prepend_icon="mdi-eraser",
                           click=effect(SegmentationEffectErase), disabled=("osam_running",))
                    v.VBtn("Draw", id="osam-draw", size="small", prepend_icon="mdi-draw",
                           click=effect(SegmentationEffectDraw), disabled=("osam_running",))
                html.Div("{{ osam_annotated }}", id="osam-annotated", v_show=("osam_annotated",),
                         classes=("osam_annotated_warn ? 'text-caption text-warning mb-1' "
                                  ": 'text-caption mb-1'",))

                html.Div("3. Propagate", classes="text-subtitle-2")
                v.VSelect(id="osam-target-mode", label="Targets", items=("osam_target_modes",),
                          v_model=("osam_target_mode",), disabled=("osam_running",), **compact)
                with html.Div(classes="d-flex ga-2"):
                    v.VSelect(id="osam-method", label="Method", items=("osam_methods",),
                              v_model=("osam_method",), disabled=("osam_running",), **compact)
                    v.VSelect(id="osam-preset", label="Preset", items=("osam_presets",),
                              v_model=("osam_preset",), disabled=("osam_running",), **compact)
                with html.Div(classes="d-flex ga-2 mb-1"):
                    v.VBtn("Run", id="osam-run", color="primary", size="small", click=app.start_run,
                           disabled=("osam_running",))
                    v.VBtn("Cancel", id="osam-cancel", size="small", click=app.cancel_run,
                           disabled=("!osam_running",))
                v.VProgressLinear(id="osam-progress", model_value=("osam_progress",), height=8,
                                  color="primary", classes="my-1")
                html.Div("{{ osam_message }}", id="osam-message", classes="text-caption")
                html.Div("{{ osam_remaining }}", id="osam-remaining", v_show=("osam_remaining",),
                         classes="text-caption")
                html.Div("{{ osam_error }}", id="osam-error", v_show=("osam_error",),
                         classes="text-caption text-error")

                html.Div("4. Review: {{ osam_n_rows }} slices, {{ osam_n_flagged }} flagged",
                         id="osam-review-title", classes="text-subtitle-2 mt-1")
                html.Div("{{ osam_viewing }}", id="osam-viewing", classes="text-caption")
                with html.Div(id="osam-review", style="flex: 1 1 120px; min-height: 120px; "
                              "overflow-y: auto; border: 1px solid #444;"):
                    with html.Table():
                        with html.Thead():
                            with html.Tr():
                                html.Th("slice")
                                html.Th("volume", v_if=("osam_target_mode === 'volumes'",))
                                html.Th("confidence")
                                html.Th("state")
                        with html.Tbody():
                            with html.Tr(v_for="row in osam_rows", key="row.i",
                                         click=(app.jump_to, "[row.i]"),
                                         classes=("row.i === osam_current ? 'osam-row osam-current' "
                                                  ": 'osam-row'",)):
                                html.Td("{{ row.slice }}", classes="osam-row-slice")
                                html.Td("{{ row.target }}", v_if=("osam_target_mode === 'volumes'",))
                                html.Td("{{ row.conf }}", classes="osam-row-conf")
                                html.Td("{{ row.state }}",
                                        classes=("'osam-row-state osam-state-' + row.state",))
                with html.Div(classes="d-flex ga-1 my-1"):
                    v.VBtn("< flagged (p)", id="osam-prev-flagged", size="x-small",
                           click=(app.step_flagged, "[-1]"), disabled=("!osam_n_flagged",))
                    v.VBtn("flagged > (n)", id="osam-next-flagged", size="x-small",
                           click=(app.step_flagged, "[1]"), disabled=("!osam_n_flagged",))
                    v.VBtn("approve (a)", id="osam-approve", size="x-small", click=app.approve_current,
                           disabled=("osam_running || osam_current < 0",))
                with html.Div(classes="d-flex ga-2 my-1 align-center"):
                    v.VBtn("Update", id="osam-update", size="small", click=(app.start_run, "[true]"),
                           disabled=("osam_running || !osam_can_update",),
                           title="correct slices with the brush, then Update: corrected slices "
                                 "are kept, the others recomputed")
                    v.VBtn("Undo run", id="osam-undo", size="small", click=app.undo_run,
                           disabled=("osam_running || !osam_can_undo",))
                    v.VSpacer()
                    v.VBtn("Save", id="osam-save", size="small", color="secondary",
                           click=app.save_clicked, disabled=("osam_running",),
                           title="save the annotation (before a run) or the result")
                with html.Div(id="osam-saved"):
                    with html.Div(v_for="f in osam_saved", key="f.name"):
                        html.A("{{ f.name }}", href=("f.url",), download=("f.name",),
                               classes="text-caption osam-download")
