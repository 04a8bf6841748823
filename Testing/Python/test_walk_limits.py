"""``benchmarks/walk_limits.py`` (other step rules for the walk) and ``benchmarks/gap_fusion.py
--with-fill``: small synthetic volumes whose answers can be checked by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", _BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


walk_limits = _load("walk_limits")
gap_fusion = _load("gap_fusion")


def _disc_case(n: int = 9, shift_px: int = 0) -> dict:
    """A bright disc (radius 8) on a dark 48 x 48 plane on every slice, moved ``shift_px``
    columns per slice; the truth is the disc; the largest slice is the middle one."""
    yy, xx = np.mgrid[:48, :48]
    planes, truth = [], []
    for k in range(n):
        m = (yy - 24) ** 2 + (xx - 20 - shift_px * (k - n // 2)) ** 2 <= 64
        truth.append(m.astype(np.uint8))
        planes.append(np.where(m, 0.8, 0.2).astype(np.float32))
    return {"planes": np.stack(planes), "truth": np.stack(truth), "mu": 0.8, "sd": 0.05, "sigma": 2.5,
            "window": 7, "open_px": 1, "big": n // 2, "first": 0, "last": n - 1}


@pytest.mark.parametrize("rule", walk_limits.RULES)
def test_every_rule_keeps_a_still_disc(rule: str) -> None:
    rows = walk_limits.walk(_disc_case(), rule)
    assert [r["direction"] for r in rows] == [1, -1]
    for r in rows:
        assert r["dice"] >= 0.95, (rule, r)


def test_flow_rule_is_the_products_step() -> None:
    """The baseline walk is the engine's own chain of pull, refinement and opening."""
    from oneshotsam.volume.appearance import refine_labels
    from oneshotsam.volume.slice_flow import pull_labels, slice_flow
    from oneshotsam.volume.warpvol import _open_labels

    d = _disc_case(shift_px=2)
    prev, tp = d["truth"][4], 0
    pred_vox = true_vox = 0
    for k in range(5, 9):
        m = pull_labels(prev, slice_flow(d["planes"][k - 1], d["planes"][k], 7))
        m = _open_labels(refine_labels(m, d["planes"][k], {1: (0.8, 0.05)}, 2.5), {1: 1})
        tp += int(((m > 0) & (d["truth"][k] > 0)).sum())
        pred_vox, true_vox = pred_vox + int((m > 0).sum()), true_vox + int(d["truth"][k].sum())
        prev = m
    up = walk_limits.walk(d, "flow")[0]
    assert up["dice"] == pytest.approx(2 * tp / (pred_vox + true_vox))


def test_grow_never_exceeds_the_previous_area() -> None:
    m = np.zeros((20, 20), np.uint8)
    m[8:12, 8:12] = 1
    plane = np.full((20, 20), 0.8, np.float32)  # every pixel looks like the structure
    assert walk_limits._grow(m, plane, 0.8, 0.05, cap=16).sum() == 16  # a ring would pass 16
    assert walk_limits._grow(m, plane, 0.8, 0.05, cap=100).sum() == 16 + 16  # one ring of 16


def _gap_slice(fill_shift: int) -> tuple[dict, np.ndarray]:
    sq = np.zeros((20, 20), np.uint8)
    sq[5:15, 5:15] = 1
    d = {"k": 2, "lo": 0, "hi": 4, "pos": np.arange(5, dtype=float), "up": sq, "down": sq, "alo": sq, "ahi": sq}
    return d, np.roll(sq, fill_shift, axis=1)


@pytest.mark.parametrize("fill_shift, weight, shift_cols", [
    (0, 0.5, 0.0),    # Fill between slices agrees: the square stays
    (4, 0.0, 0.0),    # weight 0: as without the fill
    (4, 0.5, 2.0),    # half way towards the fill shifted by 4 columns
])
def test_gap_fusion_with_fill(fill_shift: int, weight: float, shift_cols: float) -> None:
    d, fill = _gap_slice(fill_shift)
    out = gap_fusion.fuse(d, 2.0, 3.0, 0.25, fill, weight)
    if shift_cols == 0.0:
        assert np.array_equal(out, d["up"])
    else:
        cols = np.nonzero(out)[1]
        assert cols.mean() == pytest.approx(9.5 + shift_cols, abs=0.25)
        assert out.sum() == pytest.approx(100, rel=0.15)


def test_gap_fusion_refuses_fill_weights_outside_0_1(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(_BENCH))  # as ``python benchmarks/gap_fusion.py`` runs
    with pytest.raises(SystemExit, match="between 0 and 1"):
        gap_fusion.main(["--data", "/nonexistent", "--with-fill", "1.5"])


@pytest.mark.parametrize("area_px, expect", [(100, 100), (0, 0), (400, 400)])
def test_to_area_reaches_the_area(area_px: int, expect: int) -> None:
    m = np.zeros((20, 20), np.uint8)
    m[5:15, 5:15] = 1
    assert int(walk_limits._to_area(m, area_px).sum()) == expect


def test_to_area_keeps_the_shape_centred() -> None:
    m = np.zeros((21, 21), np.uint8)
    m[6:15, 6:15] = 1  # 9 x 9 around (10, 10)
    grown = walk_limits._to_area(m, 121)
    rows, cols = np.nonzero(grown)
    assert rows.mean() == pytest.approx(10) and cols.mean() == pytest.approx(10)
    assert grown[m > 0].all()


def test_cached_inputs_records_once_and_reads_back(tmp_path) -> None:
    calls = []

    def record() -> dict:
        calls.append(1)
        return {"big": np.int64(3), "planes": np.zeros((2, 4, 4), np.float32)}

    first = walk_limits.cached_inputs(tmp_path / "walks", "case1", record)
    again = walk_limits.cached_inputs(tmp_path / "walks", "case1", record)
    assert len(calls) == 1 and int(again["big"]) == 3 and again["planes"].shape == (2, 4, 4)
    assert int(first["big"]) == 3
    assert sorted(x.name for x in (tmp_path / "walks").iterdir()) == ["case1.npz"]  # no partial left
    walk_limits.cached_inputs(None, "case1", record)  # no cache: records every time
    assert len(calls) == 2


def test_gap_fusion_fill_adds_no_label_the_walks_lack() -> None:
    d, fill = _gap_slice(0)
    fill = fill.copy()
    fill[0:3, 0:3] = 2  # a label neither walk holds
    out = gap_fusion.fuse(d, 2.0, 3.0, 0.25, fill, 0.5)
    assert set(np.unique(out)) == {0, 1}
