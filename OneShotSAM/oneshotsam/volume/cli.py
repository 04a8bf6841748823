"""Command line of the volume pipeline (wired into ``oneshotsam`` by :mod:`oneshotsam.cli`).

* ``add_parser(subparsers)`` / ``run(args) -> int``: ``oneshotsam propagate``;
* ``add_benchmark_parser(benchmark_subparsers)`` / ``run_benchmark(args) -> int``:
  ``oneshotsam benchmark volume --dataset la|acdc-mid|acdc-all|brain``.

Options and the configuration come from :mod:`oneshotsam.settings` (the one
settings layer); outputs are written by :mod:`oneshotsam.volume.outputs`.
Importing this module costs argparse and the settings layer only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from oneshotsam.settings import (AXES, add_model_arguments, add_propagation_arguments,
                                 parse_overrides, propagation_config_from_args)

__all__ = ["add_parser", "run", "add_benchmark_parser", "run_benchmark", "parse_overrides",
           "config_from_args"]


def add_dicom_args(p: argparse.ArgumentParser) -> None:
    """``--roi`` and ``--output-format`` (DICOM RT in and out; shared with ``segment``)."""
    from oneshotsam.label_outputs import OUTPUT_FORMATS

    p.add_argument("--roi", nargs="+", default=None, metavar="NAME",
                   help="ROIs (segments) of a DICOM RTSTRUCT / SEG reference to use, in this order "
                        "(label 1, 2, ...); default: all")
    p.add_argument("--output-format", nargs="+", default=None, choices=OUTPUT_FORMATS, metavar="FMT",
                   help="label output formats, several allowed: " + ", ".join(OUTPUT_FORMATS) +
                        " (rtstruct and dicom-seg need DICOM series targets; see docs/dicom_rt.md)")
    p.add_argument("--allow-other-patient", action="store_true",
                   help="RESEARCH DATA ONLY: accept DICOM inputs whose PatientID / PatientName / "
                        "PatientBirthDate differ (refused by default); recorded in the report")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``propagate``."""
    p = subparsers.add_parser(
        "propagate", help="annotated slice(s) -> whole volume and follow-up visits",
        description="Propagate labels drawn on one or several slices of a reference volume "
                    "through that volume (no --targets) or onto follow-up volumes of the same "
                    "patient (aligned by 3D registration, slices paired by physical position). "
                    "Writes <stem>_oneshotsam.nii.gz (format family of the input), "
                    "<stem>_oneshotsam.seg.nrrd and report.json into --output-dir; never over an "
                    "input.")
    p.add_argument("--reference-volume", required=True, metavar="REF",
                   help="annotated volume (NIfTI, NRRD, MHA or a DICOM folder)")
    p.add_argument("--reference-labels", required=True, metavar="LAB",
                   help="label volume on the reference grid (.nii.gz, .nrrd, .seg.nrrd...), or a "
                        "DICOM RTSTRUCT / SEG file on the reference DICOM series")
    add_dicom_args(p)
    p.add_argument("--reference-slices", type=int, nargs="+", default=None, metavar="K",
                   help="annotated slice indices along --axis (default: every labelled slice)")
    p.add_argument("--targets", nargs="+", default=None, metavar="VOL",
                   help="follow-up volumes (default: fill the reference volume itself)")
    p.add_argument("--output-dir", required=True, metavar="OUT",
                   help="folder for the label volumes, .seg.nrrd files and report.json "
                        "(created; written only when the run finishes)")
    p.add_argument("--fixed-slices", type=int, nargs="+", default=(), metavar="K",
                   help="slices already approved (reference volume): kept, used as references; "
                        "with --update-from: the slices you emptied (the structure ends there)")
    p.add_argument("--update-from", default=None, metavar="PREV",
                   help="the --output-dir of an earlier run on this reference volume: Update it "
                        "(the label file holds your corrections, given as --reference-slices) "
                        "recomputing only the slices they change, without training again")
    add_propagation_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def add_propagation_options(p: argparse.ArgumentParser) -> None:
    """Method and propagation options of ``propagate``, shared with ``oneshotsam cohort``:
    ``--axis``, every setting of :mod:`oneshotsam.settings` and the model options."""
    p.add_argument("--axis", default="axial", choices=AXES,
                   help="slicing direction of the reference volume (default axial)")
    add_propagation_arguments(p)
    add_model_arguments(p)


