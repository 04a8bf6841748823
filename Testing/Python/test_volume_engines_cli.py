"""Volume engines with real models at tiny sizes (mechanics, not accuracy), the
outputs and the ``oneshotsam propagate`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from oneshotsam.types import Volume
from oneshotsam.volume.pipeline import PropagationConfig, propagate
from volume_synth import affine, ellipsoid, sample

TINY_WARP = (("steps", 4), ("followup_steps", 4), ("resolution", 32), ("batch", 2), ("aug_per_step", 1), ("cross_repeat", 1))


def _volume(shape=(8, 32, 32)):
    aff = affine((1.0, 1.0, 1.5), (0, 0, 0))
    vol = sample(lambda p: 0.2 + 0.7 * ellipsoid((16, 15, 5), (8, 6, 3))(p), shape, aff, "tiny")
    truth = (sample(ellipsoid((16, 15, 5), (8, 6, 3)), shape, aff).voxels > 0.5).astype(np.uint8)
    lab = np.zeros_like(truth)
    lab[3] = truth[3]
    return vol, Volume(lab, aff, "lab", {"segments": [{"value": 1, "name": "ball", "color": [0, 1, 0]}]}), truth


def test_warp_volume_engine_within_and_followup() -> None:
    import torch

    torch.manual_seed(0)
    vol, lab, truth = _volume()
    cfg = PropagationConfig(method="medpersam-warp", window="0,1", device="cpu",
                            method_overrides=TINY_WARP)
    res = propagate(vol, lab, config=cfg)
    out = np.asarray(res.label_volumes[0].voxels)
    eng = res.report["engine"]
    assert eng["engine"] == "warp-volume" and len(eng["loss_first_last"]) == 2
    assert out.shape == truth.shape and np.array_equal(out[3], truth[3])
    per = res.report["targets"][0]["per_slice"]
    assert all(0.0 <= p["confidence"] <= 1.0 for p in per)
    # the ball spans slices 2..5: warped labels are kept where it is, and the
    # appearance refinement empties them where it ends, so the area rule stops there
    assert [k for k in range(8) if out[k].any()] == [2, 3, 4, 5]
    assert truth[[2, 4, 5]].any(axis=(1, 2)).all() and not truth[[0, 1, 6, 7]].any()
    stopped = res.report["targets"][0]["slices_stopped"]
    assert 1 in stopped and 6 in stopped and 0 in stopped and 7 in stopped
    assert (out[[2, 4, 5]] == truth[[2, 4, 5]]).mean() > 0.97
    # follow-up: the same volume as a target, seeds predicted across visits
    res2 = propagate(vol, lab, [vol], PropagationConfig(
        method="medpersam-warp", window="0,1", device="cpu", align=False, method_overrides=TINY_WARP))
    per2 = {p["slice"]: p for p in res2.report["targets"][0]["per_slice"]}
    assert per2[3]["status"] == "seed" and per2[3]["kind"] == "cross-visit"
    assert np.asarray(res2.label_volumes[0].voxels)[3].sum() > 0.5 * truth[3].sum()


def test_unknown_engine_setting_is_a_oneshot_error() -> None:
    from oneshotsam.errors import OneShotError

    vol, lab, _ = _volume()
    with pytest.raises(OneShotError, match="valid"):
        propagate(vol, lab, config=PropagationConfig(window="0,1", method_overrides=(("stepz", 3),)))


def test_p2sam_tiny_chain_bounded_encoder_calls() -> None:
    """P2SAM on a tiny random SAM: chains through the volume, encoding each slice
    at most once or twice (bounded backend cache; no stack of embeddings)."""
    from oneshotsam.backends.factory import create_backend
    from oneshotsam.methods.registry import create_method

    backend = create_backend("sam-tiny-test", random_weights=True, device="cpu", cache_size=4)
    method = create_method("p2sam", backend=backend, device="cpu")
    vol, lab, truth = _volume()
    res = propagate(vol, lab, config=PropagationConfig(method="p2sam", window="0,1",
                                                       propagation="chain"), method=method)
    rep = res.report["targets"][0]
    processed = len(rep["slices_predicted"]) + len(rep["slices_stopped"])
    assert res.report["engine"]["engine"] == "method-chain"
    assert res.label_volumes[0].shape_kji == truth.shape
    assert backend.encode_calls <= 2 * (processed + 1)


def _write(path: Path, vol: Volume) -> Path:
    from oneshotsam.geometry import volume_to_sitk
    import SimpleITK as sitk

    sitk.WriteImage(volume_to_sitk(vol), str(path))
    return path


def test_cli_propagate_writes_outputs_in_target_geometry(tmp_path: Path) -> None:
    from oneshotsam.cli import main
    from oneshotsam.medio import read_label_volume, write_label_volume

    vol, lab, _ = _volume()
    ref_p = _write(tmp_path / "ref.nii.gz", Volume(np.asarray(vol.voxels), vol.ijk_to_lps))
    lab_p = write_label_volume(lab, tmp_path / "ref_labels.seg.nrrd")
    tgt_aff = affine((1.1, 0.9, 1.6), (1.0, -0.5, 0.5), np.diag([-1.0, 1.0, 1.0]))
    tgt_aff[:3, 3] = (31.0, 0.0, 0.0)
    tgt = sample(lambda p: 0.2 + 0.7 * ellipsoid((16, 15, 5), (8, 6, 3))(p), (8, 34, 30), tgt_aff)
    tgt_p = _write(tmp_path / "visit2.nrrd", tgt)
    out = tmp_path / "out"
    args = ["propagate", "--reference-volume", str(ref_p), "--reference-labels", str(lab_p),
            "--targets", str(tgt_p), "--output-dir", str(out), "--window", "0,1", "--no-align",
            "--device", "cpu", "--quiet"] + sum((["--set", f"{k}={v}"] for k, v in TINY_WARP), [])
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "visit2_oneshotsam.nrrd", "visit2_oneshotsam.seg.nrrd"]
    back = read_label_volume(out / "visit2_oneshotsam.nrrd")
    assert back.shape_kji == tgt.shape_kji and np.allclose(back.ijk_to_lps, tgt.ijk_to_lps, atol=1e-4)
    seg = read_label_volume(out / "visit2_oneshotsam.seg.nrrd")
    assert [s["name"] for s in seg.meta["segments"]] == ["ball"]
    report = json.loads((out / "report.json").read_text())
    assert report["cancelled"] is False and report["config"]["align"] is False
    assert report["targets"][0]["alignment"]["kind"] == "identity"
    assert report["window"]["low"] == 0.0 and report["window"]["high"] == 1.0


def test_cli_propagate_without_targets_named_after_reference(tmp_path: Path) -> None:
    from oneshotsam.cli import main
    from oneshotsam.medio import write_label_volume

    vol, lab, _ = _volume()
    ref_p = _write(tmp_path / "scan.nii.gz", Volume(np.asarray(vol.voxels), vol.ijk_to_lps))
    lab_p = write_label_volume(lab, tmp_path / "scan_label.nii.gz")
    out = tmp_path / "o"
    args = ["propagate", "--reference-volume", str(ref_p), "--reference-labels", str(lab_p),
            "--output-dir", str(out), "--window", "0,1", "--device", "cpu", "--quiet"] + sum(
        (["--set", f"{k}={v}"] for k, v in TINY_WARP), [])
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "scan_oneshotsam.nii.gz", "scan_oneshotsam.seg.nrrd", "session.pt"]


def test_cli_2d_image_where_volume_needed(tmp_path: Path, capsys) -> None:
    import cv2

    from oneshotsam.cli import main

    png = tmp_path / "xray.png"
    cv2.imwrite(str(png), np.zeros((16, 16), np.uint8))
    rc = main(["propagate", "--reference-volume", str(png), "--reference-labels", str(png),
               "--output-dir", str(tmp_path / "o")])
    assert rc == 2
    assert "2D" in capsys.readouterr().err
