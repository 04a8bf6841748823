"""Outward propagation from seed slices, with the absence rule.

Seeds are slices whose labels are known (annotated, approved, corrected, or
predicted across visits). A run is a list of slices walked away from its seed one
slice at a time (never leaping over a slice; :mod:`oneshotsam.volume.gaps` plans
them): slice ``dst`` is predicted from its already finished neighbour ``src`` by a
step function, then the absence rule (:mod:`oneshotsam.volume.stoprule`) removes
labels that ended; a run stops when no label is left. Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from oneshotsam.methods.base import TargetResult
from oneshotsam.volume.stoprule import StopRule, appearance_score, decide_label, review_flag

#: ``step(src_index, src_labels_hw, dst_index) -> TargetResult`` with labels on dst's grid
StepFn = Callable[[int, np.ndarray, int], TargetResult]
#: ``tick(message) -> bool``: one slice finished; False cancels
TickFn = Callable[[str], bool]


@dataclass
class SliceOutcome:
    """One slice of the processing grid after propagation.

    ``labels`` is ``(H, W)`` in the slice's native pixel grid; ``status`` is
    ``"seed"`` (annotated / fixed / cross-visit prediction), ``"predicted"`` or
    ``"stopped"`` (structure judged absent: empty labels).
    """

    index: int
    labels: np.ndarray
    confidence: float
    flagged: bool
    status: str
    source: int | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Run:
    """Slices walked from ``seed`` in ``direction`` (first = the seed's neighbour)."""

    seed: int
    direction: int
    indices: list[int]


def walk_runs(
    runs: list[Run],
    seed_outcomes: Mapping[int, SliceOutcome],
    step: StepFn,
    rule: StopRule,
    pixel_area_mm2: float,
    tick: TickFn,
    plane_of: Callable[[int], np.ndarray] | None = None,
    label_stats: Mapping[int, tuple[float, float]] | None = None,
    begin_run: Callable[[Run, np.ndarray], None] | None = None,
    emit: Callable[[SliceOutcome], None] | None = None,
) -> tuple[dict[int, SliceOutcome], bool]:
    """Propagate every run outward; returns (outcomes of non-seed slices, cancelled).

    Args:
        plane_of: windowed native plane of a slice (for the appearance test).
        label_stats: per label value, (mean, std) of windowed intensity inside
            the annotation (appearance test); None disables it.
        begin_run: called with each run and its seed labels before the run
            (engines that batch a run, e.g. direct mode).
        emit: called with every finished outcome (before ``tick``).
    """
    def done(o: SliceOutcome, message: str) -> bool:
        out[o.index] = o
        if emit is not None:
            emit(o)
        return tick(message)

    out: dict[int, SliceOutcome] = {}
    for run in runs:
        src = run.seed
        src_labels = np.asarray(seed_outcomes[src].labels)
        if begin_run is not None and np.any(src_labels):
            begin_run(run, src_labels)
        for pos, dst in enumerate(run.indices):
            alive = [int(v) for v in np.unique(src_labels) if v != 0]
            if not alive:
                for rest in run.indices[pos:]:
                    o = SliceOutcome(rest, np.zeros_like(src_labels), 0.0, False, "stopped",
                                     src, {"reason": "structure ended on a slice nearer the seed"})
                    if not done(o, f"slice {rest}: skipped (structure ended)"):
                        return out, True
                break
            res = step(src, src_labels, dst)
            pred = np.asarray(res.labels)
            plane = plane_of(dst) if (plane_of is not None and label_stats) else None
            labels = np.zeros_like(src_labels)
            decisions = []
            for v in alive:
                m = pred == v
                conf = float(res.class_confidence.get(v, res.confidence))
                app = None
                if plane is not None and v in label_stats:
                    app = appearance_score(plane, m, *label_stats[v])
                d = decide_label(rule, v, m, src_labels == v, pixel_area_mm2, conf,
                                 v in res.absent, app)
                decisions.append(d)
                if d.present:
                    labels[m] = v
            confidence = float(res.confidence)
            flagged, why = review_flag(rule, confidence, decisions, res.report.get("review", ()))
            info = {"source": int(src), "seed": int(run.seed),
                    "labels": {str(d.value): {"present": d.present, "area_mm2": round(d.area_mm2, 2),
                                              "confidence": round(d.confidence, 4),
                                              **({"appearance": round(d.appearance, 4)}
                                                 if d.appearance is not None else {}),
                                              **({"stop": d.reason} if d.reason else {})}
                               for d in decisions}}
            if why:
                info["review"] = why
            present_any = any(d.present for d in decisions)
            o = SliceOutcome(dst, labels, confidence, flagged,
                             "predicted" if present_any else "stopped", src, info)
            if not done(o, f"slice {dst} from {src}"):
                return out, True
            src, src_labels = dst, labels
    return out, False
