"""Med-PerSAM visual prompt generation from a warped mask (paper section 3.2, appendix C.1).

Pure numpy / OpenCV; no torch. Every step happens on a square *work grid*
(``work_size x work_size``, 256 in appendix C.1) and the resulting points and
box are then scaled to the *image frame* (pixels of the target image, points
``(x, y)``); the backend scales them on to its own input frame (1024 for SAM).

Steps for one class (eqs. 5-10):

1. ``Mask_Erode = Erosion(Mask, K_e)``: the positive candidate region.
2. ``Mask_Diff = Dilation(Mask, K_d) - Mask_Erode``: the "hard negative" ring
   (it contains the mask's own boundary band, as in eq. 7).
3. Each region is split into ``K`` subregions: its pixels sorted by their
   row-major flat index, cut into ``K`` nearly equal consecutive parts
   (:func:`split_subregions`).
4. In each subregion the positive point is the argmax (eq. 8), the negative
   point the argmin (eq. 9), of the cosine-similarity map to the class prototype.
5. ``Box`` = bounding box of the mask prompt.

Degenerate cases (defined here, tested in ``test_medpersam_prompts_*``):

* empty mask: no prompts at all, the class is reported absent;
* erosion empties the mask (thin or tiny structure): the positive region falls
  back to the mask itself and the negative ring becomes ``dilation - mask``
  (negatives never fall inside the positive region);
* a region with fewer than ``K`` pixels yields one point per pixel;
* a mask that fills the whole work grid has an empty ring: no negatives.

Bilateral organs (appendix C.1: 10 points split evenly between left and
right): both regions are cut by a vertical line, by default the middle column
of the mask's bounding box (``bilateral_split="box-centre"``: the midline of
two lungs or of a dental arch), or the image's middle column
(``"image-midline"``). A split between the two largest components is not used:
on a dental arch those can be two molars on one side. Each side gets
``K // 2`` points (the right-hand side ``K - K // 2``); a side whose region is
empty hands its points to the other side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: appendix C.1: "The morphological operations and point prompt selection were
#: performed on a 256x256 mask"
PAPER_WORK_SIZE = 256

#: rules placing the left / right line of bilateral organs
SPLIT_RULES = ("box-centre", "image-midline")


@dataclass(frozen=True)
class PromptConfig:
    """Settings of the point / box prompt generator.

    Attributes:
        erode_kernel: side of the square erosion kernel ``K_e`` in work-grid
            pixels (appendix C.1: 7 Shenzhen / JSRT, 5 CAMUS, 3 OdontoAI / BUU).
        dilate_kernel: side of the square dilation kernel ``K_d`` (appendix C.1
            gives one kernel size per dataset for both operations).
        n_points: points per region ``K`` (section 4.2 / C.2: 5 for unilateral
            organs, 10 for bilateral ones), positives and negatives each.
        bilateral: split the points evenly between left and right (C.1).
        bilateral_split: where left ends and right begins: ``"box-centre"``
            (middle column of the mask's bounding box) or ``"image-midline"``.
        work_size: side of the square work grid (C.1: 256).
        use_negatives: extract negative points from the ring (section 3.2).
    """

    erode_kernel: int = 7
    dilate_kernel: int = 7
    n_points: int = 5
    bilateral: bool = False
    work_size: int = PAPER_WORK_SIZE
    use_negatives: bool = True
    bilateral_split: str = "box-centre"

    def __post_init__(self) -> None:
        from oneshotsam.errors import OneShotError

        if self.bilateral_split not in SPLIT_RULES:
            raise OneShotError(f"bilateral_split must be one of {SPLIT_RULES}; got "
                               f"{self.bilateral_split!r}")

        for name in ("erode_kernel", "dilate_kernel", "n_points", "work_size"):
            if int(getattr(self, name)) < 1:
                raise OneShotError(f"prompt setting {name} must be >= 1; got {getattr(self, name)}")


@dataclass(frozen=True)
class ClassPrompts:
    """Prompts for one class on one target, in the target's image frame.

    Attributes:
        points_xy: ``(N, 2)`` float32 pixel coordinates ``(x, y)``, positives first.
        point_labels: ``(N,)`` int32, 1 positive, 0 negative.
        box_xyxy: ``(4,)`` float32 ``(x0, y0, x1, y1)`` pixels (inclusive), or
            None when the mask is empty.
        eroded_fallback: erosion emptied the mask; positives come from the mask.
        n_positive / n_negative: point counts.
    """

    points_xy: np.ndarray
    point_labels: np.ndarray
    box_xyxy: np.ndarray | None
    eroded_fallback: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.box_xyxy is None

    @property
    def n_positive(self) -> int:
        return int(np.sum(self.point_labels == 1))

    @property
    def n_negative(self) -> int:
        return int(np.sum(self.point_labels == 0))

    def to_report(self) -> dict[str, Any]:
        """JSON-serialisable form (image frame pixels)."""
        return {
            "points_xy": [[round(float(x), 2), round(float(y), 2)] for x, y in self.points_xy],
            "point_labels": [int(v) for v in self.point_labels],
            "box_xyxy": None if self.box_xyxy is None else [round(float(v), 2) for v in self.box_xyxy],
            "eroded_fallback": bool(self.eroded_fallback),
        }


def empty_prompts() -> ClassPrompts:
    """The prompts of an absent class: no points, no box."""
    return ClassPrompts(np.zeros((0, 2), np.float32), np.zeros((0,), np.int32), None)


# ----------------------------------------------------------------------------- grids


def mask_to_work(mask_hw: np.ndarray, work_size: int) -> np.ndarray:
    """Resize an ``(H, W)`` binary mask to the ``(S, S)`` work grid (bool).

    Area interpolation, a work pixel is in the mask when at least half of it is
    covered; a non-empty mask that would vanish (thinner than one work pixel)
    keeps every work pixel it touches instead.
    """
    import cv2

    m = np.asarray(mask_hw).astype(np.float32)
    if m.shape == (work_size, work_size):
        return m > 0.5
    cov = cv2.resize(m, (work_size, work_size), interpolation=cv2.INTER_AREA)
    out = cov >= 0.5
    if not out.any() and m.any():
        out = cov > 0.0
    return out


def map_to_work(map_hw: np.ndarray, work_size: int) -> np.ndarray:
    """Resize a float ``(H, W)`` map (e.g. similarity) to ``(S, S)`` float32, bilinear."""
    import cv2

    a = np.asarray(map_hw, dtype=np.float32)
    if a.shape == (work_size, work_size):
        return a.copy()
    return cv2.resize(a, (work_size, work_size), interpolation=cv2.INTER_LINEAR)


def work_rc_to_image_xy(rc: np.ndarray, work_hw: tuple[int, int],
                        image_hw: tuple[int, int]) -> np.ndarray:
    """``(N, 2)`` work-grid ``(row, col)`` cells -> ``(N, 2)`` float32 image ``(x, y)``.

    A cell centre maps to the centre of the image area it covers:
    ``x = (col + 0.5) * W / S_w - 0.5`` (pixel centres at integer coordinates).
    """
    rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
    sy = image_hw[0] / work_hw[0]
    sx = image_hw[1] / work_hw[1]
    x = (rc[:, 1] + 0.5) * sx - 0.5
    y = (rc[:, 0] + 0.5) * sy - 0.5
    return np.stack([x, y], axis=1).astype(np.float32)


def box_from_work_mask(mask_work: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray | None:
    """Bounding box (function ``g_box`` of section 3.2) of a work-grid mask, in image pixels.

    Returns ``(4,)`` float32 ``(x0, y0, x1, y1)``: the first and last image pixel
    covered by the extreme work cells (inclusive), or None for an empty mask.
    """
    rows = np.flatnonzero(mask_work.any(axis=1))
    cols = np.flatnonzero(mask_work.any(axis=0))
    if rows.size == 0:
        return None
    sh, sw = mask_work.shape
    sy = image_hw[0] / sh
    sx = image_hw[1] / sw
    x0 = cols[0] * sx
    x1 = (cols[-1] + 1) * sx - 1.0
    y0 = rows[0] * sy
    y1 = (rows[-1] + 1) * sy - 1.0
    return np.array([x0, y0, max(x0, x1), max(y0, y1)], dtype=np.float32)


# ----------------------------------------------------------------------------- regions


def candidate_regions(mask: np.ndarray, erode_kernel: int, dilate_kernel: int
                      ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Positive region and negative ring of a binary mask (eqs. 5-7).

    Args:
        mask: ``(S, S)`` bool work-grid mask.
        erode_kernel / dilate_kernel: square kernel sides ``K_e`` / ``K_d``.

    Returns:
        ``(positive, negative, fell_back)``: bool maps of the mask's shape;
        ``fell_back`` is True when erosion emptied a non-empty mask and the
        positive region is the mask itself (the ring is then dilation - mask).
        Outside the image the mask is assumed to continue (no erosion from the
        border).
    """
    import cv2

    m = np.asarray(mask).astype(np.uint8)
    if not m.any():
        z = np.zeros(m.shape, bool)
        return z, z.copy(), False
    eroded = cv2.erode(m, np.ones((erode_kernel, erode_kernel), np.uint8)) > 0
    dilated = cv2.dilate(m, np.ones((dilate_kernel, dilate_kernel), np.uint8)) > 0
    fell_back = not eroded.any()
    positive = m > 0 if fell_back else eroded
    negative = dilated & ~positive
    return positive, negative, fell_back


def split_subregions(region: np.ndarray, k: int) -> list[np.ndarray]:
    """Split a region into ``min(k, n_pixels)`` subregions (section 3.2).

    The region's pixels are sorted by their row-major flat index (ascending)
    and cut into nearly equal consecutive parts (sizes differ by at most one,
    larger parts first, as :func:`numpy.array_split`).

    Returns:
        list of int64 arrays of flat indices into ``region``; disjoint, covering
        the region exactly; empty list for an empty region.
    """
    flat = np.flatnonzero(np.asarray(region))  # ascending row-major order
    if flat.size == 0 or k < 1:
        return []
    return [p for p in np.array_split(flat, min(int(k), flat.size))]


def extreme_points(region: np.ndarray, similarity: np.ndarray, k: int,
                   largest: bool) -> np.ndarray:
    """One point per subregion: argmax (``largest``) or argmin of ``similarity``.

    Args:
        region: ``(S, S)`` bool; similarity: ``(S, S)`` float.

    Returns:
        ``(n, 2)`` int64 ``(row, col)`` work cells, n = ``min(k, region size)``.
        Ties take the first pixel in row-major order.
    """
    sim = np.asarray(similarity, dtype=np.float64).ravel()
    out = []
    for part in split_subregions(region, k):
        vals = sim[part]
        j = int(np.argmax(vals) if largest else np.argmin(vals))
        out.append(divmod(int(part[j]), region.shape[1]))
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def bilateral_split_column(mask: np.ndarray, rule: str = "box-centre") -> float:
    """Column (work grid, fractional) separating the left and right organ.

    ``"box-centre"``: the middle column of the mask's bounding box (the middle
    of the image for an empty mask); ``"image-midline"``: ``(W - 1) / 2``.
    """
    m = np.asarray(mask).astype(bool)
    if rule == "image-midline":
        return (m.shape[1] - 1) / 2.0
    if rule != "box-centre":
        raise ValueError(f"rule must be one of {SPLIT_RULES}; got {rule!r}")
    cols = np.flatnonzero(m.any(axis=0))
    if cols.size == 0:
        return (m.shape[1] - 1) / 2.0
    return (cols[0] + cols[-1]) / 2.0


def bilateral_points(region: np.ndarray, similarity: np.ndarray, k: int,
                     split_col: float, largest: bool) -> np.ndarray:
    """``k`` points split evenly between the two sides of ``split_col`` (C.1).

    Left (columns < split_col) gets ``k // 2``, right ``k - k // 2``; a side with
    an empty region gives its share to the other side.
    """
    cols = np.arange(region.shape[1])[None, :]
    left = region & (cols < split_col)
    right = region & (cols >= split_col)
    k_left, k_right = k // 2, k - k // 2
    if not left.any():
        k_left, k_right = 0, k
    elif not right.any():
        k_left, k_right = k, 0
    parts = [extreme_points(left, similarity, k_left, largest) if k_left else np.zeros((0, 2), np.int64),
             extreme_points(right, similarity, k_right, largest) if k_right else np.zeros((0, 2), np.int64)]
    return np.concatenate(parts, axis=0)


# ----------------------------------------------------------------------------- main entry


def generate_prompts(mask_hw: np.ndarray, similarity_hw: np.ndarray,
                     cfg: PromptConfig = PromptConfig()) -> ClassPrompts:
    """Point and box prompts for one class (``g_point`` and ``g_box``, eqs. 5-10).

    Args:
        mask_hw: ``(H, W)`` binary mask prompt in the target's image frame
            (the warped mask, or the previous SAM output during refinement).
        similarity_hw: cosine-similarity map to the class prototype, any 2D
            shape covering the same field of view (image frame or feature
            grid); resized bilinearly to the work grid.
        cfg: kernel sizes, point counts, bilateral flag.

    Returns:
        :class:`ClassPrompts` in the image frame (empty when the mask is empty).
    """
    mask_hw = np.asarray(mask_hw)
    if mask_hw.ndim != 2:
        raise ValueError(f"mask must be 2D (H, W); got shape {mask_hw.shape}")
    image_hw = (int(mask_hw.shape[0]), int(mask_hw.shape[1]))
    s = int(cfg.work_size)
    mask_w = mask_to_work(mask_hw > 0, s)
    if not mask_w.any():
        return empty_prompts()
    sim_w = map_to_work(similarity_hw, s)
    positive, negative, fell_back = candidate_regions(mask_w, cfg.erode_kernel, cfg.dilate_kernel)
    if cfg.bilateral:
        split = bilateral_split_column(mask_w, cfg.bilateral_split)
        pos_rc = bilateral_points(positive, sim_w, cfg.n_points, split, largest=True)
        neg_rc = (bilateral_points(negative, sim_w, cfg.n_points, split, largest=False)
                  if cfg.use_negatives else np.zeros((0, 2), np.int64))
    else:
        split = None
        pos_rc = extreme_points(positive, sim_w, cfg.n_points, largest=True)
        neg_rc = (extreme_points(negative, sim_w, cfg.n_points, largest=False)
                  if cfg.use_negatives else np.zeros((0, 2), np.int64))
    rc = np.concatenate([pos_rc, neg_rc], axis=0)
    labels = np.concatenate([np.ones(len(pos_rc), np.int32), np.zeros(len(neg_rc), np.int32)])
    info = {"work_pos_rc": pos_rc, "work_neg_rc": neg_rc, "split_col": split}
    return ClassPrompts(points_xy=work_rc_to_image_xy(rc, (s, s), image_hw), point_labels=labels,
                        box_xyxy=box_from_work_mask(mask_w, image_hw), eroded_fallback=fell_back,
                        info=info)
