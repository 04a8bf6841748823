"""Med-PerSAM prompt generation (section 3.2, appendix C.1) on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest

from oneshotsam.methods.medpersam.prompts import (
    PromptConfig,
    bilateral_split_column,
    box_from_work_mask,
    candidate_regions,
    extreme_points,
    generate_prompts,
    mask_to_work,
    split_subregions,
    work_rc_to_image_xy,
)


def _rect(shape, r0, r1, c0, c1):
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def _disk(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


# ---------------------------------------------------------------- subregions

# (region, k, expected part sizes)
SPLIT_CASES = [
    (_rect((8, 8), 2, 4, 2, 6), 4, [2, 2, 2, 2]),      # 8 pixels / 4
    (_rect((8, 8), 2, 4, 2, 6), 3, [3, 3, 2]),         # 8 / 3 -> larger parts first
    (_rect((8, 8), 2, 3, 2, 4), 5, [1, 1]),            # fewer pixels than k
    (np.zeros((8, 8), bool), 5, []),                   # empty region
]


@pytest.mark.parametrize("region,k,sizes", SPLIT_CASES)
def test_split_subregions_sizes_disjoint_cover(region, k, sizes):
    parts = split_subregions(region, k)
    assert [len(p) for p in parts] == sizes
    allidx = np.concatenate(parts) if parts else np.zeros(0, int)
    assert len(np.unique(allidx)) == len(allidx)  # disjoint
    np.testing.assert_array_equal(np.sort(allidx), np.flatnonzero(region))  # exact cover
    for a, b in zip(parts[:-1], parts[1:]):  # consecutive in row-major order
        assert a.max() < b.min()


def test_split_subregions_row_major_order():
    # 2 rows x 3 cols block -> 2 parts = the two rows (row-major index order)
    region = _rect((5, 5), 1, 3, 1, 4)
    p0, p1 = split_subregions(region, 2)
    assert sorted(divmod(int(i), 5)[0] for i in p0) == [1, 1, 1]
    assert sorted(divmod(int(i), 5)[0] for i in p1) == [2, 2, 2]


# ---------------------------------------------------------------- regions

def test_candidate_regions_square():
    m = _rect((20, 20), 5, 15, 5, 15)  # 10x10 square
    pos, neg, fb = candidate_regions(m, 3, 3)
    assert not fb
    np.testing.assert_array_equal(pos, _rect((20, 20), 6, 14, 6, 14))
    ring = _rect((20, 20), 4, 16, 4, 16) & ~_rect((20, 20), 6, 14, 6, 14)
    np.testing.assert_array_equal(neg, ring)
    assert not (pos & neg).any()


def test_candidate_regions_thin_structure_falls_back_to_mask():
    m = _rect((20, 20), 9, 11, 2, 18)  # 2 px thin bar, erodes away with 7x7
    pos, neg, fb = candidate_regions(m, 7, 7)
    assert fb
    np.testing.assert_array_equal(pos, m)
    assert neg.any() and not (neg & m).any()


def test_candidate_regions_empty():
    pos, neg, fb = candidate_regions(np.zeros((10, 10), bool), 3, 3)
    assert not pos.any() and not neg.any() and not fb


# ---------------------------------------------------------------- points

def test_extreme_points_pick_argmax_and_argmin_per_subregion():
    region = _rect((4, 4), 0, 2, 0, 4)  # rows 0-1 -> two subregions (one per row)
    sim = np.arange(16, dtype=float).reshape(4, 4)
    sim[0, 1] = 100.0
    sim[1, 2] = -100.0
    np.testing.assert_array_equal(extreme_points(region, sim, 2, largest=True), [[0, 1], [1, 3]])
    np.testing.assert_array_equal(extreme_points(region, sim, 2, largest=False), [[0, 0], [1, 2]])


@pytest.mark.parametrize("shape,mask_fn,cfg", [
    ((256, 256), lambda s: _disk(s, 128, 120, 50), PromptConfig(7, 7, 5)),
    ((512, 512), lambda s: _disk(s, 200, 300, 90), PromptConfig(7, 7, 5)),   # image 2x the work grid
    ((300, 200), lambda s: _rect(s, 50, 250, 40, 160), PromptConfig(5, 5, 5)),  # non-square image
    ((256, 256), lambda s: _rect(s, 100, 160, 30, 220), PromptConfig(3, 3, 4)),
])
def test_points_inside_their_regions(shape, mask_fn, cfg):
    rng = np.random.default_rng(0)
    mask = mask_fn(shape)
    sim = rng.uniform(-1, 1, size=(16, 16))  # feature-grid-sized similarity map
    p = generate_prompts(mask, sim, cfg)
    assert p.n_positive == cfg.n_points and p.n_negative == cfg.n_points
    pos_w, neg_w, fb = candidate_regions(mask_to_work(mask, 256), cfg.erode_kernel, cfg.dilate_kernel)
    assert not fb
    for r, c in p.info["work_pos_rc"]:
        assert pos_w[r, c]
    for r, c in p.info["work_neg_rc"]:
        assert neg_w[r, c]
    # in the image frame: positives inside the mask, negatives near it
    xy = np.rint(p.points_xy).astype(int)
    for (x, y), lab in zip(xy, p.point_labels):
        assert 0 <= x < shape[1] and 0 <= y < shape[0]
        if lab == 1:
            assert mask[y, x]
    # box = mask bounding box (to within one work cell)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    cell = max(shape[0], shape[1]) / 256
    np.testing.assert_allclose(p.box_xyxy, [cols[0], rows[0], cols[-1], rows[-1]], atol=cell + 1)
    assert p.point_labels.dtype == np.int32 and p.points_xy.dtype == np.float32


def test_positive_is_global_max_of_its_subregion():
    mask = _rect((256, 256), 50, 150, 50, 150)
    sim = np.zeros((256, 256), np.float32)
    sim[60, 70] = 1.0      # in the first subregion (top rows of the eroded square)
    sim[140, 140] = -1.0   # bottom of the ring? no: inside the mask -> not a negative
    sim[47, 100] = -2.0    # in the ring above the square (ring is rows 47..52 with K=7)
    p = generate_prompts(mask, sim, PromptConfig(7, 7, 5))
    assert [60, 70] in p.info["work_pos_rc"].tolist()
    assert [47, 100] in p.info["work_neg_rc"].tolist()


def test_empty_mask_gives_no_prompts():
    p = generate_prompts(np.zeros((64, 64), bool), np.zeros((8, 8)), PromptConfig())
    assert p.empty and p.points_xy.shape == (0, 2) and p.box_xyxy is None


def test_tiny_mask_fallback_and_fewer_points():
    mask = np.zeros((256, 256), bool)
    mask[100:102, 100:102] = True  # 4 pixels: erosion by 7x7 empties it
    p = generate_prompts(mask, np.zeros((256, 256)), PromptConfig(7, 7, 5))
    assert p.eroded_fallback
    assert p.n_positive == 4  # one per pixel
    assert all(mask[int(round(y)), int(round(x))] for (x, y), l in zip(p.points_xy, p.point_labels) if l)
    assert p.n_negative == 5


def test_full_mask_has_no_negatives():
    p = generate_prompts(np.ones((32, 32), bool), np.zeros((32, 32)), PromptConfig(3, 3, 5))
    assert p.n_positive == 5 and p.n_negative == 0


# ---------------------------------------------------------------- bilateral

def test_bilateral_two_lungs_points_split_evenly():
    shape = (256, 256)
    mask = _rect(shape, 40, 200, 30, 110) | _rect(shape, 40, 200, 150, 230)
    cfg = PromptConfig(7, 7, 10, bilateral=True)
    p = generate_prompts(mask, np.random.default_rng(1).normal(size=shape), cfg)
    split = p.info["split_col"]
    assert 110 <= split <= 150  # between the two components
    for rc in (p.info["work_pos_rc"], p.info["work_neg_rc"]):
        assert len(rc) == 10
        assert (rc[:, 1] < split).sum() == 5 and (rc[:, 1] >= split).sum() == 5


def test_bilateral_split_column_cases():
    two = _rect((64, 64), 10, 50, 4, 20) | _rect((64, 64), 10, 50, 40, 60)
    assert bilateral_split_column(two) == pytest.approx((4 + 59) / 2)   # box centre
    assert bilateral_split_column(two, "image-midline") == pytest.approx(31.5)
    one = _rect((64, 64), 10, 50, 10, 31)
    assert bilateral_split_column(one) == pytest.approx(20.0)
    assert bilateral_split_column(np.zeros((8, 10), bool)) == pytest.approx(4.5)
    with pytest.raises(ValueError):
        bilateral_split_column(two, "largest")


def _dental_arch(shape=(256, 256), n_teeth=16, molar_scale=1.3):
    """A synthetic upper arch: ``n_teeth`` separate ellipses on a parabola
    symmetric about column 127.5, molars (the ends) much larger than incisors,
    so the two largest components are the two molars of the SAME side when one
    side's molars are drawn larger (as on a tilted radiograph)."""
    import cv2

    h, w = shape
    m = np.zeros(shape, np.uint8)
    xs = np.linspace(40, 215, n_teeth)
    for i, x in enumerate(xs):
        y = 60 + 0.012 * (x - 127.5) ** 2
        t = abs(i - (n_teeth - 1) / 2) / ((n_teeth - 1) / 2)      # 0 incisor .. 1 molar
        r = 3 + 3 * molar_scale * t ** 2
        if x < 127.5 and t > 0.8:                                   # left molars drawn larger
            r *= 1.4
        cv2.ellipse(m, (int(round(x)), int(round(y))), (int(r), int(r * 1.3)), 0, 0, 360, 1, -1)
    return m.astype(bool)


