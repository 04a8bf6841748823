"""Features: k-means parts, cosine maps, valid-cell extremes, grid <-> image geometry.

``CellBackend`` is a tiny, deterministic fake of the PromptableSegmenter
contract (no torch): the feature of a grid cell encodes the cell's mean
intensity on three radial basis channels (background 0.1, ring 0.5, core 0.9),
and ``decode`` returns the pixels whose intensity level matches a positive
point's level (minus negative points' levels), inside the box if one is given.
Other P2SAM / PerSAM test files import it.
"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest

from oneshotsam.backends.base import Decoded, Embedding
from oneshotsam.methods.features import (
    box_of_mask, combine_label_masks, extreme_cells, grid_mapping, lowres_to_grid,
    mean_prototype, part_prototypes, reference_cells, similarity_maps)

LEVELS = np.array([0.1, 0.5, 0.9])


class CellBackend:
    """Fake segmenter: G x G grid stretched over the image (SAM 2 style); with
    ``pad_cols`` the last grid columns are padding whose features look like the
    core (so only valid-cell restriction keeps points off them)."""

    name = "cell-fake"
    input_size = 64

    def __init__(self, grid_size: int = 8, pad_cols: int = 0, empty: bool = False) -> None:
        self.grid_size = grid_size
        self.pad_cols = pad_cols
        self.empty = empty
        self.encode_calls = 0
        self.decode_calls = 0
        self._cache: dict[str, Embedding] = {}

    def embed(self, image_rgb_uint8):
        a = np.asarray(image_rgb_uint8)
        key = hashlib.sha1(a.tobytes() + str(a.shape).encode()).hexdigest()
        if key not in self._cache:
            self.encode_calls += 1
            grey = a[..., 0].astype(np.float32) / 255.0
            self._cache[key] = Embedding(key, grey.shape, grey)
        return self._cache[key]

    def _cells(self, grey):
        import cv2

        g = self.grid_size
        return cv2.resize(grey, (g, g), interpolation=cv2.INTER_AREA)

    def feature_map(self, emb):
        means = self._cells(emb.features)
        f = np.exp(-((means[None] - LEVELS[:, None, None]) ** 2) / 0.02).astype(np.float32)
        if self.pad_cols:
            f[:, :, -self.pad_cols:] = np.array([0.0, 0.0, 1.0], np.float32)[:, None, None]
        return f

    def valid_grid_hw(self, emb):
        return self.grid_size, self.grid_size - self.pad_cols

    def mask_to_grid(self, mask, image_hw):
        return self._cells(np.asarray(mask, dtype=np.float32))

    def mask_to_grid_centre(self, mask, image_hw, rule="midpoint"):
        import cv2   # bilinear, no antialias: the mask sampled at each cell centre

        g = self.grid_size
        v = cv2.resize(np.asarray(mask, np.float32), (g, g), interpolation=cv2.INTER_LINEAR)
        return v - 0.5

    def grid_to_image(self, grid_map, image_hw):
        import cv2

        h, w = image_hw
        return cv2.resize(np.asarray(grid_map, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)

    def mask_to_logits(self, mask, image_hw):
        import cv2

        s = 4 * self.grid_size
        cov = cv2.resize(np.asarray(mask, np.float32), (s, s), interpolation=cv2.INTER_AREA)
        return np.where(cov > 0, 10.0, -10.0).astype(np.float32)

    def decode(self, emb, points_xy=None, point_labels=None, box_xyxy=None, mask_logits=None,
               multimask=False, token_prototype=None):
        self.decode_calls += 1
        grey = emb.features
        level = np.argmin(np.abs(grey[..., None] - LEVELS), axis=-1)
        mask = np.zeros(grey.shape, bool)
        if not self.empty and points_xy is not None:
            pts = np.asarray(points_xy)
            for (x, y), lab in zip(pts, np.asarray(point_labels)):
                lv = level[int(round(y)), int(round(x))]
                if lab == 1:
                    mask |= level == lv
            for (x, y), lab in zip(pts, np.asarray(point_labels)):
                if lab == 0:
                    mask &= level != level[int(round(y)), int(round(x))]
        if box_xyxy is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in box_xyxy)
            inside = np.zeros_like(mask)
            inside[y0:y1 + 1, x0:x1 + 1] = True
            mask &= inside
        low = self.mask_to_logits(mask, grey.shape)
        n = 3 if multimask else 1
        scores = np.array([0.5, 0.8, 0.7][:n] if multimask else [0.8], np.float32)
        return Decoded(np.repeat(mask[None], n, 0), scores, np.repeat(low[None], n, 0))


def square_image(h=64, w=64, core=(16, 32, 16, 32), ring=4, noise=0.0, seed=0):
    """Grey image: background 0.1, ring 0.5 (``ring`` px wide), core 0.9; and its
    (core, ring) masks. ``core`` is (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = core
    img = np.full((h, w), 0.1, np.float32)
    outer = np.zeros((h, w), bool)
    outer[max(0, y0 - ring):y1 + ring, max(0, x0 - ring):x1 + ring] = True
    inner = np.zeros((h, w), bool)
    inner[y0:y1, x0:x1] = True
    img[outer] = 0.5
    img[inner] = 0.9
    if noise:
        img = np.clip(img + np.random.default_rng(seed).normal(0, noise, img.shape), 0, 1)
    return img.astype(np.float32), inner, outer & ~inner


# -- k-means parts --------------------------------------------------------------------
def _blobs(centres, n=30, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(c, 0.05, (n, len(c))) for c in centres]).astype(np.float32)


