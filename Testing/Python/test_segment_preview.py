"""`segment`'s colour overlay preview beside each label PNG (values 1, 2 look black).

Hand-checkable overlays of tiny images, then the real command on the example
data: every label PNG has a ``*_preview.png`` RGB beside it whose labelled
pixels carry the label's colour and whose other pixels are the target's grey.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from oneshotsam.preview import ALPHA, PALETTE, overlay_rgb, preview_name

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "Testing" / "Data" / "example"


@pytest.mark.parametrize("name, expected", [
    ("case01_oneshotsam.png", "case01_oneshotsam_preview.png"),
    ("a.b_oneshotsam.PNG", "a.b_oneshotsam_preview.png"),
])
def test_preview_name(name, expected):
    assert preview_name(name) == expected


def test_overlay_of_a_5x5_image():
    image = np.full((5, 5), 0.5, dtype=np.float32)
    labels = np.zeros((5, 5), dtype=np.uint8)
    labels[1:4, 1:4] = 1  # a 3x3 square: its centre is inside, the ring its outline
    labels[0, 4] = 2
    rgb = overlay_rgb(image, labels)
    grey = round(0.5 * 255)
    assert rgb.shape == (5, 5, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[4, 0]) == (grey, grey, grey)                       # background: the image
    centre = np.round((1 - ALPHA) * 0.5 * 255 + ALPHA * PALETTE[0]).astype(int)
    assert tuple(rgb[2, 2]) == tuple(centre)                            # inside: blended colour
    assert tuple(rgb[1, 1]) == tuple(np.round(PALETTE[0]).astype(int))  # outline: full colour
    assert tuple(rgb[0, 4]) == tuple(np.round(PALETTE[1]).astype(int))  # label 2: its own colour


def test_overlay_refuses_a_different_grid():
    with pytest.raises(ValueError, match="differ"):
        overlay_rgb(np.zeros((4, 4)), np.zeros((4, 5), dtype=np.uint8))


def test_segment_writes_a_preview_beside_each_label_png(tmp_path):
    pytest.importorskip("torch")
    import SimpleITK as sitk

    from oneshotsam.cli import main

    if not (EXAMPLE / "reference.png").exists():
        pytest.skip("the example data is made by Testing/Data/make_example.py")
    out = tmp_path / "out"
    targets = [EXAMPLE / "targets" / "case01.png"]
    rc = main(["segment", "--method", "medpersam-warp", "--reference-image", str(EXAMPLE / "reference.png"),
               "--reference-mask", str(EXAMPLE / "reference_mask.png"), "--targets", *map(str, targets),
               "--output-dir", str(out), "--device", "cpu", "--preset", "paper", "--set", "resolution=32",
               "--set", "epochs=1", "--set", "batch_size=2", "--set", "max_steps=2",
               "--set", 'net={"enc_channels": 4, "dec_channels": 4, "n_levels": 2}'])
    assert rc == 0
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "case01_oneshotsam.png")))
    preview = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "case01_oneshotsam_preview.png")))
    target = sitk.GetArrayFromImage(sitk.ReadImage(str(targets[0])))
    assert preview.shape == labels.shape + (3,)
    coloured = (preview[..., 0] != preview[..., 1]) | (preview[..., 1] != preview[..., 2])
    assert labels.any() and np.array_equal(coloured[labels == 0], np.zeros((labels == 0).sum(), bool))
    assert coloured[labels > 0].mean() > 0.95  # every label shows in colour
    bg = labels == 0
    grey_target = target if target.ndim == 2 else target[..., 0]
    assert np.corrcoef(preview[..., 0][bg].astype(float), grey_target[bg].astype(float))[0, 1] > 0.99


def test_evaluate_leaves_the_previews_out(tmp_path):
    """A folder of segment outputs: each label PNG is scored, its preview is not
    taken for a prediction (nor listed as one without ground truth)."""
    import SimpleITK as sitk

    from oneshotsam.evaluate import evaluate_pairs
    from oneshotsam.preview import write_preview

    preds, gts = tmp_path / "pred", tmp_path / "gt"
    preds.mkdir()
    gts.mkdir()
    lab = np.zeros((6, 6), dtype=np.uint8)
    lab[1:4, 1:4] = 1
    for folder, name in ((preds, "case01_oneshotsam.png"), (gts, "case01.png")):
        sitk.WriteImage(sitk.GetImageFromArray(lab), str(folder / name))
    write_preview(np.full((6, 6), 0.5, dtype=np.float32), lab, preds / "case01_oneshotsam_preview.png")
    table = evaluate_pairs(preds, gts)
    assert [c.name for c in table.cases] == ["case01"]
    assert table.cases[0].scores[1]["dice"] == 1.0
    assert table.unmatched_predictions == []
