"""Bootstrap of a Slicer scene without the Slicer application (slicer-core).

Inside the Slicer application none of this is needed: ``slicer.mrmlScene`` and
the module logics exist already. Headless (pytest, scripts) the Logic needs a
scene, an application logic with colours, and the Segmentations / Volumes /
Sequences module logics. The segmentation converter factory is a process-wide
singleton, so :func:`bootstrap` runs once per process and returns the same
objects afterwards; call ``scene.Clear(0)`` between independent uses.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any

_STATE: "HeadlessSlicer | None" = None


@dataclass
class HeadlessSlicer:
    """The objects a headless session shares.

    Attributes:
        scene: the ``vtkMRMLScene`` (also set as ``slicer.mrmlScene``).
        app_logic: ``vtkSlicerApplicationLogic`` bound to the scene.
        logics: module name -> module logic (``"Colors"``, ``"Segmentations"``,
            ``"Volumes"``, ``"Sequences"``).
    """

    scene: Any
    app_logic: Any
    logics: dict[str, Any]


def bootstrap() -> HeadlessSlicer:
    """Create (once) a scene with the module logics the OneShotSAM Logic uses."""
    global _STATE
    if _STATE is not None:
        return _STATE
    import slicer

    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    colors = slicer.vtkSlicerColorLogic()
    colors.SetMRMLApplicationLogic(app_logic)
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    app_logic.SetColorLogic(colors)
    app_logic.SetModuleLogic("Colors", colors)
    logics: dict[str, Any] = {"Colors": colors}
    for name, cls in (("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
                      ("Volumes", slicer.vtkSlicerVolumesLogic),
                      ("Sequences", slicer.vtkSlicerSequencesLogic)):
        logic = cls()
        logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        app_logic.SetModuleLogic(name, logic)
        logics[name] = logic
    slicer.mrmlScene = scene
    # slicer.util helpers look up slicer.modules.<name>.logic()
    if getattr(slicer, "modules", None) is None:
        slicer.modules = types.SimpleNamespace()
    for name, logic in logics.items():
        setattr(slicer.modules, name.lower(), types.SimpleNamespace(logic=lambda lg=logic: lg))
    _STATE = HeadlessSlicer(scene=scene, app_logic=app_logic, logics=logics)
    return _STATE
