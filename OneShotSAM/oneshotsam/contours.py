"""Planar contours <-> pixel masks on one slice, in continuous pixel coordinates.

* :func:`mask_contours` extracts closed contours (outer boundaries and hole
  boundaries, ``cv2.findContours`` with ``RETR_TREE`` and ``CHAIN_APPROX_SIMPLE``):
  each vertex is the centre of a boundary pixel, as OpenCV and rt-utils produce them.
* :func:`rasterise_contours` is the reading rule: a pixel is inside a ROI on a slice
  when its centre lies inside an odd number of the ROI's contours there (even-odd rule,
  so a contour inside another is a hole, an island in the hole is inside again), or
  lies on one of the contours (within :data:`ON_CONTOUR_PX`).

The on-contour rule makes the pair exact: contours through the centres of the boundary
pixels (the outer one of a region, and the one around a hole, which runs through the
region's pixels lining the hole) give back the mask they came from, voxel for voxel.
Contours drawn elsewhere (a planning system's polygons) are read by the usual
pixel-centre rule; their vertices almost never land exactly on pixel centres.

Coordinates: ``(x, y)`` = ``(col, row)`` of a ``(rows, cols)`` mask, pixel centres at
integers. numpy at import time; OpenCV lazily.
"""

from __future__ import annotations

import numpy as np

#: distance (pixels) within which a pixel centre counts as lying on a contour
ON_CONTOUR_PX = 1e-3


def mask_contours(mask_rc: np.ndarray) -> list[np.ndarray]:
    """Closed contours of a 2D mask.

    Args:
        mask_rc: ``(rows, cols)`` bool or integer (non-zero = inside).

    Returns: a list of ``(N, 2)`` float64 arrays of ``(x, y)`` vertices (pixel centres;
    ``N >= 1``; the closing edge from the last vertex back to the first is implied).
    Outer boundaries and hole boundaries alike; the even-odd rule tells them apart.
    """
    import cv2

    m = np.ascontiguousarray(np.asarray(mask_rc) != 0, dtype=np.uint8)
    if not m.any():
        return []
    found, _ = cv2.findContours(m, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2).astype(np.float64) for c in found if len(c)]


def _edges(points_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    p = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    q = np.roll(p, -1, axis=0)
    return p[:, 0], p[:, 1], q[:, 0], q[:, 1]


def _row_runs(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(edge index, integer row) for every row in ``[lo_e, hi_e]`` of every edge."""
    counts = np.maximum(hi - lo + 1, 0).astype(np.int64)
    idx = np.repeat(np.arange(len(lo)), counts)
    starts = np.repeat(lo, counts)
    offs = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return idx, (starts + offs).astype(np.int64)


def _fill_parity(points_xy: np.ndarray, shape_rc: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre is inside the closed polygon (crossing rule, ends inclusive)."""
    rows, cols = shape_rc
    x0, y0, x1, y1 = _edges(points_xy)
    out = np.zeros(shape_rc, bool)
    sloped = np.abs(y1 - y0) > 0
    x0, y0, x1, y1 = x0[sloped], y0[sloped], x1[sloped], y1[sloped]
    if x0.size == 0:
        return out
    ylo, yhi = np.minimum(y0, y1), np.maximum(y0, y1)
    # half-open [ylo, yhi): every row crosses a closed polygon an even number of times
    e, j = _row_runs(np.ceil(ylo).astype(np.int64), np.ceil(yhi).astype(np.int64) - 1)
    keep = (j >= 0) & (j < rows)
    e, j = e[keep], j[keep]
    if e.size == 0:
        return out
    x = x0[e] + (j - y0[e]) * (x1[e] - x0[e]) / (y1[e] - y0[e])
    order = np.lexsort((x, j))
    x, j = x[order], j[order]
    xa, xb, ja = x[0::2], x[1::2], j[0::2]
    ia = np.clip(np.ceil(xa - ON_CONTOUR_PX), 0, cols).astype(np.int64)
    ib = np.clip(np.floor(xb + ON_CONTOUR_PX) + 1, 0, cols).astype(np.int64)
    ok = ib > ia
    diff = np.zeros((rows, cols + 1), np.int64)
    np.add.at(diff, (ja[ok], ia[ok]), 1)
    np.add.at(diff, (ja[ok], ib[ok]), -1)
    return np.cumsum(diff[:, :cols], axis=1) > 0


def _on_contour(points_xy: np.ndarray, shape_rc: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies on an edge of the closed polygon (within ON_CONTOUR_PX)."""
    rows, cols = shape_rc
    eps = ON_CONTOUR_PX
    x0, y0, x1, y1 = _edges(points_xy)
    out = np.zeros(shape_rc, bool)
    flat = np.abs(y1 - y0) <= eps
    # sloped edges: the x of the edge on each integer row it spans
    s = ~flat
    if s.any():
        sx0, sy0, sx1, sy1 = x0[s], y0[s], x1[s], y1[s]
        lo = np.ceil(np.minimum(sy0, sy1) - eps).astype(np.int64)
        hi = np.floor(np.maximum(sy0, sy1) + eps).astype(np.int64)
        e, j = _row_runs(lo, hi)
        x = sx0[e] + (j - sy0[e]) * (sx1[e] - sx0[e]) / (sy1[e] - sy0[e])
        xi = np.rint(x).astype(np.int64)
        hit = (np.abs(x - xi) <= eps) & (j >= 0) & (j < rows) & (xi >= 0) & (xi < cols)
        out[j[hit], xi[hit]] = True
    # (near-)horizontal edges on an integer row: every integer x between the ends
    yr = np.rint(y0)
    h = flat & (np.abs(y0 - yr) <= eps)
    if h.any():
        lo = np.ceil(np.minimum(x0[h], x1[h]) - eps).astype(np.int64)
        hi = np.floor(np.maximum(x0[h], x1[h]) + eps).astype(np.int64)
        e, i = _row_runs(lo, hi)
        j = yr[h][e].astype(np.int64)
        ok = (j >= 0) & (j < rows) & (i >= 0) & (i < cols)
        out[j[ok], i[ok]] = True
    return out


def rasterise_contours(contours_xy: list[np.ndarray], shape_rc: tuple[int, int]) -> np.ndarray:
    """``(rows, cols)`` bool mask of the contours of one ROI on one slice.

    Args:
        contours_xy: ``(N, 2)`` arrays of ``(x, y)`` = ``(col, row)`` continuous pixel
            coordinates (closed: the last vertex connects back to the first).
        shape_rc: ``(rows, cols)`` of the slice.

    Returns: the even-odd interior of all contours together, plus the pixels whose
    centres lie on a contour (rule in the module docstring). Parts outside the slice
    are clipped.
    """
    inside = np.zeros(shape_rc, bool)
    edge = np.zeros(shape_rc, bool)
    for c in contours_xy:
        c = np.asarray(c, dtype=np.float64).reshape(-1, 2)
        if c.size == 0:
            continue
        inside ^= _fill_parity(c, shape_rc)
        edge |= _on_contour(c, shape_rc)
    return inside | edge
