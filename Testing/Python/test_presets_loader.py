"""Preset loader and the one merge of method settings: package-data JSON, copies,
defaults, defaults <- preset <- situation <- user, clear errors."""

from __future__ import annotations

import pytest

from oneshotsam.errors import OneShotError
from oneshotsam.presets import (
    config_from_preset, default_preset, list_presets, load_preset, resolve_settings)

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


@pytest.mark.parametrize("method", ["p2sam", "persam", "persam-f", "medpersam"])
def test_every_preset_cites_a_source(method):
    names = list_presets(method)
    assert names
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


@pytest.mark.parametrize("method, cuda, device, expected", [
    ("p2sam", False, "auto", "default"), ("persam", True, "auto", "default"),
    ("medpersam", False, "auto", "cpu"), ("medpersam", True, "auto", "paper"),
    ("medpersam", True, "cpu", "cpu"),
    ("medpersam-warp", False, "auto", "auto"), ("medpersam-warp", True, "cuda", "auto"),
])
def test_default_preset(monkeypatch, method, cuda, device, expected):
    import oneshotsam.devices as devices
    from oneshotsam.methods import registry

    monkeypatch.setattr(devices, "cuda_available", lambda: cuda)
    assert default_preset(method, device) == expected
    assert registry.default_preset(method, device) == expected


def test_config_from_preset_and_overrides():
    from oneshotsam.methods.p2sam import P2SAMConfig

    cfg, settings = config_from_preset(P2SAMConfig, "p2sam", "lung4d", cost="cosine", seed=None)
    assert cfg.n_pos == (1, 2) and cfg.n_neg == (45,) and cfg.cost == "cosine"
    assert cfg.source.startswith("P2SAM Appendix C")
    assert settings.sources["cost"] == "user" and settings.sources["n_pos"] == "preset"
    with pytest.raises(OneShotError, match="unknown p2sam setting"):
        config_from_preset(P2SAMConfig, "p2sam", "default", n_parts=3)
    with pytest.raises(OneShotError, match="cost must be one of"):
        config_from_preset(P2SAMConfig, "p2sam", "default", cost="l1")


#: known names of the merge cases below (a subset of medpersam.json's ``cpu-field``)
KNOWN = {"resolution", "lr", "roi_margin", "net", "epochs"}
# (situation, user, key, expected value, expected source): cpu-field has resolution 64,
# lr 0.01, roi_margin 0.5 (presets/medpersam.json)
MERGE_CASES = [
    (None, None, "resolution", 64, "preset"),
    ({"resolution": 96}, None, "resolution", 96, "situation"),
    ({"resolution": 96}, {"resolution": 48}, "resolution", 48, "user"),
    (None, {"lr": None}, "lr", 0.01, "preset"),  # None = an unset option
    ({"roi_margin": 1.0}, {"lr": 0.02}, "roi_margin", 1.0, "situation"),
    (None, {"epochs": 3}, "epochs", 3, "user"),  # a key the preset does not set
]


@pytest.mark.parametrize("situation, user, key, value, source", MERGE_CASES)
def test_resolve_settings_layers(situation, user, key, value, source):
    r = resolve_settings("medpersam-warp", "cpu-field", known=KNOWN, situation=situation,
                         user=user, presets="medpersam", only_known=True)
    assert r.values[key] == value and r.sources[key] == source
    assert r.preset == "cpu-field" and r.report()["from"][key] == source


def test_resolve_settings_merges_objects_key_by_key():
    base = load_preset("medpersam", "paper")["net"]
    r = resolve_settings("medpersam-warp", "paper", known=KNOWN, user={"net": {"enc_channels": 8}},
                         presets="medpersam", only_known=True)
    assert r.values["net"] == {**base, "enc_channels": 8}
    assert load_preset("medpersam", "paper")["net"] == base  # the preset is untouched


@pytest.mark.parametrize("kwargs, message", [
    (dict(user={"nonsense": 1}), "unknown medpersam-warp setting"),
    (dict(situation={"nonsense": 1}), "unknown medpersam-warp setting"),
    (dict(only_known=False), "preset 'paper' of 'medpersam-warp' has unknown settings"),
])
def test_resolve_settings_refuses_unknown_names(kwargs, message):
    with pytest.raises(OneShotError, match=message):
        resolve_settings("medpersam-warp", "paper", known=KNOWN, presets="medpersam",
                         **{"only_known": True, **kwargs})


def test_every_method_builds_through_the_one_merge():
    """Each method's ``from_preset`` records the merge (what report.json writes)."""
    from oneshotsam.backends.factory import create_backend
    from oneshotsam.methods.registry import create_method

    backend = create_backend("sam-tiny-test", random_weights=True, device="cpu")
    for name, preset, key, value in (("p2sam", "cvc", "cost", "cosine"),
                                     ("persam", "plain", "cascade", False),
                                     ("medpersam", "cpu", "retrain_rounds", 1),
                                     ("medpersam-warp", "cpu-field", "lr", 0.02)):
        m = create_method(name, backend=backend, preset=preset, device="cpu", **{key: value})
        assert m.settings.preset == preset and m.settings.sources[key] == "user", name
        assert m.settings.values[key] == value, name
        assert {"preset"} == {v for k, v in m.settings.sources.items() if k != key}, name


def test_presets_do_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; import oneshotsam.presets as p; p.load_preset('p2sam','default'); "
            "import oneshotsam.methods.p2sam, oneshotsam.methods.persam, "
            "oneshotsam.methods.retrieval, oneshotsam.methods.features; "
            "bad=[m for m in ('torch','sam2','hydra','ot','sklearn') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_registry_names_each_methods_presets_and_default():
    """Every registry method's preset file exists and holds its default presets (the Slicer
    module's preset list is ``registry.method_presets``)."""
    from oneshotsam.methods import registry
    from oneshotsam.presets import AUTO, DEFAULT_PRESETS

    assert set(DEFAULT_PRESETS) == set(registry.METHODS)
    for name in registry.METHODS:
        names = registry.method_presets(name)
        assert names and all(load_preset(registry.method_info(name).presets, n) for n in names)
        for preset in set(DEFAULT_PRESETS[name]) - {AUTO}:
            assert preset in names, (name, preset)
        assert registry.config_classes(name), name
