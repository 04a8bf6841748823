"""The browser app's page as a clinician meets it, in headless Chromium (no run).

A real server (``python -m OneShotSAMWeb``) per test, Debian's Chromium through
Playwright. Each test checks what a person sees: views fitted to an elongated
volume and named (orientation, edge letters, slice number); the layout at
1280 x 720; two tabs of different sizes; nothing requested beyond the
loopback; every file given on the page loaded or answered; the brush painting
one slice and Save of the annotation before any run. Screenshots go to the
test's temporary folder (kept by pytest as artefacts, never into the repository).
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

from web_harness import (PageWatch, Server, TINY, axial_box, free_port, launch_chromium,
                         require_browser, save, shot, stroke, synthetic_volume, view_boxes,
                         views_ready, wait_http)

require_browser()

#: an elongated volume (96 x 40 mm in the axial plane, 24 slices), unit spacing like ACDC
LONG_KJI = (24, 40, 96)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


def _serve(tmp: Path, volumes: list[Path]) -> Server:
    srv = Server([*map(str, volumes), "--port", str(free_port()), "--output-dir", str(tmp / "out"),
                  "--device", "cpu", *TINY], tmp / "server.log")
    wait_http(srv.url)
    return srv


def _grey(page, box: dict) -> np.ndarray:
    from PIL import Image

    png = page.screenshot(clip={"x": box["x"], "y": box["y"], "width": box["w"], "height": box["h"]})
    return np.asarray(Image.open(BytesIO(png)).convert("L"), dtype=float)


def _extent(grey: np.ndarray, level: float = 8) -> tuple[int, int, int, int]:
    """Rows and columns ``(r0, r1, c0, c1)`` of the image region brighter than
    ``level`` (the volume's noise and blob; black outside it): the rows and columns
    where at least half as many pixels are bright as in the fullest one."""
    mask = grey > level
    mask[:30], mask[-45:] = False, False  # the view's overlays: label at the top, slider at the bottom
    per_row, per_col = mask.sum(axis=1), mask.sum(axis=0)
    rows = np.flatnonzero(per_row >= 0.5 * per_row.max())
    cols = np.flatnonzero(per_col >= 0.5 * per_col.max())
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def _assert_whole_volume(grey: np.ndarray, what: str) -> None:
    """The whole 96 x 40 mm axial extent is shown (its aspect kept: nothing cut
    off) and fills the view's width (fitted)."""
    r0, r1, c0, c1 = _extent(grey)
    w = grey.shape[1]
    aspect = (c1 - c0 + 1) / (r1 - r0 + 1)
    assert abs(aspect - LONG_KJI[2] / LONG_KJI[1]) < 0.2, f"{what}: the volume is cut off ({r0}-{r1}, {c0}-{c1})"
    assert (c1 - c0 + 1) >= 0.9 * w, f"{what}: the volume is not fitted to the view ({c0}-{c1} of {w})"


def test_views_fit_and_name_their_orientation(tmp_path, browser):
    vol = tmp_path / "long.nrrd"
    synthetic_volume(vol, LONG_KJI, (1.0, 1.0, 1.0))
    srv = _serve(tmp_path, [vol])
    try:
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.goto(srv.url)
        views_ready(page)
        page.wait_for_timeout(2000)
        shot(page, tmp_path, "fit-1600x900", 1600)
        ax = axial_box(page)
        _assert_whole_volume(_grey(page, ax), "1600 x 900")
        labels = {t.split(" ")[0]: t for t in page.locator(".osam-view-label").all_inner_texts()}
        assert set(labels) == {"axial", "coronal", "sagittal"}, labels
        assert labels["axial"].endswith(f"slice {LONG_KJI[0] // 2} [0-{LONG_KJI[0] - 1}]"), labels
        edges = page.locator(".osam-edge").all_inner_texts()
        assert sorted(edges) == sorted(["R", "L", "A", "P"] + ["R", "L", "S", "I"] + ["A", "P", "S", "I"]), edges

        # a smaller window: the views are fitted again
        page.set_viewport_size({"width": 1280, "height": 720})
        page.wait_for_function("() => { const i = Array.from(document.querySelectorAll('img.image-display-area'));"
                               " return i.every(e => Math.abs(e.naturalWidth - e.getBoundingClientRect().width) <= 2); }",
                               timeout=30000)
        page.wait_for_timeout(1500)
        shot(page, tmp_path, "fit-1280x720", 1280)
        _assert_whole_volume(_grey(page, axial_box(page)), "1280 x 720")
        page.close()
    finally:
        srv.stop()


def test_layout_from_1280x720_and_two_tabs(tmp_path, browser):
    vol = tmp_path / "synth.nrrd"
    synthetic_volume(vol)
    srv = _serve(tmp_path, [vol])
    try:
        small = browser.new_page(viewport={"width": 1280, "height": 720})
        watch = PageWatch(small)
        small.goto(srv.url)
        views_ready(small)
        small.wait_for_timeout(1000)
        shot(small, tmp_path, "layout-1280x720", 1280)
        assert small.evaluate("() => document.documentElement.scrollWidth") <= 1280
        for b in view_boxes(small):
            assert b["w"] >= 280 and b["h"] >= 250, view_boxes(small)
        for sel in ("#osam-paint", "#osam-run", "#osam-review", "#osam-save"):
            box = small.locator(sel).bounding_box()
            assert box and box["y"] >= 0 and box["y"] + box["height"] <= 720 and box["x"] + box["width"] <= 1280, (sel, box)
        # nothing leaves the loopback (the page icon was on another host)
        assert watch.outside_loopback() == [], watch.outside_loopback()

        # a second, larger tab: it takes the views' size; the first keeps an undistorted,
        # uncropped picture and gets its own size back when the pointer enters a view
        large = browser.new_page(viewport={"width": 1600, "height": 900})
        large.goto(srv.url)
        views_ready(large)
        large.wait_for_timeout(1500)
        small.bring_to_front()
        for b in view_boxes(small):
            inside = small.evaluate("([x, y]) => { const e = document.elementFromPoint(x, y);"
                                    " return !!(e && e.closest('.v-main')); }", [b["x"] + 5, b["y"] + 5])
            assert inside
        assert all(small.evaluate("() => Array.from(document.querySelectorAll('img.image-display-area'))"
                                  ".map(e => getComputedStyle(e).objectFit === 'contain')"))
        ax = axial_box(small)
        small.mouse.move(ax["x"] + ax["w"] / 2, ax["y"] + ax["h"] / 2)
        small.wait_for_function(
            "() => { const e = Array.from(document.querySelectorAll('img.image-display-area'))"
            ".sort((a, b) => b.getBoundingClientRect().height - a.getBoundingClientRect().height)[0];"
            " const r = e.getBoundingClientRect();"
            " return Math.abs(e.naturalWidth - r.width) <= 2 && Math.abs(e.naturalHeight - r.height) <= 2; }",
            timeout=30000)
        small.wait_for_timeout(1000)
        shot(small, tmp_path, "two-tabs-small", 1280)
        grey = _grey(small, axial_box(small))
        r0, r1, c0, c1 = _extent(grey, level=0.6 * grey.max())  # the blob: 14 x 12 mm radii
        assert abs((c1 - c0 + 1) / (r1 - r0 + 1) - 14 / 12) < 0.12, (r0, r1, c0, c1)
        large.close()
        small.close()
    finally:
        srv.stop()


def _painted_slices(page, n_slices: int = 16) -> float:
    """Thickness, in slices, of the segment (orange-red) in the coronal view: the upper
    of the two small views; the volume's rows there span ``n_slices`` slices; the
    longest run of rows holding the segment's colour."""
    from PIL import Image

    small = sorted(view_boxes(page), key=lambda b: b["h"])[:2]
    cor = min(small, key=lambda b: b["y"])
    png = page.screenshot(clip={"x": cor["x"], "y": cor["y"], "width": cor["w"], "height": cor["h"]})
    rgb = np.asarray(Image.open(BytesIO(png)).convert("RGB"), dtype=float)
    r0, r1, _, _ = _extent(rgb.mean(axis=2))
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    red = (r > 120) & (r - g > 50) & (r - b > 60)  # not the yellow labels (r - g about 40)
    red[:30], red[-45:] = False, False  # the view's overlays
    rows = np.flatnonzero(red.sum(axis=1) >= 3)
    runs = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1) if rows.size else [rows]
    band = max(len(run) for run in runs)  # the segment (the brush outline is a separate run)
    return band / ((r1 - r0 + 1) / n_slices)


