"""Data integrity at the door: checks run on every input before any work or writing,
for 2D images and volumes alike, by the command line and the Slicer Logic.

* :func:`check_compressed_stream`: a gzip-compressed file (``.nii.gz``, ``.gz``,
  or an NRRD whose header says ``encoding: gzip``) is decompressed to its end
  first. A truncated copy is refused: SimpleITK reads a half-truncated ``.nii.gz``
  without error and fills the missing part with zeros.
* :func:`check_finite`: NaN/Inf pixels or voxels are refused (same message for
  2D images and volumes).
* :func:`check_not_constant`: an image whose pixels all hold one value has nothing
  to segment (an empty export, a mask given as image) and is refused.
* :func:`check_labels_fit`: label values must fit the output file format
  (BMP 8 bit, PNG/TIFF 16 bit, volumes 32 bit signed).

Every refusal is a :class:`~oneshotsam.errors.OneShotError` saying what to do.
Standard library and numpy only.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from oneshotsam.errors import OneShotError

_CHUNK = 1 << 22
#: largest label value per output suffix (lower case); others: int32
LABEL_LIMITS = {".bmp": 255, ".png": 65535, ".tif": 65535, ".tiff": 65535}
VOLUME_LABEL_LIMIT = 2**31 - 1


def _nrrd_gzip_offset(path: Path) -> int | None:
    """Byte offset of the gzip data of an attached-data NRRD with gzip encoding, else None."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if not head.startswith(b"NRRD"):
        return None
    end = head.find(b"\n\n")
    if end < 0:
        return None
    fields = {}
    for line in head[:end].decode("latin-1").splitlines()[1:]:
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            fields[key.strip().lower()] = value.strip().lstrip("=").strip().lower()
    if fields.get("encoding") not in ("gzip", "gz") or "data file" in fields or "datafile" in fields:
        return None
    return end + 2


def check_compressed_stream(path: str | Path) -> None:
    """Decompress a gzip file (or an NRRD's gzip payload) to its end; refuse it when
    the stream is truncated or damaged. Other files are left alone."""
    p = Path(path)
    if not p.is_file():
        return
    name = p.name.lower()
    offset = 0 if name.endswith(".gz") else (
        _nrrd_gzip_offset(p) if name.endswith((".nrrd", ".nhdr")) else None)
    if offset is None:
        return
    try:
        with open(p, "rb") as raw:
            raw.seek(offset)
            with gzip.GzipFile(fileobj=raw) as f:
                while f.read(_CHUNK):
                    pass
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise OneShotError(
            f"{p} is truncated or damaged (its compressed data ends early or is corrupt: "
            f"{reason}): copy the file again from its source") from None


def check_finite(array: np.ndarray, what: str | Path) -> None:
    """Refuse NaN/Inf pixels or voxels."""
    a = np.asarray(array)
    if np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise OneShotError(
                f"{what} contains {bad} NaN/Inf pixel(s): replace them (e.g. with the "
                "background value) or crop them away, then try again")


def check_not_constant(array: np.ndarray, what: str | Path) -> None:
    """Refuse an image whose pixels all hold one value."""
    a = np.asarray(array)
    if a.size and np.all(a == a.flat[0]):
        raise OneShotError(
            f"{what} is constant (every pixel is {a.flat[0].item()!r}): there is nothing to "
            "segment; check that it is the right file (not an empty export or a mask)")


def check_image_values(array: np.ndarray, what: str | Path) -> None:
    """:func:`check_finite` then :func:`check_not_constant`."""
    check_finite(array, what)
    check_not_constant(array, what)


def check_labels_fit(values: list[int], output_name: str | Path) -> None:
    """Refuse label values that the output file ``output_name`` cannot hold."""
    top = max((int(v) for v in values), default=0)
    suffix = Path(str(output_name)).suffix.lower()
    limit = LABEL_LIMITS.get(suffix, VOLUME_LABEL_LIMIT)
    if top > limit:
        raise OneShotError(
            f"label value {top} does not fit {output_name} (at most {limit} in a "
            f"{suffix or 'volume'} file): renumber the labels (1..N) or use a volume format "
            "such as .nii.gz")


__all__ = ["check_compressed_stream", "check_finite", "check_not_constant", "check_image_values",
           "check_labels_fit", "LABEL_LIMITS", "VOLUME_LABEL_LIMIT"]
