"""The ``field`` warping model: each target's affine + displacement pyramid, optimised
directly by the one training loop (instance optimisation), and the AdamW that loop uses."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from oneshotsam.errors import OneShotError
from oneshotsam.methods.medpersam.flow_field import (
    UNIT_DIVISOR,
    FieldConfig,
    FlowField2D,
    start_candidates,
)
from oneshotsam.methods.medpersam.warp_config import WarpConfig
from oneshotsam.methods.medpersam.warp_fit import AdamW
from oneshotsam.methods.medpersam.warp_train import WarpSession
from oneshotsam.types import Image2D

S = 32


def _field(n=2, **cfg):
    return FlowField2D(FieldConfig(**cfg), n, S)


def _grid():
    return torch.zeros(1, 1, S, S)


# (what is set, index asked, expected constant flow (row, col) in working pixels)
CASES = [
    ("nothing", [0, 1], (0.0, 0.0)),
    ("x translation 0.5 of target 1", [1], (0.0, 0.5 * (S - 1) / 2)),
    ("x translation 0.5 of target 1, asked for target 0", [0], (0.0, 0.0)),
    ("displacement unit on the coarsest row grid of target 0", [0], (S / UNIT_DIVISOR, 0.0)),
]


@pytest.mark.parametrize("what, index, expected", CASES, ids=[c[0] for c in CASES])
def test_flow_of_a_hand_set_field(what, index, expected):
    f = _field()
    with torch.no_grad():
        if what.startswith("x translation"):
            f.affine_res[1, 0, 2] = 0.5
        if what.startswith("displacement"):
            f.grids[0][0, 0] = 1.0
    flow = f(_grid(), _grid().expand(len(index), -1, -1, -1), index)
    assert flow.shape == (len(index), 2, S, S)
    assert torch.allclose(flow[:, 0], torch.full_like(flow[:, 0], expected[0]), atol=1e-5)
    assert torch.allclose(flow[:, 1], torch.full_like(flow[:, 1], expected[1]), atol=1e-5)


def test_affine_stage_gives_the_displacement_no_gradient():
    f = _field(n=1, affine_steps=5)
    fixed = torch.rand(1, 1, S, S)
    for step, deformable in ((0, False), (4, False), (5, True)):
        f.set_stage(step)
        f.zero_grad(set_to_none=True)
        f(_grid(), fixed, [0]).square().sum().backward()
        assert f.affine_res.grad is not None
        assert all((g.grad is not None) == deformable for g in f.grids), step


# step -> (affine only?, pyramid levels in use) with affine_steps 10, level_steps 5, 3 levels
STAGES = [(0, False, 3), (9, False, 3), (10, True, 1), (14, True, 1), (15, True, 2), (20, True, 3),
          (99, True, 3)]


@pytest.mark.parametrize("step, deformable, levels", STAGES)
def test_levels_join_coarse_to_fine(step, deformable, levels):
    f = _field(n=1, affine_steps=10, level_steps=5)
    f.set_stage(step)
    assert (f.deformable, f.active_levels) == (deformable, levels)
    f.zero_grad(set_to_none=True)
    f(_grid(), torch.rand(1, 1, S, S), [0]).square().sum().backward()
    used = [g.grad is not None for g in f.grids]
    assert used == [deformable and i < levels for i in range(3)]
    f.all_stages()
    assert f.deformable and f.active_levels == 3


@pytest.mark.parametrize("bad", [{"scales": (-1,)}, {"affine_steps": -2}, {"level_steps": -1},
                                 {"search_shift": -0.1}, {"search_step": 0.0}, {"search_scales": ()},
                                 {"search_scales": (1.0, 0.0)}])
def test_bad_field_settings_are_refused(bad):
    with pytest.raises(OneShotError, match="field"):
        FieldConfig(**bad)


# (shift, step, scales) -> number of candidates; the identity is always first
STARTS = [
    ((0.0, 0.1, (1.0,)), 1),
    ((0.1, 0.1, (1.0,)), 9),
    ((0.2, 0.1, (1.0,)), 25),
    ((0.2, 0.1, (0.9, 1.0, 1.1)), 75),
    ((0.5, 0.25, (0.8, 1.0)), 50),
]


@pytest.mark.parametrize("args, n", STARTS, ids=[str(a) for a, _ in STARTS])
def test_start_candidates(args, n):
    shift, step, scales = args
    c = start_candidates(FieldConfig(search_shift=shift, search_step=step, search_scales=scales))
    assert c.shape == (n, 2, 3)
    assert torch.equal(c[0], torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    assert len({tuple(x.flatten().tolist()) for x in c}) == n  # no duplicates
    assert float(c[:, :, 2].abs().max()) == pytest.approx(shift)


def test_search_gives_a_moved_target_a_second_start_and_keeps_the_better_end():
    # no crop: the working grid is the whole image; target 0 is the reference moved by
    # a candidate affine (pull convention), target 1 the reference itself
    rng = np.random.default_rng(0)
    lab = _disk((48, 44))
    img = (40 + 150 * lab + 30 * (np.mgrid[:96, :96][1] > 70)).astype(np.float32)
    img = img + rng.normal(0, 2, img.shape).astype(np.float32)
    theta = torch.tensor([[[1.0, 0.0, 0.3], [0.0, 1.0, -0.2]]])
    grid = torch.nn.functional.affine_grid(theta, [1, 1, 96, 96], align_corners=True)
    moved = torch.nn.functional.grid_sample(torch.from_numpy(img)[None, None], grid, align_corners=True,
                                            padding_mode="border")[0, 0].numpy()
    base = {"model": "field", "resolution": 64, "roi_margin": None, "min_steps": 1, "max_steps": 1,
            "threads": 1}
    targets = [Image2D(moved / 255), Image2D(img / 255)]
    ref = Image2D(img / 255)
    on = WarpConfig.from_dict({**base, "field": {"search_shift": 0.4, "search_step": 0.1}})
    sess = WarpSession(on, ref, lab, targets)
    # slots: target 0 and 1 from the identity, then target 0 from the searched start
    assert sess.start_search == {"candidates": 81, "two_starts": 1}
    assert sess.slot_target == [0, 1, 0] and sess.batch() == 3
    eye = torch.eye(2, 3)
    assert torch.equal(sess.net.affine_res[:2], torch.zeros(2, 2, 3))
    assert torch.allclose(sess.net.affine_res[2] + eye, theta[0], atol=1e-6)
    sess.train()
    assert sess.warp_target(0).flow_stats["start"] == "searched"
    assert "start" not in sess.warp_target(1).flow_stats
    off = WarpSession(WarpConfig.from_dict({**base, "field": {}}), ref, lab, targets)
    assert off.start_search is None and off.slot_target == [0, 1]
    assert torch.equal(off.net.affine_res, torch.zeros(2, 2, 3))


def test_the_identity_slot_wins_when_it_ends_more_similar():
    lab = _disk((48, 44))
    img = (40 + 150 * lab).astype(np.float32) / 255
    cfg = WarpConfig.from_dict({"model": "field", "resolution": 64, "roi_margin": None, "min_steps": 1,
                                "max_steps": 1, "threads": 1, "field": {"search_shift": 0.2}})
    sess = WarpSession(cfg, Image2D(img), lab, [Image2D(img)])
    # force a second slot that starts far off: the identity slot must be kept
    with torch.no_grad():
        sess.net = FlowField2D(cfg.field, 2, 64)
        sess.net.affine_res[1, 0, 2] = 0.5
    sess.slot_target = [0, 0]
    res = sess.warp_target(0)
    assert res.flow_stats["start"] == "identity"
    assert (res.labels == lab).mean() > 0.999


def test_unknown_model_and_wrong_grid_are_refused():
    with pytest.raises(OneShotError, match="'network' or 'field'"):
        WarpConfig(model="spline", resolution=64)
    with pytest.raises(ValueError, match="32 x 32"):
        _field()(_grid(), torch.zeros(1, 1, 16, 16), [0])


def _disk(c_yx, r=12, size=96):
    yy, xx = np.mgrid[:size, :size]
    return ((yy - c_yx[0]) ** 2 + (xx - c_yx[1]) ** 2 <= r * r).astype(np.uint8)


def test_field_session_recovers_a_shifted_and_squeezed_structure():
    lab = _disk((48, 44))
    img = (40 + 150 * lab).astype(np.float32)
    yy, xx = np.mgrid[:96, :96]
    moved = (((yy - 52) / 1.0) ** 2 + ((xx - 50) / 0.85) ** 2 <= 144).astype(np.uint8)
    cfg = WarpConfig.from_dict({"model": "field", "resolution": 64, "min_steps": 80, "max_steps": 80,
                                "lr": 0.01, "weight_decay": 0.0,
                                "field": {"affine_steps": 30, "level_steps": 10},
                                "net": {"n_levels": 4}, "batch_size": 1, "threads": 1})
    sess = WarpSession(cfg, Image2D(img), lab, [Image2D((40 + 150 * moved).astype(np.float32))])
    rec = sess.train()
    assert rec["steps"] == 80 and sess.net.deformable and sess.net.active_levels == 3
    out = sess.warp_target(0).labels
    dice = lambda a, b: 2 * (a & b).sum() / (a.sum() + b.sum())
    assert dice(out == 1, moved == 1) > 0.9 > dice(lab == 1, moved == 1)


def test_adamw_gives_torch_adamw_weights_without_importing_dynamo():
    def net():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.LeakyReLU(), torch.nn.Conv2d(4, 2, 3))
    a, b = net(), net()
    ref = torch.optim.AdamW(a.parameters(), lr=1e-3, weight_decay=0.01)
    ours = AdamW(b.parameters(), lr=1e-3, weight_decay=0.01)
    x = torch.randn(3, 2, 12, 12)
    for _ in range(15):
        for m, o in ((a, ref), (b, ours)):
            o.zero_grad(set_to_none=True)
            m(x).square().mean().backward()
            o.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_adamw_step_alone_does_not_import_dynamo():
    import subprocess
    code = ("import sys, torch\n"
            "from oneshotsam.methods.medpersam.warp_fit import AdamW\n"
            "m = torch.nn.Linear(3, 3); o = AdamW(m.parameters(), 1e-3)\n"
            "m(torch.randn(2, 3)).sum().backward(); o.step()\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_retraining_moves_the_whole_deformation_from_its_first_step():
    lab = _disk((48, 44))
    img = (40 + 150 * lab).astype(np.float32)
    cfg = WarpConfig.from_dict({"model": "field", "resolution": 64, "min_steps": 6, "max_steps": 6,
                                "epochs": 1, "retrain_epochs": 1, "lr": 0.01,
                                "field": {"affine_steps": 3, "level_steps": 1}, "threads": 1})
    sess = WarpSession(cfg, Image2D(img), lab, [Image2D(img)])
    seen = []
    record = lambda d, n, m: seen.append((sess.rounds, d, sess.net.deformable, sess.net.active_levels)) or True
    sess.train(progress=record)
    sess.train(pseudo_labels={0: lab}, progress=record)
    first = [s for s in seen if s[0] == 0]
    assert [s[2] for s in first] == [False, False, False, True, True, True]
    assert [s[3] for s in first][3:] == [1, 2, 3]
    assert all(s[2] and s[3] == 3 for s in seen if s[0] == 1) and len(seen) == 12
