"""Volume propagation: outward chaining, stop rule, few-shot references,
cancellation, events and bad inputs (synthetic volumes, a stand-in method)."""

from __future__ import annotations

import numpy as np
import pytest

from oneshotsam.errors import OneShotError
from oneshotsam.types import Volume
from oneshotsam.volume.gaps import fuse_labels, fuse_many, plan_gaps
from oneshotsam.volume.pipeline import PropagationConfig, SliceEvent, propagate
from oneshotsam.volume.stoprule import StopRule, decide_label
from volume_synth import BrightMethod, affine, ellipsoid, sample

CFG = PropagationConfig(method="bright-test", propagation="chain", window="0,1")


def _two_blobs() -> tuple[Volume, np.ndarray]:
    """20 axial slices (2 mm): a ball over slices ~4..12 and, after a gap of empty
    slices, a second bright ball over slices ~16..19 at the same (x, y)."""
    a = affine((1.0, 1.0, 2.0), (0, 0, 0))
    w1 = ellipsoid((12, 12, 16), (6, 6, 8.5))
    w2 = ellipsoid((12, 12, 36), (5, 5, 3.5))
    vol = sample(lambda p: np.maximum(w1(p), w2(p)), (20, 24, 24), a, "two")
    truth = (sample(w1, (20, 24, 24), a).voxels > 0.5).astype(np.uint8)
    return vol, truth


def _annotate(vol: Volume, truth: np.ndarray, slices) -> Volume:
    lab = np.zeros_like(truth)
    for k in slices:
        lab[k] = truth[k]
    return Volume(lab, vol.ijk_to_lps, "lab", {"segments": [{"value": 1, "name": "ball",
                                                            "color": [1, 0, 0]}]})


def test_within_volume_fills_structure_and_stops_at_gap() -> None:
    vol, truth = _two_blobs()
    res = propagate(vol, _annotate(vol, truth, [8]), config=CFG, method=BrightMethod())
    out = np.asarray(res.label_volumes[0].voxels)
    assert out.shape == truth.shape and not res.cancelled
    np.testing.assert_array_equal(out, truth)  # the second ball (beyond the gap) stays empty
    rep = res.report["targets"][0]
    extent = np.nonzero(truth.any(axis=(1, 2)))[0]
    assert rep["slices_seed"] == [8]
    assert rep["slices_predicted"] == [k for k in range(extent.min(), extent.max() + 1) if k != 8]
    assert extent.max() + 1 in rep["slices_stopped"] and extent.min() - 1 in rep["slices_stopped"]
    assert res.label_volumes[0].meta["segments"][0]["name"] == "ball"
    assert res.report["cancelled"] is False and res.report["window"]["low"] == 0.0


def test_chain_never_calls_method_beyond_a_stop() -> None:
    vol, truth = _two_blobs()
    m = BrightMethod()
    propagate(vol, _annotate(vol, truth, [8]), config=CFG, method=m)
    called = {int(name.split("[")[1].rstrip("]")) for _, tg in m.calls for name in tg}
    extent = np.nonzero(truth.any(axis=(1, 2)))[0]
    assert max(called) == extent.max() + 1 and min(called) == extent.min() - 1


@pytest.mark.parametrize("anchors, n, first, last, expect", [
    # one anchor: two outer gaps
    ([4], 8, 0, None, [(None, 4, (0, 1, 2, 3)), (4, None, (5, 6, 7))]),
    # two anchors: the slices between them form one inner gap; adjacent anchors none
    ([2, 6, 7], 9, 0, None, [(None, 2, (0, 1)), (2, 6, (3, 4, 5)), (7, None, (8,))]),
    # anchors at both ends of the volume: no outer gap
    ([0, 3], 4, 0, None, [(0, 3, (1, 2))]),
    # a follow-up's field of view (slices 1..5) bounds the outer gaps
    ([3], 9, 1, 5, [(None, 3, (1, 2)), (3, None, (4, 5))]),
])
def test_plan_gaps(anchors, n, first, last, expect) -> None:
    assert [(g.lo, g.hi, g.indices) for g in plan_gaps(n, anchors, first, last)] == expect


@pytest.mark.parametrize("w_a, expect_rows", [
    (1.0, (2, 7)),   # all weight on a: a's square (rows 2..6)
    (0.0, (4, 9)),   # all weight on b: b's square (rows 4..8)
    (0.5, (3, 8)),   # halfway: the square moved halfway
])
def test_fuse_labels_interpolates_between_the_two_sides(w_a, expect_rows) -> None:
    a = np.zeros((12, 12), np.uint8)
    b = np.zeros_like(a)
    a[2:7, 3:8] = 1
    b[4:9, 3:8] = 1
    rows = np.nonzero(fuse_labels(a, b, w_a).any(axis=1))[0]
    assert (rows.min(), rows.max() + 1) == expect_rows


