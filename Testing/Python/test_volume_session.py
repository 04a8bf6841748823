"""PropagationSession: a first run, then Updates that recompute only what a correction
changes (the warp engine at tiny sizes and the deterministic bright-pixel method)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from oneshotsam.errors import OneShotError
from oneshotsam.types import Volume
from oneshotsam.volume.confidence import TAIL_FLAGGED, correction_gains, review_queue, slice_risk
from oneshotsam.volume.session import PropagationSession
from oneshotsam.volume.types import PropagationConfig
from volume_synth import BrightMethod, affine, ellipsoid, sample

TINY_WARP = (("steps", 4), ("followup_steps", 4), ("resolution", 32), ("batch", 2),
             ("aug_per_step", 1), ("cross_repeat", 1))
BRIGHT = PropagationConfig(method="bright-test", propagation="chain", window="0,1")


def _ball(n: int = 14):
    aff = affine((1.0, 1.0, 1.5), (0, 0, 0))
    world = ellipsoid((16, 15, 1.5 * (n - 1) / 2), (8, 6, 1.5 * (n / 2 - 2)))
    vol = sample(lambda p: 0.2 + 0.7 * world(p), (n, 32, 32), aff, "ball")
    truth = (sample(world, (n, 32, 32), aff).voxels > 0.5).astype(np.uint8)
    return vol, truth, aff


def _one(truth: np.ndarray, k: int, aff) -> Volume:
    lab = np.zeros_like(truth)
    lab[k] = truth[k]
    return Volume(lab, aff, "lab")


def _changed(a: np.ndarray, b: np.ndarray) -> list[int]:
    return [k for k in range(a.shape[0]) if not np.array_equal(a[k], b[k])]


def test_update_recomputes_only_the_gaps_of_the_correction_with_the_trained_engine() -> None:
    import torch

    torch.manual_seed(0)
    vol, truth, aff = _ball()
    s = PropagationSession(vol, PropagationConfig(method="medpersam-warp", window="0,1", device="cpu",
                                                  method_overrides=TINY_WARP))
    first = np.asarray(s.run(_one(truth, 6, aff)).label_volumes[0].voxels)
    net, steps = s.states[0].engine.net, len(s.states[0].engine.history)
    labels = first.copy()
    labels[9] = truth[9]
    labels[9, 2:4, 2:9] = 1  # a correction the engine would never draw
    events = []
    res = s.update(Volume(labels, aff, "lab"), [9], on_slice=events.append)
    out = np.asarray(res.label_volumes[0].voxels)
    upd = res.report["targets"][0]["update"]
    assert upd["recomputed_slices"] == [7, 8, 10, 11, 12, 13]  # 6 < k < 9 and beyond 9
    assert np.array_equal(out[9], labels[9])  # the correction, exactly
    for k in range(6 + 1):  # every slice outside the correction's gaps: voxel-identical
        assert np.array_equal(out[k], first[k])
    assert set(_changed(out, first)) <= {7, 8, 9, 10, 11, 12, 13}
    assert s.states[0].engine.net is net and len(s.states[0].engine.history) == steps  # not retrained
    assert {e.slice_index for e in events} == {7, 8, 9, 10, 11, 12, 13}
    per = {p["slice"]: p for p in res.report["targets"][0]["per_slice"]}
    assert per[8]["source"] == [6, 9] and per[9]["kind"] == "corrected"
    assert res.report["review_queue"] == res.report["targets"][0]["review_queue"]
    assert 6 not in res.report["review_queue"] and 9 not in res.report["review_queue"]


def test_second_update_keeps_the_first_correction_and_its_side() -> None:
    vol, truth, aff = _ball()
    s = PropagationSession(vol, BRIGHT, method=BrightMethod())
    s.run(_one(truth, 6, aff))
    lab = np.asarray(s.result.label_volumes[0].voxels).copy()
    lab[3] = 0
    lab[3, 10:20, 10:20] = 1
    after1 = np.asarray(s.update(Volume(lab, aff, "l"), [3]).label_volumes[0].voxels).copy()
    lab = after1.copy()
    lab[10] = truth[10]
    lab[10, 0, 0] = 1
    res = s.update(Volume(lab, aff, "l"), [10])
    out = np.asarray(res.label_volumes[0].voxels)
    assert res.report["targets"][0]["update"]["recomputed_slices"] == [7, 8, 9, 11, 12, 13]
    assert np.array_equal(out[3], after1[3]) and np.array_equal(out[:7], after1[:7])
    assert np.array_equal(out[10], lab[10])


def test_erased_slice_ends_the_structure_on_that_side() -> None:
    vol, truth, aff = _ball()
    s = PropagationSession(vol, BRIGHT, method=BrightMethod())
    first = np.asarray(s.run(_one(truth, 6, aff)).label_volumes[0].voxels)
    assert first[10].any() and first[11].any()  # the ball goes on to slice 11
    lab = first.copy()
    lab[9] = 0
    res = s.update(Volume(lab, aff, "l"), [], erased_slices=[9])
    out = np.asarray(res.label_volumes[0].voxels)
    assert not out[9:].any()  # nothing beyond the erased slice
    assert np.array_equal(out[:9], first[:9])  # 7, 8 walked from 6 again: the same
    per = {p["slice"]: p for p in res.report["targets"][0]["per_slice"]}
    assert per[9]["kind"] == "erased" and per[11]["status"] == "stopped"
    # a corrected slice that the user left empty counts as erased
    s2 = PropagationSession(vol, BRIGHT, method=BrightMethod())
    s2.run(_one(truth, 6, aff))
    res2 = s2.update(Volume(lab, aff, "l"), [9])
    assert res2.report["targets"][0]["update"]["erased_slices"] == [9]
    assert np.array_equal(np.asarray(res2.label_volumes[0].voxels), out)


def test_approved_slice_is_kept_and_bounds_the_next_update() -> None:
    vol, truth, aff = _ball()
    s = PropagationSession(vol, BRIGHT, method=BrightMethod())
    first = np.asarray(s.run(_one(truth, 6, aff)).label_volumes[0].voxels)
    res = s.update(Volume(first, aff, "l"), [], approved_slices=[9])
    assert res.report["targets"][0]["update"]["recomputed_slices"] == []
    lab = first.copy()
    lab[11] = 0
    lab[11, 12:16, 12:16] = 1
    res = s.update(Volume(lab, aff, "l"), [11])
    assert res.report["targets"][0]["update"]["recomputed_slices"] == [10, 12, 13]


def test_followup_correction_refines_that_visit_only_where_it_changes() -> None:
    import torch

    torch.manual_seed(0)
    vol, truth, aff = _ball(10)
    s = PropagationSession(vol, PropagationConfig(method="medpersam-warp", window="0,1", device="cpu",
                                                  align=False, method_overrides=TINY_WARP),
                           targets=[vol])
    first = np.asarray(s.run(_one(truth, 5, aff)).label_volumes[0].voxels)
    lab = first.copy()
    lab[7] = truth[7]
    lab[7, 0:2, 0:5] = 1
    res = s.update(Volume(lab, aff, "l"), [7], target_index=0)
    out = np.asarray(res.label_volumes[0].voxels)
    assert res.report["targets"][0]["update"]["recomputed_slices"] == [6, 8, 9]
    assert np.array_equal(out[7], lab[7]) and np.array_equal(out[:6], first[:6])
    with pytest.raises(OneShotError, match="target_index"):
        s.update(Volume(lab, aff, "l"), [7])


@pytest.mark.parametrize("call, match", [
    (lambda s, lab: s.update(lab, [3]), "first run"),
])
def test_update_before_run_is_refused(call, match) -> None:
    vol, truth, aff = _ball()
    with pytest.raises(OneShotError, match=match):
        call(PropagationSession(vol, BRIGHT, method=BrightMethod()), _one(truth, 6, aff))


@pytest.mark.parametrize("kwargs, match", [
    ({"corrected_slices": [40]}, "outside the volume"),
    ({"corrected_slices": [8], "erased_slices": [8]}, "both erased and corrected"),
    ({"corrected_slices": [8], "target_index": 2}, "not a follow-up"),
])
def test_bad_update_input_is_a_clear_error(kwargs, match) -> None:
    vol, truth, aff = _ball()
    s = PropagationSession(vol, BRIGHT, method=BrightMethod())
    first = s.run(_one(truth, 6, aff))
    with pytest.raises(OneShotError, match=match):
        s.update(first.label_volumes[0], **kwargs)
    with pytest.raises(OneShotError, match="grid"):
        s.update(Volume(np.zeros((3, 4, 4), np.uint8), np.eye(4), "x"), [1])


def test_last_slices_before_a_stop_are_flagged() -> None:
    vol, truth, aff = _ball()
    session = PropagationSession(vol, BRIGHT, method=BrightMethod())
    res = session.run(_one(truth, 6, aff))
    per = {p["slice"]: p for p in res.report["targets"][0]["per_slice"]}
    drawn = [k for k in per if per[k]["status"] == "predicted"]
    for end in (min(drawn), max(drawn)):
        step = 1 if end == min(drawn) else -1
        for i in range(TAIL_FLAGGED):
            assert per[end + step * i]["flagged"], (end, i)
    queue = res.report["review_queue"]  # every predicted slice, by what correcting it fixes
    assert sorted(queue) == sorted(k for k, p in per.items() if p["status"] != "seed")
    gains = correction_gains(session.states[0].outcomes)
    gain = [round(gains[k], 6) for k in queue]
    assert gain == sorted(gain, reverse=True)


@pytest.mark.parametrize("low, high", [
    # more disagreement between the two sides -> higher risk
    (({"disagreement": 0.0}, True), ({"disagreement": 0.4}, True)),
    # farther from the annotation -> higher risk
    (({"distance_mm": 5.0}, True), ({"distance_mm": 30.0}, True)),
    # a drawn slice much smaller than its annotation -> higher risk
    (({"area_ratio": 0.9}, True), ({"area_ratio": 0.2}, True)),
    # an empty slice is less risky than a drawn one; unless its two sides disagree
    (({}, False), ({}, True)),
    (({"disagreement": 0.0}, False), ({"disagreement": 1.0}, False)),
    # lower image similarity after warping -> higher risk
    (({"similarity": 0.9}, True), ({"similarity": 0.3}, True)),
])
def test_slice_risk_orders_the_evidence(low, high) -> None:
    assert slice_risk(low[0], low[1], True) < slice_risk(high[0], high[1], True)


def test_review_queue_without_gains_goes_by_confidence_not_flags() -> None:
    from oneshotsam.volume.chain import SliceOutcome

    z = np.zeros((2, 2), np.uint8)
    outs = {k: SliceOutcome(k, z, c, f, st) for k, c, f, st in [
        (0, 0.9, False, "predicted"), (1, 0.2, False, "predicted"), (2, 0.8, True, "predicted"),
        (3, 1.0, False, "seed"), (4, 0.5, True, "stopped")]}
    assert review_queue(outs) == [1, 4, 2, 0]  # nothing drawn: no gain; lowest confidence first


def test_followup_erased_slice_empties_the_predictions_beyond_it() -> None:
    vol, truth, aff = _ball()
    drawn = [k for k in range(truth.shape[0]) if truth[k].any()]
    s = PropagationSession(vol, dataclasses.replace(BRIGHT, align=False), targets=[vol],
                           method=BrightMethod())
    first = np.asarray(s.run(Volume(truth, aff, "lab")).label_volumes[0].voxels)
    assert [k for k in range(truth.shape[0]) if first[k].any()] == drawn  # a planning contour
    top = drawn[-1]
    lab = first.copy()
    lab[top - 1] = 0
    res = s.update(Volume(lab, aff, "l"), [], erased_slices=[top - 1], target_index=0)
    out = np.asarray(res.label_volumes[0].voxels)
    assert not out[top - 1:].any()  # the erased slice and the prediction beyond it
    np.testing.assert_array_equal(out[:top - 1], first[:top - 1])
    recomputed = res.report["targets"][0]["update"]["recomputed_slices"]
    assert top in recomputed and min(recomputed) > top - 1  # nothing below the erased slice
