"""Replay the ACDC ED -> ES correction loop on saved step-0 sessions (a measuring script).

The first run of an ``acdc-es`` case costs about 20 CPU-s; its Updates cost milliseconds.
To compare follow-up review and Update rules, this script runs step 0 once per patient
(pickled into ``--cache``; a patient already there is not run again), then replays both
orders of the correction loop (``oneshotsam.protocols.corrections.run_order``) with the
code as it is now, re-scoring step 0 with the current follow-up review
(``oneshotsam.volume.followup.review_followup``), and prints the mean 3D Dice after
0..K corrections, first-flag precision, the pooled AUROC and the Update seconds.

    python benchmarks/followup_replay.py --data ../shared/data --cache /tmp/acdc --split tuning
    python benchmarks/followup_replay.py --data ../shared/data --cache /tmp/acdc-norefine \
        --split tuning --set refine_sigma=0 --shape-carry 0

``--set KEY=VALUE`` changes step 0's settings (use another ``--cache`` folder for each);
``--shape-carry W``, ``--neighbour-walk W`` and ``--walk-min-dice D`` the Update's
:data:`oneshotsam.volume.followup_update.SHAPE_CARRY`, ``NEIGHBOUR_WALK`` and
``WALK_MIN_DICE``.

Only for choosing settings on the tuning split (docs/corrections.md); the figures
reported against the bars come from ``oneshotsam benchmark corrections``.
"""

from __future__ import annotations

import argparse
import copy
import pickle
from pathlib import Path

import numpy as np


def cache_step0(data: Path, cache: Path, split: str, overrides: tuple = (),
                names: list[str] | None = None) -> list[Path]:
    """Run step 0 of every ``acdc-es`` case of ``split`` (of ``names`` only, when given) not
    yet in ``cache`` (``overrides``: ``(key, value)`` settings); returns the files."""
    import torch

    from oneshotsam.protocols.corrections import list_cases, load_case
    from oneshotsam.protocols.corrections_engine import open_session
    from oneshotsam.settings import propagation_config

    torch.set_num_threads(1)
    cfg = propagation_config(None, method="medpersam-warp", device="cpu", overrides=dict(overrides))
    cache.mkdir(parents=True, exist_ok=True)
    files = []
    for name, sp, paths in list_cases(data, "acdc-es", split):
        if names and name not in names:
            continue
        out = cache / f"{name}.pkl"
        if not out.exists():
            case = load_case("acdc-es", name, sp, paths)
            session = open_session("session", case.reference, cfg, [case.target])
            res = session.run(case.start)
            with open(out, "wb") as f:
                pickle.dump({"case": case, "session": session, "res0": res}, f)
            print(f"step 0: {name}", flush=True)
        files.append(out)
    return files


def rescore(session, res0) -> None:
    """Step 0's follow-up review again, with the current code (in place)."""
    from oneshotsam.volume.confidence import review_queue
    from oneshotsam.volume.followup import review_followup
    from oneshotsam.volume.jobs import outcome_summary

    st = session.states[0]
    review_followup(st.anchors, session.ctx.ref_labels_by_slice, session.ctx.rule)
    rep = res0.report["targets"][0]
    rep.update(outcome_summary(st.outcomes))
    rep["review_queue"] = review_queue(st.outcomes)
    res0.report["review_queue"] = list(rep["review_queue"])


def replay(files: list[Path], steps: int) -> None:
    from oneshotsam.protocols import corrections_loop as loop
    from oneshotsam.protocols.corrections import NAMES, run_order
    from oneshotsam.protocols.corrections_engine import records_of

    dice: dict[str, list] = {"queue": [], "oracle": []}
    conf, wrong, first_wrong, secs = [], [], [], []
    for f in files:
        d = pickle.load(open(f, "rb"))
        case, s0, r0 = d["case"], d["session"], d["res0"]
        rescore(s0, r0)
        values = sorted(int(v) for v in np.unique(case.truth) if v)
        for order in dice:
            out = run_order(case, copy.deepcopy(s0), r0, order, steps, values, NAMES["acdc-es"])
            dice[order].append(out["dice"])
            if out["not_kept"]:
                raise SystemExit(f"{f.stem}: {out['not_kept']} corrections not kept")
            if order == "queue":
                first_wrong += [x for x in out["first_flag_wrong"] if x is not None]
                secs += out["update_wall"]
        pred0 = np.asarray(r0.label_volumes[0].voxels)
        recs = records_of(r0.report, 0)
        ok = loop.slice_states(pred0, case.truth, case.axis)
        conf += [recs[k][0] for k in sorted(recs)]
        wrong += [not ok[k] for k in sorted(recs)]
    q, o = np.mean(dice["queue"], axis=0), np.mean(dice["oracle"], axis=0)
    print(f"{len(files)} patients; mean 3D Dice after 0..{steps} corrections")
    print("queue  " + " ".join(f"{x:.4f}" for x in q))
    print("oracle " + " ".join(f"{x:.4f}" for x in o))
    for order in dice:
        d = np.asarray(dice[order])
        print(f"{order}: SD after 2 {d[:, min(2, steps)].std():.4f}, worst {d[:, min(2, steps)].min():.4f}; "
              f"steps that lowered the Dice {int((np.diff(d, axis=1) < -1e-9).sum())} of {d.shape[0] * steps}")
    print(f"queue - oracle after 2: {q[2] - o[2]:+.4f}; first-flag precision "
          f"{np.mean(first_wrong):.3f} ({len(first_wrong)} steps); AUROC {loop.auroc(conf, wrong):.3f}; "
          f"Update median {np.median(secs):.3f} s, max {np.max(secs):.3f} s wall")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--cache", type=Path, required=True, help="folder of the pickled step-0 sessions")
    ap.add_argument("--split", default="tuning", choices=("tuning", "held-out"))
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting of step 0 (as `oneshotsam propagate --set`)")
    ap.add_argument("--shape-carry", type=float, default=None,
                    help="the Update's shape carry weight (default: the product's)")
    ap.add_argument("--neighbour-walk", type=float, default=None,
                    help="the Update's neighbour walk weight (default: the product's)")
    ap.add_argument("--walk-min-dice", type=float, default=None,
                    help="the Update's WALK_MIN_DICE (default: the product's)")
    ap.add_argument("--names", nargs="*", default=None, help="only these patients (e.g. patient001)")
    a = ap.parse_args()
    from oneshotsam.settings import parse_overrides
    from oneshotsam.volume import followup_update

    if a.shape_carry is not None:
        followup_update.SHAPE_CARRY = a.shape_carry
    if a.neighbour_walk is not None:
        followup_update.NEIGHBOUR_WALK = a.neighbour_walk
    if a.walk_min_dice is not None:
        followup_update.WALK_MIN_DICE = a.walk_min_dice
    overrides = tuple(sorted(parse_overrides(a.set).items()))
    replay(cache_step0(a.data, a.cache, a.split, overrides, a.names), a.steps)


if __name__ == "__main__":
    main()
