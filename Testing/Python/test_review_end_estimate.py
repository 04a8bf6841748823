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
                                          end_estimate_mm, end_stop)
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


def _stop_mm(p: float) -> float:
    """Distance past the estimated end where the END model reaches ``p``."""
    return (math.log(p / (1.0 - p)) - END["intercept"]) / END["per_mm"]


# anchors 100 px (largest) and 36 px 6 mm apart: the end lies 7.5 mm from the largest
# (see the scorer test); with END_STOP p the walk stops ``_stop_mm(p)`` past it
@pytest.mark.parametrize("anchors, gap, p, expect", [
    # outward upwards from slice 6: the first slice k with k - 7.5 >= stop
    ({0: 100, 6: 36}, Gap(6, None, tuple(range(7, 21))), 0.9, math.ceil(7.5 + _stop_mm(0.9)) - 7),
    # outward downwards from slice 14 (largest at 20): walked 13, 12, ...
    ({20: 100, 14: 36}, Gap(None, 14, tuple(range(0, 14))), 0.9,
     13 - math.floor(20 - 7.5 - _stop_mm(0.9))),
    # a stricter stop walks farther
    ({0: 100, 6: 36}, Gap(6, None, tuple(range(7, 21))), 0.99, math.ceil(7.5 + _stop_mm(0.99)) - 7),
    # the gap ends before the stop: walk it all
    ({0: 100, 6: 36}, Gap(6, None, tuple(range(7, 12))), 0.9, None),
    # the stop is off
    ({0: 100, 6: 36}, Gap(6, None, tuple(range(7, 21))), 0.0, None),
    # from the largest anchor there is no estimate
    ({0: 100, 6: 36}, Gap(None, 0, ()), 0.9, None),
    # towards the largest anchor or between two anchors: not a one-sided outward walk
    ({0: 100, 6: 36}, Gap(0, 6, tuple(range(1, 6))), 0.9, None),
    # an anchor near the middle (share > END_FIT_MAX_AREA): no estimate, no stop
    ({0: 100, 6: 80}, Gap(6, None, tuple(range(7, 40))), 0.9, None),
])
def test_end_stop_walks_up_to_the_estimated_end(anchors, gap, p, expect) -> None:
    seeds = {k: _seed(k, a) for k, a in anchors.items()}
    assert end_stop(gap, seeds, np.arange(40, dtype=float), p) == expect


def test_end_stop_reads_physical_positions() -> None:
    # the same anchors on 2 mm slices: the end is 15 mm from the largest, the stop twice as far
    seeds = {0: _seed(0, 100), 6: _seed(6, 36)}
    pos = 2.0 * np.arange(40, dtype=float)
    n = end_stop(Gap(6, None, tuple(range(7, 40))), seeds, pos, 0.9)
    assert n == math.ceil((15.0 + _stop_mm(0.9)) / 2.0) - 7


@pytest.mark.parametrize("stop", [0.9, 0.0])
def test_update_walk_stops_past_the_end_its_annotations_estimate(stop) -> None:
    # a bright cylinder on every slice (1.5 mm apart): the bright-pixel method would draw it
    # to the volume's end. Annotated: slice 5 whole (the largest), then a correction on
    # slice 15 a third of its area. The ellipse through both ends 15 / sqrt(1 - 1/3) mm past
    # slice 5; the walk from 15 stops where the END model reaches END_STOP
    from oneshotsam.types import Volume
    from oneshotsam.volume.session import PropagationSession
    from oneshotsam.volume.types import PropagationConfig
    from volume_synth import BrightMethod, affine

    n, aff = 30, affine((1.0, 1.0, 1.5), (0, 0, 0))
    yy, xx = np.mgrid[:24, :24]
    disc = ((yy - 12) ** 2 + (xx - 12) ** 2 <= 36).astype(np.uint8)
    vol = Volume(np.repeat(0.2 + 0.7 * disc[None].astype(np.float32), n, axis=0), aff, "cyl")
    lab = np.zeros((n, 24, 24), np.uint8)
    lab[5] = disc
    cfg = PropagationConfig(method="bright-test", propagation="chain", window="0,1", stop_past_end=stop)
    s = PropagationSession(vol, cfg, method=BrightMethod())
    lab = np.asarray(s.run(Volume(lab, aff, "lab")).label_volumes[0].voxels).copy()
    assert lab.any(axis=(1, 2)).all()  # step 0: drawn to both ends of the volume
    small = disc.copy()
    small[:, :] = 0
    small.flat[np.flatnonzero(disc)[: int(disc.sum()) // 3]] = 1
    lab[15] = small
    res = s.update(Volume(lab, aff, "lab"), [15])
    out = np.asarray(res.label_volumes[0].voxels)
    per = {p["slice"]: p for p in res.report["targets"][0]["per_slice"]}
    c_mm = 15.0 / math.sqrt(1.0 - small.sum() / disc.sum())
    if stop == 0.0:
        assert out[16:].any(axis=(1, 2)).all()
        return
    first = 5 + math.ceil((c_mm + _stop_mm(stop)) / 1.5)
    assert out[16:first].any(axis=(1, 2)).all() and not out[first:].any()
    assert per[first]["status"] == "stopped" and "estimated" in per[first]["reason"]
    assert np.array_equal(out[:6], lab[:6])  # the other side of slice 5 is left as it was