def test_bilateral_split_on_a_multi_tooth_arch():
    import cv2

    arch = _dental_arch()
    n, lab, stats, cents = cv2.connectedComponentsWithStats(arch.astype(np.uint8), connectivity=8)
    assert n - 1 == 16                                              # 16 separate teeth
    two_largest = cents[1:][np.argsort(-stats[1:, cv2.CC_STAT_AREA])[:2], 0]
    assert two_largest.max() < 60    # both left molars: a split between them would sit at ~46
    split = bilateral_split_column(arch)
    assert abs(split - 127.5) <= 2.0                                # the arch's midline
    cfg = PromptConfig(3, 3, 10, bilateral=True)
    p = generate_prompts(arch, np.random.default_rng(0).normal(size=arch.shape), cfg)
    assert abs(p.info["split_col"] - 127.5) <= 2.0
    for rc in (p.info["work_pos_rc"], p.info["work_neg_rc"]):
        assert (rc[:, 1] < p.info["split_col"]).sum() == 5
        assert (rc[:, 1] >= p.info["split_col"]).sum() == 5


def test_bilateral_one_sided_gives_all_points_to_that_side():
    mask = _rect((256, 256), 40, 200, 150, 230)
    cfg = PromptConfig(7, 7, 10, bilateral=True)
    p = generate_prompts(mask, np.zeros((256, 256)), cfg)
    assert p.n_positive == 10 and p.n_negative == 10


