"""Read and check a cohort manifest (CSV).

Columns (header row, any order, extra columns ignored): ``patient``, ``visit``, ``image``,
``labels`` and the optional ``ground_truth``. One row per visit. The row of a patient whose
``labels`` cell is filled is that patient's reference (its annotated slices or full
contour); the other rows of the patient are its targets, in the order they appear in the
file (the visit order). ``ground_truth`` may be filled on target rows: a label volume on
the target's grid used only to score the target (Dice per label in the summary).
Relative paths are relative to the manifest's folder. Row numbers are those a
spreadsheet shows: the header is row 1, the first visit row 2.

Standard library only.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from oneshotsam.errors import OneShotError

REQUIRED_COLUMNS = ("patient", "visit", "image", "labels")
OPTIONAL_COLUMNS = ("ground_truth",)
#: patient and visit names become folder and file names: letters, digits, ``._-`` and
#: spaces, not starting with a dot.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\- ]*$")
#: files of the cohort folder itself: no patient folder may take their names (compared
#: ignoring case, as a case-insensitive file system would)
RESERVED_PATIENT_NAMES = ("summary.csv", "summary.json")


@dataclass(frozen=True)
class Visit:
    """One manifest row (paths resolved against the manifest's folder)."""

    row: int
    patient: str
    visit: str
    image: str
    labels: str | None = None
    ground_truth: str | None = None


@dataclass(frozen=True)
class PatientPlan:
    """A patient's reference visit and its targets (visit order)."""

    patient: str
    reference: Visit
    targets: tuple[Visit, ...]


def _resolve(base: Path, text: str) -> str:
    p = Path(text).expanduser()
    return str(p if p.is_absolute() else base / p)


def _read_rows(path: Path) -> tuple[list[Visit], list[str]]:
    errors: list[str] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise OneShotError(f"cannot read the manifest {path}: {exc.strerror or exc}") from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise OneShotError(f"manifest {path}: row 1 (header) lacks the column(s) {', '.join(missing)}; "
                           f"expected {','.join(REQUIRED_COLUMNS)}[,ground_truth]")
    reader.fieldnames = header
    rows = []
    for n, raw in enumerate(reader, start=2):
        cells = {k: (v or "").strip() for k, v in raw.items() if k}
        if not any(cells.values()):
            continue  # blank line
        rows.append(Visit(n, cells["patient"], cells["visit"], cells["image"],
                          cells.get("labels") or None, cells.get("ground_truth") or None))
    if not rows:
        errors.append(f"manifest {path} has no visit rows")
    return rows, errors


def _row_errors(v: Visit, base: Path) -> list[str]:
    errs = []
    for what, name in (("patient", v.patient), ("visit", v.visit)):
        if not name:
            errs.append(f"row {v.row}: empty {what}")
        elif not _SAFE_NAME.match(name):
            errs.append(f"row {v.row}: {what} {name!r} cannot be a file name (use letters, digits, . _ -)")
        elif what == "patient" and name.lower() in RESERVED_PATIENT_NAMES:
            errs.append(f"row {v.row}: patient {name!r} would collide with the cohort's own "
                        f"OUT/{name.lower()}; rename the patient")
    if not v.image:
        errs.append(f"row {v.row}: empty image")
    for what, p in (("image", v.image), ("labels", v.labels), ("ground_truth", v.ground_truth)):
        if p and not Path(_resolve(base, p)).exists():
            errs.append(f"row {v.row}: {what} file not found: {_resolve(base, p)}")
    if v.labels and v.ground_truth:
        errs.append(f"row {v.row}: a reference row (labels) has no ground_truth to score")
    return errs


def read_manifest(path: str | Path) -> list[PatientPlan]:
    """The patients of a manifest, in first-appearance order.

    Raises:
        OneShotError: listing EVERY bad row, grouped by patient, with row numbers (missing
            column, empty or unsafe names, missing files, a patient without a reference or
            with two, a visit name used twice, a patient with no target), before anything runs.
    """
    path = Path(path)
    base = path.resolve().parent
    rows, errors = _read_rows(path)
    by_patient: dict[str, list[Visit]] = {}
    problems: dict[str, list[str]] = {}
    for v in rows:
        by_patient.setdefault(v.patient, []).append(v)
        for e in _row_errors(v, base):
            problems.setdefault(v.patient, []).append(e)
    plans = []
    folded: dict[str, str] = {}
    for pid, visits in by_patient.items():
        other = folded.setdefault(pid.lower(), pid)
        if other != pid:  # one folder on a case-insensitive file system
            problems.setdefault(pid, []).append(
                f"row {visits[0].row}: patient {pid!r} differs from patient {other!r} only in case "
                "(they would share one folder on some file systems); rename one")
        refs = [v for v in visits if v.labels]
        rows_txt = ", ".join(str(v.row) for v in visits)
        if not refs:
            problems.setdefault(pid, []).append(f"rows {rows_txt}: no reference (no row with labels)")
        elif len(refs) > 1:
            problems.setdefault(pid, []).append(
                f"rows {', '.join(str(v.row) for v in refs)}: two or more references (labels filled); "
                "keep labels on one row per patient")
        seen: dict[str, int] = {}
        for v in visits:
            if v.visit.lower() in seen:
                problems.setdefault(pid, []).append(
                    f"row {v.row}: visit {v.visit!r} already used on row {seen[v.visit.lower()]}")
            seen.setdefault(v.visit.lower(), v.row)
        targets = tuple(v for v in visits if not v.labels)
        if refs and not targets:
            problems.setdefault(pid, []).append(f"row {refs[0].row}: a reference without target rows")
        if pid not in problems:
            res = lambda v: Visit(v.row, v.patient, v.visit, _resolve(base, v.image),  # noqa: E731
                                  v.labels and _resolve(base, v.labels),
                                  v.ground_truth and _resolve(base, v.ground_truth))
            plans.append(PatientPlan(pid, res(refs[0]), tuple(res(t) for t in targets)))
    lines = list(errors)
    for pid, errs in problems.items():
        lines.append(f"patient {pid or '(empty)'}: " + "; ".join(errs))
    if lines:
        raise OneShotError(f"bad manifest {path} ({len(lines)} problem(s); nothing was run): "
                           + " | ".join(lines))
    return plans


__all__ = ["Visit", "PatientPlan", "read_manifest", "REQUIRED_COLUMNS", "OPTIONAL_COLUMNS",
           "RESERVED_PATIENT_NAMES"]
