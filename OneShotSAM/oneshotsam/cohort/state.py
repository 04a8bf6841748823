"""What a cohort run has already done: input hashes, completion records, atomic placement.

A target is COMPLETE when ``OUT/<patient>/<visit>.report.json`` exists, its
``cohort.key`` equals the target's key now, and the label files it lists exist in
``OUT/<patient>/`` (looked up there by name: the folder the command runs from does not
matter, nor does moving ``OUT`` as a whole).
The key is the SHA-256 of the contents of the reference image, reference labels,
target image and ground truth (every file of a DICOM folder, with its relative name),
the resolved propagation settings and the engine version: change any of them and the
target is redone; move the data elsewhere and it is not. The report is moved into
place LAST, after the label files, so a report never points at missing outputs.

Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

STAGING_PREFIX = ".staging-"
_CHUNK = 1 << 20


def file_digest(path: str | Path) -> str:
    """SHA-256 (hex) of a file's contents, or of a folder's files (sorted relative names
    and contents, recursively)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                h.update(chunk)
    return h.hexdigest()


class DigestCache:
    """Content digests remembered by file signature (resolved path, size, mtime in ns;
    for a folder: those of every file in it), kept in ``OUT/.cohort-digests.json``, so a
    rerun does not read unchanged inputs again. A changed signature means a new read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.known: dict[str, str] = dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            self.known = {}
        self.dirty = False

    @staticmethod
    def signature(p: Path) -> str:
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        parts = []
        for f in files:
            st = f.stat()
            parts.append(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def digest(self, path: str | Path) -> str:
        p = Path(path)
        sig = self.signature(p)
        if sig not in self.known:
            self.known[sig] = file_digest(p)
            self.dirty = True
        return self.known[sig]

    def save(self) -> None:
        if self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, self.known)
            self.dirty = False


def target_key(settings: dict[str, Any], digests: dict[str, str | None]) -> str:
    """Key of one target: SHA-256 of the JSON of ``settings`` (resolved configuration,
    version) and the input ``digests`` (reference, reference_labels, image, ground_truth)."""
    blob = json.dumps({"settings": settings, "inputs": digests}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def report_path(patient_dir: Path, visit: str) -> Path:
    return patient_dir / f"{visit}.report.json"


def load_complete(patient_dir: Path, visit: str, key: str) -> dict[str, Any] | None:
    """The target's report when it is complete for ``key`` (see module doc), else None."""
    p = report_path(patient_dir, visit)
    try:
        rep = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(rep, dict) or (rep.get("cohort") or {}).get("key") != key:
        return None
    outs = [_rebased(o, patient_dir) for o in rep.get("outputs") or []]
    if not outs or not all(q and Path(q).is_file() for o in outs for q in _output_files(o)):
        return None
    rep["outputs"] = outs
    rep["cohort"] = dict(rep["cohort"], report_path=str(p))
    return rep


def _rebased(o: dict[str, Any], patient_dir: Path) -> dict[str, Any]:
    """One ``outputs`` entry with its files named in ``patient_dir`` (where
    :func:`commit_outputs` puts them): neither the folder the command runs from nor a
    moved output folder matters."""
    def here(q: Any) -> str:
        return str(patient_dir / Path(str(q)).name) if q else ""

    moved = dict(o)
    for k in ("labels", "segmentation"):
        if k in o:
            moved[k] = here(o[k])
    if o.get("files"):
        moved["files"] = {f: here(q) for f, q in dict(o["files"]).items()}
    return moved


def _output_files(o: dict[str, Any]) -> list[str]:
    """Every file of one ``outputs`` entry of a report (both layouts of
    :func:`oneshotsam.volume.outputs.write_outputs`)."""
    files = list((o.get("files") or {}).values())
    return files or [o.get("labels", ""), o.get("segmentation", "")]


def new_staging(patient_dir: Path, visit: str) -> Path:
    """A fresh staging folder ``.staging-<visit>-<pid>-<random>`` in the patient folder
    (the pid tells which process owns it)."""
    patient_dir.mkdir(parents=True, exist_ok=True)
    d = patient_dir / f"{STAGING_PREFIX}{visit}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    return d


def clear_staging(patient_dir: Path) -> None:
    """Remove staging folders left by an interrupted or killed run of this patient (only
    one task works on a patient at a time, so none of them is in use)."""
    if patient_dir.is_dir():
        for d in patient_dir.iterdir():
            if d.is_dir() and d.name.startswith(STAGING_PREFIX):
                shutil.rmtree(d, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to a temporary name beside ``path``, then rename it into place."""
    from oneshotsam.fileformats import atomic_write

    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json_atomic(path: Path, data: Any) -> Path:
    """``data`` as JSON (numpy values as numbers), written atomically; returns ``path``."""
    from oneshotsam.writer import jsonable
    from oneshotsam.writer import write_json_atomic as _write

    _write(jsonable(data), Path(path))
    return Path(path)


def commit_outputs(staging: Path, patient_dir: Path, report: dict[str, Any]) -> dict[str, Any]:
    """Move the label files written into ``staging`` next to it (``os.replace``, same
    file system), then write the report with the final paths as ``<visit>.report.json``;
    remove ``staging``. Returns the final report."""
    outs = []
    for o in report.get("outputs", []):
        moved = dict(o)
        files = dict(o.get("files") or {})  # every --output-format file
        for src in {o[k] for k in ("labels", "segmentation") if k in o} | set(files.values()):
            os.replace(src, patient_dir / Path(src).name)
        for k in ("labels", "segmentation"):
            if k in o:
                moved[k] = str(patient_dir / Path(o[k]).name)
        if files:
            moved["files"] = {f: str(patient_dir / Path(q).name) for f, q in files.items()}
        outs.append(moved)
    final = {k: v for k, v in report.items() if k != "report_path"}
    final["outputs"] = outs
    visit = report["cohort"]["visit"]
    write_json_atomic(report_path(patient_dir, visit), final)
    shutil.rmtree(staging, ignore_errors=True)
    return final


__all__ = ["DigestCache", "file_digest", "target_key", "load_complete", "new_staging", "clear_staging",
           "commit_outputs", "write_json_atomic", "write_text_atomic", "report_path", "STAGING_PREFIX"]
