"""Method presets: named settings stored as JSON package data, each citing its source.

Files: ``oneshotsam/presets/<method>.json`` holding
``{"<preset name>": {"source": "<paper, table/section>", ...settings...}, ...}``.
Top-level keys starting with ``_`` are comments, not presets.

This module imports only the standard library (torch lazily, in
:func:`default_preset`, to detect CUDA).
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from importlib import resources
from typing import Any

from oneshotsam.errors import OneShotError

#: methods whose default depends on the hardware (Med-PerSAM trains a warping net)
_HARDWARE_DEFAULT_METHODS = ("medpersam", "medpersam-warp")

__all__ = ["load_preset", "list_presets", "default_preset", "available_methods",
           "config_from_preset"]


def _file_stem(method: str) -> str:
    """``<method>.json`` when it exists; ``medpersam-warp`` falls back to
    ``medpersam.json`` (one file holds both Med-PerSAM variants)."""
    m = method.strip().lower()
    if m == "medpersam-warp" and not resources.files(__package__).joinpath(f"{m}.json").is_file():
        return "medpersam"
    return m


def available_methods() -> list[str]:
    """Method names that have a preset file (file stems)."""
    root = resources.files(__package__)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))


@lru_cache(maxsize=None)
def _load_file(stem: str) -> dict[str, dict[str, Any]]:
    res = resources.files(__package__).joinpath(f"{stem}.json")
    if not res.is_file():
        raise OneShotError(
            f"no presets for method {stem!r}; methods with presets: "
            f"{', '.join(available_methods()) or '(none)'}")
    try:
        data = json.loads(res.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:  # a packaging bug, not user input
        raise OneShotError(f"preset file {stem}.json is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise OneShotError(f"preset file {stem}.json must hold a JSON object of presets")
    return {k: v for k, v in data.items() if not k.startswith("_") and isinstance(v, dict)}


def list_presets(method: str) -> list[str]:
    """Names of the presets of ``method`` (file order)."""
    return list(_load_file(_file_stem(method)).keys())


def load_preset(method: str, name: str) -> dict[str, Any]:
    """A deep copy of preset ``name`` of ``method`` (safe to modify).

    Raises:
        OneShotError: unknown method or preset; the message lists the available ones.
    """
    presets = _load_file(_file_stem(method))
    if name not in presets:
        raise OneShotError(
            f"unknown preset {name!r} for method {method!r}; available presets: "
            f"{', '.join(presets)}")
    return copy.deepcopy(presets[name])


def default_preset(method: str) -> str:
    """The preset used when none is given.

    ``medpersam`` / ``medpersam-warp``: ``"paper"`` when CUDA is available, else
    ``"cpu"`` (the paper-size warping training is hours on a CPU). Other methods:
    ``"default"``.
    """
    m = method.strip().lower()
    if m in _HARDWARE_DEFAULT_METHODS:
        return "paper" if _cuda_available() else "cpu"
    return "default"


def _cuda_available() -> bool:
    try:
        import torch  # lazy: importing presets must not import torch
    except Exception:  # noqa: BLE001 - no torch means no CUDA
        return False
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001
        return False


def _tuples(value: Any) -> Any:
    """JSON lists -> tuples (recursively), so frozen configs stay hashable."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def config_from_preset(config_cls: type, method: str, name: str | None = None,
                       **overrides: Any) -> Any:
    """Build the frozen dataclass ``config_cls`` from preset ``name`` + ``overrides``.

    ``name`` None = :func:`default_preset`. JSON lists become tuples. A
    ``source`` key is kept only if the dataclass has such a field. Unknown
    override or preset keys raise :class:`OneShotError` listing the valid ones;
    overrides whose value is None are ignored (unset command-line options).
    """
    import dataclasses

    fields = {f.name for f in dataclasses.fields(config_cls)}
    preset_name = name if name is not None else default_preset(method)
    values = load_preset(method, preset_name)
    if "source" not in fields:
        values.pop("source", None)
    unknown = sorted(set(values) - fields)
    if unknown:
        raise OneShotError(f"preset {preset_name!r} of {method!r} has unknown settings "
                           f"{unknown}; valid: {sorted(fields)}")
    bad = sorted(k for k in overrides if k not in fields)
    if bad:
        raise OneShotError(f"unknown {method} setting(s) {bad}; valid: {sorted(fields)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    from oneshotsam.typecheck import check_settings

    check_settings(config_cls, given, method)
    values.update(given)
    return config_cls(**{k: _tuples(v) for k, v in values.items()})
