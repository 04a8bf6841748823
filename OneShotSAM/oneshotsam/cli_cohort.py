"""``oneshotsam cohort``: propagate every patient of a manifest, resumable, on Ray.

Front end of :mod:`oneshotsam.cohort`; the method and propagation options and their
configuration are those of ``oneshotsam propagate`` (:mod:`oneshotsam.volume.cli`).
Importing this module costs argparse only.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

EXIT_INTERRUPTED = 130


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``cohort``."""
    from oneshotsam.volume.cli import add_dicom_args, add_propagation_options

    p = subparsers.add_parser(
        "cohort", help="propagate every patient of a manifest (resumable; Ray for parallel runs)",
        description="Each manifest row is a visit (columns patient,visit,image,labels"
                    "[,ground_truth]); the row with labels is the patient's reference, the others "
                    "its targets in file order. Writes OUT/<patient>/<visit>_oneshotsam.nii.gz "
                    "(target's format family), .seg.nrrd and <visit>.report.json per target, and "
                    "OUT/summary.csv "
                    "and summary.json. A rerun skips targets whose inputs and settings are "
                    "unchanged. See docs/cohort.md.")
    p.add_argument("manifest", metavar="MANIFEST.csv")
    p.add_argument("--output-dir", required=True, metavar="OUT",
                   help="cohort folder: OUT/<patient>/<visit>.* per target, summary.csv and "
                        "summary.json (created; finished targets are kept across reruns; one run "
                        "at a time: OUT/.cohort.lock)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="patients in parallel (local Ray worker processes); default "
                        "min(CPUs, available memory / 2 GiB); 1 without --address runs here, "
                        "without Ray")
    p.add_argument("--address", default=None, metavar="RAY_ADDRESS",
                   help="join exactly this Ray cluster (HOST:PORT of a `ray start --head`; also "
                        "auto or ray://HOST:10001); --workers then caps the patients in flight. A "
                        "head with token authentication (Ray 2.x) is joined with the token from "
                        "RAY_AUTH_TOKEN or ~/.ray/auth_token (copy the head's); without "
                        "--address a private local Ray is started. Every node must see the "
                        "manifest's files and OUT at the same absolute path")
    p.add_argument("--max-retries", type=int, default=3, metavar="N",
                   help="Ray retries of a patient whose worker process died (default 3)")
    add_propagation_options(p)
    add_dicom_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-target lines")
    p.set_defaults(reference_slices=None, fixed_slices=())
    return p


class _Progress:
    """The cohort bar (targets done of all, patients done, remaining time) and a line per
    finished target, on stderr."""

    def __init__(self, records: dict, n_patients: int, done_patients: int, quiet: bool) -> None:
        self.records, self.quiet = records, quiet
        self.counted: set[tuple[str, str]] = set()
        self.patients_total, self.patients_done = n_patients, done_patients
        self.bar = None
        if not quiet:
            from tqdm import tqdm

            initial = sum(r["status"] == "up-to-date" for r in records.values())
            self.bar = tqdm(total=len(records), initial=initial, unit="target", desc="cohort",
                            file=sys.stderr, dynamic_ncols=True)
            self._postfix()

    def _postfix(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"patients {self.patients_done}/{self.patients_total}")

    def record(self, rec: dict[str, Any]) -> None:
        k = (rec["patient"], rec["visit"])
        self.records[k] = rec
        if k in self.counted:
            return
        self.counted.add(k)
        if self.bar is not None:
            self.bar.write(_line(rec), file=sys.stderr)
            self.bar.update(1)

    def patient(self, patient: str, error: str) -> None:
        self.patients_done += 1
        if self.bar is not None:
            if error:
                self.bar.write(f"{patient}: FAILED: {error}", file=sys.stderr)
            self._postfix()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _line(rec: dict[str, Any]) -> str:
    head = f"{rec['patient']}/{rec['visit']}: {rec['status']}"
    if rec["status"] == "failed":
        return f"{head}: {rec['error']}"
    parts = [f"{rec['seconds']:.1f} s" if rec.get("seconds") is not None else ""]
    if rec.get("confidence") is not None:
        parts.append(f"confidence {rec['confidence']:.3f}")
    parts.append(f"{len(rec.get('flagged_slices') or [])} flagged")
    if rec.get("mean_dice") is not None:
        parts.append("Dice " + " ".join(f"{k}:{v:.3f}" for k, v in rec["dice"].items())
                     + f" (mean {rec['mean_dice']:.3f})")
    return f"{head} ({', '.join(p for p in parts if p)})"


