"""The OneShotSAM panel (right-hand drawer) of the browser app: widgets only.

Sections in a clinician's order: Volumes, Annotate, Propagate (targets,
method, preset, Run / Cancel with progress and remaining time), Review (list
ranked flagged-first then by confidence; a click jumps the views; Update;
Undo), Save (files and download links). Every action calls a method of
:class:`OneShotSAMWeb.app.OneShotSAMWebApp`.
"""

from __future__ import annotations

from typing import Any


def build_panel(app: Any) -> None:
    """Add the right-hand drawer to ``app.ui.layout``."""
    from trame.widgets import html
    from trame.widgets import vuetify3 as v
    from trame_slicer.segmentation import (SegmentationEffectDraw, SegmentationEffectErase,
                                           SegmentationEffectPaint)

    editor = app.slicer_app.segmentation_editor

    def effect(kind: Any) -> Any:
        return lambda: editor.set_active_effect_type(kind)

    with app.ui.layout:
        with v.VNavigationDrawer(location="right", permanent=True, width=380,
                                 disable_resize_watcher=True, disable_route_watcher=True):
            with html.Div(classes="pa-3", style="overflow-y: auto; height: 100%;"):
                html.Div("1. Volumes", classes="text-subtitle-1")
                v.VSelect(id="osam-reference", label="Reference (annotated) volume",
                          items=("osam_volumes",), v_model=("osam_reference",), density="compact",
                          update_modelValue=(app.set_reference, "[$event]"),
                          disabled=("osam_running",))
                v.VSelect(id="osam-followups", label="Follow-up volumes", multiple=True, chips=True,
                          items=("osam_volumes.filter(x => x.value !== osam_reference)",),
                          v_model=("osam_followups",), density="compact",
                          disabled=("osam_running",))
                html.Div("Open more volumes (NIfTI, NRRD, MHA, DICOM folder) with the "
                         "buttons at the top left; window/level: drag with the right button "
                         "or use the volume properties tool.", classes="text-caption mb-2")

                html.Div("2. Annotate one slice", classes="text-subtitle-1")
                with html.Div(classes="d-flex ga-1 mb-1"):
                    v.VBtn("Paint", id="osam-paint", size="small", prepend_icon="mdi-brush",
                           click=effect(SegmentationEffectPaint), disabled=("osam_running",))
                    v.VBtn("Erase", id="osam-erase", size="small", prepend_icon="mdi-eraser",
                           click=effect(SegmentationEffectErase), disabled=("osam_running",))
                    v.VBtn("Draw", id="osam-draw", size="small", prepend_icon="mdi-draw",
                           click=effect(SegmentationEffectDraw), disabled=("osam_running",))
                html.Div("Segment names and colours: the segment list (brush button on the "
                         "left toolbar).", classes="text-caption mb-2")

                html.Div("3. Propagate", classes="text-subtitle-1")
                v.VSelect(id="osam-target-mode", label="Targets", items=("osam_target_modes",),
                          v_model=("osam_target_mode",), density="compact",
                          disabled=("osam_running",))
                v.VSelect(id="osam-method", label="Method", items=("osam_methods",),
                          v_model=("osam_method",), density="compact", disabled=("osam_running",))
                v.VSelect(id="osam-preset", label="Preset", items=("osam_presets",),
                          v_model=("osam_preset",), density="compact", disabled=("osam_running",))
                with html.Div(classes="d-flex ga-2 mb-1"):
                    v.VBtn("Run", id="osam-run", color="primary", click=app.start_run,
                           disabled=("osam_running",))
                    v.VBtn("Cancel", id="osam-cancel", click=app.cancel_run,
                           disabled=("!osam_running",))
                v.VProgressLinear(id="osam-progress", model_value=("osam_progress",), height=8,
                                  color="primary", classes="my-1")
                html.Div("{{ osam_message }} {{ osam_remaining }}", id="osam-message",
                         classes="text-caption")
                html.Div("{{ osam_error }}", id="osam-error", v_show=("osam_error",),
                         classes="text-caption text-error")

                html.Div("4. Review ({{ osam_n_rows }} slices; flagged first)", id="osam-review-title",
                         classes="text-subtitle-1 mt-2")
                html.Div("{{ osam_viewing }}", id="osam-viewing", classes="text-caption")
                with v.VList(id="osam-review", density="compact", max_height=220,
                             style="overflow-y: auto;"):
                    with v.VListItem(v_for="row in osam_rows", key="row.i",
                                     click=(app.jump_to, "[row.i]"),
                                     classes="osam-row"):
                        v.VListItemTitle(
                            "{{ row.flagged ? '⚑ ' : '' }}{{ row.target }} slice {{ row.slice }}"
                            " · confidence {{ row.conf }}")
                html.Div("Correct a slice with the brush, then Update: corrected slices become "
                         "references and are never rewritten.", classes="text-caption")
                with html.Div(classes="d-flex ga-2 my-1"):
                    v.VBtn("Update", id="osam-update", click=(app.start_run, "[true]"),
                           disabled=("osam_running || !osam_can_update",))
                    v.VBtn("Undo run", id="osam-undo", click=app.undo_run,
                           disabled=("osam_running || !osam_can_undo",))

                html.Div("5. Save", classes="text-subtitle-1 mt-2")
                v.VBtn("Save", id="osam-save", click=app.save, disabled=("osam_running",))
                with html.Div(id="osam-saved"):
                    with html.Div(v_for="f in osam_saved", key="f.name"):
                        html.A("{{ f.name }}", href=("f.url",), download=("f.name",),
                               classes="text-caption osam-download")
