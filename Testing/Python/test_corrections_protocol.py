"""The correction benchmark (``oneshotsam benchmark corrections``): the simulated
clinician's choice of slice in each order, NoC, first-flag precision, AUROC, the
peer's slice spreading and Fill between slices, the split rule, and one whole
correction loop through the real propagation on a synthetic volume."""

from __future__ import annotations

import math

import numpy as np
import pytest

from oneshotsam.errors import OneShotError
from oneshotsam.protocols import corrections_loop as loop
from oneshotsam.protocols.corrections import Case, list_cases, run_order, split_of
from oneshotsam.protocols.corrections_engine import FullRerun, fill_between_slices, queue_of, records_of
from oneshotsam.types import Volume
from oneshotsam.volume.pipeline import PropagationConfig
from volume_synth import BrightMethod, affine, ellipsoid, sample

pytestmark = pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute")


def _sq(a: int, b: int, n: int = 6) -> np.ndarray:
    """An ``n x n`` plane with rows/cols ``a..b-1`` set to 1."""
    p = np.zeros((n, n), np.uint8)
    p[a:b, a:b] = 1
    return p


def _vol(*planes: np.ndarray) -> np.ndarray:
    return np.stack(planes).astype(np.uint8)


E, S4, S3 = np.zeros((6, 6), np.uint8), _sq(1, 5), _sq(1, 4)  # empty, 16 px, 9 px

# ----------------------------------------------------------------------- one slice
SLICE_CASES = [  # pred, truth -> Dice, acceptable, wrong voxels
    (E, E, 1.0, True, 0),
    (S4, S4, 1.0, True, 0),
    (S3, S4, 2 * 9 / 25, False, 7),
    (S4, E, 0.0, False, 16),
    (E, S3, 0.0, False, 9),
    (np.where(S4 > 0, 2, 0), S4, 0.0, False, 16),  # right place, wrong label
]


@pytest.mark.parametrize("pred,truth,dice,ok,wrong", SLICE_CASES)
def test_one_slice_against_the_truth(pred, truth, dice, ok, wrong):
    assert loop.slice_dice(pred, truth) == pytest.approx(dice)
    assert loop.acceptable(pred, truth) is ok
    assert loop.wrong_voxels(pred, truth) == wrong


def test_acceptable_at_exactly_090_and_several_labels_are_averaged():
    t = np.zeros((10, 10), np.uint8)
    t[0, :10] = 1  # 10 px
    p = t.copy()
    p[0, 9] = 0
    p[1, :1] = 1  # 9 of 10 kept + 1 extra: Dice = 18 / 20 = 0.90
    assert loop.slice_dice(p, t) == pytest.approx(0.9) and loop.acceptable(p, t)
    two = t.copy()
    two[5, :4] = 2  # label 2 missing from the prediction: mean(1.0, 0.0)
    assert loop.slice_dice(t, two) == pytest.approx(0.5)


# --------------------------------------------------------------- the clinician's choice
# truth: structure on slices 1..3; prediction: slice 1 right, 2 too small, 3 missing, 4 extra
TRUTH = _vol(E, S4, S4, S4, E, E)
PRED = _vol(E, S4, S3, E, S4, E)
QUEUE_CASES = [  # queue, records {slice: (confidence, flagged)}, done -> chosen slice
    ([4, 2], {2: (0.3, True), 4: (0.2, True)}, {1}, 4),            # first of the queue, wrong
    ([0, 2], {0: (0.1, True), 2: (0.3, True)}, {1}, 2),            # flagged 0 is acceptable: skipped
    ([0], {0: (0.1, True), 3: (0.2, False), 4: (0.9, False)}, {1}, 3),  # then confidence order
    ([], {}, {1}, 2),                                               # unreported: nearest to slice 1 first
    ([], {}, {1, 2, 3, 4}, None),                                   # every slice left acceptable
    ([4], {4: (0.2, True)}, {1, 4}, 2),                             # corrected slices are not shown again
]


