"""DICOM image series: find, validate and order the slices of one series in a folder.

A radiotherapy export puts the CT slices, the RT Structure Set, the plan and the dose
in one folder. :func:`scan_series` reads the headers (pydicom, no pixel data) of every
file there, keeps the *image* files (those with a pixel matrix and an
``ImagePositionPatient``: RTSTRUCT, RTPLAN, SEG and non-DICOM files are ignored) and
refuses what would silently give a wrong volume:

* two or more image series in the folder (unless one file of the wanted series is
  named: then that series is used);
* slices of different orientation, matrix size or pixel spacing;
* two slices at the same position (duplicates) or a gap in the slice positions
  (missing slices, or uneven spacing).

The slices are ordered by their position along the slice normal
``row_direction x column_direction`` (ascending), which is the ``k`` order of the
volume SimpleITK reads from :attr:`DicomSeries.files`. pydicom is imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oneshotsam.errors import OneShotError

#: Patient and General Study attributes copied into derived objects (RTSTRUCT, SEG),
#: so they keep the series' identity and create none of their own.
IDENTITY_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                     "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID",
                     "AccessionNumber", "ReferringPhysicianName", "StudyDescription")
#: relative tolerance on slice spacing before a gap counts as missing slices
SPACING_RTOL = 0.05


@dataclass(frozen=True)
class DicomSeries:
    """One validated DICOM image series, slices in volume ``k`` order.

    Attributes:
        folder: where the files are.
        files: ``(K,)`` file paths, ordered by position along the slice normal.
        sop_instance_uids: ``(K,)`` SOP Instance UID of each slice, same order.
        sop_class_uid: SOP Class UID of the slices (CT Image Storage, ...).
        series_instance_uid, study_instance_uid, frame_of_reference_uid: the series' UIDs.
        modality: e.g. ``"CT"``.
        identity: Patient / General Study attributes (:data:`IDENTITY_KEYWORDS`) as
            strings, for derived objects.
        positions_mm: ``(K,)`` slice positions along the normal, ascending.
        shape_rc: ``(Rows, Columns)`` of every slice.
    """

    folder: Path
    files: tuple[str, ...]
    sop_instance_uids: tuple[str, ...]
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    modality: str
    identity: dict[str, str] = field(default_factory=dict)
    positions_mm: tuple[float, ...] = ()
    shape_rc: tuple[int, int] = (0, 0)

    def datasets(self, pixels: bool = False) -> list[Any]:
        """The slices as pydicom datasets (headers only unless ``pixels``), in ``k`` order."""
        import pydicom

        return [pydicom.dcmread(f, stop_before_pixels=not pixels) for f in self.files]


def _read_header(path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError, EOFError):
        return None


def is_image_header(ds: Any) -> bool:
    """True for a single-frame image slice (has a pixel matrix and a position in space)."""
    return all(k in ds for k in ("Rows", "Columns", "ImagePositionPatient", "ImageOrientationPatient",
                                 "SeriesInstanceUID", "SOPInstanceUID"))


def _describe(uid: str, headers: list[Any]) -> str:
    d = headers[0]
    what = " ".join(str(x) for x in (d.get("Modality", ""), d.get("SeriesDescription", "")) if x)
    return f"{uid} ({len(headers)} slices{', ' + what if what else ''})"


def _pick_series(folder: Path, must_contain: Path | None) -> list[tuple[Path, Any]]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    groups: dict[str, list[tuple[Path, Any]]] = {}
    for p in files:
        ds = _read_header(p)
        if ds is not None and is_image_header(ds):
            groups.setdefault(str(ds.SeriesInstanceUID), []).append((p, ds))
    if must_contain is not None:
        want = must_contain.resolve()
        groups = {u: g for u, g in groups.items() if any(p.resolve() == want for p, _ in g)}
    if not groups:
        raise OneShotError(f"no DICOM image series found in {folder}: point to a folder holding the "
                           "slices of one series (or to a NIfTI/NRRD/MHA file)")
    if len(groups) > 1:
        listed = "; ".join(_describe(u, [d for _, d in g]) for u, g in sorted(groups.items()))
        raise OneShotError(
            f"{folder} holds {len(groups)} DICOM image series ({listed}): put each series in a "
            "folder of its own, or name one file of the series you mean")
    return next(iter(groups.values()))


def _floats(value: Any, n: int, what: str, path: Path) -> np.ndarray:
    try:
        a = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        a = np.zeros(0)
    if a.shape != (n,):
        raise OneShotError(f"{path}: {what} must hold {n} numbers; got {value!r}")
    return a


def _check_uniform(items: list[tuple[Path, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Same orientation, matrix and pixel spacing on every slice; returns (normal, iop)."""
    p0, d0 = items[0]
    iop0 = _floats(d0.ImageOrientationPatient, 6, "ImageOrientationPatient", p0)
    for p, d in items[1:]:
        iop = _floats(d.ImageOrientationPatient, 6, "ImageOrientationPatient", p)
        if not np.allclose(iop, iop0, atol=1e-4):
            raise OneShotError(f"{p} is oriented differently from {p0} in the same series: "
                               "a series must be one stack of parallel slices")
        if (int(d.Rows), int(d.Columns)) != (int(d0.Rows), int(d0.Columns)):
            raise OneShotError(f"{p} is {d.Columns}x{d.Rows} but {p0} is {d0.Columns}x{d0.Rows}: "
                               "every slice of a series must have one matrix size")
        if "PixelSpacing" in d0 and not np.allclose(
                _floats(d.get("PixelSpacing"), 2, "PixelSpacing", p),
                _floats(d0.PixelSpacing, 2, "PixelSpacing", p0), rtol=1e-4):
            raise OneShotError(f"{p} and {p0} have different PixelSpacing in the same series")
    normal = np.cross(iop0[:3], iop0[3:])
    return normal / np.linalg.norm(normal), iop0


