"""``OUT/summary.csv`` and ``OUT/summary.json``: one row per target of the manifest.

Columns of ``summary.csv``: ``patient, visit, row`` (manifest row), ``status`` (``done``
this run, ``up-to-date`` from an earlier run with the same inputs and settings,
``failed``, ``not run``), ``seconds`` (wall time of the target, from its report),
``cpu_seconds`` (CPU time of its process meanwhile, all threads: the load-independent cost),
``confidence`` (mean method confidence over the seed and predicted slices),
``n_flagged`` and ``flagged_slices`` (space-separated slice indices to review first),
``dice_<label>`` per label value and ``mean_dice`` (targets with a ``ground_truth``),
``error``, and the ``labels``, ``segmentation``, ``report`` and ``image`` paths.
``summary.json`` holds the same rows (``targets``) plus the run: manifest, settings,
workers, Ray address, counts per status, per-patient errors and wall time.
Both are written atomically. Standard library only.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

from oneshotsam.cohort.state import write_json_atomic, write_text_atomic

_FRONT = ("patient", "visit", "row", "status", "seconds", "cpu_seconds", "confidence", "n_flagged",
          "flagged_slices")
_BACK = ("mean_dice", "error", "labels", "segmentation", "report", "image")


def dice_labels(records: Sequence[dict[str, Any]]) -> list[str]:
    return sorted({k for r in records for k in (r.get("dice") or {})}, key=lambda x: int(x))


def csv_text(records: Sequence[dict[str, Any]]) -> str:
    labels = dice_labels(records)
    cols = list(_FRONT) + [f"dice_{v}" for v in labels] + list(_BACK)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in records:
        row = {c: r.get(c, "") for c in cols}
        row["n_flagged"] = len(r.get("flagged_slices") or [])
        row["flagged_slices"] = " ".join(str(k) for k in r.get("flagged_slices") or [])
        for v in labels:
            row[f"dice_{v}"] = (r.get("dice") or {}).get(v, "")
        w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def counts(records: Sequence[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out


def write_summary(output_dir: str | Path, records: Sequence[dict[str, Any]],
                  run: dict[str, Any]) -> tuple[Path, Path]:
    """Write both files; ``run`` goes into the JSON beside ``counts`` and ``targets``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    p_csv = write_text_atomic(out / "summary.csv", csv_text(records))
    data = dict(run)
    data["counts"] = counts(records)
    data["targets"] = list(records)
    p_json = write_json_atomic(out / "summary.json", data)
    return p_csv, p_json


__all__ = ["write_summary", "csv_text", "counts", "dice_labels"]
