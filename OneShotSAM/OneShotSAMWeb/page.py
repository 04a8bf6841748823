"""What the page shows around the slice views, and how it behaves in a browser tab.

* Each slice view names its orientation (axial / coronal / sagittal), shows the
  patient directions at its four edges (R/L, A/P, S/I, from the slice plane's
  axes) and the slice number of the shown volume along the view's normal (the
  same 0-based index as the review table).
* Views are fitted to the volume when it is shown and whenever the browser
  resizes them (the first size arrives after the volume is shown).
* Two tabs (or windows) share one server-side view per orientation, rendered at
  the size of the tab that last sent its size. The image is shown with
  ``object-fit: contain`` (never stretched or cropped), and a tab whose view
  image does not have its own size sends its size again when the pointer
  enters that view, when the tab gets the focus or becomes visible: the view
  then renders at that tab's size.
* Keyboard: ``n`` / ``p`` jump to the next / previous flagged slice of the
  review table, ``a`` approves the slice shown (outside text fields).
* Nothing is fetched from another host: the icon is an inline SVG.

Imported when the app is built (trame, VTK).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

_ICON_SVG = ("<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'>"
             "<rect width='32' height='32' rx='6' fill='#1e4e79'/>"
             "<circle cx='16' cy='16' r='9' fill='none' stroke='#f25a33' stroke-width='4'/></svg>")
#: the page's icon, served inline (a clinical network may have no internet)
FAVICON = "data:image/svg+xml;base64," + base64.b64encode(_ICON_SVG.encode()).decode()

PAGE_CSS = """
img.image-display-area { width: 100% !important; height: 100% !important; object-fit: contain; }
.osam-view-label { position: absolute; top: 4px; left: 40px; z-index: 2; pointer-events: none;
  font: 12px/1.3 Roboto, sans-serif; color: #ffd54f; text-shadow: 0 0 3px #000; }
.osam-edge { position: absolute; z-index: 2; pointer-events: none; font: bold 13px Roboto, sans-serif;
  color: #ffd54f; text-shadow: 0 0 3px #000; }
.osam-edge-left { left: 6px; top: 50%; } .osam-edge-right { right: 6px; top: 50%; }
.osam-edge-top { top: 22px; left: 50%; } .osam-edge-bottom { bottom: 30px; left: 50%; }
#osam-panel > .v-input { flex: 0 0 auto; }  /* a Vuetify input grows in a column otherwise */
#osam-review table { width: 100%; border-collapse: collapse; font-size: 12px; }
#osam-review th { position: sticky; top: 0; background: #2b2b2b; text-align: left; padding: 2px 4px; }
#osam-review td { padding: 1px 4px; border-top: 1px solid #3a3a3a; white-space: nowrap; }
#osam-review tr.osam-row { cursor: pointer; }
#osam-review tr.osam-row:hover { background: #37474f; }
#osam-review tr.osam-current { background: #455a64; }
.osam-state-flagged { color: #ff8a65; } .osam-state-corrected { color: #81d4fa; }
.osam-state-approved { color: #a5d6a7; }
"""

#: while a run writes into the segmentation: the segment editor (left toolbar,
#: segment list, effect options, its undo/redo) takes no input
RUNNING_CSS = """
.v-navigation-drawer--left { pointer-events: none !important; opacity: 0.45; }
"""

PAGE_JS = r"""
(function () {
  if (window.__osamPage) return; window.__osamPage = true;
  function ownSize(area) {
    const img = area.querySelector('img.image-display-area');
    if (!img || !img.naturalWidth) return true;
    const r = area.getBoundingClientRect();
    return Math.abs(img.naturalWidth - Math.round(r.width)) <= 2
        && Math.abs(img.naturalHeight - Math.round(r.height)) <= 2;
  }
  function resend(area) {  // trame-rca sends a view's size when this element resizes
    if (area.__osamNudge || ownSize(area)) return;
    area.__osamNudge = true;
    const old = area.style.width;
    area.style.width = 'calc(100% - 1px)';
    setTimeout(() => { area.style.width = old; setTimeout(() => { area.__osamNudge = false; }, 300); }, 150);
  }
  function areas() {
    return Array.from(document.querySelectorAll('.remote-controlled-area'));
  }
  function resendAll() { areas().forEach(resend); }
  document.addEventListener('mouseover', e => {
    areas().forEach(a => { if (a.contains(e.target)) resend(a); });
  }, true);
  window.addEventListener('focus', resendAll);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) resendAll(); });
  document.addEventListener('keydown', e => {
    const t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (t && t.closest && t.closest('input, textarea, select, [contenteditable=true]')) return;
    const id = {n: 'osam-next-flagged', p: 'osam-prev-flagged', a: 'osam-approve'}[e.key];
    const b = id && document.getElementById(id);
    if (b && !b.disabled) { b.click(); e.preventDefault(); }
  });
})();
"""

_DIRS = ("R", "A", "S")
_OPPOSITE = {"R": "L", "A": "P", "S": "I"}


def direction_letter(v: np.ndarray) -> str:
    """Patient direction of a RAS vector (its largest component): R/L, A/P, S/I."""
    c = int(np.argmax(np.abs(v)))
    return _DIRS[c] if v[c] > 0 else _OPPOSITE[_DIRS[c]]


def slice_to_ras(slice_node: Any) -> np.ndarray:
    m = slice_node.GetSliceToRAS()
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def view_label(slice_node: Any, volume_node: Any) -> dict[str, str]:
    """What a slice view's overlay says: orientation name, edge letters, slice number.

    ``slice`` is the shown volume's 0-based index along the view's normal, with
    the index range (``"7 [0-15]"``); empty when no volume is shown or the view
    is oblique to the volume (then ``name`` is ``reformat``)."""
    m = slice_to_ras(slice_node)
    x, y, n = m[:3, 0], m[:3, 1], m[:3, 2]
    name = str(slice_node.GetOrientation() or "").lower()
    label = {"name": name, "left": direction_letter(-x), "right": direction_letter(x),
             "top": direction_letter(y), "bottom": direction_letter(-y), "slice": ""}
    if volume_node is None or volume_node.GetImageData() is None:
        return label
    import vtk

    ras_to_ijk = vtk.vtkMatrix4x4()
    volume_node.GetRASToIJKMatrix(ras_to_ijk)
    r2i = np.array([[ras_to_ijk.GetElement(r, c) for c in range(4)] for r in range(4)])
    normal_ijk = r2i[:3, :3] @ n
    c = int(np.argmax(np.abs(normal_ijk)))
    if abs(normal_ijk[c]) < 0.99 * np.linalg.norm(normal_ijk):
        label["name"] = "reformat"
        return label
    ijk = r2i @ m[:, 3]
    dims = volume_node.GetImageData().GetDimensions()
    k = int(round(float(ijk[c])))
    label["slice"] = f"{k} [0-{dims[c] - 1}]" if 0 <= k < dims[c] else f"outside [0-{dims[c] - 1}]"
    return label


def add_view_overlay(server: Any, view_id: str, slice_view: Any) -> None:
    """The orientation / slice overlay of one view (inside its trame template)."""
    from trame.widgets import html

    key = f"osam_label_{view_id}"
    server.state.setdefault(key, {"name": "", "left": "", "right": "", "top": "", "bottom": "",
                                  "slice": ""})
    html.Div(f"{{{{ {key}.name }}}} <span v-if='{key}.slice'>· slice {{{{ {key}.slice }}}}</span>",
             classes="osam-view-label", id=f"osam-label-{view_id}")
    for edge in ("left", "right", "top", "bottom"):
        html.Div(f"{{{{ {key}.{edge} }}}}", classes=f"osam-edge osam-edge-{edge}")


class ViewLabels:
    """Keeps every slice view's overlay state current and fits views on resize.

    Args:
        server: the trame server.
        view_manager: trame-slicer's view manager.
    """

    def __init__(self, server: Any, view_manager: Any) -> None:
        self.server, self.view_manager = server, view_manager
        self._observed: set[str] = set()

    def watch(self) -> None:
        """Observe every slice view's node and render window (once per view)."""
        for view in self.view_manager.get_slice_views():
            tag = view.get_singleton_tag()
            if tag in self._observed or view.get_view_node() is None:
                continue
            self._observed.add(tag)
            view.get_view_node().AddObserver("ModifiedEvent", lambda *_a, v=view: self.update(v))
            view.interactor().AddObserver("WindowResizeEvent", lambda *_a, v=view: self._resized(v))
            self.update(view)

    def _resized(self, view: Any) -> None:
        import asyncio

        try:
            loop = asyncio.get_event_loop()
        except RuntimeError:
            return
        loop.call_soon(self.fit, view)

    def fit(self, view: Any) -> None:
        if view.get_background_volume_id():
            view.fit_view_to_content()
            view.schedule_render()

    def fit_all(self) -> None:
        for view in self.view_manager.get_slice_views():
            self.fit(view)

    def update(self, view: Any) -> None:
        tag = view.get_singleton_tag()
        vid = view.get_background_volume_id()
        scene = view.get_view_node().GetScene() if view.get_view_node() is not None else None
        vol = scene.GetNodeByID(vid) if (scene is not None and vid) else None
        label = view_label(view.get_view_node(), vol)
        key = f"osam_label_{tag}"
        if self.server.state[key] != label:
            self.server.state[key] = label
            self.server.state.flush()
