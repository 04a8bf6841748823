"""``oneshotsam segment`` refuses bad inputs: one clear line, exit 2, nothing written.

Table of cases (MONAI style): each builds a small bad input in a temporary
folder, runs ``main([...])`` and checks the message, the exit status, that
there is no traceback, and that neither the output folder nor a temporary
folder was left behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from oneshotsam.cli import main

SimpleITK = pytest.importorskip("SimpleITK")


def write(path: Path, array: np.ndarray, spacing=None, is_vector: bool = False) -> Path:
    img = SimpleITK.GetImageFromArray(array, isVector=is_vector)
    if spacing is not None:
        img.SetSpacing(spacing)
    SimpleITK.WriteImage(img, str(path))
    return path


def blob_image(h: int = 48, w: int = 48, dy: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """8-bit image with a bright disc, and its label map (value 1)."""
    yy, xx = np.mgrid[0:h, 0:w]
    disc = (yy - h // 2 - dy) ** 2 + (xx - w // 2) ** 2 <= (min(h, w) // 5) ** 2
    img = np.where(disc, 200, 40).astype(np.uint8)
    return img, disc.astype(np.uint8)


@pytest.fixture()
def good(tmp_path: Path) -> dict[str, Path]:
    img, lab = blob_image()
    tgt, _ = blob_image(dy=3)
    (tmp_path / "targets").mkdir()
    return {
        "ref": write(tmp_path / "ref.png", img),
        "mask": write(tmp_path / "mask.png", lab),
        "target": write(tmp_path / "targets" / "t1.png", tgt),
        "out": tmp_path / "work" / "out",
        "tmp": tmp_path,
    }


def _args(p: dict[str, Path], **over: object) -> list[str]:
    a = {"--method": "medpersam-warp", "--reference-image": p["ref"], "--reference-mask": p["mask"],
         "--targets": p["target"], "--output-dir": p["out"]}
    a.update({k: v for k, v in over.items() if k.startswith("--")})
    argv = ["segment"]
    for k, v in a.items():
        if v is None:
            continue
        argv.append(k)
        argv.extend(str(x) for x in (v if isinstance(v, list) else [v]))
    return argv


def _empty_mask(p):
    return {"--reference-mask": write(p["tmp"] / "empty.png", np.zeros((48, 48), np.uint8))}


def _full_mask(p):
    return {"--reference-mask": write(p["tmp"] / "full.png", np.ones((48, 48), np.uint8))}


def _size_mismatch(p):
    return {"--reference-mask": write(p["tmp"] / "small.png", blob_image(40, 48)[1])}


def _nan_target(p):
    a = np.full((48, 48), 0.5, np.float32)
    a[3, 4] = np.nan
    return {"--targets": write(p["tmp"] / "nan.nrrd", a), "--window": "0,1"}


def _inf_reference(p):
    a = blob_image()[0].astype(np.float32)
    a[0, 0] = np.inf
    return {"--reference-image": write(p["tmp"] / "inf.mha", a), "--window": "0,255"}


def _ct16_no_window(p):
    ct = np.where(blob_image()[1] > 0, 40, -1000).astype(np.int16)
    return {"--reference-image": write(p["tmp"] / "ct.nrrd", ct)}


def _ct16_png_target(p):
    ct = (blob_image()[0].astype(np.uint16) * 200)
    return {"--targets": write(p["tmp"] / "ct16.png", ct)}


def _rgb_mask(p):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (48, 48, 3)).astype(np.uint8)
    return {"--reference-mask": write(p["tmp"] / "rgb_mask.png", rgb, is_vector=True)}


def _image_as_mask(p):
    grey = np.random.default_rng(1).integers(0, 256, (48, 48)).astype(np.uint8)
    return {"--reference-mask": write(p["tmp"] / "grey.png", grey)}


def _unreadable(p):
    bad = p["tmp"] / "broken.png"
    bad.write_bytes(b"this is not a PNG file at all")
    return {"--targets": bad}


def _missing_target(p):
    return {"--targets": p["tmp"] / "nope.png"}


def _missing_checkpoint(p):
    return {"--method": "p2sam", "--backend": "sam-vit-b", "--checkpoint": p["tmp"] / "sam.pth"}


def _no_backend(p):
    return {"--method": "p2sam"}


def _bad_override(p):
    return {"--set": "epochs"}


def _volume_many_slices(p):
    vol = np.zeros((4, 24, 24), np.uint8)
    lab = np.zeros_like(vol)
    lab[1, 8:16, 8:16] = 1
    lab[2, 8:16, 8:16] = 1
    vol[lab > 0] = 200
    return {"--reference-image": write(p["tmp"] / "v.nii.gz", vol),
            "--reference-mask": write(p["tmp"] / "v_label.nii.gz", lab)}


def _output_is_file(p):
    f = p["tmp"] / "a_file"
    f.write_text("x")
    return {"--output-dir": f}


def _duplicate_names(p):
    (p["tmp"] / "other").mkdir()
    dup = write(p["tmp"] / "other" / "t1.png", blob_image()[0])
    return {"--targets": [p["target"], dup]}


def _rgb_target_for_grey_reference(p):
    rgb = np.repeat(blob_image()[0][..., None], 3, axis=2)
    rgb[..., 0] //= 2
    return {"--targets": write(p["tmp"] / "rgb.png", rgb, is_vector=True)}


CASES: list[tuple[str, Callable[[dict], dict], str]] = [
    ("empty_mask", _empty_mask, "reference mask is empty"),
    ("all_ones_mask", _full_mask, "covers the whole reference image"),
    ("size_mismatch", _size_mismatch, "must share one pixel grid"),
    ("nan_target", _nan_target, "NaN/Inf"),
    ("inf_reference", _inf_reference, "NaN/Inf"),
    ("ct16_without_window", _ct16_no_window, "--window"),
    ("ct16_png_target_without_window", _ct16_png_target, "uint16 values"),
    ("rgb_mask", _rgb_mask, "RGB colour image"),
    ("image_as_mask", _image_as_mask, "looks like an image"),
    ("unreadable_file", _unreadable, "cannot read"),
    ("missing_target", _missing_target, "not found"),
    ("missing_checkpoint", _missing_checkpoint, "oneshotsam weights download sam-vit-b"),
    ("no_backend", _no_backend, "--backend"),
    ("bad_override", _bad_override, "KEY=VALUE"),
    ("volume_several_annotated_slices", _volume_many_slices, "--reference-slice"),
    ("output_dir_is_a_file", _output_is_file, "not a folder"),
    ("duplicate_output_names", _duplicate_names, "would both be written as t1_oneshotsam.png"),
    ("rgb_target_grey_reference", _rgb_target_for_grey_reference, "the reference is grey"),
]


@pytest.mark.parametrize("name,make,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused(good, capsys, name, make, expected) -> None:
    over = make(good)
    out = Path(over.get("--output-dir", good["out"]))
    before = sorted(p.name for p in good["tmp"].iterdir())
    rc = main(_args(good, **over))
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], err
    assert "Traceback" not in err
    if name != "output_dir_is_a_file":
        assert not out.exists(), "nothing may be written on a refused run"
    after = sorted(p.name for p in good["tmp"].iterdir())
    assert after == before, f"left behind: {set(after) - set(before)}"


def test_missing_checkpoint_message_names_the_cache(good, capsys, monkeypatch) -> None:
    """Without --checkpoint and nothing in the cache, the message says how to download."""
    monkeypatch.setenv("ONESHOTSAM_CACHE", str(good["tmp"] / "cache"))
    rc = main(_args(good, **{"--method": "persam", "--backend": "sam2.1-hiera-tiny"}))
    err = capsys.readouterr().err
    assert rc == 2
    assert "oneshotsam weights download sam2.1-hiera-tiny" in err
    assert str(good["tmp"] / "cache") in err


def test_debug_shows_the_traceback(good) -> None:
    from oneshotsam.errors import OneShotError
    with pytest.raises(OneShotError, match="empty"):
        main(_args(good, **_empty_mask(good)) + ["--debug"])


def test_usage_error_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["segment", "--method", "nonexistent"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
