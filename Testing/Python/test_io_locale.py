"""The process locale and text encodings: a run leaves the locale as it found it, and
package code never depends on it (every text file and captured output is UTF-8).

SimpleITK's DICOM writer (GDCM) switched the process locale from ``C.UTF-8`` to ``C``;
afterwards every ``open()`` without ``encoding=`` read ASCII only, and later tests and
runs failed with UnicodeDecodeError. :func:`oneshotsam.medio.write_dicom_series` (and
every SimpleITK write of :mod:`oneshotsam.medio`) keeps the locale; package code passes
``encoding="utf-8"`` everywhere (checked on the source below).
"""

from __future__ import annotations

import ast
import locale
from pathlib import Path

import numpy as np
import pytest

from oneshotsam import geometry as g
from oneshotsam import medio
from oneshotsam.types import Volume

PACKAGE = Path(__file__).resolve().parents[2] / "OneShotSAM"


def _series(tmp_path: Path) -> list[Path]:
    vol = Volume(np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5),
                 g.affine_from_sitk((1.0, 2.0, 3.0), (0.7, 0.7, 2.5), np.eye(3).ravel()))
    uid = "1.2.826.0.1.3680043.2.1125.9.1"
    return medio.write_dicom_series(vol, tmp_path / "ct", {
        "0008|0060": "CT", "0020|000e": uid, "0020|000d": uid + ".1", "0018|0050": "2.5",
        "0028|1053": "1", "0028|1052": "0"})


def test_writing_a_dicom_series_keeps_the_locale(tmp_path):
    before = [locale.setlocale(c) for c in (locale.LC_CTYPE, locale.LC_NUMERIC, locale.LC_ALL)]
    files = _series(tmp_path)
    assert [locale.setlocale(c) for c in (locale.LC_CTYPE, locale.LC_NUMERIC, locale.LC_ALL)] == before
    assert len(files) == 3 and medio.read_volume(tmp_path / "ct").shape_kji == (3, 4, 5)
    text = tmp_path / "note.txt"  # what failed afterwards: a default-encoding read of UTF-8
    text.write_bytes("Mädchen µm".encode("utf-8"))
    if locale.getpreferredencoding(False).lower().replace("-", "") == "utf8":
        with open(text) as f:  # noqa: PLW1514 -- the default encoding on purpose
            assert f.read() == "Mädchen µm"


@pytest.mark.parametrize("category", ["LC_NUMERIC", "LC_CTYPE"])
def test_keep_locale_restores_a_changed_category(category):
    from oneshotsam.fileformats import keep_locale

    cat = getattr(locale, category)
    before = locale.setlocale(cat)
    with keep_locale():
        locale.setlocale(cat, "C")
    assert locale.setlocale(cat) == before


def _text_calls_without_encoding(tree: ast.AST) -> list[int]:
    """Line numbers of text-mode open()/read_text()/write_text()/subprocess captures
    that leave the encoding to the locale."""
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        kw = {k.arg: k.value for k in node.keywords}
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if "encoding" in kw:
            continue
        if name in ("open", "fdopen") and (isinstance(f, ast.Name) or name == "fdopen"
                                           or (isinstance(f.value, ast.Name) and f.value.id in ("io", "builtins"))):
            mode = node.args[1] if len(node.args) > 1 else kw.get("mode")
            modes = [mode.body, mode.orelse] if isinstance(mode, ast.IfExp) else [mode]
            if all(isinstance(m, ast.Constant) and "b" in str(m.value) for m in modes):
                continue
            bad.append(node.lineno)
        elif name == "read_text" and not node.args:
            bad.append(node.lineno)
        elif name == "write_text" and len(node.args) < 2:
            bad.append(node.lineno)
        elif name in ("run", "check_output", "Popen") and any(
                k in kw and isinstance(kw[k], ast.Constant) and kw[k].value is True
                for k in ("text", "universal_newlines")):
            bad.append(node.lineno)
    return sorted(bad)


@pytest.mark.parametrize("source, expected", [
    ("open(p)", [1]), ("open(p, 'w')", [1]), ("open(p, 'rb')", []), ("open(p, 'ab' if n else 'wb')", []), ("open(p, encoding='utf-8')", []),
    ("os.fdopen(fd, 'w')", [1]), ("Image.open(p)", []), ("p.read_text()", [1]),
    ("p.read_text(encoding='utf-8')", []), ("p.write_text(s)", [1]), ("p.write_text(s, 'utf-8')", []),
    ("subprocess.run(c, capture_output=True, text=True)", [1]),
    ("subprocess.run(c, capture_output=True, encoding='utf-8')", []), ("subprocess.run(c)", []),
])
def test_the_encoding_check_itself(source, expected):
    assert _text_calls_without_encoding(ast.parse(source)) == expected


def test_package_code_always_names_the_text_encoding():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = _text_calls_without_encoding(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        if lines:
            found[str(path.relative_to(PACKAGE))] = lines
    assert found == {}, f"pass encoding='utf-8' at: {found}"
