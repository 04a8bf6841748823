"""Default warping settings chosen from the situation (``warp_choice``), recorded in reports."""

from __future__ import annotations

import numpy as np
import pytest

from oneshotsam.methods.medpersam.warp_choice import (Situation, choose_warp_settings,
                                                      context_margin, working_resolution)

CHOICES = [  # kind, n_targets, image_hw, structure_hw, device -> preset, resolution
    ("cohort", 4, (128, 128), (47, 69), "cpu", "cpu-field", 64),       # README example
    ("cohort", 122, (512, 512), (400, 450), "cpu", "cpu-field", 64),   # chest film, lungs + heart
    ("pair", 1, (216, 256), (50, 60), "cpu", "cpu-field", 64),         # small structure, one target
    ("pair", 1, (512, 512), (300, 200), "cpu", "cpu-field", 64),       # large structure: grid 64 too
    ("cohort", 30, (512, 512), (400, 450), "cuda", "paper", None),
    ("pair", 1, (512, 512), (40, 40), "cuda", "paper", None),
    ("volume", 10, (1, 1), (1, 1), "cpu", "volume", None),
    ("volume", 10, (1, 1), (1, 1), "cuda", "volume", None),
]


@pytest.mark.parametrize("kind,n,image_hw,box_hw,device,preset,res", CHOICES)
def test_choice_table(kind, n, image_hw, box_hw, device, preset, res):
    c = choose_warp_settings(Situation(kind, n, image_hw, box_hw, device))
    assert c.preset == preset
    assert c.settings.get("resolution") == res
    rep = c.report()
    assert rep["situation"]["kind"] == kind and rep["preset"] == preset and rep["reasons"]


RESOLUTIONS = [  # image_hw, box_hw, margin, low, high -> side
    ((128, 128), (47, 69), 0.5, 64, 128, 64),    # 69 * 2 = 138 -> clipped 128 -> 64
    ((512, 512), (400, 450), 0.5, 64, 128, 128),  # 512 / 2 = 256 -> capped 128
    ((512, 512), (100, 100), 0.5, 64, 128, 112),  # 200 / 2 = 100 -> 112 (multiple of 16)
    ((512, 512), (10, 10), 0.5, 64, 128, 64),     # floor
    ((300, 200), (10, 10), None, 64, 256, 160),   # no crop: the whole image's long side
]


@pytest.mark.parametrize("image_hw,box_hw,margin,low,high,side", RESOLUTIONS)
def test_working_resolution(image_hw, box_hw, margin, low, high, side):
    assert working_resolution(image_hw, box_hw, margin, low, high) == side


MARGINS = [  # image_hw, box_hw, margin -> margin (crop side >= a quarter of the long side)
    ((512, 512), (41, 41), 0.5, (128 / 41 - 1) / 2),  # small tumour: widened
    ((216, 256), (60, 60), 0.5, 0.5),                 # 60 * 2 = 120 >= 64: kept
    ((128, 128), (47, 69), 0.5, 0.5),
]


@pytest.mark.parametrize("image_hw,box_hw,margin,expected", MARGINS)
def test_context_margin(image_hw, box_hw, margin, expected):
    assert context_margin(image_hw, box_hw, margin) == pytest.approx(expected)


def test_small_structure_gets_a_wider_crop_in_the_choice():
    c = choose_warp_settings(Situation("pair", 1, (512, 512), (41, 41), "cpu"))
    assert c.settings["roi_margin"] == pytest.approx(1.061, abs=1e-3)
    assert c.settings["resolution"] == 64 and any("widened" in r for r in c.reasons)


@pytest.mark.parametrize("kwargs,match", [
    (dict(kind="video", n_targets=1), "kind"),
    (dict(kind="pair", n_targets=0), "n_targets"),
])
def test_bad_situation_names_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Situation(image_hw=(8, 8), structure_hw=(4, 4), **kwargs)


def test_situation_of_a_2d_run():
    lab = np.zeros((40, 60), np.uint8)
    lab[10:20, 5:35] = 1
    assert Situation.of_2d_run(lab, 1, "cpu") == Situation("pair", 1, (40, 60), (10, 30), "cpu")
    assert Situation.of_2d_run(lab, 3, "cpu").kind == "cohort"


def test_volume_defaults_live_in_the_preset_file():
    """The volume engine's dataclass defaults mirror the ``volume`` preset (one source)."""
    from oneshotsam.volume.warpvol import VolumeWarpConfig
    assert VolumeWarpConfig.from_overrides({}) == VolumeWarpConfig()
    assert VolumeWarpConfig.from_overrides({"steps": 7}).steps == 7


def test_auto_settings_are_chosen_per_call_and_reported():
    pytest.importorskip("torch")
    from conftest import TINY_NET
    from oneshotsam.methods.medpersam.warp_method import MedPerSAMWarp
    from oneshotsam.types import Image2D

    rng = np.random.default_rng(0)
    img = rng.random((48, 48)).astype(np.float32)
    lab = np.zeros((48, 48), np.uint8)
    lab[12:30, 10:34] = 2
    m = MedPerSAMWarp.from_preset(None, device="cpu", net=TINY_NET, min_steps=1, max_steps=1,
                                  resolution=32)
    ref = Image2D(img, name="r")
    one = m.segment(ref, lab, [Image2D(img, name="t")]).report
    two = m.segment(ref, lab, [Image2D(img, name="t1"), Image2D(img, name="t2")]).report
    assert one["preset"] == two["preset"] == "cpu-field"
    assert one["chosen_settings"]["situation"]["kind"] == "pair"
    assert two["chosen_settings"]["situation"]["kind"] == "cohort"
    for rep in (one, two):
        chosen = rep["chosen_settings"]
        assert chosen["user_settings"]["resolution"] == 32 and rep["resolution"] == 32  # user wins
        assert chosen["reasons"] and rep["train_steps"] == 1
    named = MedPerSAMWarp.from_preset("cpu", device="cpu", net=TINY_NET, min_steps=1, max_steps=1,
                                      resolution=32).segment(ref, lab, [Image2D(img, name="t")])
    assert named.report["preset"] == "cpu" and "chosen_settings" not in named.report
