"""Follow-ups of a planning contour: a structure that got shorter along the slice axis
is trimmed from its contour's ends inward where the method's label fit is low
(``stoprule.contour_end_trims``), never leaving a hole."""

from __future__ import annotations

import numpy as np
import pytest

from oneshotsam.types import Volume
from oneshotsam.volume.pipeline import PropagationConfig, propagate
from oneshotsam.volume.stoprule import StopRule, contour_end_trims, followup_review
from volume_synth import FitCopyMethod, affine

ALL = {k: {1, 2} for k in range(2, 6)}
TRIM_CASES = [  # label_slices, present, fits, min_fit, max_slices -> removals
    ({1: [2, 3, 4, 5]}, ALL, {2: {1: .5}, 3: {1: .6}, 4: {1: .95}, 5: {1: .9}}, .85, 2, {2: {1}, 3: {1}}),
    # the default: one slice per end at most
    ({1: [2, 3, 4, 5]}, ALL, {2: {1: .5}, 3: {1: .6}, 4: {1: .95}, 5: {1: .9}}, .85, 1, {2: {1}}),
    ({1: [2, 3, 4, 5]}, ALL, {2: {1: .5}, 3: {1: .9}, 4: {1: .95}, 5: {1: .9}}, .85, 9, {2: {1}}),
    # a poor fit in the middle is not an end: no holes
    ({1: [2, 3, 4, 5]}, ALL, {2: {1: .9}, 3: {1: .5}, 4: {1: .95}, 5: {1: .9}}, .85, 9, {}),
    # everything fits poorly: the best-fitting slice stops both walks and is kept
    ({1: [2, 3, 4, 5]}, ALL, {2: {1: .5}, 3: {1: .6}, 4: {1: .4}, 5: {1: .3}}, .85, 9,
     {2: {1}, 4: {1}, 5: {1}}),
    # no evidence at the end (a method without label_fit): nothing is trimmed
    ({1: [2, 3, 4, 5]}, ALL, {3: {1: .5}, 4: {1: .95}, 5: {1: .9}}, .85, 9, {}),
    # already absent at the end slice: the walk continues inward (within max_slices)
    ({1: [2, 3, 4, 5]}, {2: {2}, 3: {1, 2}, 4: {1, 2}, 5: {1, 2}},
     {3: {1: .5}, 4: {1: .95}, 5: {1: .9}}, .85, 2, {3: {1}}),
    ({1: [2, 3, 4, 5]}, {2: {2}, 3: {1, 2}, 4: {1, 2}, 5: {1, 2}},
     {3: {1: .5}, 4: {1: .95}, 5: {1: .9}}, .85, 1, {}),
    # labels are independent; 0 disables
    ({1: [2, 3, 4, 5], 2: [3, 4, 5]}, ALL,
     {2: {1: .9}, 3: {1: .9, 2: .2}, 4: {1: .9, 2: .9}, 5: {1: .2, 2: .9}}, .85, 1, {3: {2}, 5: {1}}),
    ({1: [2, 3, 4, 5]}, ALL, {2: {1: .5}, 3: {1: .6}, 4: {1: .95}, 5: {1: .9}}, 0.0, 9, {}),
    ({1: [2, 3, 4, 5]}, ALL, {2: {1: .5}, 3: {1: .6}, 4: {1: .95}, 5: {1: .9}}, .85, 0, {}),
    ({1: [4]}, ALL, {4: {1: .1}}, .85, 9, {}),  # a one-slice contour has no ends to trim
]


@pytest.mark.parametrize("label_slices,present,fits,min_fit,max_slices,expected", TRIM_CASES)
def test_contour_end_trims_table(label_slices, present, fits, min_fit, max_slices, expected):
    assert contour_end_trims(label_slices, present, fits, min_fit, max_slices) == expected