@pytest.mark.parametrize("queue,records,done,expected", QUEUE_CASES)
def test_queue_clinician_corrects_the_first_wrong_slice_it_is_shown(queue, records, done, expected):
    assert loop.queue_choice(PRED, TRUTH, 0, queue, records, done) == expected


def test_queue_order_lists_the_queue_then_confidence_then_distance():
    records = {2: (0.5, False), 5: (0.4, False)}
    # queue [3]; then 5 (0.4), 2 (0.5); unreported 0, 4 (1.0): 4 and 0 at distance 3 / 1 from {1}
    assert loop.queue_order(6, [3, 3], records, {1}) == [3, 5, 2, 0, 4]


ORACLE_CASES = [  # done -> slice with the most wrong voxels (ties: lowest index)
    (set(), 3),       # 3 and 4 both have 16 wrong voxels: the lower index
    ({3}, 4),
    ({3, 4}, 2),      # 7 wrong voxels
    ({2, 3, 4}, None),
]


@pytest.mark.parametrize("done,expected", ORACLE_CASES)
def test_oracle_corrects_the_slice_with_most_wrong_voxels(done, expected):
    assert loop.oracle_choice(PRED, TRUTH, 0, done) == expected


FLAG_CASES = [  # queue, records, done -> first flagged slice wrong?
    ([4, 2], {4: (0.2, True), 2: (0.3, True)}, set(), True),
    ([0, 4], {0: (0.1, True), 4: (0.2, True)}, set(), False),   # slice 0: both empty
    ([4, 0], {4: (0.2, True), 0: (0.1, True)}, {4}, False),     # 4 corrected: 0 comes first
    ([3, 2], {3: (0.2, False), 2: (0.3, False)}, set(), None),  # nothing flagged
]


@pytest.mark.parametrize("queue,records,done,expected", FLAG_CASES)
def test_first_flag_precision_counts_the_first_flagged_slice(queue, records, done, expected):
    assert loop.first_flag_wrong(PRED, TRUTH, 0, queue, records, done) is expected


def test_a_correction_draws_or_erases_the_slice():
    drawn, erased = loop.correct(PRED, TRUTH, 0, 3)
    assert np.array_equal(drawn[3], S4) and not erased and np.array_equal(drawn[4], S4)
    gone, erased = loop.correct(PRED, TRUTH, 0, 4)
    assert not gone[4].any() and erased and np.array_equal(PRED[4], S4)  # the input is not changed
    assert loop.beyond_structure(PRED, TRUTH, 0) == [4]


# ------------------------------------------------------------------------ scores
NOC_CASES = [  # Dice per step, threshold -> (corrections, reached)
    ([0.86, 0.9, 0.95], 0.85, (0, True)),
    ([0.70, 0.84, 0.90], 0.85, (2, True)),
    ([0.70, 0.84, 0.89], 0.90, (2, False)),  # capped at K = 2
    ([0.70, math.nan, 0.91], 0.90, (2, True)),
]


@pytest.mark.parametrize("dices,threshold,expected", NOC_CASES)
def test_noc_is_the_first_step_reaching_the_dice_capped_at_k(dices, threshold, expected):
    assert loop.noc(dices, threshold) == expected


AUROC_CASES = [  # confidences, wrong -> AUROC (low confidence should mean wrong)
    ([0.1, 0.2, 0.8, 0.9], [True, True, False, False], 1.0),
    ([0.1, 0.2, 0.8, 0.9], [False, False, True, True], 0.0),
    ([0.5, 0.5], [True, False], 0.5),
    ([0.1, 0.6, 0.4, 0.9], [True, True, False, False], 0.75),  # pairs: 4 of which 3 ordered
    ([0.1, 0.2], [False, False], math.nan),
]


@pytest.mark.parametrize("conf,wrong,expected", AUROC_CASES)
def test_auroc_of_confidence_against_not_acceptable(conf, wrong, expected):
    got = loop.auroc(conf, wrong)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


