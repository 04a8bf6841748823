"""A propagation session: the first run, then Updates after the user's corrections.

::

    session = PropagationSession(reference, config, targets=(), method=None)
    result = session.run(reference_labels)            # first propagation
    result = session.update(labels, corrected_slices=[k], erased_slices=[], approved_slices=[])

``labels`` is the whole label volume as the user now has it: the reference
volume's labels (``target_index=None``) or, for a follow-up, that target's labels in
its own grid. ``corrected_slices`` become references (for a follow-up: references of
that visit), ``erased_slices`` were emptied by the user (the structure ends there on
that side), ``approved_slices`` are kept as they are. The result's report carries
per slice a ``confidence`` in [0, 1] (lower = more likely wrong), the ``flagged`` state,
and ``report["review_queue"]``: slice indices, most likely wrong first.

Numpy at import time.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from oneshotsam.errors import OneShotError
from oneshotsam.methods.base import OneShotMethod
from oneshotsam.progress import ProgressFn, no_progress
from oneshotsam.types import Volume
from oneshotsam.volume.types import PropagationConfig, PropagationResult, SliceEvent


def review_queue(per_slice: list[dict]) -> list[int]:
    """Slice indices to review, most likely wrong first: flagged slices first, then by
    ascending confidence (ties: lower index); annotated / approved seeds are left out."""
    rows = [r for r in per_slice if r.get("status") != "seed"]
    rows.sort(key=lambda r: (not r.get("flagged", False), float(r.get("confidence", 1.0)),
                             int(r["slice"])))
    return [int(r["slice"]) for r in rows]


def _with_queue(result: PropagationResult) -> PropagationResult:
    for job in result.report.get("targets", []):
        job["review_queue"] = review_queue(job.get("per_slice", []))
    jobs = result.report.get("targets", [])
    result.report["review_queue"] = jobs[0]["review_queue"] if jobs else []
    return result


class PropagationSession:
    """Keeps what the first run built (trained warp state, encodings, per-slice results)
    so an Update recomputes only the slices a correction changes."""

    def __init__(self, reference: Volume, config: PropagationConfig = PropagationConfig(),
                 targets: Sequence[Volume] = (), method: OneShotMethod | None = None) -> None:
        self.reference, self.config = reference, config
        self.targets, self.method = list(targets), method
        self.result: PropagationResult | None = None
        self._ref_labels: Volume | None = None

    def run(self, reference_labels: Volume, progress: ProgressFn = no_progress,
            on_slice: Callable[[SliceEvent], None] | None = None) -> PropagationResult:
        """The first propagation (same as :func:`oneshotsam.volume.pipeline.propagate`)."""
        from oneshotsam.volume.run import run_propagation

        self._ref_labels = reference_labels
        self.result = _with_queue(run_propagation(self.reference, reference_labels, self.targets,
                                                  self.config, progress, on_slice, self.method))
        return self.result

    def update(self, labels: Volume, corrected_slices: Sequence[int],
               erased_slices: Sequence[int] = (), approved_slices: Sequence[int] = (),
               target_index: int | None = None, progress: ProgressFn = no_progress,
               on_slice: Callable[[SliceEvent], None] | None = None) -> PropagationResult:
        """Propagate again after corrections (see the module docstring)."""
        import dataclasses

        from oneshotsam.volume.run import run_propagation

        if self.result is None or self._ref_labels is None:
            raise OneShotError("update needs a first run: call session.run(reference_labels) first")
        if target_index is not None:
            raise OneShotError("follow-up corrections are not supported by this session yet")
        prev = self.result.report["reference"]
        refs = set(prev["reference_slices"]) | {int(k) for k in corrected_slices}
        fixed = (set(prev["fixed_slices"]) | {int(k) for k in erased_slices}
                 | {int(k) for k in approved_slices}) - refs
        cfg = dataclasses.replace(self.config, reference_slices=tuple(sorted(refs)),
                                  fixed_slices=tuple(sorted(fixed)))
        res = run_propagation(self.reference, labels, self.targets, cfg, progress, on_slice,
                              self.method)
        self.config, self._ref_labels = cfg, labels
        self.result = _with_queue(res)
        return self.result


__all__ = ["PropagationSession", "review_queue"]
