"""Score variants of the within-volume walk's per-slice step (docs/corrections.md, "The walk").

For every case of a split: the first propagation from the largest slice trains the
warp engine; then, with each variant of ``--variants`` (``VolumeWarpConfig`` fields as
JSON, e.g. ``'{"refine_sigma": 2.0}'``; the first is the baseline, ``{}`` = the
defaults), the truth of the largest slice is walked outward, one slice at a time, to
both ends of the structure's true extent (the engine's own ``step``: warp, then the
appearance refinement; no absence rule, so every variant walks the same slices).
Printed per case and direction: the walk's 3D Dice over those slices, its wrong voxels
split into false positives and false negatives (shares of the true voxels), and the
Dice of ONE step from the true neighbouring slice; then per variant the mean +- SD over
the walks, the mean and worst difference to the baseline, and how many walks it won or
lost by more than 0.005. Without the data the script says so and exits 0.

    python benchmarks/walk_step.py --data ../shared/data --kind la --split tuning \\
        --variants '{}' '{"refine_sigma": 2.0}'
"""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np


def walk_case(case, cfg, variants: list[dict]) -> list[dict]:
    """One row per (direction, variant index): the walk and one-step figures of the docstring."""
    from oneshotsam.protocols import corrections_loop as loop
    from oneshotsam.protocols.corrections_engine import open_session
    from oneshotsam.protocols.rules import largest_slice

    session = open_session("session", case.reference, cfg, [], None)
    session.run(case.start)
    eng = session.states[0].engine
    base_cfg = eng.vcfg
    first, last = loop.extent(case.truth, case.axis)
    big = largest_slice(case.truth, case.axis)

    def truth(k: int) -> np.ndarray:
        return np.take(case.truth, k, axis=case.axis)

    rows = []
    try:
        for direction, stop in ((+1, last), (-1, first)):
            ks = list(range(big + direction, stop + direction, direction))
            for vi, over in enumerate(variants):
                if not ks:
                    continue
                eng.vcfg = dataclasses.replace(base_cfg, **over)
                prev = truth(big)
                tp = fp = fn = one_tp = one_wrong = 0
                for k in ks:
                    pred = np.asarray(eng.step(k - direction, prev, k).labels)
                    one = np.asarray(eng.step(k - direction, truth(k - direction), k).labels)
                    t = truth(k)
                    tp += int(((pred == t) & (t > 0)).sum())
                    fp += int(((pred > 0) & (pred != t)).sum())
                    fn += int(((t > 0) & (pred != t)).sum())
                    one_tp += int(((one == t) & (t > 0)).sum())
                    one_wrong += int(((one > 0) & (one != t)).sum() + ((t > 0) & (one != t)).sum())
                    prev = pred
                true_vox = max(tp + fn, 1)
                rows.append({"case": case.name, "direction": direction, "variant": vi, "slices": len(ks),
                             "dice": 2 * tp / max(2 * tp + fp + fn, 1), "fp": fp / true_vox, "fn": fn / true_vox,
                             "one_step_dice": 2 * one_tp / max(2 * one_tp + one_wrong, 1)})
    finally:
        eng.vcfg = base_cfg
    return rows


def report(rows: list[dict], variants: list[dict]) -> None:
    names = [json.dumps(v, sort_keys=True) for v in variants]
    for r in rows:
        print(f"{r['case']} dir {r['direction']:+d} ({r['slices']} slices) {names[r['variant']]}: "
              f"walk Dice {r['dice']:.4f}, FP {r['fp']:.3f}, FN {r['fn']:.3f}; "
              f"one step {r['one_step_dice']:.4f}")
    key = lambda r: (r["case"], r["direction"])  # noqa: E731
    base = {key(r): r for r in rows if r["variant"] == 0}
    print(f"\nvariant: walk Dice mean +- SD (worst) | difference to {names[0]}: mean (worst), walks won / "
          "lost by > 0.005 | FP / FN | one-step Dice")
    for vi, name in enumerate(names):
        mine = [r for r in rows if r["variant"] == vi]
        if not mine:
            continue
        d = np.array([r["dice"] for r in mine])
        diff = np.array([r["dice"] - base[key(r)]["dice"] for r in mine])
        print(f"{name}: {d.mean():.4f} +- {d.std():.4f} ({d.min():.4f}) | {diff.mean():+.4f} ({diff.min():+.4f}), "
              f"{int((diff > 0.005).sum())} / {int((diff < -0.005).sum())} of {len(mine)} | "
              f"{np.mean([r['fp'] for r in mine]):.3f} / {np.mean([r['fn'] for r in mine]):.3f} | "
              f"{np.mean([r['one_step_dice'] for r in mine]):.4f}")


def main(argv: list[str] | None = None) -> int:
    from _correction_cases import case_parser, each_case, plan_and_config

    p = case_parser(__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=["{}"],
                   help="VolumeWarpConfig overrides as JSON objects; the first is the baseline")
    a = p.parse_args(argv)
    variants = [json.loads(v) for v in a.variants]
    from oneshotsam.protocols import corrections as C

    ready = plan_and_config(a)
    if ready is None:
        return 0
    plan, cfg = ready
    rows = []
    for name, split, paths in each_case(plan, a.kind):
        rows += walk_case(C.load_case(a.kind, name, split, paths), cfg, variants)
    report(rows, variants)
    return 0


if __name__ == "__main__":
    sys.exit(main())