def _check_dicom_outputs(patients: Any, formats: list[str] | None) -> None:
    """DICOM outputs need DICOM targets: refuse before anything runs, naming the rows."""
    from oneshotsam.errors import OneShotError
    from oneshotsam.label_outputs import DICOM_FORMATS

    wanted = [f for f in formats or () if f in DICOM_FORMATS]
    if not wanted:
        return
    bad = [f"row {t.row} ({t.image})" for p in patients for t in p.targets
           if not Path(t.image).is_dir() and not str(t.image).lower().endswith(".dcm")]
    if bad:
        raise OneShotError(f"--output-format {' '.join(wanted)} needs DICOM series targets "
                           f"(folders); not DICOM: {', '.join(bad[:5])}"
                           + (" ..." if len(bad) > 5 else ""))


def _check_patient_identity(patients: Any, allow: bool) -> dict[str, Any]:
    """One patient per manifest patient (DICOM Patient ID / Name / Birth Date of the
    reference series, its RTSTRUCT / SEG and every target): refuse before anything runs."""
    from oneshotsam.dicom_identity import check_same_patient
    from oneshotsam.errors import OneShotError

    found: dict[str, list[str]] = {}
    for p in patients:
        rows = [(f"reference image (row {p.reference.row})", p.reference.image),
                (f"reference labels (row {p.reference.row})", p.reference.labels),
                *[(f"target (row {t.row})", t.image) for t in p.targets]]
        try:
            rec = check_same_patient(rows, allow)
        except OneShotError as exc:
            raise OneShotError(f"patient {p.patient!r}: {exc}") from None
        if rec["mismatches"]:
            found[p.patient] = rec["mismatches"]
    return {"allow_other_patient": bool(allow), "mismatches": found}


def run(args: argparse.Namespace) -> int:
    """``oneshotsam cohort``; 0 when every target is done, 2 when some failed, 130 on Ctrl-C."""
    from oneshotsam.cohort import execute
    from oneshotsam.cohort.manifest import read_manifest
    from oneshotsam.errors import OneShotError
    from oneshotsam.volume.cli import config_from_args

    t0 = time.perf_counter()
    if args.workers is not None and args.workers < 1:
        raise OneShotError(f"--workers must be at least 1 (got {args.workers})")
    patients = read_manifest(args.manifest)
    if args.workers is None and args.address is None:
        workers, how = execute.default_workers()
    else:
        workers, how = args.workers, "--workers" if args.workers else "cluster"
    if args.address is None and workers == 1:
        cfg = config_from_args(args)  # the device is checked here, where the patients run
    else:  # on Ray the device is checked where each patient runs: a cluster's workers
        # may hold the GPUs this machine lacks (each task asks Ray for one)
        cfg = dataclasses.replace(config_from_args(argparse.Namespace(**{**vars(args),
                                                                         "device": "auto"})),
                                  device=args.device)
    _check_dicom_outputs(patients, args.output_format)
    identity = _check_patient_identity(patients, getattr(args, "allow_other_patient", False))
    from oneshotsam.cohort import raylink
    from oneshotsam.cohort.lock import OutputLock
    from oneshotsam.cohort.preflight import check_ground_truth_grids

    check_ground_truth_grids(patients)
    out = Path(args.output_dir).expanduser().resolve()  # this machine's view, for every worker
    _check_no_input_replaced(patients, out, args.output_format, args.manifest)
    if cfg.checkpoint and Path(cfg.checkpoint).expanduser().exists():
        cfg = dataclasses.replace(cfg, checkpoint=str(Path(cfg.checkpoint).expanduser().resolve()))
    with raylink.auth_mode_kept():
        if args.address:  # reachable, token, or the connected Ray: before anything is written
            raylink.check_joinable(args.address)
        with OutputLock(out, sys.argv[1:]):
            return _run_locked(args, patients, cfg, out, identity, (workers, how), t0)


