"""Command line of the volume pipeline (wired into ``oneshotsam`` by :mod:`oneshotsam.cli`).

* ``add_parser(subparsers)`` / ``run(args) -> int``: ``oneshotsam propagate``;
* ``add_benchmark_parser(benchmark_subparsers)`` / ``run_benchmark(args) -> int``:
  ``oneshotsam benchmark volume --dataset la|acdc-mid|acdc-all|brain``.

Importing this module costs argparse only.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

_METHODS = ("medpersam-warp", "medpersam", "p2sam", "persam")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_overrides(items: list[str]) -> tuple[tuple[str, Any], ...]:
    """``["steps=100", "net={...}"]`` -> ``(("steps", 100), ...)`` (JSON values when possible)."""
    from oneshotsam.methods.base import OneShotError

    out = []
    for item in items or []:
        if "=" not in item:
            raise OneShotError(f"--set expects KEY=VALUE; got {item!r}")
        k, v = item.split("=", 1)
        out.append((k.strip(), _parse_value(v.strip())))
    return tuple(out)


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="medpersam-warp", choices=_METHODS,
                   help="2D one-shot method (default medpersam-warp: needs no SAM weights; "
                        "it trains one warping network per volume)")
    p.add_argument("--backend", default=None, help="SAM backend name (p2sam, persam, medpersam)")
    p.add_argument("--checkpoint", default=None, help="backend weights path")
    p.add_argument("--preset", default=None, help="method preset name")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="method / volume-engine setting (JSON value), repeatable, e.g. --set steps=200")
    p.add_argument("--propagation", default="auto", choices=("auto", "chain", "direct", "warp-volume"),
                   help="auto: one warping network per volume for medpersam-warp, chain otherwise")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``propagate``."""
    p = subparsers.add_parser(
        "propagate", help="annotated slice(s) -> whole volume and follow-up visits",
        description="Propagate labels drawn on one or several slices of a reference volume "
                    "through that volume (no --targets) or onto follow-up volumes of the same "
                    "patient (aligned by 3D registration, slices paired by physical position). "
                    "Writes <stem>.nii.gz (format family of the input), <stem>.seg.nrrd and "
                    "report.json into --output-dir.")
    p.add_argument("--reference-volume", required=True, metavar="REF",
                   help="annotated volume (NIfTI, NRRD, MHA or a DICOM folder)")
    p.add_argument("--reference-labels", required=True, metavar="LAB",
                   help="label volume on the reference grid (.nii.gz, .nrrd, .seg.nrrd...)")
    p.add_argument("--reference-slices", type=int, nargs="+", default=None, metavar="K",
                   help="annotated slice indices along --axis (default: every labelled slice)")
    p.add_argument("--targets", nargs="+", default=None, metavar="VOL",
                   help="follow-up volumes (default: fill the reference volume itself)")
    p.add_argument("--output-dir", required=True, metavar="OUT")
    p.add_argument("--fixed-slices", type=int, nargs="+", default=(), metavar="K",
                   help="slices already approved (reference volume): kept, used as references")
    add_propagation_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def add_propagation_options(p: argparse.ArgumentParser) -> None:
    """Method and propagation options of ``propagate`` (shared with ``oneshotsam cohort``):
    ``--axis --window --no-align --registration --extend-beyond-contour
    --contour-end-min-fit --contour-end-max-slices`` and :func:`add_model_args`."""
    p.add_argument("--axis", default="axial", choices=("axial", "coronal", "sagittal"))
    p.add_argument("--window", default=None, metavar="SPEC",
                   help="intensity window (CT preset, percentile:LO,HI, LOW,HIGH or auto); "
                        "computed once on the reference and used for every volume")
    p.add_argument("--no-align", dest="align", action="store_false",
                   help="do not register follow-ups (slices still paired by physical position)")
    p.add_argument("--registration", default="affine", choices=("rigid", "affine"))
    p.add_argument("--extend-beyond-contour", action="store_true",
                   help="follow-ups of a reference contoured on every slice of the structure: also "
                        "walk outward past the contour's ends (default: those slices stay empty)")
    p.add_argument("--contour-end-min-fit", type=float, default=0.85, metavar="F",
                   help="follow-ups of a contour on every slice: trim a label from its contour's "
                        "ends inward where its image fit is below F (0 disables; default 0.85)")
    p.add_argument("--contour-end-max-slices", type=int, default=1, metavar="N",
                   help="... at most N slices from each end (default 1)")
    add_model_args(p)


