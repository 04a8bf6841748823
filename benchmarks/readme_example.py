"""Rerun the README's example exactly as written and score it (a script, not a test).

Reads the ``oneshotsam segment ...`` command from README.md (so the figure cannot
drift from the command), runs it in a child process with the output folder
replaced by a temporary one, scores the written label maps against
``Testing/Data/example/ground_truth`` with ``oneshotsam evaluate``'s scorer and
prints mean Dice per class and overall, the child's CPU seconds (user + system,
imports and I/O included), wall seconds, and the training steps from report.json.

Usage::

    python benchmarks/readme_example.py [--threads 1]

``--threads`` sets OMP_NUM_THREADS for the child (the CPU presets pin torch to
one thread anyway).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_command() -> list[str]:
    """The README's ``oneshotsam segment`` command as an argument list."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = [ln.strip() for ln in text.splitlines() if re.match(r"\s*oneshotsam segment\b", ln)]
    if len(lines) != 1:
        raise SystemExit(f"README.md must hold exactly one 'oneshotsam segment' command; found {len(lines)}")
    return shlex.split(lines[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1")
    args = ap.parse_args()
    cmd = readme_command()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "example"
        i = cmd.index("--output-dir")
        cmd[i + 1] = str(out)
        exe = [sys.executable, "-m", "oneshotsam.cli"] + cmd[1:]
        env = {**os.environ, "OMP_NUM_THREADS": args.threads,
               "PYTHONPATH": str(ROOT / "OneShotSAM") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        subprocess.run(exe, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        report = json.loads((out / "report.json").read_text())
        scores = _score(out, ROOT / "Testing" / "Data" / "example" / "ground_truth")
    print(f"README example: {' '.join(cmd[:3])} ... ({len(scores['cases'])} targets)")
    print(f"mean Dice {scores['mean']:.4f}  per class " +
          ", ".join(f"{k}: {v:.4f}" for k, v in scores["per_class"].items()))
    print(f"CPU seconds {cpu:.1f} (whole command, child process)  wall seconds {wall:.1f}  "
          f"load average {os.getloadavg()[0]:.1f}")
    rep = report.get("run", report)
    print("training: " + ", ".join(f"{k} {rep.get(k)}" for k in
                                  ("preset", "train_steps", "train_max_steps", "train_stopped",
                                   "loss_final", "train_seconds")))


def _score(pred_dir: Path, gt_dir: Path) -> dict:
    """Mean Dice per class and overall, by ``oneshotsam evaluate``'s scorer."""
    from oneshotsam.evaluate import evaluate_pairs
    t = evaluate_pairs(pred_dir, gt_dir)
    return {"cases": [c.name for c in t.cases], "mean": t.mean("dice"),
            "per_class": {str(v): t.label_mean(v, "dice") for v in t.labels}}


if __name__ == "__main__":
    main()