SPREAD_CASES = [  # first, last, n, largest -> the peer's drawn slices
    (10, 20, 1, 14, [14]),
    (10, 20, 2, 14, [10, 20]),
    (10, 20, 3, 14, [10, 15, 20]),
    (10, 20, 5, 14, [10, 13, 15, 18, 20]),  # 2.5 and 7.5 rounded up
    (10, 12, 5, 11, [10, 11, 12]),          # more slices than the extent: every slice
    (8, 10, 3, 9, [8, 9, 10]),
]


@pytest.mark.parametrize("first,last,n,largest,expected", SPREAD_CASES)
def test_peer_slices_are_spread_over_the_extent_with_both_ends(first, last, n, largest, expected):
    assert loop.spread_slices(first, last, n, largest) == expected


@pytest.mark.parametrize("axis", [0, 1])
def test_fill_between_slices_interpolates_along_the_slice_axis_only(axis):
    vol = np.zeros((7, 7, 7), np.uint8)
    vol[0, 1:6, 1:6] = 1
    vol[6, 1:6, 1:6] = 1
    vol = np.moveaxis(vol, 0, axis).copy()
    drawn = loop.keep_slices(vol, axis, [0, 6])
    filled = fill_between_slices(drawn, axis)
    per_slice = (filled != 0).sum(axis=tuple(a for a in range(3) if a != axis))
    assert per_slice.tolist() == [25] * 7  # the same square on every slice between
    one = loop.keep_slices(vol, axis, [0])
    assert np.array_equal(fill_between_slices(one, axis), one)  # one slice: nothing to fill


def test_records_and_queue_read_the_report():
    rep = {"targets": [{"per_slice": [
        {"slice": 1, "status": "seed", "kind": "annotated", "confidence": 1.0, "flagged": False},
        {"slice": 2, "status": "predicted", "confidence": 0.4, "flagged": True},
        {"slice": 3, "status": "predicted", "confidence": 0.2, "flagged": False},
        {"slice": 4, "status": "seed", "kind": "cross-visit", "confidence": 0.7, "flagged": True}]}]}
    assert records_of(rep) == {2: (0.4, True), 3: (0.2, False), 4: (0.7, True)}
    assert queue_of(rep) == [2, 4]  # no review_queue in the report: flagged by confidence
    assert queue_of({**rep, "review_queue": [3, 2]}) == [3, 2]


# ------------------------------------------------------------------------- split
def test_split_rule_holds_out_every_third_case_in_name_order(tmp_path):
    assert [split_of(i) for i in range(7)] == ["tuning", "tuning", "held-out"] * 2 + ["tuning"]
    la = tmp_path / "la"
    la.mkdir()
    for n in ("E", "A", "D", "B", "C"):
        for part in ("image", "label"):
            (la / f"{n}_{part}.nii.gz").write_bytes(b"")
    assert [c[0] for c in list_cases(tmp_path, "la", "held-out")] == ["C"]
    assert [c[0] for c in list_cases(tmp_path, "la", "tuning")] == ["A", "B", "D", "E"]
    with pytest.raises(OneShotError, match="no pyradiomics data"):
        list_cases(tmp_path, "tumour", "all")
    with pytest.raises(OneShotError, match="unknown split"):
        list_cases(tmp_path, "la", "test")


# ------------------------------------------------ one whole loop through propagate
def _gap_case() -> Case:
    """20 axial slices: a bright ball over slices ~4..12 and, after a gap, a second one
    over ~16..19; the truth is both balls (the structure goes on after the gap)."""
    a = affine((1.0, 1.0, 2.0), (0, 0, 0))
    w1, w2 = ellipsoid((12, 12, 16), (6, 6, 8.5)), ellipsoid((12, 12, 36), (5, 5, 3.5))
    world = lambda p: np.maximum(w1(p), w2(p))  # noqa: E731
    vol = sample(world, (20, 24, 24), a, "two")
    truth = (sample(world, (20, 24, 24), a).voxels > 0.5).astype(np.uint8)
    start = Volume(loop.keep_slices(truth, 0, [8]), a, "lab", {})
    return Case("la", "two", "tuning", vol, truth, 0, start)


