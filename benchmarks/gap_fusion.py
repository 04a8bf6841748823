"""Score the rules that fuse the two walks of a gap between annotated slices (docs/corrections.md, "Gap fusion").

For every case of a split: step 0 (the largest slice), then the truth on ``n`` slices
spread over the structure's true extent (both end slices included, as the
corrections benchmark gives Fill between slices) plus the largest slice, one
``PropagationSession.update``. Every slice strictly between two non-empty anchors is
walked from both; both walks and both anchors are kept and each rule of the grid
fuses them again offline (``side_weight`` powers of distance and anchor area, and the
anchors' shape weight). Printed per rule: the 3D Dice of those slices, mean and worst
case over the cases, at each ``n``; beside it Fill between slices (ITK's
MorphologicalContourInterpolator) on the same slices, and how a single walk's Dice and
area ratio change with the distance walked, towards growing and towards shrinking
cross-sections. ``--with-fill W ...`` adds the default rule with Fill between slices'
shape as a fifth map at weight ``W`` (the rule's four weights scaled by ``1 - W``).
Without the data the script says so and exits 0.

    python benchmarks/gap_fusion.py --data ../shared/data --kind la --split tuning --slices 3 5

``--cache FILE`` keeps the recorded walks (a pickle, one per case list and slice counts):
a second run with the same file scores the rules without walking again.
"""

from __future__ import annotations

import copy
import itertools
import pickle
import sys
from pathlib import Path

import numpy as np


def record_case(case, cfg, n_slices: list[int]) -> list[dict]:
    """Both walks of every gap slice for each anchor count (module docstring)."""
    from oneshotsam.protocols import corrections_loop as loop
    from oneshotsam.protocols.corrections_engine import open_session
    from oneshotsam.protocols.rules import largest_slice
    from oneshotsam.types import Volume
    from oneshotsam.volume import gaps

    seen: list[dict] = []
    original = gaps._fuse_one

    def spy(gap, a, b, pos, anchors=None):
        seen.append({"k": a.index, "lo": gap.lo, "hi": gap.hi, "pos": np.asarray(pos),
                     "up": np.asarray(a.labels).copy(), "down": np.asarray(b.labels).copy(),
                     "alo": np.asarray(anchors[gap.lo].labels).copy(),
                     "ahi": np.asarray(anchors[gap.hi].labels).copy()})
        return original(gap, a, b, pos, anchors)

    session = open_session("session", case.reference, cfg, [], None)
    res0 = session.run(case.start)
    first, last = loop.extent(case.truth, case.axis)
    big = largest_slice(case.truth, case.axis)
    out = []
    gaps._fuse_one = spy
    try:
        for n in n_slices:
            s = copy.deepcopy(session)
            anchors = sorted(set(loop.spread_slices(first, last, n, big)) | {big})
            labels = np.array(res0.label_volumes[0].voxels)
            for k in anchors:
                labels, _ = loop.correct(labels, case.truth, case.axis, k)
            seen.clear()
            s.update(Volume(labels, case.reference.ijk_to_lps, "labels", dict(case.start.meta)),
                     [k for k in anchors if k != big])
            for d in seen:
                d["truth"] = np.take(case.truth, d["k"], axis=case.axis)
            mci = _fill_between(case, anchors)
            out.append({"case": case.name, "n": n, "anchors": anchors, "slices": list(seen),
                        "mci": {d["k"]: np.take(mci, d["k"], axis=case.axis) for d in seen}})
    finally:
        gaps._fuse_one = original
    return out


def _fill_between(case, anchors):
    from oneshotsam.protocols import corrections_loop as loop
    from oneshotsam.protocols.corrections_engine import fill_between_slices

    return fill_between_slices(loop.keep_slices(case.truth, case.axis, anchors), case.axis)


def fuse(d: dict, power: float, area_power: float, shape: float, fill: np.ndarray | None = None,
         fill_weight: float = 0.0) -> np.ndarray:
    """One gap slice fused by one rule (the rule of ``gaps._fuse_one``, other constants);
    with ``fill`` (Fill between slices' labels of the slice), that shape joins at ``fill_weight``."""
    from oneshotsam.volume.gaps import fuse_many, fusion_weights

    k, pos = d["k"], d["pos"]
    seen = np.union1d(np.unique(d["up"]), np.unique(d["down"]))
    weights = fusion_weights(abs(pos[k] - pos[d["lo"]]), abs(pos[d["hi"]] - pos[k]), d["alo"], d["ahi"],
                             seen, power, area_power, shape)
    if not weights:
        return np.zeros_like(d["up"])
    maps = [d["up"], d["down"], d["alo"], d["ahi"]]
    if fill is not None and fill_weight > 0 and np.any(fill):
        weights = {v: [x * (1.0 - fill_weight) for x in w] + [fill_weight] for v, w in weights.items()}
        fill = np.asarray(fill)  # a label neither walk holds stays absent, as in _fuse_one
        maps.append(np.where(np.isin(fill, list(weights)), fill, 0).astype(d["up"].dtype))
    return fuse_many(maps, weights)


