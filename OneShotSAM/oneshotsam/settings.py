"""The one settings layer of every front end (command line, Slicer module, benchmarks,
and any later front end such as a cohort runner or a browser app).

A front end never builds a :class:`~oneshotsam.volume.types.PropagationConfig` by
hand; it collects the user's values and calls this module:

* names: :func:`method_names`, :func:`backend_names` (from the registries),
  :data:`AXES`, :data:`DEVICES`, :data:`PROPAGATION_MODES`, :data:`REGISTRATIONS`;
* :func:`parse_overrides` (``["steps=100", "lr=1e-3"]`` -> ``{"steps": 100, ...}``),
  one parser for every ``--set``;
* :data:`PROPAGATION_SETTINGS`: every user-settable propagation setting (its
  :class:`PropagationConfig` field, command-line flag, parameter-node name and
  help text; the default is always the config's own);
* :func:`propagation_config` (typed values) and :func:`propagation_config_from_text`
  (text values, as a Slicer parameter node or a web form stores them) build and
  check a configuration; :func:`config_to_text` goes back to text;
* :func:`add_model_arguments` / :func:`add_propagation_arguments` add the options
  to an ``argparse`` parser and :func:`propagation_config_from_args` reads them;
* :func:`~oneshotsam.devices.check_device` (re-exported): a requested device that is not
  there is refused.

Every problem is a :class:`~oneshotsam.errors.OneShotError` that says what to do.
Importing this module costs the standard library, numpy and the (light) registries.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

from oneshotsam.devices import DEVICES, check_device
from oneshotsam.errors import OneShotError
from oneshotsam.volume.types import AXES, PROPAGATION_MODES, REGISTRATIONS, PropagationConfig

_DEFAULT = PropagationConfig()
#: what ``--window`` takes, in every command (:func:`oneshotsam.intensity.parse_window`)
WINDOW_SPECS = ("a CT preset in HU (lung, mediastinum, abdomen, brain, p2sam-lung4d), "
                "'percentile[:LO,HI]' (MR), 'LOW,HIGH' (explicit) or 'auto' (8-bit as is, "
                "otherwise the 0.5-99.5 percentiles)")


def method_names() -> list[str]:
    """Registry names of the one-shot methods (``--method``)."""
    from oneshotsam.methods.registry import method_names as names

    return list(names())


def backend_names() -> list[str]:
    """Registry names of the SAM / SAM 2 backends (``--backend``), official ones first."""
    from oneshotsam.backends.factory import OFFICIAL_BACKENDS

    return list(OFFICIAL_BACKENDS)


def parse_overrides(items: Sequence[str] | None) -> dict[str, Any]:
    """``["epochs=2", "cost=cosine"]`` -> ``{"epochs": 2, "cost": "cosine"}``.

    VALUE is parsed as JSON when it can be (numbers, ``true``, lists, objects),
    else kept as text. Raises OneShotError for an item without ``KEY=``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise OneShotError(f"--set expects KEY=VALUE with KEY a setting name; got {item!r}")
        try:
            out[key] = json.loads(value.strip())
        except json.JSONDecodeError:
            out[key] = value.strip()
    return out


def check_method_overrides(method: str, overrides: Mapping[str, Any], volume: bool = False) -> None:
    """Refuse an override value of the wrong type or sign (a user error naming the
    setting) before anything runs; ``volume``: the keys may also be settings of the
    warp-volume engine. The classes are the method's typed configs in the registry.
    Unknown names are left to the method, which lists the valid ones."""
    from oneshotsam.methods.registry import config_classes
    from oneshotsam.typecheck import check_settings

    classes = list(config_classes(method))
    if volume:
        from oneshotsam.volume.warpvol import VolumeWarpConfig

        classes.append(VolumeWarpConfig)
    for cls in classes:
        check_settings(cls, overrides, method)