def test_fuse_labels_one_side_empty() -> None:
    a = np.zeros((21, 21), np.uint8)
    a[5:16, 5:16] = 1
    areas = [int(fuse_labels(a, np.zeros_like(a), w, shrink=True).sum())
             for w in (1.0, 0.75, 0.5, 0.25, 0.0)]
    assert areas[0] == 121 and areas[-1] == 0 and areas == sorted(areas, reverse=True)
    # default: between two annotations holding the label, the side that lost it stopped
    # too early; the other side's drawing is kept as it is
    assert np.array_equal(fuse_labels(np.zeros_like(a), a, 0.9), a)


@pytest.mark.parametrize("weights, expect_rows", [
    ([1.0, 0.0, 0.0], (2, 7)),      # one map only
    ([0.5, 0.5, 0.0], (3, 8)),      # halfway between the first two
    ([0.0, 0.0, 1.0], (6, 11)),     # the third
    ([1.0, 1.0, 0.0], (3, 8)),      # weights are renormalised
])
def test_fuse_many_weights_signed_distances(weights, expect_rows) -> None:
    maps = [np.zeros((14, 12), np.uint8) for _ in range(3)]
    for m, r in zip(maps, (2, 4, 6)):
        m[r:r + 5, 3:8] = 1
    rows = np.nonzero(fuse_many(maps, weights).any(axis=1))[0]
    assert (rows.min(), rows.max() + 1) == expect_rows


@pytest.mark.parametrize("d_lo, d_hi, power, areas, area_power, expect", [
    (1.0, 1.0, 4.0, (1, 1), 0, 0.5),              # half-way: equal weights at any power
    (1.0, 3.0, 1.0, (1, 1), 0, 0.75),             # power 1: linear interpolation
    (1.0, 3.0, 2.0, (1, 1), 0, 0.9),              # 9 / (9 + 1)
    (1.0, 2.0, 4.0, (1, 1), 0, 16.0 / 17.0),      # the nearer side dominates faster
    (0.0, 5.0, 4.0, (1, 1), 0, 1.0),              # on the lo anchor
    (5.0, 0.0, 4.0, (1, 1), 0, 0.0),              # on the hi anchor
    (1.0, 1.0, 2.0, (200, 100), 3, 8.0 / 9.0),    # half-way, lo twice as large: 8 : 1
    (2.0, 1.0, 2.0, (200, 100), 3, 2.0 / 3.0),    # (8 / 4) : (1 / 1)
    (1.0, 1.0, 2.0, (0, 100), 3, 0.0),            # the label absent on lo: all hi
    (1.0, 1.0, 2.0, (50, 0), 3, 1.0),             # ... absent on hi: all lo
])
def test_side_weight_inverse_distance_and_area(d_lo, d_hi, power, areas, area_power, expect) -> None:
    from oneshotsam.volume.gaps import side_weight

    got = side_weight(d_lo, d_hi, power, area_lo=areas[0], area_hi=areas[1], area_power=area_power)
    assert got == pytest.approx(expect)


def test_fuse_many_ignores_maps_without_the_label() -> None:
    a = np.zeros((10, 10), np.uint8)
    a[2:6, 2:6] = 1
    assert np.array_equal(fuse_many([a, np.zeros_like(a)], [0.1, 0.9]), a)


def test_few_shot_slices_between_annotations_use_both(monkeypatch) -> None:
    from oneshotsam.volume import gaps

    vol, truth = _two_blobs()
    res = propagate(vol, _annotate(vol, truth, [6, 11]), config=CFG, method=BrightMethod())
    per = {p["slice"]: p for p in res.report["targets"][0]["per_slice"]}
    for k in (7, 8, 9, 10):  # walked from 6 and from 11, fused by distance
        assert per[k]["source"] == [6, 11] and per[k]["disagreement"] == 0.0
        assert per[k]["anchor_shape"] == gaps.ANCHOR_SHAPE
    assert per[12]["source"] == 11 and per[5]["source"] == 6
    # inverse distance, power 2: slice 7 is 1 slice from 6 and 4 from 11
    assert per[7]["weight_lo"] == round(4 ** 2 / (4 ** 2 + 1), 4) == 0.9412
    assert per[10]["weight_lo"] == 0.0588 and per[8]["idw_power"] == gaps.IDW_POWER
    # the walks' weights also carry the anchors' areas (the ball is larger on slice 11)
    a6, a11 = int((truth[6] > 0).sum()), int((truth[11] > 0).sum())
    assert per[7]["walk_weight_lo"]["1"] == round(gaps.side_weight(
        2.0, 8.0, area_lo=a6, area_hi=a11, area_power=gaps.AREA_POWER), 4)
    out = np.asarray(res.label_volumes[0].voxels)
    # with the anchors' shape in the fusion: close to the (exact) walks, not equal
    assert min(gaps.dice(out[k], truth[k]) for k in (7, 8, 9, 10)) > 0.85
    np.testing.assert_array_equal(out[:7], truth[:7])
    np.testing.assert_array_equal(out[11:], truth[11:])
    monkeypatch.setattr(gaps, "ANCHOR_SHAPE", 0.0)  # the two walks alone: exact here
    res = propagate(vol, _annotate(vol, truth, [6, 11]), config=CFG, method=BrightMethod())
    np.testing.assert_array_equal(np.asarray(res.label_volumes[0].voxels), truth)


