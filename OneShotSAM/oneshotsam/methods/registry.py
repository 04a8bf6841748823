"""Method registry: build any one-shot method by name.

Names and what they need:

========================  =============================================  ==============
name                      what it is                                     SAM backend
========================  =============================================  ==============
``p2sam``                 P²SAM: part prototypes + OT retrieval          needed
``persam``                PerSAM: mean prototype, training-free          needed
``medpersam``             Med-PerSAM: warping model + SAM refinement     needed
``medpersam-warp``        Med-PerSAM's warping model alone               none
========================  =============================================  ==============

Classes are imported lazily (this module imports nothing heavy), so listing
:data:`METHODS` costs nothing. Every method class takes ``(backend, config)``
and offers ``from_preset(preset, backend=None, device="auto", **overrides)``;
:func:`create_method` is a thin, checked wrapper over that.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oneshotsam.errors import OneShotError

if TYPE_CHECKING:  # pragma: no cover
    from oneshotsam.backends.base import PromptableSegmenter
    from oneshotsam.methods.base import OneShotMethod

#: Backend used in messages and docs as the default suggestion.
SUGGESTED_BACKEND = "sam-vit-b"


@dataclass(frozen=True)
class MethodInfo:
    """One registry entry.

    Attributes:
        name: registry name used on the command line (``--method``).
        module: dotted module holding the class (imported on use only).
        class_name: the class implementing :class:`OneShotMethod`.
        description: one line for ``--help`` and the README.
        needs_backend: True when the method calls a SAM / SAM 2 model.
    """

    name: str
    module: str
    class_name: str
    description: str
    needs_backend: bool


METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo("p2sam", "oneshotsam.methods.p2sam", "P2SAM",
                   "P²SAM: part-aware prototypes, positive/negative points, "
                   "part counts retrieved by optimal transport", True),
        MethodInfo("persam", "oneshotsam.methods.persam", "PerSAM",
                   "PerSAM baseline: mean prototype, argmax/argmin points, "
                   "cascaded refinement (training-free)", True),
        MethodInfo("medpersam", "oneshotsam.methods.medpersam.method", "MedPerSAM",
                   "Med-PerSAM: test-time-trained warping model, prompts from the "
                   "warped mask, SAM refinement and retraining", True),
        MethodInfo("medpersam-warp", "oneshotsam.methods.medpersam.warp_method",
                   "MedPerSAMWarp",
                   "Med-PerSAM's warping model alone: the warped reference mask is "
                   "the answer (no SAM, no checkpoint)", False),
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


def missing_backend_message(name: str) -> str:
    """What to tell a user who asked for ``name`` without a SAM backend."""
    return (
        f"method {name!r} needs a SAM model: pass --backend NAME --checkpoint PATH "
        f"(e.g. --backend {SUGGESTED_BACKEND} --checkpoint sam_vit_b_01ec64.pth). "
        f"Download official weights with `oneshotsam weights download {SUGGESTED_BACKEND}` "
        "(`oneshotsam weights list` shows all names), or use --method medpersam-warp, "
        "which needs no weights")


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
        preset: preset name of ``oneshotsam/presets/<method>.json``; None = the
            method's default (for Med-PerSAM: ``cpu`` without CUDA, ``paper`` with).
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
