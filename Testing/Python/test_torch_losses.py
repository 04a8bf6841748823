"""The torch-only copies of MONAI pieces (:mod:`oneshotsam.methods.medpersam.torch_losses`)
give MONAI's numbers and gradients, and the CPU warping path imports no MONAI module.

The equality tests need MONAI (skipped without it); the import tests run in fresh
interpreters so that other tests' imports do not hide a MONAI import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from oneshotsam.methods.medpersam import torch_losses as TL  # noqa: E402

ENGINE = Path(__file__).resolve().parents[2] / "OneShotSAM"
TOL = {"rtol": 1e-6, "atol": 1e-6}


def _monai(name: str):
    import importlib
    import warnings

    pytest.importorskip("monai")
    mod, _, attr = name.rpartition(".")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(importlib.import_module(mod), attr)


def _monai_warp():
    import warnings

    cls = _monai("monai.networks.blocks.Warp")
    with warnings.catch_warnings():  # "Using PyTorch native grid_sample": the path compared
        warnings.simplefilter("ignore")
        return cls(mode="bilinear", padding_mode="border")


def _rand(shape, seed, lo=0.0, hi=1.0):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(tuple(shape), generator=g, dtype=torch.float32)


def _pair(kind: str, shape, seed: int):
    """Two image tensors: random / related / constant / one constant / identical."""
    a, b = _rand(shape, seed), _rand(shape, seed + 100)
    if kind == "related":
        b = (0.7 * a + 0.3 * b).clamp(0, 1)
    elif kind == "constant":
        a, b = torch.full(shape, 0.4), torch.full(shape, 0.7)
    elif kind == "one-constant":
        b = torch.full(shape, 0.5)
    elif kind == "identical":
        b = a.clone()
    return a, b


def _check_same(ours_fn, ref_fn, inputs):
    """Values and gradients (w.r.t. every input) of two functions agree."""
    xs1 = [x.clone().requires_grad_(True) for x in inputs]
    xs2 = [x.clone().requires_grad_(True) for x in inputs]
    y1, y2 = ours_fn(*xs1), ref_fn(*xs2)
    torch.testing.assert_close(y1, y2, **TOL)
    w = _rand(y1.shape, 7) + 0.5  # a non-uniform upstream gradient for non-scalar outputs
    (y1 * w).sum().backward()
    (y2 * w).sum().backward()
    for g1, g2 in zip(xs1, xs2):
        torch.testing.assert_close(g1.grad, g2.grad, **TOL)


IMAGE_CASES = [  # (shape, kind, seed)
    ((1, 1, 16, 16), "random", 0),
    ((3, 1, 24, 20), "related", 1),
    ((2, 3, 13, 17), "random", 2),
    ((2, 1, 16, 16), "constant", 3),
    ((2, 1, 16, 16), "one-constant", 4),
    ((1, 1, 20, 20), "identical", 5),
]


@pytest.mark.parametrize("win", [7, 5])
@pytest.mark.parametrize("shape,kind,seed", IMAGE_CASES)
def test_ssim_loss_matches_monai(shape, kind, seed, win):
    ref = _monai("monai.losses.SSIMLoss")(spatial_dims=2, data_range=1.0, win_size=win)
    _check_same(TL.SSIMLoss(data_range=1.0, win_size=win), ref, _pair(kind, shape, seed))


@pytest.mark.parametrize("shape,kind,seed", IMAGE_CASES)
def test_ssim_map_matches_monai(shape, kind, seed):
    fn = _monai("monai.metrics.regression.compute_ssim_and_cs")
    a, b = _pair(kind, shape, seed)
    s1, c1 = TL.ssim_and_cs(a, b, 7, 1.5, 1.0)
    s2, c2 = fn(a, b, 2, (7, 7), (1.5, 1.5), 1.0)
    torch.testing.assert_close(s1, s2, **TOL)
    torch.testing.assert_close(c1, c2, **TOL)
    torch.testing.assert_close(TL.gaussian_window(7, 1.5, 3),
                               _monai("monai.metrics.regression._gaussian_kernel")(2, 3, (7, 7), (1.5, 1.5)),
                               rtol=0, atol=0)


@pytest.mark.parametrize("win", [9, 3])
@pytest.mark.parametrize("shape,kind,seed", IMAGE_CASES)
def test_local_ncc_loss_matches_monai(shape, kind, seed, win):
    ref = _monai("monai.losses.LocalNormalizedCrossCorrelationLoss")(
        spatial_dims=2, kernel_size=win, kernel_type="rectangular")
    _check_same(TL.LocalNCCLoss(kernel_size=win), ref, _pair(kind, shape, seed))


@pytest.mark.parametrize("shape,scale,seed", [
    ((1, 2, 3, 3), 1.0, 0), ((1, 2, 16, 16), 5.0, 1), ((3, 2, 12, 9), 0.1, 2),
    ((2, 3, 5, 6, 7), 2.0, 3),  # 3D displacement
])
def test_diffusion_loss_matches_monai(shape, scale, seed):
    ref = _monai("monai.losses.DiffusionLoss")()
    _check_same(TL.diffusion_loss, ref, [_rand(shape, seed, -scale, scale)])


def test_diffusion_loss_rejects_what_monai_rejects():
    for bad in (torch.zeros(1, 2, 2, 8), torch.zeros(1, 3, 8, 8), torch.zeros(2, 8)):
        with pytest.raises(ValueError):
            TL.diffusion_loss(bad)


def _onehot(shape, seed):
    b, n, h, w = shape
    idx = torch.randint(0, n, (b, h, w), generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.one_hot(idx, n).permute(0, 3, 1, 2).float()


SEG_CASES = [  # (shape, target kind, lambda_ce, seed)
    ((1, 2, 8, 8), "onehot", 0.001, 0),
    ((2, 4, 10, 12), "onehot", 1.0, 1),
    ((3, 3, 9, 7), "soft", 0.5, 2),
    ((2, 2, 6, 6), "empty-class", 0.001, 3),  # a class absent from the target (smoothing terms)
    ((2, 3, 8, 8), "log-probs", 0.001, 4),    # the WarpLosses.seg input: log of warped one-hot
]


@pytest.mark.parametrize("shape,kind,lam,seed", SEG_CASES)
def test_dice_ce_loss_matches_monai(shape, kind, lam, seed):
    ref = _monai("monai.losses.DiceCELoss")(softmax=True, lambda_dice=1.0, lambda_ce=lam)
    logits = _rand(shape, seed, -3.0, 3.0)
    target = _onehot(shape, seed + 1)
    if kind == "soft":
        target = torch.softmax(_rand(shape, seed + 2, -2.0, 2.0), 1)
    elif kind == "empty-class":
        target = torch.zeros(shape)
        target[:, 0] = 1
    elif kind == "log-probs":
        logits = torch.log(torch.softmax(logits, 1).clamp_min(1e-6))

    _check_same(lambda x: TL.DiceCELoss(lambda_ce=lam)(x, target), lambda x: ref(x, target), [logits])


@pytest.mark.parametrize("shape,scale,seed", [
    ((1, 1, 8, 8), 0.0, 0),      # identity
    ((1, 3, 12, 9), 2.0, 1),
    ((3, 2, 16, 16), 6.0, 2),    # displacements past the border (border padding)
    ((2, 1, 5, 6, 7), 1.5, 3),   # 3D
])
def test_warp_matches_monai(shape, scale, seed):
    ref = _monai_warp()
    nd = len(shape) - 2
    img = _rand(shape, seed)
    ddf = _rand((shape[0], nd) + shape[2:], seed + 1, -scale, scale)
    _check_same(TL.Warp(), ref, [img, ddf])
    if scale == 0.0:
        torch.testing.assert_close(TL.Warp()(img, ddf), img, **TOL)


def test_warp_constant_shift_moves_content_up_and_left():
    """Pull convention: ``u[0] = +1`` moves content one row UP, ``u[1] = +1`` one column LEFT."""
    img = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5)
    up = TL.Warp()(img, torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 5, 5))
    left = TL.Warp()(img, torch.tensor([0.0, 1.0]).view(1, 2, 1, 1).expand(1, 2, 5, 5))
    torch.testing.assert_close(up[0, 0, :4], img[0, 0, 1:])
    torch.testing.assert_close(left[0, 0, :, :4], img[0, 0, :, 1:])
    torch.testing.assert_close(up[0, 0, 4], img[0, 0, 4])  # border padding


def test_warp_rejects_a_mismatched_ddf():
    with pytest.raises(ValueError):
        TL.Warp()(torch.zeros(2, 1, 8, 8), torch.zeros(1, 2, 8, 8))


def test_warp_net_flow_and_gradients_match_monai_warp():
    """The CPU-preset-shaped network gives the same flow and parameter gradients with
    MONAI's Warp as with the torch copy (bf16 autocast off: float32)."""
    from oneshotsam.methods.medpersam.nice_trans import NetConfig, NiceTrans2D
    ref_warp = _monai_warp()
    torch.manual_seed(0)
    net = NiceTrans2D(NetConfig(enc_channels=4, dec_channels=8, max_channels=16, n_levels=3))
    for p in net.parameters():  # non-zero heads so every warp changes the answer
        torch.nn.init.normal_(p, std=0.05)
    mov, fix = _rand((1, 1, 32, 32), 0), _rand((2, 1, 32, 32), 1)
    out = []
    for warp in (TL.Warp(), ref_warp):
        net.warp = warp
        net.zero_grad()
        flow = net(mov, fix)
        (flow ** 2).mean().backward()
        out.append((flow.detach(), [p.grad.clone() for p in net.parameters()]))
    torch.testing.assert_close(out[0][0], out[1][0], **TOL)
    for g1, g2 in zip(out[0][1], out[1][1]):
        torch.testing.assert_close(g1, g2, **TOL)


