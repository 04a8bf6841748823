"""benchmark2d protocols on tiny fake data folders (reference choice, pairing, scoring)."""

from __future__ import annotations

import json

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
sitk = pytest.importorskip("SimpleITK")

from oneshotsam.benchmark2d import _scores, run_benchmark  # noqa: E402
from conftest import TINY_WARP_2D  # noqa: E402
from oneshotsam.errors import OneShotError  # noqa: E402

TINY = {**TINY_WARP_2D, "epochs": 0, "min_steps": 0, "max_steps": 0}


def _blob_case(shift: int, s: int = 64):
    img = np.full((s, s), 40, np.uint8)
    lab = np.zeros((s, s), np.uint8)
    lab[10 + shift:30 + shift, 8:28] = 1
    lab[35:55, 30 + shift:50 + shift] = 3
    img[lab > 0] = 200
    return img, lab


SCORE_CASES = [  # pred, gt, values -> {value: (dice, iou)}
    (np.array([[1, 1], [0, 0]]), np.array([[1, 1], [0, 0]]), [1], {1: (1.0, 1.0)}),
    (np.array([[1, 0], [0, 0]]), np.array([[1, 1], [0, 0]]), [1], {1: (2 / 3, 0.5)}),
    (np.array([[1, 0], [2, 0]]), np.array([[1, 0], [0, 0]]), [1, 2], {1: (1.0, 1.0)}),  # 2 absent from gt
]


@pytest.mark.parametrize("pred,gt,values,expected", SCORE_CASES)
def test_scores(pred, gt, values, expected):
    got = _scores(pred, gt, values)
    assert got.keys() == expected.keys()
    for k in expected:
        assert got[k] == pytest.approx(expected[k])


def test_jsrt_protocol_uses_first_id_as_reference(tmp_path):
    for sub in ("images", "labels"):
        (tmp_path / "jsrt" / sub).mkdir(parents=True)
    for name, shift in (("B002", 4), ("A001", 0), ("C003", 8)):
        img, lab = _blob_case(shift)
        cv2.imwrite(str(tmp_path / "jsrt" / "images" / f"{name}.png"), img)
        cv2.imwrite(str(tmp_path / "jsrt" / "labels" / f"{name}.png"), lab)
    s = run_benchmark("jsrt", "medpersam-warp", tmp_path, preset="paper", device="cpu",
                      overrides=TINY, out_dir=tmp_path / "out", echo=None)
    assert [c["reference"] for c in s["per_case"]] == ["A001", "A001"]
    assert [c["target"] for c in s["per_case"]] == ["B002", "C003"]
    # untrained model = identity: Dice of the shifted boxes, computed by hand
    assert s["per_case"][0]["dice"]["right lung"] == pytest.approx(2 * 16 * 20 / 800)
    assert set(s["per_class"]) == {"right lung", "heart"}
    saved = json.loads((tmp_path / "out" / "jsrt_medpersam-warp.json").read_text())
    assert saved["cases"] == 2


def test_acdc_protocol_pairs_same_slice_where_both_labelled(tmp_path):
    (tmp_path / "acdc").mkdir()
    ed_img, ed_lab = _blob_case(0)
    es_img, es_lab = _blob_case(2)
    vol = lambda *sl: np.stack(sl).astype(np.uint8)
    empty = np.zeros_like(ed_lab)
    arrays = {"patient001_ED": vol(ed_img, ed_img, ed_img), "patient001_ED_label": vol(ed_lab, empty, ed_lab),
              "patient001_ES": vol(es_img, es_img, es_img), "patient001_ES_label": vol(es_lab, es_lab, empty)}
    for k, a in arrays.items():
        sitk.WriteImage(sitk.GetImageFromArray(a), str(tmp_path / "acdc" / f"{k}.nii.gz"))
    s = run_benchmark("acdc", "medpersam-warp", tmp_path, preset="paper", device="cpu",
                      overrides=TINY, echo=None)
    assert s["cases"] == 1 and s["calls"] == 1  # only slice 0 has labels at both phases
    assert s["per_case"][0]["target"] == "patient001_ES_0"


def test_unknown_dataset_and_missing_data(tmp_path):
    with pytest.raises(OneShotError):
        run_benchmark("nope", "medpersam-warp", tmp_path, echo=None)
    with pytest.raises(OneShotError):
        run_benchmark("jsrt", "medpersam-warp", tmp_path, preset="paper", overrides=TINY, echo=None)


@pytest.mark.parametrize("start,limit,expected", [(0, None, ["patient001", "patient002", "patient003"]),
                                                  (1, 1, ["patient002"]), (2, 5, ["patient003"]),
                                                  (3, None, [])])
def test_acdc_cases_shards_by_patient(tmp_path, start, limit, expected):
    from oneshotsam.benchmark2d import acdc_cases
    (tmp_path / "acdc").mkdir()
    img, lab = _blob_case(0)
    for p in ("patient001", "patient002", "patient003"):
        for suffix, a in (("ED", img), ("ES", img), ("ED_label", lab), ("ES_label", lab)):
            sitk.WriteImage(sitk.GetImageFromArray(a[None]), str(tmp_path / "acdc" / f"{p}_{suffix}.nii.gz"))
    groups = acdc_cases(tmp_path, limit, start)
    assert [g[0].name[:10] for g in groups] == expected
