"""``oneshotsam segment`` end to end: medpersam-warp on the synthetic example,
P²SAM with a tiny random SAM checkpoint, a volume slice by slice, and the
console script through a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from oneshotsam.cli import main
from oneshotsam.evaluate import dice

SimpleITK = pytest.importorskip("SimpleITK")
pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "Testing" / "Data" / "example"
#: a very small warping set-up so the run takes seconds (mechanics, not accuracy)
TINY_WARP = ["--preset", "paper", "--set", "resolution=32", "--set", "epochs=1",
             "--set", "batch_size=2", "--set", "max_steps=2",
             "--set", 'net={"enc_channels": 4, "dec_channels": 4, "n_levels": 2}']


def read(path: Path) -> np.ndarray:
    return SimpleITK.GetArrayFromImage(SimpleITK.ReadImage(str(path)))


def segment_argv(out: Path, *extra: str, targets: list[Path] | None = None) -> list[str]:
    tg = [str(p) for p in (targets or [EXAMPLE / "targets"])]
    return ["segment", "--reference-image", str(EXAMPLE / "reference.png"),
            "--reference-mask", str(EXAMPLE / "reference_mask.png"), "--targets", *tg,
            "--output-dir", str(out), "--quiet", *extra]


def test_example_is_present_and_small() -> None:
    files = sorted(p.relative_to(EXAMPLE).as_posix() for p in EXAMPLE.rglob("*.png"))
    assert files == ["ground_truth/case01.png", "ground_truth/case02.png", "ground_truth/case03.png",
                     "ground_truth/case04.png", "reference.png", "reference_mask.png",
                     "targets/case01.png", "targets/case02.png", "targets/case03.png",
                     "targets/case04.png"]
    assert sum(p.stat().st_size for p in EXAMPLE.rglob("*")) < 200_000


def test_medpersam_warp_on_the_example(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("an unrelated file stays")
    rc = main(segment_argv(out, "--method", "medpersam-warp", *TINY_WARP,
                           "--json", str(tmp_path / "copy.json")))
    assert rc == 0, capsys.readouterr().err
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"case0{i}_oneshotsam{s}.png" for i in range(1, 5) for s in ("", "_preview")]
                           + ["keep.txt", "report.json"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".oneshotsam")]
    for case in ("case01", "case02", "case03", "case04"):
        pred = read(out / f"{case}_oneshotsam.png")
        gt = read(EXAMPLE / "ground_truth" / f"{case}.png")
        assert pred.shape == gt.shape == (128, 128) and pred.dtype == np.uint8
        assert set(np.unique(pred)) <= {0, 1, 2}
        # two training steps keep the warp near the identity: the labels land on the organs
        assert dice(pred, gt, 1) > 0.6 and dice(pred, gt, 2) > 0.5
    report = json.loads((out / "report.json").read_text())
    assert report == json.loads((tmp_path / "copy.json").read_text())
    assert report["method"] == "medpersam-warp" and report["reference"]["label_values"] == [1, 2]
    assert report["overrides"]["resolution"] == 32
    assert report["config"]["warp"]["resolution"] == 32
    assert report["run"]["preset"] == "paper" and "chosen_settings" not in report["run"]
    assert [t["output"] for t in report["targets"]] == [f"case0{i}_oneshotsam.png" for i in range(1, 5)]
    first = report["targets"][0]["images"][0]
    assert 0.0 <= first["confidence"] <= 1.0 and "similarity" in first["report"]
    assert report["targets"][0]["window"] == {"low": 0.0, "high": 255.0, "source": "8-bit"}
    assert {"python", "numpy", "torch"} <= set(report["versions"])
    assert report["timings_s"]["total"] >= report["timings_s"]["segment"] > 0


def test_medpersam_warp_without_preset_records_its_choice(tmp_path: Path, capsys) -> None:
    """No --preset: the settings are chosen from the situation and report.json says
    what was chosen and why; the user's --set values win over the choice."""
    out = tmp_path / "out"
    rc = main(segment_argv(out, "--method", "medpersam-warp", *TINY_WARP[2:]))
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    chosen = report["run"]["chosen_settings"]
    assert report["preset"] == "auto" and not report["preset_given"]
    assert chosen["situation"]["kind"] == "cohort" and chosen["situation"]["n_targets"] == 4
    assert chosen["preset"] == report["run"]["preset"] == "cpu-field" and chosen["reasons"]
    assert chosen["user_settings"]["resolution"] == 32 and report["run"]["resolution"] == 32


