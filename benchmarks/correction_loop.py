"""Run the correction benchmark kind by kind and split by split (docs/corrections.md).

Each (kind, split) is one ``oneshotsam benchmark corrections`` run in a subprocess
(its own process CPU clock), LA first, writing ``<out>/<kind>-<split>.json`` and
``.txt`` (the printed tables); a pair whose JSON exists already is skipped, so an
interrupted run resumes. Without the shared data the script says so and exits 0.

    python benchmarks/correction_loop.py --data ../shared/data --out /tmp/corrections \\
        --kinds la acdc-es acdc-ed tumour --splits held-out tuning --cases 3 --steps 4

Every option after ``--`` goes to the benchmark unchanged (e.g. ``-- --update-engine rerun``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

KINDS = ("la", "acdc-es", "acdc-ed", "tumour")
FOLDERS = {"la": "la", "acdc-es": "acdc", "acdc-ed": "acdc", "tumour": "pyradiomics"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("ONESHOTSAM_DATA", "../shared/data"))
    p.add_argument("--out", required=True, help="folder for the JSON and text of each run")
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--splits", nargs="+", choices=("held-out", "tuning", "all"), default=["held-out"])
    p.add_argument("--cases", type=int, default=None, help="first N cases of each kind and split")
    p.add_argument("--steps", type=int, default=4)
    a = p.parse_args(argv)
    data = Path(a.data)
    if not data.is_dir():
        print(f"no shared data at {data}: pass --data PATH (or set ONESHOTSAM_DATA); nothing run")
        return 0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    status = 0
    for kind in a.kinds:
        if not (data / FOLDERS[kind]).is_dir():
            print(f"{kind}: no {data / FOLDERS[kind]}; skipped")
            continue
        for split in a.splits:
            stem = out / f"{kind}-{split}"
            if stem.with_suffix(".json").is_file():
                print(f"{kind} {split}: {stem}.json exists; skipped")
                continue
            cmd = [sys.executable, "-m", "oneshotsam.cli", "benchmark", "corrections",
                   "--data", str(data), "--kinds", kind, "--split", split, "--steps", str(a.steps),
                   "--json", str(stem.with_suffix(".json")), *extra]
            if a.cases:
                cmd += ["--cases", str(a.cases)]
            print("$", " ".join(cmd), flush=True)
            with open(stem.with_suffix(".txt"), "w", encoding="utf-8") as log:
                rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
            print(f"{kind} {split}: exit {rc}; tables in {stem}.txt", flush=True)
            status = status or rc
    return status


if __name__ == "__main__":
    raise SystemExit(main())
