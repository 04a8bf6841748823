"""Backend cost benchmark (a script, not a test).

Real-size architectures with random weights (cost does not depend on weight
values) at their native 1024-pixel input:

* encode seconds, fp32 vs bf16 autocast (median of ``--repeats``),
* decode seconds for one point prompt, and point + box + mask prompt
  (median of ``--decodes``),
* peak resident memory of the process (each backend runs in its own child
  process so the peaks do not mix).

Usage::

    python benchmarks/bench_backends.py [--backends sam-vit-b sam2.1-hiera-tiny]
        [--repeats 3] [--decodes 20] [--threads 2] [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def _median_time(fn, n: int) -> tuple[float, float, float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), max(times)


def measure(name: str, repeats: int, decodes: int, threads: int, device: str,
            fast_attention: bool | None = None) -> dict:
    """Time one backend in this process; returns a JSON-able dict."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from oneshotsam.backends.factory import create_backend

    row: dict = {"backend": name, "threads": threads}
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    seg = create_backend(name, random_weights=True, device=device, cache_size=0,
                         precision="fp32", fast_attention=fast_attention)
    row["build_s"] = time.perf_counter() - t0
    row["device"] = seg.device
    img = rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    sync = torch.cuda.synchronize if seg.device.startswith("cuda") else (lambda: None)
    seg.embed(img)  # warm-up (allocator, kernels)
    for precision in ("fp32", "bf16"):
        seg.precision = precision
        sync()
        med, lo, hi = _median_time(lambda: (seg.embed(img), sync()), repeats)
        row[f"encode_{precision}_s"] = [round(med, 3), round(lo, 3), round(hi, 3)]
    emb = seg.embed(img)
    g = seg.grid_size
    pts = np.array([[400.0, 500.0]])
    logits = np.zeros((4 * g, 4 * g), np.float32)
    seg.decode(emb, points_xy=pts, point_labels=[1])
    med, lo, hi = _median_time(lambda: seg.decode(emb, points_xy=pts, point_labels=[1]), decodes)
    row["decode_point_s"] = [round(med, 4), round(lo, 4), round(hi, 4)]
    med, lo, hi = _median_time(lambda: seg.decode(
        emb, points_xy=pts, point_labels=[1], box_xyxy=[300, 400, 600, 700],
        mask_logits=logits, multimask=True), decodes)
    row["decode_full_s"] = [round(med, 4), round(lo, 4), round(hi, 4)]
    row["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if seg.device.startswith("cuda"):
        row["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return row


def _table(rows: list[dict]) -> str:
    head = ("backend", "encode fp32 s", "encode bf16 s", "bf16 speed-up", "decode pt s",
            "decode pt+box+mask s", "peak RSS MiB")
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append((r["backend"], "error: " + r["error"][:60], "", "", "", "", ""))
            continue
        fp, bf = r["encode_fp32_s"][0], r["encode_bf16_s"][0]
        lines.append((r["backend"], f"{fp:.2f}", f"{bf:.2f}", f"{fp / bf:.2f}x",
                      f"{r['decode_point_s'][0]:.4f}", f"{r['decode_full_s'][0]:.4f}",
                      f"{r['peak_rss_mib']:.0f}"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    return "\n".join(" | ".join(str(v).ljust(w) for v, w in zip(line, widths)) for line in lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backends", nargs="+", default=["sam-vit-b", "sam2.1-hiera-tiny"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--decodes", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fast-attention", choices=("auto", "on", "off"), default="auto",
                    help="SAM 1 encoder attention through SDPA (auto: on for real SAM 1)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        fast = {"auto": None, "on": True, "off": False}[args.fast_attention]
        print(json.dumps(measure(args.child, args.repeats, args.decodes, args.threads,
                                 args.device, fast)))
        return 0
    rows = []
    for name in args.backends:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", name,
               "--repeats", str(args.repeats), "--decodes", str(args.decodes),
               "--threads", str(args.threads), "--device", args.device,
               "--fast-attention", args.fast_attention]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            rows.append({"backend": name, "error": res.stderr.strip().splitlines()[-1]
                         if res.stderr.strip() else f"exit {res.returncode}"})
        else:
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr)
    print(_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
