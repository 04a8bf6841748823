"""The browser app (``oneshotsam web``) end to end, in headless Chromium.

A real server process (trame-slicer on slicer-core, the Slicer module's Logic,
the real medpersam-warp engine on a tiny schedule), driven by Playwright
through Debian's Chromium: brush stroke by mouse events on the axial view,
Run, Cancel, Undo, review list, Save (compared with the engine's own result
for the same volume and annotation), correct + Update, and the access token
when listening beyond the loopback. Screenshots of each step go to
the test's temporary folder (``benchmarks/web_pictures.py`` makes the ones in docs/images).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

from web_harness import (PageWatch, REPO, Server, SHAPE_KJI, TINY, axial_box, free_port,
                         launch_chromium, require_browser, rows as _rows, save as _save, shot,
                         stroke as _stroke, synthetic_volume, views_ready as _views_ready,
                         wait_http as _wait_http, wait_message as _wait_message)

require_browser()

CLICK_GAP_MS = 150  # between two timed clicks


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web")
    vol = tmp / "synth.nrrd"
    synthetic_volume(vol)
    before = vol.read_bytes()
    out = tmp / "out"
    srv = Server([str(vol), "--port", str(free_port()), "--output-dir", str(out), "--device", "cpu",
                  *TINY], tmp / "server.log")
    try:
        _wait_http(srv.url)
        yield {"url": srv.url, "out": out, "volume": vol, "log": srv.log, "tmp": tmp}
    finally:
        srv.stop()
    assert vol.read_bytes() == before, "the input volume was modified"


def _click_latency(page) -> float:
    """Seconds from a click on the segment's eye button to the page showing the
    server's answer (the icon flips), timed inside the page."""
    return page.evaluate("""() => new Promise((resolve, reject) => {
        const eye = document.querySelector('.mdi-eye-outline, .mdi-eye-off-outline');
        const wasOff = eye.classList.contains('mdi-eye-off-outline');
        const want = wasOff ? '.mdi-eye-outline' : '.mdi-eye-off-outline';
        const t0 = performance.now();
        const obs = new MutationObserver(() => {
            if (document.querySelector(want)) { obs.disconnect(); resolve((performance.now() - t0) / 1000); }
        });
        obs.observe(document.body, {subtree: true, childList: true, attributes: true});
        setTimeout(() => { obs.disconnect(); reject(new Error('no answer within 10 s')); }, 10000);
        (eye.closest('.v-btn') || eye).click();
    })""")


def _engine_labels(volume_path: Path, seg_labels: np.ndarray, report: dict) -> np.ndarray:
    """The engine's own propagation of the same annotation (same settings as the page's run)."""
    from oneshotsam.geometry import volume_like
    from oneshotsam.medio import read_volume
    from oneshotsam.volume.pipeline import PropagationConfig, propagate

    cfg = dict(report["engine"]["engine"][0]["config"])
    refs = cfg["reference_slices"]
    cfg["reference_slices"] = tuple(refs)
    cfg["fixed_slices"] = tuple(cfg["fixed_slices"])
    cfg["method_overrides"] = tuple(sorted(cfg["method_overrides"].items()))
    vol = read_volume(volume_path)
    ann = np.zeros_like(seg_labels)
    ann[refs] = seg_labels[refs]
    res = propagate(vol, volume_like(vol, ann), (), PropagationConfig(**cfg))
    return np.asarray(res.label_volumes[0].voxels)