@dataclass(frozen=True)
class Setting:
    """One user-settable propagation setting.

    Attributes:
        name: the :class:`PropagationConfig` field (its default is the only default).
        flag: command-line option (``--no-align`` style flags invert a True default).
        parameter: name in the Slicer parameter node (text value).
        help: what it does, for ``--help`` and tooltips.
        choices: allowed values, or None.
    """

    name: str
    flag: str
    parameter: str
    help: str
    choices: tuple[str, ...] | None = None

    @property
    def default(self) -> Any:
        return getattr(_DEFAULT, self.name)

    @property
    def kind(self) -> type:
        d = self.default
        return str if d is None else type(d)


#: every propagation setting a user may change (run inputs such as the reference
#: slices, and the model choice of :func:`add_model_arguments`, are separate)
PROPAGATION_SETTINGS: tuple[Setting, ...] = (
    Setting("window", "--window", "Window",
            f"intensity window: {WINDOW_SPECS}; computed once on the reference volume and "
            "used for every volume (default: auto)"),
    Setting("align", "--no-align", "Align",
            "do not register follow-ups to the reference (slices still paired by physical "
            "position)"),
    Setting("registration", "--registration", "Registration",
            "follow-up alignment: rigid, or affine initialised by rigid", REGISTRATIONS),
    Setting("propagation", "--propagation", "Propagation",
            "auto: one warping network per volume for medpersam-warp (per-slice pairs for "
            "follow-ups of a contour on every slice), chain otherwise; chain: each slice from "
            "its segmented neighbour; direct: each slice from the nearest annotated slice; "
            "warp-volume: one warping network per volume", PROPAGATION_MODES),
    Setting("stop_min_area_ratio", "--stop-min-area-ratio", "StopMinAreaRatio",
            "absence rule: a label ends where its area falls below this fraction of its area "
            "on the neighbouring slice"),
    Setting("stop_min_area_mm2", "--stop-min-area-mm2", "StopMinAreaMm2",
            "absence rule: a label ends where its area falls below this many mm2"),
    Setting("stop_min_confidence", "--stop-min-confidence", "StopMinConfidence",
            "absence rule: a label ends where the method's confidence is below this (0 off)"),
    Setting("stop_min_appearance", "--stop-min-appearance", "StopMinAppearance",
            "absence rule: a label ends where its mean intensity is unlike the annotated "
            "structure (agreement in [0, 1] below this; 0 off)"),
    Setting("stop_past_end", "--stop-past-end", "StopPastEnd",
            "absence rule: a walk outward from an annotated slice smaller than the largest stops "
            "where it lies past the structure's end estimated from the two slices' areas with "
            "at least this probability (0 off)"),
    Setting("review_confidence", "--review-confidence", "ReviewConfidence",
            "flag slices whose confidence is below this for review"),
    Setting("review_area_change", "--review-area-change", "ReviewAreaChange",
            "flag slices whose label area changes by more than this factor for review"),
    Setting("extend_beyond_contour", "--extend-beyond-contour", "ExtendBeyondContour",
            "follow-ups of a reference contoured on every slice of the structure: also walk "
            "outward past the contour's ends (default: those slices stay empty)"),
    Setting("contour_end_min_fit", "--contour-end-min-fit", "ContourEndMinFit",
            "follow-ups of a contour on every slice: trim a label from its contour's ends "
            "inward where its image fit is below this (0 disables)"),
    Setting("contour_end_max_slices", "--contour-end-max-slices", "ContourEndMaxSlices",
            "... at most this many slices from each end"),
    Setting("seed", "--seed", "Seed", "random seed of training-based methods and the registration"),
)
_BY_NAME = {s.name: s for s in PROPAGATION_SETTINGS}
_CONFIG_FIELDS = {f.name for f in fields(PropagationConfig)}


