"""Evaluation: Dice / IoU per label, file pairing, table, JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from oneshotsam import evaluate as ev
from oneshotsam import geometry as g
from oneshotsam import medio
from oneshotsam.errors import OneShotError
from oneshotsam.types import Volume

A = np.array([[1, 1, 0, 0]])
B = np.array([[1, 0, 0, 0]])
Z = np.zeros((1, 4), int)


@pytest.mark.parametrize("pred, gt, label, dice, iou", [
    (A, A, 1, 1.0, 1.0),
    (A, B, 1, 2 / 3, 1 / 2),          # |P|=2, |G|=1, overlap 1
    (B, A, 1, 2 / 3, 1 / 2),
    (Z, A, 1, 0.0, 0.0),
    (A, Z, 1, 0.0, 0.0),
    (Z, Z, 1, 1.0, 1.0),              # empty vs empty = 1 (documented)
    (np.array([[2, 2, 3, 0]]), np.array([[2, 3, 3, 0]]), 3, 2 / 3, 1 / 2),
    (np.ones((2, 2, 2)), np.pad(np.ones((1, 2, 2)), ((0, 1), (0, 0), (0, 0))), 1, 2 / 3, 1 / 2),  # 3D
])
def test_dice_iou_table(pred, gt, label, dice, iou):
    assert ev.dice(pred, gt, label) == pytest.approx(dice)
    assert ev.iou(pred, gt, label) == pytest.approx(iou)


def test_dice_iou_default_labels_and_shape_check():
    gt = np.array([[0, 1, 2, 2]])
    pred = np.array([[0, 1, 1, 2]])
    s = ev.dice_iou(pred, gt)
    assert list(s) == [1, 2]
    assert s[1]["dice"] == pytest.approx(2 / 3) and s[2]["dice"] == pytest.approx(2 / 3)
    assert s[2]["gt_voxels"] == 2 and s[2]["pred_voxels"] == 1
    with pytest.raises(OneShotError, match="shape"):
        ev.dice_iou(np.zeros((2, 3)), np.zeros((3, 2)))


def test_pairing_by_stem_with_tags(tmp_path):
    from pathlib import Path
    preds = [Path(p) for p in ("p/a.png", "p/patient001_ED.nii.gz", "p/b.png", "p/extra.png", "p/test_image.png")]
    gts = [Path(p) for p in ("g/a.png", "g/patient001_ED_label.nii.gz", "g/b.seg.nrrd", "g/lost.png",
                             "g/test_mask.png")]
    pairs, lone_p, lone_g = ev.pair_by_stem(preds, gts)
    assert {(p.name, q.name) for p, q in pairs} == {
        ("a.png", "a.png"), ("patient001_ED.nii.gz", "patient001_ED_label.nii.gz"),
        ("b.png", "b.seg.nrrd"), ("test_image.png", "test_mask.png")}
    assert [p.name for p in lone_p] == ["extra.png"] and [q.name for q in lone_g] == ["lost.png"]


def test_exact_stem_wins_over_loose_match():
    from pathlib import Path
    pairs, _, lone_g = ev.pair_by_stem([Path("x_label.png")], [Path("x.png"), Path("x_label.png")])
    assert [(p.name, q.name) for p, q in pairs] == [("x_label.png", "x_label.png")]
    assert [q.name for q in lone_g] == ["x.png"]


def _png(arr, path):
    sitk.WriteImage(sitk.GetImageFromArray(arr.astype(np.uint8)), str(path))


def test_evaluate_pairs_2d_multiclass(tmp_path):
    pd, gd = tmp_path / "pred", tmp_path / "gt"
    pd.mkdir(), gd.mkdir()
    gt1 = np.array([[1, 1, 2, 2], [0, 0, 3, 3]])
    pr1 = np.array([[1, 1, 2, 0], [0, 0, 3, 3]])      # label 2: dice 2/3, iou 1/2
    gt2 = np.array([[1, 1, 0, 0], [0, 0, 0, 0]])      # labels 2, 3 absent in both -> 1.0
    pr2 = np.array([[1, 0, 0, 0], [0, 0, 0, 0]])      # label 1: dice 2/3, iou 1/2
    _png(gt1, gd / "c1.png"), _png(pr1, pd / "c1.png"), _png(gt2, gd / "c2.png"), _png(pr2, pd / "c2.png")
    t = ev.evaluate_pairs(pd, gd)
    assert t.labels == [1, 2, 3] and [c.name for c in t.cases] == ["c1", "c2"]
    assert t.cases[0].mean("dice") == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert t.cases[1].mean("iou") == pytest.approx((0.5 + 1 + 1) / 3)
    assert t.label_mean(1, "dice") == pytest.approx((1 + 2 / 3) / 2)
    assert t.mean("dice") == pytest.approx(((1 + 2 / 3 + 1) / 3 + (2 / 3 + 1 + 1) / 3) / 2)
    only2 = ev.evaluate_pairs(pd, gd, labels=[2])
    assert only2.labels == [2] and only2.mean("dice") == pytest.approx((2 / 3 + 1) / 2)
    text = ev.format_table(t)
    assert "dice[2]" in text and text.splitlines()[-1].startswith("mean")
    data = json.loads(ev.to_json(t, tmp_path / "out" / "eval.json"))
    assert data == json.loads((tmp_path / "out" / "eval.json").read_text())
    assert data["per_label"]["2"]["dice"] == pytest.approx((2 / 3 + 1) / 2)
    assert data["cases"][0]["scores"]["1"]["dice"] == 1.0


def test_evaluate_pairs_volumes_and_errors(tmp_path):
    aff = g.affine_from_sitk((1, 2, 3), (0.5, 0.5, 2), np.eye(3).ravel())
    gt = np.zeros((3, 4, 4), np.uint8)
    gt[1, 1:3, 1:3] = 1
    pred = gt.copy()
    pred[1, 1, 1] = 0
    medio.write_label_volume(Volume(gt, aff), tmp_path / "gt" / "case_label.nii.gz")
    medio.write_label_volume(Volume(pred, aff), tmp_path / "pred" / "case.seg.nrrd")
    t = ev.evaluate_pairs(tmp_path / "pred", tmp_path / "gt")
    assert t.cases[0].scores[1]["dice"] == pytest.approx(2 * 3 / 7) and not t.cases[0].notes
    medio.write_label_volume(Volume(np.zeros((3, 4, 5), np.uint8), aff), tmp_path / "bad" / "case.nii.gz")
    with pytest.raises(OneShotError, match="shape"):
        ev.evaluate_pairs(tmp_path / "bad", tmp_path / "gt")
    with pytest.raises(OneShotError, match="no prediction pairs"):
        ev.evaluate_pairs(tmp_path / "pred", [tmp_path / "gt" / "other.nii.gz"])


def test_colour_label_image_is_refused(tmp_path):
    (tmp_path / "pred").mkdir(), (tmp_path / "gt").mkdir()
    rgb = np.dstack([np.zeros((2, 2)), np.ones((2, 2)), np.zeros((2, 2))]).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "pred" / "a.png"))
    _png(np.zeros((2, 2)), tmp_path / "gt" / "a.png")
    with pytest.raises(OneShotError, match="colour"):
        ev.evaluate_pairs(tmp_path / "pred", tmp_path / "gt")


@pytest.mark.data
def test_copy_ed_labels_to_es_on_acdc(data_root):
    """Sanity anchor from the issue: copying ED labels to ES scores about 0.58 mean Dice on ACDC."""
    d = data_root / "acdc"
    ed = medio.read_label_volume(d / "patient001_ED_label.nii.gz").voxels
    es = medio.read_label_volume(d / "patient001_ES_label.nii.gz").voxels
    s = ev.dice_iou(ed, es, [1, 2, 3])
    assert 0.2 < np.mean([v["dice"] for v in s.values()]) < 0.95