def _shortened_followup():
    """Reference: label 1 on slices 1..6 (bright square); follow-up: the square is
    gone from slices 1 and 6 (dark there) and, as a decoy, dimmed to half on slice 3."""
    aff = affine((1.0, 1.0, 3.0), (0, 0, 0))
    ref = np.full((8, 24, 24), 0.1, np.float32)
    lab = np.zeros((8, 24, 24), np.uint8)
    ref[1:7, 6:18, 6:18] = 0.9
    lab[1:7, 6:18, 6:18] = 1
    fol = ref.copy()
    fol[[1, 6], 6:18, 6:18] = 0.1
    fol[3, 6:12, 6:18] = 0.1  # half the square dark in the middle: not an end
    return Volume(ref, aff, "ref"), Volume(lab, aff, "lab"), Volume(fol, aff, "fol")


@pytest.mark.parametrize("min_fit,trimmed,flagged", [(0.85, [1, 6], [3]), (0.0, [], [1, 3, 6])])
def test_dense_followup_trims_shortened_ends(min_fit, trimmed, flagged):
    ref, lab, fol = _shortened_followup()
    cfg = PropagationConfig(method="fitcopy-test", window="0,1", align=False,
                            contour_end_min_fit=min_fit)
    res = propagate(ref, lab, [fol], cfg, method=FitCopyMethod())
    out = np.asarray(res.label_volumes[0].voxels)
    per = {p["slice"]: p for p in res.report["targets"][0]["per_slice"]}
    for k in range(1, 7):
        assert out[k].any() is not (k in trimmed), k
        assert per[k]["labels"]["1"]["present"] is not (k in trimmed)
        if k in trimmed:
            assert "contour's end" in per[k]["labels"]["1"]["stop"]
        # flagged: the slices whose label fits poorly where it is still drawn (the risk
        # model of stoprule.followup_risk); an emptied slice has no pixel at stake
        assert per[k]["flagged"] is (k in flagged), per[k]
    assert out[3].any()  # the dimmed middle slice is never a hole
    assert per[3]["labels"]["1"]["fit"] == pytest.approx(0.5)


RULE = StopRule(review_confidence=0.5, review_area_change=1.6)
REVIEW_CASES = [  # confidence, areas {slice: {v: (follow-up, reference)}} -> flagged slices
    # every slice shrank by half (a contraction): nothing stands out
    ({1: .9, 2: .9, 3: .9}, {1: {1: (50, 100)}, 2: {1: (60, 120)}, 3: {1: (40, 80)}}, set()),
    # one slice shrank to a fifth while the volume's typical change is x0.5: flagged
    ({1: .9, 2: .9, 3: .9}, {1: {1: (50, 100)}, 2: {1: (24, 120)}, 3: {1: (40, 80)}}, {2}),
    # ... or grew: flagged the other way
    ({1: .9, 2: .9, 3: .9}, {1: {1: (50, 100)}, 2: {1: (120, 120)}, 3: {1: (40, 80)}}, {2}),
    # low confidence is flagged whatever the areas
    ({1: .9, 2: .3, 3: .9}, {1: {1: (50, 100)}, 2: {1: (60, 120)}, 3: {1: (40, 80)}}, {2}),
    # labels are judged against their own typical change
    ({1: .9, 2: .9}, {1: {1: (50, 100), 2: (100, 100)}, 2: {1: (60, 120), 2: (90, 100)}}, set()),
]


@pytest.mark.parametrize("confidence,areas,flagged", REVIEW_CASES)
def test_followup_review_table(confidence, areas, flagged):
    out = followup_review(RULE, confidence, areas)
    assert set(out) == set(areas)
    assert {k for k, (f, _) in out.items() if f} == flagged
    assert all(bool(why) == f for f, why in out.values())


@pytest.mark.parametrize("kw", [{"contour_end_min_fit": -0.1}, {"contour_end_min_fit": float("nan")},
                                {"contour_end_max_slices": -1}])
def test_bad_trim_settings_are_refused(kw):
    from oneshotsam.errors import OneShotError

    ref, lab, fol = _shortened_followup()
    with pytest.raises(OneShotError, match="must be >= 0"):
        propagate(ref, lab, [fol], PropagationConfig(method="fitcopy-test", window="0,1", align=False, **kw),
                  method=FitCopyMethod())
