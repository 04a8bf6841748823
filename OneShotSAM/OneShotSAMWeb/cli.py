"""``oneshotsam web``: start the browser app and print its URL.

Light at import (argparse only): trame, trame-slicer and slicer-core load in
:func:`run`, when the app is built; torch at the first Run.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path
from typing import Sequence

DESCRIPTION = (
    "Start the OneShotSAM browser app (trame-slicer views and segment editor on the Slicer "
    "module's Logic) and print its URL. It listens on 127.0.0.1 unless --host says otherwise; "
    "beyond the loopback every connection needs the access token printed in the URL. Nothing "
    "is sent anywhere else; input files are never modified; Save writes into --output-dir.")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``web`` on the ``oneshotsam`` command line (entry point
    ``oneshotsam.commands: web`` in pyproject.toml)."""
    from oneshotsam.cli import add_model_options

    p = sub.add_parser("web", parents=[common], help="the annotate-propagate-review loop in a browser",
                       description=DESCRIPTION)
    p.add_argument("volumes", nargs="*", metavar="VOLUME",
                   help="volumes to open (NIfTI, NRRD, MHA or a DICOM folder); the first is the "
                        "reference, the others follow-ups; more can be opened from the page")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only; "
                        "0.0.0.0 serves other machines and requires the access token)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 = a free port)")
    p.add_argument("--output-dir", default="oneshotsam-web-output",
                   help="where Save writes .seg.nrrd, .nii.gz and report.json")
    p.add_argument("--allow-other-patient", action="store_true",
                   help="RESEARCH DATA ONLY: open DICOM volumes whose PatientID / PatientName / "
                        "PatientBirthDate differ, here or opened on the page (refused by default; "
                        "the page shows a warning and Save's report.json records it)")
    add_model_options(p, method_required=False)
    p.set_defaults(command="web", handler=run)


def check_web_patients(volumes: list[str], allow_other_patient: bool = False) -> dict:
    """The DICOM volumes given on the command line are one patient's (the first is the
    reference): refused otherwise, unless ``allow_other_patient`` (then a warning)."""
    from oneshotsam.dicom_identity import check_same_patient

    rec = check_same_patient([("reference volume" if i == 0 else "follow-up volume", v)
                              for i, v in enumerate(volumes)], allow_other_patient)
    if rec["mismatches"]:
        print("WARNING (--allow-other-patient): " + "; ".join(rec["mismatches"]), file=sys.stderr)
    return rec


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def keep_triton_out() -> None:
    """Make ``import triton`` fail in this process (torch then runs without it).

    triton brings its own LLVM; imported after Mesa's software renderer had
    started (torch imports it lazily, during the first run), it crashed the
    server (segmentation fault). The engine never needs it here (no
    ``torch.compile``): torch treats it as absent. Before, the app imported torch
    and triton at start instead, which cost the time to a usable page a few
    seconds (``benchmarks/web_startup.py``); torch now loads at the first Run."""
    sys.modules.setdefault("triton", None)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    """Build the app and serve it until interrupted (exit status)."""
    from oneshotsam.cli_segment import parse_overrides
    from oneshotsam.errors import OneShotError

    from OneShotSAMWeb.security import is_loopback, new_token

    for v in args.volumes:
        if not Path(v).exists():
            raise OneShotError(f"volume not found: {v}")
    check_web_patients(list(args.volumes), getattr(args, "allow_other_patient", False))
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    keep_triton_out()
    # The engine thread runs Python-heavy tiny-tensor loops; VTK's wrappers release the
    # GIL on every call, so the UI thread re-acquires it hundreds of times per event.
    # A short switch interval bounds each wait (5 ms default -> 0.5 ms): measured
    # click answer during a run, see docs/web.md.
    sys.setswitchinterval(0.0005)
    port = args.port or free_port("127.0.0.1" if is_loopback(args.host) else "0.0.0.0")
    token = None if is_loopback(args.host) else new_token()
    try:
        from trame.app import get_server

        from OneShotSAMWeb.app import OneShotSAMWebApp, WebConfig
        from OneShotSAMWeb.session import settle_heap
    except ImportError as exc:
        raise OneShotError(f"the browser app needs trame-slicer and slicer-layer-dm ({exc}); "
                           "see README, 'Browser app'") from None
    cfg = WebConfig(volumes=tuple(args.volumes), host=args.host, port=port,
                    output_dir=Path(args.output_dir), token=token, method=args.method,
                    preset=args.preset, backend=args.backend, checkpoint=args.checkpoint,
                    method_overrides=parse_overrides(args.overrides), device=args.device,
                    allow_other_patient=getattr(args, "allow_other_patient", False))
    server = get_server(name="oneshotsam-web", client_type="vue3")
    OneShotSAMWebApp(server, cfg)
    settle_heap()  # torch, VTK, trame: no full garbage collection scans them again
    shown_host = "127.0.0.1" if is_loopback(args.host) else (
        socket.gethostname() if args.host in ("0.0.0.0", "::") else args.host)
    url = f"http://{shown_host}:{port}/" + (f"?token={token}" if token else "")
    print(f"OneShotSAM web app: {url}", flush=True)
    print(f"saving into: {Path(args.output_dir).resolve()}", flush=True)
    server.start(host=args.host, port=port, open_browser=False, show_connection_info=False,
                 disable_logging=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m OneShotSAMWeb`` (same options as ``oneshotsam web``)."""
    from oneshotsam.cli import main as cli_main

    return cli_main(["web", *(sys.argv[1:] if argv is None else argv)])
