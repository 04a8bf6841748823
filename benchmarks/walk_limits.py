"""Score other ways for the within-volume walk to reach a slice's shape (docs/corrections.md, "What limits LA").

The walk (:mod:`oneshotsam.volume.slice_flow`, ``VolumeWarpConfig``) carries a slice's labels
to its neighbour along the optical flow, then the appearance refinement removes pixels
unlike the annotation and an opening cuts thin parts: a walk can move and shrink a
structure but never grow it, so it loses cross-sections that widen or split on the way.
This script walks the truth of the largest slice outward to both ends of the true
extent (no absence rule, as ``benchmarks/walk_step.py``) with each STEP RULE below and
prints each walk's 3D Dice, its false positives and negatives (shares of the true
voxels), and per rule the mean, worst case and walks won / lost by more than 0.005
against ``flow`` (the product's step):

* ``flow``: the product's step (nearest-neighbour pull along the Farnebäck flow,
  refinement, opening); ``bilinear``: the pull by bilinear interpolation of each label,
  kept at >= 0.5;
* ``from-anchor``: the flows composed back to the walk's first slice and its labels pulled
  from there (refinement and opening on each slice, nothing carried over);
* ``grow``: after the refinement, up to one ring of pixels within 1.5 SD of the annotated
  intensity added, while the label stays no larger than on the previous slice;
* ``grabcut``: OpenCV's GrabCut on the pulled label (sure inside 2 px in, possible
  outside 2 px out), then refinement and opening;
* ``forest``: instead of the refinement, a scikit-learn random forest of intensity,
  gradient and Laplacian at 4 scales, trained on the largest slice's truth, keeps pixels
  it calls inside (p >= 0.5);
* ``true-area`` (a bound, not a rule: it reads the truth): the product's step, then the
  label grown or shrunk along its signed distance to the TRUE area of the slice, and
  carried on so: what knowing each cross-section's size would give.

The engine is trained once per case by a first run (the session the benchmark uses) only
to fix the walk's inputs: the region of interest, the windowed planes, the annotated
intensity and the opening's radius; ``--cache DIR`` keeps them (one ``.npz`` per case) and
a second run with the same folder scores without training. Single-label kinds only (LA,
tumours). Without the data the script says so and exits 0.

    python benchmarks/walk_limits.py --data ../shared/data --kind la --split tuning --cache /tmp/walks
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

RULES = ("flow", "bilinear", "from-anchor", "grow", "grabcut", "forest", "true-area")


def record_case(case, cfg) -> dict:
    """The walk's inputs on the engine's region of interest (module docstring)."""
    from oneshotsam.protocols import corrections_loop as loop
    from oneshotsam.protocols.corrections_engine import open_session
    from oneshotsam.protocols.rules import largest_slice

    session = open_session("session", case.reference, cfg, [], None)
    session.run(case.start)
    eng = session.states[0].engine
    if len(eng.stats) != 1:
        raise SystemExit(f"{case.name}: walk_limits scores single-label kinds only (la, tumour)")
    (value, (mu, sd)), = eng.stats.items()
    r0, r1, c0, c1 = eng.box
    n = case.truth.shape[case.axis]
    first, last = loop.extent(case.truth, case.axis)
    return {"planes": np.stack([eng.proc.plane(k)[r0:r1, c0:c1] for k in range(n)]).astype(np.float32),
            "truth": np.stack([np.take(case.truth, k, axis=case.axis)[r0:r1, c0:c1] > 0
                               for k in range(n)]).astype(np.uint8),
            "mu": mu, "sd": sd, "sigma": eng.vcfg.refine_sigma, "window": eng.vcfg.flow_window_px,
            "open_px": int(eng.vcfg.open_fraction * eng.inscribed_px[value]),
            "big": largest_slice(case.truth, case.axis), "first": first, "last": last}


def _disc(r: int) -> np.ndarray:
    import cv2

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _remap(a: np.ndarray, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    import cv2

    gx, gy = np.meshgrid(np.arange(a.shape[1], dtype=np.float32), np.arange(a.shape[0], dtype=np.float32))
    return cv2.remap(a.astype(np.float32), gx + fx, gy + fy, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _grow(m: np.ndarray, plane: np.ndarray, mu: float, sd: float, cap: int) -> np.ndarray:
    import cv2

    alike = (np.abs(cv2.medianBlur(np.ascontiguousarray(plane, np.float32), 3) - mu) <= 1.5 * sd)
    ring = (cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))) > 0) & alike & (m == 0)
    return (m | ring).astype(np.uint8) if m.sum() + ring.sum() <= cap else m


def _to_area(m: np.ndarray, area_px: int) -> np.ndarray:
    """``m`` grown or shrunk along its signed distance map to the level set whose area is
    nearest ``area_px`` pixels (a whole level or none: ties are not split by position)."""
    from oneshotsam.volume.gaps import signed_distance

    if not m.any() or area_px <= 0:
        return np.zeros_like(m)
    sd = signed_distance(m)
    level = np.sort(sd.ravel())[min(area_px, sd.size) - 1]
    upto, below = sd <= level, sd < level
    best = upto if abs(int(upto.sum()) - area_px) <= abs(int(below.sum()) - area_px) else below
    return best.astype(m.dtype)


def _grabcut(m: np.ndarray, plane: np.ndarray) -> np.ndarray:
    import cv2

    if m.sum() < 20:
        return m
    img = np.clip(plane * 255, 0, 255).astype(np.uint8)
    mask = np.full(m.shape, cv2.GC_BGD, np.uint8)
    mask[cv2.dilate(m, _disc(2)) > 0] = cv2.GC_PR_BGD
    mask[m > 0] = cv2.GC_PR_FGD
    mask[cv2.erode(m, _disc(2)) > 0] = cv2.GC_FGD
    try:
        cv2.grabCut(cv2.merge([img, img, img]), mask, None, np.zeros((1, 65)), np.zeros((1, 65)), 3,
                    cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return m
    return ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)


def _features(plane: np.ndarray) -> np.ndarray:
    import cv2

    p = np.ascontiguousarray(plane, np.float32)
    fs = [p]
    for s in (1, 2, 4, 8):
        g = cv2.GaussianBlur(p, (0, 0), s)
        gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
        fs += [g, np.sqrt(gx * gx + gy * gy), cv2.Laplacian(g, cv2.CV_32F)]
    return np.stack(fs, -1).reshape(-1, len(fs))


def _forest(plane: np.ndarray, truth: np.ndarray):
    from sklearn.ensemble import RandomForestClassifier

    x, y = _features(plane), truth.ravel() > 0
    rng = np.random.default_rng(0)
    pos, neg = np.nonzero(y)[0], np.nonzero(~y)[0]
    pick = np.concatenate([rng.choice(pos, min(4000, pos.size), False), rng.choice(neg, min(8000, neg.size), False)])
    return RandomForestClassifier(n_estimators=25, max_depth=12, min_samples_leaf=5, n_jobs=1,
                                  random_state=0).fit(x[pick], y[pick])


def walk(d: dict, rule: str) -> list[dict]:
    """Both walks of one case with one step rule: ``[{direction, dice, fp, fn}, ...]``."""
    from scipy import ndimage as ndi

    from oneshotsam.volume.appearance import refine_labels
    from oneshotsam.volume.slice_flow import pull_labels, slice_flow
    from oneshotsam.volume.warpvol import _open_labels

    planes, truth = d["planes"], d["truth"]
    big, stats = int(d["big"]), {1: (float(d["mu"]), float(d["sd"]))}
    refine = lambda m, k: refine_labels(m, planes[k], stats, float(d["sigma"]))  # noqa: E731
    forest = _forest(planes[big], truth[big]) if rule == "forest" else None
    rows = []
    for direction, stop in ((+1, int(d["last"])), (-1, int(d["first"]))):
        prev = truth[big].astype(np.uint8)
        cx, cy = np.zeros(prev.shape, np.float32), np.zeros(prev.shape, np.float32)
        tp = fp = fn = 0
        for k in range(big + direction, stop + direction, direction):
            flow = slice_flow(planes[k - direction], planes[k], int(d["window"]))
            if rule == "bilinear":
                m = (_remap(prev, flow[..., 0], flow[..., 1]) >= 0.5).astype(np.uint8)
            elif rule == "from-anchor":
                cx, cy = (flow[..., 0] + _remap(cx, flow[..., 0], flow[..., 1]),
                          flow[..., 1] + _remap(cy, flow[..., 0], flow[..., 1]))
                m = (_remap(truth[big], cx, cy) >= 0.5).astype(np.uint8)
            else:
                m = pull_labels(prev, flow)
            if rule == "grabcut":
                m = _grabcut(m, planes[k])
            if rule == "forest":
                inside = forest.predict_proba(_features(planes[k]))[:, 1].reshape(m.shape) >= 0.5
                m = ndi.binary_fill_holes((m > 0) & inside).astype(np.uint8)
            else:
                m = refine(m, k)
            if rule == "grow":
                m = _grow(m, planes[k], float(d["mu"]), float(d["sd"]), int(prev.sum()))
            m = _open_labels(m, {1: int(d["open_px"])})
            if rule == "true-area":
                m = _to_area(m, int(truth[k].sum()))
            t, p = truth[k] > 0, m > 0
            tp, fp, fn = tp + int((t & p).sum()), fp + int((p & ~t).sum()), fn + int((t & ~p).sum())
            prev = m.astype(np.uint8)
        true_vox = max(tp + fn, 1)
        rows.append({"direction": direction, "dice": 2 * tp / max(2 * tp + fp + fn, 1),
                     "fp": fp / true_vox, "fn": fn / true_vox})
    return rows


def report(rows: list[dict], rules: list[str]) -> None:
    for r in rows:
        print(f"{r['case']} dir {r['direction']:+d} {r['rule']}: walk Dice {r['dice']:.4f}, "
              f"FP {r['fp']:.3f}, FN {r['fn']:.3f}")
    base = {(r["case"], r["direction"]): r["dice"] for r in rows if r["rule"] == rules[0]}
    print(f"\nrule: walk Dice mean +- SD (worst) | difference to {rules[0]}: mean (worst), walks won / "
          "lost by > 0.005 | FP / FN")
    for rule in rules:
        mine = [r for r in rows if r["rule"] == rule]
        d = np.array([r["dice"] for r in mine])
        diff = np.array([r["dice"] - base[(r["case"], r["direction"])] for r in mine])
        print(f"{rule}: {d.mean():.4f} +- {d.std():.4f} ({d.min():.4f}) | {diff.mean():+.4f} ({diff.min():+.4f}), "
              f"{int((diff > 0.005).sum())} / {int((diff < -0.005).sum())} of {len(mine)} | "
              f"{np.mean([r['fp'] for r in mine]):.3f} / {np.mean([r['fn'] for r in mine]):.3f}")


def cached_inputs(cache: Path | None, name: str, record) -> dict:
    """The walk's inputs of case ``name``: read from ``cache/name.npz`` when there, else
    ``record()`` (then written there whole or not at all, when ``cache`` is given)."""
    saved = cache / f"{name}.npz" if cache is not None else None
    if saved is not None and saved.exists():
        return dict(np.load(saved))
    d = record()
    if saved is not None:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = saved.with_suffix(".partial.npz")
        np.savez_compressed(tmp, **d)
        tmp.replace(saved)
    return d


def main(argv: list[str] | None = None) -> int:
    from _correction_cases import case_parser, each_case, plan_and_config

    p = case_parser(__doc__.splitlines()[0])
    p.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES,
                   help="step rules to score; the first is the baseline")
    p.add_argument("--cache", type=Path, default=None, help="folder of the walks' inputs (read if present)")
    a = p.parse_args(argv)
    from oneshotsam.protocols import corrections as C

    ready = plan_and_config(a)
    if ready is None:
        return 0
    rows = []
    for name, split, paths in each_case(ready[0], a.kind):
        d = cached_inputs(a.cache, name, lambda: record_case(C.load_case(a.kind, name, split, paths), ready[1]))
        for rule in a.rules:
            rows += [{"case": name, "rule": rule, **r} for r in walk(d, rule)]
    report(rows, a.rules)
    return 0


if __name__ == "__main__":
    sys.exit(main())
