"""P2SAM and PerSAM end to end on the tiny random-weight REAL SAM 1 / SAM 2
architectures (a bright disk on noise): shapes, values, reports, encode counts,
grid geometry of the real resize/pad rules."""

from __future__ import annotations

import json

import numpy as np
import pytest

from oneshotsam.methods.features import grid_mapping
from oneshotsam.methods.p2sam import P2SAM, P2SAMConfig
from oneshotsam.methods.persam import PerSAM, PerSAMConfig
from oneshotsam.types import Image2D

BACKENDS = ["sam-tiny-test", "sam2-tiny-test"]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    from oneshotsam.backends.factory import create_backend

    return create_backend(request.param, random_weights=True, device="cpu")


def disk_image(h, w, cy, cx, r, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    img = rng.uniform(0.0, 0.3, (h, w)).astype(np.float32)
    img[inside] = 0.9
    return Image2D(img, name=f"disk{seed}"), inside


REF, REF_MASK = disk_image(96, 128, 40, 50, 18, seed=0)
TARGETS = [disk_image(96, 128, 50, 70, 16, seed=1)[0], disk_image(80, 80, 30, 30, 12, seed=2)[0]]


@pytest.mark.parametrize("method", ["p2sam", "persam"])
def test_end_to_end(backend, method):
    m = (P2SAM(backend, P2SAMConfig(n_pos=(1, 2, 3), n_neg=(1, 2)))
         if method == "p2sam" else PerSAM(backend))
    lab = REF_MASK.astype(np.uint8) * 4
    lab_before = lab.copy()
    calls0 = backend.encode_calls
    res = m.segment(REF, lab, TARGETS + [TARGETS[0]])
    assert np.array_equal(lab, lab_before)
    assert len(res.results) == 3 and not res.cancelled
    # one encode per distinct image (reference + 2 targets), whatever the candidates
    assert backend.encode_calls - calls0 <= 3 and res.report["encode_calls"] <= 3
    for r, t in zip(res.results, TARGETS + [TARGETS[0]]):
        assert r.labels.shape == t.shape_hw and r.labels.dtype == np.uint8
        assert set(np.unique(r.labels).tolist()) <= {0, 4}
        assert 0.0 <= r.confidence <= 1.0
        cls = r.report["classes"]["4"]
        pts = np.asarray(cls["prompts"]["points_xy"])
        h, w = t.shape_hw
        assert np.all(pts >= 0) and np.all(pts[:, 0] <= w - 1) and np.all(pts[:, 1] <= h - 1)
        json.dumps(r.report)
    assert np.array_equal(res.results[0].labels, res.results[2].labels)  # deterministic
    json.dumps(res.report)


def test_encode_count_exact(backend):
    backend.clear_cache()
    calls0 = backend.encode_calls
    P2SAM(backend).segment(REF, REF_MASK.astype(np.uint8), TARGETS)   # 15 candidates each
    assert backend.encode_calls - calls0 == 3


def test_p2sam_multilabel(backend):
    lab = np.zeros((96, 128), np.int16)
    lab[REF_MASK] = 2
    lab[70:90, 90:120] = 5
    res = P2SAM(backend, P2SAMConfig(n_pos=(1, 2), n_neg=(1,))).segment(REF, lab, TARGETS[:1])
    r = res.results[0]
    assert r.labels.dtype == np.int16 and set(np.unique(r.labels).tolist()) <= {0, 2, 5}
    assert set(r.report["classes"]) == {"2", "5"}
    assert set(r.class_confidence) == {2, 5}


def test_persam_attention_switch(backend):
    on = PerSAM(backend, PerSAMConfig(target_guided_attention=True)).segment(
        REF, REF_MASK.astype(np.uint8), TARGETS[:1])
    off = PerSAM(backend, PerSAMConfig(target_guided_attention=False,
                                       semantic_prompting=False)).segment(
        REF, REF_MASK.astype(np.uint8), TARGETS[:1])
    assert on.report["target_guided_attention"] is True
    assert off.report["target_guided_attention"] is False
    assert on.results[0].labels.shape == off.results[0].labels.shape == (96, 128)


def test_grid_geometry_of_real_backend(backend):
    emb = backend.embed(REF.rgb_uint8())
    valid = backend.valid_grid_hw(emb)
    m = grid_mapping(backend, REF.shape_hw, valid)
    cell_px = backend.input_size / backend.grid_size          # 16 input px per cell
    if backend.name.startswith("sam2"):                       # stretch both axes
        assert valid == (8, 8)
        sx, sy = 128 / backend.input_size, 96 / backend.input_size
    else:                                                     # long side -> 128, pad rows
        assert valid == (6, 8)
        sx = sy = 128 / backend.input_size
    pts = m.cells_to_points_xy(np.array([[3, 3], [1, 5]]))
    want = np.array([[(3.5 * cell_px) * sx - 0.5, (3.5 * cell_px) * sy - 0.5],
                     [(5.5 * cell_px) * sx - 0.5, (1.5 * cell_px) * sy - 0.5]])
    assert np.allclose(pts, want, atol=0.05)


def test_natural_mode_decodes_like_the_authors_perseg(backend, monkeypatch):
    """Natural mode = the authors' p2sam_perseg: step 1 with target-semantic prompting
    and target-guided attention, steps 2-3 multimask (best score kept)."""
    calls = []
    real = backend.decode

    def decode(emb, points_xy=None, point_labels=None, box_xyxy=None, mask_logits=None,
               multimask=False, token_prototype=None, attn_sim=None):
        calls.append((bool(multimask), token_prototype is not None, attn_sim is not None,
                      mask_logits is not None, box_xyxy is not None))
        return real(emb, points_xy, point_labels, box_xyxy=box_xyxy, mask_logits=mask_logits,
                    multimask=multimask, token_prototype=token_prototype, attn_sim=attn_sim)

    monkeypatch.setattr(backend, "decode", decode)
    m = P2SAM(backend, P2SAMConfig(mode="natural", n_pos=(1, 2), n_neg=(1,)))
    res = m.segment(REF, REF_MASK.astype(np.uint8), TARGETS[:1])
    assert m.attention_supported
    assert calls[0] == (False, True, True, False, False)          # step 1
    assert calls[1] == (True, False, False, True, False)          # step 2: + logits, multimask
    steps = {c for c in calls}
    assert steps <= {(False, True, True, False, False), (True, False, False, True, False),
                     (True, False, False, True, True)}
    cls = res.results[0].report["classes"]["1"]
    assert [c["n_pos"] for c in cls["candidates"]] == [1, 2]
    assert cls["prompts"]["point_labels"][-1] == 0                # one PerSAM-style negative