def test_clinician_loop_in_browser(web, browser):
    from oneshotsam.medio import read_label_volume

    pictures = {p: p.stat().st_mtime_ns for p in (REPO / "docs" / "images").glob("*")}
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    watch = PageWatch(page)
    page.goto(web["url"])
    _views_ready(page)
    page.wait_for_timeout(1500)
    ax = axial_box(page)
    png = page.screenshot(clip={"x": ax["x"], "y": ax["y"], "width": ax["w"], "height": ax["h"]})
    from io import BytesIO

    from PIL import Image

    grey = np.asarray(Image.open(BytesIO(png)).convert("L"), dtype=float)
    assert grey.std() > 20 and grey.max() > 150, "the axial view is blank"
    shot(page, web["tmp"] / "shots", "web-1-loaded")

    # --- annotate: a brush stroke across the blob on the axial slice shown
    page.click("#osam-paint")
    page.wait_for_timeout(500)
    cx, cy = ax["x"] + ax["w"] / 2, ax["y"] + ax["h"] / 2
    for dy in (-0.06, -0.02, 0.02, 0.06):
        _stroke(page, cx - ax["w"] * 0.25, cy + ax["h"] * dy, cx + ax["w"] * 0.25, cy + ax["h"] * dy)
    shot(page, web["tmp"] / "shots", "web-2-annotated")

    # --- Run, Cancel mid-run: page usable, finished slices kept, Undo restores. The
    # page clicks Cancel itself when the first slice arrives: the tiny schedule
    # trains first and then writes every slice within a fraction of a second,
    # shorter than a round trip of the test driver.
    page.evaluate("""() => { const obs = new MutationObserver(() => {
        if (document.querySelector('#osam-review .osam-row')) {
            obs.disconnect(); document.querySelector('#osam-cancel').click(); } });
        obs.observe(document.body, {subtree: true, childList: true}); }""")
    page.click("#osam-run")
    _wait_message(page, "cancelled", timeout_ms=180000)
    assert page.is_enabled("#osam-run"), "Run is not usable after Cancel"
    kept = _rows(page)
    assert 1 <= len(kept) < SHAPE_KJI[0] - 1, kept
    shot(page, web["tmp"] / "shots", "web-3-cancelled")
    page.click("#osam-undo")
    page.wait_for_function("() => document.querySelector('#osam-message').innerText.startsWith('last run undone')",
                           timeout=30000)

    # --- Run to the end; measure the page's answer to clicks before and during it (one
    # click every CLICK_GAP_MS while the run lasts)
    idle = []
    for _ in range(4):
        idle.append(_click_latency(page))
        page.wait_for_timeout(CLICK_GAP_MS)
    page.click("#osam-run")
    page.wait_for_selector("#osam-cancel:not([disabled])", timeout=30000)
    latencies = []
    t_run = time.perf_counter()
    while page.is_enabled("#osam-cancel") and len(latencies) < 60:
        latencies.append(_click_latency(page))
        page.wait_for_timeout(CLICK_GAP_MS)
    run_s = time.perf_counter() - t_run
    _wait_message(page, "finished")
    if len(latencies) % 2:  # leave the segment visible
        _click_latency(page)
    rows = _rows(page)
    print(f"\nclick answer: idle n={len(idle)} median={statistics.median(idle):.3f} s; during the run "
          f"({run_s:.1f} s) n={len(latencies)} median={statistics.median(latencies):.3f} s "
          f"max={max(latencies):.3f} s; all: {' '.join(f'{x:.2f}' for x in latencies)}; "
          f"cancelled run kept {len(kept)} slice(s); 1-min load average {os.getloadavg()[0]:.1f} "
          "(this test's processes included)")
    # a generous bound for loaded CI machines (the figures are printed; docs/web.md has
    # the measured ones)
    assert latencies and statistics.median(latencies) < 2.0, latencies
    assert len(rows) == len(set(rows)) and len(rows) >= SHAPE_KJI[0] // 2, rows
    shot(page, web["tmp"] / "shots", "web-4-review")

    # --- Save: .seg.nrrd and NIfTI equal the engine's own result; download link works
    _save(page, 1)
    out = web["out"]
    seg = read_label_volume(out / "synth_oneshotsam.seg.nrrd")
    nii = read_label_volume(out / "synth_oneshotsam.nii.gz")
    report = json.loads((out / "report.json").read_text())
    refs = report["run_record"]["reference_slices"]
    assert set(rows) | set(refs) <= set(range(SHAPE_KJI[0])) and not set(rows) & set(refs)
    seg_lab = np.asarray(seg.voxels)
    np.testing.assert_array_equal(seg_lab, np.asarray(nii.voxels))
    engine = _engine_labels(web["volume"], seg_lab, report)
    np.testing.assert_array_equal(seg_lab, engine)
    assert seg.meta["segments"][0]["name"] == "Structure"
    r = page.request.get(web["url"].split("?")[0] + "download/synth_oneshotsam.seg.nrrd")
    assert r.status == 200 and r.body() == (out / "synth_oneshotsam.seg.nrrd").read_bytes()
    shown = report["shown_latency_s"]
    print(f"slice shown after the engine reported it: n={len(shown)} max={max(shown):.3f} s "
          f"median={statistics.median(shown):.3f} s")
    assert len(shown) >= len(rows) and max(shown) < 1.0
    shot(page, web["tmp"] / "shots", "web-5-saved")

    # --- correct one slice, Update: that slice is kept, the others recomputed
    target = next(k for k in rows if k not in refs and 2 <= k <= SHAPE_KJI[0] - 3)
    idx = rows.index(target)
    page.locator("#osam-review .osam-row").nth(idx).click()
    page.wait_for_function(f"() => document.querySelector('#osam-viewing').innerText.endsWith('slice {target}')",
                           timeout=20000)
    page.click("#osam-paint")
    page.wait_for_timeout(500)
    for dy in (0.33, 0.37):  # a band above the blob, inside the image (square, centred)
        _stroke(page, cx - ax["w"] * 0.3, cy - ax["w"] * dy, cx + ax["w"] * 0.3, cy - ax["w"] * dy)
    _save(page, 2)
    corrected = np.asarray(read_label_volume(out / "synth_oneshotsam.seg.nrrd").voxels)
    changed = [k for k in range(SHAPE_KJI[0]) if not np.array_equal(corrected[k], seg_lab[k])]
    assert changed == [target], f"the brush changed slices {changed}, not slice {target}"
    page.click("#osam-update")
    page.wait_for_selector("#osam-cancel:not([disabled])", timeout=30000)
    _wait_message(page, "finished")
    rows2 = _rows(page)
    shot(page, web["tmp"] / "shots", "web-6-updated")
    assert target not in rows2, "the corrected slice was rewritten"
    assert set(rows2) == set(rows) - {target}, (rows, rows2)
    _save(page, 3)
    updated = np.asarray(read_label_volume(out / "synth_oneshotsam.seg.nrrd").voxels)
    np.testing.assert_array_equal(updated[target], corrected[target])
    np.testing.assert_array_equal(updated[refs], corrected[refs])
    assert not [c for c in watch.console if "cannot be serialized" in c], watch.console
    assert watch.outside_loopback() == []
    # the test wrote its screenshots into its temporary folder, none into the checkout
    assert {p: p.stat().st_mtime_ns for p in (REPO / "docs" / "images").glob("*")} == pictures
    assert len(list((web["tmp"] / "shots").glob("web-*.png"))) == 6
    page.close()