def config_from_args(args: argparse.Namespace):
    """The :class:`~oneshotsam.volume.types.PropagationConfig` of ``propagate``'s options."""
    return propagation_config_from_args(
        args, axis=args.axis,
        reference_slices=tuple(args.reference_slices) if args.reference_slices else None,
        fixed_slices=tuple(args.fixed_slices or ()))


def run(args: argparse.Namespace) -> int:
    """``oneshotsam propagate``; returns the exit status (0 ok)."""
    import numpy as np

    from oneshotsam.label_outputs import check_formats
    from oneshotsam.medio import read_label_volume, read_volume
    from oneshotsam.progress import ConsoleProgress
    from oneshotsam.volume.outputs import write_outputs
    from oneshotsam.writer import check_output_dir

    cfg = config_from_args(args)
    check_output_dir(args.output_dir)
    from oneshotsam.volume.outputs import planned_files
    from oneshotsam.writer import check_not_inputs

    inputs = list(args.targets) if args.targets else [args.reference_volume]
    formats = list(dict.fromkeys(args.output_format)) if args.output_format else None
    from oneshotsam.volume.saved import STATE_FILE

    prev = getattr(args, "update_from", None)
    check_not_inputs(planned_files(args.output_dir, inputs, formats)
                     + [Path(args.output_dir) / STATE_FILE],
                     [args.reference_volume, args.reference_labels, *(args.targets or []),
                      *([prev] if prev else [])])
    from oneshotsam.dicom_identity import check_same_patient

    identity = check_same_patient([("reference series", args.reference_volume),
                                   ("reference labels", args.reference_labels),
                                   *[("target", t) for t in args.targets or []]],
                                  getattr(args, "allow_other_patient", False))
    ref = read_volume(args.reference_volume)
    lab = read_label_volume(args.reference_labels, reference=ref, rois=args.roi)
    from oneshotsam.dicom_rt import LOST_KEY, lost_contours_text

    if lost_contours_text(lab.meta):
        print(lost_contours_text(lab.meta), file=sys.stderr)
    targets = [read_volume(t) for t in (args.targets or [])]
    from oneshotsam.integrity import check_labels_fit
    from oneshotsam.volume.outputs import output_names

    values = [int(v) for v in np.unique(np.asarray(lab.voxels)) if v]
    for name, _ in output_names(list(args.targets) if args.targets else [args.reference_volume]):
        check_labels_fit(values, name)
    grids = targets or [ref]
    formats = check_formats(args.output_format, grids, inputs) if args.output_format else None
    from oneshotsam.volume.saved import run_or_update, save_session

    res, session = run_or_update(getattr(args, "update_from", None), args.output_dir, ref, lab, targets,
                                 cfg, ConsoleProgress(args.quiet))
    report = write_outputs(res, args.output_dir, inputs, segments=lab.meta.get("segments"),
                           extra_report={"command": "propagate", "argv": sys.argv[1:],
                                         "patient_identity": identity,
                                         LOST_KEY: lab.meta.get(LOST_KEY, [])},
                           formats=formats, grids=grids)
    save_session(session, args.output_dir)
    for o in report["outputs"]:
        print(o["labels"])
    print(report["report_path"])
    return 0


def add_benchmark_parser(bsub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``benchmark volume`` (LA / ACDC / pyradiomics brain)."""
    from oneshotsam.volume.benchmark import DATASETS

    p = bsub.add_parser(
        "volume", help="volume propagation benchmarks: LA, ACDC ED->ES, pyradiomics brain",
        description="3D Dice per structure, wall time and peak memory of oneshotsam "
                    "propagate on ../shared/data (not a test).")
    p.add_argument("--dataset", required=True, nargs="+", choices=DATASETS,
                   help="benchmark(s) to run (see docs/volume_propagation.md)")
    p.add_argument("--data", default="../shared/data", help="folder holding la/, acdc/, pyradiomics/")
    p.add_argument("--limit", type=int, default=None, help="first N cases per dataset")
    p.add_argument("--start", type=int, default=0, help="skip the first N cases (with --limit: a window)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    p.add_argument("--output-dir", default=None, help="also write predictions here")
    add_propagation_arguments(p)
    add_model_arguments(p)
    return p


def run_benchmark(args: argparse.Namespace) -> int:
    """``oneshotsam benchmark volume``; prints a table, optionally writes JSON."""
    from oneshotsam.volume.benchmark import run_datasets

    cfg = propagation_config_from_args(args)
    results = run_datasets(args.dataset, args.data, cfg, limit=args.limit, start=args.start,
                           output_dir=args.output_dir)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    return 0
