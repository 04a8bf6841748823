"""The goldens' test images: textured grey images with discs, and the golden JSON files.

The same images were fed to the authors' code when the goldens in ``golden/`` were made
(each test's docstring says how), so these functions must not change.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).parent / "golden"


def load_cases(name: str) -> list:
    """The ``cases`` of one golden JSON file in ``golden/``."""
    return json.loads((GOLDEN / name).read_text(encoding="utf-8"))["cases"]


def disc(hw, cy, cx, r):
    """(H, W) bool: the disc of radius ``r`` around row ``cy``, column ``cx``."""
    yy, xx = np.mgrid[:hw[0], :hw[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def textured_grey(hw, seed, blobs=()):
    """(H, W) grey uint8: noise, then discs ``(cy, cx, r, grey)``."""
    rng = np.random.default_rng(seed)
    img = np.full(hw, 60.0) + rng.normal(0, 8, hw)
    for (cy, cx, r, v) in blobs:
        d = disc(hw, cy, cx, r)
        img[d] = v + rng.normal(0, 5, int(d.sum()))
    return np.clip(img, 0, 255).astype(np.uint8)


def textured_rgb(hw, seed, blobs=()):
    """:func:`textured_grey` as (H, W, 3) uint8."""
    return np.repeat(textured_grey(hw, seed, blobs)[..., None], 3, axis=2)