def test_brush_paints_one_slice_and_save_before_run(tmp_path, browser):
    from oneshotsam.medio import read_label_volume

    vol = tmp_path / "unit.nrrd"
    synthetic_volume(vol, (16, 48, 48), (1.0, 1.0, 1.0))
    srv = _serve(tmp_path, [vol])
    try:
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        watch = PageWatch(page)
        page.goto(srv.url)
        views_ready(page)
        page.wait_for_timeout(1000)
        ax = axial_box(page)
        page.click("#osam-paint")
        page.wait_for_timeout(500)
        cx, cy = ax["x"] + ax["w"] / 2, ax["y"] + ax["h"] / 2
        stroke(page, cx - ax["w"] * 0.2, cy, cx + ax["w"] * 0.2, cy)
        page.wait_for_timeout(1500)
        shot(page, tmp_path, "one-slice", 1600)
        # what the coronal view shows: the painted band is one slice thick
        assert _painted_slices(page) <= 1.5, f"one stroke painted {_painted_slices(page):.1f} slices"
        page.wait_for_function("() => document.querySelector('#osam-annotated').innerText.startsWith('annotated')",
                               timeout=20000)
        assert page.inner_text("#osam-annotated") == "annotated: slice 8"
        save(page, 1)  # no run yet: the annotation is saved
        saved = sorted((tmp_path / "out").glob("*.seg.nrrd"))
        assert len(saved) == 1, saved
        lab = np.asarray(read_label_volume(saved[0]).voxels)
        assert [k for k in range(lab.shape[0]) if lab[k].any()] == [8]
        assert not [c for c in watch.console if "cannot be serialized" in c], watch.console

        # a sphere brush (the old default, still one click away): the page names every slice
        page.evaluate("() => { const b = document.querySelector('[name=\"Sphere brush\"], .mdi-sphere');"
                      " (b.closest('.v-btn') || b).click(); }")
        page.wait_for_timeout(500)
        stroke(page, cx - ax["w"] * 0.2, cy + ax["h"] * 0.05, cx + ax["w"] * 0.2, cy + ax["h"] * 0.05)
        page.wait_for_function("() => /^\\d+ slices are annotated/.test("
                               "document.querySelector('#osam-annotated').innerText)", timeout=20000)
        text = page.inner_text("#osam-annotated")
        assert "8" in text and "Erase the ones" in text, text
        page.close()
    finally:
        srv.stop()


