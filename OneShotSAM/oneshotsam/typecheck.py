"""Check user-given settings (``--set KEY=VALUE``, presets, forms) against a frozen
config dataclass before it is built, so a wrong value is a user error that names
the setting, not a crash deep inside a run.

Rules, from each field's default value: a bool field takes true/false; an int field
an integer; a float field a finite number; a text field text; a tuple field a
list; a dict or dataclass field an object (checked recursively against the
dataclass, or against the default dict's own keys); a numeric field whose default
is >= 0 must not be negative. Fields whose default is None are not checked; defaults are read from the
class built without arguments where that works.
Standard library only.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from oneshotsam.errors import OneShotError


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _check(name: str, default: Any, value: Any, what: str) -> None:
    def bad(kind: str) -> OneShotError:
        return OneShotError(f"{what} setting {name} expects {kind}; got {value!r} (its "
                            f"default is {default!r}): fix the value")

    if default is None or value is None:
        return
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
        return
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        if isinstance(default, int) and not isinstance(value, int) and not float(value).is_integer():
            raise bad("an integer")
        if not math.isfinite(float(value)):
            raise bad("a finite number")
        if default >= 0 and value < 0:
            raise OneShotError(f"{what} setting {name} must be >= 0; got {value!r}")
        return
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad("text")
        return
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad("a list")
        return
    if dataclasses.is_dataclass(default):
        if isinstance(value, type(default)):
            return
        if not isinstance(value, Mapping):
            raise bad("an object")
        check_settings(type(default), value, f"{what} {name}")
        return
    if isinstance(default, Mapping):
        if not isinstance(value, Mapping):
            raise bad("an object")
        for key, sub in value.items():
            if key in default:
                _check(f"{name}.{key}", default[key], sub, what)


def check_settings(config_cls: type, values: Mapping[str, Any], what: str = "") -> None:
    """Raise :class:`OneShotError` for a value of ``values`` that does not fit the field
    of ``config_cls`` with that name (unknown names are left to the caller)."""
    label = what or config_cls.__name__
    try:  # the built defaults (a None default may become a sub-config in __post_init__)
        built: Any = config_cls()
    except Exception:  # noqa: BLE001 - a class without defaults: field defaults only
        built = None
    for f in dataclasses.fields(config_cls):
        if f.name in values:
            default = getattr(built, f.name, None) if built is not None else _default(f)
            _check(f.name, default, values[f.name], label)


__all__ = ["check_settings"]
