"""Planar contours <-> pixel masks on one slice, in continuous pixel coordinates.

* :func:`mask_contours` traces closed contours along the *pixel edges* of a mask: every
  vertex is a pixel corner (half-integer coordinates), so the polygons enclose exactly
  the mask's pixels. A planning system that fills a contour by the usual rule (pixels
  whose centre is inside the polygon) reads back the mask voxel for voxel, and the
  polygon area equals the pixel area. Each boundary is a contour of its own: the outer
  boundary of every region (4-connected) and the boundary of every hole, as planning
  systems expect (a contour inside another is a hole, even-odd).
* :func:`rasterise_contours` is the reading rule: a pixel is inside a ROI on a slice
  when its centre lies inside an odd number of the ROI's contours there (even-odd rule,
  so a contour inside another is a hole, an island in the hole is inside again), or
  lies on one of the contours (within :data:`ON_CONTOUR_PX`).

The on-contour clause matters only for contours traced through the centres of the
boundary pixels (OpenCV's ``findContours``, rt-utils): it keeps those boundary pixels, so
such files read back to the mask they came from. Pixel-edge contours (ours) have no
pixel centre on them, and polygons from planning systems almost never pass exactly
through a pixel centre: for both, the rule is the plain pixel-centre rule.

Coordinates: ``(x, y)`` = ``(col, row)`` of a ``(rows, cols)`` mask, pixel centres at
integers. numpy only.
"""

from __future__ import annotations

import numpy as np

#: distance (pixels) within which a pixel centre counts as lying on a contour
ON_CONTOUR_PX = 1e-3

#: pixel sides, clockwise on screen (rows grow downwards): top, right, bottom, left;
#: a side's edge runs from corner _SIDE_FROM to corner _SIDE_TO, corners as (row, col)
#: offsets from the pixel's top-left corner
_SIDE_FROM = np.array([(0, 0), (0, 1), (1, 1), (1, 0)])
_SIDE_TO = np.array([(0, 1), (1, 1), (1, 0), (0, 0)])
_SIDE_NEIGHBOUR = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)])


def mask_contours(mask_rc: np.ndarray) -> list[np.ndarray]:
    """Closed contours along the pixel edges of a 2D mask.

    Args:
        mask_rc: ``(rows, cols)`` bool or integer (non-zero = inside).

    Returns: a list of ``(N, 2)`` float64 arrays of ``(x, y)`` vertices at pixel corners
    (``x = col - 0.5`` ...; ``N >= 4``; the closing edge from the last vertex back to the
    first is implied; no collinear vertices). Outer boundaries run clockwise on screen,
    hole boundaries anticlockwise; pixels touching only at a corner belong to separate
    contours (4-connectivity). Their even-odd interior is exactly the mask.
    """
    m = np.asarray(mask_rc) != 0
    if not m.any():
        return []
    rows, cols = m.shape
    pad = np.zeros((rows + 2, cols + 2), bool)
    pad[1:-1, 1:-1] = m
    side_edge = np.full((4, rows, cols), -1, np.int64)
    starts, ends, sides, pix = [], [], [], []
    n = 0
    for s in range(4):
        dr, dc = _SIDE_NEIGHBOUR[s]
        exposed = m & ~pad[1 + dr:1 + dr + rows, 1 + dc:1 + dc + cols]
        r, c = np.nonzero(exposed)
        side_edge[s, r, c] = np.arange(n, n + r.size)
        n += r.size
        starts.append(np.column_stack([r + _SIDE_FROM[s][0], c + _SIDE_FROM[s][1]]))
        ends.append(np.column_stack([r + _SIDE_TO[s][0], c + _SIDE_TO[s][1]]))
        sides.append(np.full(r.size, s))
        pix.append(np.column_stack([r, c]))
    start, end = np.concatenate(starts), np.concatenate(ends)
    side, pr = np.concatenate(sides), np.concatenate(pix)
    # next edge: the next side of the same pixel when it is exposed (this also settles the
    # corners where two diagonal pixels meet), else the one edge leaving the end corner
    nxt = side_edge[(side + 1) % 4, pr[:, 0], pr[:, 1]]
    leaving = np.full((rows + 1) * (cols + 1), -1, np.int64)
    leaving[start[:, 0] * (cols + 1) + start[:, 1]] = np.arange(n)
    alone = nxt < 0
    nxt[alone] = leaving[end[alone, 0] * (cols + 1) + end[alone, 1]]
    seen = np.zeros(n, bool)
    out = []
    for e0 in range(n):
        if seen[e0]:
            continue
        loop = []
        e = e0
        while not seen[e]:
            seen[e] = True
            loop.append(e)
            e = int(nxt[e])
        idx = np.asarray(loop)
        turn = side[idx] != side[np.roll(idx, 1)]  # a corner where the direction changes
        corners = start[idx[turn]]
        out.append(np.column_stack([corners[:, 1] - 0.5, corners[:, 0] - 0.5]).astype(np.float64))
    return out


def polygon_area(points_xy: np.ndarray) -> float:
    """Signed area (pixels^2) of a closed polygon, shoelace formula: positive clockwise on
    screen (rows downwards), i.e. for the outer boundaries of :func:`mask_contours`."""
    p = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    q = np.roll(p, -1, axis=0)
    return 0.5 * float(np.sum(p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]))


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
