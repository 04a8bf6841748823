"""The OneShotSAM parameter node: every setting of a run, stored in the scene.

The parameter node is a plain ``vtkMRMLScriptedModuleNode`` (parameters are
strings set with ``SetParameter``; nodes are node references), so a saved
scene reproduces a run and the Logic works headless. The Widget binds its
controls to the same names.

Parameter names (strings):
    Method, Backend, Preset, Checkpoint, Device, Axis, Window, Align ("true"/"false"),
    TargetMode ("self" | "volumes" | "sequence"), SegmentIDs (comma separated),
    ReferenceSlices (comma separated slice indices along Axis; empty = see ReferenceSliceSource),
    ReferenceSliceSource ("view": the slice shown in the view of Axis | "all" (default):
    every annotated slice),
    MethodOverrides (JSON object), RunRecord (JSON, written by the Logic);
    and one parameter per propagation setting of :data:`oneshotsam.settings.PROPAGATION_SETTINGS`
    (Registration, Propagation, StopMinAreaRatio, StopMinAreaMm2, StopMinConfidence,
    StopMinAppearance, StopPastEnd, ReviewConfidence, ReviewAreaChange, ExtendBeyondContour,
    ContourEndMinFit, ContourEndMaxSlices, Seed; empty = the engine's default), so a
    Slicer user can set everything a command-line user can. The Logic turns them into
    a configuration through :func:`oneshotsam.settings.propagation_config_from_text`.
Node references: ReferenceVolume, Segmentation, TargetVolume (several), TargetSequence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from oneshotsam.errors import OneShotError
from oneshotsam.settings import AXES, PROPAGATION_SETTINGS, method_names, propagation_config_from_text

MODULE_NAME = "OneShotSAM"
TARGET_MODES = ("self", "volumes", "sequence")
#: widget label -> registry name
METHODS = {
    "Med-PerSAM": "medpersam",
    "Med-PerSAM (warp only)": "medpersam-warp",
    "P2SAM": "p2sam",
    "PerSAM": "persam",
    "PerSAM-F": "persam-f",
}
assert sorted(METHODS.values()) == sorted(method_names()), "a method is missing a widget label"
#: parameter-node names of the propagation settings held in ``RunSettings.propagation``
#: (Window and Align have their own fields)
PROPAGATION_PARAMETERS = tuple(s.parameter for s in PROPAGATION_SETTINGS
                               if s.parameter not in ("Window", "Align"))
REF_REFERENCE_VOLUME = "ReferenceVolume"
REF_SEGMENTATION = "Segmentation"
REF_TARGET_VOLUME = "TargetVolume"
REF_TARGET_SEQUENCE = "TargetSequence"
#: where the reference slice comes from when ReferenceSlices is empty: "view" = the
#: annotated slice shown in the slice view of the slicing axis, "all" = every annotated slice
REFERENCE_SOURCES = ("view", "all")


@dataclass(frozen=True)
class RunSettings:
    """Settings of one run (everything but the node selections).

    Attributes:
        method: registry name (values of :data:`METHODS`).
        backend, preset, checkpoint: None = the method's defaults.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        axis: slicing direction of the reference volume (:data:`AXES`).
        window: intensity window text (``"ct:lung"``, ``"-910,590"``), None = auto.
        align: register follow-up targets to the reference first.
        target_mode: ``"self"`` (rest of the reference volume), ``"volumes"``
            (follow-up volume nodes) or ``"sequence"`` (items of a volume sequence).
        segment_ids: segments of the segmentation holding the annotation;
            segment ``n`` becomes label value ``n + 1`` in the engine.
        reference_slices: annotated slice indices along ``axis`` to use; None =
            every slice with a label.
        method_overrides: extra method settings (preset overrides).
        propagation: ``{parameter name: text}`` of the other propagation settings
            (:data:`PROPAGATION_PARAMETERS`); a missing or empty value = the default.
            :func:`write_settings` writes only the names given here (``""`` resets one).
    """

    method: str = "medpersam-warp"
    backend: str | None = None
    preset: str | None = None
    checkpoint: str | None = None
    device: str = "auto"
    axis: str = "axial"
    window: str | None = None
    align: bool = True
    target_mode: str = "self"
    segment_ids: tuple[str, ...] = ()
    reference_slices: tuple[int, ...] | None = None
    method_overrides: dict[str, Any] = field(default_factory=dict)
    propagation: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS.values():
            raise OneShotError(f"unknown method {self.method!r}; choose one of "
                               f"{', '.join(METHODS.values())}")
        if self.axis not in AXES:
            raise OneShotError(f"unknown slicing axis {self.axis!r}; choose one of {', '.join(AXES)}")
        bad = sorted(set(self.propagation) - set(PROPAGATION_PARAMETERS))
        if bad:
            raise OneShotError(f"unknown propagation settings {bad}; valid: "
                               f"{', '.join(PROPAGATION_PARAMETERS)}")
        if self.target_mode not in TARGET_MODES:
            raise OneShotError(f"unknown target mode {self.target_mode!r}; choose one of "
                               f"{', '.join(TARGET_MODES)}")


def _opt(text: str) -> str | None:
    return text if text else None


def get_parameter_node(scene: Any) -> Any:
    """The module's singleton parameter node in ``scene`` (created when missing).

    Found by its singleton tag, as Slicer's own module logics do: a scene close
    keeps singleton nodes but resets them (module name and parameters are
    cleared), so a lookup by module name would add a second node after every
    close. A reset node gets its module name and default settings back.
    """
    node = scene.GetSingletonNode(MODULE_NAME, "vtkMRMLScriptedModuleNode")
    if node is None:  # scenes saved before the node had its singleton tag
        for idx in range(scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode")):
            cand = scene.GetNthNodeByClass(idx, "vtkMRMLScriptedModuleNode")
            if cand.GetModuleName() == MODULE_NAME:
                node = cand
                break
    if node is None:
        node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)  # the scene holds the reference (Slicer's own idiom)
        node.SetName(MODULE_NAME)
        node.SetSingletonTag(MODULE_NAME)
        node.SetModuleName(MODULE_NAME)
        node.SetAttribute("ModuleName", MODULE_NAME)
        node.SetHideFromEditors(True)
        node = scene.AddNode(node)
    if node.GetModuleName() != MODULE_NAME:
        node.SetModuleName(MODULE_NAME)
    if node.GetAttribute("ModuleName") != MODULE_NAME:
        node.SetAttribute("ModuleName", MODULE_NAME)
    if not node.GetParameter("Method"):  # new, or reset by a scene close
        write_settings(node, RunSettings())
    return node


def write_settings(node: Any, s: RunSettings) -> None:
    """Store ``s`` in the parameter node (strings; empty string = None)."""
    values = {
        "Method": s.method, "Backend": s.backend or "", "Preset": s.preset or "",
        "Checkpoint": s.checkpoint or "", "Device": s.device, "Axis": s.axis,
        "Window": s.window or "", "Align": "true" if s.align else "false",
        "TargetMode": s.target_mode, "SegmentIDs": ",".join(s.segment_ids),
        "ReferenceSlices": "" if s.reference_slices is None
        else ",".join(str(int(k)) for k in s.reference_slices),
        "MethodOverrides": json.dumps(s.method_overrides, sort_keys=True),
    }
    for key, text in s.propagation.items():  # others keep their value (a widget without
        values[key] = str(text)              # those controls does not reset them)
    for key, value in values.items():
        node.SetParameter(key, value)


def read_settings(node: Any) -> RunSettings:
    """Rebuild :class:`RunSettings` from the parameter node (raises OneShotError on bad text)."""
    g = node.GetParameter
    refs = g("ReferenceSlices").strip()
    try:
        ref_slices = tuple(int(t) for t in refs.split(",") if t.strip()) if refs else None
    except ValueError:
        raise OneShotError(f"reference slices must be comma-separated integers; got {refs!r}") from None
    try:
        overrides = json.loads(g("MethodOverrides") or "{}")
    except json.JSONDecodeError as exc:
        raise OneShotError(f"method overrides are not valid JSON: {exc}") from None
    return RunSettings(
        method=g("Method") or "medpersam-warp", backend=_opt(g("Backend")),
        preset=_opt(g("Preset")), checkpoint=_opt(g("Checkpoint")),
        device=g("Device") or "auto", axis=g("Axis") or "axial", window=_opt(g("Window")),
        align=(g("Align") or "true").lower() != "false",
        target_mode=g("TargetMode") or "self",
        segment_ids=tuple(t for t in (g("SegmentIDs") or "").split(",") if t),
        reference_slices=ref_slices, method_overrides=dict(overrides),
        propagation={k: g(k) for k in PROPAGATION_PARAMETERS if g(k)},
    )


def set_inputs(node: Any, reference_volume: Any, segmentation: Any,
               target_volumes: tuple[Any, ...] = (), target_sequence: Any = None) -> None:
    """Set the node references of a run (None clears a reference)."""
    node.SetNodeReferenceID(REF_REFERENCE_VOLUME, reference_volume.GetID() if reference_volume else None)
    node.SetNodeReferenceID(REF_SEGMENTATION, segmentation.GetID() if segmentation else None)
    node.RemoveNodeReferenceIDs(REF_TARGET_VOLUME)
    for vol in target_volumes:
        node.AddNodeReferenceID(REF_TARGET_VOLUME, vol.GetID())
    node.SetNodeReferenceID(REF_TARGET_SEQUENCE, target_sequence.GetID() if target_sequence else None)


def target_volume_nodes(node: Any) -> list[Any]:
    return [node.GetNthNodeReference(REF_TARGET_VOLUME, n)
            for n in range(node.GetNumberOfNodeReferences(REF_TARGET_VOLUME))]


def read_run_record(node: Any) -> dict[str, Any]:
    """The last run's record (outputs and the slices it wrote), ``{}`` when none."""
    text = node.GetParameter("RunRecord")
    return json.loads(text) if text else {}


