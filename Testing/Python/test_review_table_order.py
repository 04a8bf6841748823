"""The review table's order (``OneShotSAMLib.outcome.review_order``): the rows follow the
engine's review queue of the last report, within the annotated volume by slice and on a
follow-up target by the engine slice each target slice was predicted as. Hand-made rows
and reports (plain dataclasses: no Slicer needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

MODULE_DIR = Path(__file__).resolve().parents[2] / "OneShotSAM"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from OneShotSAMLib.outcome import SliceRow, review_order  # noqa: E402


def _row(out: int, k: int, conf: float = 0.5, flagged: bool = False,
         proc: int | None = None) -> SliceRow:
    return SliceRow("t", "id", out, 0, k, conf, flagged, processing_slice=proc)


def _order(rows: list[SliceRow], reports: list[dict], self_mode: bool) -> list[tuple[int, int]]:
    return [(r.output_index, r.slice_index) for r in sorted(rows, key=review_order(reports, self_mode))]


SELF = [_row(0, 3, 0.9), _row(0, 5, 0.2, True), _row(0, 7, 0.4), _row(0, 9, 0.1)]
# two follow-up targets; target slice 2k and 2k + 1 were both predicted as engine slice k
FOLLOW = [_row(0, 4, 0.9, proc=2), _row(0, 5, 0.9, proc=2), _row(0, 6, 0.1, True, proc=3),
          _row(1, 2, 0.3, proc=1), _row(1, 8, 0.6, proc=4), _row(1, 9, 0.2)]
CASES = [
    ("self: the queue's order, unlisted rows after it (flagged, then lowest confidence)",
     SELF, [{"review_queue": [7, 3]}], True, [(0, 7), (0, 3), (0, 5), (0, 9)]),
    ("self: queue entries as dicts", SELF, [{"review_queue": [{"slice": 9}, {"slice": 3}]}], True,
     [(0, 9), (0, 3), (0, 5), (0, 7)]),
    ("self: no report yet (streaming): flagged first, then lowest confidence",
     SELF, [], True, [(0, 5), (0, 9), (0, 7), (0, 3)]),
    ("self: the LAST report's queue", SELF, [{"review_queue": [3]}, {"review_queue": [9, 7]}], True,
     [(0, 9), (0, 7), (0, 5), (0, 3)]),
    ("follow-ups: each target by its own queue, through the engine slice (equal ranks:"
     " flagged, then lowest confidence)",
     FOLLOW, [{"targets": [{"review_queue": [2, 3]}, {"review_queue": [4, 1]}]}], False,
     [(1, 8), (0, 4), (0, 5), (0, 6), (1, 2), (1, 9)]),
    ("follow-ups: a row without an engine slice comes after the queued ones",
     FOLLOW, [{"targets": [{"review_queue": [3]}, {"review_queue": []}]}], False,
     [(0, 6), (1, 9), (1, 2), (1, 8), (0, 4), (0, 5)]),
    ("follow-ups: a report without targets orders by flag and confidence",
     FOLLOW, [{"review_queue": [2]}], False,
     [(0, 6), (1, 9), (1, 2), (1, 8), (0, 4), (0, 5)]),
]


@pytest.mark.parametrize("name,rows,reports,self_mode,expected", CASES, ids=[c[0] for c in CASES])
def test_review_order_table(name, rows, reports, self_mode, expected):
    assert _order(rows, reports, self_mode) == expected