def _check_positions(items: list[tuple[Path, Any]], pos: np.ndarray) -> None:
    """Refuse duplicated slices and gaps; ``pos`` ascending, aligned with ``items``."""
    if len(pos) < 2:
        return
    steps = np.diff(pos)
    nonzero = steps[steps > 1e-3]
    dup = np.flatnonzero(steps <= 1e-3)
    if dup.size:
        a, b = items[dup[0]][0].name, items[dup[0] + 1][0].name
        raise OneShotError(
            f"duplicated slices in the series: {a} and {b} (and {dup.size - 1} more pair(s)) lie at "
            f"the same position {pos[dup[0]]:.3f} mm: remove the duplicates (another acquisition "
            "or phase in the same series?)")
    step = float(np.median(nonzero))
    bad = np.flatnonzero(np.abs(steps - step) > SPACING_RTOL * step)
    if bad.size:
        i = int(bad[0])
        missing = int(round(steps[i] / step)) - 1
        raise OneShotError(
            f"the series has a gap between slice positions {pos[i]:.3f} and {pos[i + 1]:.3f} mm "
            f"({steps[i]:.3f} mm where the slices are {step:.3f} mm apart"
            + (f": about {missing} slice(s) missing" if missing > 0 else ", uneven spacing")
            + "): export the complete series")


def series_stem(path: str | Path) -> str | None:
    """An output stem for a DICOM image slice file that stands for its series (``<folder
    name>_series<SeriesNumber>``, or the last digits of the Series Instance UID without a
    number), so outputs are named after the series, not after one slice; None for
    anything else (a folder, NIfTI, an RTSTRUCT...)."""
    import re

    from oneshotsam.fileformats import split_suffix

    p = Path(path)
    if not p.is_file() or split_suffix(p)[1] not in (".dcm", ".ima", ""):
        return None
    ds = _read_header(p)
    if ds is None or not is_image_header(ds):
        return None
    number = str(ds.get("SeriesNumber", "") or "").strip()
    tag = f"series{number}" if number else "series" + str(ds.SeriesInstanceUID).replace(".", "")[-8:]
    return re.sub(r"[^A-Za-z0-9_-]+", "_", f"{p.resolve().parent.name}_{tag}")


def scan_series(path: str | Path) -> DicomSeries:
    """Find, validate and order the DICOM image series at ``path``.

    Args:
        path: a folder holding the slices of ONE image series (other DICOM objects such
            as RTSTRUCT are ignored), or one slice file (its series is used even when
            the folder holds others).

    Returns: the :class:`DicomSeries`. Raises :class:`OneShotError` for the cases in
    the module docstring.
    """
    p = Path(path)
    folder, must = (p, None) if p.is_dir() else (p.parent, p)
    items = _pick_series(folder, must)
    normal, _ = _check_uniform(items)
    pos = np.array([float(_floats(d.ImagePositionPatient, 3, "ImagePositionPatient", f) @ normal)
                    for f, d in items])
    order = np.argsort(pos, kind="stable")
    items = [items[i] for i in order]
    pos = pos[order]
    _check_positions(items, pos)
    d0 = items[0][1]
    patients = sorted({str(d.get("PatientID", "") or "").strip() for _, d in items})
    if len(patients) > 1:
        raise OneShotError(f"the slices of the series in {folder} belong to {len(patients)} Patient IDs "
                           f"({', '.join(map(repr, patients))}): a series is one patient's; export it again")
    identity = {k: str(d0.get(k, "") or "") for k in IDENTITY_KEYWORDS}
    return DicomSeries(
        folder=folder, files=tuple(str(f) for f, _ in items),
        sop_instance_uids=tuple(str(d.SOPInstanceUID) for _, d in items),
        sop_class_uid=str(d0.get("SOPClassUID", "")), series_instance_uid=str(d0.SeriesInstanceUID),
        study_instance_uid=str(d0.get("StudyInstanceUID", "")),
        frame_of_reference_uid=str(d0.get("FrameOfReferenceUID", "")),
        modality=str(d0.get("Modality", "")), identity=identity,
        positions_mm=tuple(float(x) for x in pos), shape_rc=(int(d0.Rows), int(d0.Columns)))
