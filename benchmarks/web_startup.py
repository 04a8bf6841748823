"""Time to a usable page: ``oneshotsam web VOLUME`` started until Chromium shows the volume.

Each run starts the real server (``python -m OneShotSAMWeb``) on a free port and
a fresh headless Chromium page (Debian's, through Playwright), and records:

* ``url_s``: the server printed its URL (imports and the app built);
* ``http_s``: the page answers HTTP;
* ``usable_s``: the three slice views show the volume (images rendered at
  their size) -- the page can be used;
* ``server_cpu_s``: CPU seconds of the server process until then (user +
  system, from /proc), which load on a shared machine does not inflate the
  way it inflates wall time.

Usage (from the repository root)::

    python benchmarks/web_startup.py [--runs 3] [--volume FILE] [--json out.json] [--module-dir DIR]

Without ``--volume`` a synthetic 16 x 48 x 48 volume is used (the browser
tests'). Prints one line per run and the medians; the 1-min load average is
printed with each run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing" / "Python"))

from web_harness import (Server, free_port, launch_chromium, synthetic_volume,  # noqa: E402
                         views_ready, wait_http)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(browser, volume: Path, tmp: Path, module_dir: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    srv = Server([str(volume), "--port", str(free_port()), "--output-dir", str(tmp / "out"),
                  "--device", "cpu"], tmp / "server.log", module_dir=module_dir)
    try:
        url_s = time.perf_counter() - t0
        wait_http(srv.url)
        http_s = time.perf_counter() - t0
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.goto(srv.url)
        views_ready(page, timeout_ms=300000)
        usable_s = time.perf_counter() - t0
        cpu = cpu_seconds(srv.proc.pid)
        page.close()
    finally:
        srv.stop()
    return {"url_s": round(url_s, 2), "http_s": round(http_s, 2), "usable_s": round(usable_s, 2),
            "server_cpu_s": round(cpu, 2), "load_1min": round(os.getloadavg()[0], 1)}


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--volume", help="volume to open (default: a synthetic one)")
    ap.add_argument("--json", help="write the runs and medians to this file")
    ap.add_argument("--module-dir", default=str(REPO / "OneShotSAM"),
                    help="the OneShotSAM folder to serve (e.g. an older checkout's, to compare)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d, sync_playwright() as p:
        tmp = Path(d)
        volume = Path(args.volume) if args.volume else tmp / "synth.nrrd"
        if not args.volume:
            synthetic_volume(volume)
        browser = launch_chromium(p)
        runs = []
        for i in range(args.runs):
            r = one_run(browser, volume, tmp, Path(args.module_dir))
            runs.append(r)
            print(f"run {i + 1}: " + ", ".join(f"{k} {v}" for k, v in r.items()), flush=True)
        browser.close()
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print("median: " + ", ".join(f"{k} {v}" for k, v in med.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "median": med}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