# ---------------------------------------------------------------- frames

def test_work_to_image_frame_and_box():
    np.testing.assert_allclose(work_rc_to_image_xy([[0, 0], [255, 255]], (256, 256), (512, 512)),
                               [[0.5, 0.5], [510.5, 510.5]])
    np.testing.assert_allclose(work_rc_to_image_xy([[3, 7]], (256, 256), (256, 256)), [[7, 3]])
    m = _rect((256, 256), 10, 21, 30, 41)
    np.testing.assert_allclose(box_from_work_mask(m, (256, 256)), [30, 10, 40, 20])
    np.testing.assert_allclose(box_from_work_mask(m, (512, 1024)), [120, 20, 163, 41])


def test_input_mask_not_modified():
    mask = _disk((128, 128), 64, 64, 30)
    sim = np.random.default_rng(0).normal(size=(128, 128))
    m0, s0 = mask.copy(), sim.copy()
    generate_prompts(mask, sim, PromptConfig(3, 3, 5))
    np.testing.assert_array_equal(mask, m0)
    np.testing.assert_array_equal(sim, s0)


# ---------------------------------------------------------------- real masks (JSRT, C.1 settings)

@pytest.mark.data
@pytest.mark.parametrize("case", ["JPCLN001", "JPCLN002", "JPCNN010"])
def test_jsrt_masks_prompt_geometry(data_root, case):
    """Prompts from real lung / heart masks (512 px, C.1: 7x7 at 256, 5 points)."""
    import cv2

    path = data_root / "jsrt" / "labels" / f"{case}.png"
    if not path.exists():
        pytest.skip(f"{path} not found")
    lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    sim = np.random.default_rng(0).uniform(-1, 1, size=(64, 64))
    cfg = PromptConfig(7, 7, 5)
    for v in (1, 2, 3):
        mask = lab == v
        p = generate_prompts(mask, sim, cfg)
        assert p.n_positive == 5 and p.n_negative == 5 and not p.eroded_fallback
        pos_w, neg_w, _ = candidate_regions(mask_to_work(mask, 256), 7, 7)
        assert all(pos_w[r, c] for r, c in p.info["work_pos_rc"])
        assert all(neg_w[r, c] for r, c in p.info["work_neg_rc"])
        for (x, y), lab_pt in zip(np.rint(p.points_xy).astype(int), p.point_labels):
            if lab_pt == 1:  # positives sit well inside the organ: 3 px margin at 512 px
                assert mask[y - 3:y + 4, x - 3:x + 4].all()
    # both lungs as one bilateral class (Shenzhen style, 10 points split by side)
    lungs = np.isin(lab, (1, 2))
    p = generate_prompts(lungs, sim, PromptConfig(7, 7, 10, bilateral=True))
    split = p.info["split_col"]
    right_lung_cols = np.flatnonzero((lab == 1).any(0))  # patient's right = image left
    left_lung_cols = np.flatnonzero((lab == 2).any(0))
    assert right_lung_cols.mean() / 2 < split < left_lung_cols.mean() / 2
    assert (p.info["work_pos_rc"][:, 1] < split).sum() == 5
