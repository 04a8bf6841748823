"""Set-up of trame-slicer's pieces for the app (no page widgets here).

The ``slicer`` module names the Logic looks up, the effect pipelines' views,
the brush default, the preset lists of the method selector.
"""

from __future__ import annotations

from typing import Any


def register_slicer_modules(slicer_app: Any) -> None:
    """Make ``slicer.mrmlScene`` / ``slicer.modules.<name>.logic()`` point at the app's
    scene and logics (the ``slicer.util`` helpers the Logic uses look there)."""
    import types

    import slicer

    slicer.mrmlScene = slicer_app.scene
    if getattr(slicer, "modules", None) is None:
        slicer.modules = types.SimpleNamespace()
    for name, logic in (("segmentations", slicer_app.segmentations_logic),
                        ("volumes", slicer_app.volumes_logic), ("colors", slicer_app.color_logic)):
        setattr(slicer.modules, name, types.SimpleNamespace(logic=lambda lg=logic: lg))


def presets(method: str) -> list[dict[str, str]]:
    from oneshotsam.presets import list_presets

    return [{"title": "method default", "value": ""}] + \
        [{"title": n, "value": n} for n in list_presets(method)]


def attach_effect_views(slicer_app: Any) -> None:
    """Give every segment-editor effect pipeline its view.

    The effects' parameter nodes exist before the views, so their pipelines are
    created while each view is being built, before the view factory lists it,
    and get no view (with slicer-core 5.12 the paint effect then fails on
    activation). Look the views up now that they exist."""
    vm = slicer_app.view_manager
    for effect in slicer_app.segmentation_editor._effects.values():
        for ref in effect._pipelines:
            pipeline = ref()
            if pipeline is not None and pipeline._view is None and pipeline.GetViewNode() is not None:
                pipeline.SetView(vm.get_view(pipeline.GetViewNode()))


def brush_on_shown_slice(viewer: Any) -> None:
    """Paint and Erase start as a 2D brush on the slice shown (as Slicer's Segment
    Editor does); trame-slicer's page starts them as a 3D sphere, which paints
    through neighbouring slices (each then becomes a reference of the run)."""
    for logic in viewer._segment_editor_logic._effect_logic:
        brush = getattr(logic, "_brush_state", None)
        if brush is not None:
            brush.data.use_sphere_brush = False

