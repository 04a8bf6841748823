"""Single pairs of several kinds for ``medpersam-warp``'s one-target default (a script, not a test).

One ``segment`` call per pair (one reference, one target: the ``pair`` situation of
``warp_choice``), default settings plus ``--set`` overrides; prints one line per pair
and a table per kind (mean Dice over classes, CPU seconds of the call), then the mean
over kinds, so a setting of the pair default is judged on every kind at once, not
on one dataset:

* ``cardiac``: ACDC ED slice + labels -> the ES slice at the same index; the middle
  labelled slice of two patients of each pathology group (patients 1-20, 21-40, ...);
* ``chest``: JSRT film -> another patient's film (5 fixed pairs in name order);
* ``lung-ct``: the 4D-Lung visit pair (tumour);
* ``colon``: CVC frame 01 -> frames 06, 11, 16, 20 (polyp);
* ``atrium``: LA volume, the slice with the largest label -> the slice 4 further on
  (3 volumes).

Usage::

    python benchmarks/warp_pairs.py --data ../shared/data [--set KEY=JSON ...] [--kinds cardiac chest]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def cardiac(root: Path):
    from oneshotsam.benchmark2d import acdc_cases
    groups = acdc_cases(root)
    by_patient: dict[str, list] = {}
    for g in groups:
        by_patient.setdefault(g[0].name.split("_")[0], []).append(g)
    pats = sorted(by_patient)
    chosen = [p for grp in range(5) for p in [q for q in pats if grp * 20 < int(q[7:10]) <= grp * 20 + 20][:2]]
    for p in chosen:
        gs = by_patient[p]
        yield gs[len(gs) // 2]


def chest(root: Path):
    from oneshotsam.benchmark2d import _img, _read_png
    d = root / "jsrt"
    ids = sorted(p.stem for p in (d / "images").glob("*.png"))
    load = lambda i: (_img(_read_png(d / "images" / f"{i}.png"), i), _read_png(d / "labels" / f"{i}.png"))
    for a, b in [(0, 10), (20, 30), (40, 50), (60, 70), (80, 90)]:
        (ri, rl), t = load(ids[a]), load(ids[b])
        yield ri, rl, [t]


def lung_ct(root: Path):
    from oneshotsam.benchmark2d import lung4d_cases
    yield from lung4d_cases(root)


def colon(root: Path):
    from oneshotsam.benchmark2d import _img, _read_png
    d = root / "cvc"
    load = lambda i: (_img(_read_png(d / "images" / f"{i:02d}.png"), f"{i:02d}"),
                      (_read_png(d / "masks" / f"{i:02d}.png") > 0).astype(np.uint8))
    ri, rl = load(1)
    for k in (6, 11, 16, 20):
        yield ri, rl, [load(k)]


def atrium(root: Path):
    import SimpleITK as sitk

    from oneshotsam.benchmark2d import _img
    d = root / "la"
    for img in sorted(d.glob("*_image.nii.gz"))[:3]:
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(img)))
        lab = sitk.GetArrayFromImage(sitk.ReadImage(str(img).replace("_image", "_label")))
        k = int(np.argmax(lab.reshape(lab.shape[0], -1).sum(1)))
        t = min(k + 4, a.shape[0] - 1)
        yield _img(a[k], f"{img.name}_{k}"), lab[k], [(_img(a[t], f"{img.name}_{t}"), lab[t])]


KINDS = {"cardiac": cardiac, "chest": chest, "lung-ct": lung_ct, "colon": colon, "atrium": atrium}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("ONESHOTSAM_DATA", "../shared/data"))
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    args = ap.parse_args()

    from oneshotsam.benchmark2d import _scores
    from oneshotsam.methods.medpersam.warp_method import MedPerSAMWarp

    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    method = MedPerSAMWarp.from_preset(None, device="cpu", **overrides)
    root = Path(args.data)
    table = {}
    for kind in args.kinds:
        rows = []
        for ref, rl, [(tgt, gt)] in KINDS[kind](root):
            values = [int(v) for v in np.unique(rl) if v]
            c0 = time.process_time()
            run = method.segment(ref, rl, [tgt])
            cpu = time.process_time() - c0
            sc = _scores(np.asarray(run.results[0].labels), gt, values)
            dice = float(np.mean([d for d, _ in sc.values()])) if sc else 0.0
            rows.append((dice, cpu))
            print(json.dumps({"kind": kind, "reference": ref.name, "target": tgt.name,
                              "dice": round(dice, 4), "cpu_s": round(cpu, 2),
                              "steps": run.report["train_steps"], "resolution": run.report["resolution"]}),
                  flush=True)
        d = np.array([r[0] for r in rows])
        table[kind] = (len(rows), float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0,
                       float(d.min()), float(np.mean([r[1] for r in rows])))
    print(f"\nsettings: {overrides or 'defaults'}")
    print("| kind | pairs | mean Dice | s.e. | worst | CPU s / pair |\n|---|---|---|---|---|---|")
    for k, (n, m, se, w, c) in table.items():
        print(f"| {k} | {n} | {m:.4f} | {se:.4f} | {w:.4f} | {c:.1f} |")
    print(f"| mean over kinds | | {np.mean([t[1] for t in table.values()]):.4f} | | "
          f"{min(t[3] for t in table.values()):.4f} | {np.mean([t[4] for t in table.values()]):.1f} |")


if __name__ == "__main__":
    main()
