"""A target folder that already holds an earlier run's outputs: OneShotSAM's own label
files and previews are skipped (``cli_inputs.is_own_output``), so a rerun into that
folder segments the same images again instead of its own outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from oneshotsam.cli_inputs import expand_targets, is_own_output
from oneshotsam.errors import OneShotError


@pytest.mark.parametrize("name, own", [
    ("case01_oneshotsam.png", True),
    ("case01_oneshotsam_preview.png", True),
    ("ct_oneshotsam.nii.gz", True),
    ("ct_oneshotsam.seg.nrrd", True),
    ("case01.png", False),
    ("case01_preview.png", False),        # a preview of no OneShotSAM output
    ("oneshotsam.png", False),
    ("case01_oneshotsam_v2.png", False),  # the tag not at the end of the stem
])
def test_is_own_output_table(name: str, own: bool) -> None:
    assert is_own_output(Path(name)) is own


def _folder(tmp_path: Path, names: list[str]) -> Path:
    d = tmp_path / "targets"
    d.mkdir()
    for n in names:
        (d / n).write_bytes(b"x")
    return d


def test_folder_skips_own_outputs_and_lists_them(tmp_path: Path) -> None:
    d = _folder(tmp_path, ["a.png", "a_oneshotsam.png", "a_oneshotsam_preview.png", "b.nii.gz"])
    skipped: list[Path] = []
    got = expand_targets([str(d)], skipped=skipped)
    assert [p.name for p in got] == ["a.png", "b.nii.gz"]
    assert sorted(p.name for p in skipped) == ["a_oneshotsam.png", "a_oneshotsam_preview.png"]


def test_a_file_named_explicitly_is_taken(tmp_path: Path) -> None:
    d = _folder(tmp_path, ["a_oneshotsam.png"])
    assert expand_targets([str(d / "a_oneshotsam.png")]) == [d / "a_oneshotsam.png"]


def test_folder_of_outputs_only_is_refused(tmp_path: Path) -> None:
    d = _folder(tmp_path, ["a_oneshotsam.png", "a_oneshotsam_preview.png"])
    with pytest.raises(OneShotError, match="only OneShotSAM outputs.*images they were made from"):
        expand_targets([str(d)])


def test_rerun_into_the_targets_folder(tmp_path: Path, capsys) -> None:
    """Run twice with the targets folder as the output folder: the second run segments the
    same 4 images, replaces its outputs and reports what it skipped."""
    pytest.importorskip("torch")
    from test_cli_segment_run import TINY_WARP, segment_argv

    from oneshotsam.cli import main

    repo = Path(__file__).resolve().parents[2]
    folder = tmp_path / "targets"
    shutil.copytree(repo / "Testing" / "Data" / "example" / "targets", folder)
    argv = segment_argv(folder, "--method", "medpersam-warp", *TINY_WARP, targets=[folder])
    assert main(argv) == 0, capsys.readouterr().err
    first = sorted(p.name for p in folder.iterdir())
    argv = [a for a in argv if a != "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "skipped 8 file(s) named as OneShotSAM outputs" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == first  # nothing new: same outputs replaced
    report = json.loads((folder / "report.json").read_text())
    assert [t["output"] for t in report["targets"]] == [f"case0{i}_oneshotsam.png" for i in range(1, 5)]
    assert len(report["skipped_earlier_outputs"]) == 8
