"""Paper-size NICE-Trans warping network (Swin decoder steps) and the unchanged conv-only path."""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from oneshotsam.errors import OneShotError  # noqa: E402
from oneshotsam.methods.medpersam.nice_trans import (  # noqa: E402
    NetConfig, NiceTrans2D, count_parameters, warp_any)
from oneshotsam.presets import load_preset  # noqa: E402

PAPER_PRESETS = ("paper", "jsrt-paper", "shenzhen-paper", "camus-paper", "odontoai-paper", "buu-paper")
PAPER_PARAMS = 18_578_894  # measured; Med-PerSAM sec. 4.3 / B.3: "around 19 million parameters"

# conv-only nets pinned BEFORE the transformer option was added (same seed, same procedure):
# (net kwargs, parameter count, flow sum, flow |sum|, flow[0,0,10,20], flow[0,1,40,30])
CPU_NET = dict(enc_channels=8, dec_channels=16, n_levels=4, max_channels=64, finest_scale=1,
               convs_per_block=2, affine=True)  # the "cpu" preset's net at that time
LEGACY_CASES = [
    (CPU_NET, 218_742, -2863.051513671875, 10043.5146484375, -1.587056040763855, 0.8880648016929626),
    ({}, 1_540_958, -2747.3349609375, 9675.31640625, -1.526860237121582, 0.849947988986969),  # old paper
]

SMALL_TR = dict(enc_channels=4, dec_channels=8, max_channels=16, n_levels=3, finest_scale=0,
                transformer_depth=2, head_dim=4, window_size=4, dec_doubling=True,
                affine_only_coarsest=True)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _images(h):
    yy, xx = np.mgrid[0:h, 0:h].astype(np.float32) / h
    mov = np.exp(-((yy - 0.45) ** 2 + (xx - 0.5) ** 2) / 0.02) + 0.3 * np.sin(6 * xx) * yy
    fix = np.exp(-((yy - 0.55) ** 2 + (xx - 0.45) ** 2) / 0.03) + 0.3 * np.sin(6 * xx + 0.3) * yy

    def t(a):
        return torch.from_numpy(((a - a.min()) / (a.max() - a.min())).astype(np.float32))[None, None]
    return t(mov), t(fix)


@pytest.mark.parametrize("net_kwargs,n_params,f_sum,f_abs,f_00,f_11", LEGACY_CASES, ids=["cpu", "old-paper"])
def test_conv_only_output_unchanged(net_kwargs, n_params, f_sum, f_abs, f_00, f_11):
    torch.manual_seed(0)
    net = NiceTrans2D(NetConfig(**net_kwargs))
    assert net.cfg.transformer_depth == 0 and net.affine_stage is None
    assert count_parameters(net) == n_params
    mov, fix = _images(64)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    ((warp_any(mov, net(mov, fix)) - fix) ** 2).mean().backward()
    opt.step()
    with torch.no_grad():
        flow = net(mov, fix)
    got = [float(flow.sum()), float(flow.abs().sum()), float(flow[0, 0, 10, 20]), float(flow[0, 1, 40, 30])]
    assert got == pytest.approx([f_sum, f_abs, f_00, f_11], rel=1e-4, abs=1e-5)


def test_paper_presets_share_the_19m_network():
    nets = {name: load_preset("medpersam", name)["net"] for name in PAPER_PRESETS}
    assert all(v == nets["paper"] for v in nets.values())
    cfg = NetConfig(**nets["paper"])
    # B.3: encoder 16 / decoder 32 channels, 1 affine + 4 deformable registration steps
    assert (cfg.enc_channels, cfg.dec_channels, cfg.transformer_depth) == (16, 32, 4)
    net = NiceTrans2D(cfg)
    assert net.scales == [3, 2, 1, 0] and net.affine_stage is not None
    n = count_parameters(net)
    assert n == PAPER_PARAMS
    assert abs(n - 19e6) <= 0.1 * 19e6


@pytest.fixture(scope="module")
def paper_net():
    torch.manual_seed(0)
    return NiceTrans2D(NetConfig(**load_preset("medpersam", "paper")["net"]))


