"""No output replaces a file the run read: the one naming rule (``<stem>_oneshotsam``,
:func:`oneshotsam.writer.output_stem`) and the refusal when a path would still land on
an input (:func:`oneshotsam.writer.check_not_inputs`: symlinks, ``..``, hard links,
files of a DICOM folder), for ``propagate``, ``segment``, ``evaluate --json`` and
``cohort`` with the output folder = the inputs' folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from oneshotsam.cli import main
from oneshotsam.errors import OneShotError

SimpleITK = pytest.importorskip("SimpleITK")


@pytest.mark.parametrize("name, is_dir, stem", [
    ("fu.nii.gz", False, "fu_oneshotsam"), ("a/seg.seg.nrrd", False, "seg_oneshotsam"),
    ("photo.JPG", False, "photo_oneshotsam"), ("im.1.png", False, "im.1_oneshotsam"),
    ("CT.series", True, "CT.series_oneshotsam"), ("synth", False, "synth_oneshotsam"),
])
def test_output_stem(tmp_path, name, is_dir, stem):
    from oneshotsam.writer import output_stem

    p = tmp_path / name
    if is_dir:
        p.mkdir(parents=True)
    assert output_stem(p) == stem


def _files(tmp: Path) -> dict[str, Path]:
    (tmp / "d" / "sub").mkdir(parents=True)
    (tmp / "ct").mkdir()
    f = {"in": tmp / "d" / "fu.nii.gz", "slice": tmp / "ct" / "s1.dcm", "other": tmp / "d" / "x.nii.gz"}
    for p in f.values():
        p.write_bytes(b"input")
    os.symlink(f["in"], tmp / "d" / "link.nii.gz")
    os.link(f["in"], tmp / "d" / "hard.nii.gz")
    return f


@pytest.mark.parametrize("output, refused", [
    ("d/fu.nii.gz", True),             # the input itself
    ("d/sub/../fu.nii.gz", True),      # through ..
    ("d/link.nii.gz", True),           # a symlink to the input
    ("d/hard.nii.gz", True),           # a hard link to the input
    ("ct/s1.dcm", True),               # a file of a DICOM folder input
    ("d/fu_oneshotsam.nii.gz", False),
    ("ct/s1_oneshotsam.dcm", False),
    ("d/x_oneshotsam.nii.gz", False),
])
def test_check_not_inputs(tmp_path, output, refused):
    from oneshotsam.writer import check_not_inputs

    f = _files(tmp_path)
    inputs = [f["in"], tmp_path / "ct"]
    if refused:
        with pytest.raises(OneShotError, match="would replace the input"):
            check_not_inputs([tmp_path / output], inputs)
    else:
        check_not_inputs([tmp_path / output], inputs)


# ------------------------------------------------------------------ propagate
def _volume_files(folder: Path, labels_name: str) -> tuple[Path, Path]:
    from oneshotsam.geometry import volume_to_sitk
    from oneshotsam.medio import write_label_volume
    from oneshotsam.types import Volume
    from volume_synth import affine, ellipsoid, sample

    aff = affine((1.0, 1.0, 1.5), (0, 0, 0))
    vol = sample(lambda p: 0.2 + 0.7 * ellipsoid((16, 15, 5), (8, 6, 3))(p), (8, 32, 32), aff, "scan")
    truth = (sample(ellipsoid((16, 15, 5), (8, 6, 3)), (8, 32, 32), aff).voxels > 0.5).astype(np.uint8)
    lab = np.zeros_like(truth)
    lab[3] = truth[3]
    folder.mkdir(parents=True, exist_ok=True)
    ref = folder / "scan.nii.gz"
    SimpleITK.WriteImage(volume_to_sitk(Volume(np.asarray(vol.voxels), aff)), str(ref))
    return ref, Path(write_label_volume(Volume(lab, aff), folder / labels_name))


def _propagate(ref: Path, lab: Path, out: Path) -> int:
    from test_volume_engines_cli import TINY_WARP

    return main(["propagate", "--reference-volume", str(ref), "--reference-labels", str(lab),
                 "--output-dir", str(out), "--window", "0,1", "--device", "cpu", "--quiet"]
                + sum((["--set", f"{k}={v}"] for k, v in TINY_WARP), []))


def test_propagate_into_the_inputs_folder_keeps_the_inputs(tmp_path):
    ref, lab = _volume_files(tmp_path / "case", "scan_label.nii.gz")
    before = {p.name: p.read_bytes() for p in (ref, lab)}
    assert _propagate(ref, lab, tmp_path / "case") == 0
    assert {p.name: p.read_bytes() for p in (ref, lab)} == before
    assert sorted(p.name for p in (tmp_path / "case").iterdir()) == [
        "report.json", "scan.nii.gz", "scan_label.nii.gz", "scan_oneshotsam.nii.gz",
        "scan_oneshotsam.seg.nrrd", "session.pt"]


def test_propagate_refuses_an_output_named_like_an_input(tmp_path, capsys):
    ref, lab = _volume_files(tmp_path / "case", "scan_oneshotsam.seg.nrrd")  # labels named like the output
    before = sorted(p.name for p in (tmp_path / "case").iterdir())
    data = lab.read_bytes()
    assert _propagate(ref, lab, tmp_path / "case") == 2
    err = capsys.readouterr().err
    assert "would replace the input" in err and "scan_oneshotsam.seg.nrrd" in err
    assert sorted(p.name for p in (tmp_path / "case").iterdir()) == before and lab.read_bytes() == data


# ------------------------------------------------------------------ segment, evaluate
def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    SimpleITK.WriteImage(SimpleITK.GetImageFromArray(arr.astype(np.uint8)), str(path))
    return path


@pytest.mark.parametrize("mask_name, json_name", [
    ("t1_oneshotsam.png", None),   # the mask is named like the target's output
    ("mask.png", "t1.png"),        # --json onto the target
])
def test_segment_refuses_before_any_work(tmp_path, capsys, mask_name, json_name):
    yy, xx = np.mgrid[0:48, 0:48]
    disc = (yy - 24) ** 2 + (xx - 24) ** 2 <= 81
    d = tmp_path / "d"
    ref, mask = _png(d / "ref.png", np.where(disc, 200, 40)), _png(d / mask_name, disc)
    tgt = _png(d / "t1.png", np.where(disc, 190, 50))
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    argv = ["segment", "--method", "medpersam-warp", "--reference-image", str(ref),
            "--reference-mask", str(mask), "--targets", str(tgt), "--output-dir", str(d), "--quiet"]
    assert main(argv + (["--json", str(d / json_name)] if json_name else [])) == 2
    assert "would replace the input" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


def test_evaluate_json_onto_a_prediction_is_refused(tmp_path, capsys):
    pred = _png(tmp_path / "p" / "c1_oneshotsam.png", np.eye(4))
    _png(tmp_path / "g" / "c1.png", np.eye(4))
    data = pred.read_bytes()
    assert main(["evaluate", "--predictions", str(tmp_path / "p"), "--ground-truth", str(tmp_path / "g"),
                 "--json", str(pred)]) == 2
    assert "would replace the input" in capsys.readouterr().err and pred.read_bytes() == data


# ------------------------------------------------------------------ cohort
def test_cohort_refuses_outputs_onto_its_inputs(tmp_path, capsys):
    from cohort_synth import make_cohort, run_cohort

    m = make_cohort(tmp_path / "data", n_patients=1, n_targets=1)  # P01: week1 = P01/fu1.nii.gz
    out = m.parent  # OUT/P01/ = the manifest's own patient folder
    clash = out / "P01" / "week1_oneshotsam.nii.gz"  # the target named like its own output
    os.replace(out / "P01" / "fu1.nii.gz", clash)
    text = m.read_text(encoding="utf-8")
    assert text.count("P01/fu1.nii.gz,") == 1
    m.write_text(text.replace("P01/fu1.nii.gz,", f"P01/{clash.name},"), encoding="utf-8")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert run_cohort(m, out, "--workers", "1") == 2
    assert "would replace the input" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
