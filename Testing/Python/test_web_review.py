"""A run in the browser app as a clinician follows it, in headless Chromium.

One real server and the real engine (tiny ``medpersam-warp`` schedule: 48
training steps, then every slice). The page is watched from inside (a
MutationObserver records the progress bar, the remaining time, the review
rows and whether the segment editor takes input) while the run lasts:
progress moves through training, no remaining time before it is measured,
the segment editor is locked; then the review table (slice, confidence,
state; the Logic's review order), keyboard n / p / a, a corrected flagged slice's state;
Update (the Logic's incremental one: no training again, only the slices on the
corrected side of the reference may change, the corrected slice kept exactly,
progress moving), and Undo after Update bringing back the first run's rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from web_harness import (PageWatch, Server, SHAPE_KJI, TINY, free_port, launch_chromium,
                         paint_blob, require_browser, rows, save, shot, stroke, synthetic_volume,
                         views_ready, wait_http, wait_message)

require_browser()

RECORD_JS = """() => { window.__osamLog = [];
  const note = () => {
    const bar = document.querySelector('#osam-progress');
    const cancel = document.querySelector('#osam-cancel');
    const drawer = document.querySelector('.v-navigation-drawer--left');
    window.__osamLog.push({
      t: performance.now(), running: !!(cancel && !cancel.disabled),
      progress: bar ? Number(bar.getAttribute('aria-valuenow') || 0) : -1,
      remaining: (document.querySelector('#osam-remaining') || {}).innerText || '',
      rows: document.querySelectorAll('#osam-review .osam-row').length,
      message: (document.querySelector('#osam-message') || {}).innerText || '',
      locked: drawer ? getComputedStyle(drawer).pointerEvents === 'none' : null });
  };
  new MutationObserver(note).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                     characterData: true});
}"""


def _table(page) -> list[dict]:
    return page.evaluate("() => Array.from(document.querySelectorAll('#osam-review .osam-row')).map(r => ({"
                         " slice: Number(r.querySelector('.osam-row-slice').innerText),"
                         " conf: Number(r.querySelector('.osam-row-conf').innerText),"
                         " state: r.querySelector('.osam-row-state').innerText.trim()}))")


def _saved_labels(out: Path) -> np.ndarray:
    from oneshotsam.medio import read_label_volume

    saved = sorted(out.glob("*.seg.nrrd"))
    assert len(saved) == 1, saved
    return np.asarray(read_label_volume(saved[0]).voxels)


def _viewing(page) -> int:
    return int(page.inner_text("#osam-viewing").rsplit("slice ", 1)[1])


def test_run_progress_lock_review_keys_undo(tmp_path):
    from playwright.sync_api import sync_playwright

    vol = tmp_path / "synth.nrrd"
    synthetic_volume(vol)
    out = tmp_path / "out"
    srv = Server([str(vol), "--port", str(free_port()), "--output-dir", str(out),
                  "--device", "cpu", *TINY], tmp_path / "server.log")
    shots = tmp_path / "shots"
    try:
        wait_http(srv.url)
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            watch = PageWatch(page)
            page.goto(srv.url)
            views_ready(page)
            page.wait_for_timeout(1000)
            ax = paint_blob(page)
            page.evaluate(RECORD_JS)
            page.click("#osam-run")
            wait_message(page, "finished")
            log = page.evaluate("() => window.__osamLog")
            shot(page, shots, "after-run", 1600)

            # --- progress: training moves the bar before the first slice; a remaining time
            # only once measured, and never growing by more than its own measurement noise
            running = [e for e in log if e["running"]]
            assert running, "the page never showed the run"
            before_rows = [e["progress"] for e in running if e["rows"] == 0]
            assert max(before_rows) >= 30, f"progress through training: {sorted(set(before_rows))}"
            firsts = [e for e in running if e["remaining"]]
            assert not firsts or firsts[0]["progress"] > 0
            # --- the segment editor takes no input during the run, and again after it
            assert all(e["locked"] for e in running), "the editor toolbar is active during the run"
            assert page.evaluate("() => getComputedStyle(document.querySelector("
                                 "'.v-navigation-drawer--left')).pointerEvents") != "none"

            # --- the review table: slice, confidence, state; in the Logic's order (the engine's
            # review queue, checked against the report in test_slicer_logic), each slice once
            head = page.locator("#osam-review th").all_inner_texts()
            assert [h.lower() for h in head] == ["slice", "confidence", "state"], head
            table = _table(page)
            first_rows = rows(page)
            assert len(table) >= 8 and [r["slice"] for r in table] == first_rows
            assert len(set(first_rows)) == len(first_rows), first_rows
            flagged = [r for r in table if r["state"] == "flagged"]
            assert page.evaluate("() => getComputedStyle(document.querySelector('#osam-review')).overflowY") == "auto"

            # --- keyboard: n / p walk the flagged slices, a approves the slice shown
            page.locator("body").click(position={"x": 5, "y": 5})  # focus off any field
            if flagged:
                page.keyboard.press("n")
                page.wait_for_function("() => document.querySelector('#osam-viewing').innerText.length > 0",
                                       timeout=20000)
                assert _viewing(page) == flagged[0]["slice"]
                if len(flagged) > 1:
                    page.keyboard.press("n")
                    page.wait_for_function(f"() => document.querySelector('#osam-viewing').innerText"
                                           f".endsWith('slice {flagged[1]['slice']}')", timeout=20000)
                    page.keyboard.press("p")
                    page.wait_for_function(f"() => document.querySelector('#osam-viewing').innerText"
                                           f".endsWith('slice {flagged[0]['slice']}')", timeout=20000)
            else:  # no flagged slice: the keys do nothing and say so by being disabled
                assert page.is_disabled("#osam-next-flagged")
            last = len(table) - 1
            page.locator("#osam-review .osam-row").nth(last).click()
            page.wait_for_function(f"() => document.querySelector('#osam-viewing').innerText"
                                   f".endsWith('slice {table[last]['slice']}')", timeout=20000)
            page.keyboard.press("a")
            page.wait_for_function(f"() => document.querySelectorAll('#osam-review .osam-row-state')[{last}]"
                                   ".innerText.trim() === 'approved'", timeout=20000)

            # --- correct a flagged slice (far from the reference): its row says so; Update
            # recomputes only that side of the reference without training again, keeps the
            # corrected slice exactly, and its progress moves; Undo brings the first run's rows back
            page.wait_for_timeout(400)  # the approval above settles before the first Save
            save(page, 1)
            report = json.loads((out / "report.json").read_text())
            ref = report["run_record"]["reference_slices"]
            assert ref == [SHAPE_KJI[0] // 2], ref
            away = [r["slice"] for r in flagged if abs(r["slice"] - ref[0]) >= 3 and 1 <= r["slice"] <= 14] \
                or [k for k in first_rows if abs(k - ref[0]) >= 3 and 1 <= k <= 14]
            target = away[0]
            i = first_rows.index(target)
            page.locator("#osam-review .osam-row").nth(i).click()
            page.wait_for_function(f"() => document.querySelector('#osam-viewing').innerText"
                                   f".endsWith('slice {target}')", timeout=20000)
            page.click("#osam-paint")
            page.wait_for_timeout(500)
            cx, cy = ax["x"] + ax["w"] / 2, ax["y"] + ax["h"] / 2
            stroke(page, cx - ax["w"] * 0.3, cy - ax["w"] * 0.35, cx + ax["w"] * 0.3, cy - ax["w"] * 0.35)
            page.wait_for_function(f"() => document.querySelectorAll('#osam-review .osam-row-state')[{i}]"
                                   ".innerText.trim() === 'corrected'", timeout=20000)
            shot(page, shots, "corrected", 1600)
            save(page, 2)
            before = _saved_labels(out)
            page.evaluate(RECORD_JS)
            page.click("#osam-update")
            wait_message(page, "finished")
            log = page.evaluate("() => window.__osamLog")
            save(page, 3)
            after = _saved_labels(out)
            changed = [k for k in range(SHAPE_KJI[0]) if not np.array_equal(after[k], before[k])]
            side = set(range(target + 1, SHAPE_KJI[0])) | set(range(ref[0] + 1, target)) if target > ref[0] \
                else set(range(0, target)) | set(range(target + 1, ref[0]))
            assert set(changed) <= side, f"Update changed {changed}; only {sorted(side)} may change"
            np.testing.assert_array_equal(after[target], before[target])
            assert target not in rows(page)
            progress = [e["progress"] for e in log if e["running"]]
            assert progress and 0 < max(progress), f"Update's progress: {sorted(set(progress))}"
            assert "training" not in " ".join(e["message"] for e in log), "Update trained again"
            page.click("#osam-undo")
            page.wait_for_function("() => document.querySelector('#osam-message').innerText"
                                   ".startsWith('last run undone')", timeout=30000)
            assert sorted(rows(page)) == sorted(first_rows), "Undo cleared the review list"
            assert not [c for c in watch.console if "cannot be serialized" in c], watch.console
            browser.close()
    finally:
        srv.stop()