def test_token_required_beyond_loopback(tmp_path):
    import urllib.request

    port = free_port()
    srv = Server(["--host", "0.0.0.0", "--port", str(port), "--output-dir", str(tmp_path / "o")],
                 tmp_path / "server.log")
    try:
        assert "token=" in srv.url
        token = srv.url.split("token=")[1]
        base = f"http://127.0.0.1:{port}/"
        assert _wait_http(base) == 403
        assert _wait_http(base + "?token=wrong") == 403
        assert _wait_http(base + f"?token={token}") == 200
        with pytest.raises(Exception) as exc:  # websocket upgrade without the token
            urllib.request.urlopen(urllib.request.Request(
                base + "ws", headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                      "Sec-WebSocket-Version": "13",
                                      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}), timeout=10)
        assert "403" in str(exc.value)
        req = urllib.request.Request(base + "ws", headers={"Cookie": f"oneshotsam_token={token}"})
        with pytest.raises(Exception) as exc2:  # with the cookie the server answers (not 403)
            urllib.request.urlopen(req, timeout=10)
        assert "403" not in str(exc2.value)
    finally:
        srv.stop()


def test_loopback_refuses_foreign_host_header(web):
    import urllib.error
    import urllib.request

    base = web["url"]
    req = urllib.request.Request(base, headers={"Host": "evil.example:80"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 403
