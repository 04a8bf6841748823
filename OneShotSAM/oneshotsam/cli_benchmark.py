"""``oneshotsam benchmark jsrt|acdc|lung4d``: the papers' 2D protocols on the shared data.

Thin wrapper over :func:`oneshotsam.benchmark2d.run_benchmark` (reference
selection, Dice/IoU per class, wall time). The volume benchmarks
(``oneshotsam benchmark`` + the names added by :mod:`oneshotsam.volume.cli`)
are dispatched to that module directly by :mod:`oneshotsam.cli`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from oneshotsam.errors import OneShotError


def run(args: argparse.Namespace) -> int:
    from oneshotsam.cli_segment import check_model_args
    from oneshotsam.settings import check_device, check_method_overrides, parse_overrides
    from oneshotsam.writer import jsonable, write_json_atomic

    check_device(args.device)
    data = Path(args.data)
    if not data.is_dir():
        raise OneShotError(f"data folder not found: {data} (pass --data PATH to the folder "
                           "holding jsrt/, acdc/, lung4d/)")
    from oneshotsam.benchmark2d import run_benchmark
    checkpoint = check_model_args(args.method, args.backend, args.checkpoint)
    start = getattr(args, "start", 0) or 0
    if start < 0:
        raise OneShotError(f"--start must be >= 0, got {start}")
    kwargs = dict(preset=args.preset, backend=args.backend, checkpoint=checkpoint,
                  limit=args.limit, out_dir=args.output_dir, device=args.device,
                  overrides=parse_overrides(args.overrides) or None)
    check_method_overrides(args.method, kwargs["overrides"] or {})
    if start:
        kwargs["start"] = start
    result = run_benchmark(args.benchmark_name, args.method, data, **kwargs)
    if args.json:
        write_json_atomic(jsonable(result), Path(args.json))
    return 0
