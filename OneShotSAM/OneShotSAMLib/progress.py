"""Progress of a run as a user sees it: status text, remaining time, cancel.

``progress(done, total, message) -> bool`` is the one callback of a run
(False cancels; ``total == 0`` means "busy, no count yet", e.g. while a model
loads). :class:`ProgressRelay` sits between the Logic's caller and the
engine: it remembers the last slice count, forwards what happens INSIDE a
slice (model training steps) as messages under that count, and keeps a cancel
sticky so that every later check stops too. :class:`ProgressMethod` hands the
relay to a 2D method, so Cancel also reaches its training loop. Plain Python.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from oneshotsam.progress import ProgressFn, no_progress


class ProgressClock:
    """Remaining-time estimate for a progress callback (linear in work units).

    The rate is measured from the first reported unit on (model loading and
    other start-up time before it do not count), falling back to the time since
    the clock was created while only one count has been seen.
    """

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self._first: tuple[float, int] | None = None

    def remaining_s(self, done: int, total: int) -> float | None:
        if done <= 0 or total <= 0 or done > total:
            return None
        now = time.perf_counter()
        if self._first is None:
            self._first = (now, done)
        t1, d1 = self._first
        if done > d1:
            return (now - t1) / (done - d1) * (total - done)
        return (now - self.t0) / done * (total - done)


def format_duration(seconds: float) -> str:
    """``"about 40 s"``, ``"about 3 min"``, ``"about 1 h 05 min"``."""
    s = max(0.0, float(seconds))
    if s < 90:
        return f"about {max(1, round(s))} s"
    if s < 3600:
        return f"about {round(s / 60)} min"
    h, m = divmod(round(s / 60), 60)
    return f"about {h} h {m:02d} min"


def progress_text(done: int, total: int, message: str, remaining_s: float | None = None) -> str:
    """One status line: ``"12 / 40 · about 2 min left · <message>"`` (no count while busy)."""
    parts = []
    if total > 0:
        parts.append(f"{min(done, total)} / {total}")
    if remaining_s is not None:
        parts.append(f"{format_duration(remaining_s)} left")
    if message:
        parts.append(message)
    return " · ".join(parts)


class ProgressRelay:
    """Wraps a run's progress callback (see module docstring).

    Attributes:
        cancelled: the callback asked to stop (sticky).
        messages: every message passed on, in order (the last ones explain a failure).
    """

    def __init__(self, progress: ProgressFn = no_progress, keep: int = 200) -> None:
        self.progress = progress
        self.cancelled = False
        self.generation = 0  # the caller's tag of the scene the run belongs to
        self.last = (0, 0, "")
        self.messages: list[str] = []
        self._keep = keep

    def _ask(self, done: int, total: int, message: str) -> bool:
        self.messages.append(message)
        del self.messages[:-self._keep]
        if self.cancelled:
            return False
        if not self.progress(done, total, message):
            self.cancelled = True
        return not self.cancelled

    def __call__(self, done: int, total: int, message: str) -> bool:
        """The engine's slice-level progress."""
        self.last = (int(done), int(total), message)
        return self._ask(int(done), int(total), message)

    def busy(self, message: str) -> bool:
        """A step without a count (loading a model, preparing volumes)."""
        done, total, _ = self.last
        return self._ask(done, total, message)

    def inner(self, done: int, total: int, message: str) -> bool:  # noqa: ARG002
        """Progress from inside one slice (training steps): shown under the slice count."""
        d, t, outer = self.last
        text = f"{outer}: {message}" if outer else message
        return self._ask(d, t, text)


class ProgressMethod:
    """A 2D one-shot method whose ``segment`` also reports to a :class:`ProgressRelay`.

    The volume engine calls ``segment`` without a progress callback; this
    wrapper passes the relay in, so training steps are shown and a cancel
    stops them (the method then returns early and the run ends as cancelled).
    Every other attribute is the wrapped method's.
    """

    def __init__(self, method: Any, relay: ProgressRelay) -> None:
        self.method = method
        self.relay = relay
        self.name = getattr(method, "name", "?")

    def segment(self, reference: Any, reference_labels: Any, targets: Sequence[Any],
                progress: ProgressFn = no_progress) -> Any:
        def both(done: int, total: int, message: str) -> bool:
            return bool(progress(done, total, message)) & self.relay.inner(done, total, message)

        return self.method.segment(reference, reference_labels, targets, both)

    def __getattr__(self, item: str) -> Any:
        return getattr(self.method, item)
