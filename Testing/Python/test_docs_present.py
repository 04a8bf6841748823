"""The docs describe the present tree: docs/architecture.md names every package and only
modules that exist, docs/results.md says how to rerun every benchmark script, and no doc,
comment or preset tells history by numbered issues, sessions or turns."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "OneShotSAM"
ARCHITECTURE = REPO / "docs" / "architecture.md"
#: "issue 9", "Session 3", "turn 12", "issue #4" (built from parts so this file does not match)
HISTORY = re.compile(r"\b(" + "|".join(("iss" + "ue", "sess" + "ion", "tu" + "rn")) + r")\s+#?\d+",
                     re.IGNORECASE)


def _text_files() -> list[Path]:
    files = [REPO / "README.md", REPO / "NOTES.md", *sorted((REPO / "docs").glob("*.md"))]
    for folder, patterns in ((SRC, ("*.py", "*.json")), (REPO / "benchmarks", ("*.py", "*.sh")),
                             (REPO / "Testing", ("*.py",))):
        for pattern in patterns:
            files += sorted(p for p in folder.rglob(pattern) if "__pycache__" not in p.parts)
    return [p for p in files if p.is_file() and p.resolve() != Path(__file__).resolve()]


@pytest.mark.parametrize("text, found", [
    ("measured in issue 9", True), ("Session 3's rerun", True), ("turn #12", True),
    ("the issue of 9 patients", False), ("one session per run", False), ("turn 90 degrees", True),
])
def test_history_pattern(text: str, found: bool) -> None:
    assert bool(HISTORY.search(text)) is found


def test_no_doc_or_comment_tells_history_by_number() -> None:
    offenders = []
    for path in _text_files():
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            m = HISTORY.search(line)
            if m:
                offenders.append(f"{path.relative_to(REPO)}:{n}: {m.group(0)!r}")
    assert not offenders, ("say what is true now (the history is in git): " + "; ".join(offenders))


def _packages() -> list[str]:
    """Every package folder under OneShotSAM/ as architecture.md names it (``name/``)."""
    return sorted(p.parent.name + "/" for p in SRC.rglob("__init__.py")
                  if "__pycache__" not in p.parts)


def test_architecture_names_every_package() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    missing = [p for p in _packages() if f"`{p}" not in text and f"/{p}`" not in text]
    assert not missing, f"docs/architecture.md does not name the packages {missing}"


def _exists(name: str) -> bool:
    roots = (REPO, SRC, SRC / "oneshotsam", SRC / "oneshotsam" / "methods")
    return any((root / name).exists() for root in roots)


def test_every_module_architecture_names_exists() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    named = set(re.findall(r"`([A-Za-z_][\w/]*(?:\.py|/))`", text))
    assert len(named) > 20, named  # the tables were read
    missing = sorted(n for n in named if not _exists(n))
    assert not missing, f"docs/architecture.md names what the tree does not have: {missing}"


def test_architecture_lists_the_layers_the_structure_test_checks() -> None:
    spec = importlib.util.spec_from_file_location("structure", Path(__file__).with_name(
        "test_engine_structure.py"))
    structure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(structure)
    text = ARCHITECTURE.read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()
            if line.startswith("| ") and line.count("|") >= 3}
    for (layer, prefixes), title in zip(structure.LAYERS, ("ground", "I/O", "backends and presets",
                                                            "methods")):
        assert title in rows, f"docs/architecture.md has no row for the layer {layer!r}"
        for prefix in prefixes:
            assert re.search(rf"`{prefix}(\.py|/)`", rows[title]), (
                f"the {title} row of docs/architecture.md does not name {prefix}")


def test_results_page_says_how_to_rerun_every_benchmark_script() -> None:
    text = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    scripts = sorted(p.name for p in (REPO / "benchmarks").iterdir()
                     if p.suffix in (".py", ".sh") and not p.name.startswith("_"))
    missing = [s for s in scripts if f"benchmarks/{s}" not in text]
    assert not missing, f"docs/results.md does not say how to run {missing}"
