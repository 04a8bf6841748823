"""Slice engines: how one slice's labels are predicted from another's.

An engine answers two questions, both in native slice pixel grids:

* ``cross(r, labels_hw)``: labels of reference slice ``r`` -> the follow-up's
  slice at the same physical position (aligned grid, same index ``r``);
* ``step(src, src_labels_hw, dst)``: labels of processing slice ``src`` ->
  neighbouring processing slice ``dst`` (within-volume propagation).

Every engine follows :class:`SliceEngine`; :func:`build_engine` picks one for a
:class:`~oneshotsam.volume.types.PropagationConfig`.

:class:`MethodEngine` uses any 2D :class:`~oneshotsam.methods.base.OneShotMethod`
(``segment(reference, labels, [target])``): ``chain`` mode takes the
already-segmented neighbour as the reference (bounded memory: the backend's
cache holds the few most recent embeddings), ``direct`` mode the physically
nearest seed slice (one method call per seed with all its slices as targets,
which suits methods that train on all targets at once). With ``cross_flow_weight`` > 0
each cross-visit prediction is fused with the labels carried along the optical flow
between the two slices (:mod:`oneshotsam.volume.slice_flow`); with ``refine_sigma`` > 0
it then gets the appearance refinement (:mod:`oneshotsam.volume.appearance`,
statistics from the reference slice at the same position): :func:`build_engine` sets
both for a planning contour's follow-up.
Numpy only at import time.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from oneshotsam.errors import OneShotError
from oneshotsam.methods.base import OneShotMethod, TargetResult
from oneshotsam.types import Image2D
from oneshotsam.volume.slices import slice_image, square_plane, unsquare_plane
from oneshotsam.volume.types import PropagationConfig


@dataclass
class SliceStack:
    """Windowed slices of one volume along one array axis.

    Attributes:
        windowed: ``(K, J, I)`` float32 in [0, 1] (read-only use).
        array_axis: sliced axis of the array.
        spacing_rc_mm: native in-plane spacing of the slices.
        name: volume name for reports.
    """

    windowed: np.ndarray
    array_axis: int
    spacing_rc_mm: tuple[float, float]
    name: str
    cache_size: int = 16

    def __post_init__(self) -> None:
        self._cache: OrderedDict[int, tuple[Image2D, tuple[int, int]]] = OrderedDict()

    @property
    def n_slices(self) -> int:
        return int(self.windowed.shape[self.array_axis])

    def image(self, index: int) -> Image2D:
        """Square-pixel Image2D of slice ``index`` (small LRU cache)."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index][0]
        img, hw = slice_image(self.windowed, self.array_axis, index, self.spacing_rc_mm,
                              f"{self.name}[{index}]")
        self._cache[index] = (img, hw)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return img

    def plane(self, index: int) -> np.ndarray:
        """Native ``(H, W)`` float32 windowed plane."""
        from oneshotsam.geometry import get_slice

        return np.asarray(get_slice(self.windowed, self.array_axis, index), dtype=np.float32)

    @property
    def native_hw(self) -> tuple[int, int]:
        return self.plane(0).shape[:2]

    def labels_to_square(self, labels_hw: np.ndarray) -> np.ndarray:
        return square_plane(np.asarray(labels_hw), self.spacing_rc_mm, nearest=True)[0]

    def labels_from_square(self, labels_sq: np.ndarray) -> np.ndarray:
        return unsquare_plane(np.asarray(labels_sq), self.native_hw)

    @property
    def pixel_area_mm2(self) -> float:
        return float(self.spacing_rc_mm[0] * self.spacing_rc_mm[1])


class SliceEngine(Protocol):
    """How one slice's labels are predicted from another's (native ``(H, W)`` grids).

    ``prepare`` is called once per job with the reference and processing stacks
    (train here; ``tick(message) -> bool`` False cancels, then return False);
    ``cross(r, labels_hw)`` predicts processing slice ``r`` of a follow-up from
    reference slice ``r``; ``begin_run(run, seed_labels)`` is called before each
    outward run (engines that batch a run); ``step(src, src_labels, dst)``
    predicts ``dst`` from its finished neighbour ``src``; ``describe()`` is the
    JSON report of the engine."""

    def prepare(self, ref: "SliceStack", proc: "SliceStack", ref_slices: list[int],
                ref_labels: dict[int, np.ndarray], followup: bool,
                tick: Callable[[str], bool]) -> bool: ...

    def cross(self, r: int, labels_hw: np.ndarray) -> TargetResult: ...

    def begin_run(self, run: Any, seed_labels: np.ndarray) -> None: ...

    def step(self, src: int, src_labels: np.ndarray, dst: int) -> TargetResult: ...

    def describe(self) -> dict[str, Any]: ...


