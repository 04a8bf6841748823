"""Benchmark P2SAM at real model size (random weights) on this CPU.

For each backend (default: SAM ViT-B and SAM 2.1 Hiera-T) at 1024 px:
encode seconds (one image), decode seconds and retrieval seconds per target
for the preset's candidate ranges (default preset: 1-5 positive x 1-3
negative parts = 15 candidates, 3 decoder calls each), retrieval/encode
ratio, peak resident memory, and the cost of one batched decoder call over
all candidates' first step (what batching candidates would save).

Weights are random (none can be downloaded here): costs do not depend on
weight values, masks do. Each backend runs in its own subprocess so that peak
memory is per backend. Not a test: run by hand, e.g.

    OMP_NUM_THREADS=2 python benchmarks/bench_p2sam.py
    python benchmarks/bench_p2sam.py --backends sam2.1-hiera-tiny --targets 1
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def synthetic_pair(size: int, seed: int, radius: int):
    """A bright textured disk on noise (RGB uint8-able float image) + its mask."""
    from oneshotsam.types import Image2D

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = size // 2 + rng.integers(-60, 60), size // 2 + rng.integers(-60, 60)
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius * radius
    img = rng.uniform(0.0, 0.35, (size, size)).astype(np.float32)
    img[inside] = np.clip(0.75 + 0.1 * np.sin(xx[inside] / 9.0), 0, 1)
    return Image2D(img, name=f"synthetic{seed}"), inside.astype(np.uint8)


def batched_first_step(backend, emb, n_candidates: int, n_points: int) -> tuple[float, float]:
    """Seconds of one decoder call with a batch of ``n_candidates`` prompt sets
    (padded with label -1 points, SAM 1) vs ``n_candidates`` single calls."""
    import torch

    model = getattr(backend, "model", None)
    if model is None or not hasattr(model, "prompt_encoder") or not hasattr(model, "mask_decoder"):
        return float("nan"), float("nan")
    if not backend.name.startswith("sam-"):
        return float("nan"), float("nan")
    g = backend.input_size
    rng = np.random.default_rng(0)
    coords = torch.as_tensor(rng.uniform(0, g, (n_candidates, n_points, 2)), dtype=torch.float)
    labels = torch.ones((n_candidates, n_points), dtype=torch.int)
    labels[:, n_points // 2:] = -1  # padding points
    with torch.inference_mode():
        pe = model.prompt_encoder.get_dense_pe()
        t0 = time.perf_counter()
        sp, de = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        model.mask_decoder(image_embeddings=emb.features, image_pe=pe, sparse_prompt_embeddings=sp,
                           dense_prompt_embeddings=de, multimask_output=False)
        batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(n_candidates):
            sp, de = model.prompt_encoder(points=(coords[i:i + 1], labels[i:i + 1]), boxes=None,
                                          masks=None)
            model.mask_decoder(image_embeddings=emb.features, image_pe=pe,
                               sparse_prompt_embeddings=sp, dense_prompt_embeddings=de,
                               multimask_output=False)
        single = time.perf_counter() - t0
    return batched, single


def run_one(name: str, size: int, n_targets: int, preset: str, radius: int,
            precision: str) -> dict:
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    from oneshotsam.backends.factory import create_backend
    from oneshotsam.methods.p2sam import P2SAM
    from oneshotsam.methods.retrieval import ot_cost

    ot_cost(np.ones((2, 2)), np.ones((2, 2)))  # import POT outside the timings
    t0 = time.perf_counter()
    be = create_backend(name, random_weights=True, device="cpu", precision=precision)
    build_s = time.perf_counter() - t0
    ref, ref_mask = synthetic_pair(size, 0, radius)
    targets = [synthetic_pair(size, i + 1, radius)[0] for i in range(n_targets)]
    method = P2SAM.from_preset(preset, backend=be)
    t0 = time.perf_counter()
    res = method.segment(ref, ref_mask, targets)
    total_s = time.perf_counter() - t0
    per = [r.report["timings_s"] for r in res.results]
    enc = float(np.median([p["encode"] for p in per] + [res.report["reference"]["encode_s"]]))
    dec = float(np.median([p["decode"] for p in per]))
    ret = float(np.median([p["retrieval"] for p in per]))
    cells = [c["grid_cells"] for r in res.results for c in r.report["classes"]["1"]["candidates"]]
    emb = be.embed(targets[0].rgb_uint8())
    n_cand = len(method.config.candidates)
    b_s, s_s = batched_first_step(be, emb, n_cand, max(method.config.n_pos) +
                                  max(method.config.n_neg))
    return {
        "backend": name, "precision": be.precision, "image_px": size, "preset": preset,
        "candidates": n_cand, "build_s": round(build_s, 2), "encode_s": round(enc, 3),
        "decode_s_per_target": round(dec, 3), "retrieval_s_per_target": round(ret, 4),
        "retrieval_over_encode": round(ret / enc, 4),
        "prepare_reference_s": res.report["reference"]["prepare_s"],
        "total_s": round(total_s, 2), "encode_calls": res.report["encode_calls"],
        "reference_fg_cells": res.report["reference"]["classes"]["1"]["foreground_cells"],
        "candidate_cells_min_max": [int(min(cells)), int(max(cells))],
        "batched_first_step_s": round(b_s, 4), "single_first_steps_s": round(s_s, 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", nargs="+", default=["sam-vit-b", "sam2.1-hiera-tiny"])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--targets", type=int, default=2)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--radius", type=int, default=200, help="structure radius in pixels")
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "auto"])
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(run_one(a.one, a.size, a.targets, a.preset, a.radius, a.precision)))
        return 0
    rows = []
    for name in a.backends:
        cmd = [sys.executable, __file__, "--one", name, "--size", str(a.size), "--targets",
               str(a.targets), "--preset", a.preset, "--radius", str(a.radius),
               "--precision", a.precision]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    keys = ["backend", "precision", "encode_s", "decode_s_per_target", "retrieval_s_per_target",
            "retrieval_over_encode", "prepare_reference_s", "batched_first_step_s",
            "single_first_steps_s", "peak_rss_mib"]
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(str(r[k]) for k in keys))
    for r in rows:
        print(f"{r['backend']}: retrieval/encode = {100 * r['retrieval_over_encode']:.1f}% "
              f"({r['candidates']} candidates, reference {r['reference_fg_cells']} cells, "
              f"candidate masks {r['candidate_cells_min_max']} cells)")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main())
