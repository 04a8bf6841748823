"""Write a propagation's outputs into a folder.

For every label volume (one per target; the reference's own when there are
no targets): ``<stem>_oneshotsam<family suffix>`` (``output_name_for`` of the
input: ``.nii.gz`` for NIfTI/DICOM, ``.nrrd``, ``.mha``) in the volume's own
geometry, and ``<stem>_oneshotsam.seg.nrrd`` with segment names and colours from
the reference labels (``Volume.meta["segments"]``); plus ``report.json``.
:func:`planned_files` lists them all before the run, for
:func:`oneshotsam.writer.check_not_inputs`. Files are
written through :func:`oneshotsam.writer.staged_output`: all of them appear in
the folder at the end, or none. Numpy / stdlib at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from oneshotsam.errors import OneShotError
from oneshotsam.types import Volume
from oneshotsam.volume.types import PropagationResult
from oneshotsam.writer import jsonable, staged_output, write_json_atomic


def output_names(input_paths: Sequence[str | Path]) -> list[tuple[str, str]]:
    """``(label file name, seg.nrrd file name)`` per input, made unique by a
    numeric suffix when two inputs share a stem."""
    from oneshotsam.medio import output_name_for, split_suffix

    seen: dict[str, int] = {}
    out = []
    for p in input_paths:
        name = output_name_for(p)
        stem, suf = split_suffix(name)
        if suf == ".seg.nrrd":  # a .seg.nrrd input: plain labels as NRRD beside it
            suf = ".nrrd"
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        if n:
            stem = f"{stem}_{n + 1}"
        out.append((stem + suf, stem + ".seg.nrrd"))
    return out


def planned_files(output_dir: str | Path, input_paths: Sequence[str | Path],
                  formats: Sequence[str] | None = None) -> list[Path]:
    """Every file :func:`write_outputs` will write for these inputs (``report.json`` too)."""
    from oneshotsam.label_outputs import output_file_names
    from oneshotsam.medio import split_suffix

    out = Path(output_dir)
    files = []
    for lab_name, seg_name in output_names(input_paths):
        if formats:
            files += [out / n for n in output_file_names(split_suffix(seg_name)[0], formats).values()]
        else:
            files += [out / lab_name, out / seg_name]
    return files + [out / "report.json"]


def write_outputs(result: PropagationResult, output_dir: str | Path,
                  input_paths: Sequence[str | Path], segments: list[dict] | None = None,
                  extra_report: dict[str, Any] | None = None, formats: Sequence[str] | None = None,
                  grids: Sequence[Volume] | None = None) -> dict[str, Any]:
    """Write label volumes, ``.seg.nrrd`` files and ``report.json``.

    Args:
        result: from :func:`oneshotsam.volume.pipeline.propagate`.
        input_paths: the file of each label volume's input (targets, or the
            reference volume when there were no targets), for the names.
        segments: segment descriptions for ``.seg.nrrd`` (default: each volume's
            ``meta["segments"]``).
        extra_report: merged into the report (e.g. the command line).
        formats: output formats of :mod:`oneshotsam.label_outputs` (``<stem>.nii.gz``,
            ``<stem>.rtstruct.dcm``, ...) instead of the default pair above.
        grids: the volume each label volume is on (its input), for the DICOM formats.

    Returns: the report as written (with an ``outputs`` list).
    """
    from oneshotsam.medio import write_label_volume

    from oneshotsam.writer import check_not_inputs

    out_dir = Path(output_dir)
    if len(input_paths) < len(result.label_volumes):
        raise OneShotError("write_outputs needs one input path per label volume")
    check_not_inputs(planned_files(out_dir, input_paths, formats), input_paths)
    written = []
    with staged_output(out_dir, prefix=".oneshotsam-propagate-") as tmp:
        for n, (vol, (lab_name, seg_name)) in enumerate(zip(result.label_volumes,
                                                            output_names(input_paths))):
            if formats is not None:
                from oneshotsam.label_outputs import write_label_formats
                from oneshotsam.medio import split_suffix

                grid = grids[n] if grids is not None else None
                files = write_label_formats(vol, formats, tmp, split_suffix(seg_name)[0],
                                            segments=segments, grid=grid)
                final = {f: str(out_dir / Path(q).name) for f, q in files.items()}
                written.append({"volume": vol.name, "labels": next(iter(final.values())),
                                "files": final})
                continue
            p1 = write_label_volume(vol, tmp / lab_name)
            meta = dict(vol.meta)
            if segments is not None:
                meta["segments"] = segments
            p2 = write_label_volume(Volume(vol.voxels, vol.ijk_to_lps, vol.name, meta), tmp / seg_name)
            written.append({"volume": vol.name, "labels": str(out_dir / Path(p1).name),
                            "segmentation": str(out_dir / Path(p2).name)})
        report = dict(result.report)
        report.update(extra_report or {})
        report["outputs"] = written
        report["cancelled"] = bool(result.cancelled)
        write_json_atomic(jsonable(report), tmp / "report.json")
    report["report_path"] = str(out_dir / "report.json")
    return report
