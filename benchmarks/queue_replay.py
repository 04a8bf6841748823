"""Replay the queue order of the correction loop under other review-queue settings (docs/corrections.md).

Step 0 runs once per case; for each value of ``--shares``
(``oneshotsam.volume.confidence.INSIDE_WRONG_SHARE``: the share of a wrong drawn slice's
area that drawing it fixes, which weighs drawing against erasing in the queue's expected
gain) a copy of the step-0 session rebuilds its review queue and runs K corrections in
queue order (``oneshotsam.protocols.corrections.run_order``). Printed: the 3D Dice after
each step per case and as mean and worst case, the steps that lowered the Dice and the
first-flag precision (share of steps whose first flagged slice was really not acceptable). Without the data the script says so and
exits 0.

    python benchmarks/queue_replay.py --data ../shared/data --kind la --split tuning --shares 0.25 0.5 0.75
"""

from __future__ import annotations

import copy
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from _correction_cases import case_parser, plan_and_config

    p = case_parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--shares", type=float, nargs="+", default=[0.25, 0.5])
    a = p.parse_args(argv)
    from oneshotsam.protocols import corrections as C
    from oneshotsam.protocols.corrections_engine import open_session
    from oneshotsam.volume import confidence

    ready = plan_and_config(a)
    if ready is None:
        return 0
    plan, cfg = ready
    default = confidence.INSIDE_WRONG_SHARE
    dices: dict[float, list[list[float]]] = {s: [] for s in a.shares}
    flags: dict[float, list[bool]] = {s: [] for s in a.shares}
    try:
        for name, split, paths in plan:
            case = C.load_case(a.kind, name, split, paths)
            session = open_session("session", case.reference, cfg, [], None)
            res0 = session.run(case.start)
            values = sorted(int(v) for v in np.unique(case.truth) if v)
            for share in a.shares:
                confidence.INSIDE_WRONG_SHARE = share
                s, r0 = copy.deepcopy(session), copy.deepcopy(res0)
                queue = confidence.review_queue(s.states[0].outcomes)
                r0.report["review_queue"] = queue
                for t in r0.report.get("targets") or []:
                    t["review_queue"] = queue
                out = C.run_order(case, s, r0, "queue", a.steps, values, C.NAMES.get(a.kind, {}))
                dices[share].append(out["dice"])
                flags[share] += [f for f in out["first_flag_wrong"] if f is not None]
                print(f"{name} share {share:g}: " + " ".join(f"{d:.3f}" for d in out["dice"])
                      + f"  corrected {out['slices']}", flush=True)
    finally:
        confidence.INSIDE_WRONG_SHARE = default
    for share, rows in dices.items():
        if rows:
            d = np.asarray(rows)
            drops = int((np.diff(d, axis=1) < 0).sum())
            f = flags[share]
            print(f"share {share:g}: mean " + " ".join(f"{x:.4f}" for x in d.mean(axis=0))
                  + "; worst " + " ".join(f"{x:.4f}" for x in d.min(axis=0)) + f" ({len(rows)} cases); "
                  f"{drops} steps lowered the Dice; first-flag precision "
                  f"{sum(f) / max(1, len(f)):.3f} ({sum(f)}/{len(f)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
