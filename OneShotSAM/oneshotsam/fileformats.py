"""File names, suffixes, segment descriptions and atomic writes: the small pieces
every reader and writer shares (:mod:`oneshotsam.medio`, the DICOM RT modules).

Standard library and numpy only; imports nothing of the engine, so any I/O module
can use it without an import cycle.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

IMAGE2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".seg.nrrd", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
LABEL_WRITE_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".nii.gz", ".nii", ".seg.nrrd", ".nrrd", ".mha")
#: Slicer-like default segment colours (0..1) for labels without a colour
SEGMENT_PALETTE = [(0.5, 0.68, 0.5), (0.95, 0.84, 0.57), (0.69, 0.48, 0.39), (0.44, 0.72, 0.82),
            (0.85, 0.40, 0.31), (0.87, 0.51, 0.84), (0.56, 0.47, 0.78), (0.98, 0.98, 0.27)]


def split_suffix(path: str | Path) -> tuple[str, str]:
    """``(stem, suffix)`` with double suffixes kept whole: ``a.nii.gz`` -> ``("a", ".nii.gz")``,
    ``a.seg.nrrd`` -> ``("a", ".seg.nrrd")``; the suffix is lower case."""
    name = Path(path).name
    low = name.lower()
    for suf in (".nii.gz", ".seg.nrrd"):
        if low.endswith(suf) and len(name) > len(suf):
            return name[: -len(suf)], suf
    p = Path(name)
    return (p.stem, p.suffix.lower()) if p.suffix else (name, "")


def path_stem(path: str | Path) -> str:
    """File name without its (double) suffix; a folder's own name."""
    return split_suffix(path)[0]


def atomic_write(out_path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary name in ``out_path``'s folder, then rename it."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    stem, suf = split_suffix(out)
    tmp = out.parent / f".{stem}.tmp-{uuid.uuid4().hex[:8]}{suf}"
    try:
        write(str(tmp))
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out




#: the locale categories :func:`keep_locale` saves and restores
_LOCALE_CATEGORIES = ("LC_CTYPE", "LC_NUMERIC", "LC_TIME", "LC_COLLATE", "LC_MONETARY", "LC_MESSAGES")


@contextmanager
def keep_locale() -> Iterator[None]:
    """The process locale as it was after the block: SimpleITK's DICOM writer (GDCM) leaves
    it at ``C``, after which every ``open()`` without ``encoding=`` reads ASCII only."""
    import locale

    saved = [(c, locale.setlocale(c)) for c in (getattr(locale, n) for n in _LOCALE_CATEGORIES
                                                if hasattr(locale, n))]
    try:
        yield
    finally:
        for cat, value in saved:
            try:
                locale.setlocale(cat, value)
            except locale.Error:  # cannot happen for a value read back from setlocale
                pass


def segments_for(values: list[int], meta_segments: list[dict] | None = None) -> list[dict]:
    """Segment descriptions ``{"value", "name", "color", "terminology"}`` for label
    ``values``, taken from ``meta_segments`` where listed, defaults otherwise."""
    known = {int(s["value"]): s for s in (meta_segments or []) if "value" in s}
    out = []
    for n, v in enumerate(sorted(set(int(x) for x in values) | set(known))):
        s = known.get(v, {})
        out.append({"value": v, "name": s.get("name") or f"Segment_{v}",
                    "color": list(s.get("color") or SEGMENT_PALETTE[n % len(SEGMENT_PALETTE)]),
                    "terminology": s.get("terminology")})
    return out
