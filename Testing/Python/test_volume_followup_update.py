"""A planning contour's follow-up: its per-slice risk, flags and review queue, and what an
Update does with a correction there (a label the correction left out ends there; every
other slice keeps its voxels; nothing is walked beyond the contour)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from oneshotsam.types import Volume
from oneshotsam.volume.chain import SliceOutcome
from oneshotsam.volume.followup import review_followup
from oneshotsam.volume import followup_update
from oneshotsam.volume.followup_update import (carry_shape, ended_labels, fuse_walks, label_ends,
                                               label_ends_rule, shape_change)
from oneshotsam.volume.gaps import signed_distance
from oneshotsam.volume.session import PropagationSession
from oneshotsam.volume.stoprule import (FOLLOWUP_FLAG_RISK, FOLLOWUP_RISK, StopRule, boundary_share,
                                        followup_flagged, followup_risk, followup_stake)
from oneshotsam.volume.types import PropagationConfig
from volume_synth import BrightMethod, affine

P = np.array([[1, 1, 2, 2, 3]])


@pytest.mark.parametrize("truth,ended", [
    ([[1, 1, 2, 2, 3]], set()),          # nothing left out
    ([[1, 1, 0, 0, 3]], {2}),            # label 2 left out: it ended here
    ([[0, 0, 0, 0, 3]], {1, 2}),
    ([[0, 0, 0, 0, 0]], set()),          # an erased slice: the erase rule's business
    ([[1, 1, 2, 2, 4]], {3}),            # a new label is no end
])
def test_label_ends_table(truth, ended) -> None:
    assert label_ends(P, np.array(truth)) == ended


def _stack(planes) -> np.ndarray:
    """``(K, 1, W)`` labels from one row per slice."""
    return np.array(planes)[:, None, :]


BASE = _stack([[0, 0, 0], [1, 2, 0], [1, 2, 0], [1, 2, 2], [1, 2, 2], [1, 2, 0], [1, 0, 0]])


@pytest.mark.parametrize("corrected_row,slice_,edited,expected", [
    # label 2 spans slices 1..5 (median 3): corrected at 5 -> ends upwards (6 has none of it)
    ([1, 0, 0], 5, {5: "corrected"}, {6: {2}}),
    # corrected at 2 (below the middle) -> downwards to slice 0
    ([1, 0, 0], 2, {2: "corrected"}, {1: {2}, 0: {2}}),
    # ... up to the next edited slice
    ([1, 0, 0], 2, {2: "corrected", 1: "approved"}, {}),
    # an approved slice reveals nothing
    ([1, 0, 0], 2, {2: "approved"}, {}),
])
def test_ended_labels_run_outward_up_to_the_next_edit(corrected_row, slice_, edited, expected) -> None:
    cur = BASE.copy()
    cur[slice_, 0] = corrected_row
    assert ended_labels(BASE, cur, 0, edited) == expected


def test_label_ends_rule_changes_only_the_slices_it_reaches() -> None:
    cur = BASE.copy()
    cur[2, 0] = [1, 0, 0]
    out, changed = label_ends_rule(BASE, cur, 0, {2: "corrected"})
    assert changed == {1}  # slice 0 holds no label 2: unchanged
    assert out[1, 0].tolist() == [1, 0, 0]
    assert np.array_equal(out[2], cur[2])  # the correction kept exactly
    assert np.array_equal(np.delete(out, 1, axis=0), np.delete(cur, 1, axis=0))
    out, changed = label_ends_rule(BASE, cur, 0, {2: "corrected"}, frozen={1})
    assert changed == set() and np.array_equal(out, cur)


@pytest.mark.parametrize("row,expected", [
    ([0, 0, 1, 1, 1, 1, 1, 0, 0], [2, 1, -1, -2, -3, -2, -1, 1, 2]),
    ([0, 0, 1, 1, 1, 0, 0, 0, 0], [2, 1, -1, -2, -1, 1, 2, 3, 4]),
    ([0] * 4, [1e3] * 4),
    ([1] * 4, [-1e3] * 4),
])
def test_signed_distance_table(row, expected) -> None:
    np.testing.assert_allclose(signed_distance(np.array([row], bool))[0], expected)


PRED = np.array([[0, 0, 1, 1, 1, 1, 1, 0, 0]], np.uint8)
SHRUNK = np.array([[0, 0, 1, 1, 1, 0, 0, 0, 0]], np.uint8)


def test_shape_change_and_carry_by_hand(monkeypatch) -> None:
    """Unsmoothed: the correction moved the right edge 2 px in (change 0 0 0 0 2 3 3 2 2);
    half of it on a neighbour drawn like the prediction moves its edge 1 px in
    (signed distance 2 1 -1 -2 -2 -0.5 0.5 2 3)."""
    monkeypatch.setattr(followup_update, "SHAPE_CARRY_SMOOTH_PX", 0.0)
    ch = shape_change(PRED, SHRUNK)
    assert set(ch) == {1}
    np.testing.assert_allclose(ch[1][0], [0, 0, 0, 0, 2, 3, 3, 2, 2])
    assert carry_shape(PRED, [ch], 0.5).tolist() == [[0, 0, 1, 1, 1, 1, 0, 0, 0]]
    assert carry_shape(PRED, [ch], 1.0).tolist() == SHRUNK.tolist()
    assert carry_shape(PRED, [ch], 0.0).tolist() == PRED.tolist()
    # two neighbours: the mean of their changes (one unchanged: a quarter of the move)
    assert carry_shape(PRED, [ch, shape_change(PRED, PRED)], 1.0).tolist() == [[0, 0, 1, 1, 1, 1, 0, 0, 0]]
    # a label the correction left out has no change to carry; a label absent stays absent
    assert shape_change(PRED, np.zeros_like(PRED)) == {}
    assert carry_shape(np.zeros_like(PRED), [ch], 0.5).tolist() == np.zeros_like(PRED).tolist()


def test_label_ends_rule_carries_the_shape_to_the_two_neighbours(monkeypatch) -> None:
    monkeypatch.setattr(followup_update, "SHAPE_CARRY_SMOOTH_PX", 0.0)
    base = np.repeat(PRED[None], 5, axis=0)  # (5, 1, 9): every slice drawn alike
    cur = base.copy()
    cur[2] = SHRUNK
    half = [[0, 0, 1, 1, 1, 1, 0, 0, 0]]
    out, changed = label_ends_rule(base, cur, 0, {2: "corrected"}, shape_carry=0.5)
    assert changed == {1, 3}
    assert out[1].tolist() == half and out[3].tolist() == half
    assert np.array_equal(out[2], cur[2])  # the correction kept exactly
    assert np.array_equal(out[[0, 4]], cur[[0, 4]])  # two slices away: untouched
    # rebuilt from the first run's labels: the same edits again change nothing more
    again, changed = label_ends_rule(base, out, 0, {2: "corrected"}, shape_carry=0.5)
    assert changed == set() and np.array_equal(again, out)
    # frozen and edited slices are never touched; without the carry only the ends rule acts
    out, changed = label_ends_rule(base, cur, 0, {2: "corrected", 3: "approved"}, frozen={1},
                                   shape_carry=0.5)
    assert changed == set() and np.array_equal(out, cur)
    out, changed = label_ends_rule(base, cur, 0, {2: "corrected"})
    assert changed == set() and np.array_equal(out, cur)


def test_fuse_walks_by_hand() -> None:
    """Signed distances 2 1 -1 -2 -3 -2 -1 1 2 (own) and 2 1 -1 -2 -1 1 2 3 4 (walked):
    their mean is inside on 2..5."""
    half = [[0, 0, 1, 1, 1, 1, 0, 0, 0]]
    assert fuse_walks(PRED, [SHRUNK], 0.5).tolist() == half
    assert fuse_walks(PRED, [SHRUNK], 1.0).tolist() == SHRUNK.tolist()
    assert fuse_walks(PRED, [SHRUNK], 0.0).tolist() == PRED.tolist()
    assert fuse_walks(PRED, [SHRUNK, PRED], 1.0).tolist() == half  # the walks' mean
    assert fuse_walks(PRED, [np.zeros_like(PRED)], 0.5).tolist() == PRED.tolist()  # label not walked
    assert fuse_walks(np.zeros_like(PRED), [PRED], 0.5).tolist() == np.zeros_like(PRED).tolist()


def test_fuse_walks_leaves_out_a_walk_unlike_the_neighbour_s_label() -> None:
    """A walked label whose Dice with the neighbour's is under ``WALK_MIN_DICE`` (0.3) says the
    structure changes faster between the two slices than a walk follows: it is not fused
    (a small apical right ventricle walked onto its basal neighbour shrank it tenfold)."""
    assert followup_update.WALK_MIN_DICE == 0.3
    far = np.array([[0, 0, 0, 0, 0, 0, 0, 1, 1]], np.uint8)   # Dice 0
    edge = np.array([[0, 0, 0, 0, 0, 0, 1, 1, 0]], np.uint8)  # Dice 2 / 7
    tip = np.array([[0, 0, 1, 0, 0, 0, 0, 0, 0]], np.uint8)   # Dice 2 / 6: fused
    assert fuse_walks(PRED, [far], 1.0).tolist() == PRED.tolist()
    assert fuse_walks(PRED, [edge], 1.0).tolist() == PRED.tolist()
    assert fuse_walks(PRED, [tip], 1.0).tolist() == tip.tolist()
    assert fuse_walks(PRED, [edge, SHRUNK], 1.0).tolist() == SHRUNK.tolist()  # the alike one only


def test_label_ends_rule_fuses_the_walks() -> None:
    base = np.repeat(PRED[None], 3, axis=0)
    cur = base.copy()
    out, changed = label_ends_rule(base, cur, 0, {0: "corrected"}, walks={1: [SHRUNK]}, walk_weight=0.5)
    assert changed == {1} and out[1].tolist() == [[0, 0, 1, 1, 1, 1, 0, 0, 0]]
    assert np.array_equal(out[[0, 2]], cur[[0, 2]])
    for kw in ({"frozen": {1}}, {"walk_weight": 0.0}):
        args = {"walks": {1: [SHRUNK]}, "walk_weight": 0.5, **kw}
        out, changed = label_ends_rule(base, cur, 0, {0: "corrected"}, **args)
        assert changed == set() and np.array_equal(out, cur)


def test_followup_risk_and_stake() -> None:
    # a slice that fits as well as the whole image, with a confident method, is safe;
    # a poorly fitting one is not; a deviating area and a small slice add risk
    c = FOLLOWUP_RISK
    z = 2.0 + c["size"] - c["agreement"] * np.log(1.0 - c["agree_unknown"])
    assert followup_risk(1.0, 1.0, 0.0, 1.0) == pytest.approx(1 / (1 + np.exp(-(c["intercept"] + c["z"] * z))))
    assert followup_risk(1.0, 1.0, 0.0, 1.0) < 0.15
    # the method and the optical flow agreeing lowers the risk; disagreeing raises it
    assert (followup_risk(0.97, 0.97, 0.0, 1.0, 0.99) < followup_risk(0.97, 0.97, 0.0, 1.0)
            < followup_risk(0.97, 0.97, 0.0, 1.0, 0.6))
    assert followup_risk(0.97, 0.97, 0.0, 1.0, 1.0) == followup_risk(0.97, 0.97, 0.0, 1.0, c["agree_max"])
    assert followup_risk(0.85, 0.9, 0.0, 1.0, None, 0.2) > 0.95  # a typical boundary share
    assert followup_risk(0.97, 0.97, 0.0, 1.0) < followup_risk(0.97, 0.97, 1.0, 1.0)
    assert followup_risk(0.97, 0.97, 0.0, 1.0) < followup_risk(0.97, 0.97, 0.0, 0.2)
    # a label with much of its area on its boundary (thin, small) is riskier
    assert followup_risk(0.97, 0.97, 0.0, 1.0, None, 0.1) < followup_risk(0.97, 0.97, 0.0, 1.0, None, 0.5)
    assert followup_risk(0.97, 0.97, 0.0, 1.0, None, 0.0) == followup_risk(0.97, 0.97, 0.0, 1.0)
    assert [followup_stake(100, e) for e in (0, 1, 2, 5)] == [200.0, 200.0, 100.0, 100.0]


def _ring(outer: int, inner: int) -> np.ndarray:
    yy, xx = np.mgrid[:40, :40]
    r2 = (yy - 20) ** 2 + (xx - 20) ** 2
    return ((r2 <= outer * outer) & (r2 > inner * inner)).astype(np.uint8)


@pytest.mark.parametrize("labels, expect", [
    (np.zeros((5, 5), np.uint8), 0.0),                                  # nothing drawn
    (np.pad(np.ones((3, 3), np.uint8), 1), 8 / 9),                     # 3 x 3: only the centre inside
    (np.pad(np.ones((4, 6), np.uint8), 2), 1 - 2 * 4 / 24),            # 4 x 6: 2 x 4 inside
    (np.ones((4, 4), np.uint8), 12 / 16),                              # the image border is outside
    (2 * np.pad(np.ones((3, 3), np.uint8), 1), 8 / 9),                 # any label value
])
def test_boundary_share_table(labels, expect) -> None:
    assert boundary_share(labels) == pytest.approx(expect)


def test_boundary_share_takes_the_thinnest_label() -> None:
    # a wide disc (label 1) and a thin ring (label 2): the ring decides
    lab = _ring(6, 0) + 2 * _ring(15, 12)
    assert boundary_share(lab) == pytest.approx(boundary_share(2 * _ring(15, 12)))
    assert boundary_share(_ring(6, 0)) < 0.5 < boundary_share(_ring(15, 12))


@pytest.mark.parametrize("risk,px,most,flag", [
    (0.95, 100, 150, True), (0.95, 70, 150, False), (FOLLOWUP_FLAG_RISK - 0.01, 150, 150, False),
    (0.95, 0, 0, False)])
def test_followup_flag_table(risk, px, most, flag) -> None:
    assert followup_flagged(risk, px, most) is flag


def _seed(k: int, labels: np.ndarray, fit: float) -> SliceOutcome:
    info = {"kind": "cross-visit", "labels": {"1": {"present": True, "fit": fit}}}
    return SliceOutcome(k, labels, 0.97, False, "seed", None, info)


def test_review_followup_scores_flags_and_ranks_by_expected_wrong_pixels() -> None:
    from oneshotsam.volume.confidence import review_queue

    ref = {k: np.pad(np.ones((6, 6), np.uint8), 2) for k in range(5)}
    fits = {0: 0.80, 1: 0.99, 2: 1.00, 3: 0.99, 4: 0.93}
    outs = {k: _seed(k, ref[k].copy(), f) for k, f in fits.items()}
    review_followup(outs, ref, StopRule())
    conf = {k: outs[k].confidence for k in outs}
    assert conf[0] < conf[4] < conf[1] <= conf[2]
    assert outs[0].flagged and outs[0].info["review"].startswith("likely wrong")
    assert not any(outs[k].flagged for k in (1, 2, 3))
    ev = outs[0].info["evidence"]
    assert ev["from_end"] == 0 and ev["size"] == 1.0 and 0 < ev["expected_wrong_px"] <= 72
    assert review_queue(outs)[:2] == [0, 4]  # the flagged end slice, then the next risk


def test_followup_boundary_share_moves_the_confidence_not_the_queue() -> None:
    # two slices alike in every signal but the boundary share of their label: a 10 x 10
    # square (share 0.36) and a 2-pixel-thick ring of the same area (share 1.0)
    from oneshotsam.volume.confidence import review_queue
    from oneshotsam.volume.stoprule import FOLLOWUP_RISK_ORDER

    square = np.pad(np.ones((10, 10), np.uint8), 4)
    ring = np.zeros((18, 18), np.uint8)
    ring[1:-1, 1:-1] = 1
    ring[3:-3, 3:-3] = 0
    ring.flat[np.flatnonzero(ring)[100:]] = 0  # the same 100 pixels
    assert ring.sum() == square.sum() == 100
    ref = {0: square, 1: ring}
    outs = {0: _seed(0, square.copy(), 0.97), 1: _seed(1, ring.copy(), 0.97)}
    review_followup(outs, ref, StopRule())
    ev = {k: outs[k].info["evidence"] for k in outs}
    assert ev[0]["boundary"] == pytest.approx(boundary_share(square), abs=1e-4)
    assert ev[0]["boundary"] < ev[1]["boundary"]
    assert outs[1].confidence < outs[0].confidence  # the thin label is likelier to fail
    for k in outs:  # confidence: the full risk; the queue and flags: the risk without the share
        args = (0.97, 0.97, ev[k]["deviation"], ev[k]["size"], None, ev[k]["boundary"])
        assert outs[k].confidence == pytest.approx(1.0 - followup_risk(*args))
        assert ev[k]["risk_order"] == pytest.approx(followup_risk(*args, coefficients=FOLLOWUP_RISK_ORDER),
                                                    abs=1e-4)
        assert ev[k]["expected_wrong_px"] == pytest.approx(ev[k]["risk_order"] * 200.0, rel=1e-3)
    assert ev[0]["risk_order"] == pytest.approx(ev[1]["risk_order"], abs=1e-4)
    assert outs[0].flagged == outs[1].flagged
    assert sorted(review_queue(outs)) == [0, 1]


def _two_blobs():
    """Two bright blobs, label 1 on slices 1..8 and label 2 on slices 3..8 (10 slices)."""
    aff = affine((1.0, 1.0, 2.0), (0, 0, 0))
    lab = np.zeros((10, 32, 32), np.uint8)
    lab[1:9, 8:16, 4:14] = 1
    lab[3:9, 8:16, 18:28] = 2
    vol = Volume((0.2 + 0.7 * (lab > 0)).astype(np.float32), aff, "blobs")
    return vol, lab, aff


def test_followup_update_ends_a_label_and_keeps_every_other_slice() -> None:
    vol, lab, aff = _two_blobs()
    cfg = PropagationConfig(method="bright-test", propagation="chain", window="0,1", align=False)
    method = BrightMethod()
    s = PropagationSession(vol, cfg, targets=[vol], method=method)
    first = np.asarray(s.run(Volume(lab, aff, "lab")).label_volumes[0].voxels)
    assert np.array_equal(first, lab)
    calls = len(method.calls)
    edit = first.copy()
    edit[4][edit[4] == 2] = 0  # label 2 has already ended on slice 4 (below its middle)
    res = s.update(Volume(edit, aff, "l"), [4], target_index=0)
    out = np.asarray(res.label_volumes[0].voxels)
    upd = res.report["targets"][0]["update"]
    assert upd["refined_slices"] == [3] and upd["recomputed_slices"] == []
    assert np.array_equal(out[4], edit[4])
    assert not (out[3] == 2).any() and np.array_equal(out[3] == 1, lab[3] == 1)
    np.testing.assert_array_equal(np.delete(out, [3, 4], axis=0), np.delete(first, [3, 4], axis=0))
    # one registration call: the corrected slice onto its two neighbours inside the contour
    assert method.calls[calls:] == [("blobs[4]", ["blobs[3]", "blobs[5]"])]
    assert upd["walked_slices"] == [3, 5]
    # correcting the first contoured slice walks nothing beyond the contour (slice 0): the
    # one call registers it onto slice 2 only
    edit2 = out.copy()
    edit2[1, 8:10] = 0
    res = s.update(Volume(edit2, aff, "l"), [1], target_index=0)
    out2 = np.asarray(res.label_volumes[0].voxels)
    assert method.calls[calls + 1:] == [("blobs[1]", ["blobs[2]"])] and not out2[0].any()
    assert np.array_equal(out2[1], edit2[1]) and _same_but(out2, out, [1])
    # the same corrections again: nothing registered again, nothing changes
    res = s.update(Volume(out2, aff, "l"), [1], target_index=0)
    assert len(method.calls) == calls + 2
    assert np.array_equal(res.label_volumes[0].voxels, out2)


def _same_but(a: np.ndarray, b: np.ndarray, ks) -> bool:
    return bool(np.array_equal(np.delete(a, ks, axis=0), np.delete(b, ks, axis=0)))


def test_followup_update_above_the_middle_ends_the_label_upwards_once() -> None:
    vol, lab, aff = _two_blobs()
    cfg = dataclasses.replace(PropagationConfig(method="bright-test", propagation="chain",
                                                window="0,1"), align=False)
    s = PropagationSession(vol, cfg, targets=[vol], method=BrightMethod())
    first = np.asarray(s.run(Volume(lab, aff, "lab")).label_volumes[0].voxels)
    edit = first.copy()
    edit[7][edit[7] == 2] = 0  # above label 2's middle (slice 5.5): it ends upwards (slice 8)
    a = s.update(Volume(edit, aff, "l"), [7], target_index=0)
    assert a.report["targets"][0]["update"]["refined_slices"] == [8]
    out = np.asarray(a.label_volumes[0].voxels)
    assert not (out[7:] == 2).any() and _same_but(out, first, [7, 8])
    b = s.update(Volume(out, aff, "l"), [7], target_index=0)  # the same again: nothing more
    assert b.report["targets"][0]["update"]["refined_slices"] == []
    assert np.array_equal(b.label_volumes[0].voxels, out)
