"""Appearance refinement (``oneshotsam.volume.appearance``): hand-checkable label
planes, and a planning contour's follow-up whose cross-visit predictions are refined
with the reference slice's statistics (``MethodEngine(refine_sigma=...)``)."""

from __future__ import annotations

import numpy as np
import pytest

from oneshotsam.types import Volume
from oneshotsam.volume.appearance import label_stats, refine_labels
from oneshotsam.volume.pipeline import PropagationConfig, propagate

from conftest import TINY_NET  # noqa: E402
from volume_synth import FitCopyMethod, affine


def _plane(rows: list[str]) -> np.ndarray:
    return np.array([[int(c) for c in r] for r in rows], dtype=np.uint8)


# labels, intensity plane (tenths), stats, sigma -> expected labels
REFINE_CASES = [
    ("an isolated dark pixel inside is kept (3x3 median)",
     ["11111", "11111", "11111"], ["99999", "99199", "99999"],
     {1: (0.9, 0.05)}, 2.0,
     ["11111", "11111", "11111"]),
    ("a dark bottom half is removed",
     ["011110"] * 6, ["999999"] * 3 + ["111111"] * 3,
     {1: (0.9, 0.05)}, 2.0,
     ["011110"] * 3 + ["000000"] * 3),
    ("a dark half is removed",
     ["1111", "1111", "1111"], ["9911", "9911", "9911"],
     {1: (0.9, 0.05)}, 2.0,
     ["1100", "1100", "1100"]),
    ("sigma 0 keeps everything",
     ["1111", "1111", "1111"], ["9911", "9911", "9911"],
     {1: (0.9, 0.05)}, 0.0,
     ["1111", "1111", "1111"]),
    ("a label without statistics is kept",
     ["2211", "2211", "2211"], ["1199", "1199", "1199"],
     {1: (0.9, 0.05)}, 2.0,
     ["2211", "2211", "2211"]),
    ("a wide band keeps the dark half",
     ["1111", "1111", "1111"], ["9911", "9911", "9911"],
     {1: (0.9, 0.5)}, 2.0,
     ["1111", "1111", "1111"]),
]


@pytest.mark.parametrize("name,labels,plane,stats,sigma,expected", REFINE_CASES,
                         ids=[c[0] for c in REFINE_CASES])
def test_refine_labels_table(name, labels, plane, stats, sigma, expected):
    lab = _plane(labels)
    img = _plane(plane).astype(np.float32) / 10.0
    out = refine_labels(lab, img, stats, sigma)
    assert out.dtype == lab.dtype and out is not lab
    np.testing.assert_array_equal(out, _plane(expected))


def test_ring_does_not_swallow_the_cavity_of_another_label():
    """Filling the holes of a refined ring takes background pixels only: a cavity
    labelled 3 inside a ring labelled 2 that no longer looks like label 3 (dark) is
    emptied, not filled with the ring's label."""
    lab = np.zeros((11, 11), np.uint8)
    lab[1:10, 1:10] = 2
    lab[3:8, 3:8] = 3
    img = np.full((11, 11), 0.5, np.float32)
    img[3:8, 3:8] = 0.1
    out = refine_labels(lab, img, {2: (0.5, 0.05), 3: (0.9, 0.05)}, 2.0)
    expected = lab.copy()
    expected[3:8, 3:8] = 0
    np.testing.assert_array_equal(out, expected)


STATS_CASES = [  # planes and labels -> stats
    ("one plane", [([0.2, 0.4, 0.9], [1, 1, 0])], [1], {1: (0.3, 0.1)}),
    ("two planes pooled", [([0.2, 0.9], [1, 0]), ([0.4, 0.9], [1, 0])], [1], {1: (0.3, 0.1)}),
    ("sd floored", [([0.5, 0.5], [1, 1])], [1], {1: (0.5, 1e-3)}),
    ("one pixel: no statistics", [([0.5, 0.9], [1, 0])], [1], {}),
    ("an absent label: none", [([0.5, 0.5], [1, 1])], [1, 2], {1: (0.5, 1e-3)}),
]


