"""Command line of the protocols: ``oneshotsam benchmark jsrt-refs|jsrt-perturb|acdc-pairs|
acdc-volumes|la`` (registered by :mod:`oneshotsam.cli`).

* ``add_parsers(benchmark_subparsers)`` registers the five subcommands (every
  option with a help text);
* ``run(args) -> int`` runs the one named by ``args.benchmark_name``, prints its
  table and writes ``--json`` atomically (:func:`oneshotsam.writer.write_json_atomic`).

Importing this module costs argparse and the settings layer only.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

#: subcommand -> (help, ``module:function``)
PROTOCOLS = {
    "jsrt-refs": ("JSRT: several references (2 washed-out films + evenly spaced IDs), "
                  "method vs elastix, mean +- SE over references",
                  "oneshotsam.protocols.jsrt:run_jsrt_refs"),
    "jsrt-perturb": ("JSRT: Med-PerSAM appendix D perturbations of the targets and of the "
                     "reference, Dice clean vs perturbed, method vs elastix",
                     "oneshotsam.protocols.jsrt:run_jsrt_perturb"),
    "acdc-pairs": ("ACDC: every ED -> ES slice pair, per pathology group, method vs elastix 2D",
                   "oneshotsam.protocols.acdc:run_acdc_pairs"),
    "acdc-volumes": ("ACDC: the labelled ED volume -> ES with propagate, per group, method vs "
                     "elastix 3D", "oneshotsam.protocols.acdc:run_acdc_volumes"),
    "la": ("LA: one annotated slice (largest area) -> the volume with propagate, 3D Dice",
           "oneshotsam.protocols.la:run_la"),
    "corrections": ("correction loop (docs/corrections.md)",
                    "oneshotsam.protocols.corrections_cli:run"),
}


def _common(p: argparse.ArgumentParser, peer: bool = True) -> None:
    from oneshotsam.settings import add_model_arguments

    p.add_argument("--data", default="../shared/data",
                   help="folder holding jsrt/, acdc/, la/ (default ../shared/data)")
    p.add_argument("--json", default=None, metavar="OUT",
                   help="also write every figure, the settings and the per-case scores here (JSON)")
    p.add_argument("--quiet", action="store_true", help="no progress lines (the table is printed)")
    add_model_arguments(p)
    if peer:
        p.add_argument("--no-peer", action="store_true",
                       help="skip the elastix peer (itk-elastix is then not needed)")
        p.add_argument("--peer-iterations", type=int, default=256, metavar="N",
                       help="elastix iterations per resolution of each stage (affine and "
                            "B-spline; default 256, the elastix default: lower only for quick checks)")
        p.add_argument("--peer-threads", type=int, default=None, metavar="N",
                       help="ITK threads of elastix (default: elastix's own default, the "
                            "machine's cores)")


def add_parsers(bsub: argparse._SubParsersAction) -> None:
    """Register the protocol subcommands on ``oneshotsam benchmark``."""
    for name, (text, _) in PROTOCOLS.items():
        if name == "corrections":  # its own options: oneshotsam.protocols.corrections_cli
            importlib.import_module("oneshotsam.protocols.corrections_cli").add_parser(bsub, _common)
            continue
        p = bsub.add_parser(name, help=text, description=text + ". See docs/benchmarks.md.")
        _common(p, peer=name != "la")
        if name.startswith("jsrt"):
            refs, washed, targets, peer = (10, 2, None, 30) if name == "jsrt-refs" else (2, 1, 20, 5)
            p.add_argument("--refs", type=int, default=refs, metavar="N",
                           help=f"number of references (default {refs})")
            p.add_argument("--washed", type=int, default=washed, metavar="K",
                           help="how many of them are the films with the narrowest 0.5-99.5 "
                                f"percentile grey range (default {washed}); the others are "
                                "evenly spaced in name order")
            p.add_argument("--targets", type=int, default=targets, metavar="K",
                           help="targets per reference, evenly spaced in name order (default "
                                + ("every other film" if targets is None else str(targets)) + ")")
            p.add_argument("--peer-targets", type=int, default=peer, metavar="P",
                           help="elastix on P of the targets, evenly spaced (default "
                                f"{peer}); the method's Dice is also given on them")
        if name == "jsrt-perturb":
            from oneshotsam.protocols.perturb import KINDS

            p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS),
                           help="perturbations to apply (default all: " + ", ".join(KINDS) + ")")
            p.add_argument("--apply-to", nargs="+", choices=("targets", "reference"),
                           default=["targets", "reference"],
                           help="perturb the targets, the reference, or both in turn (default both)")
            p.add_argument("--seed", type=int, default=0, help="seed of the Gaussian noise (default 0)")
        if name.startswith("acdc"):
            p.add_argument("--patients", default=None, metavar="SPEC",
                           help="ACDC patient numbers to run, e.g. 1-10 or 1,3,41 (default all)")
        if name == "acdc-pairs":
            p.add_argument("--peer-every", type=int, default=1, metavar="K",
                           help="elastix on every K-th pair only (default 1: every pair)")
        if name == "la":
            p.add_argument("--cases", type=int, default=None, metavar="N",
                           help="the first N LA cases in name order (default all)")


def options_from_args(args: argparse.Namespace):
    """The :class:`~oneshotsam.protocols.runner.Options` of a parsed command line."""
    from oneshotsam.errors import OneShotError
    from oneshotsam.peer_elastix import ElastixSettings
    from oneshotsam.protocols.rules import parse_patients
    from oneshotsam.protocols.runner import Options
    from oneshotsam.settings import check_device, parse_overrides

    check_device(args.device)
    for opt in ("refs", "targets", "peer_targets", "peer_every", "cases", "peer_iterations"):
        v = getattr(args, opt, None)
        if v is not None and v < 1:
            raise OneShotError(f"--{opt.replace('_', '-')} must be at least 1; got {v}")
    if getattr(args, "washed", 0) < 0:
        raise OneShotError(f"--washed must be >= 0; got {args.washed}")
    iters = getattr(args, "peer_iterations", 256)
    kw = {k: getattr(args, k) for k in ("refs", "washed", "targets", "peer_targets", "seed",
                                        "peer_every", "cases") if hasattr(args, k)}
    if hasattr(args, "kinds"):
        kw.update(kinds=tuple(args.kinds), apply_to=tuple(args.apply_to))
    return Options(
        data=Path(args.data), method=args.method, preset=args.preset,
        overrides=parse_overrides(args.overrides), backend=args.backend,
        checkpoint=args.checkpoint, device=args.device,
        peer=not getattr(args, "no_peer", True),
        elastix=ElastixSettings(affine_iterations=iters, bspline_iterations=iters,
                                threads=getattr(args, "peer_threads", None)),
        quiet=args.quiet, patients=parse_patients(getattr(args, "patients", None)), **kw)


def run(args: argparse.Namespace) -> int:
    """Run ``oneshotsam benchmark <protocol>``; returns the exit status (0 ok)."""
    import importlib

    from oneshotsam.cli_segment import check_model_args
    from oneshotsam.protocols.data import dataset_dir
    from oneshotsam.protocols.runner import Runner
    from oneshotsam.writer import jsonable, write_json_atomic

    if args.benchmark_name == "corrections":
        return importlib.import_module("oneshotsam.protocols.corrections_cli").run(args)
    opts = options_from_args(args)
    opts.checkpoint = check_model_args(args.method, args.backend, args.checkpoint)
    dataset_dir(opts.data, {"jsrt": "jsrt", "acdc": "acdc", "la": "la"}[
        args.benchmark_name.split("-")[0]], "*")
    if opts.peer:
        from oneshotsam import peer_elastix

        peer_elastix._itk()  # a clear error now, not after an hour of method runs
    module, _, fn = PROTOCOLS[args.benchmark_name][1].partition(":")
    result = getattr(importlib.import_module(module), fn)(Runner(opts),
                                                           lambda s: print(s, flush=True))
    result["argv"] = list(sys.argv[1:])
    if args.json:
        write_json_atomic(jsonable(result), Path(args.json))
    return 0


__all__ = ["PROTOCOLS", "add_parsers", "run", "options_from_args"]
