"""Command line of ``oneshotsam benchmark corrections`` (registered by
:mod:`oneshotsam.protocols.cli`; protocol in docs/corrections.md).

Importing this module costs argparse and the settings layer only.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from oneshotsam.protocols.runner import Options

HELP = ("correction loop: one slice, then K corrections in review-queue and oracle order with "
        "Update, against Fill between slices (LA, ACDC ED, ACDC ED -> ES, tumours)")


@dataclass
class CorrectionOptions(Options):
    """:class:`Options` plus the correction protocol's own settings."""

    correction_kinds: tuple[str, ...] = ("la", "acdc-ed", "acdc-es", "tumour")
    split: str = "held-out"
    steps: int = 4
    update_engine: str = "auto"
    threads: int = 1


def add_parser(bsub: argparse._SubParsersAction,
               common: Callable[..., None]) -> None:
    """Register ``corrections`` on ``oneshotsam benchmark``; ``common(parser, peer=False)``
    adds the protocols' shared options (:func:`oneshotsam.protocols.cli._common`)."""
    from oneshotsam.protocols.corrections import KINDS, SPLITS
    from oneshotsam.protocols.corrections_engine import ENGINES

    p = bsub.add_parser("corrections", help=HELP, description=HELP + ". See docs/corrections.md.")
    common(p, peer=False)
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS),
                   help="kinds of case (default all: " + ", ".join(KINDS) + ")")
    p.add_argument("--split", choices=SPLITS, default="held-out",
                   help="held-out (name-order positions 2, 5, 8, ... of each dataset; never tune "
                        "on it), tuning (the others) or all (default held-out)")
    p.add_argument("--cases", type=int, default=None, metavar="N",
                   help="the first N cases of each kind in the split (default all)")
    p.add_argument("--steps", type=int, default=4, metavar="K",
                   help="corrections per order, K (default 4); the peer gets 1..K+1 slices")
    p.add_argument("--update-engine", choices=ENGINES, default="auto",
                   help="session: the product's Update; rerun: the full re-run baseline "
                        "(propagate again from every annotated slice); auto: the session when "
                        "installed (default)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch threads (default 1: the seconds per Update are one core's)")


def options_from_args(args: argparse.Namespace) -> CorrectionOptions:
    from oneshotsam.errors import OneShotError
    from oneshotsam.settings import check_device, parse_overrides

    check_device(args.device)
    for opt in ("cases", "steps", "threads"):
        v = getattr(args, opt)
        if v is not None and v < 1:
            raise OneShotError(f"--{opt} must be at least 1; got {v}")
    return CorrectionOptions(
        data=Path(args.data), method=args.method, preset=args.preset,
        overrides=parse_overrides(args.overrides), backend=args.backend,
        checkpoint=args.checkpoint, device=args.device, peer=False, quiet=args.quiet,
        cases=args.cases, correction_kinds=tuple(dict.fromkeys(args.kinds)), split=args.split,
        steps=args.steps, update_engine=args.update_engine, threads=args.threads)


def run(args: argparse.Namespace) -> int:
    """Run ``oneshotsam benchmark corrections``; 0 when it finished."""
    from oneshotsam.cli_segment import check_model_args
    from oneshotsam.protocols.corrections import run_corrections
    from oneshotsam.protocols.corrections_engine import engine_name, fill_between_slices
    from oneshotsam.protocols.corrections_loop import keep_slices
    from oneshotsam.protocols.data import dataset_dir
    from oneshotsam.protocols.runner import Runner
    from oneshotsam.writer import jsonable, write_json_atomic

    opts = options_from_args(args)
    if args.json:
        out = Path(args.json)
        if not out.parent.is_dir():
            from oneshotsam.errors import OneShotError

            raise OneShotError(f"--json: folder {out.parent} does not exist; create it first")
    opts.checkpoint = check_model_args(args.method, args.backend, args.checkpoint)
    folders = {"la": ("la", "*_image.nii.gz"), "acdc-ed": ("acdc", "patient*_ED.nii.gz"),
               "acdc-es": ("acdc", "patient*_ED.nii.gz"), "tumour": ("pyradiomics", "*_image.nrrd")}
    for kind in opts.correction_kinds:  # every input and the peer checked before any work
        dataset_dir(opts.data, *folders[kind])
    engine_name(opts.update_engine)
    import numpy as np

    probe = np.zeros((3, 4, 4), np.uint8)
    probe[0, 1:3, 1:3] = probe[2, 1:3, 1:3] = 1
    fill_between_slices(keep_slices(probe, 0, [0, 2]), 0)  # a clear error now if itk lacks it
    import torch

    torch.set_num_threads(opts.threads)
    partial = Path(str(args.json) + ".partial") if args.json else None

    def keep(rows):  # the cases done so far, in case the run is stopped
        write_json_atomic(jsonable({"protocol": "corrections", "partial": True, "rows": rows}), partial)

    result = run_corrections(Runner(opts), lambda s: print(s, flush=True),
                             keep if partial is not None else None)
    result["argv"] = list(sys.argv[1:])
    result["threads"] = opts.threads
    if args.json:
        write_json_atomic(jsonable(result), Path(args.json))
        partial.unlink(missing_ok=True)
    return 0


__all__ = ["CorrectionOptions", "add_parser", "options_from_args", "run"]
