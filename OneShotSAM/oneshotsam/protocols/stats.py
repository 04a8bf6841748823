"""Means, standard errors, Markdown-friendly tables and CPU clocks of the protocols.

Conventions: the standard error is the sample standard deviation (``ddof=1``)
divided by the square root of the count (Med-PerSAM Table 2: "average and
standard error ... for ten different reference samples"); it is undefined (NaN,
printed ``-``) for fewer than two values. Numbers are printed with 4 decimals
(Dice) or 2 (seconds); a missing number prints ``-``. Standard library + numpy.
"""

from __future__ import annotations

import math
import time
from typing import Any, Iterable, Sequence

import numpy as np


def mean_se(values: Iterable[float]) -> tuple[float, float]:
    """``(mean, standard error)``; NaN mean for no values, NaN SE for one value."""
    v = np.asarray([float(x) for x in values if x is not None and not math.isnan(float(x))])
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1:
        return float(v[0]), math.nan
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))


def mean_or_nan(values: Iterable[float]) -> float:
    return mean_se(values)[0]


def fmt(x: Any, digits: int = 4) -> str:
    """``x`` with ``digits`` decimals; ``-`` for None / NaN; integers and text unchanged."""
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(int(x))
    x = float(x)
    return "-" if math.isnan(x) else f"{x:.{digits}f}"


def fmt_pm(mean: float, se: float, digits: int = 4) -> str:
    """``"0.9120 +- 0.0040"``; ``"0.9120 +- -"`` when the SE is undefined."""
    return f"{fmt(mean, digits)} +- {fmt(se, digits)}"


def ratio(a: float | None, b: float | None) -> float:
    """``a / b``; NaN when either is missing or ``b`` is 0."""
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return math.nan
    return float(a) / float(b)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 4) -> str:
    """A Markdown table, columns padded so that it also reads as plain text."""
    cells = [[str(h) for h in headers]] + [[fmt(c, digits) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    out = [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join([*out[:1], out[1], *(line(r) for r in cells[1:])])


class Clock:
    """``with Clock() as c: ...`` -> ``c.wall`` and ``c.cpu`` seconds (process CPU time:
    every thread of this process, native ones included)."""

    def __enter__(self) -> "Clock":
        self.wall = self.cpu = math.nan
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c


__all__ = ["mean_se", "mean_or_nan", "fmt", "fmt_pm", "ratio", "table", "Clock"]
