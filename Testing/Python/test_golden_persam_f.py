"""PerSAM-F against the authors' own ``persam_f()`` on the tiny random SAM.

``golden/persam_f.json`` was produced once, outside the project (the authors'
code and the script that ran it are not in the repository), by running
``persam_f()`` of github ZrrSkywalker/Personalize-SAM (commit a7e87245,
``persam_f.py``) with its defaults (1000 epochs, lr 1e-3) on
``oneshotsam.backends.tiny``'s seed-0 SAM 1 loaded ``strict=True`` into their
``per_segment_anything`` classes, on a CPU with their ``.cuda()`` calls made
no-ops; nothing else of theirs was changed. Their folder layout was rebuilt
from the same grey ``textured`` images and disc masks as
``test_golden_authors_full.py`` (PNG bytes, lossless), and their loop segments
every image of the folder, the reference included. Recorded: the reference
point of the training, the learned weights ``(1 - w1 - w2, w1, w2)``, and per
target the point, the scores of the three decodes, the last box and the saved
mask. Same random weights on both sides, so equal numbers mean equal steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_golden_authors_full import _images, _mask, _points

pytest.importorskip("torch")

from oneshotsam.backends.factory import create_backend  # noqa: E402
from oneshotsam.errors import OneShotError  # noqa: E402
from oneshotsam.methods.persam_f import PerSAMF, PerSAMFConfig, train_mask_weights  # noqa: E402
from oneshotsam.methods.registry import create_method  # noqa: E402

CASES = json.loads((Path(__file__).parent / "golden" / "persam_f.json").read_text())["cases"]


@pytest.fixture(scope="module")
def tiny():
    return create_backend("sam-tiny-test", device="cpu", random_weights=True)


@pytest.mark.parametrize("name", ["square", "wide_padded"])
def test_persam_f_matches_the_authors(tiny, name):
    case = CASES[name]
    hw, imgs, mask = _images(case["spec"])
    method = create_method("persam-f", backend=tiny)
    assert (method.config.epochs, method.config.lr) == (1000, 1e-3)   # their defaults
    res = method.segment(imgs[0], mask, imgs)
    ref = res.report["reference"]["1"]
    assert [ref["point_xy"]] == _points(case["reference_point_xy"])
    assert ref["mask_weights"] == pytest.approx(case["mask_weights"], abs=2e-5)
    for want, got in zip(case["targets"], res.results, strict=True):
        rep = got.report["classes"]["1"]
        assert rep["prompts"]["points_xy"] == _points(want["points_xy"])
        assert rep["prompts"]["point_labels"] == want["labels"] == [1]
        assert rep["steps"] == 3 and rep["prompts"]["box_xyxy"] == want["step3_box_xyxy"]
        for ours, theirs in zip(rep["step_scores"], want["step_scores"], strict=True):
            assert np.abs(np.asarray(ours) - theirs).max() < 1e-5
        assert np.array_equal(got.labels == 1, _mask(want["final_mask_packbits"], hw))
        assert got.confidence == pytest.approx(max(0.0, max(want["step_scores"][2])), abs=1e-5)


@pytest.mark.parametrize("logit_sign, expect_first", [(+1, "up"), (-1, "down")])
def test_training_moves_weight_to_the_output_that_matches(logit_sign, expect_first):
    """Hand-checkable: output 0 is +-8 on the mask (right or inverted), outputs 1 and 2
    are flat 0; the first weight (1 - w1 - w2, starting at 1/3) grows when output 0
    is right and shrinks when it is inverted."""
    m = np.zeros((16, 16), bool)
    m[4:12, 4:12] = True
    logits = np.zeros((3, 16, 16), np.float32)
    logits[0] = np.where(m, 8.0, -8.0) * logit_sign
    w, loss = train_mask_weights(logits, m, epochs=50, lr=1e-2)
    assert w.sum() == pytest.approx(1.0, abs=1e-6)
    assert (w[0] > 1 / 3 + 0.1) if expect_first == "up" else (w[0] < 1 / 3 - 0.1)
    assert set(loss) == {"dice", "focal"}
    w0, _ = train_mask_weights(logits, m, epochs=0)
    assert w0 == pytest.approx([1 / 3] * 3)


def test_bad_settings_and_backends_are_refused(tiny):
    with pytest.raises(OneShotError, match="epochs >= 0 and lr > 0"):
        PerSAMFConfig(lr=0)
    with pytest.raises(OneShotError, match="needs a SAM backend"):
        PerSAMF(None)
    with pytest.raises(OneShotError, match="lowres_to_image"):
        PerSAMF(object())


def test_persam_f_through_the_cli(tmp_path):
    """``oneshotsam segment --method persam-f``: the registry, preset, overrides and
    report.json carry the method (the reference's trained weights, per target the steps)."""
    from oneshotsam.backends.tiny import save_tiny_checkpoint
    from oneshotsam.cli import main

    example = Path(__file__).resolve().parents[2] / "Testing" / "Data" / "example"
    ckpt = save_tiny_checkpoint(tmp_path / "tiny_sam.pt", "sam-tiny-test")
    out = tmp_path / "out"
    rc = main(["segment", "--reference-image", str(example / "reference.png"),
               "--reference-mask", str(example / "reference_mask.png"),
               "--targets", str(example / "targets" / "case01.png"), "--output-dir", str(out),
               "--quiet", "--method", "persam-f", "--backend", "sam-tiny-test",
               "--checkpoint", str(ckpt), "--device", "cpu", "--set", "epochs=20"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "persam-f" and report["preset"] == "default"
    assert report["config"]["epochs"] == 20 and report["config"]["lr"] == 1e-3
    ref = report["run"]["reference"]
    assert set(ref) == {"1", "2"} and all(sum(r["mask_weights"]) == pytest.approx(1, abs=1e-5)
                                          for r in ref.values())
    classes = report["targets"][0]["images"][0]["report"]["classes"]
    assert set(classes) == {"1", "2"} and all(c["prompts"]["point_labels"] == [1]
                                              for c in classes.values())
