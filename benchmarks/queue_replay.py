"""Replay the queue order of the correction loop under other review-queue settings (docs/corrections.md).

Each variant is a JSON object of ``oneshotsam.volume.confidence`` module settings, e.g.
``'{"FLAG_RISK": 0.65}'`` (the risk from which a slice is flagged),
``'{"INSIDE_WRONG_SHARE": 0.5}'`` (the share of a wrong drawn slice's area that drawing
it fixes, which weighs drawing against erasing in the queue's expected gain) or
``'{"RISK_ORDER": {"intercept": -2.9, ...}}'`` (the risk that weighs each slice's area in
the gains); ``'{}'`` is the default. ``--shares S ...`` adds one ``INSIDE_WRONG_SHARE``
variant per value. For each variant and case the settings are patched, step 0 runs (the
flags and gains are made while the walk is scored) and K corrections follow in queue
order (``oneshotsam.protocols.corrections.run_order``); the settings are restored after.
Printed: the 3D Dice after each step per case and, per variant, the mean and worst case,
the steps that lowered the Dice and the first-flag precision (share of steps whose first
flagged slice was really not acceptable); ``--where`` adds where each case's wrong voxels lie
after the last step. ``--setting KEY=VALUE`` runs every variant
with a propagation setting changed (e.g. ``stop_past_end=0``, the Update's stop at the
estimated end off). Without the data the script says so and exits 0.

    python benchmarks/queue_replay.py --data ../shared/data --kind la --split tuning \
        --variants '{}' '{"FLAG_RISK": 0.65}' --shares 0.5
"""

from __future__ import annotations

import copy
import json
import sys

import numpy as np


def _variants(a) -> list[dict]:
    out = [json.loads(v) for v in a.variants] + [{"INSIDE_WRONG_SHARE": s} for s in a.shares]
    for v in out:
        if not isinstance(v, dict):
            raise SystemExit(f"a variant must be a JSON object of settings, got {v!r}")
    return out or [{}]


def wrong_voxels_by_place(pred: np.ndarray, truth: np.ndarray, axis: int, drawn: list[int]) -> dict:
    """Where the wrong voxels of ``pred`` lie, as shares of ``|pred| + |truth|`` (their sum is
    about 1 - Dice): drawn where the truth is empty (``beyond``), left empty where it is not
    (``missing``), and on slices both hold, between the outermost drawn non-empty slices
    (``gaps``) or outside them (``outer``, the one-sided walks)."""
    p, t = np.moveaxis(pred > 0, axis, 0), np.moveaxis(truth > 0, axis, 0)
    full = [k for k in drawn if t[k].any()]
    lo, hi = min(full), max(full)
    out = {"beyond": 0, "missing": 0, "gaps": 0, "outer": 0}
    for k in range(p.shape[0]):
        wrong = int((p[k] != t[k]).sum())
        key = ("beyond" if not t[k].any() else "missing" if not p[k].any()
               else "gaps" if lo < k < hi else "outer")
        out[key] += wrong
    total = max(int(p.sum() + t.sum()), 1)
    return {k: round(v / total, 4) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    from _correction_cases import case_parser, plan_and_config

    p = case_parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--variants", nargs="+", default=[], metavar="JSON")
    p.add_argument("--shares", type=float, nargs="+", default=[])
    p.add_argument("--where", action="store_true",
                   help="also print where the wrong voxels lie after the last step (beyond the "
                        "structure, missing slices, in-plane in the gaps or on the outer walks)")
    a = p.parse_args(argv)
    from oneshotsam.protocols import corrections as C
    from oneshotsam.protocols.corrections_engine import open_session
    from oneshotsam.volume import confidence

    variants = _variants(a)
    unknown = sorted({k for v in variants for k in v if not hasattr(confidence, k)})
    if unknown:
        raise SystemExit(f"unknown review-queue settings {unknown}: see oneshotsam/volume/confidence.py")
    ready = plan_and_config(a)
    if ready is None:
        return 0
    plan, cfg = ready
    dices: list[list[list[float]]] = [[] for _ in variants]
    flags: list[list[bool]] = [[] for _ in variants]
    for name, split, paths in plan:
        case = C.load_case(a.kind, name, split, paths)
        values = sorted(int(v) for v in np.unique(case.truth) if v)
        for i, variant in enumerate(variants):
            saved = {k: copy.deepcopy(getattr(confidence, k)) for k in variant}
            try:
                for k, v in variant.items():
                    setattr(confidence, k, v)
                session = open_session("session", case.reference, cfg, [], None)
                out = C.run_order(case, session, session.run(case.start), "queue", a.steps, values,
                                  C.NAMES.get(a.kind, {}))
            finally:
                for k, v in saved.items():
                    setattr(confidence, k, v)
            dices[i].append(out["dice"])
            flags[i] += [f for f in out["first_flag_wrong"] if f is not None]
            print(f"{name} {json.dumps(variant)}: " + " ".join(f"{d:.3f}" for d in out["dice"])
                  + f"  corrected {out['slices']}", flush=True)
            if a.where:
                drawn = [C.row_start(case)] + [k for k in out["slices"] if k is not None]
                pred = np.asarray(session.result.label_volumes[0].voxels)
                print(f"  wrong voxels after step {a.steps} (share of |pred| + |truth|): "
                      f"{wrong_voxels_by_place(pred, case.truth, case.axis, drawn)}", flush=True)
    for variant, rows, f in zip(variants, dices, flags):
        if rows:
            d = np.asarray(rows)
            drops = int((np.diff(d, axis=1) < 0).sum())
            print(f"{json.dumps(variant)}: mean " + " ".join(f"{x:.4f}" for x in d.mean(axis=0))
                  + "; worst " + " ".join(f"{x:.4f}" for x in d.min(axis=0)) + f" ({len(rows)} cases); "
                  f"{drops} steps lowered the Dice; first-flag precision "
                  f"{sum(f) / max(1, len(f)):.3f} ({sum(f)}/{len(f)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
