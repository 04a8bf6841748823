"""The README holds exactly three command blocks (setup, main job, tests), the main job
parses with the real command line, and `.ci/run` runs the README's setup and test commands."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def command_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return [b.strip() for b in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)]


def test_readme_has_exactly_three_command_blocks() -> None:
    blocks = command_blocks()
    assert len(blocks) == 3, blocks
    setup, job, tests = blocks
    assert "pip install" in setup and '-e ".[dev]"' in setup
    assert job.startswith("oneshotsam segment ")
    assert tests.startswith("python -m pytest Testing/Python")
    assert all("\n" not in b for b in blocks), "each block is one command"


def test_readme_main_job_parses_and_uses_the_example() -> None:
    from oneshotsam.cli import build_parser
    argv = shlex.split(command_blocks()[1])[1:]
    args = build_parser().parse_args(argv)
    assert args.command == "segment" and args.method == "medpersam-warp"
    for p in (args.reference_image, args.reference_mask, *args.targets):
        assert (REPO / p).exists(), p
        assert p.startswith("Testing/Data/example/")


def test_ci_runs_the_readme_setup_and_test_commands() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    setup, _, tests = command_blocks()
    lines = [ln.strip() for ln in ci.splitlines()]
    assert setup in lines
    assert tests in lines
    assert ci.startswith("#!/usr/bin/env bash") and "set -euxo pipefail" in ci
    assert '"$rc" -eq 5' in ci  # "no tests collected" is a failure
    assert (REPO / ".ci" / "run").stat().st_mode & 0o111, ".ci/run must be executable"


def test_readme_setup_says_how_to_make_the_venv_and_get_the_cpu_torch() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    setup = text[text.index("## Setup"):text.index("## Run it on the small example")]
    assert "python3 -m venv .venv" in setup
    assert "CUDA build" in setup and "GB" in setup  # what the package index's torch is
    assert "https://download.pytorch.org/whl/cpu" in setup


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[ ;<>=!\[~(]", r.strip())[0].lower() for r in requirements}


def test_one_opencv() -> None:
    """rt-utils requires opencv-python, which unpacks into the same ``cv2`` folder as our
    opencv-python-headless: no extra may pull it; the setup command installs rt-utils
    without its dependencies, and the environment holds one OpenCV distribution."""
    from importlib import metadata

    import pytest

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    groups = [project["dependencies"], *project["optional-dependencies"].values()]
    names = set().union(*(_requirement_names(g) for g in groups))
    assert "opencv-python-headless" in names
    assert not names & {"opencv-python", "rt-utils"}, names & {"opencv-python", "rt-utils"}
    setup = command_blocks()[0]
    installs = [part for part in setup.split("&&") if '"rt-utils' in part]
    assert len(installs) == 1 and "--no-deps" in installs[0], setup
    installed = set()
    for name in ("opencv-python", "opencv-python-headless", "opencv-contrib-python",
                 "opencv-contrib-python-headless"):
        try:
            metadata.distribution(name)
            installed.add(name)
        except metadata.PackageNotFoundError:
            pass
    assert installed == {"opencv-python-headless"}, (
        f"OpenCV distributions installed: {sorted(installed)}; keep opencv-python-headless only "
        "(pip uninstall opencv-python, then reinstall opencv-python-headless)")
