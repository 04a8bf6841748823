"""Settings and per-target result of Med-PerSAM's warping stage (:mod:`.warp_train`).

:class:`WarpConfig` is built from the preset JSON (``presets/medpersam.json``) without
importing torch; :class:`WarpResult` is what :meth:`.warp_train.WarpSession.warp_target`
returns for one target.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

import numpy as np

from oneshotsam.errors import OneShotError


def _build(cls, d: Mapping[str, Any] | None):
    """Frozen sub-config from a (partial) dict; lists become tuples; unknown keys
    raise a OneShotError naming the valid ones."""
    if d is None:
        return cls()
    if isinstance(d, cls):
        return d
    names = {f.name for f in fields(cls)}
    bad = sorted(set(d) - names)
    if bad:
        raise OneShotError(f"unknown {cls.__name__} settings {bad}; valid: {sorted(names)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class WarpConfig:
    """Settings of the warping stage; defaults = the paper (JSRT) values.

    Attributes (source in brackets):
        model: ``"network"`` = the warping network, one for all targets (paper
            3.1) or ``"field"`` = each target's own affine + displacement pyramid
            optimised directly with the same losses (instance optimisation; no
            L_aug copies) [measured on pairs of five kinds: docs/warp_adaptive.md].
        net: network size [B.3; see nice_trans.NetConfig].
        field: shape and schedule of the ``"field"`` model [see
            flow_field.FieldConfig].
        loss: loss terms and weights [B.1, Table 12; see losses.LossConfig].
        augment: L_aug transforms [B.2, Table 13; see augment.AugConfig].
        resolution: working grid side in pixels [C.1: masks handled at 256x256].
        batch_size: target images per optimiser step [B.4: 32].
        aug_per_step: augmented reference pairs per step (None = batch_size)
            [Eq. 3: one L_aug term per L_warp term].
        epochs: initial training epochs, one epoch = every target once [B.4: 30;
            CAMUS 20].
        retrain_epochs: epochs per retraining round [B.4: 10].
        min_steps: lower bound of optimiser steps per training call (few targets,
            e.g. one follow-up pair) [CPU preset, measured].
        max_steps: upper bound of optimiser steps per training call, None = none
            [CPU preset, measured].
        lr: AdamW learning rate [B.4: 1e-4].
        weight_decay: AdamW weight decay [torch default 0.01; paper silent].
        finetune_steps: per-target instance-optimisation steps before warping
            (0 = none) [CPU preset, measured].
        finetune_lr: learning rate of those steps [CPU preset, measured].
        roi_margin: crop every image to the reference-label box grown by this
            fraction per side (None = whole image) [CPU follow-up preset, measured].
        bf16: bfloat16 autocast on CPU [environment.md: ~2x faster at 256 px].
        threads: torch threads during training (None = leave as is).
        intensity_percentiles: every image is mapped by its own (low, high)
            percentiles to [0, 1] before registration (None = as given)
            [measured on washed-out JSRT references: docs/warp_adaptive.md].
        converge_window: > 0 (and ``max_steps`` set) = after the fixed
            schedule's steps (the floor), go on while the mean loss of the last
            ``converge_window`` steps still improves by at least ``converge_tol``
            (relative) on the block before, up to ``max_steps``; 0 = fixed
            schedule (epochs clamped to min/max_steps) [docs/warp_adaptive.md].
        converge_tol: see ``converge_window``.
        histogram_match: map every target's grey levels onto the reference's
            histogram (SimpleITK's histogram matching) before registration
            [measured: docs/warp_adaptive.md].
        noise_match: None = off; else, on the working grid, every image (the
            reference or a target) whose estimated noise
            (:func:`.warp_adapt.noise_sd`) exceeds this factor times the cleanest
            image's is Gaussian-smoothed down to about that level, so a noisy
            image is compared with a clean one by its structures, not its noise
            [measured over pair kinds and perturbed inputs: docs/warp_adaptive.md].
    """

    model: str = "network"
    net: Any = None
    field: Any = None
    loss: Any = None
    augment: Any = None
    resolution: int = 256
    batch_size: int = 32
    aug_per_step: int | None = None
    epochs: int = 30
    retrain_epochs: int = 10
    min_steps: int = 0
    max_steps: int | None = None
    lr: float = 1e-4
    weight_decay: float = 0.01
    finetune_steps: int = 0
    finetune_lr: float = 1e-4
    roi_margin: float | None = None
    bf16: bool = False
    threads: int | None = None
    intensity_percentiles: tuple[float, float] | None = (0.5, 99.5)
    converge_window: int = 0
    converge_tol: float = 0.01
    noise_match: float | None = None
    histogram_match: bool = False

    def __post_init__(self) -> None:
        if self.intensity_percentiles is not None:
            object.__setattr__(self, "intensity_percentiles",
                               tuple(float(p) for p in self.intensity_percentiles))
        from oneshotsam.methods.medpersam.augment import AugConfig
        from oneshotsam.methods.medpersam.flow_field import FieldConfig
        from oneshotsam.methods.medpersam.losses import LossConfig
        from oneshotsam.methods.medpersam.nice_trans import NetConfig
        if self.model not in ("network", "field"):
            raise OneShotError(f"warping model must be 'network' or 'field', got {self.model!r}")
        for name, cls in (("net", NetConfig), ("field", FieldConfig), ("loss", LossConfig),
                          ("augment", AugConfig)):
            v = getattr(self, name)
            if v is None or isinstance(v, Mapping):
                object.__setattr__(self, name, _build(cls, v))
        step = 2 ** self.net.n_levels
        if self.resolution < step * 2 or self.resolution % step:
            raise OneShotError(
                f"warping resolution {self.resolution} must be a multiple of {step} "
                f"(2**n_levels) and at least {2 * step}; pick e.g. 128, 160, 192 or 256")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "WarpConfig":
        """Build from a preset dict; keys that are not WarpConfig fields (SAM-stage
        settings, ``source``) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WarpResult:
    """Warped reference labels for one target.

    Attributes:
        probs: ``(1+C, H, W)`` float32 in the target's grid; channel 0 background,
            then the reference label values in ascending order; sums to 1 per pixel.
        labels: ``(H, W)`` label map with the reference label values (argmax).
        similarity: image similarity in [0, 1] of the warped reference and the
            target on the working grid (SSIM, or LNCC for NCC presets).
        flow_stats: mean / max displacement (working-grid pixels), fraction of
            folded pixels (Jacobian determinant <= 0), affine matrix.
        local_similarity: ``{label value: mean SSIM}`` of the warped reference and the
            target over each warped label grown by 2 working pixels (its own
            evidence: low where the target shows something else there).
        label_fit: ``local_similarity`` divided by the mean of the same SSIM map
            over the whole working grid (so NCC presets get an SSIM ratio too).
    """

    probs: np.ndarray
    labels: np.ndarray
    similarity: float
    flow_stats: dict = field(default_factory=dict)
    local_similarity: dict = field(default_factory=dict)
    label_fit: dict = field(default_factory=dict)


__all__ = ["WarpConfig", "WarpResult"]
