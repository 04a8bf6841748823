"""The one output writer of every front end: a folder is filled atomically.

:func:`staged_output` gives a temporary folder beside the output folder; when
the block finishes, every file in it is moved into the output folder
(``os.replace``, atomic per file) and the temporary folder removed; on any
error or Ctrl-C the temporary folder is deleted and the output folder is left
as it was. :func:`check_output_dir` refuses an output folder that cannot be
written before any work starts; :func:`write_json_atomic` writes one JSON file
(temp then rename); :func:`jsonable` makes reports JSON-safe.

Output names: every label output is named ``<input stem>_oneshotsam<suffix>``
(:func:`output_stem`, the one naming rule of every front end), so that no output
is named like the file it was computed from; :func:`check_not_inputs` refuses,
before any work, an output that would still land on a file the run read (paths
resolved: symlinks, ``..``, hard links).

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
from typing import Any, Iterable, Iterator

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


#: what every label output's stem ends with (``fu.nii.gz`` -> ``fu_oneshotsam.nii.gz``)
OUTPUT_TAG = "_oneshotsam"


def output_stem(input_path: str | Path) -> str:
    """The stem of the outputs computed from ``input_path`` (a file, a DICOM folder or a
    bare name): its stem without the (double) suffix, plus :data:`OUTPUT_TAG`."""
    from oneshotsam.fileformats import path_stem

    p = Path(input_path)
    return (p.name if p.is_dir() else path_stem(p)) + OUTPUT_TAG


def _inode(path: str | Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:  # not there (yet)
        return None
    return st.st_dev, st.st_ino


def check_not_inputs(outputs: Iterable[str | Path], inputs: Iterable[str | Path],
                     option: str = "--output-dir") -> None:
    """Refuse when an output path would replace a file the run reads.

    An output replaces an input when both resolve to one real path (symlinks, ``..``)
    or, where the output exists already, to one file (a hard link). A folder input (a
    DICOM series) stands for every file in it. Cost: one ``realpath`` per path; the
    files of a folder input are listed only when an output lies in that folder or an
    existing output has several links.

    Args:
        outputs: every path the run will write (files, not folders).
        inputs: every file or folder the run reads.
        option: the option that chose the output folder, for the message.

    Raises:
        OneShotError: naming the output and the input, before anything is written.
    """
    outs = [Path(o) for o in outputs]
    out_real = {os.path.realpath(o): o for o in outs}
    out_dirs = {os.path.realpath(o.parent) for o in outs}
    linked = {_inode(o) for o in outs if o.exists() and os.stat(o).st_nlink > 1} - {None}
    read: dict[str, Path] = {}
    for q in inputs:
        p = Path(q)
        if p.is_dir():
            if linked or os.path.realpath(p) in out_dirs:
                read.update((os.path.realpath(c), c) for c in p.iterdir() if c.is_file())
        else:
            read[os.path.realpath(p)] = p
    hits = [(out_real[r], i) for r, i in read.items() if r in out_real]
    if linked and not hits:
        hits = [(o, i) for i in read.values() if _inode(i) in linked
                for o in outs if _inode(o) == _inode(i)]
    if hits:
        o, i = hits[0]
        raise OneShotError(
            f"the output {o} would replace the input {i}: a run never writes over a file it "
            f"read; choose another {option} (or rename the input)")


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
           "existing_ancestor", "OUTPUT_TAG", "output_stem", "check_not_inputs"]