def _dice(pairs) -> float:
    inter = total = 0
    for p, t in pairs:
        p, t = p > 0, t > 0
        inter += 2 * int((p & t).sum())
        total += int(p.sum() + t.sum())
    return inter / total if total else 1.0


def report(records: list[dict], grid: list[tuple[float, float, float]], fill_weights=()) -> None:
    ns = sorted({r["n"] for r in records})
    rows = []
    for rule in grid:
        per_n = {n: [_dice((fuse(d, *rule), d["truth"]) for d in r["slices"])
                     for r in records if r["n"] == n] for n in ns}
        rows.append((rule, per_n))
    peer = {n: [_dice((r["mci"][d["k"]], d["truth"]) for d in r["slices"]) for r in records if r["n"] == n]
            for n in ns}
    rows.sort(key=lambda x: -np.mean([v for n in ns for v in x[1][n]]))
    head = "distance power / area power / shape".ljust(38) + "".join(f"n={n}: mean (worst)".ljust(24) for n in ns)
    print(head)
    for rule, per_n in rows:
        print(f"{rule[0]:g} / {rule[1]:g} / {rule[2]:g}".ljust(38)
              + "".join(f"{np.mean(per_n[n]):.4f} ({np.min(per_n[n]):.4f})".ljust(24) for n in ns))
    from oneshotsam.volume.gaps import ANCHOR_SHAPE, AREA_POWER, IDW_POWER

    for fw in fill_weights:
        per_n = {n: [_dice([(fuse(d, IDW_POWER, AREA_POWER, ANCHOR_SHAPE, r["mci"][d["k"]], fw), d["truth"])
                            for d in r["slices"]]) for r in records if r["n"] == n] for n in ns}
        print(f"default + Fill between slices at {fw:g}".ljust(38)
              + "".join(f"{np.mean(per_n[n]):.4f} ({np.min(per_n[n]):.4f})".ljust(24) for n in ns))
    print("Fill between slices".ljust(38)
          + "".join(f"{np.mean(peer[n]):.4f} ({np.min(peer[n]):.4f})".ljust(24) for n in ns))
    walks: dict[tuple[str, int], list] = {}
    for r in records:
        for d in r["slices"]:
            t = d["truth"] > 0
            for lab, a in ((d["up"], "alo"), (d["down"], "ahi")):
                anchor = d["lo"] if a == "alo" else d["hi"]
                dist = abs(d["k"] - anchor)
                b = dist if dist <= 3 else min(dist, 24) // 4 * 4
                kind = "growing" if t.sum() > (d[a] > 0).sum() else "shrinking"
                walks.setdefault((kind, b), []).append((lab, d["truth"]))
    print("\none walk, by slices walked: 3D Dice, median area ratio (prediction / truth)")
    for key in sorted(walks):
        ratios = [float((p > 0).sum()) / max(float((t > 0).sum()), 1.0) for p, t in walks[key]]
        print(f"  towards a {key[0]} cross-section, {key[1]:>2} slices: Dice {_dice(walks[key]):.3f}, "
              f"area ratio {np.median(ratios):.2f} ({len(ratios)} slices)")


def main(argv: list[str] | None = None) -> int:
    from _correction_cases import case_parser, each_case, plan_and_config

    p = case_parser(__doc__.splitlines()[0])
    p.add_argument("--slices", type=int, nargs="+", default=[3, 5])
    p.add_argument("--cache", type=Path, default=None, help="pickle of the recorded walks (read if present)")
    p.add_argument("--with-fill", type=float, nargs="+", default=[], metavar="W",
                   help="also the default rule with Fill between slices' shape at weight W (0 < W < 1)")
    a = p.parse_args(argv)
    bad = [w for w in a.with_fill if not 0.0 < w < 1.0]
    if bad:
        raise SystemExit(f"--with-fill takes weights between 0 and 1 (exclusive), got {bad[0]:g}")
    from oneshotsam.protocols import corrections as C

    ready = plan_and_config(a)
    if ready is None:
        return 0
    plan, cfg = ready
    if a.cache is not None and a.cache.exists():
        with open(a.cache, "rb") as f:
            records = pickle.load(f)
    else:
        records = []
        for name, split, paths in each_case(plan, a.kind):
            records += record_case(C.load_case(a.kind, name, split, paths), cfg, a.slices)
        if a.cache is not None:
            tmp = a.cache.with_suffix(".partial")
            with open(tmp, "wb") as f:
                pickle.dump(records, f)
            tmp.replace(a.cache)
    grid = [(1.0, 0.0, 0.5)] + list(itertools.product((1.0, 2.0, 4.0), (0.0, 2.0, 3.0, 4.0),
                                                      (0.0, 0.25, 0.5)))
    report(records, sorted(set(grid)), a.with_fill)
    return 0


if __name__ == "__main__":
    sys.exit(main())
