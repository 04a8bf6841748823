"""Dice and CPU seconds along one ``medpersam-warp`` training run (a script, not a test).

Trains on the README example (or any reference / mask / targets / ground-truth
folders) for ``--steps`` optimiser steps and, every ``--every`` steps, warps every
target and scores it; prints one JSON line per checkpoint (steps, CPU seconds
of the training so far, mean loss of the last block, mean Dice), so a
convergence rule can be chosen from one run (see docs/warp_adaptive.md).

Usage::

    python benchmarks/warp_schedule_curve.py [--steps 300] [--every 25] [--set KEY=JSON]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "Testing" / "Data" / "example"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    args = ap.parse_args()

    from oneshotsam.benchmark2d import _img, _read_png, _scores
    from oneshotsam.methods.medpersam.warp_adapt import ConvergenceRule
    from oneshotsam.methods.medpersam.warp_method import resolve_warp_settings
    from oneshotsam.methods.medpersam.warp_train import WarpConfig, WarpSession

    user = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    cfg = WarpConfig.from_dict(resolve_warp_settings(args.preset, user=user).values)
    ref, rl = _img(_read_png(EX / "reference.png"), "ref"), _read_png(EX / "reference_mask.png")
    tp = sorted((EX / "targets").glob("*.png"))
    targets = [_img(_read_png(p), p.stem) for p in tp]
    gts = [_read_png(EX / "ground_truth" / p.name) for p in tp]
    values = sorted(int(v) for v in np.unique(rl) if v)
    import torch
    torch.set_num_threads(int(cfg.threads or 1))
    sess = WarpSession(cfg, ref, rl, targets, device="cpu", seed=0)
    batch = min(cfg.batch_size, len(targets))
    cpu = 0.0
    for k in range(0, args.steps, args.every):
        c0 = time.process_time()
        sess._run_steps(ConvergenceRule(0, args.every, 0), batch, lambda *a: True, "curve")
        cpu += time.process_time() - c0
        dice = [np.mean([x for x, _ in _scores(sess.warp_target(i).labels, g, values).values()])
                for i, g in enumerate(gts)]
        losses = [h["loss"] for h in sess.history]
        print(json.dumps({"preset": name, "steps": k + args.every, "train_cpu_s": round(cpu, 1),
                          "loss_block": round(float(np.mean(losses[-args.every:])), 5),
                          "mean_dice": round(float(np.mean(dice)), 4)}), flush=True)
    print(json.dumps({"losses": [round(x, 5) for x in losses]}))


if __name__ == "__main__":
    main()