def _typed(setting: Setting, value: Any) -> Any:
    """``value`` (typed, or text from a form / parameter node) as the setting's type."""
    kind = setting.kind
    if value is None or (isinstance(value, str) and value.strip() == "" and kind is not str):
        return setting.default
    try:
        if kind is bool:
            if isinstance(value, str):
                text = value.strip().lower()
                if text not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError(value)
                return text in ("true", "1", "yes", "on")
            return bool(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(str(value).strip()) if isinstance(value, str) else int(value)
        if kind is float:
            out = float(value)
            if out != out or out in (float("inf"), float("-inf")):
                raise ValueError(value)
            return out
    except (TypeError, ValueError):
        raise OneShotError(f"setting {setting.name} ({setting.flag}) expects a "
                           f"{kind.__name__}; got {value!r}") from None
    text = str(value).strip()
    if not text:
        return None
    if setting.choices and text not in setting.choices:
        raise OneShotError(f"setting {setting.name} ({setting.flag}) must be one of "
                           f"{', '.join(setting.choices)}; got {text!r}")
    return text


def propagation_config(values: Mapping[str, Any] | None = None, *, method: str | None = None,
                       overrides: Mapping[str, Any] | None = None, **model: Any) -> PropagationConfig:
    """A checked :class:`PropagationConfig`.

    Args:
        values: propagation settings by field name (:data:`PROPAGATION_SETTINGS`;
            text or typed values; None / empty text = the default) and run inputs
            (``axis``, ``reference_slices``, ``fixed_slices``).
        method: registry name; None = the config's default.
        overrides: method (or warp-volume engine) settings, e.g. from :func:`parse_overrides`.
        model: ``backend``, ``checkpoint``, ``preset``, ``device`` (None = default).

    Raises:
        OneShotError: unknown setting, value of the wrong type or out of range,
            unknown method, backend or device, CUDA asked for but absent.
    """
    kw: dict[str, Any] = {}
    for key, value in (values or {}).items():
        if key in _BY_NAME:
            kw[key] = _typed(_BY_NAME[key], value)
        elif key in ("axis", "reference_slices", "fixed_slices"):
            kw[key] = value
        else:
            raise OneShotError(f"unknown propagation setting {key!r}; valid: "
                               f"{', '.join(sorted(_BY_NAME))}")
    bad = sorted(set(model) - {"backend", "checkpoint", "preset", "device"})
    if bad:
        raise OneShotError(f"unknown model settings {bad}: use backend, checkpoint, preset, device")
    if method is not None:
        if method not in method_names():
            raise OneShotError(f"unknown method {method!r}; choose one of {', '.join(method_names())}")
        kw["method"] = method
    for key in ("backend", "checkpoint", "preset"):
        if model.get(key):
            kw[key] = str(model[key])
    if model.get("backend"):
        from oneshotsam.backends.factory import canonical_name

        kw["backend"] = canonical_name(model["backend"])
    if model.get("device"):
        kw["device"] = check_device(model["device"])
    if kw.get("axis") is None:
        kw.pop("axis", None)
    for key in ("reference_slices", "fixed_slices"):
        if key in kw and kw[key] is not None:
            kw[key] = tuple(int(k) for k in kw[key])
    if kw.get("fixed_slices") is None:
        kw.pop("fixed_slices", None)
    if overrides:
        check_method_overrides(kw.get("method", _DEFAULT.method), overrides, volume=True)
    kw["method_overrides"] = tuple((str(k), v) for k, v in (overrides or {}).items())
    cfg = PropagationConfig(**kw)
    cfg.validate()
    return cfg


def config_to_text(cfg: PropagationConfig) -> dict[str, str]:
    """``{parameter name: text}`` of every :data:`PROPAGATION_SETTINGS` entry of ``cfg``
    (the inverse of :func:`propagation_config` on text values)."""
    out = {}
    for s in PROPAGATION_SETTINGS:
        v = getattr(cfg, s.name)
        out[s.parameter] = "" if v is None else ("true" if v is True else "false" if v is False
                                                 else str(v))
    return out


def propagation_config_from_text(text: Mapping[str, str], **kwargs: Any) -> PropagationConfig:
    """:func:`propagation_config` from ``{parameter name: text}`` (missing = default);
    ``kwargs`` as there (``method``, ``overrides``, model settings, ``values`` for run inputs)."""
    values = dict(kwargs.pop("values", None) or {})
    for s in PROPAGATION_SETTINGS:
        if s.parameter in text:
            values[s.name] = text[s.parameter]
    return propagation_config(values, **kwargs)


# ----------------------------------------------------------------------------- argparse
def preset_help() -> str:
    """``--preset``'s help, written from :data:`oneshotsam.presets.DEFAULT_PRESETS`."""
    from oneshotsam.presets import AUTO, DEFAULT_PRESETS

    parts = []
    for (on_cpu, on_cuda) in dict.fromkeys(DEFAULT_PRESETS.values()):
        methods = ", ".join(m for m, d in DEFAULT_PRESETS.items() if d == (on_cpu, on_cuda))
        if on_cpu == on_cuda == AUTO:
            parts.append(f"{methods} chooses from the situation ('cpu-field' for 2D on the CPU, "
                         "'paper' on CUDA, 'volume' for propagation; recorded in report.json)")
        elif on_cpu == on_cuda:
            parts.append(f"'{on_cpu}' for {methods}")
        else:
            parts.append(f"{methods}: '{on_cpu}' on the CPU, '{on_cuda}' on CUDA")
    return "preset name in oneshotsam/presets/<method>.json (default: " + "; ".join(parts) + ")"


def add_model_arguments(p: argparse.ArgumentParser, *, method_required: bool = False,
                        default_method: str | None = "medpersam-warp") -> None:
    """``--method --backend --checkpoint --preset --device --set``."""
    p.add_argument("--method", required=method_required, choices=method_names(),
                   default=None if method_required else default_method,
                   help="one-shot method (medpersam-warp needs no SAM weights"
                        + ("" if method_required else f"; default {default_method}") + ")")
    p.add_argument("--backend", default=None,
                   help=f"SAM model: {'|'.join(backend_names())} (needed by every method but "
                        "medpersam-warp)")
    p.add_argument("--checkpoint", default=None,
                   help="path of the backend's weights (default: the file downloaded by "
                        "`oneshotsam weights download NAME`)")
    p.add_argument("--preset", default=None, help=preset_help())
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where to run: auto (CUDA when present), cpu or cuda")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one method (or warp-volume engine) setting; VALUE is parsed "
                        "as JSON when it can be, e.g. --set epochs=2; repeatable")


