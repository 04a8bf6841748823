"""One patient's chain: the reference visit propagated to each target, in visit order.

Every target goes through the same engine calls as ``oneshotsam propagate --targets T``:
:func:`oneshotsam.medio.read_volume` / ``read_label_volume``,
:func:`oneshotsam.volume.pipeline.propagate` and
:func:`oneshotsam.volume.outputs.write_outputs` (into a staging folder, then moved into
``OUT/<patient>/`` by :func:`.state.commit_outputs`). Numpy at import time.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from oneshotsam.cohort.manifest import Visit
from oneshotsam.cohort.state import clear_staging, commit_outputs, load_complete, new_staging

#: record statuses: done now, done by an earlier run with the same inputs and settings,
#: failed (``error`` says why), not run (interrupted before it started)
STATUSES = ("done", "up-to-date", "failed", "not run")


@dataclass(frozen=True)
class PatientJob:
    """The targets of one patient that need (re)doing, with their keys.

    Attributes:
        config: the resolved :class:`oneshotsam.volume.pipeline.PropagationConfig`.
        keys: one :func:`.state.target_key` per target, same order.
        argv: the command line, recorded in each report.
        rois: ROIs of a DICOM RTSTRUCT / SEG reference (``--roi``; None = all).
        output_formats: ``--output-format`` names (None = NIfTI-family + ``.seg.nrrd``).
        allow_other_patient: ``--allow-other-patient`` (each target's report records the
            patient check of its inputs: :func:`target_identity`).
    """

    patient: str
    reference: Visit
    targets: tuple[Visit, ...]
    keys: tuple[str, ...]
    output_dir: str
    config: Any
    argv: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    rois: tuple[str, ...] | None = None
    output_formats: tuple[str, ...] | None = None
    allow_other_patient: bool = False

    @property
    def patient_dir(self) -> Path:
        return Path(self.output_dir) / self.patient


def base_record(v: Visit, status: str, **kw: Any) -> dict[str, Any]:
    """A summary row for target ``v`` (see :mod:`.summary` for the columns)."""
    rec: dict[str, Any] = {"patient": v.patient, "visit": v.visit, "row": v.row, "image": v.image,
                           "status": status, "seconds": None, "cpu_seconds": None,
                           "confidence": None,
                           "flagged_slices": [], "dice": {}, "mean_dice": None, "error": "",
                           "labels": "", "segmentation": "", "report": ""}
    rec.update(kw)
    return rec


def record_from_report(v: Visit, report: dict[str, Any], status: str) -> dict[str, Any]:
    """The summary row of a committed target report."""
    c = report["cohort"]
    out = report["outputs"][0]
    return base_record(v, status, seconds=c.get("seconds"), cpu_seconds=c.get("cpu_seconds"),
                       confidence=c.get("confidence"),
                       flagged_slices=c.get("flagged_slices", []), dice=c.get("dice", {}),
                       mean_dice=c.get("mean_dice"), labels=out["labels"],
                       segmentation=out.get("segmentation")
                       or (out.get("files") or {}).get("seg-nrrd", ""),
                       report=c.get("report_path", ""),
                       pid=c.get("pid"), host=c.get("host"))


def _scores(result, gt_path: str | None, label_values: list[int]) -> tuple[dict[str, float], float | None]:
    if not gt_path:
        return {}, None
    import numpy as np

    from oneshotsam.evaluate import dice_iou
    from oneshotsam.medio import read_label_volume

    gt = read_label_volume(gt_path)
    pred = np.asarray(result.label_volumes[0].voxels)
    values = sorted(set(label_values) | {int(x) for x in np.unique(gt.voxels) if x})
    from oneshotsam.errors import OneShotError

    if pred.shape != np.asarray(gt.voxels).shape:
        raise OneShotError(f"ground truth {gt_path} has shape {np.asarray(gt.voxels).shape}, the "
                           f"target {pred.shape}: give a label volume on the target's grid")
    d = {str(v): round(float(s["dice"]), 4) for v, s in dice_iou(pred, gt.voxels, values).items()}
    return d, (round(float(np.mean(list(d.values()))), 4) if d else None)


def _target_summary(report: dict[str, Any]) -> tuple[float | None, list[int]]:
    """(mean confidence over the seed and predicted slices, flagged slice indices)."""
    t = (report.get("targets") or [{}])[0]
    conf = [p["confidence"] for p in t.get("per_slice", []) if p.get("status") in ("seed", "predicted")]
    return (round(sum(conf) / len(conf), 4) if conf else None), [int(k) for k in t.get("slices_flagged", [])]


def _output_name(visit: str, image: str) -> str:
    """A file name for ``write_outputs`` that gives ``<visit>`` + the image's family suffix."""
    from oneshotsam.medio import split_suffix

    p = Path(image)
    return visit + (".nii.gz" if p.is_dir() else split_suffix(p)[1])


