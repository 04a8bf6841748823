"""Med-PerSAM, the full method (paper section 3, appendices B and C): class :class:`MedPerSAM`.

Pipeline (registry name ``"medpersam"``):

1. reference: SAM-encode once; per class the prototype = mean raw feature of
   the reference foreground cells (section 3.2, PerSAM); the embedding is
   then released;
2. warping model: :class:`~.warp_train.WarpSession` initial training
   (``L_train``, section 3.1; epochs B.4);
3. round 0, for every target: warp the reference labels (eq. 4) -> prompts
   -> SAM with refinement (:mod:`.sam_stage`) -> pseudo-label;
4. rounds 1..R (``retrain_rounds``, 5 in section 4.2 / B.4): retrain the
   warping model with the pseudo-labels (``L_retrain``, section 3.3,
   ``retrain_epochs`` each) and run step 3 again.

Each target is SAM-encoded exactly once across all rounds. Memory: right after
encoding, the target's ``(C, G, G)`` feature map is reduced to one ``(G, G)``
similarity map per class and dropped; the embedding itself (needed by the
decoder in later rounds) is kept only while rounds remain: in RAM up to
``embedding_memory_mb``, beyond that spilled to a temporary folder (deleted at
the end of :meth:`MedPerSAM.segment`), and released after the target's last
round. With ``retrain_rounds = 0`` no embedding outlives its target.

Confidence: per class, the geometric mean of SAM's predicted IoU (of the kept
output, clipped to [0, 1]) and the warp similarity (:class:`~.warp_train.WarpResult`,
0..1); 0 when SAM returned nothing and the warped mask was kept. The target's
confidence is the mean over the classes present in its label map (the warp
similarity when none is).

Cancel: ``progress`` returning False stops after the current optimiser step or
target. Results then hold, in target order, the newest finished answer of
every target that has one (round 0: the finished prefix; later rounds: all
targets, each from its newest finished round, ``report["round"]`` says which).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from oneshotsam.checks import check_reference
from oneshotsam.errors import OneShotError
from oneshotsam.methods.base import RunResult, TargetResult
from oneshotsam.progress import ProgressFn, no_progress
from oneshotsam.methods.medpersam.prompts import PromptConfig
from oneshotsam.methods.medpersam.sam_stage import EmbeddingStore, SamStageConfig, segment_classes
from oneshotsam.types import Image2D

#: preset keys of the SAM stage -> (sub-config, field)
_PROMPT_KEYS = {"erode_kernel": "erode_kernel", "dilate_kernel": "dilate_kernel",
                "n_points": "n_points", "bilateral": "bilateral", "prompt_size": "work_size",
                "use_negatives": "use_negatives"}
_SAM_KEYS = {"refine_iterations", "smooth_kernel", "fill_holes", "use_points", "use_box",
             "use_mask_prompt", "target_semantic"}
_METHOD_KEYS = {"retrain_rounds", "seed", "embedding_memory_mb"}


@dataclass(frozen=True)
class MedPerSAMConfig:
    """Settings of the full method (sources in brackets).

    Attributes:
        warp: :class:`~.warp_train.WarpConfig` (network, losses, epochs,
            ``retrain_epochs`` [B.4: 30 initial, 10 per retraining round]).
        sam: SAM-stage settings (:class:`~.sam_stage.SamStageConfig`).
        retrain_rounds: retraining rounds R [section 4.2 and B.4: 5].
        seed: seed of the warping session.
        embedding_memory_mb: RAM budget for SAM embeddings kept between rounds
            before spilling to disk [our choice].
        preset: preset name (report only).
    """

    warp: Any = None
    sam: SamStageConfig = SamStageConfig()
    retrain_rounds: int = 5
    seed: int = 0
    embedding_memory_mb: float = 1024.0
    preset: str = ""

    def __post_init__(self) -> None:
        if self.warp is None or isinstance(self.warp, dict):
            from oneshotsam.methods.medpersam.warp_train import WarpConfig

            object.__setattr__(self, "warp", WarpConfig.from_dict(self.warp or {}))
        if int(self.retrain_rounds) < 0:
            raise OneShotError(f"retrain_rounds must be >= 0; got {self.retrain_rounds}")

    @classmethod
    def from_dict(cls, d: dict[str, Any], preset: str = "") -> "MedPerSAMConfig":
        """Preset dict -> config.

        WarpConfig keys go to ``warp``; ``sam_stage`` (nested as in
        ``presets/medpersam.json``: ``{"prompts": {...}, "refine_iterations": ..}``)
        to ``sam``; flat SAM-stage keys (``n_points``, ``erode_kernel``,
        ``refine_iterations``, ...; command-line overrides) replace nested ones.
        """
        from oneshotsam.methods.medpersam.warp_train import WarpConfig

        sam_d = dict(d.get("sam_stage") or {})
        prompt_d = dict(sam_d.pop("prompts", None) or {})
        prompt_d.update({_PROMPT_KEYS[k]: v for k, v in d.items() if k in _PROMPT_KEYS})
        sam_d.update({k: v for k, v in d.items() if k in _SAM_KEYS})
        meth_kw = {k: v for k, v in d.items() if k in _METHOD_KEYS}
        try:
            sam = SamStageConfig(prompts=PromptConfig(**prompt_d), **sam_d)
        except TypeError as exc:
            raise OneShotError(f"bad medpersam sam_stage settings: {exc}; valid: "
                               f"{sorted(set(_PROMPT_KEYS.values()) | _SAM_KEYS)}") from None
        return cls(warp=WarpConfig.from_dict(d), sam=sam, preset=preset, **meth_kw)


def known_keys() -> set[str]:
    """Every setting name accepted by :meth:`MedPerSAM.from_preset` overrides."""
    from oneshotsam.methods.medpersam.warp_train import WarpConfig

    return (set(_PROMPT_KEYS) | _SAM_KEYS | _METHOD_KEYS | {"sam_stage"}
            | {f.name for f in dataclasses.fields(WarpConfig)})


@dataclass
class _TargetState:
    """What survives between rounds for one target (small)."""

    similarity: dict[int, np.ndarray]  # label -> (G, G)
    valid_hw: tuple[int, int]
    encode_s: float


class MedPerSAM:
    """Med-PerSAM (warping model + SAM): see the module docstring.

    Args:
        backend: a SAM / SAM 2 :class:`~oneshotsam.backends.base.PromptableSegmenter`.
        config: :class:`MedPerSAMConfig`.
        device: device of the warping network (``auto`` | ``cpu`` | ``cuda``).
        session_factory: builds the warping session (default
            :class:`~.warp_train.WarpSession`); tests inject fakes here.
    """

    name = "medpersam"
    #: the settings it was built from and where each came from (``from_preset``)
    settings = None

    def __init__(self, backend, config: MedPerSAMConfig | None = None, device: str = "auto",
                 session_factory: Callable[..., Any] | None = None) -> None:
        if backend is None:
            from oneshotsam.methods.base import missing_backend_message

            raise OneShotError(missing_backend_message(self.name))
        self.backend = backend
        self.config = config if config is not None else MedPerSAMConfig()
        self.device = device
        self._session_factory = session_factory
        self._mappings: dict = {}
        self._label_dtype = np.dtype(np.int32)

    @classmethod
    def from_preset(cls, preset: str | None = None, backend=None, device: str = "auto",
                    **overrides: Any) -> "MedPerSAM":
        """Build from ``presets/medpersam.json`` (None = the default preset on ``device``)
        with ``overrides`` on top (:func:`oneshotsam.presets.resolve_settings`).

        Raises:
            OneShotError: unknown preset or override name, or no backend.
        """
        from oneshotsam.methods.medpersam.warp_config import WarpConfig
        from oneshotsam.presets import default_preset, resolve_settings

        name = preset or default_preset("medpersam", device)
        settings = resolve_settings("medpersam", name, known=known_keys(), user=overrides,
                                    check=(WarpConfig,), only_known=True)
        method = cls(backend, MedPerSAMConfig.from_dict(dict(settings.values), preset=name),
                     device=device)
        method.settings = settings
        return method

    # ------------------------------------------------------------------ helpers
    def _prototypes(self, reference: Image2D, labels: np.ndarray, values: list[int]
                    ) -> tuple[dict[int, np.ndarray], list[str]]:
        """Per class ``(C,)`` mean raw reference feature (reference encoded once), on
        the cells PerSAM's code takes for a mask (``rule="persam"``): C.1 adopts
        PerSAM's prototype and target-semantic prompting."""
        from oneshotsam.methods.features import (
            grid_mapping, masked_features, mean_prototype, reference_cells)

        be = self.backend
        emb = be.embed(reference.rgb_uint8())
        fmap = be.feature_map(emb)
        mapping = grid_mapping(be, reference.shape_hw, be.valid_grid_hw(emb))
        protos, messages = {}, []
        for v in values:
            cells = reference_cells(be, labels == v, mapping, what=f"reference label {v}",
                                    rule="persam")
            protos[v] = mean_prototype(masked_features(fmap, cells.foreground))
            messages += list(cells.messages)
        return protos, messages

    def _mapping(self, hw: tuple[int, int], valid_hw: tuple[int, int]):
        from oneshotsam.methods.features import grid_mapping

        key = (tuple(hw), tuple(valid_hw))
        if key not in self._mappings:
            self._mappings[key] = grid_mapping(self.backend, hw, valid_hw)
        return self._mappings[key]

    def _infer(self, session, store: EmbeddingStore, states: dict[int, _TargetState],
               targets: Sequence[Image2D], i: int, rnd: int, last_round: bool,
               values: list[int], protos: dict[int, np.ndarray]) -> TargetResult:
        """Warp -> (encode once) -> SAM stage for target ``i`` in round ``rnd``."""
        from oneshotsam.methods.features import similarity_maps

        be, cfg = self.backend, self.config
        t0 = time.perf_counter()
        warp = session.warp_target(i)
        t_warp = time.perf_counter() - t0
        st = states.get(i)
        if st is None:  # first time: encode, keep (G, G) similarity maps only
            t1 = time.perf_counter()
            emb = be.embed(targets[i].rgb_uint8())
            fmap = be.feature_map(emb)
            sims = similarity_maps(fmap, np.stack([protos[v] for v in values]))
            st = _TargetState({v: sims[k] for k, v in enumerate(values)},
                              tuple(be.valid_grid_hw(emb)), time.perf_counter() - t1)
            states[i] = st
            del fmap
        else:
            emb = store.get(i)
        t2 = time.perf_counter()
        mapping = self._mapping(targets[i].shape_hw, st.valid_hw)
        labels, outcomes = segment_classes(be, emb, mapping, warp.labels, values,
                                           st.similarity, protos, cfg.sam)
        t_sam = time.perf_counter() - t2
        if last_round:
            store.drop(i)
        elif i not in store:
            store.put(i, emb)
        del emb
        return self._result(labels, outcomes, warp, values, rnd,
                            {"warp": t_warp, "encode": st.encode_s if rnd == 0 else 0.0,
                             "sam": t_sam}, self._label_dtype)

    @staticmethod
    def _result(labels, outcomes, warp, values, rnd, timings, dtype) -> TargetResult:
        sim = float(np.clip(warp.similarity, 0.0, 1.0))
        present = [v for v in values if np.any(labels == v)]
        class_conf = {}
        classes = {}
        for v in values:
            oc = outcomes[v]
            if v in present:
                class_conf[v] = float(np.sqrt(np.clip(oc.score, 0.0, 1.0) * sim))
            classes[str(v)] = {"absent": v not in present, "warped_absent": oc.absent,
                               "score": round(float(oc.score), 4),
                               "prompts": oc.prompts.to_report(), "stages": oc.stages,
                               "messages": oc.messages}
        conf = float(np.mean(list(class_conf.values()))) if class_conf else sim
        report = {"round": rnd, "warp_similarity": round(sim, 4),
                  "flow_stats": warp.flow_stats, "classes": classes,
                  "timings_s": {k: round(float(t), 4) for k, t in timings.items()}}
        out_labels = np.asarray(labels).astype(dtype, copy=False)
        return TargetResult(labels=out_labels, confidence=conf, class_confidence=class_conf,
                            report=report, absent=[v for v in values if v not in present])

    # ------------------------------------------------------------------ main
    def segment(self, reference: Image2D, reference_labels: np.ndarray,
                targets: Sequence[Image2D], progress: ProgressFn = no_progress) -> RunResult:
        """Segment every target like the reference (see the module docstring)."""
        values = check_reference(reference, reference_labels)
        targets = list(targets)
        for k, t in enumerate(targets):
            if not isinstance(t, Image2D):
                raise OneShotError(f"target {k} is not an Image2D: window and wrap it first")
        if not targets:
            return RunResult([], report={"method": self.name, "message": "no targets"})
        cfg = self.config
        lab = np.asarray(reference_labels)
        self._label_dtype = np.uint8 if lab.dtype == bool else lab.dtype
        n, rounds = len(targets), int(cfg.retrain_rounds)
        t_start = time.perf_counter()
        enc0 = getattr(self.backend, "encode_calls", 0)
        self._mappings = {}
        cancel = {"flag": False}
        total = 2 * n * (rounds + 1)

        def tick(units: int, message: str) -> bool:
            if not progress(min(units, total), total, message):
                cancel["flag"] = True
            return not cancel["flag"]

        def train_progress(base: int, what: str) -> ProgressFn:
            def fn(d: int, t: int, message: str) -> bool:
                return tick(base + int(n * d / max(t, 1)), f"{what}: {message}")
            return fn

        protos, messages = self._prototypes(reference, lab, values)
        session = self._make_session(cfg, reference, lab, targets)
        store = EmbeddingStore(cfg.embedding_memory_mb)
        states: dict[int, _TargetState] = {}
        train_reports: list[dict[str, Any]] = []
        latest: list[TargetResult | None] = [None] * n
        rounds_done = 0
        try:
            for rnd in range(rounds + 1):
                base = 2 * n * rnd
                hist = session.train(
                    epochs=None, pseudo_labels=None if rnd == 0 else
                    {i: r.labels for i, r in enumerate(latest) if r is not None},
                    progress=train_progress(base, "warp training" if rnd == 0 else
                                            f"warp retraining {rnd}/{rounds}"))
                train_reports.append({"round": rnd, **_summary(hist)})
                if cancel["flag"] or getattr(session, "cancelled", False):
                    cancel["flag"] = True
                    break
                for i in range(n):
                    latest[i] = self._infer(session, store, states, targets, i, rnd,
                                            rnd == rounds, values, protos)
                    if not tick(base + n + i + 1, f"round {rnd}: {targets[i].name or i} done"):
                        break
                if cancel["flag"]:
                    break
                rounds_done = rnd + 1
        finally:
            store_stats = {**store.stats(), "peak": dict(store.peak)}
            store.close()
            self._mappings = {}
        results = [r for r in latest if r is not None]
        for r in results:
            r.report["rounds_completed"] = rounds_done
        report = {"method": self.name, "preset": cfg.preset,
                  "backend": getattr(self.backend, "name", ""), "label_values": values,
                  "retrain_rounds": rounds, "rounds_completed": rounds_done,
                  "sam_encoder_calls": getattr(self.backend, "encode_calls", 0) - enc0,
                  "warp_training": train_reports, "embedding_store": store_stats,
                  "messages": messages,
                  "seconds": round(time.perf_counter() - t_start, 3)}
        return RunResult(results=results, cancelled=cancel["flag"], report=report)

    def _make_session(self, cfg: MedPerSAMConfig, reference, labels, targets):
        if self._session_factory is not None:
            factory = self._session_factory
        else:
            from oneshotsam.methods.medpersam.warp_train import WarpSession as factory
        from oneshotsam.devices import resolve_device

        device = resolve_device(self.device)
        return factory(cfg.warp, reference, labels, targets, device=device, seed=cfg.seed)


def _summary(hist: Any) -> dict[str, Any]:
    """JSON-safe summary of a ``WarpSession.train`` return value."""
    if not isinstance(hist, dict):
        return {}
    keep = ("steps", "max_steps", "stopped", "seconds", "loss_first", "loss_last", "loss_final",
            "cancelled")
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in hist.items() if k in keep}
