"""Checks of a cohort around the work: before it (ground-truth grids, so a mismatch is not
found after an hour of propagation) and after it (every file the summary names exists
on this machine, so a cluster that wrote elsewhere is not reported as done).

SimpleITK is imported inside functions (image headers only, no voxels read for files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from oneshotsam.errors import OneShotError

#: statuses whose summary row names output files
_WITH_FILES = ("done", "up-to-date")


def grid_size(path: str | Path) -> tuple[int, ...] | None:
    """Voxel counts (i, j, k) of a volume from its header (a DICOM folder: its slices read);
    None when the header cannot be read here (the run then reports it)."""
    p = Path(path)
    try:
        if p.is_dir():
            from oneshotsam.medio import read_volume

            return tuple(int(n) for n in reversed(read_volume(p).voxels.shape))
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(p))
        reader.ReadImageInformation()
        return tuple(int(n) for n in reader.GetSize())[:3]
    except (RuntimeError, OneShotError, OSError):
        return None


def check_ground_truth_grids(patients: Sequence[Any]) -> None:
    """Refuse, before any work, every target whose ``ground_truth`` has another voxel grid
    size than its image (listing each with its manifest row)."""
    bad = []
    for p in patients:
        for t in p.targets:
            if not t.ground_truth:
                continue
            img, gt = grid_size(t.image), grid_size(t.ground_truth)
            if img is not None and gt is not None and img != gt:
                bad.append(f"patient {t.patient} row {t.row}: ground_truth {t.ground_truth} has "
                           f"{'x'.join(map(str, gt))} voxels, the image {t.image} "
                           f"{'x'.join(map(str, img))}")
    if bad:
        raise OneShotError(f"{len(bad)} ground truth(s) not on their target's grid (nothing was run; "
                           "give a label volume on the target's grid, or leave ground_truth empty): "
                           + " | ".join(bad))


def listed_files(rec: dict[str, Any]) -> list[str]:
    """The output files a summary row names."""
    return [str(rec[k]) for k in ("labels", "segmentation", "report") if rec.get(k)]


def check_listed_files(records: Iterable[dict[str, Any]]) -> int:
    """Turn every ``done`` / ``up-to-date`` row whose named files are not all on this machine
    into ``failed`` (with the files and the reason); returns how many rows were changed."""
    changed = 0
    for rec in records:
        if rec.get("status") not in _WITH_FILES:
            continue
        missing = [f for f in listed_files(rec) if not Path(f).is_absolute() or not Path(f).is_file()]
        if missing:
            where = f" by host {rec['host']}" if rec.get("host") else ""
            rec.update(status="failed", error=(
                f"the outputs written{where} are not on this machine: {', '.join(missing[:3])}; "
                "every Ray node must see --output-dir at the same absolute path (a shared file "
                "system)"))
            changed += 1
    return changed


__all__ = ["check_ground_truth_grids", "check_listed_files", "grid_size", "listed_files"]
