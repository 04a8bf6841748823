"""An empty step-2 mask (the cascade cannot build step 3's box) is reported per
target and puts the target on the review queue, for PerSAM and P2SAM.

The authors' code crashes there (``x.min()`` of an empty mask), so there is no
published answer; the project reports the label absent and says why in
``TargetResult.report["review"]`` (written to report.json with the target), which
the volume path's review flag reads (:func:`oneshotsam.volume.stoprule.review_flag`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_features_core import CellBackend, square_image

from oneshotsam.methods.p2sam import P2SAM, P2SAMConfig
from oneshotsam.methods.persam import PerSAM
from oneshotsam.types import Image2D
from oneshotsam.volume.chain import Run, SliceOutcome, walk_runs
from oneshotsam.volume.stoprule import StopRule, review_flag

REF_IMG, REF_CORE, _ = square_image(core=(16, 32, 16, 32), ring=0)
TGT_IMG, TGT_CORE, _ = square_image(core=(32, 48, 8, 24), ring=0)
REASON = "step-2 mask was empty"


def _methods(backend):
    return {"persam": PerSAM(backend),
            "p2sam": P2SAM(backend, P2SAMConfig(n_pos=(1, 2), n_neg=(1,)))}


@pytest.mark.parametrize("name", ["persam", "p2sam"])
@pytest.mark.parametrize("empty", [True, False])
def test_step2_empty_is_reported_per_target(name, empty):
    method = _methods(CellBackend(empty=empty))[name]
    r = method.segment(Image2D(REF_IMG), REF_CORE.astype(np.uint8),
                       [Image2D(TGT_IMG, name="t")]).results[0]
    cls = r.report["classes"]["1"]
    if empty:
        assert r.absent == [1] and not r.labels.any()
        assert cls.get("step2_empty") is True
        assert len(r.report["review"]) == 1 and REASON in r.report["review"][0]
        assert r.report["review"][0] in r.report["messages"]
        if name == "p2sam":
            assert cls["step2_empty_candidates"] == len(cls["candidates"]) == 2
    else:
        assert r.absent == [] and "review" not in r.report and "step2_empty" not in cls
        assert np.array_equal(r.labels.astype(bool), TGT_CORE)
    json.dumps(r.report)


@pytest.mark.parametrize("reasons, confidence, flagged, why", [
    ((), 0.9, False, ""),
    ((), 0.2, True, "confidence 0.20 < 0.5"),
    (("label 1: the step-2 mask was empty",), 0.9, True, "label 1: the step-2 mask was empty"),
    (("a", "b"), 0.2, True, "a; b"),   # the method's own reasons come first
])
def test_review_flag_reads_the_methods_reasons(reasons, confidence, flagged, why):
    assert review_flag(StopRule(), confidence, [], reasons) == (flagged, why)


@pytest.mark.parametrize("empty", [True, False])
def test_volume_walk_flags_a_slice_whose_step2_was_empty(empty):
    """Slice 0 annotated, slice 1 propagated by PerSAM: the review flag of slice 1
    carries the method's reason, not only its low confidence."""
    slices = {0: Image2D(REF_IMG), 1: Image2D(TGT_IMG)}
    method = PerSAM(CellBackend(empty=empty))

    def step(src, src_labels, dst):
        return method.segment(slices[src], src_labels, [slices[dst]]).results[0]

    seed = SliceOutcome(0, REF_CORE.astype(np.uint8), 1.0, False, "seed")
    out, cancelled = walk_runs([Run(0, 1, [1])], {0: seed}, step, StopRule(), 1.0,
                               lambda message: True)
    assert not cancelled
    if empty:
        assert out[1].flagged and REASON in out[1].info["review"]
    else:
        assert not out[1].flagged and "review" not in out[1].info
