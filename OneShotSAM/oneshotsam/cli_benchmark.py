"""``oneshotsam benchmark jsrt|acdc|lung4d``: the papers' 2D protocols on the shared data.

Thin wrapper over :func:`oneshotsam.benchmark2d.run_benchmark` (reference
selection, Dice/IoU per class, wall time). The volume benchmarks
(``oneshotsam benchmark`` + the names added by :mod:`oneshotsam.volume.cli`)
are dispatched to that module directly by :mod:`oneshotsam.cli`.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

from oneshotsam.errors import OneShotError


def run(args: argparse.Namespace) -> int:
    from oneshotsam.cli_segment import check_model_args, jsonable, parse_overrides, write_json_atomic
    data = Path(args.data)
    if not data.is_dir():
        raise OneShotError(f"data folder not found: {data} (pass --data PATH to the folder "
                           "holding jsrt/, acdc/, lung4d/)")
    from oneshotsam.benchmark2d import run_benchmark
    checkpoint = check_model_args(args.method, args.backend, args.checkpoint)
    kwargs = dict(preset=args.preset, backend=args.backend, checkpoint=checkpoint,
                  limit=args.limit, out_dir=args.output_dir)
    params = inspect.signature(run_benchmark).parameters
    if getattr(args, "start", 0):
        if args.start < 0:
            raise OneShotError(f"--start must be >= 0, got {args.start}")
        kwargs["start"] = args.start
    if "device" in params:
        kwargs["device"] = args.device
    overrides = parse_overrides(args.overrides)
    if overrides:
        if "overrides" not in params:
            raise OneShotError("this benchmark takes no --set overrides: use --preset")
        kwargs["overrides"] = overrides
    result = run_benchmark(args.benchmark_name, args.method, data, **kwargs)
    if args.json:
        write_json_atomic(jsonable(result), Path(args.json))
    return 0