def _native(result: TargetResult, stack: SliceStack) -> TargetResult:
    result.labels = stack.labels_from_square(result.labels)
    return result


class MethodEngine:
    """Propagation through a 2D one-shot method (see module docstring)."""

    def __init__(self, method: OneShotMethod, mode: str = "chain", refine_sigma: float = 0.0,
                 cross_flow_weight: float = 0.0, flow_window_px: int = 7) -> None:
        if mode not in ("chain", "direct"):
            raise OneShotError(f"unknown propagation mode {mode!r}: use auto, chain or direct")
        self.method = method
        self.mode = mode
        self.refine_sigma = float(refine_sigma)
        self.cross_flow_weight = float(cross_flow_weight)
        self.flow_window_px = int(flow_window_px)
        self.ref: SliceStack | None = None
        self.proc: SliceStack | None = None
        self.seed_labels: dict[int, np.ndarray] = {}
        self._direct: dict[int, TargetResult] = {}
        self.calls = 0
        self.last_report: dict[str, Any] = {}  # the method's report of its last call

    def describe(self) -> dict[str, Any]:
        settings = getattr(self.method, "settings", None)  # the one merge's record
        return {"engine": f"method-{self.mode}", "method": getattr(self.method, "name", "?"),
                "preset": getattr(getattr(self.method, "config", None), "preset", None),
                "method_calls": self.calls,
                **({"refine_sigma": self.refine_sigma} if self.refine_sigma > 0 else {}),
                **({"cross_flow_weight": self.cross_flow_weight, "flow_window_px": self.flow_window_px}
                   if self.cross_flow_weight > 0 else {}),
                **({"chosen_settings": self.last_report["chosen_settings"]}
                   if "chosen_settings" in self.last_report else {}),
                **({"settings": settings.report()} if settings is not None else {})}

    def prepare(self, ref: SliceStack, proc: SliceStack, ref_slices: list[int],
                ref_labels: dict[int, np.ndarray], followup: bool,
                tick: Callable[[str], bool]) -> bool:
        """Set the stacks for one job; returns False if cancelled (nothing to train here)."""
        self.ref, self.proc = ref, proc
        self._direct.clear()
        return True

    def _segment(self, ref_img: Image2D, ref_lab_sq: np.ndarray,
                 targets: list[Image2D]) -> list[TargetResult]:
        self.calls += 1
        run = self.method.segment(ref_img, ref_lab_sq, targets)
        self.last_report = run.report
        if len(run.results) != len(targets):
            raise OneShotError("the method returned fewer results than targets (cancelled?)")
        return run.results

    def cross(self, r: int, labels_hw: np.ndarray) -> TargetResult:
        assert self.ref is not None and self.proc is not None
        res = _native(self._segment(self.ref.image(r), self.ref.labels_to_square(labels_hw),
                                    [self.proc.image(r)])[0], self.proc)
        if self.cross_flow_weight > 0:
            self._fuse_cross_flow(res, r, np.asarray(labels_hw))
        if self.refine_sigma > 0:
            self._refine_cross(res, r, np.asarray(labels_hw))
        return res

    def _fuse_cross_flow(self, res: TargetResult, r: int, labels_hw: np.ndarray) -> None:
        """Fuse a cross-visit prediction (in place) with reference slice ``r``'s labels carried
        along the optical flow onto the follow-up's slice ``r``: per label the method
        predicted, signed distances weighted ``cross_flow_weight`` on the flow's side (a label
        the method left out is not brought back). ``report["flow_agreement"]``: the mean
        Dice of the two predictions over their labels (1.0 when both are empty)."""
        from oneshotsam.volume.gaps import dice, fuse_labels
        from oneshotsam.volume.slice_flow import pull_labels, slice_flow

        assert self.ref is not None and self.proc is not None
        warped = np.asarray(res.labels)
        flowed = pull_labels(labels_hw, slice_flow(self.ref.plane(r), self.proc.plane(r),
                                                   self.flow_window_px)).astype(warped.dtype)
        held = [int(v) for v in np.unique(warped) if v]
        res.labels = fuse_labels(warped, np.where(np.isin(flowed, held), flowed, 0),
                                 1.0 - self.cross_flow_weight)
        res.report = {**res.report, "flow_agreement": round(dice(warped, flowed), 4)}

    def _refine_cross(self, res: TargetResult, r: int, labels_hw: np.ndarray) -> None:
        """Appearance refinement of a cross-visit prediction (in place), each label's
        statistics from reference slice ``r``; ``report["appearance_kept"]`` records the
        share of each label's predicted pixels kept."""
        from oneshotsam.volume.appearance import label_stats, refine_labels

        assert self.ref is not None and self.proc is not None
        values = [int(v) for v in np.unique(labels_hw) if v]
        stats = label_stats([(self.ref.plane(r), labels_hw)], values)
        warped = np.asarray(res.labels)
        res.labels = refine_labels(warped, self.proc.plane(r), stats, self.refine_sigma)
        res.report = {**res.report, "appearance_kept": {
            v: round(float(((res.labels == v) & (warped == v)).sum() / (warped == v).sum()), 4)
            for v in stats if (warped == v).any()}}

    def walk_from(self, src: int, src_labels: np.ndarray, dsts: list[int]) -> dict[int, np.ndarray]:
        """Labels of processing slices ``dsts`` predicted from slice ``src`` labelled
        ``src_labels`` (native ``(H, W)``), in one method call (a follow-up's corrected
        slice to its neighbours on the same visit); nothing precomputed is used."""
        assert self.proc is not None
        if not dsts:
            return {}
        results = self._segment(self.proc.image(src), self.proc.labels_to_square(src_labels),
                                [self.proc.image(k) for k in dsts])
        return {k: np.asarray(_native(r, self.proc).labels) for k, r in zip(dsts, results)}

    def step(self, src: int, src_labels: np.ndarray, dst: int) -> TargetResult:
        """Chain: ``dst`` from its neighbour ``src``; direct: the run's precomputed answer."""
        assert self.proc is not None
        if dst in self._direct:
            return self._direct.pop(dst)
        res = self._segment(self.proc.image(src), self.proc.labels_to_square(src_labels),
                            [self.proc.image(dst)])[0]
        return _native(res, self.proc)

    def begin_run(self, run: Any, seed_labels: np.ndarray) -> None:
        """Direct mode: segment all slices of a run from its seed in one call
        (labels of slices after a stop are discarded by the walker)."""
        assert self.proc is not None
        if self.mode != "direct" or not run.indices:
            return
        self._direct.clear()
        results = self._segment(self.proc.image(run.seed), self.proc.labels_to_square(seed_labels),
                                [self.proc.image(k) for k in run.indices])
        for k, res in zip(run.indices, results):
            self._direct[k] = _native(res, self.proc)