def _check_no_input_replaced(patients: Any, out: Path, formats: Any, manifest: str) -> None:
    """Refuse, before anything runs, a cohort whose outputs (labels, reports, summaries)
    would replace a manifest input or the manifest (:func:`oneshotsam.writer.check_not_inputs`)."""
    from oneshotsam.cohort.patient import _output_name
    from oneshotsam.cohort.state import report_path
    from oneshotsam.volume.outputs import planned_files
    from oneshotsam.writer import check_not_inputs

    outputs, inputs = [out / "summary.csv", out / "summary.json"], [manifest]
    for p in patients:
        inputs += [v for v in (p.reference.image, p.reference.labels) if v]
        for t in p.targets:
            inputs += [v for v in (t.image, t.ground_truth) if v]
            outputs += planned_files(out / p.patient, [_output_name(t.visit, t.image)], formats)[:-1]
            outputs.append(report_path(out / p.patient, t.visit))
    check_not_inputs(outputs, inputs)


def _run_locked(args: argparse.Namespace, patients: Any, cfg: Any, out: Path, identity: dict[str, Any],
                workers_how: tuple[int, str], t0: float) -> int:
    """Plan, run and summarise, holding the output folder's lock."""
    from oneshotsam.cohort import execute
    from oneshotsam.cohort.preflight import check_listed_files
    from oneshotsam.cohort.summary import counts, write_summary

    workers, how = workers_how
    jobs, records = execute.plan(patients, cfg, out, sys.argv[1:],
                                 {"rois": args.roi, "output_formats": args.output_format},
                                 getattr(args, "allow_other_patient", False))
    in_process = args.address is None and workers == 1
    mode = ("in-process" if in_process else
            f"Ray {args.address}" if args.address else f"local Ray, {workers} workers")
    n_todo = sum(len(j.targets) for j in jobs)
    if not args.quiet:
        print(f"{len(patients)} patients, {len(records)} targets: {n_todo} to do "
              f"({len(records) - n_todo} up to date); {mode if jobs else 'nothing to run'}"
              + (f" ({how})" if jobs and not in_process and not args.address else ""),
              file=sys.stderr, flush=True)
    prog = _Progress(records, len(patients), len(patients) - len(jobs), args.quiet)
    run_info = {"manifest": str(Path(args.manifest).resolve()), "output_dir": str(out),
                "settings": execute.settings_of(cfg), "mode": mode, "workers": workers,
                "address": args.address, "max_retries": args.max_retries, "argv": sys.argv[1:],
                "patient_identity": identity}
    interrupted = False
    try:
        if in_process:
            execute.run_in_process(jobs, prog.record, prog.patient)
        elif jobs:
            opts = execute.RayOptions(workers, args.address, args.device, args.max_retries)
            execute.run_on_ray(jobs, opts, prog.record, prog.patient)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        prog.close()
        execute.reconcile(jobs, records)
        rows = list(records.values())
        check_listed_files(rows)  # every file the summary names exists here
        run_info.update(seconds=round(time.perf_counter() - t0, 2), interrupted=interrupted)
        p_csv, p_json = write_summary(out, rows, run_info)
    c = counts(rows)
    if not args.quiet or interrupted:
        print(", ".join(f"{n} {s}" for s, n in sorted(c.items())) + f" in {run_info['seconds']:.1f} s",
              file=sys.stderr)
    print(p_csv)
    print(p_json)
    if interrupted:
        print("interrupted: finished targets are kept; rerun the same command to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if c.get("failed"):
        print(f"error: {c['failed']} target(s) failed (see the error column of {p_csv})",
              file=sys.stderr)
        return 2
    return 0