def test_every_file_given_is_loaded_or_answered(tmp_path, browser):
    good = tmp_path / "good.nrrd"
    synthetic_volume(good)
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not a volume")
    srv = _serve(tmp_path, [])
    try:
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.goto(srv.url)
        page.wait_for_selector("input[type=file]", state="attached", timeout=60000)
        page.locator("input[type=file]").first.set_input_files([str(good), str(bad)])
        page.wait_for_function("() => document.querySelector('#osam-error').innerText.includes('broken.nii.gz')",
                               timeout=60000)
        assert "not loaded" in page.inner_text("#osam-error")
        views_ready(page)
        assert page.inner_text("#osam-message").startswith("loaded 1 of 2")
        page.close()
    finally:
        srv.stop()


@pytest.mark.parametrize("case", ["la", "acdc"])
def test_real_volume_one_stroke_paints_one_slice(tmp_path, browser, data_root, case):
    """A left-atrium LGE-MRI (88 slices of 0.625 mm) and an ACDC cine MRI (10 slices, unit
    spacing): one stroke annotates the slice shown (the sphere brush painted about 36 and 10)."""
    import SimpleITK as sitk

    pattern = {"la": "la/*_image.nii.gz", "acdc": "acdc/patient*_ED.nii.gz"}[case]
    files = sorted(data_root.glob(pattern))
    if not files:
        pytest.skip(f"no {pattern} under {data_root}")
    vol = files[0]
    size_ijk = sitk.ReadImage(str(vol)).GetSize()
    srv = _serve(tmp_path, [vol])
    try:
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.goto(srv.url)
        views_ready(page)
        page.wait_for_timeout(2000)
        shot(page, tmp_path, f"{case}-loaded", 1600)
        ax = axial_box(page)
        assert page.inner_text(".osam-view-label >> nth=0").startswith("axial")
        page.click("#osam-paint")
        page.wait_for_timeout(500)
        cx, cy = ax["x"] + ax["w"] / 2, ax["y"] + ax["h"] / 2
        stroke(page, cx - ax["w"] * 0.1, cy, cx + ax["w"] * 0.1, cy)
        page.wait_for_function("() => document.querySelector('#osam-annotated').innerText.startsWith('annotated')",
                               timeout=30000)
        shot(page, tmp_path, f"{case}-one-stroke", 1600)
        k = size_ijk[2] // 2
        assert page.inner_text("#osam-annotated") in (f"annotated: slice {k}", f"annotated: slice {k - 1}")
        page.close()
    finally:
        srv.stop()