PARTS_CASES = [
    # (cluster centres, n_parts requested, n_parts expected)
    ([[5, 0, 0], [0, 5, 0], [0, 0, 5]], 3, 3),
    ([[5, 0, 0], [0, 5, 0]], 2, 2),
    ([[5, 1, 0], [5, 1, 0]], 1, 1),
]


@pytest.mark.parametrize("centres, n, expected", PARTS_CASES)
def test_kmeans_finds_obvious_parts(centres, n, expected):
    feats = _blobs(centres)
    parts = part_prototypes(feats, n)
    assert parts.n_parts == expected
    want = np.asarray(centres, np.float32)[: expected]
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    # every prototype matches one true (normalised) centre, every centre is found
    dots = parts.prototypes @ want.T
    assert np.all(dots.max(axis=1) > 0.99)
    assert sorted(np.argmax(dots, axis=1).tolist()) == list(range(expected))
    assert np.allclose(np.linalg.norm(parts.prototypes, axis=1), 1.0, atol=1e-5)
    assert np.bincount(parts.assignment).tolist() == [30] * expected or expected == 1


def test_kmeans_is_deterministic_and_fewer_parts_when_not_distinct():
    feats = _blobs([[1, 0], [0, 1], [1, 1]], seed=3)
    a, b = part_prototypes(feats, 3), part_prototypes(feats, 3)
    assert np.array_equal(a.prototypes, b.prototypes)
    two = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]], np.float32)
    p = part_prototypes(two, 5)
    assert p.n_parts == 2 and "2 distinct" in p.message


def test_prototype_is_mean_of_raw_features_then_normalised():
    feats = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 10.0], [0.0, 30.0]], np.float32)
    p = part_prototypes(feats, 1)
    m = np.array([1.0, 10.0]) / np.linalg.norm([1.0, 10.0])
    assert np.allclose(p.prototypes[0], m, atol=1e-6)
    assert np.allclose(mean_prototype(feats), [1.0, 10.0])


# -- similarity and extremes -----------------------------------------------------------
def test_similarity_is_cosine():
    fmap = np.zeros((2, 2, 2), np.float32)
    fmap[:, 0, 0] = [1, 0]
    fmap[:, 0, 1] = [0, 3]
    fmap[:, 1, 0] = [2, 2]
    fmap[:, 1, 1] = [-1, 0]
    s = similarity_maps(fmap, np.array([5.0, 0.0]))[0]
    assert np.allclose(s, [[1, 0], [np.sqrt(0.5), -1]], atol=1e-6)


def test_extremes_only_on_valid_cells():
    m = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    assert extreme_cells(m, (4, 4), "max").tolist() == [[3, 3]]
    assert extreme_cells(m, (2, 3), "max").tolist() == [[1, 2]]
    assert extreme_cells(-m, (2, 3), "min").tolist() == [[1, 2]]
    assert extreme_cells(np.zeros((1, 3, 3)), (3, 3), "max").tolist() == [[0, 0]]


class _PlainUpsampler:
    """A backend whose 'image' is the map itself (so the pick is on known values)."""

    def similarity_to_image(self, maps, image_hw):
        return np.asarray(maps, np.float32)


ONE_ULP = float(np.spacing(np.float32(0.95)))

# (row of a 1 x 5 map, kind, expected x): ties within 4 float32 ulps go to the first pixel
EXTREME_POINT_CASES = [
    ([0.1, 0.95, 0.95, 0.3, 0.2], "max", 1),                      # exact tie
    ([0.1, 0.95 - ONE_ULP, 0.95, 0.95, 0.2], "max", 1),           # last-bit plateau
    ([0.1, 0.95 - 1e-4, 0.95, 0.95, 0.2], "max", 2),              # a real difference
    ([0.5, -0.95 + ONE_ULP, -0.95, 0.3, 0.2], "min", 1),
    ([0.0, 0.0, 0.0, 0.0, 0.0], "max", 0),                        # all equal, zeros
]


