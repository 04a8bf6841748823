"""The browser app's progress bar, remaining time and review-table rules, without a browser.

Hand-checkable tables: progress reports as the Logic sends them (training steps
only in the message, under an unchanged slice count) with a fake clock, and
the review table's next / previous flagged row and annotation summary.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from OneShotSAMWeb.review import ReviewTable, describe_annotated
from OneShotSAMWeb.runprogress import RunProgress, training_step


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize("message, expected", [
    ("training warp network: step 12/48", (12, 48)),
    ("synth: training warp network: step 48 / 48", (48, 48)),
    ("warped target 3/10", None),
    ("starting: importing PyTorch", None),
    ("step 0/0", None),
])
def test_training_step(message, expected):
    assert training_step(message) == expected


# (seconds, done, total, message) -> (percent, eta)
RUN = [
    (0.0, 0, 0, "starting: importing PyTorch", 0, ""),
    (1.0, 0, 14, "training warp network: step 10/48", 12, ""),       # phase starts: no rate yet
    (2.0, 0, 14, "training warp network: step 20/48", 25, ""),       # 1 s of the phase: too short
    (3.0, 0, 14, "training warp network: step 30/48", 37, "about 2 s left in training"),  # 20 steps/2 s
    (4.0, 0, 14, "training warp network: step 40/48", 50, "about 1 s left in training"),
    (5.0, 1, 14, "slice 3", 62, ""),                                 # slices: a new phase
    (6.0, 4, 14, "slice 6", 71, ""),                                 # 3 slices in 1 s: too short
    (7.0, 7, 14, "slice 9", 80, "about 2 s left"),                   # 6 slices in 2 s, 7 left: 2.3 s
    (8.0, 14, 14, "slice 15", 100, ""),                              # done: nothing left to estimate
]


def test_progress_through_training_then_slices():
    clock = Clock()
    p = RunProgress(clock)
    for t, done, total, message, percent, eta in RUN:
        clock.t = t
        p.update(done, total, message)
        assert (p.percent, p.eta) == (percent, eta), (t, message)


def test_progress_without_training_is_the_slice_fraction():
    clock = Clock()
    p = RunProgress(clock)
    for t, done in ((0.0, 1), (1.0, 2), (3.0, 5)):
        clock.t = t
        p.update(done, 10, f"slice {done}")
    assert p.percent == 50 and p.eta == "about 4 s left"  # 4 slices in 3 s, 5 left: 3.75 s


@dataclass
class Row:
    slice_index: int
    flagged: bool
    output_index: int = 0
    confidence: float = 0.5
    target_name: str = "v"


ROWS = [Row(4, True), Row(9, True), Row(2, False), Row(7, False)]


@pytest.mark.parametrize("current, step, expected", [
    (None, 1, 0), (0, 1, 1), (1, 1, 0), (3, 1, 0),     # next: wraps to the first flagged
    (None, -1, 1), (1, -1, 0), (0, -1, 1), (2, -1, 1),  # previous: wraps to the last flagged
])
def test_step_flagged(current, step, expected):
    assert ReviewTable(current=current).step_flagged(ROWS, step) == expected


def test_no_flagged_row_to_step_to():
    assert ReviewTable().step_flagged([Row(1, False)], 1) is None


def test_row_states_corrected_wins_over_approved_and_flagged():
    table = ReviewTable(corrected={(0, 4)}, approved={(0, 4), (0, 2)})
    assert [r["state"] for r in table.rows(ROWS)] == ["corrected", "flagged", "approved", ""]
    table.toggle_approved(ROWS[2])
    assert table.approved == {(0, 4)}


@pytest.mark.parametrize("slices, text, warn", [
    ([], "nothing painted yet", False),
    ([8], "annotated: slice 8", False),
    ([3, 4, 5], "3 slices are annotated (3, 4, 5): each is used as a reference and kept as painted. "
                "Erase the ones you did not mean to paint.", True),
])
def test_describe_annotated(slices, text, warn):
    assert describe_annotated(slices) == (text, warn)
