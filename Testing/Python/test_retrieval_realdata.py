"""Bounded (256-point) OT retrieval chooses what full exact EMD chooses, on
feature sets taken from REAL images (CVC-ClinicDB polyps, 4D-Lung tumour).

Features are a hand-made per-cell descriptor of the real pixels (no SAM
weights exist here): on a 64-cell-wide grid, each cell's 8-bin intensity
histogram per channel plus its mean. Candidates are the target's ground-truth
mask eroded / dilated / shifted, as P2SAM's candidates under- and over-segment.
"""

from __future__ import annotations

import numpy as np
import pytest

from oneshotsam.methods.retrieval import retrieve


def _read(path):
    import cv2

    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert a is not None, path
    return a[..., ::-1] if a.ndim == 3 else a


def _cell_features(img, cell):
    img = img.astype(np.float32) / 255.0
    if img.ndim == 2:
        img = img[..., None]
    h, w = (img.shape[0] // cell) * cell, (img.shape[1] // cell) * cell
    blocks = img[:h, :w].reshape(h // cell, cell, w // cell, cell, img.shape[2])
    blocks = blocks.transpose(0, 2, 1, 3, 4).reshape(h // cell, w // cell, cell * cell, -1)
    bins = np.linspace(0, 1, 9)
    feats = [np.stack([(blocks[..., c] >= lo) & (blocks[..., c] < hi) for lo, hi in
                       zip(bins[:-1], bins[1:])], -1).mean(2) for c in range(img.shape[2])]
    return np.concatenate(feats + [blocks.mean(2)], -1)         # (gh, gw, F)


def _cells(mask, cell):
    h, w = (mask.shape[0] // cell) * cell, (mask.shape[1] // cell) * cell
    return mask[:h, :w].reshape(h // cell, cell, w // cell, cell).max(axis=(1, 3)) > 0


def _candidates(mask_cells):
    from scipy import ndimage

    out = [ndimage.binary_erosion(mask_cells, iterations=2), mask_cells]
    out += [ndimage.binary_dilation(mask_cells, iterations=k) for k in (2, 3)]
    out.append(np.roll(mask_cells, 6, axis=1))
    return [c for c in out if c.any()]


CASES = [  # (dataset, reference image, reference mask, target image, target mask, cell px)
    ("cvc", "images/01.png", "masks/01.png", "images/10.png", "masks/10.png", 6),
    ("cvc", "images/01.png", "masks/01.png", "images/20.png", "masks/20.png", 6),
    ("lung4d", "ref_image.png", "ref_mask.png", "test_image.png", "test_mask.png", 8),
]


@pytest.mark.data
@pytest.mark.parametrize("ds, ri, rm, ti, tm, cell", CASES)
def test_bounded_choice_matches_full_on_real_images(data_root, ds, ri, rm, ti, tm, cell):
    root = data_root / ds
    rf, tf = _cell_features(_read(root / ri), cell), _cell_features(_read(root / ti), cell)
    ref = rf[_cells(_read(root / rm), cell)]
    cands = [tf[c] for c in _candidates(_cells(_read(root / tm), cell))]
    assert max(len(c) for c in cands) > 256 or len(ref) > 256 or ds == "lung4d"
    full = retrieve(ref, cands, max_points=0)
    fast = retrieve(ref, cands, max_points=256)
    assert fast.best == full.best
