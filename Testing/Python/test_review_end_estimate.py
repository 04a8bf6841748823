"""The structure's end estimated from two anchors' areas (an ellipsoid profile), and what
it does to the review: slices of a one-sided walk past that end are likely beyond it.

Hand-checkable tables against :mod:`oneshotsam.volume.confidence`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from oneshotsam.volume.chain import SliceOutcome
from oneshotsam.volume.confidence import (END, END_FIT_MAX_AREA, GapScorer, beyond_probability,
                                          end_estimate_mm)
from oneshotsam.volume.gaps import Gap
from oneshotsam.volume.stoprule import StopRule


@pytest.mark.parametrize("anchor_area, largest_area, distance_mm, expect", [
    (50.0, 100.0, 10.0, 10.0 / math.sqrt(0.5)),   # half the area: c = d / sqrt(1/2)
    (64.0, 100.0, 6.0, 10.0),                      # 6 / sqrt(0.36)
    (36.0, 100.0, 8.0, 10.0),                      # 8 / sqrt(0.64): the same ellipse
    (75.0, 100.0, 5.0, None),                      # too near the middle (share > 0.7)
    (0.0, 100.0, 5.0, None),                       # an empty anchor tells nothing
    (50.0, 100.0, 0.0, None),                      # the largest anchor itself
])
def test_end_estimate_is_an_ellipse_through_both_anchors(anchor_area, largest_area, distance_mm,
                                                         expect) -> None:
    got = end_estimate_mm(anchor_area, largest_area, distance_mm)
    assert (got is None) == (expect is None)
    if expect is not None:
        assert got == pytest.approx(expect)


def test_the_share_limit_is_inclusive() -> None:
    assert end_estimate_mm(END_FIT_MAX_AREA * 100.0, 100.0, 3.0) is not None


@pytest.mark.parametrize("ev, expect", [
    # near the anchor, no end estimate: the distance model alone (small)
    ({"distance_mm": 5.0}, None),
    # p = 0.5 where the END model's logit is 0
    ({"distance_mm": 5.0, "past_end_mm": -END["intercept"] / END["per_mm"]}, 0.5),
    # far past the end: nearly certain
    ({"distance_mm": 5.0, "past_end_mm": 20.0}, "high"),
    # well before the estimated end: the larger of the two models (distance: 30 mm)
    ({"distance_mm": 30.0, "past_end_mm": -20.0}, "high"),
])
def test_beyond_probability_takes_the_larger_of_the_two_models(ev, expect) -> None:
    p = beyond_probability(ev)
    if expect is None:
        assert p < 0.01
    elif expect == "high":
        assert p > 0.99
    else:
        assert p == pytest.approx(expect, abs=0.01)


def _seed(k: int, area: int) -> SliceOutcome:
    p = np.zeros((10, 10), np.uint8)
    p.flat[:area] = 1
    return SliceOutcome(k, p, 1.0, False, "seed", None, {"kind": "annotated"})


def test_scorer_estimates_the_end_of_a_walk_away_from_the_largest_anchor() -> None:
    # anchors: slice 0 (100 px, the largest), slice 6 (36 px); 1 mm slices. The walk
    # 7..12 leaves slice 6 outward: the end lies c = 6 / sqrt(0.64) = 7.5 mm from slice 0
    anchors = {0: _seed(0, 100), 6: _seed(6, 36)}
    pos = np.arange(13, dtype=float)
    scored = []
    scorer = GapScorer(Gap(6, None, tuple(range(7, 13))), anchors, pos, StopRule(), scored.append)
    for k in range(7, 13):
        scorer(SliceOutcome(k, _seed(k, 30).labels, 0.9, False, "predicted", 6, {}))
    scorer.flush()
    past = {o.index: o.info["evidence"]["past_end_mm"] for o in scored}
    assert past == pytest.approx({k: k - 7.5 for k in range(7, 13)})
    beyond = [o.info["evidence"]["beyond"] for o in scored]
    logistic = [1.0 / (1.0 + math.exp(-(END["intercept"] + END["per_mm"] * (k - 7.5))))
                for k in range(7, 13)]
    assert beyond == pytest.approx(logistic, abs=1e-4)  # the distance model is smaller here
    assert all(o.flagged for o in scored if o.info["evidence"]["beyond"] >= 0.5)


@pytest.mark.parametrize("gap, why", [
    (Gap(None, 3, (0, 1, 2)), "the walk starts at the largest anchor"),
    (Gap(3, 9, tuple(range(4, 9))), "between two anchors: not one-sided"),
])
def test_no_end_estimate_from_the_largest_anchor_or_between_anchors(gap, why) -> None:
    anchors = {3: _seed(3, 100), 9: _seed(9, 36)}
    scored = []
    scorer = GapScorer(gap, anchors, np.arange(20, dtype=float), StopRule(), scored.append)
    for k in gap.indices:
        scorer(SliceOutcome(k, _seed(k, 30).labels, 0.9, False, "predicted", 0, {}))
    scorer.flush()
    assert scored and all("past_end_mm" not in o.info["evidence"] for o in scored), why
