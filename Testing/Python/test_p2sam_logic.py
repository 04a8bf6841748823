"""P2SAM logic on a deterministic fake backend (CellBackend, no torch):
part prompts, retrieval choice, prompt geometry, absent targets, multi-label,
encode counts, cancel, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_features_core import CellBackend, square_image

from oneshotsam.errors import OneShotError
from oneshotsam.methods.p2sam import P2SAM, P2SAMConfig
from oneshotsam.types import Image2D

# reference: core cells (2..3, 2..3), ring one cell wide around it (12 cells)
REF_IMG, REF_CORE, REF_RING = square_image(core=(16, 32, 16, 32), ring=8)
# target: the same structure one cell down-right
TGT_IMG, TGT_CORE, TGT_RING = square_image(core=(24, 40, 24, 40), ring=8)
REF_LAB = (REF_CORE | REF_RING).astype(np.uint8)


def _run(cfg=P2SAMConfig(), backend=None, ref_lab=REF_LAB, targets=None, **kw):
    be = backend or CellBackend()
    targets = targets if targets is not None else [Image2D(TGT_IMG, name="t")]
    res = P2SAM(be, cfg).segment(Image2D(REF_IMG, name="r"), ref_lab, targets, **kw)
    return be, res


def test_retrieval_picks_the_part_count_matching_the_reference():
    _, res = _run()
    r = res.results[0]
    cls = r.report["classes"]["1"]
    # 1 part: one prompt on the ring only -> ring mask (core missing); 2 parts: both
    assert cls["chosen"] == {"n_pos": 2, "n_neg": 1}
    costs = {(c["n_pos"], c["n_neg"]): c["cost"] for c in cls["candidates"]}
    assert costs[(2, 1)] == pytest.approx(0.0, abs=1e-9) and costs[(1, 1)] > 0.1
    assert np.array_equal(r.labels.astype(bool), TGT_CORE | TGT_RING)
    assert r.absent == [] and r.confidence == pytest.approx(0.8)
    assert len(cls["candidates"]) == 15
    json.dumps(res.report), json.dumps(r.report)


@pytest.mark.parametrize("mode, n_neg", [("medical", (1, 2, 3)), ("natural", (1,))])
def test_prompt_geometry(mode, n_neg):
    _, res = _run(P2SAMConfig(mode=mode, n_neg=n_neg))
    pr = res.results[0].report["classes"]["1"]["prompts"]
    pts, labs = np.asarray(pr["points_xy"]), np.asarray(pr["point_labels"])
    assert np.all((pts >= 0) & (pts <= 63))
    inside = (TGT_CORE | TGT_RING)[np.rint(pts[:, 1]).astype(int), np.rint(pts[:, 0]).astype(int)]
    assert inside[labs == 1].all() and not inside[labs == 0].any()
    assert (labs == 0).sum() == (1 if mode == "natural" else
                                 res.results[0].report["classes"]["1"]["chosen"]["n_neg"])


def test_points_stay_off_padding_cells():
    be = CellBackend(pad_cols=2)    # padding cells look exactly like the core
    _, res = _run(backend=be)
    pts = np.asarray(res.results[0].report["classes"]["1"]["prompts"]["points_xy"])
    assert np.all(pts[:, 0] < 48)


def test_every_image_encoded_once_however_many_candidates():
    be = CellBackend()
    t = Image2D(TGT_IMG, name="t")
    same_as_ref = Image2D(REF_IMG.copy(), name="copy-of-ref")
    _, res = _run(backend=be, targets=[t, t, same_as_ref])
    assert be.encode_calls == 2 and res.report["encode_calls"] == 2
    assert len(res.results) == 3
    # duplicate prompt sets (collapsed part counts) are decoded once: <= 3 decodes each
    assert be.decode_calls <= 3 * 3 * 15


def test_all_candidates_empty_means_absent():
    _, res = _run(backend=CellBackend(empty=True))
    r = res.results[0]
    assert r.absent == [1] and not r.labels.any() and r.confidence == 0.0
    assert r.report["classes"]["1"]["chosen"] is None
    assert all(c["cost"] is None for c in r.report["classes"]["1"]["candidates"])
    assert "absent" in r.report["messages"][0]


def test_multilabel_values_and_dtype_kept():
    img = np.full((64, 64), 0.1, np.float32)
    img[8:24, 8:24] = 0.9
    img[40:56, 32:56] = 0.5
    lab = np.zeros((64, 64), np.uint16)
    lab[8:24, 8:24] = 7
    lab[40:56, 32:56] = 300
    tgt = np.full((64, 64), 0.1, np.float32)
    tgt[16:32, 40:56] = 0.9
    tgt[32:48, 0:24] = 0.5
    be = CellBackend()
    res = P2SAM(be, P2SAMConfig(n_pos=(1, 2), n_neg=(1,))).segment(
        Image2D(img), lab, [Image2D(tgt)])
    out = res.results[0].labels
    assert out.dtype == np.uint16 and sorted(np.unique(out).tolist()) == [0, 7, 300]
    assert np.all(out[16:32, 40:56] == 7) and np.all(out[32:48, 0:24] == 300)
    assert set(res.results[0].class_confidence) == {7, 300}


def test_mask_too_small_for_grid_falls_back():
    lab = np.zeros((64, 64), np.uint8)
    lab[21:24, 21:24] = 1                     # 9 px inside cell (2, 2), off its centre
    ref = lab.copy()
    _, res = _run(backend=CellBackend(), ref_lab=lab)   # misses every cell centre
    assert np.array_equal(lab, ref)
    assert any("covers no cell centre" in m for m in res.report["messages"])
    assert res.results[0].labels.shape == (64, 64)


def test_cancel_after_first_target():
    seen = []

    def progress(done, total, msg):
        seen.append((done, total))
        return False

    t = Image2D(TGT_IMG, name="t")
    _, res = _run(targets=[t, t, t], progress=progress)
    assert res.cancelled and len(res.results) == 1 and seen == [(1, 3)]


@pytest.mark.parametrize("bad_labels, match", [
    (np.zeros((64, 64), np.uint8), "reference mask is empty"),
    (np.ones((64, 64), np.uint8), "covers the whole reference"),
    (np.ones((32, 32), np.uint8), "share one pixel grid"),
])
def test_bad_reference_raises(bad_labels, match):
    with pytest.raises(OneShotError, match=match):
        _run(ref_lab=bad_labels)


def test_bad_target_and_config():
    with pytest.raises(OneShotError, match="Image2D"):
        _run(targets=[np.zeros((64, 64), np.float32)])
    with pytest.raises(OneShotError, match="natural mode"):
        P2SAMConfig(mode="natural", n_neg=(1, 2))
    with pytest.raises(OneShotError, match="n_pos"):
        P2SAMConfig(n_pos=())
    with pytest.raises(OneShotError, match="needs a SAM backend"):
        P2SAM.from_preset("default", backend=None)


@pytest.mark.parametrize("preset", ["default", "cvc", "cvc-table10", "lung4d", "perseg",
                                    "paper-cosine"])
def test_every_preset_runs(preset):
    be = CellBackend()
    m = P2SAM.from_preset(preset, backend=be)
    res = m.segment(Image2D(REF_IMG), REF_LAB, [Image2D(TGT_IMG)])
    assert res.results[0].labels.astype(bool).sum() > 0
    assert res.report["cost"] == m.config.cost


class BatchBackend(CellBackend):
    """Adds the optional ``decode_batch`` (padding label -1), by looping."""

    batch_calls = 0

    def decode_batch(self, emb, points_xy, point_labels, box_xyxy=None, mask_logits=None,
                     multimask=False):
        self.batch_calls += 1
        out = []
        for i in range(len(points_xy)):
            keep = np.asarray(point_labels[i]) >= 0
            out.append(self.decode(emb, np.asarray(points_xy[i])[keep],
                                   np.asarray(point_labels[i])[keep],
                                   None if box_xyxy is None else box_xyxy[i],
                                   None if mask_logits is None else mask_logits[i], multimask))
        return out


def test_batched_decoding_matches_one_by_one():
    be_b = BatchBackend()
    _, res_b = _run(backend=be_b)
    _, res_1 = _run()
    assert be_b.batch_calls == 3                    # one call per step for all candidates
    assert np.array_equal(res_b.results[0].labels, res_1.results[0].labels)
    cb, c1 = (r.results[0].report["classes"]["1"] for r in (res_b, res_1))
    assert cb["candidates"] == c1["candidates"] and cb["prompts"] == c1["prompts"]


def test_reference_parts_reused_across_calls(monkeypatch):
    import oneshotsam.methods.p2sam as p2

    calls = []
    real = p2.part_prototypes
    monkeypatch.setattr(p2, "part_prototypes", lambda *a, **k: calls.append(1) or real(*a, **k))
    m = P2SAM(CellBackend(), P2SAMConfig(n_pos=(1, 2), n_neg=(1,)))
    for _ in range(2):
        m.segment(Image2D(REF_IMG), REF_LAB, [Image2D(TGT_IMG)])
    assert len(calls) == 3          # 2 foreground + 1 background clustering, once
    m.segment(Image2D(REF_IMG), REF_LAB * 2, [Image2D(TGT_IMG)])
    assert len(calls) == 6          # other labels: clustered again