@pytest.mark.parametrize("order", ["oracle", "queue"])
def test_a_correction_beyond_the_gap_recovers_the_second_ball(order):
    case = _gap_case()
    session = FullRerun(case.reference, PropagationConfig(method="bright-test", propagation="chain",
                                                          window="0,1"), method=BrightMethod())
    res0 = session.run(case.start)
    pred0 = np.asarray(res0.label_volumes[0].voxels)
    assert not pred0[16:].any() and np.array_equal(pred0[:16], case.truth[:16])  # stops at the gap
    first, second = int(case.truth[:16].sum()), int(case.truth[16:].sum())
    out = run_order(case, session, res0, order, 2, [1], {1: "ball"})
    assert out["dice"][0] == pytest.approx(2 * first / (2 * first + second))
    # the clinician draws a slice of the second ball (oracle: its largest); Update brings
    # more of it (how much, and what it does to the empty gap, is the engine's business)
    assert out["slices"][0] in (17, 18, 19) and (order == "queue" or out["slices"][0] == 18)
    assert out["dice"][1] > out["dice"][0] + 0.05
    assert (out["noc90"], out["reached90"]) == loop.noc(out["dice"], 0.90)
    assert out["not_kept"] == 0 and out["erased"][0] is False and len(out["dice"]) == 3
    assert len(out["update_wall"]) == len(out["erased"]) == sum(k is not None for k in out["slices"])
    # after each Update: [slices predicted beyond the structure, of them flagged]; the
    # propagation never runs past the two balls here
    assert out["beyond_after"] == [[0, 0]] * len(out["update_wall"])


def test_one_case_through_both_orders_the_peer_and_the_printed_tables():
    from oneshotsam.protocols.corrections import run_case
    from oneshotsam.protocols.corrections_report import bars, format_corrections, summarise

    case = _gap_case()
    cfg = PropagationConfig(method="bright-test", propagation="chain", window="0,1")
    row = run_case(case, cfg, "rerun", 2, method=BrightMethod())
    assert row["extent"] == [4, 19] and row["annotated_slice"] == 8 and row["fork"] == "copy"
    assert row["beyond"]["slices"] == 0 and row["orders"]["oracle"]["slices"][0] == 18
    # the peer: slice 8 alone, then the two ends 4 and 19, then 4, 12 and 19
    assert row["peer"]["slices"] == [[8], [4, 19], [4, 12, 19]]
    assert row["peer"]["dice"][0] == pytest.approx(2 * 113 / (113 + int(case.truth.sum())))
    summary = summarise([row], 2)
    assert summary["la"]["cases"] == 1 and summary["la"]["queue"]["not_kept"] == 0
    text = format_corrections({"rows": [row], "summary": summary, "steps": 2, "update_engine": "rerun"})
    assert "two" in text and "Fill between slices" in text
    assert "after the Updates 0 slices predicted beyond the structure, 0 flagged" in text
    figures = {b[0]: b for b in bars(summary, 2)}
    assert figures["LA queue order, mean Dice after 4 corrections >= 0.9"][2] == "-"  # K = 2 only


BAD_ARGS = [  # command line -> what the error says (nothing is written)
    (["--data", "{tmp}/none"], "data folder not found"),
    (["--data", "{tmp}/data", "--kinds", "tumour"], "no pyradiomics data"),
    (["--data", "{tmp}/data", "--steps", "0"], "--steps must be at least 1"),
    (["--data", "{tmp}/data", "--kinds", "la", "--json", "{tmp}/no/such/out.json"], "does not exist"),
]


@pytest.mark.parametrize("argv,message", BAD_ARGS)
def test_bad_command_lines_are_refused_before_any_work(tmp_path, capsys, argv, message):
    from oneshotsam.cli import main

    la = tmp_path / "data" / "la"
    la.mkdir(parents=True)
    for part in ("image", "label"):
        (la / f"A_{part}.nii.gz").write_bytes(b"")
    before = sorted(tmp_path.rglob("*"))
    argv = [a.format(tmp=tmp_path) for a in argv] + ["--json", str(tmp_path / "out.json")] * (
        "--json" not in argv)
    assert main(["benchmark", "corrections", *argv]) != 0
    assert message in capsys.readouterr().err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written
