"""The one output writer of every front end: a folder is filled atomically.

:func:`staged_output` gives a temporary folder beside the output folder; when
the block finishes, every file in it is moved into the output folder
(``os.replace``, atomic per file) and the temporary folder removed; on any
error or Ctrl-C the temporary folder is deleted and the output folder is left
as it was. :func:`check_output_dir` refuses an output folder that cannot be
written before any work starts; :func:`write_json_atomic` writes one JSON file
(temp then rename); :func:`jsonable` makes reports JSON-safe.

Standard library and numpy only.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from oneshotsam.errors import OneShotError


def jsonable(obj: Any) -> Any:
    """A JSON-serialisable copy of ``obj`` (numpy, Path, dataclasses, NaN -> None)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return repr(obj)


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest existing parent folder (resolved)."""
    p = Path(path).resolve()
    while not p.exists():
        p = p.parent
    return p


def check_output_dir(out: Path, option: str = "--output-dir") -> None:
    """Refuse an output folder that is a file or cannot be created/written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OneShotError(f"{option} {out} exists and is not a folder: choose another {option}")
    anc = existing_ancestor(out)
    if not os.access(anc, os.W_OK):
        raise OneShotError(f"cannot write into {anc}: choose another {option}")


def write_json_atomic(data: Any, path: Path) -> None:
    """Write ``data`` as indented JSON to ``path`` (temp file then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def move_into(tmp: Path, out: Path) -> list[str]:
    """Move every file of ``tmp`` into ``out`` (created), atomically per file; removes ``tmp``."""
    out.mkdir(parents=True, exist_ok=True)
    moved = []
    for f in sorted(tmp.iterdir()):
        os.replace(f, out / f.name)
        moved.append(f.name)
    tmp.rmdir()
    return moved


@contextmanager
def staged_output(out: str | Path, prefix: str = ".oneshotsam-") -> Iterator[Path]:
    """``with staged_output(out) as tmp:`` write into ``tmp``; moved into ``out`` at the end.

    The temporary folder lies beside ``out`` (same file system, so the moves are
    renames). On an exception nothing reaches ``out``."""
    out = Path(out)
    check_output_dir(out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=existing_ancestor(out.parent)))
    except OSError as exc:
        raise OneShotError(f"cannot write beside {out}: {exc.strerror}: choose another "
                           "--output-dir") from None
    try:
        yield tmp
        move_into(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = ["jsonable", "check_output_dir", "write_json_atomic", "move_into", "staged_output",
           "existing_ancestor"]