@pytest.mark.parametrize("row,kind,x", EXTREME_POINT_CASES)
def test_extreme_points_take_the_first_pixel_of_a_plateau(row, kind, x):
    from oneshotsam.methods.features import extreme_points_xy

    maps = np.asarray([[row]], np.float32)                        # (1, 1, 5)
    mapping = SimpleNamespace(image_hw=(1, 5))                    # all the pick reads of it
    assert extreme_points_xy(_PlainUpsampler(), maps, mapping, kind).tolist() == [[x, 0.0]]


# -- geometry ---------------------------------------------------------------------------
@pytest.mark.parametrize("hw, cells, expected_xy", [
    ((64, 64), [[0, 0], [3, 5]], [[3.5, 3.5], [43.5, 27.5]]),     # 8-px cells, centre c*8+3.5
    ((32, 64), [[7, 7], [0, 2]], [[59.5, 29.5], [19.5, 1.5]]),    # stretched rows: 4-px cells
])
def test_cell_centres_in_pixels(hw, cells, expected_xy):
    be = CellBackend()
    m = grid_mapping(be, hw, (8, 8))
    assert np.allclose(m.cells_to_points_xy(np.array(cells)), expected_xy, atol=1e-3)
    r, c = m.cell_of_pixel()
    assert r[hw[0] - 1, 0] == 7 and c[0, 13] == 1


def test_upsample_lowres_round_trip():
    be = CellBackend()
    m = grid_mapping(be, (64, 64), (8, 8))
    mask = np.zeros((64, 64), bool)
    mask[8:40, 16:48] = True
    up = m.upsample_lowres(be.mask_to_logits(mask, (64, 64)))
    assert up.shape == (64, 64)
    assert np.all(up[12:36, 20:44] > 0) and np.all(up[50:, :] < 0)


def test_reference_cells_fallback_for_vanishing_mask():
    be = CellBackend()   # centre sampling misses small masks
    m = grid_mapping(be, (64, 64), (8, 8))
    mask = np.zeros((64, 64), bool)
    mask[41:43, 18:21] = True                 # 6 px inside cell (5, 2)
    cells = reference_cells(be, mask, m)
    assert np.argwhere(cells.foreground).tolist() == [[5, 2]]
    assert "covers no cell centre" in cells.messages[0]
    assert cells.background.sum() == 63


def test_reference_cells_full_cover_keeps_background():
    be = CellBackend()
    m = grid_mapping(be, (64, 64), (8, 8))
    mask = np.ones((64, 64), bool)
    mask[0, 0] = False
    cells = reference_cells(be, mask, m)
    assert cells.background.tolist() != [] and cells.background[0, 0]
    assert cells.foreground.sum() == 63 and "every feature cell" in cells.messages[0]


def test_reference_cells_do_not_modify_input():
    be = CellBackend()
    m = grid_mapping(be, (64, 64), (8, 8))
    mask = np.zeros((64, 64), np.uint8)
    mask[10:20, 10:20] = 1
    before = mask.copy()
    reference_cells(be, mask, m)
    assert np.array_equal(mask, before)


# -- small helpers -----------------------------------------------------------------------
def test_lowres_to_grid_max_and_mean():
    lr = -np.ones((8, 8), np.float32)
    lr[0, 0] = 5.0
    assert lowres_to_grid(lr, 2, "max").tolist() == [[5.0, -1.0], [-1.0, -1.0]]
    assert lowres_to_grid(lr, 2, "mean")[0, 0] == pytest.approx((5 - 15) / 16)


def test_box_of_mask():
    m = np.zeros((10, 12), bool)
    assert box_of_mask(m) is None
    m[2:5, 3:9] = True
    assert box_of_mask(m).tolist() == [3, 2, 8, 4]


def test_combine_label_masks_highest_logit_wins():
    a = np.array([[1, 1, 0]], bool)
    b = np.array([[0, 1, 0]], bool)
    la = np.array([[2.0, 1.0, -1.0]], np.float32)
    lb = np.array([[-3.0, 4.0, -2.0]], np.float32)
    out = combine_label_masks({3: a, 7: b}, {3: la, 7: lb}, (1, 3), np.uint8)
    assert out.tolist() == [[3, 7, 0]] and out.dtype == np.uint8
