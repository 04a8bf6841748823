"""``medpersam-warp``: Med-PerSAM's warping model alone (paper section 3.1, Eq. 4).

The test-time-trained warping model (:mod:`.warp_train`) warps the reference labels
onto every target; the warped mask is the answer (no SAM, no checkpoint). This is
what a user without SAM weights or without a GPU gets.

Imports numpy only at module level.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from oneshotsam.checks import check_reference
from oneshotsam.methods.base import RunResult, TargetResult
from oneshotsam.progress import ProgressFn, no_progress
from oneshotsam.methods.medpersam.warp_train import WarpConfig
from oneshotsam.types import Image2D

METHOD_NAME = "medpersam-warp"


#: the preset file holding this method's presets (shared with the full method)
PRESETS = "medpersam"


def setting_names() -> set[str]:
    """Setting names of ``medpersam-warp``: the :class:`WarpConfig` fields and ``seed``."""
    return set(WarpConfig.__dataclass_fields__) | {"seed"}


def resolve_warp_settings(preset: str, situation: dict[str, Any] | None = None,
                          user: dict[str, Any] | None = None) -> Any:
    """:func:`oneshotsam.presets.resolve_settings` for this method: the warping keys of
    ``medpersam.json`` preset ``preset`` <- ``situation`` <- ``user``."""
    from oneshotsam.presets import resolve_settings

    return resolve_settings(METHOD_NAME, preset, known=setting_names(), situation=situation,
                            user=user, presets=PRESETS, check=(WarpConfig,), only_known=True)


@dataclass(frozen=True)
class WarpMethodConfig:
    """Settings of ``medpersam-warp``.

    Attributes:
        warp: warping-stage settings (see :class:`WarpConfig`); None with ``auto``
            (:meth:`MedPerSAMWarp.segment` chooses them per call from the situation).
        preset: name of the preset it was built from; ``"auto"`` when none was named.
        seed: random seed of the test-time training.
        auto: choose the settings per call from the situation
            (:func:`.warp_choice.choose_warp_settings`), then apply ``overrides``.
        overrides: the user's own settings, applied on top of the chosen ones.
    """

    warp: WarpConfig | None = field(default_factory=WarpConfig)
    preset: str = ""
    seed: int = 0
    auto: bool = False
    overrides: dict = field(default_factory=dict)


class MedPerSAMWarp:
    """The ``medpersam-warp`` method (implements ``OneShotMethod``)."""

    name = METHOD_NAME
    #: the settings of the last build or call and where each came from
    settings = None

    def __init__(self, backend: Any = None, config: WarpMethodConfig | None = None,
                 device: str = "auto") -> None:
        self.backend = backend  # unused: no SAM in this method
        self.config = config or WarpMethodConfig()
        self.device = device

    @classmethod
    def from_preset(cls, preset: str | None = None, backend: Any = None, device: str = "auto",
                    **overrides: Any) -> "MedPerSAMWarp":
        """Build from ``medpersam.json``; ``overrides`` replace top-level preset keys
        (e.g. ``epochs=5``, ``resolution=128``, ``net={...}``) or ``seed``.

        ``preset`` None or ``"auto"``: the settings are chosen per :meth:`segment` call
        from the situation (number of targets, structure size, device;
        :func:`.warp_choice.choose_warp_settings`) and recorded in the run report;
        the overrides are checked now."""
        from oneshotsam.presets import AUTO, check_user_settings

        name = preset or AUTO
        if name == AUTO:
            user = check_user_settings(METHOD_NAME, overrides, known=setting_names(),
                                       check=(WarpConfig,))
            cfg = WarpMethodConfig(None, AUTO, int(user.get("seed", 0)), True, user)
            return cls(backend, cfg, device=device)
        settings = resolve_warp_settings(name, user=overrides)
        cfg = WarpMethodConfig(WarpConfig.from_dict(settings.values), name,
                               int(settings.values.get("seed", 0)))
        method = cls(backend, cfg, device=device)
        method.settings = settings
        return method

    def _config_for(self, reference_labels: np.ndarray, n_targets: int) -> tuple[WarpConfig, dict | None]:
        """The warping settings of one call and, when chosen, the record of the choice
        (:attr:`settings` then holds this call's merge)."""
        cfg = self.config
        if not cfg.auto:
            return cfg.warp, None
        from dataclasses import replace

        from oneshotsam.methods.medpersam.warp_choice import Situation, choose_warp_settings
        choice = choose_warp_settings(Situation.of_2d_run(reference_labels, n_targets, self.device))
        settings = resolve_warp_settings(choice.preset, situation=choice.settings, user=cfg.overrides)
        self.settings = replace(settings, reasons=tuple(choice.reasons))
        return (WarpConfig.from_dict(settings.values),
                {**choice.report(), "user_settings": dict(cfg.overrides)})

    def segment(self, reference: Image2D, reference_labels: np.ndarray,
                targets: Sequence[Image2D], progress: ProgressFn = no_progress) -> RunResult:
        """Train the warping model on (reference, targets), warp the labels onto each.

        Progress units: every training step, then every target; returning False
        stops at the next unit: targets already warped are returned (none when the
        training was cancelled), with ``cancelled=True``.
        """
        from oneshotsam.methods.medpersam.warp_train import WarpSession
        values = check_reference(reference, reference_labels)
        targets = list(targets)
        if not targets:
            return RunResult(results=[], report={"method": self.name, "targets": 0})
        t0 = time.perf_counter()
        warp, chosen = self._config_for(reference_labels, len(targets))
        sess = WarpSession(warp, reference, reference_labels, targets,
                           device=self.device, seed=self.config.seed)
        n_train = sess.planned_steps(warp.epochs)
        total = n_train + len(targets)
        hist = sess.train(progress=lambda d, _t, m: progress(d, total, m))
        t_train = time.perf_counter() - t0
        report: dict[str, Any] = {
            "method": self.name, "preset": chosen["preset"] if chosen else self.config.preset,
            **({"chosen_settings": chosen} if chosen else {}), "labels": values,
            "train_steps": hist["steps"], "train_max_steps": hist["max_steps"],
            "train_stopped": hist["stopped"], "train_seconds": round(t_train, 2),
            "loss_first": hist["loss_first"], "loss_last": hist["loss_last"],
            "loss_final": hist["loss_final"],
            "intensity_percentiles": warp.intensity_percentiles, "resolution": warp.resolution,
            "device": str(sess.device)}
        if sess.smoothing_sigmas:
            tg = sess.smoothing_sigmas[1:]
            report["noise_smoothing"] = {"noise_match": warp.noise_match,
                                         "reference_sigma_px": sess.smoothing_sigmas[0],
                                         "targets_smoothed": sum(1 for x in tg if x),
                                         "max_target_sigma_px": max(tg, default=0.0)}
        if sess.start_search:
            report["affine_start_search"] = sess.start_search
        n_train = hist["steps"]  # a converging schedule may stop before the ceiling
        total = n_train + len(targets)
        results: list[TargetResult] = []
        if sess.cancelled:
            return RunResult(results=results, cancelled=True, report=report)
        for i in range(len(targets)):
            ti = time.perf_counter()
            w = sess.warp_target(i)
            present = [v for v in values if bool((w.labels == v).any())]
            cls_conf = {}
            for c, v in enumerate(values, start=1):
                m = w.labels == v
                cls_conf[v] = float(w.probs[c][m].mean()) * w.similarity if m.any() else 0.0
            results.append(TargetResult(
                labels=w.labels, confidence=float(w.similarity), class_confidence=cls_conf,
                report={"similarity": w.similarity, "flow": w.flow_stats,
                        "local_similarity": {str(v): round(x, 4) for v, x in w.local_similarity.items()},
                        "seconds": round(time.perf_counter() - ti, 3)},
                absent=[v for v in values if v not in present],
                label_fit={v: w.label_fit[v] for v in present if v in w.label_fit}))
            if not progress(n_train + i + 1, total, f"warped target {i + 1}/{len(targets)}"):
                report["seconds"] = round(time.perf_counter() - t0, 2)
                return RunResult(results=results, cancelled=len(results) < len(targets), report=report)
        report["seconds"] = round(time.perf_counter() - t0, 2)
        return RunResult(results=results, cancelled=False, report=report)
