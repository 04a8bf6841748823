"""Flow convention, identity initialisation and augmentation of the Med-PerSAM warping model."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from oneshotsam.methods.medpersam.nice_trans import (  # noqa: E402
    NetConfig, NiceTrans2D, affine_to_flow, count_parameters, flow_to_normalized, make_warp,
    upsample_flow, warp_any)


def _square_image(h=32, w=32, r0=10, c0=20, size=5):
    img = torch.zeros(1, 1, h, w)
    img[..., r0:r0 + size, c0:c0 + size] = 1.0
    return img


def _bbox(t):
    a = t[0, 0].numpy() > 0.5
    rows, cols = np.flatnonzero(a.any(1)), np.flatnonzero(a.any(0))
    return rows[0], rows[-1], cols[0], cols[-1]


# (flow_row, flow_col, expected bbox (r0, r1, c0, c1)) for a square at rows 10-14, cols 20-24:
# warped[r, c] = img[r + u_row, c + u_col] -> content moves by (-u_row, -u_col)
SHIFT_CASES = [
    (0.0, 0.0, (10, 14, 20, 24)),
    (3.0, 0.0, (7, 11, 20, 24)),    # +3 rows: content moves UP 3 px
    (-2.0, 0.0, (12, 16, 20, 24)),  # -2 rows: DOWN 2 px
    (0.0, 2.0, (10, 14, 18, 22)),   # +2 cols: LEFT 2 px
    (1.0, -4.0, (9, 13, 24, 28)),
]


@pytest.mark.parametrize("u_row,u_col,expected", SHIFT_CASES)
def test_constant_flow_shifts_by_known_pixels(u_row, u_col, expected):
    img = _square_image()
    flow = torch.zeros(1, 2, 32, 32)
    flow[:, 0], flow[:, 1] = u_row, u_col
    assert _bbox(make_warp()(img, flow)) == expected  # MONAI Warp
    assert _bbox(warp_any(img, flow)) == expected     # grid_sample path used at full res


def test_flow_applies_to_moving_image_of_other_size():
    # a flow on a 32x32 grid, upsampled to 63x63, moves the 63x63 image by twice the pixels
    img = _square_image(63, 63, 20, 40, 9)
    flow = torch.zeros(1, 2, 32, 32)
    flow[:, 0] = 2.0
    up = upsample_flow(flow, (63, 63))
    assert torch.allclose(up[:, 0], torch.full((1, 63, 63), 4.0))
    r0, r1, c0, c1 = _bbox(warp_any(img, up))
    assert (r0, r1, c0, c1) == (16, 24, 40, 48)


def test_flow_to_normalized_units_and_order():
    flow = torch.zeros(1, 2, 11, 21)
    flow[:, 0], flow[:, 1] = 5.0, 10.0  # half the height, half the width
    n = flow_to_normalized(flow)
    assert n.shape == (1, 11, 21, 2)
    assert torch.allclose(n[..., 0], torch.ones(1, 11, 21))  # x first (grid_sample order)
    assert torch.allclose(n[..., 1], torch.ones(1, 11, 21))


def test_affine_to_flow_identity_and_translation():
    eye = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]])
    assert torch.allclose(affine_to_flow(eye, (9, 17)), torch.zeros(1, 2, 9, 17))
    t = eye.clone()
    t[0, 0, 2] = 2.0 * 3 / 16  # +3 columns on a 17-wide grid
    f = affine_to_flow(t, (9, 17))
    assert torch.allclose(f[:, 1], torch.full((1, 9, 17), 3.0), atol=1e-5)
    assert torch.allclose(f[:, 0], torch.zeros(1, 9, 17), atol=1e-5)


def test_untrained_network_is_identity():
    torch.manual_seed(0)
    net = NiceTrans2D(NetConfig(enc_channels=4, dec_channels=8, max_channels=16))
    mov, fix = torch.rand(1, 1, 64, 64), torch.rand(3, 1, 64, 64)
    flow = net(mov, fix)
    assert flow.shape == (3, 2, 64, 64)
    assert torch.count_nonzero(flow) == 0
    assert torch.allclose(net.warp(mov.expand(3, -1, -1, -1), flow), mov.expand(3, -1, -1, -1), atol=1e-5)


def test_paper_size_parameter_count_is_reported():
    n = count_parameters(NiceTrans2D(NetConfig()))
    assert 1_000_000 < n < 40_000_000


def test_augmentation_zero_ranges_is_identity_and_mask_stays_onehot():
    from oneshotsam.methods.medpersam.augment import AugConfig, augment_pair
    img = torch.rand(1, 1, 32, 32)
    oh = torch.zeros(1, 3, 32, 32)
    oh[:, 0] = 1
    oh[:, 0, 5:15, 5:15], oh[:, 1, 5:15, 5:15] = 0, 1
    oh[:, 0, 20:30, 2:9], oh[:, 2, 20:30, 2:9] = 0, 1
    none = AugConfig(rotation_deg=(0, 0), translation=(0, 0), scaling=(1, 1), shear_deg=(0, 0),
                     brightness=0, contrast=0, crop_p=0)
    a, m = augment_pair(img, oh, 2, none, torch.Generator().manual_seed(0))
    assert torch.allclose(a, img.expand(2, -1, -1, -1), atol=1e-5)
    assert torch.equal(m, oh.expand(2, -1, -1, -1))
    a, m = augment_pair(img, oh, 4, AugConfig(), torch.Generator().manual_seed(1))
    assert a.shape == (4, 1, 32, 32) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(m.sum(1), torch.ones(4, 32, 32))  # still one-hot
    a2, _ = augment_pair(img, oh, 4, AugConfig(), torch.Generator().manual_seed(1))
    assert torch.equal(a, a2)  # seeded