# ----------------------------------------------------------------------------- imports
_WARP_STEP = """
import json, sys
import numpy as np
from oneshotsam.methods.medpersam.losses import LossConfig, WarpLosses
from oneshotsam.methods.medpersam.nice_trans import make_warp
from oneshotsam.methods.medpersam.warp_train import WarpConfig, WarpSession
from oneshotsam.presets import load_preset
from oneshotsam.types import Image2D

WarpLosses(LossConfig()); WarpLosses(LossConfig(image_loss="ncc")); make_warp()
cfg = WarpConfig.from_dict({**load_preset("medpersam", "cpu"), "resolution": 32,
                            "min_steps": 1, "max_steps": 1, "converge_window": 0})
assert cfg.net.transformer_depth == 0
r, c = np.mgrid[0:40, 0:40]
img = (0.2 + 0.6 * ((r - 18) ** 2 + (c - 20) ** 2 < 100)).astype(np.float32)
lab = ((r - 18) ** 2 + (c - 20) ** 2 < 100).astype(np.uint8)
sess = WarpSession(cfg, Image2D(img), lab, [Image2D(np.roll(img, 2, 0))])
h = sess.train(epochs=1)
h2 = sess.train(epochs=1, pseudo_labels={0: np.roll(lab, 2, 0)})  # DiceCE term too
res = sess.warp_target(0)  # SSIM map of the result
assert h["steps"] == 1 and "retrain" in h2["history"][-1] and res.labels.shape == (40, 40)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "monai")))
"""


def test_cpu_warp_path_imports_no_monai():
    """Losses, warp layer, a training step (with L_aug and the pseudo-label DiceCE) and
    warping a target on the CPU preset's net load no ``monai`` module."""
    proc = subprocess.run([sys.executable, "-c", _WARP_STEP], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ENGINE)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("image_shape,ddf_shape,match", [
    ((1, 1, 8), (1, 1, 8), "spatial dimensions"),            # 1D image
    ((1, 1, 8, 8), (1, 2, 4, 4), "DDF shape must be"),       # flow of another size
])
def test_warp_rejects_bad_shapes(image_shape, ddf_shape, match):
    with pytest.raises(ValueError, match=match):
        TL.Warp()(torch.zeros(image_shape), torch.zeros(ddf_shape))
