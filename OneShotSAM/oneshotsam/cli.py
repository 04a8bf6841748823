"""The ``oneshotsam`` command line.

Subcommands (each implemented in its own module, imported only when used, so
that ``import oneshotsam.cli`` costs argparse only):

* ``segment``   one-shot segmentation of 2D images (or volumes slice-wise): :mod:`oneshotsam.cli_segment`
* ``evaluate``  Dice / IoU of predictions against ground truth: :mod:`oneshotsam.cli_evaluate`
* ``weights``   list / download official SAM and SAM 2 checkpoints: :mod:`oneshotsam.cli_weights`
* ``benchmark`` paper-protocol benchmarks on the shared data: :mod:`oneshotsam.cli_benchmark`;
  the protocols measured against elastix (``jsrt-refs``...): :mod:`oneshotsam.protocols.cli`
* ``propagate`` one annotated slice -> whole volume and follow-up visits: :mod:`oneshotsam.volume.cli`
* ``cohort``    every patient of a manifest, resumable, on Ray: :mod:`oneshotsam.cli_cohort`

Front ends add their own subcommands (the browser app adds ``web``): each names a
registration function ``register(sub, common)`` under the entry-point group
:data:`COMMAND_GROUP` in its package metadata (``pyproject.toml``). The function adds
a subparser and sets its ``handler`` default to the function that runs it. The
engine imports no front end; it only calls what the installed metadata names.

Errors a user can fix (:class:`~oneshotsam.errors.OneShotError`, missing
or unreadable files) print one line ``error: ...`` on stderr and exit with
status 2; ``--debug`` shows the traceback instead. Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130
#: entry-point group of the subcommands that front ends register (``register(sub, common)``)
COMMAND_GROUP = "oneshotsam.commands"

def _common() -> argparse.ArgumentParser:
    """Options every subcommand accepts (``default=SUPPRESS`` keeps the top-level value)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the full traceback on errors")
    return p


def add_model_options(p: argparse.ArgumentParser, *, method_required: bool = True) -> None:
    """``--method --backend --checkpoint --preset --device --set`` (:mod:`oneshotsam.settings`)."""
    from oneshotsam.settings import add_model_arguments

    add_model_arguments(p, method_required=method_required)


def _add_segment(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "segment", parents=[common],
        help="segment target images like one annotated reference image",
        description="Segment every target like the annotated reference. Writes one label "
                    "image per target (named after the target, in its format family and "
                    "geometry, label values as in the reference mask) and report.json into "
                    "--output-dir. Nothing is written unless every input is valid and the "
                    "run finishes.")
    p.add_argument("--reference-image", required=True, metavar="REF",
                   help="annotated image: PNG/JPG, NIfTI, NRRD, MHA (2D, or 3D with "
                        "--reference-slice), or a DICOM series folder")
    p.add_argument("--reference-mask", required=True, metavar="MASK",
                   help="label image on the reference's grid: 0 background, 1..N classes; or a "
                        "DICOM RTSTRUCT / SEG file on the reference DICOM series")
    from oneshotsam.volume.cli import add_dicom_args

    add_dicom_args(p)
    p.add_argument("--targets", required=True, nargs="+", metavar="T",
                   help="target images, or folders of them (volumes are segmented slice by slice; "
                        "files named as OneShotSAM outputs, *_oneshotsam.*, in a folder are skipped)")
    p.add_argument("--output-dir", required=True, metavar="OUT",
                   help="folder for the label images and report.json (created; written only "
                        "when every input is valid and the run finishes)")
    add_model_options(p)
    from oneshotsam.settings import WINDOW_SPECS

    p.add_argument("--window", default=None, metavar="SPEC",
                   help=f"intensity window: {WINDOW_SPECS}. Explicit and CT windows apply to "
                        "every image; 'auto'/'percentile' are computed per 2D image and once "
                        "per volume (default: none: 8-bit images are used as they are and any "
                        "other image is refused until a window is given)")
    p.add_argument("--reference-slice", type=int, default=None, metavar="K",
                   help="for a 3D reference: index of the annotated slice along --axis "
                        "(default: the only annotated slice)")
    p.add_argument("--target-slices", type=int, nargs="+", default=None, metavar="K",
                   help="for 3D targets: segment only these slices along --axis (the others "
                        "stay 0 in the output volume); default: every slice")
    from oneshotsam.settings import AXES

    p.add_argument("--axis", default="axial", choices=AXES,
                   help="slice orientation for 3D inputs (default axial)")
    p.add_argument("--json", default=None, metavar="REPORT",
                   help="also write the run report to this path (report.json is always "
                        "written in --output-dir)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _add_evaluate(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "evaluate", parents=[common], help="Dice and IoU of predictions against ground truth",
        description="Pairs label images of two folders by file stem and prints Dice and IoU "
                    "per class, per case, and their means.")
    p.add_argument("--predictions", required=True, nargs="+", metavar="DIR",
                   help="folder(s) or file(s) of predicted label images / volumes")
    p.add_argument("--ground-truth", required=True, nargs="+", metavar="DIR",
                   help="folder(s) or file(s) of ground-truth label maps, paired by file stem")
    p.add_argument("--labels", nargs="+", type=int, default=None,
                   help="label values to score (default: every non-zero value in the ground truth)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the table as JSON")


