"""Dense optical flow between two adjacent slices, and labels carried along it.

A within-volume walk (:mod:`oneshotsam.volume.chain`) predicts slice ``dst`` from its
finished neighbour ``src``. Between adjacent slices the trained warp of
:mod:`oneshotsam.volume.warpvol` moves a contour by less than a pixel (docs/corrections.md,
"The walk"): a structure whose cross-section drifts sideways from slice to slice is left
behind. Gunnar Farnebäck's two-frame motion estimation (polynomial expansion over an
image pyramid; "Two-Frame Motion Estimation Based on Polynomial Expansion", SCIA 2003),
as OpenCV implements it (``cv2.calcOpticalFlowFarneback``), follows such a drift; the
walk carries its labels along that flow instead (``VolumeWarpConfig.walk_flow``).

Frames: ``(H, W)`` native slice grids (rows, columns); a flow is ``(H, W, 2)`` float32
in pixels, ``[..., 0]`` along columns (x) and ``[..., 1]`` along rows (y), and maps each
``dst`` pixel to where it lies on ``src``: ``src[y + fy, x + fx] ~ dst[y, x]``. Numpy at
import time (OpenCV inside).
"""

from __future__ import annotations

import numpy as np

#: pyramid levels and iterations per level of the Farnebäck flow (OpenCV's tutorial values)
FLOW_LEVELS = 3
FLOW_ITERATIONS = 3


def _to_u8(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scaled = (np.asarray(a, dtype=np.float32) - lo) / max(hi - lo, 1e-6)
    return np.clip(scaled * 255.0, 0, 255).astype(np.uint8)


def slice_flow(src_plane: np.ndarray, dst_plane: np.ndarray, window_px: int) -> np.ndarray:
    """``(H, W, 2)`` flow from ``dst_plane`` back to ``src_plane`` (module docstring).

    Both planes are mapped to 8 bits by one window (their joint 0.5 / 99.5 percentiles),
    so a change of contrast between them is not taken for motion. ``window_px``: the
    averaging window of the flow (odd, >= 3; larger = smoother, follows larger motion).
    """
    import cv2

    if int(window_px) < 3 or int(window_px) % 2 == 0:
        raise ValueError(f"window_px must be odd and >= 3, got {window_px}")
    src = np.asarray(src_plane, dtype=np.float32)
    dst = np.asarray(dst_plane, dtype=np.float32)
    if src.shape != dst.shape or src.ndim != 2:
        raise ValueError(f"slice_flow needs two planes of one (H, W) grid, got {src.shape} and {dst.shape}")
    lo, hi = np.percentile(np.concatenate([src.ravel(), dst.ravel()]), [0.5, 99.5])
    return cv2.calcOpticalFlowFarneback(_to_u8(dst, lo, hi), _to_u8(src, lo, hi), None, 0.5,
                                        FLOW_LEVELS, int(window_px), FLOW_ITERATIONS, 5, 1.2, 0)


def pull_labels(labels: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``labels`` of the ``src`` grid carried onto the ``dst`` grid along ``flow``
    (nearest neighbour; 0 outside ``src``); same shape and dtype as ``labels``."""
    import cv2

    lab = np.asarray(labels)
    h, w = lab.shape
    if flow.shape != (h, w, 2):
        raise ValueError(f"flow {flow.shape} does not match labels {lab.shape}")
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    out = cv2.remap(lab.astype(np.float32), gx + flow[..., 0], gy + flow[..., 1],
                    cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.astype(lab.dtype)


__all__ = ["FLOW_LEVELS", "FLOW_ITERATIONS", "slice_flow", "pull_labels"]
