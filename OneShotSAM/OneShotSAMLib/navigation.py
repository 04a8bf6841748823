"""Where to look: the slice a review row points at, the slice a view shows.

* :func:`locate` turns a written slice (a target volume, or ITEM of a volume
  sequence) into something the views can show: a volume node of the main
  scene and the world RAS centre of the slice. A sequence item lives in the
  sequence's own internal scene (its node IDs mean nothing in the main
  scene): the sequence browser is moved to that item and its proxy volume is
  returned (a browser is created when the sequence has none).
* :func:`view_slice_index` is the slice of the reference volume shown in the
  slice view of the chosen axis (red/green/yellow by orientation), read from
  the volume's geometry without copying voxels.

MRML + numpy only (headless on slicer-core).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from oneshotsam.errors import OneShotError

from OneShotSAMLib.mrml_bridge import slice_center_ras, slice_index_at_ras

#: Slicer's default view of each orientation
DEFAULT_VIEWS = {"axial": "Red", "coronal": "Green", "sagittal": "Yellow"}


@dataclass(frozen=True)
class Location:
    """A written slice, ready to be shown.

    Attributes:
        volume_node: a volume node of the main scene showing the target (for a
            sequence item: the browser's proxy node, now on that item).
        ras: ``(3,)`` world RAS mm of the slice centre.
        browser_node: the sequence browser moved to the item (None for a plain volume).
        item: the item number in the sequence (None for a plain volume).
    """

    volume_node: Any
    ras: np.ndarray
    browser_node: Any = None
    item: int | None = None


def sequence_browser(scene: Any, sequence_node: Any, create: bool = True) -> Any:
    """A browser node of ``scene`` that plays ``sequence_node`` (created when none does)."""
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
        b = scene.GetNthNodeByClass(i, "vtkMRMLSequenceBrowserNode")
        if b.IsSynchronizedSequenceNode(sequence_node, True):
            return b
    if not create:
        return None
    b = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{sequence_node.GetName()} browser")
    b.SetAndObserveMasterSequenceNodeID(sequence_node.GetID())
    return b


def select_item(scene: Any, sequence_node: Any, item: int) -> tuple[Any, Any]:
    """Move a browser of ``sequence_node`` to ``item``; returns ``(browser, proxy volume)``."""
    if not 0 <= int(item) < sequence_node.GetNumberOfDataNodes():
        raise OneShotError(f"item {item} is no longer in the sequence '{sequence_node.GetName()}': "
                           "press Run again")
    browser = sequence_browser(scene, sequence_node)
    master = browser.GetMasterSequenceNode()
    number = int(item)
    if master is not None and master is not sequence_node:
        number = master.GetItemNumberFromIndexValue(sequence_node.GetNthIndexValue(int(item)))
        if number < 0:
            raise OneShotError(f"the browser '{browser.GetName()}' has no item at index value "
                               f"{sequence_node.GetNthIndexValue(int(item))}")
    browser.SetSelectedItemNumber(number)
    proxy = browser.GetProxyNode(sequence_node)
    if proxy is None:
        raise OneShotError(f"the sequence browser '{browser.GetName()}' shows no volume of "
                           f"'{sequence_node.GetName()}'")
    return browser, proxy


def locate(scene: Any, volume_node: Any, array_axis: int, slice_index: int,
           sequence_node: Any = None, item: int | None = None) -> Location:
    """Where a written slice is (see module docstring).

    Args:
        volume_node: the target volume (a sequence item node when ``sequence_node``).
        array_axis, slice_index: the slice in the target's ``[k, j, i]`` array.
        sequence_node, item: the volume sequence and item number of a sequence target.

    Raises:
        OneShotError: the target is gone (deleted, or the scene was closed).
    """
    if sequence_node is not None and item is not None:
        if not scene.IsNodePresent(sequence_node):
            raise OneShotError("the sequence of this row was deleted: press Run again")
        browser, proxy = select_item(scene, sequence_node, int(item))
        return Location(proxy, slice_center_ras(proxy, array_axis, slice_index), browser, int(item))
    if volume_node is None or volume_node.GetScene() is not scene or not scene.IsNodePresent(volume_node):
        raise OneShotError("the volume of this row was deleted: press Run again")
    return Location(volume_node, slice_center_ras(volume_node, array_axis, slice_index))


def view_slice_node(scene: Any, axis: str) -> Any:
    """The slice node showing ``axis``: the default view of that orientation when it
    shows it (Red for axial...), else any slice view with that orientation, else None."""
    want = axis.capitalize()
    nodes = [scene.GetNthNodeByClass(i, "vtkMRMLSliceNode")
             for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode"))]
    nodes = [n for n in nodes if n.GetOrientation() == want]
    for n in nodes:
        if n.GetLayoutName() == DEFAULT_VIEWS.get(axis):
            return n
    return nodes[0] if nodes else None


def view_slice_index(scene: Any, volume_node: Any, axis: str) -> int | None:
    """Index (along ``axis``) of the slice of ``volume_node`` shown in the view of that
    axis; None when no view shows that orientation. No voxel copy."""
    node = view_slice_node(scene, axis)
    if node is None or volume_node is None:
        return None
    m = node.GetSliceToRAS()
    ras = [m.GetElement(r, 3) for r in range(3)]
    return slice_index_at_ras(volume_node, ras, axis)[1]
