"""The one console progress reporter of the command line (and the benchmarks).

:class:`ConsoleProgress` is a ``progress(done, total, message) -> bool``
callback (:data:`ProgressFn`): on a terminal it draws a
tqdm bar with elapsed and remaining time; otherwise (a log file, CI) it prints
plain lines ``[done/total] message`` at most every ``interval_s`` seconds and at
the end. It never cancels (always returns True). tqdm is imported on first use.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

#: ``progress(done, total, message) -> bool``; returning False asks the run to
#: stop as soon as the current item is finished (cancel).
ProgressFn = Callable[[int, int, str], bool]


def no_progress(done: int, total: int, message: str) -> bool:  # noqa: ARG001
    """The progress callback that reports nothing and never cancels."""
    return True


class ConsoleProgress:
    """See module docstring.

    Args:
        quiet: print nothing.
        stream: where to print (default ``sys.stderr``).
        bar: force the bar on (True) or off (False); None = when ``stream`` is a terminal.
        interval_s: minimum seconds between two plain lines.
    """

    def __init__(self, quiet: bool = False, stream: TextIO | None = None, bar: bool | None = None,
                 interval_s: float = 0.5) -> None:
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.use_bar = bool(isatty and isatty()) if bar is None else bar
        self.interval_s = interval_s
        self._last = 0.0
        self._bar: Any = None

    def __call__(self, done: int, total: int, message: str) -> bool:
        if self.quiet:
            return True
        if self.use_bar:
            self._draw(done, total, message)
            return True
        now = time.perf_counter()
        if now - self._last >= self.interval_s or done >= total:
            self._last = now
            print(f"[{done}/{total}] {message}", file=self.stream, flush=True)
        return True

    def _draw(self, done: int, total: int, message: str) -> None:
        from tqdm import tqdm

        if self._bar is None or self._bar.total != total:
            self.close()
            self._bar = tqdm(total=total, file=self.stream, dynamic_ncols=True, leave=True,
                             bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} "
                                        "[{elapsed}<{remaining}] {postfix}")
        self._bar.n = min(done, total)
        self._bar.set_postfix_str(message[:60], refresh=False)
        self._bar.refresh()
        if done >= total:
            self.close()

    def close(self) -> None:
        """Finish the bar (if any)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


__all__ = ["ConsoleProgress"]