def test_p2sam_with_a_tiny_checkpoint(tmp_path: Path, capsys) -> None:
    from oneshotsam.backends.tiny import save_tiny_checkpoint
    ckpt = save_tiny_checkpoint(tmp_path / "tiny_sam.pt", "sam-tiny-test")
    out = tmp_path / "out"
    targets = [EXAMPLE / "targets" / "case01.png", EXAMPLE / "targets" / "case02.png"]
    rc = main(segment_argv(out, "--method", "p2sam", "--backend", "sam-tiny-test",
                           "--checkpoint", str(ckpt), "--device", "cpu",
                           "--set", "n_pos=[1, 2]", "--set", "n_neg=[1]", targets=targets))
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["case01_oneshotsam.png", "case01_oneshotsam_preview.png",
                                                     "case02_oneshotsam.png", "case02_oneshotsam_preview.png",
                                                     "report.json"]
    for case in ("case01", "case02"):
        pred = read(out / f"{case}_oneshotsam.png")
        assert pred.shape == (128, 128) and set(np.unique(pred)) <= {0, 1, 2}
    report = json.loads((out / "report.json").read_text())
    assert report["backend"] == "sam-tiny-test" and report["checkpoint"] == str(ckpt)
    assert report["config"]["n_pos"] == [1, 2]
    per_target = report["targets"][0]["images"][0]["report"]
    assert "timings_s" in per_target and "classes" in per_target
    # one encode per distinct image: the reference and the two targets
    assert report["run"].get("encode_calls", 3) == 3


def _volume(path: Path, vox: np.ndarray, spacing, origin, direction) -> Path:
    img = SimpleITK.GetImageFromArray(vox)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    SimpleITK.WriteImage(img, str(path))
    return path


