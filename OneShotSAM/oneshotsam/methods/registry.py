"""Method registry: build any one-shot method by name.

Names and what they need:

========================  =============================================  ==============
name                      what it is                                     SAM backend
========================  =============================================  ==============
``p2sam``                 P²SAM: part prototypes + OT retrieval          needed
``persam``                PerSAM: mean prototype, training-free          needed
``persam-f``              PerSAM-F: PerSAM + two learned mask weights    needed
``medpersam``             Med-PerSAM: warping model + SAM refinement     needed
``medpersam-warp``        Med-PerSAM's warping model alone               none
========================  =============================================  ==============

Each entry names the method's class, its typed config classes and its preset file
(``presets/<file>.json``, every preset citing its source); the default preset per
device is :data:`oneshotsam.presets.DEFAULT_PRESETS`. Classes are imported lazily
(this module imports nothing heavy), so listing :data:`METHODS` costs nothing.
Every method class offers ``from_preset(preset, backend=None, device="auto",
**overrides)``, which merges its settings in :func:`oneshotsam.presets.resolve_settings`
(defaults <- preset <- situation <- user) and keeps the result as ``settings``;
:func:`create_method` is a thin, checked wrapper over that.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oneshotsam.errors import OneShotError
from oneshotsam.methods.base import SUGGESTED_BACKEND, missing_backend_message

if TYPE_CHECKING:  # pragma: no cover
    from oneshotsam.backends.base import PromptableSegmenter
    from oneshotsam.methods.base import OneShotMethod


@dataclass(frozen=True)
class MethodInfo:
    """One registry entry.

    Attributes:
        name: registry name used on the command line (``--method``).
        module: dotted module holding the class (imported on use only).
        class_name: the class implementing :class:`OneShotMethod`.
        description: one line for ``--help`` and the README.
        needs_backend: True when the method calls a SAM / SAM 2 model.
        config: its typed, frozen config classes (``module:Class``) whose fields the
            settings name (checked before a run).
        presets: stem of its preset file ``presets/<presets>.json``.
    """

    name: str
    module: str
    class_name: str
    description: str
    needs_backend: bool
    config: tuple[str, ...]
    presets: str


METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo("p2sam", "oneshotsam.methods.p2sam", "P2SAM",
                   "P²SAM: part-aware prototypes, positive/negative points, "
                   "part counts retrieved by optimal transport", True,
                   ("oneshotsam.methods.p2sam:P2SAMConfig",), "p2sam"),
        MethodInfo("persam", "oneshotsam.methods.persam", "PerSAM",
                   "PerSAM baseline: mean prototype, argmax/argmin points, "
                   "cascaded refinement (training-free)", True,
                   ("oneshotsam.methods.persam:PerSAMConfig",), "persam"),
        MethodInfo("persam-f", "oneshotsam.methods.persam_f", "PerSAMF",
                   "PerSAM-F: PerSAM with two mask weights learned on the reference "
                   "in seconds (SAM frozen)", True,
                   ("oneshotsam.methods.persam_f:PerSAMFConfig",), "persam-f"),
        MethodInfo("medpersam", "oneshotsam.methods.medpersam.method", "MedPerSAM",
                   "Med-PerSAM: test-time-trained warping model, prompts from the "
                   "warped mask, SAM refinement and retraining", True,
                   ("oneshotsam.methods.medpersam.warp_config:WarpConfig",
                    "oneshotsam.methods.medpersam.method:MedPerSAMConfig"), "medpersam"),
        MethodInfo("medpersam-warp", "oneshotsam.methods.medpersam.warp_method",
                   "MedPerSAMWarp",
                   "Med-PerSAM's warping model alone: the warped reference mask is "
                   "the answer (no SAM, no checkpoint)", False,
                   ("oneshotsam.methods.medpersam.warp_config:WarpConfig",), "medpersam"),
    )
}


def method_names() -> list[str]:
    """Registry names in a stable order (the order of :data:`METHODS`)."""
    return list(METHODS)


def method_info(name: str) -> MethodInfo:
    """The registry entry of ``name``; OneShotError listing the names if unknown."""
    try:
        return METHODS[name]
    except KeyError:
        raise OneShotError(
            f"unknown method {name!r}: choose one of {', '.join(METHODS)}") from None


def needs_backend(name: str) -> bool:
    """True when method ``name`` needs a SAM backend (and so a checkpoint)."""
    return method_info(name).needs_backend


def config_classes(name: str) -> tuple[type, ...]:
    """The typed config classes of method ``name`` (imported on call)."""
    out = []
    for ref in method_info(name).config:
        module, _, attr = ref.partition(":")
        out.append(getattr(importlib.import_module(module), attr))
    return tuple(out)


def method_presets(name: str) -> list[str]:
    """Preset names of method ``name`` (its preset file, file order)."""
    from oneshotsam.presets import list_presets

    return list_presets(method_info(name).presets)


def default_preset(name: str, device: str = "auto") -> str:
    """The preset method ``name`` uses on ``device`` when none is named (``auto`` =
    chosen per run from the situation)."""
    from oneshotsam.presets import default_preset as default

    return default(method_info(name).name, device)


def method_class(name: str) -> type:
    """Import and return the class implementing method ``name``."""
    info = method_info(name)
    try:
        module = importlib.import_module(info.module)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("oneshotsam"):
            raise OneShotError(
                f"method {name!r} is not available in this installation "
                f"(module {info.module} is missing)") from exc
        raise
    return getattr(module, info.class_name)


def create_method(name: str, *, backend: PromptableSegmenter | None = None,
                  preset: str | None = None, device: str = "auto",
                  **overrides: Any) -> OneShotMethod:
    """Build method ``name`` from a preset.

    Args:
        name: a key of :data:`METHODS`.
        backend: the SAM / SAM 2 segmenter (``oneshotsam.backends.factory.create_backend``);
            required for every method except ``medpersam-warp`` (ignored there).
        preset: preset name of the method's preset file; None = :func:`default_preset`
            (Med-PerSAM: ``cpu`` on the CPU, ``paper`` on CUDA; ``medpersam-warp``:
            chosen per run from the situation).
        device: ``auto`` | ``cpu`` | ``cuda`` (for methods with their own networks).
        **overrides: config fields replacing the preset's values.

    Raises:
        OneShotError: unknown name, or a backend is needed and none was given.
    """
    info = method_info(name)
    if info.needs_backend and backend is None:
        raise OneShotError(missing_backend_message(name))
    cls = method_class(name)
    return cls.from_preset(preset, backend=backend if info.needs_backend else None,
                           device=device, **overrides)


def build_method(name: str, *, backend_name: str | None = None,
                 checkpoint: str | None = None, preset: str | None = None,
                 device: str = "auto", random_weights: bool = False,
                 **overrides: Any) -> OneShotMethod:
    """Build method ``name`` together with its backend, from names and paths.

    The one-stop constructor used by the command line and the Slicer logic:
    creates the backend (only when the method needs one) with
    ``create_backend(backend_name, checkpoint, device, random_weights)`` and
    then :func:`create_method`.

    Raises:
        OneShotError: a backend is needed but ``backend_name`` is None, or
            no checkpoint was given (unless ``random_weights``).
    """
    info = method_info(name)
    backend = None
    if info.needs_backend:
        if backend_name is None or (checkpoint is None and not random_weights):
            raise OneShotError(missing_backend_message(name))
        from oneshotsam.backends.factory import create_backend
        backend = create_backend(backend_name, checkpoint=checkpoint, device=device,
                                 random_weights=random_weights)
    return create_method(name, backend=backend, preset=preset, device=device, **overrides)
