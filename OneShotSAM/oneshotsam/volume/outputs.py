"""Write a propagation's outputs into a folder.

For every label volume (one per target; the reference's own when there are
no targets): ``<stem><family suffix>`` (``output_name_for`` of the input:
``.nii.gz`` for NIfTI/DICOM, ``.nrrd``, ``.mha``) in the volume's own
geometry, and ``<stem>.seg.nrrd`` with segment names and colours from the
reference labels (``Volume.meta["segments"]``); plus ``report.json``.
Numpy / stdlib at import time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from oneshotsam.errors import OneShotError
from oneshotsam.types import Volume
from oneshotsam.volume.pipeline import PropagationResult


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


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


def write_outputs(result: PropagationResult, output_dir: str | Path,
                  input_paths: Sequence[str | Path], segments: list[dict] | None = None,
                  extra_report: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write label volumes, ``.seg.nrrd`` files and ``report.json``.

    Args:
        result: from :func:`oneshotsam.volume.pipeline.propagate`.
        input_paths: the file of each label volume's input (targets, or the
            reference volume when there were no targets), for the names.
        segments: segment descriptions for ``.seg.nrrd`` (default: each volume's
            ``meta["segments"]``).
        extra_report: merged into the report (e.g. the command line).

    Returns: the report as written (with an ``outputs`` list).
    """
    from oneshotsam.medio import write_label_volume

    out_dir = Path(output_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OneShotError(f"cannot create the output folder {out_dir}: {exc.strerror}") from None
    if len(input_paths) < len(result.label_volumes):
        raise OneShotError("write_outputs needs one input path per label volume")
    written = []
    for vol, (lab_name, seg_name) in zip(result.label_volumes, output_names(input_paths)):
        p1 = write_label_volume(vol, out_dir / lab_name)
        meta = dict(vol.meta)
        if segments is not None:
            meta["segments"] = segments
        p2 = write_label_volume(Volume(vol.voxels, vol.ijk_to_lps, vol.name, meta), out_dir / seg_name)
        written.append({"volume": vol.name, "labels": str(p1), "segmentation": str(p2)})
    report = dict(result.report)
    report.update(extra_report or {})
    report["outputs"] = written
    report["cancelled"] = bool(result.cancelled)
    path = out_dir / "report.json"
    path.write_text(json.dumps(report, indent=1, default=_json_default))
    report["report_path"] = str(path)
    return report
