"""PerSAM on the deterministic fake backend: prompts, cascade, empty masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_features_core import CellBackend, square_image

from oneshotsam.methods.persam import PerSAM, PerSAMConfig
from oneshotsam.types import Image2D

REF_IMG, REF_CORE, _ = square_image(core=(16, 32, 16, 32), ring=0)
TGT_IMG, TGT_CORE, _ = square_image(core=(32, 48, 8, 24), ring=0)


class RecordingBackend(CellBackend):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = []

    def decode(self, emb, points_xy=None, point_labels=None, box_xyxy=None, mask_logits=None,
               multimask=False, token_prototype=None):
        self.calls.append({"box": box_xyxy is not None, "logits": mask_logits is not None,
                           "multimask": multimask, "proto": token_prototype is not None})
        return super().decode(emb, points_xy, point_labels, box_xyxy, mask_logits, multimask,
                              token_prototype)


def _run(be, cfg=PerSAMConfig()):
    return PerSAM(be, cfg).segment(Image2D(REF_IMG), REF_CORE.astype(np.uint8),
                                   [Image2D(TGT_IMG, name="t")])


def test_prompts_and_cascade():
    be = RecordingBackend()
    res = _run(be)
    r = res.results[0]
    cls = r.report["classes"]["1"]
    pts = np.rint(np.asarray(cls["prompts"]["points_xy"])).astype(int)
    assert cls["prompts"]["point_labels"] == [1, 0]
    assert TGT_CORE[pts[0, 1], pts[0, 0]] and not TGT_CORE[pts[1, 1], pts[1, 0]]
    assert np.array_equal(r.labels.astype(bool), TGT_CORE)
    assert cls["steps"] == 3 and r.confidence == pytest.approx(0.8)   # best of 3 scores
    assert be.calls == [
        {"box": False, "logits": False, "multimask": False, "proto": True},
        {"box": False, "logits": True, "multimask": True, "proto": False},
        {"box": True, "logits": True, "multimask": True, "proto": False}]
    assert cls["prompts"]["box_xyxy"] == [8.0, 32.0, 23.0, 47.0]
    # the fake has no attn_sim: the run says so instead of failing
    assert res.report["target_guided_attention"] is False
    assert any("without target-guided attention" in m for m in res.report["messages"])
    json.dumps(res.report)


def test_no_cascade_and_no_semantic_prompt():
    be = RecordingBackend()
    _run(be, PerSAMConfig(cascade=False, semantic_prompting=False))
    assert be.calls == [{"box": False, "logits": False, "multimask": False, "proto": False}]


def test_empty_mask_is_absent_not_a_crash():
    res = _run(CellBackend(empty=True))
    r = res.results[0]
    assert r.absent == [1] and not r.labels.any() and r.confidence == 0.0
    assert r.report["classes"]["1"]["steps"] == 2     # no box from an empty mask
