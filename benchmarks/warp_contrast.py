"""JSRT with a chosen reference and a fixed target subset, for ``medpersam-warp``
settings (a script, not a test): prints mean Dice, training steps and CPU seconds.

Used to choose the registration intensity normalisation on washed-out
references (JPCLN031, JPCLN037: about 16 grey levels); see docs/warp_adaptive.md.

Usage::

    python benchmarks/warp_contrast.py --data ../shared/data --reference JPCLN031 \\
        [--targets 20] [--every 6] [--set intensity_percentiles=null] [--preset cpu]

``--set KEY=JSON`` overrides a top-level preset key (repeatable). The subset is
every ``--every``-th image ID in name order (reference excluded), first ``--targets``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("ONESHOTSAM_DATA", "../shared/data"))
    ap.add_argument("--reference", default="JPCLN031")
    ap.add_argument("--targets", type=int, default=20)
    ap.add_argument("--every", type=int, default=6)
    ap.add_argument("--preset", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    args = ap.parse_args()

    from oneshotsam.benchmark2d import _img, _read_png, _scores
    from oneshotsam.methods.medpersam.warp_method import MedPerSAMWarp

    d = Path(args.data) / "jsrt"
    ids = sorted(p.stem for p in (d / "images").glob("*.png"))
    tids = [i for i in ids if i != args.reference][:: args.every][: args.targets]
    load = lambda i: (_img(_read_png(d / "images" / f"{i}.png"), i), _read_png(d / "labels" / f"{i}.png"))
    ref, rl = load(args.reference)
    pairs = [load(i) for i in tids]
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    method = MedPerSAMWarp.from_preset(args.preset, device="cpu", **overrides)
    c0, t0 = time.process_time(), time.perf_counter()
    run = method.segment(ref, rl, [t for t, _ in pairs])
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    values = sorted(int(v) for v in np.unique(rl) if v)
    dice = [np.mean([dv for dv, _ in _scores(r.labels, gt, values).values()])
            for (_, gt), r in zip(pairs, run.results)]
    rep = run.report
    print(json.dumps({"reference": args.reference, "targets": len(pairs), "settings": overrides,
                      "mean_dice": round(float(np.mean(dice)), 4), "min_dice": round(float(np.min(dice)), 4),
                      "train_steps": rep["train_steps"], "train_seconds": rep.get("train_seconds"),
                      "stopped": rep.get("train_stopped"),
                      "loss_final": rep.get("loss_final"), "cpu_seconds": round(cpu, 1),
                      "wall_seconds": round(wall, 1), "target_ids": tids}))


if __name__ == "__main__":
    main()
