"""Make the browser app's pictures in docs/images (web-*.png), on purpose.

The browser tests write their screenshots only into temporary folders; this
script is the one that updates the pictures the documentation shows. It starts
the real server on a synthetic volume (or ``--volume``), drives Debian's
Chromium through Playwright along the clinician's loop and saves one picture
per step:

    web-1-loaded, web-2-annotated, web-3-running, web-4-review,
    web-5-saved, web-6-updated

Usage (from the repository root)::

    python benchmarks/web_pictures.py [--out docs/images] [--volume FILE] [--width 1600 --height 900]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing" / "Python"))

from web_harness import (TINY, Server, free_port, launch_chromium, paint_blob, rows, save,  # noqa: E402
                         shot, stroke, synthetic_volume, views_ready, wait_http, wait_message)


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "images"))
    ap.add_argument("--volume", help="volume to open (default: the tests' synthetic one)")
    ap.add_argument("--width", type=int, default=1600)
    ap.add_argument("--height", type=int, default=900)
    args = ap.parse_args(argv)
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as d, sync_playwright() as p:
        tmp = Path(d)
        volume = Path(args.volume) if args.volume else tmp / "synth.nrrd"
        if not args.volume:
            synthetic_volume(volume)
        srv = Server([str(volume), "--port", str(free_port()), "--output-dir", str(tmp / "out"),
                      "--device", "cpu", *TINY], tmp / "server.log")
        try:
            wait_http(srv.url)
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(srv.url)
            views_ready(page)
            page.wait_for_timeout(1500)
            shot(page, out, "web-1-loaded")
            ax = paint_blob(page)
            shot(page, out, "web-2-annotated")
            page.click("#osam-run")
            page.wait_for_function("() => Number(document.querySelector('#osam-progress')"
                                   ".getAttribute('aria-valuenow')) >= 20", timeout=240000)
            shot(page, out, "web-3-running")
            wait_message(page, "finished")
            first = rows(page)
            page.locator("#osam-review .osam-row").first.click()
            page.wait_for_timeout(1000)
            shot(page, out, "web-4-review")
            save(page, 1)
            shot(page, out, "web-5-saved")
            target = next((k for k in first if 2 <= k <= 13), first[0])
            page.locator("#osam-review .osam-row").nth(first.index(target)).click()
            page.wait_for_timeout(800)
            page.click("#osam-paint")
            cx, cy = ax["x"] + ax["w"] / 2, ax["y"] + ax["h"] / 2
            stroke(page, cx - ax["w"] * 0.3, cy - ax["w"] * 0.35, cx + ax["w"] * 0.3, cy - ax["w"] * 0.35)
            page.click("#osam-update")
            wait_message(page, "finished")
            page.wait_for_timeout(800)
            shot(page, out, "web-6-updated")
            browser.close()
        finally:
            srv.stop()
    print(f"pictures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
