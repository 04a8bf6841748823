"""The review queue's order: what correcting a slice is expected to fix once Update has run.

Small hand-built walks (one label plane per slice, areas in pixels), checked by hand
against :func:`oneshotsam.volume.confidence.correction_gains`.
"""

from __future__ import annotations

import numpy as np
import pytest

from oneshotsam.volume.chain import SliceOutcome
from oneshotsam.volume.confidence import (BEYOND_FLAGGED, INSIDE_WRONG_SHARE, beyond_probability,
                                          correction_gains, flag_reason, review_queue)


def _plane(area: int) -> np.ndarray:
    p = np.zeros((4, 8), np.uint8)
    p.flat[:area] = 1
    return p


def _seed(k: int, area: int, kind: str = "annotated") -> SliceOutcome:
    return SliceOutcome(k, _plane(area), 1.0, False, "seed", None, {"kind": kind})


def _slice(k: int, area: int, wrong: float, beyond: float | None = None,
           flagged: bool = True) -> SliceOutcome:
    ev = {"expected_wrong_px": wrong}
    if beyond is not None:
        ev["beyond"], ev["to_end"] = beyond, 4
    return SliceOutcome(k, _plane(area), 0.1, flagged, "predicted" if area else "stopped", None,
                        {"evidence": ev})


def _walk(*rows: SliceOutcome) -> dict[int, SliceOutcome]:
    return {o.index: o for o in rows}


def test_one_sided_walk_puts_the_innermost_slice_beyond_the_end_first() -> None:
    # seed 0 (10 px), walk 1..4 to the volume's edge; 3 and 4 lie beyond the end (p = 1)
    # and the walk drew a large blob on 4: its own error (8) is the largest, but erasing 3
    # empties 3 and 4 (3 + 8 = 11 px); 1 and 2 are right (nothing expected wrong)
    outs = _walk(_seed(0, 10), _slice(1, 10, 0.0, 0.0), _slice(2, 9, 0.0, 0.0),
                 _slice(3, 3, 3.0, 1.0), _slice(4, 8, 8.0, 1.0))
    gains = correction_gains(outs)
    assert gains == pytest.approx({0: 0.0, 1: 0.0, 2: 0.0, 3: 11.0, 4: 8.0})
    assert review_queue(outs) == [3, 4, 1, 2]


def test_once_beyond_the_end_every_slice_outward_is_beyond() -> None:
    # p(beyond) of slice 2 is 0.5 from its own evidence, slice 3's own 0.1 is raised to 0.5
    # (the structure does not come back): erase term 0.5 * drawn area from the slice outward;
    # draw term 0 because the slice twice as far out from the seed is at least as likely beyond
    outs = _walk(_seed(0, 10), _slice(1, 10, 0.0, 0.0), _slice(2, 6, 0.0, 0.5),
                 _slice(3, 4, 0.0, 0.1))
    gains = correction_gains(outs)
    assert gains[2] == pytest.approx(0.5 * (6 + 4))
    assert gains[3] == pytest.approx(0.5 * 4 + 0.5 * 0.5 * 0.0)


def test_between_two_annotations_the_middle_of_a_bad_gap_goes_first() -> None:
    # seeds 0 and 6, slices 1..5 each 4 px expected wrong, d = 1 2 3 2 1 slices to a seed;
    # correcting i brings slice l to min(d, |l - i|) and fixes that share of its error:
    # i = 3: 4 s (1/2 + 1 + 1/2) = 8 s; i = 1: 4 s (1 + 1/2 + 1/3) = 22/3 s; i = 2: 4 s (1 + 2/3)
    # = 20/3 s (s = INSIDE_WRONG_SHARE); the own error of each slice alone would tie them
    outs = _walk(_seed(0, 10), *[_slice(k, 10, 4.0) for k in range(1, 6)], _seed(6, 10))
    gains = correction_gains(outs)
    s = INSIDE_WRONG_SHARE
    assert [gains[k] for k in range(1, 6)] == pytest.approx([22 / 3 * s, 20 / 3 * s, 8 * s,
                                                            20 / 3 * s, 22 / 3 * s])
    assert review_queue(outs) == [3, 1, 5, 2, 4]


def test_beyond_an_erased_slice_only_the_slices_own_error_counts() -> None:
    # seed 0 drawn, 3 erased by the user: 1..2 walk towards the erased end (one-sided); 4..5
    # lie beyond the erased slice (no drawn seed bounds them): their own expected error only
    outs = _walk(_seed(0, 10), _slice(1, 8, 0.0, 0.0), _slice(2, 5, 5.0, 1.0),
                 _seed(3, 0, "erased"), _slice(4, 0, 0.5, flagged=False),
                 _slice(5, 0, 0.25, flagged=False))
    gains = correction_gains(outs)
    assert gains[2] == pytest.approx(5.0) and gains[4] == 0.5 and gains[5] == 0.25
    # the queue follows the gains, not the flags: 1 is flagged but correcting it fixes nothing
    assert review_queue(outs) == [2, 4, 5, 1]


@pytest.mark.parametrize("distance_mm, low, high", [
    (5.0, 0.0, 0.01), (18.5, 0.49, 0.51), (30.0, 0.99, 1.0),  # p = 0.5 at 18.5 mm
])
def test_beyond_probability_grows_with_the_distance_to_the_anchor(distance_mm, low, high) -> None:
    assert low <= beyond_probability({"distance_mm": distance_mm, "area_ratio": 0.5}) <= high


@pytest.mark.parametrize("ev, risk, why", [
    ({"beyond": BEYOND_FLAGGED, "to_end": 4}, 0.1, "beyond the structure's end"),
    ({"beyond": BEYOND_FLAGGED - 0.01, "to_end": 4}, 0.1, ""),
    ({"beyond": 0.0, "to_end": 0}, 0.1, "last slices drawn"),
    ({}, 0.95, "likely wrong"),
])
def test_flag_reason(ev, risk, why) -> None:
    got = flag_reason(ev, risk)
    assert (why in got) if why else got == ""
