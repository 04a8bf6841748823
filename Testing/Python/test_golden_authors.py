"""The project's P2SAM / PerSAM pieces against numbers from the authors' own code.

The fixtures in ``golden/`` were produced once, outside the project, by running the
P2SAM authors' code (github Zch0414/P2SAM) and PerSAM's code (github
ZrrSkywalker/Personalize-SAM) on the tiny seed-0 SAM 1 of ``backends/tiny.py``
(their ``_source`` fields say exactly what ran). No pretrained weights are needed:
both sides use the same random tiny weights, so equal numbers mean equal steps.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from oneshotsam.backends.factory import create_backend  # noqa: E402
from oneshotsam.methods.features import (  # noqa: E402
    grid_mapping, lowres_to_grid, reference_cells, similarity_maps)
from oneshotsam.methods.p2sam import P2SAM, P2SAMConfig  # noqa: E402
from oneshotsam.methods.persam import target_guided_attention  # noqa: E402
from oneshotsam.types import Image2D  # noqa: E402

from golden_images import disc, load_cases as _load, textured_rgb as textured  # noqa: E402


def _image2d(rgb):
    return Image2D(rgb[..., 0].astype(np.float32) / 255.0)


@pytest.fixture(scope="module")
def tiny():
    return create_backend("sam-tiny-test", device="cpu", random_weights=True)


@pytest.mark.parametrize("rule,key", [("midpoint", "p2sam_cells_rc"), ("persam", "persam_cells_rc")])
def test_mask_to_grid_cells_match_the_authors(tiny, rule, key):
    cases = _load("grid_cells.json")
    assert len(cases) == 20 and any(not c[key] for c in cases) and any(c["image_hw"][0] !=
                                                                        c["image_hw"][1] for c in cases)
    for c in cases:
        hw = tuple(c["image_hw"])
        m = disc(hw, *c["disc_cy_cx_r"])
        got = np.argwhere(tiny.mask_to_grid_centre(m, hw, rule) > 0).tolist()
        assert got == c[key], (hw, c["disc_cy_cx_r"])


def test_reference_cells_follow_the_authors_and_survive_vanishing_masks(tiny):
    for c in _load("grid_cells.json"):
        hw = tuple(c["image_hw"])
        m = disc(hw, *c["disc_cy_cx_r"])
        emb = tiny.embed(textured(hw, 1))
        cells = reference_cells(tiny, m, grid_mapping(tiny, hw, tiny.valid_grid_hw(emb)))
        if c["p2sam_cells_rc"]:
            assert np.argwhere(cells.foreground).tolist() == c["p2sam_cells_rc"]
            assert cells.messages == ()
        else:  # the authors' code has no foreground here (and crashes later): fall back, say so
            assert cells.foreground.sum() >= 1 and "covers no cell centre" in cells.messages[0]


def test_lowres_to_grid_is_the_authors_bilinear_resize():
    import torch.nn.functional as F

    lr = np.random.default_rng(0).normal(size=(256, 256)).astype(np.float32)
    theirs = F.interpolate(torch.as_tensor(lr)[None, None], size=(64, 64), mode="bilinear")
    assert np.allclose(lowres_to_grid(lr, 64), theirs[0, 0].numpy(), atol=1e-6)
    assert np.allclose(lowres_to_grid(lr[:32, :32], 8),
                       F.interpolate(torch.as_tensor(lr[:32, :32])[None, None], size=(8, 8),
                                     mode="bilinear")[0, 0].numpy(), atol=1e-6)


@pytest.mark.parametrize("name", ["medical_square", "medical_small", "medical_wide_padded",
                                  "medical_tall_padded"])
def test_p2sam_medical_matches_the_authors(tiny, name):
    g = _load("p2sam_medical_pipeline.json")[name]
    spec = g["spec"]
    hw = tuple(spec["hw"])
    ref = textured(hw, 11, [tuple(b) for b in spec["ref"]])
    tgt = textured(hw, 12, [tuple(b) for b in spec["tgt"]])
    mask = disc(hw, *spec["refdisc"]).astype(np.uint8)
    cfg = P2SAMConfig(n_pos=tuple(range(spec["npos"][0], spec["npos"][1] + 1)),
                      n_neg=tuple(range(spec["nneg"][0], spec["nneg"][1] + 1)))
    res = P2SAM(tiny, cfg).segment(_image2d(ref), mask, [_image2d(tgt)])
    rep = res.results[0].report["classes"]["1"]
    assert res.report["reference"]["classes"]["1"]["foreground_cells"] == \
        g["reference_foreground_cells"]
    ours = {(c["n_pos"], c["n_neg"]): c["cost"] for c in rep["candidates"]}
    for (n, m), cost in zip(g["candidates_npos_nneg"], g["costs"]):
        assert ours[(n, m)] == pytest.approx(cost, rel=1e-5), (n, m)
    chosen = g["candidates_npos_nneg"][g["chosen_index"]]
    assert [rep["chosen"]["n_pos"], rep["chosen"]["n_neg"]] == chosen
    assert rep["prompts"]["points_xy"] == [[float(x), float(y)] for x, y in g["chosen_points_xy"]]
    assert rep["prompts"]["point_labels"] == g["chosen_labels"]
    assert min(c for c in ours.values() if c is not None) == pytest.approx(g["best_cost"], rel=1e-5)


def test_persam_decoder_matches_the_authors(tiny):
    """Step 1 of PerSAM: the guidance map built the authors' way (similarity at
    image resolution, standardised there, resized to the grid, sigmoid) and the
    decode with it; the fixture came from their own lines and predictor. The
    square case differs from standardising on the grid too (order of
    standardising and resizing), the non-square ones more."""
    cases = _load("persam_decoder.json")
    assert {tuple(c["image_hw"]) for c in cases} == {(128, 128), (96, 128), (128, 80)}
    for c in cases:
        hw = tuple(c["image_hw"])
        emb = tiny.embed(textured(hw, c["seed"], [tuple(c["blob"])]))
        f = tiny.feature_map(emb)
        rc = np.asarray(c["prototype_cells_rc"])
        proto = f[:, rc[:, 0], rc[:, 1]].mean(axis=1)
        sim = similarity_maps(f, proto)[0]
        attn = target_guided_attention(tiny, sim, grid_mapping(tiny, hw, tiny.valid_grid_hw(emb)))
        assert np.abs(attn - np.asarray(c["attn_sim"])).max() < 2e-6, hw
        d = tiny.decode(emb, np.asarray(c["points_xy"]), np.asarray(c["point_labels"]),
                        multimask=False, token_prototype=proto, attn_sim=attn)
        assert np.abs(d.low_res_logits[0] - np.asarray(c["low_res_logits"])).max() < 5e-5, hw
        assert float(d.scores[0]) == pytest.approx(c["score"], abs=1e-5), hw
