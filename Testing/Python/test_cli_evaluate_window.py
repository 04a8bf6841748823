"""``oneshotsam evaluate`` refuses grey images given as predictions (or ground truth), and
``--window -160,240`` (a window below zero, written with a space) is accepted by every
subcommand that takes ``--window``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from oneshotsam.cli import build_parser, main

SimpleITK = pytest.importorskip("SimpleITK")


def _write(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    SimpleITK.WriteImage(SimpleITK.GetImageFromArray(arr), str(path))
    return path


GREY = (np.arange(16 * 16).reshape(16, 16) % 251).astype(np.uint8)       # 251 grey levels
LABELS = np.zeros((16, 16), np.uint8)
LABELS[4:12, 4:12] = 1
LABELS[6:10, 6:10] = 2


@pytest.mark.parametrize("pred, gt, message", [
    (GREY, LABELS, "the prediction .* holds 251 distinct values: that looks like an image"),
    (LABELS, GREY, "the ground truth .* holds 251 distinct values"),
    (LABELS.astype(np.float32) + 0.5, LABELS, "the prediction .* holds non-integer values"),
    (GREY[None].repeat(3, 0), LABELS[None].repeat(3, 0), "the prediction .* distinct values"),  # volumes
])
def test_evaluate_refuses_images_as_label_maps(tmp_path, capsys, pred, gt, message):
    import re

    suffix = ".nii.gz" if pred.ndim == 3 else ".tif" if pred.dtype == np.float32 else ".png"
    _write(tmp_path / "pred" / f"case{suffix}", pred)
    _write(tmp_path / "gt" / f"case{suffix}", gt)
    rc = main(["evaluate", "--predictions", str(tmp_path / "pred"), "--ground-truth", str(tmp_path / "gt"),
               "--json", str(tmp_path / "eval.json")])
    err = capsys.readouterr().err
    assert rc == 2 and re.search(message, err), err
    assert not (tmp_path / "eval.json").exists()


def test_evaluate_pairs_an_output_with_its_ground_truth(tmp_path, capsys):
    pred = LABELS.copy()
    pred[4, 4:12] = 0                       # label 1: 48 - 8 = 40 of 48 pixels
    _write(tmp_path / "pred" / "case_oneshotsam.png", pred)
    _write(tmp_path / "gt" / "case.png", LABELS)
    assert main(["evaluate", "--predictions", str(tmp_path / "pred"), "--ground-truth",
                 str(tmp_path / "gt")]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("case ")][1]
    assert row.split()[1] == f"{2 * 40 / (40 + 48):.4f}" and row.split()[3] == "1.0000"


def _subcommands_with_window() -> dict[str, argparse.ArgumentParser]:
    out = {}

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, prefix + [name])
            elif "--window" in action.option_strings:
                out[" ".join(prefix)] = parser
    walk(build_parser(), [])
    return out


def _minimal_argv(parser: argparse.ArgumentParser) -> list[str]:
    """Values for the required options and positionals (their types are not checked here)."""
    argv: list[str] = []
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction) or not (a.required or not a.option_strings):
            continue
        value = str(a.choices[0]) if a.choices else "x"
        argv += ([a.option_strings[0]] if a.option_strings else []) + [value]
    return argv


def test_every_window_option_is_found():
    assert {"segment", "propagate", "cohort"} <= set(_subcommands_with_window())


@pytest.mark.parametrize("window", ["-160,240", "-1000,-200", "-.5,1.5"])
def test_negative_window_with_a_space(window):
    from oneshotsam.cli import join_signed_values

    for name, sub in _subcommands_with_window().items():
        argv = name.split() + _minimal_argv(sub) + ["--window", window]
        args = build_parser().parse_args(join_signed_values(argv))
        assert args.window == window, name


@pytest.mark.parametrize("argv, joined", [
    (["segment", "--window", "-160,240", "--quiet"], ["segment", "--window=-160,240", "--quiet"]),
    (["segment", "--window", "lung"], ["segment", "--window", "lung"]),
    (["segment", "--window", "--quiet"], ["segment", "--window", "--quiet"]),  # argparse says what is missing
    (["x", "--", "--window", "-1,2"], ["x", "--", "--window", "-1,2"]),
])
def test_join_signed_values(argv, joined):
    from oneshotsam.cli import join_signed_values

    assert join_signed_values(argv) == joined