def write_run_record(node: Any, record: dict[str, Any]) -> None:
    node.SetParameter("RunRecord", json.dumps(record, sort_keys=True))


def reference_source(node: Any) -> str:
    """``"view"`` or ``"all"`` (see :data:`REFERENCE_SOURCES`; unset = ``"all"``)."""
    value = node.GetParameter("ReferenceSliceSource")
    return value if value in REFERENCE_SOURCES else "all"


def set_reference_source(node: Any, source: str) -> None:
    if source not in REFERENCE_SOURCES:
        raise OneShotError(f"unknown reference slice source {source!r}; choose "
                           f"{' or '.join(REFERENCE_SOURCES)}")
    node.SetParameter("ReferenceSliceSource", source)


def propagation_config(s: RunSettings, reference_slices: Any = None, fixed_slices: Any = ()) -> Any:
    """The engine configuration of run settings ``s`` (every propagation setting of the
    parameter node), built by the one settings layer :mod:`oneshotsam.settings`.

    Raises OneShotError for a bad value (the same message the command line gives)."""
    text = {**s.propagation, "Window": s.window or "", "Align": "true" if s.align else "false"}
    return propagation_config_from_text(
        text, method=s.method, overrides=dict(sorted(s.method_overrides.items())),
        backend=s.backend, checkpoint=s.checkpoint, preset=s.preset, device=s.device,
        values={"axis": s.axis, "reference_slices": reference_slices,
                "fixed_slices": fixed_slices})
