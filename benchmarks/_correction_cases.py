"""What the correction-loop measuring scripts share: their case options and the plan.

``python benchmarks/<script>.py`` puts this folder first on ``sys.path``, so the scripts
import it as ``_correction_cases``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def case_parser(description: str) -> argparse.ArgumentParser:
    """``--data --kind --split --cases --names`` (the corrections benchmark's cases and split)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", default=os.environ.get("ONESHOTSAM_DATA", "../shared/data"))
    p.add_argument("--kind", default="la", choices=("la", "acdc-ed", "tumour"))
    p.add_argument("--split", default="tuning", choices=("tuning", "held-out", "all"))
    p.add_argument("--cases", type=int, default=None)
    p.add_argument("--names", nargs="+", default=None, help="only these cases of the split (by name)")
    p.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                   help="a propagation setting instead of its default (a field of "
                        "oneshotsam.settings.PROPAGATION_SETTINGS, e.g. stop_past_end=0); repeatable")
    return p


def plan_and_config(a: argparse.Namespace):
    """``(cases, propagation config)`` with ``propagate``'s defaults, or None after saying
    why nothing can run (no data folder, no case of the kind in the split)."""
    from oneshotsam.errors import OneShotError
    from oneshotsam.protocols import corrections as C
    from oneshotsam.settings import propagation_config

    try:
        plan = [c for c in C.list_cases(Path(a.data), a.kind, a.split)
                if a.names is None or c[0] in a.names][: a.cases]
    except OneShotError as e:
        print(f"{e}; nothing run")
        return None
    if not plan:
        print(f"no {a.kind} case in the {a.split} split under {a.data}; nothing run")
        return None
    bad = [s for s in a.setting if "=" not in s]
    if bad:
        raise SystemExit(f"--setting takes KEY=VALUE, got {bad[0]!r}")
    values = dict(s.split("=", 1) for s in a.setting)
    try:
        cfg = propagation_config(values, method=None, overrides=None, backend=None,
                                 checkpoint=None, preset=None, device=None)
    except OneShotError as e:
        raise SystemExit(str(e)) from None
    return plan, cfg


def each_case(plan, kind: str):
    """The plan's ``(name, split, paths)`` one by one, each announced on stderr as
    ``[i/n] kind name`` before its work starts."""
    import sys

    for i, (name, split, paths) in enumerate(plan):
        print(f"[{i + 1}/{len(plan)}] {kind} {name}", file=sys.stderr, flush=True)
        yield name, split, paths
