"""``benchmarks/queue_replay.py --where``: where the wrong voxels of a prediction lie
(a table of small hand-checkable volumes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "queue_replay_under_test", Path(__file__).resolve().parents[2] / "benchmarks" / "queue_replay.py")
queue_replay = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(queue_replay)


def _truth() -> np.ndarray:
    t = np.zeros((7, 4, 4), np.uint8)
    t[1:6, 1:3, 1:3] = 1  # 4 voxels on slices 1..5: 20 in all
    return t


@pytest.mark.parametrize("edit, drawn, expect", [
    # a perfect prediction: nothing wrong anywhere
    (lambda p: p, [1, 5], {"beyond": 0, "missing": 0, "gaps": 0, "outer": 0}),
    # slice 6 drawn past the end (4 voxels): |pred| + |truth| = 24 + 20
    (lambda p: p.__setitem__(6, p[5]), [1, 5], {"beyond": 4 / 44}),
    # slice 3 left empty between the drawn slices 1 and 5: 16 + 20
    (lambda p: p.__setitem__(3, 0), [1, 5], {"missing": 4 / 36}),
    # one extra voxel on slice 3, between drawn slices 1 and 5: a gap's in-plane error
    (lambda p: p.__setitem__((3, 0, 0), 1), [1, 5], {"gaps": 1 / 41}),
    # the same voxel with slices 1 and 2 drawn: slice 3 lies on the outer walk
    (lambda p: p.__setitem__((3, 0, 0), 1), [1, 2], {"outer": 1 / 41}),
    # an erased (empty) drawn slice does not bound the walks
    (lambda p: p.__setitem__((3, 0, 0), 1), [0, 2, 4], {"gaps": 1 / 41}),
])
def test_wrong_voxels_by_place_table(edit, drawn, expect) -> None:
    truth = _truth()
    pred = truth.copy()
    edit(pred)
    got = queue_replay.wrong_voxels_by_place(pred, truth, 0, drawn)
    full = {"beyond": 0, "missing": 0, "gaps": 0, "outer": 0, **expect}
    assert got == pytest.approx({k: round(v, 4) for k, v in full.items()})


def test_wrong_voxels_by_place_reads_the_slice_axis() -> None:
    truth = np.moveaxis(_truth(), 0, 2)
    pred = truth.copy()
    pred[:, :, 6] = pred[:, :, 5]
    assert queue_replay.wrong_voxels_by_place(pred, truth, 2, [1, 5])["beyond"] == pytest.approx(
        round(4 / 44, 4))