@pytest.mark.parametrize("name,pairs,values,expected", STATS_CASES, ids=[c[0] for c in STATS_CASES])
def test_label_stats_table(name, pairs, values, expected):
    got = label_stats([(np.array([p], np.float32), np.array([lab])) for p, lab in pairs], values)
    assert set(got) == set(expected)
    for v, (mu, sd) in expected.items():
        assert got[v][0] == pytest.approx(mu, abs=1e-6) and got[v][1] == pytest.approx(sd, abs=1e-6)


class IdentityWarp(FitCopyMethod):
    """The identity registration under the weight-free method's name (so that the
    planning contour's follow-up takes the per-slice ``direct`` engine): it copies the
    reference slice's labels unchanged."""

    name = "medpersam-warp"


@pytest.mark.parametrize("refine", [True, False])
def test_followup_of_a_contour_drops_what_no_longer_looks_like_it(refine):
    """A planning contour (a bright square on 6 slices) and a follow-up where the right
    half of the square has turned dark on every slice: the registration (the identity)
    keeps the whole square; the refinement with the reference slice's statistics
    removes the dark half. ``refine_sigma=0`` (a volume-engine setting, ``--set``) turns
    it off. (The contour's end slices may be trimmed by the contour-end rule: the inner
    ones are checked.)"""
    aff = affine((1.0, 1.0, 2.0), (0, 0, 0))
    img = np.full((8, 32, 32), 0.2, np.float32)
    img[1:7, 8:24, 8:24] = 0.9
    lab = np.zeros((8, 32, 32), np.uint8)
    lab[1:7, 8:24, 8:24] = 1
    follow = img.copy()
    follow[1:7, 8:24, 16:24] = 0.2
    flow_off = (("cross_flow_weight", 0.0),)  # the refinement alone (test_volume_cross_flow)
    cfg = PropagationConfig(method="medpersam-warp", window="0,1", device="cpu", align=False,
                            method_overrides=flow_off if refine else flow_off + (("refine_sigma", 0.0),))
    res = propagate(Volume(img, aff, "ref"), Volume(lab, aff, "lab"), [Volume(follow, aff, "fu")],
                    cfg, method=IdentityWarp())
    eng = res.report["engine"]
    assert eng["engine"] == "method-direct"
    assert eng.get("refine_sigma") == (2.5 if refine else None)
    out = np.asarray(res.label_volumes[0].voxels)
    per = {p["slice"]: p for p in res.report["targets"][0]["per_slice"]}
    kept = np.zeros((32, 32), np.uint8)
    if refine:  # the bright left half, less its four corners (3x3 median: 5 of 9 dark)
        kept[8:24, 8:16] = 1
        kept[[8, 8, 23, 23], [8, 15, 8, 15]] = 0
    else:
        kept[8:24, 8:24] = 1
    for k in range(2, 6):
        np.testing.assert_array_equal(out[k], kept)
        if refine:
            assert per[k]["appearance_kept"] == {"1": round(124 / 256, 4)}
        else:
            assert "appearance_kept" not in per[k]


def test_dense_engine_splits_the_settings_between_the_2d_method_and_the_refinement():
    """``--set`` on a planning contour's follow-up: a volume-engine setting
    (``refine_sigma``, ``open_fraction``) reaches the engine, a 2D-method setting
    (``max_steps``) the method; a name neither knows is refused with the valid names."""
    pytest.importorskip("torch")
    from oneshotsam.errors import OneShotError
    from oneshotsam.volume.engines import MethodEngine, build_engine

    cfg = PropagationConfig(method="medpersam-warp", device="cpu",
                            method_overrides=(("refine_sigma", 1.5), ("open_fraction", 0.0),
                                              ("max_steps", 3)))
    eng = build_engine(cfg, None, dense=True)
    assert isinstance(eng, MethodEngine) and eng.refine_sigma == 1.5
    assert eng.method.config.overrides == {"max_steps": 3}
    bad = PropagationConfig(method="medpersam-warp", device="cpu", method_overrides=(("no_such", 1),))
    with pytest.raises(OneShotError, match="no_such"):
        build_engine(bad, None, dense=True)