def _build_method(cfg: PropagationConfig, preset: str | None,
                  overrides: dict | None = None) -> OneShotMethod:
    from oneshotsam.methods.registry import build_method

    return build_method(cfg.method, backend_name=cfg.backend, checkpoint=cfg.checkpoint,
                        preset=preset, device=cfg.device,
                        **(dict(cfg.method_overrides) if overrides is None else overrides))


def _split_overrides(cfg: PropagationConfig) -> tuple[dict, dict]:
    """``(2D method's, volume engine's)`` settings of ``cfg.method_overrides``: a name
    both know goes to both; a name neither knows goes to the method, which refuses it
    with the list of valid names."""
    from dataclasses import fields

    from oneshotsam.methods.registry import config_classes
    from oneshotsam.volume.warpvol import VolumeWarpConfig

    volume = {f.name for f in fields(VolumeWarpConfig)}
    method = {f.name for c in config_classes(cfg.method) for f in fields(c)}
    items = dict(cfg.method_overrides)
    return ({k: v for k, v in items.items() if k in method or k not in volume},
            {k: v for k, v in items.items() if k in volume})


def build_engine(cfg: PropagationConfig, method: OneShotMethod | None,
                 dense: bool = False) -> SliceEngine:
    """The engine for ``cfg``; builds the 2D method through the registry when none is injected.

    ``auto``: ``medpersam-warp`` -> per-slice cross-visit registration (``direct``,
    settings chosen per slice pair by the method unless a preset is given; the volume
    preset's ``refine_sigma`` refines each prediction) when ``dense`` (:func:`~oneshotsam.volume.followup.dense_followup`),
    else the warp-volume engine (:mod:`oneshotsam.volume.warpvol`); other
    methods -> ``chain``."""
    mode = cfg.propagation
    name = getattr(method, "name", cfg.method) if method is not None else cfg.method
    if mode == "auto" and name == "medpersam-warp" and dense:
        from oneshotsam.volume.warpvol import VolumeWarpConfig

        for_method, for_volume = _split_overrides(cfg)
        if method is None:
            method = _build_method(cfg, cfg.preset, for_method)
        vcfg = VolumeWarpConfig.resolve(for_volume)[0]
        return MethodEngine(method, "direct", refine_sigma=vcfg.refine_sigma,
                            cross_flow_weight=vcfg.cross_flow_weight,
                            flow_window_px=vcfg.flow_window_px)
    if mode == "warp-volume" or (mode == "auto" and name == "medpersam-warp"):
        from oneshotsam.volume.warpvol import WarpVolumeEngine

        return WarpVolumeEngine.from_config(cfg, method)
    if method is None:
        method = _build_method(cfg, cfg.preset)
    return MethodEngine(method, "chain" if mode == "auto" else mode)