def _add_weights(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("weights", parents=[common],
                       help="list or download official SAM / SAM 2 checkpoints")
    wsub = p.add_subparsers(dest="weights_command", metavar="{list,download}")
    wsub.required = True
    lst = wsub.add_parser("list", parents=[common],
                          help="known checkpoints, licences and which are downloaded")
    lst.add_argument("--dir", default=None, help="folder to look in (default: the per-user cache)")
    d = wsub.add_parser("download", parents=[common],
                        help="download a checkpoint (resumable, SHA-256 verified)")
    d.add_argument("name", help="checkpoint name, e.g. sam-vit-b (see `oneshotsam weights list`)")
    d.add_argument("--dir", default=None,
                   help="destination folder (default: the per-user cache, $ONESHOTSAM_CACHE "
                        "or ~/.cache/oneshotsam)")
    d.add_argument("--sha256", default=None, metavar="HEX",
                   help="expected SHA-256 (required where the registry has none)")


def _add_benchmark(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("benchmark", parents=[common],
                       help="paper-protocol benchmarks on the shared data (not tests)")
    bsub = p.add_subparsers(dest="benchmark_name", metavar="DATASET")
    bsub.required = True
    for name, text in (("jsrt", "JSRT chest X-ray: reference JPCLN001, all others targets"),
                       ("acdc", "ACDC: ED slice -> same slice at ES, every labelled pair"),
                       ("lung4d", "4D-Lung: reference visit -> later visit")):
        b = bsub.add_parser(name, parents=[common], help=text, description=text)
        add_model_options(b, method_required=False)
        b.add_argument("--data", default="../shared/data",
                       help="folder holding jsrt/, acdc/, lung4d/ (default ../shared/data)")
        b.add_argument("--limit", type=int, default=None, help="use only the first N targets/pairs")
        if name == "acdc":
            b.add_argument("--start", type=int, default=0, metavar="N",
                           help="skip the first N patients (name order); with --limit N "
                                "patients: one shard of the full run")
        b.add_argument("--output-dir", default=None, help="also write predictions here")
        b.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    importlib.import_module("oneshotsam.volume.cli").add_benchmark_parser(bsub)
    importlib.import_module("oneshotsam.protocols.cli").add_parsers(bsub)  # jsrt-refs, ...
    _add_common_to_new(bsub, common)


def _add_common_to_new(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Give ``--debug`` to subparsers registered by other modules."""
    for parser in sub.choices.values():
        if not any("--debug" in a.option_strings for a in parser._actions):
            parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                help="show the full traceback on errors")


def build_parser() -> argparse.ArgumentParser:
    """The full parser (imports the volume CLI module, which is light by contract)."""
    from oneshotsam import __version__
    common = _common()
    parser = argparse.ArgumentParser(
        prog="oneshotsam",
        description="One-shot medical image segmentation with SAM / SAM 2 "
                    "(Med-PerSAM, P²SAM, PerSAM): annotate one image, segment the others.")
    parser.add_argument("--version", action="version", version=f"oneshotsam {__version__}")
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_segment(sub, common)
    _add_evaluate(sub, common)
    _add_weights(sub, common)
    _add_benchmark(sub, common)
    importlib.import_module("oneshotsam.volume.cli").add_parser(sub)
    importlib.import_module("oneshotsam.cli_cohort").add_parser(sub)
    _add_common_to_new(sub, common)
    for register in registered_commands():
        register(sub, common)
    return parser


def registered_commands() -> list[Callable[..., None]]:
    """The registration functions of the installed front ends (entry-point group
    :data:`COMMAND_GROUP`), in name order. Loading one imports its module only."""
    from importlib.metadata import entry_points

    return [ep.load() for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name)]


def _handler(args: argparse.Namespace) -> Callable[[argparse.Namespace], int]:
    registered = getattr(args, "handler", None)
    if registered is not None:  # a front end's subcommand
        return registered
    if args.command == "segment":
        return importlib.import_module("oneshotsam.cli_segment").run
    if args.command == "evaluate":
        return importlib.import_module("oneshotsam.cli_evaluate").run
    if args.command == "weights":
        return importlib.import_module("oneshotsam.cli_weights").run
    if args.command == "benchmark":
        if args.benchmark_name in ("jsrt", "acdc", "lung4d"):
            return importlib.import_module("oneshotsam.cli_benchmark").run
        protocols = importlib.import_module("oneshotsam.protocols.cli")
        if args.benchmark_name in protocols.PROTOCOLS:
            return protocols.run
        return importlib.import_module("oneshotsam.volume.cli").run_benchmark
    if args.command == "propagate":
        return importlib.import_module("oneshotsam.volume.cli").run
    if args.command == "cohort":
        return importlib.import_module("oneshotsam.cli_cohort").run
    raise SystemExit(f"unknown command {args.command!r}")  # argparse prevents this


def _error_line(exc: BaseException) -> str:
    from oneshotsam.errors import OneShotError
    if isinstance(exc, OneShotError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        reason = exc.strerror or str(exc)
        return f"{reason}: {exc.filename}"
    return f"{type(exc).__name__}: {exc}"


#: options whose value may start with "-": a window below zero, ``--window -160,240``
SIGNED_VALUE_OPTIONS = ("--window",)


def join_signed_values(argv: Sequence[str]) -> list[str]:
    """``--window -160,240`` -> ``--window=-160,240`` (argparse would read ``-160,240`` as an
    unknown option); every option of :data:`SIGNED_VALUE_OPTIONS`, any subcommand."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = str(argv[i])
        if a == "--":
            return out + [str(x) for x in argv[i:]]
        nxt = str(argv[i + 1]) if i + 1 < len(argv) else ""
        if a in SIGNED_VALUE_OPTIONS and len(nxt) > 1 and nxt[0] == "-" and (nxt[1].isdigit() or nxt[1] == "."):
            out.append(f"{a}={nxt}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``oneshotsam`` console script; returns the exit status."""
    from oneshotsam.errors import OneShotError
    parser = build_parser()
    args = parser.parse_args(join_signed_values(list(sys.argv[1:] if argv is None else argv)))
    debug = bool(getattr(args, "debug", False))
    try:
        return int(_handler(args)(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted: nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OneShotError, OSError) as exc:
        if debug:
            raise
        print(f"error: {_error_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # a bug, not a user error: still one line unless --debug
        if debug:
            raise
        print(f"error: unexpected {_error_line(exc)} (rerun with --debug for the "
              "traceback and please report it)", file=sys.stderr)
        return EXIT_BUG


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