def test_paper_net_identity_at_init_and_train_step_256(paper_net):
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    mov, fix = torch.rand(1, 1, 256, 256, generator=gen), torch.rand(2, 1, 256, 256, generator=gen)
    with torch.no_grad():
        flow = paper_net(mov, fix)
    assert flow.shape == (2, 2, 256, 256) and torch.count_nonzero(flow) == 0  # identity warp
    assert torch.equal(paper_net._last_affine, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(2, 2, 3))
    paper_net.zero_grad()
    t0 = time.perf_counter()
    flow = paper_net(mov, fix)
    ((warp_any(mov, flow) - fix) ** 2).mean().backward()
    seconds = time.perf_counter() - t0
    print(f"paper net forward+backward 256x256 batch 2, 1 thread: {seconds:.2f} s")
    grads = [p.grad for p in paper_net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert all(float(h.weight.grad.abs().sum()) > 0 for h in paper_net.flow_heads)
    assert float(paper_net.affine_head[-1].weight.grad.abs().sum()) > 0


def test_gradients_reach_every_swin_block():
    torch.manual_seed(1)
    net = NiceTrans2D(NetConfig(**SMALL_TR))
    with torch.no_grad():  # leave identity init so the heads pass gradient to the stages
        for h in net.flow_heads:
            h.weight.normal_(0, 1e-2)
        net.affine_head[-1].weight.normal_(0, 1e-2)
    mov, fix = _images(32)
    net(mov, fix).square().mean().backward()
    stages = [net.affine_stage] + [b for b in net.dec_blocks if hasattr(b, "stage")]
    assert len(stages) == 3  # affine step + deformable steps at scales 2, 1 (scale 0: conv)
    for st in stages:
        for blk in st.stage.blocks:  # regular and shifted windows
            assert float(blk.attn.qkv.weight.grad.abs().sum()) > 0


# (extra NetConfig kwargs, input H, W): transformer steps on grids not divisible by the window
SHAPE_CASES = [
    ({}, 32, 32),
    ({}, 48, 80),
    ({"affine": False}, 40, 24),
    ({"dec_doubling": False, "affine_only_coarsest": False, "finest_scale": 1}, 32, 56),
]


@pytest.mark.parametrize("extra,h,w", SHAPE_CASES)
def test_transformer_net_identity_at_init_any_shape(extra, h, w):
    torch.manual_seed(0)
    net = NiceTrans2D(NetConfig(**{**SMALL_TR, **extra}))
    mov, fix = torch.rand(1, 1, h, w), torch.rand(3, 1, h, w)
    with torch.no_grad():
        flow = net(mov, fix)
    assert flow.shape == (3, 2, h, w) and torch.count_nonzero(flow) == 0


@pytest.mark.parametrize("u_row,u_col,expected", [(3.0, 0.0, (7, 11, 20, 24)), (0.0, 2.0, (10, 14, 18, 22))])
def test_transformer_net_keeps_flow_convention(u_row, u_col, expected):
    # only the last (finest) head's bias is set: the network flow is that constant
    torch.manual_seed(0)
    net = NiceTrans2D(NetConfig(**SMALL_TR))
    with torch.no_grad():
        net.flow_heads[-1].bias.copy_(torch.tensor([u_row, u_col]))
        img = torch.zeros(1, 1, 32, 32)
        img[..., 10:15, 20:25] = 1.0
        flow = net(img, img)
    assert torch.allclose(flow[0, 0], torch.full((32, 32), u_row), atol=1e-5)
    assert torch.allclose(flow[0, 1], torch.full((32, 32), u_col), atol=1e-5)
    a = warp_any(img, flow)[0, 0].numpy() > 0.5  # warped[r, c] = img[r + u_row, c + u_col]
    rows, cols = np.flatnonzero(a.any(1)), np.flatnonzero(a.any(0))
    assert (rows[0], rows[-1], cols[0], cols[-1]) == expected


@pytest.mark.parametrize("bad", [
    {"transformer_depth": -1}, {"head_dim": 0}, {"window_size": 0}, {"mlp_ratio": 0.0},
    {"n_levels": 1, "finest_scale": 1, "affine_only_coarsest": True},
])
def test_bad_net_settings_raise(bad):
    with pytest.raises(OneShotError):
        NetConfig(**bad)
