"""Fit the review's "past the estimated end" model on true labels (docs/corrections.md, "What limits LA").

For every case of a split, along the axial slices: the largest slice ``b`` and, on each
side, every slice ``a`` whose area is at most ``END_FIT_MAX_AREA`` of the largest stand
for two drawn slices. The ellipsoid profile through both
(``oneshotsam.volume.confidence.end_estimate_mm``) estimates where the structure ends;
every slice beyond ``a`` on that side is a sample: its distance past the estimated end
(mm) against whether the truth is empty there. Printed: the end estimate's error (slices)
by how far ``a`` lies from ``b``, the logistic fit (``confidence.END``), its
leave-one-case-out AUROC, and the same for the fitted constants in the code. Without the
data the script says so and exits 0.

    python benchmarks/end_estimate.py --data ../shared/data --kind la --split tuning
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np


def samples(case) -> tuple[list[float], list[bool], dict[float, list[float]]]:
    """``(past_end_mm, truth empty, {share of the way to the end: end errors in slices})``."""
    from oneshotsam.geometry import slice_geometry
    from oneshotsam.volume.confidence import end_estimate_mm

    t = case.truth > 0
    ax = case.axis
    area = t.sum(axis=tuple(i for i in range(3) if i != ax)).astype(float)
    pos = np.asarray(slice_geometry(case.reference, "axial").positions_mm, dtype=float)
    nz = np.nonzero(area)[0]
    first, last, big = int(nz.min()), int(nz.max()), int(np.argmax(area))
    x, y, errors = [], [], {}
    for side, end in ((-1, first), (1, last)):
        for a in range(big + side, end + side, side):
            c = end_estimate_mm(area[a], area[big], abs(pos[a] - pos[big]))
            if c is None:
                continue
            est_mm = c - abs(pos[end] - pos[big])
            share = round(abs(a - big) / max(abs(end - big), 1) * 4) / 4
            errors.setdefault(share, []).append(est_mm / max(abs(pos[1] - pos[0]), 1e-6))
            k = a + side
            while 0 <= k < len(area):
                x.append(abs(pos[k] - pos[big]) - c)
                y.append(bool(area[k] == 0))
                k += side
    return x, y, errors


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("ONESHOTSAM_DATA", "../shared/data"))
    p.add_argument("--kind", default="la", choices=("la", "acdc-ed", "tumour"))
    p.add_argument("--split", default="tuning", choices=("tuning", "held-out", "all"))
    a = p.parse_args(argv)
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from oneshotsam.errors import OneShotError
    from oneshotsam.protocols import corrections as C
    from oneshotsam.volume.confidence import END

    try:
        plan = C.list_cases(Path(a.data), a.kind, a.split)
    except OneShotError as e:
        print(f"{e}: pass --data PATH (the shared data folder); nothing run")
        return 0
    X, Y, G, errs = [], [], [], {}
    for i, (name, split, paths) in enumerate(plan):
        x, y, e = samples(C.load_case(a.kind, name, split, paths))
        X += x
        Y += y
        G += [i] * len(x)
        for k, v in e.items():
            errs.setdefault(k, []).extend(v)
    if len(set(Y)) < 2:
        print("too few samples on both sides of an end; nothing fitted")
        return 0
    X, Y, G = np.asarray(X)[:, None], np.asarray(Y), np.asarray(G)
    print(f"{len(plan)} {a.kind} cases ({a.split}), {len(Y)} slices beyond an anchor, "
          f"{Y.mean():.2f} of them past the true end")
    print("end estimate error (slices; + = estimated beyond the true end), by the anchor's share "
          "of the way from the largest slice to the end:")
    for share in sorted(errs):
        v = np.asarray(errs[share])
        print(f"  {share:.2f}: mean {v.mean():+.1f}, mean |error| {np.abs(v).mean():.1f}, "
              f"range {v.min():+.1f} .. {v.max():+.1f} ({len(v)} anchors)")
    fit = LogisticRegression(C=1e4).fit(X, Y)
    loco = np.zeros(len(Y))
    for g in np.unique(G):
        if len(set(Y[G != g])) == 2:
            loco[G == g] = LogisticRegression(C=1e4).fit(X[G != g], Y[G != g]).predict_proba(X[G == g])[:, 1]
    b0, b1 = float(fit.intercept_[0]), float(fit.coef_[0, 0])
    print(f"fit: intercept {b0:.2f}, per_mm {b1:.2f} (p = 0.5 at {-b0 / b1:.1f} mm past the estimate); "
          f"leave-one-case-out AUROC {roc_auc_score(Y, loco):.3f}")
    code = END["intercept"] + END["per_mm"] * X[:, 0]
    print(f"in the code: intercept {END['intercept']}, per_mm {END['per_mm']}; AUROC {roc_auc_score(Y, code):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