def run_target(job: PatientJob, i: int, ref, ref_labels, progress=None) -> dict[str, Any]:
    """Propagate the reference to target ``i`` and commit its outputs; returns its record.

    Raises whatever the engine raises (the caller turns it into a failed record);
    KeyboardInterrupt leaves no partial output (the staging folder is removed)."""
    from oneshotsam.medio import read_volume
    from oneshotsam.progress import no_progress
    from oneshotsam.volume.outputs import write_outputs
    from oneshotsam.volume.pipeline import propagate

    v = job.targets[i]
    identity = target_identity(job, v)
    t0, c0 = time.perf_counter(), time.process_time()
    staging = new_staging(job.patient_dir, v.visit)
    try:
        target = read_volume(v.image)
        formats = None
        if job.output_formats:
            from oneshotsam.label_outputs import check_formats

            formats = check_formats(job.output_formats, [target], [v.image])
        res = propagate(ref, ref_labels, [target], job.config, progress=progress or no_progress)
        import numpy as np

        values = sorted(int(x) for x in np.unique(ref_labels.voxels) if x)
        dice, mean_dice = _scores(res, v.ground_truth, values)
        conf, flagged = _target_summary(res.report)
        seconds = round(time.perf_counter() - t0, 2)
        cpu_seconds = round(time.process_time() - c0, 2)  # this process, all its threads
        cohort = {"patient": job.patient, "visit": v.visit, "row": v.row, "key": job.keys[i],
                  "image": v.image, "ground_truth": v.ground_truth,
                  "reference": {"visit": job.reference.visit, "image": job.reference.image,
                                "labels": job.reference.labels},
                  "seconds": seconds, "cpu_seconds": cpu_seconds, "confidence": conf,
                  "flagged_slices": flagged,
                  "dice": dice, "mean_dice": mean_dice, "pid": os.getpid(),
                  "host": socket.gethostname(),
                  "report_path": str(job.patient_dir / f"{v.visit}.report.json"), **job.extra}
        report = write_outputs(res, staging, [staging / _output_name(v.visit, v.image)],
                               segments=ref_labels.meta.get("segments"),
                               extra_report={"command": "cohort", "argv": list(job.argv),
                                             "cohort": cohort, "patient_identity": identity,
                                             "contours_outside_series":
                                             ref_labels.meta.get("contours_outside_series", [])},
                               formats=formats, grids=[target])
        final = commit_outputs(staging, job.patient_dir, report)
        return record_from_report(v, final, "done")
    finally:
        if staging.exists():
            import shutil

            shutil.rmtree(staging, ignore_errors=True)


def target_identity(job: PatientJob, v: Visit) -> dict[str, Any]:
    """The patient check of one target's inputs (reference image, its labels, the
    target), for its report: :func:`oneshotsam.dicom_identity.check_same_patient`'s
    record plus ``override_used`` (another patient let through by ``--allow-other-patient``).
    Raises its OneShotError when they differ without the option."""
    from oneshotsam.dicom_identity import check_same_patient

    ref = job.reference
    rec = check_same_patient([(f"reference image (row {ref.row})", ref.image),
                              (f"reference labels (row {ref.row})", ref.labels),
                              (f"target (row {v.row})", v.image)], job.allow_other_patient)
    return {**rec, "override_used": bool(rec["mismatches"])}


def run_patient(job: PatientJob, on_target: Callable[[dict[str, Any]], None] | None = None
                ) -> dict[str, Any]:
    """Run every target of ``job`` in order; a failing target is recorded (status
    ``failed`` with its error) and the next one still runs.

    Returns ``{"patient", "pid", "host", "records": [one per target, job order]}``.
    KeyboardInterrupt is not caught (nothing half-written remains)."""
    from oneshotsam.medio import read_label_volume, read_volume

    clear_staging(job.patient_dir)
    records: list[dict[str, Any]] = []
    try:
        ref = read_volume(job.reference.image)
        ref_labels = read_label_volume(job.reference.labels, reference=ref,
                                       rois=list(job.rois) if job.rois else None)
    except Exception as exc:  # the reference is unusable: every target fails with its reason
        err = f"reference (row {job.reference.row}): {_error_text(exc)}"
        records = [base_record(v, "failed", error=err) for v in job.targets]
        for r in records:
            if on_target:
                on_target(r)
        return {"patient": job.patient, "pid": os.getpid(), "host": socket.gethostname(),
                "records": records}
    for i, v in enumerate(job.targets):
        done = load_complete(job.patient_dir, v.visit, job.keys[i])
        try:  # done by an earlier attempt of this task (a retried worker): kept as is
            rec = (record_from_report(v, done, "done") if done is not None
                   else run_target(job, i, ref, ref_labels))
        except Exception as exc:
            rec = base_record(v, "failed", error=_error_text(exc),
                              traceback=traceback.format_exc(limit=8))
        records.append(rec)
        if on_target:
            on_target(rec)
    return {"patient": job.patient, "pid": os.getpid(), "host": socket.gethostname(),
            "records": records}


def _error_text(exc: BaseException) -> str:
    from oneshotsam.errors import OneShotError

    if isinstance(exc, OneShotError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


__all__ = ["PatientJob", "run_patient", "run_target", "base_record", "record_from_report", "STATUSES"]