def test_reference_slices_select_subset_and_fixed_slices_kept() -> None:
    vol, truth = _two_blobs()
    lab = _annotate(vol, truth, [5, 8, 10])
    cfg = PropagationConfig(method="bright-test", propagation="chain", window="0,1",
                            reference_slices=(8,), fixed_slices=(10,))
    res = propagate(vol, lab, config=cfg, method=BrightMethod())
    rep = res.report
    assert rep["reference"]["reference_slices"] == [8] and rep["reference"]["annotated_slices"] == [5, 8, 10]
    assert rep["targets"][0]["slices_seed"] == [8, 10]


@pytest.mark.parametrize("stop_after", [1, 3])
def test_cancel_returns_finished_slices_consistently(stop_after: int) -> None:
    vol, truth = _two_blobs()
    calls = []

    def progress(done, total, msg):
        calls.append(done)
        return len(calls) < stop_after

    events: list[SliceEvent] = []
    res = propagate(vol, _annotate(vol, truth, [8]), config=CFG, progress=progress,
                    on_slice=events.append, method=BrightMethod())
    assert res.cancelled and res.report["cancelled"]
    out = np.asarray(res.label_volumes[0].voxels)
    rep = res.report["targets"][0]
    done = set(rep["slices_seed"]) | set(rep["slices_predicted"])
    assert len(rep["slices_predicted"]) == stop_after
    for k in range(out.shape[0]):
        if k in done:
            np.testing.assert_array_equal(out[k], truth[k])
        else:
            assert not out[k].any()
    assert {e.slice_index for e in events} == done | set(rep["slices_stopped"])


def test_events_match_output_and_carry_scores() -> None:
    vol, truth = _two_blobs()
    events: list[SliceEvent] = []
    res = propagate(vol, _annotate(vol, truth, [8]), config=CFG, on_slice=events.append,
                    method=BrightMethod())
    out = np.asarray(res.label_volumes[0].voxels)
    assert len({e.slice_index for e in events}) == len(events)
    for e in events:
        assert e.target_index == 0 and e.array_axis == 0
        np.testing.assert_array_equal(e.labels, out[e.slice_index])
        assert 0.0 <= e.confidence <= 1.0
    per = res.report["targets"][0]["per_slice"]
    assert all("confidence" in p and "flagged" in p for p in per)
    # the slices where the ball ends are flagged for review (area collapse / stop)
    assert res.report["targets"][0]["slices_flagged"]


@pytest.mark.parametrize("area, src, conf, absent, rule, present", [
    (100, 100, 0.9, False, StopRule(), True),
    (0, 100, 0.9, False, StopRule(), False),                       # empty
    (10, 100, 0.9, False, StopRule(min_area_ratio=0.15), False),   # collapse
    (20, 100, 0.9, False, StopRule(min_area_ratio=0.15), True),
    (3, 3, 0.9, False, StopRule(min_area_mm2=4.0), False),          # too small physically
    (100, 100, 0.9, True, StopRule(), False),                       # method says absent
    (100, 100, 0.2, False, StopRule(min_confidence=0.3), False),
])
def test_stop_rule_table(area, src, conf, absent, rule, present) -> None:
    pred = np.zeros((20, 20), bool)
    pred.flat[:area] = True
    s = np.zeros((20, 20), bool)
    s.flat[:src] = True
    d = decide_label(rule, 1, pred, s, 1.0, conf, absent)
    assert d.present is present and (d.reason == "") is present


def test_bad_inputs_raise_oneshot_error() -> None:
    vol, truth = _two_blobs()
    with pytest.raises(OneShotError, match="empty"):
        propagate(vol, Volume(np.zeros_like(truth), vol.ijk_to_lps), config=CFG, method=BrightMethod())
    other = Volume(truth, affine((1.0, 1.0, 2.5), (0, 0, 0)))
    with pytest.raises(OneShotError, match="grid"):
        propagate(vol, other, config=CFG, method=BrightMethod())
    with pytest.raises(OneShotError, match="has no label"):
        propagate(vol, _annotate(vol, truth, [8]), config=PropagationConfig(
            window="0,1", reference_slices=(2,)), method=BrightMethod())
    with pytest.raises(OneShotError, match="axis"):
        propagate(vol, _annotate(vol, truth, [8]), config=PropagationConfig(axis="oblique"),
                  method=BrightMethod())
    with pytest.raises(OneShotError, match="Volume"):
        propagate(np.zeros((3, 4, 4)), _annotate(vol, truth, [8]), config=CFG)  # type: ignore[arg-type]