def add_propagation_arguments(p: argparse.ArgumentParser) -> None:
    """One option per :data:`PROPAGATION_SETTINGS` entry (default None = the config's)."""
    for s in PROPAGATION_SETTINGS:
        if s.kind is bool and s.default is True:
            p.add_argument(s.flag, dest=s.name, action="store_const", const=False, default=None,
                           help=s.help)
        elif s.kind is bool:
            p.add_argument(s.flag, dest=s.name, action="store_const", const=True, default=None,
                           help=s.help)
        else:
            shown = "" if s.default is None else f" (default {s.default})"
            p.add_argument(s.flag, dest=s.name, default=None, choices=s.choices,
                           type=None if s.kind is str else s.kind,
                           metavar=None if s.choices else {str: "SPEC", int: "N"}.get(s.kind, "X"),
                           help=s.help + shown)


def propagation_config_from_args(args: argparse.Namespace, **values: Any) -> PropagationConfig:
    """The configuration of a parsed command line (:func:`add_model_arguments` and
    :func:`add_propagation_arguments`); ``values`` adds run inputs (``axis``...)."""
    vals = {s.name: getattr(args, s.name) for s in PROPAGATION_SETTINGS
            if getattr(args, s.name, None) is not None}
    vals.update(values)
    return propagation_config(vals, method=args.method, overrides=parse_overrides(args.overrides),
                              backend=args.backend, checkpoint=args.checkpoint,
                              preset=args.preset, device=args.device)


__all__ = ["AXES", "DEVICES", "WINDOW_SPECS", "PROPAGATION_MODES", "REGISTRATIONS", "PROPAGATION_SETTINGS",
           "Setting", "method_names", "backend_names", "parse_overrides", "check_device",
           "check_method_overrides",
           "propagation_config", "propagation_config_from_text", "config_to_text",
           "add_model_arguments", "add_propagation_arguments", "propagation_config_from_args"]
