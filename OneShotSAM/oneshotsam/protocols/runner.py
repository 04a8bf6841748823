"""How the protocols call the method and the elastix peer, time them and record settings.

* The method is built ONCE per command through the public API
  (:func:`oneshotsam.benchmark2d.make_method` for 2D, :func:`oneshotsam.settings.propagation_config`
  + :func:`oneshotsam.volume.pipeline.propagate` for volumes) with the user's
  ``--preset`` / ``--set`` only: None and ``{}`` by default, so the method chooses
  its own settings. Whatever the method reports about the settings it ran with
  (``describe()`` when it has one, each call's run report, the volume engine's
  ``describe()``) is kept in the JSON.
* CPU seconds are process CPU time (``time.process_time()``: every thread of this
  process, PyTorch's and elastix's native threads included) around ONE call: a
  2D method call on all of a reference's targets, one elastix pair, one
  ``propagate`` call. Module loading (torch, monai, itk) is done before any timed call.

Numpy at import time; everything heavy inside the methods.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from oneshotsam.errors import OneShotError
from oneshotsam.peer_elastix import ElastixSettings
from oneshotsam.protocols.stats import Clock


@dataclass
class Options:
    """Everything a protocol reads from its command line (defaults = the documented protocol).

    Common: ``data``, the model (``method``, ``preset``, ``overrides``, ``backend``,
    ``checkpoint``, ``device``), ``peer`` (run elastix), ``elastix`` (its pinned
    settings), ``quiet``. Per protocol: ``refs``, ``washed``, ``targets``,
    ``peer_targets`` (JSRT); ``kinds``, ``apply_to``, ``seed`` (perturbations);
    ``patients``, ``peer_every`` (ACDC); ``cases`` (LA)."""

    data: Path
    method: str = "medpersam-warp"
    preset: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    backend: str | None = None
    checkpoint: str | None = None
    device: str = "auto"
    peer: bool = True
    elastix: ElastixSettings = field(default_factory=ElastixSettings)
    quiet: bool = False
    refs: int = 10
    washed: int = 2
    targets: int | None = None
    peer_targets: int = 30
    kinds: tuple[str, ...] = ()
    apply_to: tuple[str, ...] = ("targets", "reference")
    seed: int = 0
    patients: set[int] | None = None
    peer_every: int = 1
    cases: int | None = None


@dataclass
class Segmented:
    """One method call: labels per target, its process CPU and wall seconds, its report."""

    labels: list[np.ndarray]
    cpu: float
    wall: float
    report: dict[str, Any]


def score(pred: np.ndarray, gt: np.ndarray, values: Sequence[int],
          names: dict[int, str]) -> dict[str, Any]:
    """Dice per class of ``values`` (the reference's classes; :func:`oneshotsam.evaluate.dice_iou`:
    a class absent from both scores 1, from one side 0) and their mean."""
    from oneshotsam.evaluate import dice_iou

    d = {names.get(v, str(v)): float(s["dice"]) for v, s in dice_iou(pred, gt, values).items()}
    return {"dice": d, "mean": float(np.mean(list(d.values()))) if d else float("nan")}


def within_extent(pred: np.ndarray, truth: np.ndarray, axis: int) -> np.ndarray:
    """``pred`` with each label value removed from the slices (along ``axis``) where
    ``truth`` lacks that value: the prediction a perfect absence rule would leave
    (an oracle for scoring, nothing is added). Same shape and dtype as ``pred``."""
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    other = tuple(a for a in range(truth.ndim) if a != axis)
    shape = [1] * truth.ndim
    shape[axis] = -1
    out = pred.copy()
    for v in np.unique(pred[pred != 0]):
        there = (truth == v).any(axis=other).reshape(shape)
        out[(pred == v) & ~there] = 0
    return out


def slices_outside(pred: np.ndarray, truth: np.ndarray, axis: int,
                   kept: np.ndarray | None = None) -> int:
    """How many slices (along ``axis``) carry a label value that ``truth`` lacks there.
    ``kept``: ``within_extent(pred, truth, axis)`` when the caller has it already."""
    pred = np.asarray(pred)
    if kept is None:
        kept = within_extent(pred, truth, axis)
    other = tuple(a for a in range(pred.ndim) if a != axis)
    return int((np.asarray(kept) != pred).any(axis=other).sum())


def _describe(obj: Any) -> Any:
    fn = getattr(obj, "describe", None)
    if not callable(fn):
        return None
    try:
        return fn()
    except TypeError:  # a describe() that needs arguments: nothing to record
        return None


def environment() -> dict[str, Any]:
    """Where the figures were measured (CPU count, load, thread counts, versions)."""
    import sys
    from importlib import metadata

    env: dict[str, Any] = {"cpu_count": os.cpu_count(),
                           "load_average": [round(x, 2) for x in os.getloadavg()]}
    if "torch" in sys.modules:
        env["torch_threads"] = int(sys.modules["torch"].get_num_threads())
    for pkg in ("itk-elastix", "torch"):
        try:
            env[f"{pkg}_version"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return env


class Runner:
    """The method and the peer of one protocol run (see the module docstring)."""

    def __init__(self, opts: Options) -> None:
        from oneshotsam.progress import ConsoleProgress

        self.opts = opts
        self.progress = ConsoleProgress(opts.quiet, bar=False, interval_s=0.0)
        self._inner = ConsoleProgress(opts.quiet, bar=False, interval_s=20.0)
        self._method: Any = None

    # ----------------------------------------------------------------- set-up
    def prepare(self, volumes: bool = False) -> None:
        """Check the peer is installed and load the heavy modules before any timed call."""
        if self.opts.peer:
            from oneshotsam import peer_elastix

            self.say("loading elastix (untimed)", 0, 1)
            peer_elastix.load()
        import importlib

        for heavy in ("torch", "monai"):  # the first method call would otherwise pay for them
            try:
                importlib.import_module(heavy)
            except ImportError:
                pass
        if volumes:
            self.volume_config()  # refuse bad settings before anything runs
        else:
            self.method()

    def say(self, message: str, done: int, total: int) -> None:
        """One progress line ``[done/total] message`` (stderr; none with --quiet)."""
        self.progress(done, total, message)

    def inner(self, prefix: str):
        """Progress callback of one long call (training steps...): a line every 20 s."""
        def prog(done: int, total: int, message: str) -> bool:
            return self._inner(done, total, f"{prefix}: {message}")
        return prog

    def method(self):
        """The 2D method, built once (default settings unless --preset / --set)."""
        if self._method is None:
            from oneshotsam.benchmark2d import make_method
            from oneshotsam.settings import check_method_overrides

            check_method_overrides(self.opts.method, self.opts.overrides)
            o = self.opts
            self._method = make_method(o.method, preset=o.preset, backend=o.backend,
                                       checkpoint=o.checkpoint, device=o.device,
                                       overrides=dict(o.overrides) or None)
        return self._method

    def volume_config(self):
        """The :class:`~oneshotsam.volume.types.PropagationConfig` of ``propagate``'s defaults
        with the user's model options."""
        from oneshotsam.settings import propagation_config

        o = self.opts
        return propagation_config(None, method=o.method, overrides=o.overrides or None,
                                  backend=o.backend, checkpoint=o.checkpoint, preset=o.preset,
                                  device=o.device)

    def settings(self) -> dict[str, Any]:
        """What was passed, and what the method says it runs with."""
        o = self.opts
        rec: dict[str, Any] = {"method": o.method, "preset": o.preset,
                               "overrides": dict(o.overrides), "backend": o.backend,
                               "device": o.device}
        if self._method is not None:
            rec["method_preset"] = getattr(getattr(self._method, "config", None), "preset", None)
            rec["method_describe"] = _describe(self._method)
        return rec

    def peer_settings(self) -> dict[str, Any] | None:
        if not self.opts.peer:
            return None
        return {"tool": "elastix (itk-elastix): affine then B-spline, "
                        "AdvancedMattesMutualInformation, default parameter maps",
                **self.opts.elastix.to_dict()}

    # ----------------------------------------------------------------- calls
    def segment(self, reference: tuple[str, np.ndarray], reference_labels: np.ndarray,
                targets: Sequence[tuple[str, np.ndarray]]) -> Segmented:
        """One method call: reference ``(name, image)`` + labels -> every target ``(name, image)``."""
        from oneshotsam.intensity import to_image2d

        ref = to_image2d(np.asarray(reference[1]), "auto", name=reference[0])
        imgs = [to_image2d(np.asarray(a), "auto", name=n) for n, a in targets]
        method = self.method()
        with Clock() as c:
            run = method.segment(ref, np.asarray(reference_labels), imgs,
                                 progress=self.inner(reference[0]))
        if run.cancelled or len(run.results) != len(imgs):
            raise OneShotError("the method returned fewer results than targets")
        report = {k: v for k, v in dict(run.report).items() if k != "targets"}
        return Segmented([np.asarray(r.labels) for r in run.results], c.cpu, c.wall, report)

    def peer_2d(self, fixed: np.ndarray, moving: np.ndarray, moving_labels: np.ndarray,
                spacing: Sequence[float] = (1.0, 1.0)):
        from oneshotsam.peer_elastix import register_2d

        return register_2d(fixed, moving, moving_labels, spacing, self.opts.elastix)

    def peer_3d(self, fixed: np.ndarray, moving: np.ndarray, moving_labels: np.ndarray,
                spacing: Sequence[float]):
        from oneshotsam.peer_elastix import register_3d

        return register_3d(fixed, moving, moving_labels, spacing, self.opts.elastix)

    def propagate(self, reference, reference_labels, targets: Sequence = ()):
        """One ``propagate`` call with the default configuration; ``(result, Clock, record)``
        where ``record`` is the engine's and the target's report (slice lists dropped)."""
        from oneshotsam.volume.pipeline import propagate

        cfg = self.volume_config()
        with Clock() as c:
            res = propagate(reference, reference_labels, list(targets), cfg,
                            progress=self.inner(reference.name or "propagate"))
        rep = res.report
        job = {k: v for k, v in (rep.get("targets") or [{}])[0].items()
               if not k.startswith("slices_") and k not in ("skipped_outside_fov",)}
        record = {"engine": rep.get("engine"), "config": rep.get("config"), "job": job}
        return res, c, record


__all__ = ["Options", "Segmented", "Runner", "score", "within_extent", "slices_outside",
           "environment"]
