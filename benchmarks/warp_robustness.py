"""Settings of ``medpersam-warp``'s one-target default judged on clean AND perturbed pairs of
several kinds at once (a script, not a test).

The pairs are those of ``warp_pairs.py`` (cardiac, chest, lung-ct, colon, atrium; at most
``--pairs-per-kind`` of each, spread over the kind's list). Every pair runs clean and with
each perturbation of ``oneshotsam.protocols.perturb`` (Med-PerSAM appendix D kinds at one
fixed level: brightness, contrast, gamma, noise, blur) applied to the reference image or to
the target image (``--conditions WHERE:KIND ...``; brightness and contrast are linear
and undone by the per-image percentile window, so the default list leaves them out). An RGB image is perturbed channel by channel; every
image is perturbed on its own [0, 1] scale times 255, as the protocol's 8-bit films.

Each ``--variant NAME=JSON`` is a set of overrides of the default settings (``{}`` = the
defaults; e.g. ``ncc={"loss": {"image_loss": "ncc"}}``). For each variant the script prints
one table: per condition, the mean Dice over kinds (each kind weighs the same, whatever its
number of pairs), the drop from clean, the worst pair and the CPU seconds per pair; a
summary then puts the variants side by side (mean over conditions, worst condition drop).
One JSON line per pair as it finishes; ``--json`` writes everything.

Usage::

    python benchmarks/warp_robustness.py --data ../shared/data \\
        --variant 'ssim={}' --variant 'ncc={"loss": {"image_loss": "ncc"}}' \\
        [--kinds cardiac chest] [--conditions reference:noise targets:blur ...] \\
        [--pairs-per-kind 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def perturbed(img, kind: str, seed: int = 0):
    """``img`` (an ``Image2D``) with perturbation ``kind`` applied on its 0..255 scale."""
    from oneshotsam.protocols.perturb import perturb
    from oneshotsam.types import Image2D

    p = np.asarray(img.pixels, dtype=np.float64) * 255.0
    if p.ndim == 2:
        out = perturb(p, kind, seed, img.name)
    else:
        out = np.stack([perturb(p[..., c], kind, seed, f"{img.name}/{c}") for c in range(p.shape[2])], -1)
    return Image2D(out.astype(np.float32) / 255.0, img.spacing_mm, img.name)


def spread(items: list, n: int) -> list:
    """At most ``n`` of ``items``, evenly spaced (first one included)."""
    if n <= 0 or len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / max(n - 1, 1))] for i in range(n)]


def conditions(specs: list[str]) -> list[tuple[str, str | None, str | None]]:
    """``["reference:noise", "targets:blur"]`` -> clean first, then each (name, where, kind)."""
    from oneshotsam.protocols.perturb import KINDS as PERTURB_KINDS

    out: list[tuple[str, str | None, str | None]] = [("clean", None, None)]
    for spec in specs:
        where, _, kind = spec.partition(":")
        if where not in ("reference", "targets") or kind not in PERTURB_KINDS:
            raise SystemExit(f"bad condition {spec!r}: write reference:KIND or targets:KIND, "
                             f"KIND one of {', '.join(PERTURB_KINDS)}")
        out.append((f"{where}: {kind}", where, kind))
    return out


def run_variant(name: str, overrides: dict, pairs: dict, conds: list, echo=print) -> list[dict]:
    from oneshotsam.benchmark2d import _scores
    from oneshotsam.methods.medpersam.warp_method import MedPerSAMWarp

    method = MedPerSAMWarp.from_preset(None, device="cpu", **overrides)
    rows = []
    for kind, items in pairs.items():
        for ref, rl, tgt, gt in items:
            values = [int(v) for v in np.unique(rl) if v]
            for cname, where, pk in conds:
                r_img = perturbed(ref, pk) if where == "reference" else ref
                t_img = perturbed(tgt, pk) if where == "targets" else tgt
                c0 = time.process_time()
                run = method.segment(r_img, rl, [t_img])
                cpu = time.process_time() - c0
                sc = _scores(np.asarray(run.results[0].labels), gt, values)
                dice = float(np.mean([d for d, _ in sc.values()])) if sc else 0.0
                row = {"variant": name, "kind": kind, "condition": cname, "reference": ref.name,
                       "target": tgt.name, "dice": round(dice, 4), "cpu_s": round(cpu, 2),
                       "steps": run.report.get("train_steps")}
                rows.append(row)
                echo(json.dumps(row))
    return rows


def table(rows: list[dict], conds: list) -> tuple[str, dict]:
    """Markdown table of one variant, and its summary numbers."""
    kinds = sorted({r["kind"] for r in rows})
    mean_of = lambda cname: float(np.mean([np.mean([r["dice"] for r in rows
                                                      if r["kind"] == k and r["condition"] == cname])
                                             for k in kinds]))
    clean = mean_of("clean")
    lines = ["| condition | mean Dice (kinds weigh the same) | drop from clean | worst pair | "
             + " | ".join(kinds) + " | CPU s / pair |",
             "|---|---|---|---|" + "---|" * len(kinds) + "---|"]
    drops = {}
    for cname, _, _ in conds:
        sel = [r for r in rows if r["condition"] == cname]
        m = mean_of(cname)
        drops[cname] = m - clean
        per_kind = [np.mean([r["dice"] for r in sel if r["kind"] == k]) for k in kinds]
        lines.append(f"| {cname} | {m:.4f} | {m - clean:+.4f} | {min(r['dice'] for r in sel):.4f} | "
                     + " | ".join(f"{x:.3f}" for x in per_kind)
                     + f" | {np.mean([r['cpu_s'] for r in sel]):.1f} |")
    perturbed_only = [d for c, d in drops.items() if c != "clean"]
    summary = {"clean": clean, "mean_all": float(np.mean([mean_of(c[0]) for c in conds])),
               "worst_drop": float(min(perturbed_only)) if perturbed_only else 0.0,
               "worst_condition": min(drops, key=drops.get) if perturbed_only else "clean",
               "worst_pair": float(min(r["dice"] for r in rows))}
    return "\n".join(lines), summary


def main() -> None:
    from warp_pairs import KINDS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("ONESHOTSAM_DATA", "../shared/data"))
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    ap.add_argument("--conditions", nargs="*", metavar="WHERE:KIND",
                    default=["reference:noise", "reference:blur", "reference:gamma", "targets:noise"])
    ap.add_argument("--pairs-per-kind", type=int, default=4)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    root = Path(args.data)
    if not root.is_dir():
        raise SystemExit(f"data folder {root} not found: pass --data or set ONESHOTSAM_DATA")
    variants = [(v.split("=", 1)[0], json.loads(v.split("=", 1)[1])) for v in args.variant] or [("defaults", {})]
    pairs = {k: spread([(ref, rl, t, g) for ref, rl, [(t, g)] in KINDS[k](root)], args.pairs_per_kind)
             for k in args.kinds}
    conds = conditions(args.conditions)
    print(f"{sum(map(len, pairs.values()))} pairs ({', '.join(f'{k} {len(v)}' for k, v in pairs.items())}), "
          f"{len(conds)} conditions, {len(variants)} variants", flush=True)
    results = {}
    for name, ov in variants:
        results[name] = run_variant(name, ov, pairs, conds, lambda s: print(s, flush=True))
    summaries = {}
    for name, ov in variants:
        text, summaries[name] = table(results[name], conds)
        print(f"\n### {name}: {json.dumps(ov)}\n\n{text}")
    print("\n| variant | clean | mean over conditions | worst drop (condition) | worst pair |\n|---|---|---|---|---|")
    for name, s in summaries.items():
        print(f"| {name} | {s['clean']:.4f} | {s['mean_all']:.4f} | {s['worst_drop']:+.4f} "
              f"({s['worst_condition']}) | {s['worst_pair']:.4f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"variants": dict(variants), "rows": results,
                                               "summaries": summaries}, indent=1))


if __name__ == "__main__":
    main()
