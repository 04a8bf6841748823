"""Cohort throughput on ACDC (ED labelled -> ES), 1 vs 2 workers, rerun cost, and the
same patients through ``oneshotsam propagate`` for a patient-by-patient Dice comparison.

Not a test: prints figures (and the load average next to each timing; the machine may be
shared). Usage::

    python benchmarks/bench_cohort.py --data ../shared/data --patients 10 --workdir /tmp/cohort-bench \
        [--workers 1 2] [--propagate] [--json OUT]

Each cohort run is ``oneshotsam cohort MANIFEST --output-dir WORK/out-w<N> --workers N
--device cpu --quiet`` in a fresh folder; the rerun repeats the last one on its folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _uptime() -> str:
    with open("/proc/loadavg", encoding="utf-8") as f:
        return " ".join(f.read().split()[:3])


def _machine() -> str:
    """CPU model, usable cores and memory of this machine (for the figures' context)."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
        with open("/proc/meminfo", encoding="utf-8") as f:
            mem = int(next(ln.split()[1] for ln in f if ln.startswith("MemTotal"))) / 2 ** 20
    except (OSError, StopIteration, ValueError):
        mem = float("nan")
    return f"{model}, {len(os.sched_getaffinity(0))} usable cores, {mem:.0f} GiB"


def write_manifest(data: Path, n: int, work: Path) -> tuple[Path, list[str]]:
    acdc = data / "acdc"
    pids = sorted(p.name[: -len("_ED.nii.gz")] for p in acdc.glob("patient*_ED.nii.gz"))[:n]
    lines = ["patient,visit,image,labels,ground_truth"]
    for pid in pids:
        lines.append(f"{pid},ED,{acdc / (pid + '_ED.nii.gz')},{acdc / (pid + '_ED_label.nii.gz')},")
        lines.append(f"{pid},ES,{acdc / (pid + '_ES.nii.gz')},,{acdc / (pid + '_ES_label.nii.gz')}")
    work.mkdir(parents=True, exist_ok=True)
    m = work / "manifest.csv"
    m.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return m, pids


def _run(cmd: list[str]) -> tuple[float, str, str, int]:
    before = _uptime()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8")
    sec = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    return sec, before, _uptime(), proc.returncode


def _files(out: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*")
            if p.is_file() and not p.name.startswith("summary.")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--patients", type=int, default=10)
    ap.add_argument("--workdir", default="/tmp/cohort-bench")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--propagate", action="store_true", help="also run oneshotsam propagate per patient")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    work = Path(a.workdir)
    manifest, pids = write_manifest(Path(a.data).resolve(), a.patients, work)  # the manifest lives in WORK
    cli = [sys.executable, "-m", "oneshotsam.cli"]
    res: dict = {"patients": pids, "runs": [], "cpus": os.cpu_count(), "machine": _machine()}
    print(f"machine: {res['machine']}", flush=True)
    for w in a.workers:
        out = work / f"out-w{w}"
        if out.exists():
            import shutil
            shutil.rmtree(out)
        sec, l0, l1, rc = _run(cli + ["cohort", str(manifest), "--output-dir", str(out), "--workers", str(w),
                                      "--device", a.device, "--quiet"])
        summ = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        n = len(summ["targets"])
        row = {"workers": w, "seconds": round(sec, 1), "targets": n, "rc": rc,
               "targets_per_min": round(60 * n / sec, 2), "load_before": l0, "load_after": l1,
               "target_seconds": [t["seconds"] for t in summ["targets"]],
               "target_cpu_seconds": [t["cpu_seconds"] for t in summ["targets"]],
               "dice": {t["patient"]: t["mean_dice"] for t in summ["targets"]}}
        res["runs"].append(row)
        cpu = sorted(c for c in row["target_cpu_seconds"] if c is not None)
        print(f"workers {w}: {sec:.1f} s for {n} targets = {row['targets_per_min']} targets/min "
              f"(load {l0} -> {l1}); rc {rc}; CPU-s per target "
              + (f"median {cpu[len(cpu) // 2]:.1f}, range {cpu[0]:.1f}-{cpu[-1]:.1f}" if cpu else "none"),
              flush=True)
    last = work / f"out-w{a.workers[-1]}"
    before = _files(last)
    sec, l0, l1, rc = _run(cli + ["cohort", str(manifest), "--output-dir", str(last), "--workers",
                                  str(a.workers[-1]), "--device", a.device, "--quiet"])
    same = before == _files(last)
    res["rerun"] = {"seconds": round(sec, 2), "load_before": l0, "load_after": l1, "rc": rc,
                    "files_untouched": same, "n_files": len(before)}
    print(f"rerun: {sec:.2f} s, {len(before)} output files untouched: {same} (load {l0} -> {l1})", flush=True)
    if len(res["runs"]) >= 2:
        r1 = next((r for r in res["runs"] if r["workers"] == 1), None)
        r2 = next((r for r in res["runs"] if r["workers"] == 2), None)
        if r1 and r2:
            res["ratio_2_vs_1"] = round(r2["seconds"] / r1["seconds"], 3)
            print(f"2 workers / 1 worker wall time: {res['ratio_2_vs_1']}")
        res["rerun"]["fraction_of_first"] = round(sec / res["runs"][-1]["seconds"], 4)
        print(f"rerun / first run of the same folder: {res['rerun']['fraction_of_first']}")
    if a.propagate:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "OneShotSAM"))
        import numpy as np

        from oneshotsam.evaluate import dice_iou
        from oneshotsam.medio import read_label_volume

        acdc = Path(a.data) / "acdc"
        rows = {}
        t_all = time.perf_counter()
        for pid in pids:
            out = work / "propagate" / pid
            _run(cli + ["propagate", "--reference-volume", str(acdc / f"{pid}_ED.nii.gz"),
                        "--reference-labels", str(acdc / f"{pid}_ED_label.nii.gz"), "--targets",
                        str(acdc / f"{pid}_ES.nii.gz"), "--output-dir", str(out), "--device", a.device, "--quiet"])
            pred = read_label_volume(out / f"{pid}_ES.nii.gz").voxels
            gt = read_label_volume(acdc / f"{pid}_ES_label.nii.gz").voxels
            d = dice_iou(np.asarray(pred), np.asarray(gt), [1, 2, 3])
            rows[pid] = round(float(np.mean([round(x["dice"], 4) for x in d.values()])), 4)
        res["propagate"] = {"dice": rows, "seconds": round(time.perf_counter() - t_all, 1)}
        print("patient      propagate  " + "  ".join(f"cohort-w{r['workers']}" for r in res["runs"]))
        for pid in pids:
            print(f"{pid}  {rows[pid]:.4f}    " + "  ".join(f"{r['dice'].get(pid, float('nan')):.4f}   "
                                                         for r in res["runs"]))
        for r in res["runs"]:
            diffs = [abs(rows[p] - r["dice"][p]) for p in pids if r["dice"].get(p) is not None]
            print(f"workers {r['workers']}: max |Dice - propagate| = {max(diffs):.4f}, "
                  f"mean {np.mean(list(r['dice'].values())):.4f} vs {np.mean(list(rows.values())):.4f}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
