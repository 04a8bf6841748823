"""The settings layer (oneshotsam.settings): one place that builds the propagation
configuration for every front end, with names from the registries, and a help
text on every option of every command."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from oneshotsam import settings as S
from oneshotsam.cli import build_parser
from oneshotsam.errors import OneShotError
from oneshotsam.volume.types import PropagationConfig

#: a non-default value per setting (text, as a form or parameter node stores it)
NON_DEFAULT = {
    "window": "-100,300", "align": "false", "registration": "rigid", "propagation": "chain",
    "stop_min_area_ratio": "0.3", "stop_min_area_mm2": "9.5", "stop_min_confidence": "0.2",
    "stop_min_appearance": "0.1", "stop_past_end": "0.5", "review_confidence": "0.7", "review_area_change": "2.5",
    "extend_beyond_contour": "true", "contour_end_min_fit": "0.5",
    "contour_end_max_slices": "2", "seed": "7",
}


def _walk(parser: argparse.ArgumentParser, path: str = "oneshotsam"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}")


def test_every_option_of_every_command_has_help() -> None:
    missing = []
    for path, parser in _walk(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) or not action.option_strings:
                continue
            if not (action.help and action.help.strip()) or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {action.option_strings[0]}")
    assert not missing, f"options without a help text: {missing}"


def test_names_come_from_the_registries() -> None:
    from oneshotsam.backends.factory import BACKEND_NAMES
    from oneshotsam.methods.registry import METHODS

    assert S.method_names() == list(METHODS)
    assert set(S.backend_names()) <= set(BACKEND_NAMES) and "sam-vit-b" in S.backend_names()
    assert "sam-tiny-test" not in S.backend_names()


def test_every_setting_is_a_config_field_with_its_default() -> None:
    names = {f.name for f in fields(PropagationConfig)}
    assert {s.name for s in S.PROPAGATION_SETTINGS} <= names
    assert set(NON_DEFAULT) == {s.name for s in S.PROPAGATION_SETTINGS}
    for s in S.PROPAGATION_SETTINGS:
        assert s.default == getattr(PropagationConfig(), s.name)


def test_stop_rule_defaults_live_in_one_place() -> None:
    from oneshotsam.volume.stoprule import StopRule

    assert PropagationConfig().stop_rule() == StopRule()


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_text_values_reach_the_config(name: str) -> None:
    cfg = S.propagation_config({name: NON_DEFAULT[name]})
    default = getattr(PropagationConfig(), name)
    assert getattr(cfg, name) != default
    # and back: text -> config -> text -> config is the identity
    param = next(s.parameter for s in S.PROPAGATION_SETTINGS if s.name == name)
    again = S.propagation_config_from_text({param: S.config_to_text(cfg)[param]})
    assert getattr(again, name) == getattr(cfg, name)


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_cli_options_reach_the_config(name: str) -> None:
    s = next(x for x in S.PROPAGATION_SETTINGS if x.name == name)
    p = argparse.ArgumentParser()
    S.add_model_arguments(p)
    S.add_propagation_arguments(p)
    argv = [s.flag] if s.kind is bool else [f"{s.flag}={NON_DEFAULT[name]}"]
    cfg = S.propagation_config_from_args(p.parse_args(argv))
    assert getattr(cfg, name) == getattr(S.propagation_config({name: NON_DEFAULT[name]}), name)
    assert S.propagation_config_from_args(p.parse_args([])) == PropagationConfig(device="auto")


@pytest.mark.parametrize("values,kw,needle", [
    ({"stop_min_area_ratio": "abc"}, {}, "expects a float"),
    ({"stop_min_area_ratio": "-1"}, {}, "must be a finite number >= 0"),
    ({"registration": "bspline"}, {}, "rigid, affine"),
    ({"stop_past_end": "1"}, {}, r"probability in \[0, 1\)"),
    ({"stop_past_end": "-0.2"}, {}, "0 disables the stop"),
    ({"contour_end_max_slices": "1.5"}, {}, "expects a int"),
    ({"align": "maybe"}, {}, "expects a bool"),
    ({"nonsense": 1}, {}, "unknown propagation setting"),
    ({}, {"method": "sam3"}, "unknown method"),
    ({}, {"backend": "vit-z"}, "unknown backend"),
    ({}, {"device": "tpu"}, "unknown device"),
])
def test_bad_values_are_user_errors(values, kw, needle) -> None:
    with pytest.raises(OneShotError, match=needle):
        S.propagation_config(values, **kw)


def test_parse_overrides() -> None:
    assert S.parse_overrides(["steps=10", "net={\"n_levels\": 2}", "name=abc"]) == {
        "steps": 10, "net": {"n_levels": 2}, "name": "abc"}
    with pytest.raises(OneShotError, match="KEY=VALUE"):
        S.parse_overrides(["steps"])


def test_console_progress_plain_lines_and_bar(capsys) -> None:
    import io

    from oneshotsam.progress import ConsoleProgress

    plain = io.StringIO()
    prog = ConsoleProgress(stream=plain, interval_s=0.0)
    assert all(prog(i, 3, f"slice {i}") for i in (1, 2, 3))
    assert plain.getvalue().splitlines() == ["[1/3] slice 1", "[2/3] slice 2", "[3/3] slice 3"]
    bar = io.StringIO()
    ConsoleProgress(stream=bar, bar=True)(3, 3, "done")
    text = bar.getvalue()
    assert "3/3" in text and "<" in text  # elapsed<remaining
    quiet = io.StringIO()
    ConsoleProgress(quiet=True, stream=quiet)(1, 1, "x")
    assert quiet.getvalue() == ""


def _option_help(command: str, flag: str) -> str:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return next(a.help for a in sub.choices[command]._actions if flag in a.option_strings)


@pytest.mark.parametrize("command", ["segment", "propagate", "cohort"])
def test_window_help_is_one_text_with_each_commands_default(command: str) -> None:
    text = _option_help(command, "--window")
    assert S.WINDOW_SPECS in text
    assert ("refused" in text) if command == "segment" else ("default: auto" in text)


def test_preset_help_names_each_methods_default() -> None:
    """What ``--preset`` says a method uses without one is what it uses
    (:data:`oneshotsam.presets.DEFAULT_PRESETS`; medpersam-warp: the situation's choice)."""
    from oneshotsam.presets import AUTO, DEFAULT_PRESETS

    text = _option_help("segment", "--preset")
    for method, (on_cpu, on_cuda) in DEFAULT_PRESETS.items():
        assert method in text, method
        for preset in {on_cpu, on_cuda} - {AUTO}:
            assert f"'{preset}'" in text, (method, preset)
    assert "situation" in text and "'cpu-field'" in text  # medpersam-warp's CPU 2D choice