def config_from_args(args: argparse.Namespace):
    from oneshotsam.volume.pipeline import PropagationConfig

    return PropagationConfig(
        method=args.method, axis=args.axis,
        reference_slices=tuple(args.reference_slices) if args.reference_slices else None,
        align=args.align, window=args.window, preset=args.preset, backend=args.backend,
        checkpoint=args.checkpoint, device=args.device, fixed_slices=tuple(args.fixed_slices or ()),
        propagation=args.propagation, registration=args.registration,
        extend_beyond_contour=args.extend_beyond_contour,
        contour_end_min_fit=args.contour_end_min_fit,
        contour_end_max_slices=args.contour_end_max_slices,
        method_overrides=parse_overrides(args.overrides))


def _printer(quiet: bool):
    last = [-1]

    def progress(done: int, total: int, message: str) -> bool:
        pct = int(100 * done / max(total, 1))
        if not quiet and (pct != last[0] or done == total):
            last[0] = pct
            print(f"[{pct:3d}%] {message}", file=sys.stderr, flush=True)
        return True

    return progress


def run(args: argparse.Namespace) -> int:
    """``oneshotsam propagate``; returns the exit status (0 ok)."""
    from oneshotsam.medio import read_label_volume, read_volume
    from oneshotsam.volume.outputs import write_outputs
    from oneshotsam.volume.pipeline import propagate

    cfg = config_from_args(args)
    ref = read_volume(args.reference_volume)
    lab = read_label_volume(args.reference_labels)
    targets = [read_volume(t) for t in (args.targets or [])]
    res = propagate(ref, lab, targets, cfg, progress=_printer(args.quiet))
    inputs = list(args.targets) if args.targets else [args.reference_volume]
    report = write_outputs(res, args.output_dir, inputs, segments=lab.meta.get("segments"),
                           extra_report={"command": "propagate", "argv": sys.argv[1:]})
    for o in report["outputs"]:
        print(o["labels"])
    print(report["report_path"])
    return 0


def add_benchmark_parser(bsub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``benchmark volume`` (LA / ACDC / pyradiomics brain)."""
    p = bsub.add_parser(
        "volume", help="volume propagation benchmarks: LA, ACDC ED->ES, pyradiomics brain",
        description="3D Dice per structure, wall time and peak memory of oneshotsam "
                    "propagate on ../shared/data (not a test).")
    p.add_argument("--dataset", required=True, nargs="+",
                   choices=("la", "acdc-mid", "acdc-all", "brain"))
    p.add_argument("--data", default="../shared/data", help="folder holding la/, acdc/, pyradiomics/")
    p.add_argument("--limit", type=int, default=None, help="first N cases per dataset")
    p.add_argument("--start", type=int, default=0, help="skip the first N cases (with --limit: a window)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    p.add_argument("--output-dir", default=None, help="also write predictions here")
    add_model_args(p)
    return p


def run_benchmark(args: argparse.Namespace) -> int:
    """``oneshotsam benchmark volume``; prints a table, optionally writes JSON."""
    from oneshotsam.volume.benchmark import run_datasets

    results = run_datasets(args.dataset, args.data, limit=args.limit, start=args.start,
                           method=args.method,
                           backend=args.backend, checkpoint=args.checkpoint, preset=args.preset,
                           device=args.device, overrides=parse_overrides(args.overrides),
                           propagation=args.propagation, output_dir=args.output_dir)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0
