"""Slice views for a server that renders in software (Mesa llvmpipe), and when they render.

trame-slicer's slice views render in the UI (asyncio) thread, so every render
delays the page's next answer. Measured on a 2-core CPU (docs/web.md), a click
during a run waited for three full renders (its own, queued before the state
push) plus the renders of arriving slices. This module keeps those renders
few, cheap and behind the page's answers:

* :class:`SliceViewFactory`: trame-slicer's remote slice view without 8x
  multisampling (a 2D slice shows images; llvmpipe spent 3-4 times longer per
  frame with it), one JPEG quality (no second, "still" render of every frame)
  and a cap on the rendered pixels (a HiDPI browser does not quadruple the work);
* :class:`CoalescedRender`: a view's render requests go to trame-rca a few
  milliseconds after the event-loop callback that made them, so the state
  push of the event that caused them (a click's answer) leaves first; renders
  of arriving slices are at most one per view per :data:`ARRIVAL_GAP_S`;
* :meth:`SliceViews.hold` / :meth:`SliceViews.show_written`: while a run writes
  a slice, the views' render requests are held; afterwards only the views whose
  plane crosses the written slice render (the axial view, parallel to the
  written slices, renders only when it shows that slice).

No effect on what is shown: every view still renders after each change it
displays. Imported when the app is built (trame-slicer, VTK).
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import numpy as np
from trame_slicer.rca_view.rca_view_factory import RemoteSliceViewFactory
from trame_slicer.views import ScheduledRenderStrategy

#: JPEG quality of every frame sent (trame-rca's default sends 50, then re-renders at 90)
JPEG_QUALITY = 85
#: most pixels rendered per view (the browser scales the image up beyond it)
MAX_PIXELS = 600_000
#: delay between a render request and the render (the request's own answer goes out first)
RENDER_DELAY_S = 0.005
#: shortest interval between two renders of one view for arriving slices
ARRIVAL_GAP_S = 0.1


class CoalescedRender(ScheduledRenderStrategy):
    """A view's render strategy: requests coalesced into one trame-rca render request.

    Args:
        rca_scheduler: the view's trame-rca scheduler (its ``schedule_render``).
        views: the :class:`SliceViews` that may hold requests during a run's step.
        view_id: the view's singleton tag.
    """

    def __init__(self, rca_scheduler: Any, views: SliceViews, view_id: str) -> None:
        super().__init__()
        self._scheduler = rca_scheduler
        self._views = views
        self.view_id = view_id
        self._handle: asyncio.Handle | None = None
        self._arming = False  # a request waits for the end of the current loop callback
        self._gap = 0.0
        self._due = 0.0
        self._last = -1e9

    def schedule_render(self) -> None:
        """A displayable manager (or trame-slicer) asks for a render."""
        if self._views.holding is not None:
            self._views.holding.add(self.view_id)
            return
        self.request(0.0)

    def request(self, min_gap_s: float) -> None:
        """Render :data:`RENDER_DELAY_S` after the current event-loop callback ends
        (the state push that callback made is sent first), and at least
        ``min_gap_s`` after this view's previous render."""
        if self._arming:
            self._gap = min(self._gap, min_gap_s)
            return
        if self._handle is None:
            self._arming, self._gap = True, min_gap_s
            self._handle = asyncio.get_event_loop().call_soon(self._arm)
            return
        due = max(asyncio.get_event_loop().time() + RENDER_DELAY_S, self._last + min_gap_s)
        if due < self._due:  # a sooner request than the one waiting
            self._handle.cancel()
            self._schedule(due)

    def _arm(self) -> None:
        self._arming = False
        self._schedule(max(asyncio.get_event_loop().time() + RENDER_DELAY_S, self._last + self._gap))

    def _schedule(self, due: float) -> None:
        self._due = due
        self._handle = asyncio.get_event_loop().call_at(due, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._last = asyncio.get_event_loop().time()
        self._scheduler.schedule_render()


class SliceViews:
    """The app's slice views: their factory settings and the run-time render policy."""

    def __init__(self) -> None:
        self.strategies: dict[str, CoalescedRender] = {}
        #: view ids whose render requests arrived during :meth:`hold`, None outside it
        self.holding: set[str] | None = None

    def register(self, view_manager: Any, server: Any) -> None:
        """Register :class:`SliceViewFactory` before trame-slicer's own (the first
        factory that can create a view creates it)."""
        view_manager.register_factory(SliceViewFactory(
            server, self, populate_view_ui_f=populate_slice_view_ui,
            interactive_quality=JPEG_QUALITY, blur_fps=10.0))

    @contextmanager
    def hold(self) -> Iterator[set[str]]:
        """Collect (instead of scheduling) the render requests made inside the block."""
        outer, self.holding = self.holding, set()
        try:
            yield self.holding
        finally:
            held, self.holding = self.holding, outer
            if outer is not None:
                outer |= held

    def render(self, view_ids: Iterable[str], min_gap_s: float = 0.0) -> list[str]:
        """Schedule the renders of ``view_ids`` (those shown in the layout); the ids scheduled."""
        done = []
        for vid in view_ids:
            strategy = self.strategies.get(vid)
            view = strategy.abstract_view if strategy is not None else None
            if view is None or view.is_render_blocked:
                continue
            strategy.request(min_gap_s)
            done.append(vid)
        return done

    def show_written(self, scene: Any, written: list[tuple[str, int, int]]) -> list[str]:
        """After a run's step (its render requests held): render the views that show
        what it changed; the ids of the views scheduled.

        ``written``: the (volume node id, array axis, slice index) of the slices the
        step wrote into segments; empty for the other steps (inputs, undo snapshot,
        run record), after which every slice view renders. After a write, a view
        whose plane is parallel to the written slice renders only if it lies within
        one voxel of it; the views that render do so at most once per
        :data:`ARRIVAL_GAP_S`.
        """
        if not written:
            return self.render(sorted(self.strategies))
        show = [vid for vid, s in self.strategies.items()
                if s.abstract_view is not None
                and any(_plane_meets_slice(s.abstract_view, scene, *w) for w in written)]
        return self.render(show, ARRIVAL_GAP_S)


def populate_slice_view_ui(server: Any, view_id: str, slice_view: Any) -> None:
    """trame-slicer's slice gutter (slider, view buttons) plus the app's overlay
    (orientation, edge letters, slice number: :mod:`OneShotSAMWeb.page`)."""
    from trame_slicer.app.ui import create_vertical_slice_view_gutter_ui

    from OneShotSAMWeb.page import add_view_overlay

    create_vertical_slice_view_gutter_ui(server, view_id, slice_view)
    add_view_overlay(server, slice_view.get_singleton_tag() or view_id, slice_view)


def _plane_meets_slice(view: Any, scene: Any, volume_id: str, axis: int, index: int) -> bool:
    """Whether ``view``'s slice plane passes within one voxel of slice ``index`` of
    the volume's array axis ``axis`` (``[k, j, i]``: 0 = K); True when unsure."""
    from OneShotSAMLib.mrml_bridge import ijk_to_world_ras
    from oneshotsam.errors import OneShotError

    node = view.get_view_node()
    vol = scene.GetNodeByID(volume_id) if volume_id else None
    if node is None or vol is None or not hasattr(vol, "GetIJKToRASMatrix"):
        return True
    try:
        world_to_ijk = np.linalg.inv(ijk_to_world_ras(vol))
    except (OneShotError, np.linalg.LinAlgError):  # non-linear parent transform
        return True
    s = node.GetSliceToRAS()
    slice_to_world = np.array([[s.GetElement(r, c) for c in range(4)] for r in range(4)])
    to_ijk = world_to_ijk @ slice_to_world  # slice plane (x, y, 0, 1) -> (i, j, k, 1)
    c = 2 - int(axis)  # array axis -> IJK component
    d0, d1 = to_ijk[:3, 0], to_ijk[:3, 1]
    if abs(d0[c]) > 1e-3 * np.linalg.norm(d0) or abs(d1[c]) > 1e-3 * np.linalg.norm(d1):
        return True  # not parallel to the written slice: the plane crosses it
    return bool(abs(to_ijk[c, 3] - int(index)) < 1.0)


class SliceViewFactory(RemoteSliceViewFactory):
    """trame-slicer's remote slice view with the settings above."""

    def __init__(self, server: Any, views: SliceViews, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self._slice_views = views  # (IViewFactory has its own ``_views``)

    def _create_view(self, view: Any, scene: Any, app_logic: Any) -> Any:
        rca_view = super()._create_view(view, scene, app_logic)
        slicer_view, adapter = rca_view.slicer_view, rca_view.view_adapter
        slicer_view.render_window().SetMultiSamples(0)
        adapter.update_quality(JPEG_QUALITY, JPEG_QUALITY)
        adapter.max_pixel_count = MAX_PIXELS
        scheduler = getattr(adapter, "_scheduler", None)
        if scheduler is not None:  # private in trame-rca; without it the view keeps its default
            strategy = CoalescedRender(scheduler, self._slice_views, view.singleton_tag)
            slicer_view.set_scheduled_render(strategy)
            self._slice_views.strategies[view.singleton_tag] = strategy
        return rca_view
