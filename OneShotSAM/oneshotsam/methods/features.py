"""Reference features, prototypes, similarity maps and grid <-> image geometry.

Shared by P2SAM, PerSAM and Med-PerSAM. Everything works on the backend's
``G x G`` feature grid (64 x 64 for the real models) through the
:class:`~oneshotsam.backends.base.PromptableSegmenter` contract only.

Frames: feature maps are ``(C, G, G)`` float32 indexed ``[channel, row, col]``
(grid frame); cells are ``(row, col)`` int pairs; points are image-frame pixel
coordinates ``(x, y)`` float; low-res logits are ``(4G, 4G)`` in the backend's
input frame. Only the valid (non-padding) block ``[:rows, :cols]`` of the grid
(``backend.valid_grid_hw``) covers image content.

This module imports numpy (plus OpenCV and scikit-learn lazily).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "GridMapping", "grid_mapping", "ReferenceCells", "reference_cells", "masked_features",
    "mean_prototype", "l2_normalize", "PartPrototypes", "part_prototypes", "similarity_maps",
    "extreme_cells", "extreme_points_xy", "valid_cells_mask", "lowres_to_grid", "box_of_mask", "combine_label_masks",
]


@dataclass(frozen=True)
class GridMapping:
    """Where each pixel of one image size falls on the backend's feature grid.

    Attributes:
        image_hw: ``(H, W)`` of the image.
        grid_size: ``G``.
        valid_hw: ``(rows, cols)`` of grid cells covering image content.
        row_of_pixel: ``(H, W)`` float32 fractional grid row of each pixel
            (cell centres at integers), obtained by pushing a row ramp through
            ``backend.grid_to_image``, so it follows the backend's exact
            resize / pad / stretch rule.
        col_of_pixel: ``(H, W)`` float32 fractional grid column, likewise.
    """

    image_hw: tuple[int, int]
    grid_size: int
    valid_hw: tuple[int, int]
    row_of_pixel: np.ndarray
    col_of_pixel: np.ndarray

    def cell_of_pixel(self) -> tuple[np.ndarray, np.ndarray]:
        """``(H, W)`` int grid row and column of every pixel (nearest cell, valid block)."""
        r = np.clip(np.rint(self.row_of_pixel), 0, self.valid_hw[0] - 1).astype(np.int64)
        c = np.clip(np.rint(self.col_of_pixel), 0, self.valid_hw[1] - 1).astype(np.int64)
        return r, c

    def cells_to_points_xy(self, cells_rc: np.ndarray) -> np.ndarray:
        """Image pixel coordinates ``(N, 2)`` float ``(x, y)`` of cell centres.

        ``cells_rc`` is ``(N, 2)`` int ``(row, col)``. The centre of a cell is the
        pixel position where the backend's upsampling puts the cell's own value;
        points are clipped inside ``[0, W-1] x [0, H-1]``.
        """
        cells = np.asarray(cells_rc, dtype=np.float64).reshape(-1, 2)
        h, w = self.image_hw
        col_profile = self.col_of_pixel[h // 2, :].astype(np.float64)
        row_profile = self.row_of_pixel[:, w // 2].astype(np.float64)
        xs = _invert_profile(col_profile, cells[:, 1])
        ys = _invert_profile(row_profile, cells[:, 0])
        pts = np.stack([np.clip(xs, 0, w - 1), np.clip(ys, 0, h - 1)], axis=1)
        return pts.astype(np.float32)

    def upsample_lowres(self, low_res: np.ndarray) -> np.ndarray:
        """``(4G, 4G)`` low-res logits -> ``(H, W)`` float32 in the image frame (bilinear).

        Low-res pixel ``u`` covers input pixels ``[4u, 4u+4) * (input/4G)``; grid
        coordinate ``g`` (cell centre) is low-res coordinate ``4g + 1.5``.
        """
        import cv2

        lr = np.asarray(low_res, dtype=np.float32)
        scale = lr.shape[0] / float(self.grid_size)
        off = (scale - 1.0) / 2.0
        map_y = (self.row_of_pixel * scale + off).astype(np.float32)
        map_x = (self.col_of_pixel * scale + off).astype(np.float32)
        return cv2.remap(lr, map_x, map_y, interpolation=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)


def _invert_profile(profile: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Pixel positions ``x`` where the backend's (linear) upsampling puts grid
    coordinates ``values``. Bilinear upsampling clamps at the borders, so the
    line is fitted on the strictly interior part of the profile and
    extrapolated there; falls back to interpolation for non-linear profiles."""
    n = profile.shape[0]
    x = np.arange(n, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    inner = (profile > profile.min()) & (profile < profile.max())
    if inner.sum() >= 2:
        slope, icpt = np.polyfit(profile[inner], x[inner], 1)
        if np.isfinite(slope) and slope > 0:
            return slope * v + icpt
    mono = np.maximum.accumulate(profile)
    return np.interp(v, mono + np.arange(n) * 1e-9, x)


def grid_mapping(backend, image_hw: tuple[int, int], valid_hw: tuple[int, int]) -> GridMapping:
    """Build the :class:`GridMapping` of ``image_hw`` for ``backend`` (two upsamplings)."""
    g = int(backend.grid_size)
    ramp = np.arange(g, dtype=np.float32)
    rows = np.asarray(backend.grid_to_image(np.repeat(ramp[:, None], g, axis=1), tuple(image_hw)),
                      dtype=np.float32)
    cols = np.asarray(backend.grid_to_image(np.repeat(ramp[None, :], g, axis=0), tuple(image_hw)),
                      dtype=np.float32)
    return GridMapping(tuple(int(s) for s in image_hw), g, (int(valid_hw[0]), int(valid_hw[1])),
                       rows, cols)


def valid_cells_mask(grid_size: int, valid_hw: tuple[int, int]) -> np.ndarray:
    """``(G, G)`` bool, True on cells covering image content."""
    m = np.zeros((grid_size, grid_size), dtype=bool)
    m[: valid_hw[0], : valid_hw[1]] = True
    return m


@dataclass(frozen=True)
class ReferenceCells:
    """Grid cells of a reference mask.

    Attributes:
        foreground: ``(G, G)`` bool cells of the structure (never empty).
        background: ``(G, G)`` bool valid cells outside it (never empty).
        centre_value: ``(G, G)`` float32 from ``backend.mask_to_grid_centre``
            (``> 0``: the cell centre lies inside the mask).
        messages: what fallback was used, if any (for the report).
    """

    foreground: np.ndarray
    background: np.ndarray
    centre_value: np.ndarray
    messages: tuple[str, ...] = ()


def reference_cells(backend, mask: np.ndarray, mapping: GridMapping, what: str = "mask",
                    rule: str = "midpoint") -> ReferenceCells:
    """Foreground / background grid cells of a ``(H, W)`` binary reference mask.

    Foreground = valid cells with ``backend.mask_to_grid_centre(mask) > 0``: the
    P2SAM authors' reduction (mask through the image's resize / pad, minus its
    midpoint, bilinear to ``G x G``, keep ``> 0``), i.e. cells whose centre
    lies inside the mask (coverage about >= 0.5), not every cell the mask
    touches (``rule="persam"``: PerSAM's variant of the same centre rule). A mask that vanishes at grid resolution (the authors' code has no
    foreground then) falls back to the cells holding the most mask pixels and
    says so in ``messages``; a mask over every valid cell leaves the cells with
    the lowest centre value as background. The input is not modified.
    """
    m = np.asarray(mask).astype(bool)
    if not m.any():
        raise ValueError(f"{what} is empty")
    g = mapping.grid_size
    valid = valid_cells_mask(g, mapping.valid_hw)
    centre = np.asarray(backend.mask_to_grid_centre(m.astype(np.float32), mapping.image_hw,
                                                    rule), dtype=np.float32)
    fg = (centre > 0) & valid
    messages: list[str] = []
    if not fg.any():
        r, c = mapping.cell_of_pixel()
        counts = np.zeros((g, g), dtype=np.int64)
        np.add.at(counts, (r[m], c[m]), 1)
        fg = (counts == counts.max()) & (counts > 0)
        messages.append(
            f"{what} ({int(m.sum())} px) covers no cell centre of the {g}x{g} feature grid; "
            f"used the {int(fg.sum())} grid cell(s) holding most of its pixels instead "
            "(prototypes from so few cells are unreliable: check the result)")
    bg = valid & ~fg
    if not bg.any():
        r, c = mapping.cell_of_pixel()
        outside = np.zeros((g, g), dtype=np.int64)
        np.add.at(outside, (r[~m], c[~m]), 1)
        score = np.where(valid, outside if outside[valid].max() > 0 else -centre, -np.inf)
        bg = valid & (score == score.max())
        fg = fg & ~bg if (fg & ~bg).any() else fg
        messages.append(
            f"{what} covers every feature cell; used the {int(bg.sum())} cell(s) least inside "
            "it as background")
    return ReferenceCells(fg, bg, centre, tuple(messages))


def masked_features(feature_map: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """``(N, C)`` float32 raw features of the ``True`` cells of ``cells`` (raster order)."""
    f = np.asarray(feature_map, dtype=np.float32)
    return np.ascontiguousarray(f[:, np.asarray(cells, dtype=bool)].T)


def l2_normalize(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """``x / ||x||`` along ``axis`` (float32; zero vectors stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), eps)


def mean_prototype(features: np.ndarray) -> np.ndarray:
    """``(C,)`` float32 mean of raw ``(N, C)`` features (unnormalised, PerSAM's embedding)."""
    f = np.asarray(features, dtype=np.float32)
    if f.shape[0] == 0:
        raise ValueError("no features to average")
    return f.mean(axis=0)


@dataclass(frozen=True)
class PartPrototypes:
    """Part-level prototypes of one feature set.

    Attributes:
        prototypes: ``(n, C)`` float32, L2-normalised mean raw feature of each part.
        assignment: ``(N,)`` int part index of every input feature.
        n_requested: the part count asked for.
        message: set when fewer parts than requested were possible.
    """

    prototypes: np.ndarray
    assignment: np.ndarray
    n_requested: int
    message: str | None = None

    @property
    def n_parts(self) -> int:
        return int(self.prototypes.shape[0])


def part_prototypes(features: np.ndarray, n_parts: int, seed: int = 0, n_init: int = 10
                    ) -> PartPrototypes:
    """Cluster raw ``(N, C)`` features into parts (P2SAM's part-level features).

    scikit-learn ``KMeans(n_clusters=n, init="k-means++", n_init=10,
    random_state=seed)`` on the RAW features (authors' code; ``n_init`` explicit
    because scikit-learn >= 1.4 changed its default). Prototype = mean raw
    feature of a cluster, then L2-normalised. With fewer distinct features than
    ``n_parts`` the part count drops to the number of distinct features.
    """
    f = np.asarray(features, dtype=np.float32)
    if f.ndim != 2 or f.shape[0] == 0:
        raise ValueError(f"need (N, C) features with N >= 1; got shape {f.shape}")
    if n_parts < 1:
        raise ValueError(f"n_parts must be >= 1; got {n_parts}")
    n_distinct = int(np.unique(f, axis=0).shape[0])
    n = min(int(n_parts), n_distinct)
    message = None
    if n < n_parts:
        message = (f"only {n_distinct} distinct feature vector(s): {n} part(s) instead of "
                   f"{n_parts}")
    if n == 1:
        assignment = np.zeros(f.shape[0], dtype=np.int64)
    else:
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=n, init="k-means++", n_init=n_init, random_state=seed)
        assignment = km.fit_predict(f).astype(np.int64)
    protos = np.stack([f[assignment == k].mean(axis=0) for k in range(n)
                       if np.any(assignment == k)])
    return PartPrototypes(l2_normalize(protos, axis=1), assignment, int(n_parts), message)


def similarity_maps(feature_map: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Cosine similarity ``(P, G, G)`` float32 of ``(P, C)`` (or ``(C,)``) prototypes
    with every cell of a ``(C, G, G)`` feature map (both L2-normalised here)."""
    f = np.asarray(feature_map, dtype=np.float32)
    p = l2_normalize(np.atleast_2d(np.asarray(prototypes, dtype=np.float32)), axis=1)
    fn = l2_normalize(f, axis=0)
    c, gh, gw = fn.shape
    return (p @ fn.reshape(c, gh * gw)).reshape(-1, gh, gw).astype(np.float32)


def extreme_cells(maps: np.ndarray, valid_hw: tuple[int, int], kind: str = "max") -> np.ndarray:
    """``(P, 2)`` int ``(row, col)`` of the max (or min) of each ``(P, G, G)`` map,
    searched over valid cells only (first cell in raster order on ties)."""
    m = np.asarray(maps, dtype=np.float32)
    if m.ndim == 2:
        m = m[None]
    rows, cols = int(valid_hw[0]), int(valid_hw[1])
    sub = m[:, :rows, :cols].reshape(m.shape[0], -1)
    if kind == "max":
        idx = np.argmax(sub, axis=1)
    elif kind == "min":
        idx = np.argmin(sub, axis=1)
    else:
        raise ValueError(f"kind must be 'max' or 'min'; got {kind!r}")
    return np.stack([idx // cols, idx % cols], axis=1).astype(np.int64)


def extreme_points_xy(backend, maps: np.ndarray, mapping: GridMapping, kind: str = "max"
                      ) -> np.ndarray:
    """``(P, 2)`` float32 image pixels ``(x, y)`` of the max (or min) of each
    ``(P, G, G)`` similarity map, picked as PerSAM's and P2SAM's
    ``point_selection`` does: on the map brought to the image by
    ``backend.similarity_to_image`` (bilinear x4, then SAM's mask
    post-processing), first pixel in raster order on ties. Ties are values within
    4 float32 ulps of the extreme: bilinear upsampling makes flat plateaus (at
    the borders, where it clamps) whose equal values differ in the last bit from
    one torch build to the next, and the first pixel of the plateau must not
    depend on that. A backend without ``similarity_to_image`` gets the centre of
    the extreme valid grid cell."""
    m = np.asarray(maps, dtype=np.float32)
    if m.ndim == 2:
        m = m[None]
    if kind not in ("max", "min"):
        raise ValueError(f"kind must be 'max' or 'min'; got {kind!r}")
    up = getattr(backend, "similarity_to_image", None)
    if up is None:
        return mapping.cells_to_points_xy(extreme_cells(m, mapping.valid_hw, kind))
    img = np.asarray(up(m, mapping.image_hw), dtype=np.float32)
    flat = img.reshape(img.shape[0], -1)
    ext = flat.max(axis=1) if kind == "max" else flat.min(axis=1)
    tol = 4 * np.finfo(np.float32).eps * np.maximum(np.abs(ext), np.finfo(np.float32).tiny)
    idx = np.argmax(np.abs(flat - ext[:, None]) <= tol[:, None], axis=1)  # first near-tie
    w = img.shape[2]
    return np.stack([idx % w, idx // w], axis=1).astype(np.float32)


def lowres_to_grid(low_res: np.ndarray, grid_size: int, reduce: str = "bilinear") -> np.ndarray:
    """``(4G, 4G)`` low-res logits -> ``(G, G)`` float32.

    ``reduce="bilinear"`` (default, the P2SAM authors' retrieval): bilinear
    resize to ``G x G`` (half-pixel centres, no antialias), i.e. the logit
    sampled at each cell centre, so ``> 0`` marks cells whose centre the
    predicted mask covers -- the same rule as :func:`reference_cells`.
    ``"max"`` (any logit of the cell > 0: cells the mask touches) and
    ``"mean"`` are kept for diagnostics.
    """
    lr = np.asarray(low_res, dtype=np.float32)
    s = lr.shape[0] // grid_size
    if s * grid_size != lr.shape[0] or lr.shape[0] != lr.shape[1]:
        raise ValueError(f"low-res logits {lr.shape} are not a multiple of the {grid_size} grid")
    if reduce == "bilinear":
        # align_corners=False bilinear at scale 1/s samples source coordinate
        # s*i + (s-1)/2: the mean of the two middle rows and columns of the block
        lo, hi = (s - 1) // 2, s // 2
        blocks = lr.reshape(grid_size, s, grid_size, s)
        return (0.25 * (blocks[:, lo, :, lo] + blocks[:, lo, :, hi] + blocks[:, hi, :, lo]
                        + blocks[:, hi, :, hi])).astype(np.float32)
    blocks = lr.reshape(grid_size, s, grid_size, s)
    if reduce == "max":
        return blocks.max(axis=(1, 3))
    if reduce == "mean":
        return blocks.mean(axis=(1, 3))
    raise ValueError(f"reduce must be 'bilinear', 'max' or 'mean'; got {reduce!r}")


def box_of_mask(mask: np.ndarray) -> np.ndarray | None:
    """``(4,)`` float32 ``(x0, y0, x1, y1)`` bounding box of a ``(H, W)`` mask, None if empty."""
    ys, xs = np.nonzero(np.asarray(mask))
    if xs.size == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)


def combine_label_masks(masks: dict[int, np.ndarray], logits: dict[int, np.ndarray],
                        image_hw: tuple[int, int], dtype=np.int32) -> np.ndarray:
    """Multi-class label map from per-class binary predictions.

    Args:
        masks: label value -> ``(H, W)`` bool mask (the backend's ``logit > 0``).
        logits: label value -> ``(H, W)`` float logits upsampled to the image.
        image_hw: ``(H, W)``.
    Returns:
        ``(H, W)`` labels: every pixel takes the class with the highest logit among
        the classes predicting it; background where no class does (all logits < 0).
    """
    out = np.zeros(tuple(image_hw), dtype=dtype)
    values = sorted(masks)
    if not values:
        return out
    m = np.stack([np.asarray(masks[v], dtype=bool) for v in values])
    score = np.stack([np.asarray(logits[v], dtype=np.float32) for v in values])
    score = np.where(m, score, -np.inf)
    best = np.argmax(score, axis=0)
    lut = np.asarray(values, dtype=dtype)
    any_fg = m.any(axis=0)
    out[any_fg] = lut[best[any_fg]]
    return out
