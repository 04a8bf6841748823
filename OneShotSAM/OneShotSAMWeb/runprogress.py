"""The progress bar and remaining time of a run, as the page shows them.

The Logic reports ``(done, total, message)`` with ``done``/``total`` counting
written slices; model training, which takes most of a weight-free run, reports
its steps only in the message (``"... step 12/48"``) under an unchanged slice
count. Shown as a slice fraction alone, the bar stayed at 0 % through training
while a remaining time computed from the slice rate grew. Here:

* training steps seen before the first slice fill the first
  :data:`TRAIN_SHARE` of the bar, the slices the rest;
* a remaining time is shown only for the phase under way and only once its
  rate is measured: at least :data:`MIN_UNITS` units over at least
  :data:`MIN_SECONDS` seconds of that phase (training: "left in training").
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

#: part of the bar for the training steps reported before the first slice
TRAIN_SHARE = 0.6
#: units (steps or slices) and seconds of a phase before its remaining time is shown
MIN_UNITS = 3
MIN_SECONDS = 2.0

_STEP = re.compile(r"\bstep (\d+)\s*/\s*(\d+)")


def training_step(message: str) -> tuple[int, int] | None:
    """``(step, steps)`` of a training message (``"... step 12/48"``), else None."""
    m = _STEP.search(message or "")
    if m is None:
        return None
    d, n = int(m.group(1)), int(m.group(2))
    return (d, n) if n > 0 else None


@dataclass
class _Phase:
    name: str
    t0: float
    units0: int


class RunProgress:
    """Turns a run's progress reports into a bar percentage and a remaining time.

    ``clock``: seconds (tests pass their own).
    """

    def __init__(self, clock=time.perf_counter) -> None:
        self.clock = clock
        self.trained = False
        self.percent = 0
        self.eta = ""
        self._phase: _Phase | None = None

    def _eta(self, name: str, units: int, total_units: int, what: str) -> str:
        now = self.clock()
        if self._phase is None or self._phase.name != name or units < self._phase.units0:
            self._phase = _Phase(name, now, units)
            return ""
        p = self._phase
        done_here, spent = units - p.units0, now - p.t0
        if done_here < MIN_UNITS or spent < MIN_SECONDS or units >= total_units:
            return ""
        left = spent / done_here * (total_units - units)
        return f"about {max(1, round(left))} s left{what}"

    def update(self, done: int, total: int, message: str) -> None:
        step = training_step(message)
        if step is not None and done == 0:
            self.trained = True
            d, n = step
            self.percent = int(100 * TRAIN_SHARE * min(d, n) / n)
            self.eta = self._eta("training", d, n, " in training")
            return
        if total <= 0:
            self.eta = ""
            return
        base = TRAIN_SHARE if self.trained else 0.0
        self.percent = int(100 * (base + (1 - base) * min(done, total) / total))
        self.eta = self._eta("slices", done, total, "") if done > 0 else ""
