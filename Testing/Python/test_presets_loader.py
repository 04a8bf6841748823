"""Preset loader: package-data JSON, copies, defaults, clear errors."""

from __future__ import annotations

import pytest

from oneshotsam.errors import OneShotError
from oneshotsam.presets import (
    config_from_preset, default_preset, list_presets, load_preset)

# (method, preset, key, expected) — values read off P2SAM Appendix C Tables 9/10
PRESET_CASES = [
    ("p2sam", "cvc", "n_pos", [1, 2, 3, 4, 5]),
    ("p2sam", "cvc", "n_neg", [1]),  # the authors' README command; Table 10: cvc-table10
    ("p2sam", "cvc-table10", "n_neg", [1, 2, 3]),
    ("p2sam", "lung4d", "n_pos", [1, 2]),
    ("p2sam", "lung4d", "n_neg", [45]),
    ("p2sam", "lung4d", "window", "p2sam-lung4d"),
    ("p2sam", "perseg", "mode", "natural"),
    ("p2sam", "default", "cost", "sqeuclidean"),
    ("p2sam", "paper-cosine", "cost", "cosine"),
    ("persam", "default", "semantic_prompting", True),
]


@pytest.mark.parametrize("method, preset, key, expected", PRESET_CASES)
def test_preset_values(method, preset, key, expected):
    assert load_preset(method, preset)[key] == expected


@pytest.mark.parametrize("method", ["p2sam", "persam"])
def test_every_preset_cites_a_source(method):
    names = list_presets(method)
    assert "default" in names
    for name in names:
        src = load_preset(method, name)["source"]
        assert isinstance(src, str) and len(src) > 20


def test_load_returns_a_copy():
    a = load_preset("p2sam", "cvc")
    a["n_pos"].append(99)
    assert load_preset("p2sam", "cvc")["n_pos"] == [1, 2, 3, 4, 5]


def test_unknown_preset_lists_available():
    with pytest.raises(OneShotError, match="available presets: default"):
        load_preset("p2sam", "nope")


def test_unknown_method():
    with pytest.raises(OneShotError, match="no presets for method"):
        list_presets("no-such-method")


@pytest.mark.parametrize("method, cuda, expected", [
    ("p2sam", False, "default"), ("persam", True, "default"),
    ("medpersam", False, "cpu"), ("medpersam", True, "paper"),
    ("medpersam-warp", False, "cpu"), ("medpersam-warp", True, "paper"),
])
def test_default_preset(monkeypatch, method, cuda, expected):
    import oneshotsam.presets as presets

    monkeypatch.setattr(presets, "_cuda_available", lambda: cuda)
    assert default_preset(method) == expected


def test_config_from_preset_and_overrides():
    from oneshotsam.methods.p2sam import P2SAMConfig

    cfg = config_from_preset(P2SAMConfig, "p2sam", "lung4d", cost="cosine", seed=None)
    assert cfg.n_pos == (1, 2) and cfg.n_neg == (45,) and cfg.cost == "cosine"
    assert cfg.source.startswith("P2SAM Appendix C")
    with pytest.raises(OneShotError, match="unknown p2sam setting"):
        config_from_preset(P2SAMConfig, "p2sam", None, n_parts=3)
    with pytest.raises(OneShotError, match="cost must be one of"):
        config_from_preset(P2SAMConfig, "p2sam", None, cost="l1")


def test_presets_do_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; import oneshotsam.presets as p; p.load_preset('p2sam','default'); "
            "import oneshotsam.methods.p2sam, oneshotsam.methods.persam, "
            "oneshotsam.methods.retrieval, oneshotsam.methods.features; "
            "bad=[m for m in ('torch','sam2','hydra','ot','sklearn') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
