"""Per-slice evidence of the review queue on LA volumes, and the risk model's fit.

For each LA case of a split (the correction benchmark's: name-order positions 2, 5, 8
are held out, :func:`oneshotsam.protocols.corrections.list_cases`): annotate the largest
slice, propagate with a :class:`~oneshotsam.volume.session.PropagationSession`, then K
times correct the first slice of the review queue that is not acceptable (truth drawn,
or erased where the truth is empty) and Update. Every predicted slice of every step is
recorded with its evidence and whether it is acceptable (Dice >= 0.90, or both empty).
Prints the 3D Dice per step, the seconds per Update (wall and CPU, one torch thread),
the AUROC of confidence against "not acceptable", the share of steps whose first
flagged slice is not acceptable, and a leave-one-case-out refit of the risk model
(scikit-learn) beside the shipped coefficients (oneshotsam.volume.confidence).

    python benchmarks/review_queue_la.py --data ../shared/data --split tuning --steps 4 \
        --json rows.json [--start 0 --limit 4]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2.0 * (a & b).sum() / s)


def _acceptable(p: np.ndarray, t: np.ndarray) -> bool:
    return (not p.any() and not t.any()) or _dice(p > 0, t > 0) >= 0.90


def run_case(name: str, paths, steps: int) -> tuple[list[dict], dict]:
    from oneshotsam.medio import read_volume
    from oneshotsam.types import Volume
    from oneshotsam.volume.session import PropagationSession
    from oneshotsam.volume.types import PropagationConfig

    img, lab = read_volume(str(paths[1])), read_volume(str(paths[2]))
    t = np.asarray(lab.voxels).astype(np.uint8)
    k0 = int(np.argmax(t.sum(axis=(1, 2))))
    start = np.zeros_like(t)
    start[k0] = t[k0]
    s = PropagationSession(img, PropagationConfig(device="cpu"))
    c0, w0 = time.process_time(), time.perf_counter()
    res = s.run(Volume(start, lab.ijk_to_lps, "lab"))
    curve = {"case": name, "first_wall_cpu": [time.perf_counter() - w0, time.process_time() - c0],
             "dice": [], "update_wall_cpu": [], "corrected": []}
    rows, done = [], {k0}
    for step in range(steps + 1):
        pred = np.asarray(res.label_volumes[0].voxels)
        curve["dice"].append(_dice(pred > 0, t > 0))
        for p in res.report["targets"][0]["per_slice"]:
            k = p["slice"]
            if p["status"] != "seed":
                rows.append({"case": name, "step": step, "slice": k, "conf": p["confidence"],
                             "flagged": p["flagged"], "ev": p.get("evidence", {}),
                             "acc": _acceptable(pred[k], t[k]), "drawn": bool(pred[k].any()),
                             "truth_empty": not t[k].any()})
        if step == steps:
            break
        nxt = next((k for k in res.report["review_queue"]
                    if k not in done and not _acceptable(pred[k], t[k])), None)
        if nxt is None:
            break
        done.add(nxt)
        now = pred.copy()
        for k in done:
            now[k] = t[k]
        erased = not t[nxt].any()
        c0, w0 = time.process_time(), time.perf_counter()
        res = s.update(Volume(now, lab.ijk_to_lps, "lab"), [] if erased else [nxt],
                       [nxt] if erased else [])
        curve["update_wall_cpu"].append([time.perf_counter() - w0, time.process_time() - c0])
        curve["corrected"].append([nxt, erased])
    return rows, curve


def auroc(score, bad) -> float:
    from scipy.stats import rankdata

    score, bad = np.asarray(score, float), np.asarray(bad, bool)
    r = rankdata(np.concatenate([score[bad], score[~bad]]))
    p, n = bad.sum(), (~bad).sum()
    return float((r[:p].sum() - p * (p + 1) / 2) / max(p * n, 1))


def features(r: dict) -> list[float]:
    from oneshotsam.volume.confidence import DISTANCE_SCALE_MM

    ev = r["ev"]
    return [1.0 - math.exp(-ev.get("distance_mm", 0.0) / DISTANCE_SCALE_MM),
            min(max(1.0 - ev.get("similarity", 1.0), 0.0), 1.0),
            1.0 - min(ev.get("area_ratio", 1.0), 1.0), ev.get("disagreement", 0.0)]


def summary(rows: list[dict], curves: list[dict]) -> None:
    steps = max(len(c["dice"]) for c in curves)
    for i in range(steps):
        d = [c["dice"][i] for c in curves if len(c["dice"]) > i]
        print(f"after {i} corrections: mean Dice {np.mean(d):.4f} (min {min(d):.4f}, {len(d)} cases)")
    upd = [u for c in curves for u in c["update_wall_cpu"]]
    if upd:
        print(f"Update: median wall {np.median([u[0] for u in upd]):.2f} s, median CPU "
              f"{np.median([u[1] for u in upd]):.2f} s ({len(upd)} Updates)")
    bad = [not r["acc"] for r in rows]
    print(f"AUROC of confidence: {auroc([-r['conf'] for r in rows], bad):.3f} over {len(rows)} slices; "
          f"step 0: {auroc([-r['conf'] for r in rows if r['step'] == 0], [b for r, b in zip(rows, bad) if r['step'] == 0]):.3f}")
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["case"], r["step"]), []).append(r)
    first = [min((r for r in g if r["flagged"]), key=lambda r: (-r["ev"].get("expected_wrong_px", 0),
                                                                r["conf"], r["slice"]))
             for g in groups.values() if any(r["flagged"] for r in g)]
    print(f"first flagged slice not acceptable: {sum(not r['acc'] for r in first)} of {len(first)} steps")
    beyond = [r for r in rows if r["drawn"] and r["truth_empty"]]
    print(f"slices drawn beyond the structure's end: {len(beyond)}, flagged {sum(r['flagged'] for r in beyond)}")
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        return
    drawn = [r for r in rows if r["drawn"]]
    x, y = np.array([features(r) for r in drawn]), np.array([not r["acc"] for r in drawn])
    cases = np.array([r["case"] for r in drawn])
    pred = np.zeros(len(drawn))
    for c in sorted(set(cases)):
        m = LogisticRegression(max_iter=1000).fit(x[cases != c], y[cases != c])
        pred[cases == c] = m.predict_proba(x[cases == c])[:, 1]
    m = LogisticRegression(max_iter=1000).fit(x, y)
    print(f"refit on drawn slices (distance, dissimilarity, smaller, disagreement): "
          f"coef {np.round(m.coef_[0], 2).tolist()}, intercept {m.intercept_[0]:.2f}; "
          f"leave-one-case-out AUROC {auroc(pred, y):.3f}")


def main() -> None:
    from oneshotsam.protocols.corrections import list_cases

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--split", default="tuning", choices=("tuning", "held-out", "all"))
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json", default=None, help="write rows and curves here")
    ap.add_argument("--summarise", nargs="+", default=None, metavar="JSON",
                    help="only print the summary of earlier --json files")
    a = ap.parse_args()
    if a.summarise:
        rows, curves = [], []
        for f in a.summarise:
            d = json.loads(Path(f).read_text(encoding="utf-8"))
            rows += d["rows"]
            curves += d["curves"]
        summary(rows, curves)
        return
    import torch

    torch.set_num_threads(1)
    cases = list_cases(Path(a.data), "la", a.split)[a.start:]
    cases = cases[:a.limit] if a.limit else cases
    rows, curves = [], []
    for name, _, paths in cases:
        r, c = run_case(name, paths, a.steps)
        rows += r
        curves.append(c)
        print(json.dumps({"case": name, "dice": [round(x, 4) for x in c["dice"]]}), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "curves": curves}), encoding="utf-8")
    summary(rows, curves)


if __name__ == "__main__":
    main()
