"""One registry of label-volume output formats, for every front end (``segment``,
``propagate``, the cohort runner, scripts).

Formats (``--output-format``, several allowed):

============ ======================= ===================================================
name         file                    what
============ ======================= ===================================================
nifti        ``<stem>.nii.gz``       label map, the volume's geometry
seg-nrrd     ``<stem>.seg.nrrd``     Slicer segmentation: segment names and colours
rtstruct     ``<stem>.rtstruct.dcm`` RT Structure Set on the target DICOM series
dicom-seg    ``<stem>.seg.dcm``      DICOM SEG (highdicom) on the target DICOM series
============ ======================= ===================================================

The front ends pass ``<stem>`` = :func:`oneshotsam.writer.output_stem` of the target
(``CT_followup_oneshotsam``), so no output is named like an input, and check every
planned name with :func:`oneshotsam.writer.check_not_inputs` before the run.

The DICOM formats need the volume's grid to come from a DICOM series
(:func:`oneshotsam.medio.read_volume` of a folder): :func:`check_formats` says so before
anything runs. :func:`write_label_formats` writes one volume in every format asked for
into a hidden temporary folder inside the output folder and moves the files in only
when all are written, so an error leaves no partial set. Stdlib at import time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from oneshotsam.errors import OneShotError
from oneshotsam.types import Volume

OUTPUT_FORMATS = ("nifti", "seg-nrrd", "rtstruct", "dicom-seg")
SUFFIXES = {"nifti": ".nii.gz", "seg-nrrd": ".seg.nrrd", "rtstruct": ".rtstruct.dcm",
            "dicom-seg": ".seg.dcm"}
DICOM_FORMATS = ("rtstruct", "dicom-seg")


def check_formats(formats: Sequence[str], grids: Sequence[Volume] = (),
                  grid_names: Sequence[str] = ()) -> tuple[str, ...]:
    """Validated, de-duplicated formats (order kept).

    Args:
        formats: names from :data:`OUTPUT_FORMATS`.
        grids: the volumes whose grids the outputs will be on (targets); a DICOM format
            needs every one of them read from a DICOM series.
        grid_names: how to name each grid in messages (default: the volume names).
    """
    out: list[str] = []
    for f in formats:
        if f not in OUTPUT_FORMATS:
            raise OneShotError(f"unknown output format {f!r}: use one or more of {', '.join(OUTPUT_FORMATS)}")
        if f not in out:
            out.append(f)
    if not out:
        raise OneShotError(f"no output format: use one or more of {', '.join(OUTPUT_FORMATS)}")
    dicom = [f for f in out if f in DICOM_FORMATS]
    if dicom:
        names = list(grid_names) or [g.name for g in grids]
        for g, name in zip(grids, names + [""] * len(grids)):
            if not isinstance(g.meta, dict) or g.meta.get("dicom_series") is None:
                raise OneShotError(
                    f"--output-format {dicom[0]} needs a DICOM series target, but {name or g.name!r} is "
                    "not one: give the DICOM folder, or use nifti / seg-nrrd")
            for f in dicom:
                dry_run(f, g, name or g.name)
    return tuple(out)


def dry_run(fmt: str, grid: Volume, name: str) -> None:
    """Build (in memory, nothing written) a ``fmt`` object of one labelled voxel on
    ``grid``'s series, so that whatever the writer needs from the series (Frame of
    Reference, Pixel Spacing, slice thickness, ...) is refused before any work."""
    import numpy as np

    series = grid.meta["dicom_series"]
    lab = np.zeros(tuple(int(n) for n in grid.shape_kji), np.uint8)
    lab[(0,) * lab.ndim] = 1
    vol = Volume(lab, grid.ijk_to_lps, "check")
    try:
        if fmt == "rtstruct":
            from oneshotsam.dicom_rt_write import build_rtstruct

            build_rtstruct(vol, series)
        else:
            from oneshotsam.dicom_seg import build_dicom_seg

            build_dicom_seg(vol, series)
    except OneShotError as exc:
        raise OneShotError(f"--output-format {fmt} for {name!r}: {exc}") from None
    except Exception as exc:  # the writers' libraries raise many kinds on odd series
        raise OneShotError(f"--output-format {fmt} cannot be written on the series of {name!r} "
                           f"({type(exc).__name__}: {str(exc)[:200]}): write nifti / seg-nrrd instead, "
                           "or fix the series' export") from None


def output_file_names(stem: str, formats: Sequence[str]) -> dict[str, str]:
    """``{format: file name}`` for one output stem."""
    return {f: stem + SUFFIXES[f] for f in formats}


def _writer(fmt: str) -> Callable[[Volume, Path, list[dict] | None, Any], Path]:
    from oneshotsam import medio

    def nifti(vol: Volume, path: Path, segments: list[dict] | None, series: Any) -> Path:
        return medio.write_label_volume(vol, path)

    def seg_nrrd(vol: Volume, path: Path, segments: list[dict] | None, series: Any) -> Path:
        meta = dict(vol.meta) if isinstance(vol.meta, dict) else {}
        if segments is not None:
            meta["segments"] = segments
        return medio.write_label_volume(Volume(vol.voxels, vol.ijk_to_lps, vol.name, meta), path)

    def rtstruct(vol: Volume, path: Path, segments: list[dict] | None, series: Any) -> Path:
        from oneshotsam.dicom_rt_write import write_rtstruct

        return write_rtstruct(vol, series, path, segments)

    def dicom_seg(vol: Volume, path: Path, segments: list[dict] | None, series: Any) -> Path:
        from oneshotsam.dicom_seg import write_dicom_seg

        return write_dicom_seg(vol, series, path, segments)

    return {"nifti": nifti, "seg-nrrd": seg_nrrd, "rtstruct": rtstruct, "dicom-seg": dicom_seg}[fmt]


def write_label_formats(labels: Volume, formats: Sequence[str], output_dir: str | Path, stem: str,
                        segments: list[dict] | None = None, grid: Volume | None = None) -> dict[str, Path]:
    """Write one label volume in every format asked for; all files or none.

    Args:
        labels: integer label volume (``[k, j, i]``, LPS affine) on ``grid``'s grid.
        formats: names from :data:`OUTPUT_FORMATS`.
        output_dir: created if missing; other files in it are kept, same names replaced.
        stem: file name stem (``<stem>.nii.gz``, ``<stem>.rtstruct.dcm``, ...).
        segments: names / colours (``{"value", "name", "color" 0..1}``; default
            ``labels.meta["segments"]``) for seg-nrrd, rtstruct and dicom-seg.
        grid: the target volume the labels are on; for the DICOM formats it must come
            from a DICOM series (its ``meta["dicom_series"]``), default ``labels``.

    Returns: ``{format: written path}``.
    """
    fmts = check_formats(formats, [grid if grid is not None else labels])
    series = (grid if grid is not None else labels).meta.get("dicom_series")
    if segments is None and isinstance(labels.meta, dict):
        segments = labels.meta.get("segments")
    out_dir = Path(output_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{stem}.", dir=out_dir))
    except OSError as exc:
        raise OneShotError(f"cannot write into {out_dir}: {exc.strerror}") from None
    try:
        names = output_file_names(stem, fmts)
        for f in fmts:
            _writer(f)(labels, tmp / names[f], segments, series)
        done = {}
        for f in fmts:
            os.replace(tmp / names[f], out_dir / names[f])
            done[f] = out_dir / names[f]
        return done
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