def test_volume_reference_slice_and_volume_target(tmp_path: Path, capsys) -> None:
    """3D reference annotated on slice 2; a 3D target is segmented slice by slice and written
    back as a volume with the target's own geometry."""
    k, j, i = 5, 32, 40
    zz, yy, xx = np.mgrid[0:k, 0:j, 0:i]
    box = (np.abs(yy - 16) < 7) & (np.abs(xx - 20) < 9)
    ref = np.where(box, 200, 30).astype(np.uint8)
    lab = np.zeros_like(ref)
    lab[2][box[2]] = 3
    tgt = np.roll(ref, 2, axis=2)
    rot = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    _volume(tmp_path / "ref.nii.gz", ref, (0.7, 0.7, 2.5), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    _volume(tmp_path / "ref_label.nii.gz", lab, (0.7, 0.7, 2.5), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    _volume(tmp_path / "visit2.nrrd", tgt, (0.8, 0.6, 3.0), (10.0, -5.0, 7.0), rot)
    out = tmp_path / "out"
    argv = ["segment", "--method", "medpersam-warp", *TINY_WARP,
            "--reference-image", str(tmp_path / "ref.nii.gz"),
            "--reference-mask", str(tmp_path / "ref_label.nii.gz"),
            "--targets", str(tmp_path / "visit2.nrrd"), "--output-dir", str(out), "--quiet"]
    rc = main(argv)
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "visit2_oneshotsam.nrrd"]
    res = SimpleITK.ReadImage(str(out / "visit2_oneshotsam.nrrd"))
    assert res.GetSize() == (i, j, k)
    assert np.allclose(res.GetSpacing(), (0.8, 0.6, 3.0))
    assert np.allclose(res.GetOrigin(), (10.0, -5.0, 7.0))
    assert np.allclose(res.GetDirection(), rot)
    arr = SimpleITK.GetArrayFromImage(res)
    assert set(np.unique(arr)) <= {0, 3} and np.count_nonzero(arr) > 0
    report = json.loads((out / "report.json").read_text())
    assert report["reference"]["slice_index"] == 2 and report["reference"]["axis"] == "axial"
    entry = report["targets"][0]
    assert entry["kind"] == "volume" and [e["slice_index"] for e in entry["images"]] == list(range(k))
    assert entry["window"]["source"] == "8-bit"


def test_volume_target_slices_only(tmp_path: Path, capsys) -> None:
    """ACDC protocol shape: reference slice 2 of one volume -> slice 2 of another volume only."""
    k, j, i = 4, 24, 24
    zz, yy, xx = np.mgrid[0:k, 0:j, 0:i]
    box = (np.abs(yy - 12) < 5) & (np.abs(xx - 12) < 6)
    ref = np.where(box, 180, 20).astype(np.uint8)
    lab = np.zeros_like(ref)
    lab[2][box[2]] = 1
    eye = (1, 0, 0, 0, 1, 0, 0, 0, 1)
    _volume(tmp_path / "ed.nii.gz", ref, (1, 1, 1), (0, 0, 0), eye)
    _volume(tmp_path / "ed_label.nii.gz", lab, (1, 1, 1), (0, 0, 0), eye)
    _volume(tmp_path / "es.nii.gz", ref, (1, 1, 1), (0, 0, 0), eye)
    out = tmp_path / "out"
    rc = main(["segment", "--method", "medpersam-warp", *TINY_WARP,
               "--reference-image", str(tmp_path / "ed.nii.gz"),
               "--reference-mask", str(tmp_path / "ed_label.nii.gz"), "--reference-slice", "2",
               "--targets", str(tmp_path / "es.nii.gz"), "--target-slices", "2",
               "--output-dir", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    arr = read(out / "es_oneshotsam.nii.gz")
    assert arr.shape == (k, j, i)
    assert np.count_nonzero(arr[[0, 1, 3]]) == 0 and np.count_nonzero(arr[2]) > 0
    report = json.loads((out / "report.json").read_text())
    assert [e["slice_index"] for e in report["targets"][0]["images"]] == [2]
    bad = main(["segment", "--method", "medpersam-warp", "--reference-image", str(tmp_path / "ed.nii.gz"),
                "--reference-mask", str(tmp_path / "ed_label.nii.gz"), "--targets",
                str(tmp_path / "es.nii.gz"), "--target-slices", "9", "--output-dir",
                str(tmp_path / "out2")])
    assert bad == 2 and "outside 0..3" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


@pytest.mark.skipif(shutil.which("oneshotsam") is None, reason="console script not installed")
def test_console_script_reports_errors_without_traceback(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    SimpleITK.WriteImage(SimpleITK.GetImageFromArray(np.zeros((128, 128), np.uint8)), str(empty))
    proc = subprocess.run(
        ["oneshotsam", "segment", "--method", "medpersam-warp",
         "--reference-image", str(EXAMPLE / "reference.png"), "--reference-mask", str(empty),
         "--targets", str(EXAMPLE / "targets"), "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: the reference mask is empty")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
    version = subprocess.run(["oneshotsam", "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("oneshotsam ")


def test_module_entry_point_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "oneshotsam.cli", "--help"], capture_output=True,
                          text=True, encoding="utf-8", env={**os.environ, "PYTHONIOENCODING": "utf-8"},
                          timeout=120)  # the help names P²SAM: UTF-8 whatever the locale
    assert proc.returncode == 0
    for cmd in ("segment", "evaluate", "weights", "benchmark"):
        assert cmd in proc.stdout
