"""When the browser app's slice views render (OneShotSAMWeb.views), without a browser.

Render requests made in one event-loop callback become one render, after that
callback; requests held during a run's step become renders of the views that
show the written slice only; arriving slices render a view at most once per
ARRIVAL_GAP_S; the slice-shown latency closes on the render of a view that shows
the slice.
"""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("trame_slicer")
pytest.importorskip("slicer_layer_dm", reason="slicer-layer-dm (trame-slicer's MRML layer) "
                    "is installed by the README setup command")


class _Scheduler:
    """Stands in for trame-rca's scheduler: records when a render was requested."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self.times = loop, []

    def schedule_render(self) -> None:
        self.times.append(self.loop.time())


class _View:
    def __init__(self, slice_node) -> None:
        self.node, self.is_render_blocked = slice_node, False

    def get_view_node(self):
        return self.node


def _views(loop, slice_nodes: dict):
    from OneShotSAMWeb.views import CoalescedRender, SliceViews

    views = SliceViews()
    scheds = {}
    for vid, node in slice_nodes.items():
        scheds[vid] = _Scheduler(loop)
        strategy = CoalescedRender(scheds[vid], views, vid)
        strategy.set_abstract_view(_View(node))
        views.strategies[vid] = strategy
    return views, scheds


def _scene_with_volume(scene):
    """A 48 x 48 x 16 volume (spacing 1, 1, 2 mm; LPS directions as read from NRRD) and
    axial, sagittal and coronal slice nodes through its centre."""
    import slicer
    import vtk

    img = vtk.vtkImageData()
    img.SetDimensions(48, 48, 16)
    img.AllocateScalars(vtk.VTK_SHORT, 1)
    vol = slicer.vtkMRMLScalarVolumeNode()
    vol.SetSpacing(1.0, 1.0, 2.0)
    vol.SetIJKToRASDirections(-1, 0, 0, 0, -1, 0, 0, 0, 1)
    vol.SetAndObserveImageData(img)
    scene.AddNode(vol)
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    nodes = {}
    for name, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")):
        sn = scene.CreateNodeByClass("vtkMRMLSliceNode")  # with the scene's orientation presets
        sn.SetName(name)
        sn.SetLayoutName(name)
        scene.AddNode(sn)
        sn.SetOrientation(orientation)
        sn.JumpSliceByCentering(-23.5, -23.5, 7 * 2.0)  # the centre of voxel (23.5, 23.5, 7)
        nodes[name] = sn
    return vol, nodes


def _run(loop, coro_fn):
    return loop.run_until_complete(coro_fn())


def test_requests_in_one_callback_make_one_render_after_it():
    loop = asyncio.new_event_loop()
    try:
        views, scheds = _views(loop, {"Red": None})
        strategy = views.strategies["Red"]

        async def go():
            t0 = loop.time()
            for _ in range(5):  # e.g. a click: several displayable managers ask
                strategy.schedule_render()
            assert scheds["Red"].times == []  # not before the callback ends
            await asyncio.sleep(0.05)
            return t0

        t0 = _run(loop, go)
        assert len(scheds["Red"].times) == 1 and scheds["Red"].times[0] >= t0
    finally:
        loop.close()


def test_written_slice_renders_only_views_showing_it(scene):
    from OneShotSAMWeb.views import ARRIVAL_GAP_S

    vol, nodes = _scene_with_volume(scene)
    loop = asyncio.new_event_loop()
    try:
        views, scheds = _views(loop, nodes)

        async def go():
            with views.hold() as held:  # a run's step: the displayable managers ask
                for s in views.strategies.values():
                    s.schedule_render()
            assert held == {"Red", "Yellow", "Green"}
            await asyncio.sleep(0.02)
            assert all(not s.times for s in scheds.values())  # held, not rendered
            # slice k = 3 written: the axial view shows k = 7, the others cross it
            shown = views.show_written(scene, [(vol.GetID(), 0, 3)])
            assert sorted(shown) == ["Green", "Yellow"]
            await asyncio.sleep(0.03)
            assert [len(scheds[v].times) for v in ("Red", "Yellow", "Green")] == [0, 1, 1]
            # slice k = 7: the axial view too; a view renders at most once per ARRIVAL_GAP_S
            assert sorted(views.show_written(scene, [(vol.GetID(), 0, 7)])) == ["Green", "Red", "Yellow"]
            await asyncio.sleep(ARRIVAL_GAP_S + 0.05)
            times = scheds["Green"].times
            assert len(times) == 2 and times[1] - times[0] >= ARRIVAL_GAP_S - 1e-3
            assert len(scheds["Red"].times) == 1
            # a step that wrote nothing (inputs, run record): every view renders
            assert sorted(views.show_written(scene, [])) == ["Green", "Red", "Yellow"]
            # a view hidden from the layout does not
            views.strategies["Red"].abstract_view.is_render_blocked = True
            assert "Red" not in views.show_written(scene, [(vol.GetID(), 0, 7)])

        _run(loop, go)
    finally:
        loop.close()


def test_shown_latency_closes_on_a_view_showing_the_slice(scene):
    from OneShotSAMWeb.session import RunController

    loop = asyncio.new_event_loop()
    rc = RunController(scene, loop, on_change=lambda: None)
    loop.close()
    rc._pending_shown = [(0.0, {"Yellow", "Green"}), (0.0, {"Red"})]  # two slices reported
    rc.view_rendered("Green")
    assert len(rc.status.shown_latency_s) == 1 and rc._pending_shown == [(0.0, {"Red"})]
    rc.view_rendered("Yellow")
    assert len(rc.status.shown_latency_s) == 1
    rc.view_rendered("Red")
    assert len(rc.status.shown_latency_s) == 2 and not rc._pending_shown
