"""``oneshotsam propagate --update-from PREV``: an Update of a saved run from the command
line (tiny warp engine), and its refusals when the saved run does not match."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from oneshotsam.types import Volume
from volume_synth import affine, ellipsoid, sample

TINY = ["--set", "steps=4", "--set", "resolution=32", "--set", "batch=2", "--set", "aug_per_step=1"]


def write_volume(vol: Volume, path: Path) -> Path:
    import SimpleITK as sitk

    from oneshotsam.geometry import volume_to_sitk

    sitk.WriteImage(volume_to_sitk(vol), str(path))
    return path


def _case(tmp_path: Path):
    from oneshotsam.medio import write_label_volume

    aff = affine((1.0, 1.0, 1.5), (0, 0, 0))
    world = ellipsoid((16, 15, 9.75), (8, 6, 7.5))
    vol = sample(lambda p: 0.2 + 0.7 * world(p), (14, 32, 32), aff, "ball")
    truth = (sample(world, (14, 32, 32), aff).voxels > 0.5).astype(np.uint8)
    lab = np.zeros_like(truth)
    lab[6] = truth[6]
    ref_p = tmp_path / "scan.nii.gz"
    write_volume(Volume(np.asarray(vol.voxels), aff), ref_p)
    lab_p = tmp_path / "scan_label.nii.gz"
    write_label_volume(Volume(lab, aff, "lab"), lab_p)
    return ref_p, lab_p, truth, aff


def _run(ref_p, lab_p, out, *extra) -> int:
    from oneshotsam.cli import main

    return main(["propagate", "--reference-volume", str(ref_p), "--reference-labels", str(lab_p),
                 "--output-dir", str(out), "--window", "0,1", "--device", "cpu", "--quiet", *TINY,
                 *extra])


def test_update_from_recomputes_only_the_corrections_gaps(tmp_path: Path) -> None:
    from oneshotsam.medio import read_label_volume, write_label_volume

    ref_p, lab_p, truth, aff = _case(tmp_path)
    assert _run(ref_p, lab_p, tmp_path / "first") == 0
    assert (tmp_path / "first" / "session.pt").is_file()
    first = np.asarray(read_label_volume(tmp_path / "first" / "scan_oneshotsam.nii.gz").voxels)
    corrected = first.copy()
    corrected[9] = truth[9]
    corrected[9, 1:3, 1:8] = 1
    corr_p = tmp_path / "corrected.nii.gz"
    write_label_volume(Volume(corrected, aff, "lab"), corr_p)
    assert _run(ref_p, corr_p, tmp_path / "second", "--update-from", str(tmp_path / "first"),
                "--reference-slices", "9") == 0
    out = np.asarray(read_label_volume(tmp_path / "second" / "scan_oneshotsam.nii.gz").voxels)
    report = json.loads((tmp_path / "second" / "report.json").read_text())
    assert report["targets"][0]["update"]["recomputed_slices"] == [7, 8, 10, 11, 12, 13]
    assert np.array_equal(out[9], corrected[9]) and np.array_equal(out[:7], first[:7])
    assert "train_steps" in report["engine"] and (tmp_path / "second" / "session.pt").is_file()
    # the saved engine carries what the walk's opening needs (the annotation's inscribed radius)
    from oneshotsam.volume.saved import _read

    saved = _read(tmp_path / "first")["engine"]
    assert set(saved["inscribed_px"]) == {"1"} and saved["inscribed_px"]["1"] > 0
    # an Update of the Update: the first correction stays an anchor
    again = out.copy()
    again[3] = 0
    again_p = tmp_path / "again.nii.gz"
    write_label_volume(Volume(again, aff, "lab"), again_p)
    assert _run(ref_p, again_p, tmp_path / "third", "--update-from", str(tmp_path / "second"),
                "--fixed-slices", "3") == 0
    third = np.asarray(read_label_volume(tmp_path / "third" / "scan_oneshotsam.nii.gz").voxels)
    assert not third[:4].any() and np.array_equal(third[6:], out[6:])


@pytest.mark.parametrize("change, match", [
    ("volume", "not the volume of the saved run"),
    ("settings", "settings differ"),
    ("same-dir", r"choose (a new|another) --output-dir"),
    ("no-state", "no session.pt"),
    ("no-slices", "--reference-slices"),
])
def test_update_from_refuses_a_run_that_does_not_match(tmp_path: Path, capsys, change, match) -> None:
    ref_p, lab_p, truth, aff = _case(tmp_path)
    first = tmp_path / "first"
    assert _run(ref_p, lab_p, first) == 0
    out, extra = tmp_path / "second", ["--reference-slices", "6"]
    if change == "volume":
        from oneshotsam.medio import read_volume

        v = read_volume(ref_p)
        vox = np.asarray(v.voxels).copy()
        vox[0, 0, 0] += 0.5
        ref_p = tmp_path / "other.nii.gz"
        write_volume(Volume(vox, v.ijk_to_lps), ref_p)
    elif change == "settings":
        extra += ["--set", "lr=0.01"]
    elif change == "same-dir":
        out = first
    elif change == "no-state":
        (first / "session.pt").unlink()
    else:
        extra = []
    capsys.readouterr()
    assert _run(ref_p, lab_p, out, "--update-from", str(first), *extra) == 2
    assert re.search(match, capsys.readouterr().err)
    if change != "same-dir":
        assert not out.exists()  # nothing written
