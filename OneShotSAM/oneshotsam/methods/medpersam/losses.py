"""Losses of Med-PerSAM's warping model (paper section 3.1, 3.3, appendix B.1).

* ``L_img``: SSIM loss with a 7-pixel window, or local NCC with a 9-pixel window for
  images with large black padding (B.1) -- MONAI's ``SSIMLoss`` and
  ``LocalNormalizedCrossCorrelationLoss``;
* ``L_reg = ||grad phi||^2`` (B.1): MONAI's ``DiffusionLoss``
  (mean squared first derivative of the pixel flow);
* ``L_seg``: Dice + 0.001 cross-entropy (B.1), MONAI's ``DiceCELoss``;
* weighted ``L_aug`` (:meth:`WarpLosses.aug_loss`): B.1 says the total segmentation
  loss weight is 1 "in all cases" and lambda_aug weights the augmentation term, so
  the default reading is ``lambda_aug * L_warp(ref, aug) + lambda_seg * L_seg``
  (``aug_weighting="warp"``); ``"whole"`` keeps the other reading,
  ``lambda_aug * (L_warp + lambda_seg * L_seg)``.

Warped masks are one-hot probability maps (bilinear warp of the one-hot reference),
not logits; :meth:`WarpLosses.seg` feeds ``log(p)`` to DiceCELoss with
``softmax=True`` so that softmax recovers ``p`` exactly (``p`` sums to 1) and the CE
term is the cross-entropy of ``p`` itself.

The MONAI losses are used through their torch-only copies in :mod:`.torch_losses`
(same numbers; importing MONAI costs ~10 CPU-s of start-up, see there).

Imports torch at module level: import this module lazily.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LossConfig:
    """Loss settings (defaults: JSRT column of Table 12 and B.1).

    Attributes:
        image_loss: ``"ssim"`` (B.1 default), ``"ncc"`` (B.1: OdontoAI, CAMUS) or
            ``"mi"`` (global mutual information, MONAI's Parzen-window estimate;
            imports MONAI).
        mi_bins: histogram bins of ``"mi"`` (MONAI default 23).
        ssim_window: SSIM window, 7 (B.1).
        ncc_window: NCC window, 9 (B.1).
        lambda_img: weight of ``L_img`` (Table 12: 1).
        lambda_reg: weight of ``||grad phi||^2`` (Table 12: JSRT 0.75).
        lambda_aug: weight of ``L_aug`` (Table 12: JSRT 0.1).
        lambda_seg: weight of the segmentation (DiceCE) loss (B.1: 1).
        lambda_ce: cross-entropy weight inside DiceCE (B.1: 0.001).
        aug_weighting: what ``lambda_aug`` multiplies in ``L_aug`` (Eq. 2):
            ``"warp"`` (default, the likelier reading of B.1: only the warping
            part; the segmentation part keeps ``lambda_seg`` = 1) or ``"whole"``
            (the whole term, Dice included).
    """

    image_loss: str = "ssim"
    ssim_window: int = 7
    ncc_window: int = 9
    mi_bins: int = 23
    lambda_img: float = 1.0
    lambda_reg: float = 0.75
    lambda_aug: float = 0.1
    lambda_seg: float = 1.0
    lambda_ce: float = 0.001
    aug_weighting: str = "warp"

    def __post_init__(self) -> None:
        if self.aug_weighting not in AUG_WEIGHTINGS:
            raise ValueError(f"aug_weighting must be one of {AUG_WEIGHTINGS}; got "
                             f"{self.aug_weighting!r}")


#: readings of Eq. 2's weight: lambda_aug on the warping part only, or on all of L_aug
AUG_WEIGHTINGS = ("warp", "whole")


class WarpLosses:
    """Callable loss terms on ``(B, C, H, W)`` float tensors."""

    def __init__(self, cfg: LossConfig = LossConfig()) -> None:
        from oneshotsam.methods.medpersam.torch_losses import (
            DiceCELoss,
            LocalNCCLoss,
            SSIMLoss,
            diffusion_loss,
        )

        self.cfg = cfg
        kind = cfg.image_loss.lower()
        if kind == "ssim":
            self._img = SSIMLoss(data_range=1.0, win_size=cfg.ssim_window)
        elif kind == "ncc":
            self._img = LocalNCCLoss(kernel_size=cfg.ncc_window)
        elif kind == "mi":
            # only this choice imports MONAI (slow start-up, see torch_losses)
            from monai.losses import GlobalMutualInformationLoss

            self._img = GlobalMutualInformationLoss(num_bins=cfg.mi_bins)
            self._ssim = SSIMLoss(data_range=1.0, win_size=cfg.ssim_window)
        else:
            raise ValueError(f"image_loss must be 'ssim', 'ncc' or 'mi', got {cfg.image_loss!r}")
        self.kind = kind
        self._reg = diffusion_loss
        self._seg = DiceCELoss(lambda_dice=1.0, lambda_ce=cfg.lambda_ce)

    def image(self, warped: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """``L_img`` between warped moving and fixed images ``(B, 1, H, W)`` in [0, 1].
        SSIM loss = 1 - SSIM (0 for identical images); NCC loss = -LNCC (-1 when identical)."""
        return self._img(warped, fixed)

    def similarity(self, warped: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """Per-sample similarity in [0, 1] (``(B,)``): SSIM (SSIM and MI losses: MI
        has no fixed upper bound), or LNCC clipped at 0."""
        if self.kind == "ncc":
            return torch.stack([-self._img(warped[i:i + 1], fixed[i:i + 1])
                                for i in range(warped.shape[0])]).clamp(0.0, 1.0)
        from oneshotsam.methods.medpersam.torch_losses import ssim_and_cs
        smap, _ = ssim_and_cs(warped, fixed, self.cfg.ssim_window, 1.5, 1.0)
        return smap.flatten(1).mean(1).clamp(0.0, 1.0)

    def reg(self, flow: torch.Tensor) -> torch.Tensor:
        """``||grad phi||^2`` of a pixel flow ``(B, 2, H, W)`` (mean over pixels)."""
        return self._reg(flow)

    def seg(self, warped_probs: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        """DiceCE (Dice + ``lambda_ce`` CE) between warped one-hot probabilities and a
        one-hot target, both ``(B, 1+C, H, W)``."""
        return self._seg(torch.log(warped_probs.clamp_min(1e-6)), target_onehot)

    def warp_loss(self, warped: torch.Tensor, fixed: torch.Tensor,
                  flow_deform: torch.Tensor) -> torch.Tensor:
        """Eq. 1 with Table 12 weights: ``l_img * L_img + l_reg * L_reg``."""
        c = self.cfg
        return c.lambda_img * self.image(warped, fixed) + c.lambda_reg * self.reg(flow_deform)

    def aug_loss(self, warp_aug: torch.Tensor, seg_aug: torch.Tensor) -> torch.Tensor:
        """Weighted ``L_aug`` (Eq. 2) from its unweighted parts ``L_warp(ref, aug)``
        (:meth:`warp_loss`) and ``L_seg`` (:meth:`seg`): ``lambda_aug * warp +
        lambda_seg * seg`` (``"warp"``) or ``lambda_aug * (warp + lambda_seg * seg)``
        (``"whole"``)."""
        c = self.cfg
        if c.aug_weighting == "whole":
            return c.lambda_aug * (warp_aug + c.lambda_seg * seg_aug)
        return c.lambda_aug * warp_aug + c.lambda_seg * seg_aug
