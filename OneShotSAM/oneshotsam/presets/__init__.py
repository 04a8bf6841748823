"""Method presets and the one merge of method settings.

Files: ``oneshotsam/presets/<method>.json`` holding
``{"<preset name>": {"source": "<paper, table/section>", ...settings...}, ...}``.
Top-level keys starting with ``_`` are comments, not presets. The method registry
(:mod:`oneshotsam.methods.registry`) names each method's preset file and typed
config classes; :data:`DEFAULT_PRESETS` says which preset a method uses when none is
named.

:func:`resolve_settings` is THE merge of a method's settings, used by every method
and so by every front end: the config class's defaults <- the preset <- what the
situation chose (Med-PerSAM's warp settings) <- the user's own values. Its
:class:`ResolvedSettings` records where each value came from; ``report.json``
carries it (``settings``).

This module imports only the standard library (and, in :func:`default_preset`, the
engine's device resolver).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Collection, Mapping

from oneshotsam.errors import OneShotError

__all__ = ["load_preset", "list_presets", "available_methods", "default_preset",
           "DEFAULT_PRESETS", "AUTO", "resolve_settings", "ResolvedSettings",
           "check_user_settings", "config_from_preset", "method_from_preset"]

#: preset name meaning "chosen per run from the situation" (``medpersam-warp``)
AUTO = "auto"
#: the preset a method uses when none is named: ``(on the CPU, on a CUDA GPU)``.
#: Med-PerSAM's paper schedule is hours on a CPU; ``medpersam-warp`` chooses from
#: the situation (:mod:`oneshotsam.methods.medpersam.warp_choice`)
DEFAULT_PRESETS: dict[str, tuple[str, str]] = {
    "p2sam": ("default", "default"),
    "persam": ("default", "default"),
    "persam-f": ("default", "default"),
    "medpersam": ("cpu", "paper"),
    "medpersam-warp": (AUTO, AUTO),
}


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


def default_preset(method: str, device: str = "auto") -> str:
    """The preset ``method`` uses when none is named on ``device`` (:data:`DEFAULT_PRESETS`;
    ``auto`` asks the machine)."""
    from oneshotsam.devices import device_kind

    m = method.strip().lower()
    if m not in DEFAULT_PRESETS:
        raise OneShotError(f"no default preset for method {method!r}; methods: "
                           f"{', '.join(DEFAULT_PRESETS)}")
    return DEFAULT_PRESETS[m][device_kind(device) == "cuda"]


def _tuples(value: Any) -> Any:
    """JSON lists -> tuples (recursively), so frozen configs stay hashable."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


@dataclass(frozen=True)
class ResolvedSettings:
    """A method's settings for one run and where each value came from.

    Attributes:
        method: registry name.
        preset: the preset the values start from.
        values: the merged settings (keys of the preset and of the later layers;
            the config class's defaults fill the rest when it is built).
        sources: per key of ``values``: ``"preset"``, ``"situation"`` or ``"user"``.
        reasons: why the situation chose what it chose (empty when it chose nothing).
    """

    method: str
    preset: str
    values: Mapping[str, Any] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()

    def report(self) -> dict[str, Any]:
        """JSON-ready record (``report.json``: ``settings``); the preset's ``source``
        citation is left out (it is in the preset file)."""
        return {"method": self.method, "preset": self.preset,
                "values": {k: v for k, v in self.values.items() if k != "source"},
                "from": {k: v for k, v in self.sources.items() if k != "source"},
                "reasons": list(self.reasons)}


def resolve_settings(method: str, preset: str, *, known: Collection[str],
                     situation: Mapping[str, Any] | None = None,
                     user: Mapping[str, Any] | None = None, presets: str | None = None,
                     check: tuple[type, ...] = (), only_known: bool = False) -> ResolvedSettings:
    """The one merge of method settings: defaults <- preset <- situation <- user.

    Args:
        method: registry name (messages and the record).
        preset: preset name in ``<presets>.json``.
        known: the setting names the method accepts.
        situation: values chosen from the situation (replace the preset's).
        user: the user's values (replace both; None values are unset options).
        presets: preset file stem (default: ``method``'s, see :func:`list_presets`).
        check: config classes whose fields the situation's and user's values are
            type-checked against (:func:`oneshotsam.typecheck.check_settings`).
        only_known: keep only the preset's keys in ``known`` (an engine that reads
            a subset of a shared preset) instead of refusing the others.

    A value that is an object replaces an object of the layer below key by key
    (``net={"enc_channels": 8}`` keeps the preset's other network settings). The
    preset's ``source`` citation is kept only when ``known`` has it.

    Raises:
        OneShotError: unknown preset, a preset key or setting name the method does
            not know (the message lists the valid ones), a value of the wrong type.
    """
    known = set(known)
    values = load_preset(presets or method, preset)
    if "source" not in known:
        values.pop("source", None)
    if only_known:
        values = {k: v for k, v in values.items() if k in known}
    unknown = sorted(set(values) - known)
    if unknown:
        raise OneShotError(f"preset {preset!r} of {method!r} has unknown settings "
                           f"{unknown}; valid: {sorted(known)}")
    sources = {k: "preset" for k in values}
    for layer, given in (("situation", situation), ("user", user)):
        given = check_user_settings(method, given, known=known, check=check)
        for k, v in given.items():
            below = values.get(k)
            values[k] = ({**below, **v} if isinstance(v, Mapping) and isinstance(below, Mapping)
                         else copy.deepcopy(v))
            sources[k] = layer
    return ResolvedSettings(method, preset, values, sources)


def check_user_settings(method: str, values: Mapping[str, Any] | None, *,
                        known: Collection[str], check: tuple[type, ...] = ()) -> dict[str, Any]:
    """``values`` without its None entries (unset options), checked: every name in
    ``known`` and every value of the type of the field it names in ``check``'s
    classes. Raises OneShotError naming the setting otherwise."""
    from oneshotsam.typecheck import check_settings

    given = {k: v for k, v in (values or {}).items() if v is not None}
    bad = sorted(set(given) - set(known))
    if bad:
        raise OneShotError(f"unknown {method} setting(s) {bad}; valid: {sorted(known)}")
    for cls in check:
        check_settings(cls, given, method)
    return given


def config_from_preset(config_cls: type, method: str, name: str,
                       **overrides: Any) -> tuple[Any, ResolvedSettings]:
    """``(config, settings)``: the frozen dataclass ``config_cls`` built from
    :func:`resolve_settings` of preset ``name`` with the user's ``overrides``
    (JSON lists become tuples; a ``source`` key is kept only when the dataclass
    has such a field)."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(config_cls)}
    settings = resolve_settings(method, name, known=fields, user=overrides, check=(config_cls,))
    return config_cls(**{k: _tuples(v) for k, v in settings.values.items()}), settings


def method_from_preset(cls: type, config_cls: type, method: str, preset: str | None,
                       backend: Any, device: str, overrides: dict[str, Any]) -> Any:
    """``cls(backend, config)`` of preset ``preset`` (None = the method's default for
    ``device``) with ``overrides`` on top, its ``settings`` set to the resolved record:
    the ``from_preset`` of every SAM method."""
    name = preset or default_preset(method, device)
    config, settings = config_from_preset(config_cls, method, name, **overrides)
    built = cls(backend, config)
    built.settings = settings
    return built

