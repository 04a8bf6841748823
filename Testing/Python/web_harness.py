"""What the browser-app tests share: the server process, Chromium, page helpers.

Not a test module. The server is ``python -m OneShotSAMWeb`` in a subprocess
(real trame-slicer on slicer-core, the Slicer module's Logic, the real engine);
the browser is Debian's Chromium driven by Playwright (``executable_path``:
Playwright's own browser download is not used). Screenshots go to a temporary
folder given by the caller (never into the repository).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "OneShotSAM"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: the tiny medpersam-warp schedule of the browser tests (a run of a few seconds)
TINY = ["--set", "steps=48", "--set", "resolution=32", "--set", "batch=4", "--set", "threads=1"]
SHAPE_KJI = (16, 48, 48)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")



def require_browser() -> None:
    """Skip the calling test module where the browser app's stack (trame-slicer, its MRML
    layer, Playwright) or Debian's Chromium is missing, saying what to install."""
    pytest.importorskip("trame_slicer")
    pytest.importorskip("slicer_layer_dm", reason="slicer-layer-dm (trame-slicer's MRML layer) "
                        "is installed by the README setup command")
    pytest.importorskip("playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)",
                    allow_module_level=True)

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def synthetic_volume(path: Path, shape_kji: tuple[int, int, int] = SHAPE_KJI,
                     spacing_xyz: tuple[float, float, float] = (1.0, 1.0, 2.0)) -> None:
    """An ellipsoid blob (bright) in noise, written with SimpleITK."""
    import SimpleITK as sitk

    nk, nj, ni = shape_kji
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape_kji], indexing="ij")
    blob = (((k - (nk - 1) / 2) / (nk * 0.375)) ** 2 + ((j - (nj - 1) / 2) / (nj * 0.25)) ** 2
            + ((i - (ni - 1) / 2) / (ni * 7 / 24)) ** 2 <= 1)
    rng = np.random.default_rng(0)
    vox = (blob * 600 + 200 + rng.normal(0, 20, shape_kji)).astype(np.int16)
    img = sitk.GetImageFromArray(vox)
    img.SetSpacing(spacing_xyz)
    sitk.WriteImage(img, str(path))


class Server:
    """``python -m OneShotSAMWeb ...`` in a subprocess; ``url`` from its first line."""

    def __init__(self, args: list[str], log: Path, module_dir: Path = MODULE_DIR) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(module_dir), os.environ.get("PYTHONPATH", "")]),
                   OMP_NUM_THREADS="1", VTK_DEFAULT_OPENGL_WINDOW="vtkEGLRenderWindow")
        self.log = log
        self._log_file = open(log, "w")
        self.t_start = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-u", "-m", "OneShotSAMWeb", *args], env=env,
                                     stdout=subprocess.PIPE, stderr=self._log_file, text=True)
        line = self.proc.stdout.readline()
        if "http" not in line:
            self.stop()
            raise AssertionError(f"server did not start: {line!r}\n{log.read_text()[-3000:]}")
        self.url = line.split(": ", 1)[1].strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log_file.close()


def wait_http(url: str, timeout: float = 120.0) -> int:
    import urllib.error
    import urllib.request

    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no answer from {url}")


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def shot(page, folder: Path, name: str, width: int = 800) -> Path:
    """Page screenshot ``<folder>/<name>.png`` (small PNG: ``width`` px wide, 64 colours)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / f".{name}.raw.png"
    page.screenshot(path=str(raw))
    im = Image.open(raw).convert("RGB")
    im = im.resize((width, int(im.height * width / im.width)), Image.LANCZOS)
    out = folder / f"{name}.png"
    im.quantize(64).save(out, optimize=True)
    raw.unlink()
    return out


class PageWatch:
    """Every request a page makes and every console message it prints."""

    def __init__(self, page) -> None:
        self.requests: list[str] = []
        self.console: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def outside_loopback(self) -> list[str]:
        """Requests to any host other than this computer (data: and blob: URLs are local)."""
        bad = []
        for u in self.requests:
            p = urlparse(u)
            if p.scheme in ("data", "blob", "about"):
                continue
            if (p.hostname or "") not in [h.strip("[]") for h in LOOPBACK_HOSTS]:
                bad.append(u)
        return bad


def views_ready(page, timeout_ms: int = 120000) -> None:
    page.wait_for_function(
        "() => { const i = Array.from(document.querySelectorAll('img.image-display-area'));"
        " return i.length >= 3 && i.every(e => e.getBoundingClientRect().width > 50 && e.naturalWidth > 0); }",
        timeout=timeout_ms)


def view_boxes(page) -> list[dict]:
    """The slice-view images: page box and natural (rendered) size, left to right."""
    return page.evaluate("() => Array.from(document.querySelectorAll('img.image-display-area'))"
                         ".map(e => { const r = e.getBoundingClientRect();"
                         " return {x: r.x, y: r.y, w: r.width, h: r.height,"
                         " nw: e.naturalWidth, nh: e.naturalHeight}; })")


def axial_box(page) -> dict:
    return max(view_boxes(page), key=lambda b: b["h"])  # the axial view is the tall one on the left


def stroke(page, x0: float, y0: float, x1: float, y1: float) -> None:
    page.mouse.move(x0, y0)
    page.mouse.down()
    for t in np.linspace(0, 1, 15):
        page.mouse.move(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)
        page.wait_for_timeout(40)
    page.mouse.up()
    page.wait_for_timeout(800)


def paint_blob(page, n_strokes: int = 4) -> dict:
    """Brush strokes across the centre of the axial view (the blob); the axial box."""
    ax = axial_box(page)
    page.click("#osam-paint")
    page.wait_for_timeout(500)
    cx, cy = ax["x"] + ax["w"] / 2, ax["y"] + ax["h"] / 2
    for dy in (-0.06, -0.02, 0.02, 0.06)[:n_strokes]:
        stroke(page, cx - ax["w"] * 0.25, cy + ax["h"] * dy, cx + ax["w"] * 0.25, cy + ax["h"] * dy)
    return ax


def message(page) -> str:
    return page.inner_text("#osam-message")


def wait_message(page, prefix: str, timeout_ms: int = 240000) -> None:
    page.wait_for_function(
        f"() => {{ const m = document.querySelector('#osam-message'); const e = document.querySelector('#osam-error');"
        f" return (m && m.innerText.startsWith({json.dumps(prefix)})) || (e && e.innerText.trim().length > 0); }}",
        timeout=timeout_ms)
    err = page.inner_text("#osam-error").strip() if page.locator("#osam-error").is_visible() else ""
    assert not err, f"the page shows an error: {err}"


def rows(page) -> list[int]:
    """Slice numbers of the review table, top to bottom."""
    return [int(x) for x in page.locator("#osam-review .osam-row .osam-row-slice").all_inner_texts()]


def save(page, n: int) -> None:
    """Click Save and wait for the page to report save number ``n``."""
    page.click("#osam-save")
    page.wait_for_function(f"() => document.querySelector('#osam-message').innerText.startsWith('save {n}:')",
                           timeout=60000)
