"""What a Logic run gives its front ends: the review table's rows and the run's outcome.

Plain dataclasses (no MRML, no numpy), shared by the Slicer widget, the browser app and
the tests through :mod:`OneShotSAMLib.logic`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


@dataclass
class SliceRow:
    """One written slice for the review table (ordered by :func:`review_order`).

    ``volume_node_id`` is the target's ID in ITS scene (a sequence item's ID is
    one of the sequence's internal scene): show a row with
    :meth:`OneShotSAMLogic.locate_row`, never by looking the ID up.
    """

    target_name: str
    volume_node_id: str
    output_index: int
    array_axis: int
    slice_index: int
    confidence: float
    flagged: bool
    sequence_node_id: str | None = None
    sequence_item: int | None = None


@dataclass
class RunOutcome:
    """What a run did.

    Attributes:
        rows: written slices in review order (:func:`review_order`).
        cancelled: the progress callback asked to stop (finished slices kept).
        output_segmentation_ids: MRML IDs of the segmentations written into.
        report: the engine's JSON report plus the Logic's timings.
    """

    rows: list[SliceRow]
    cancelled: bool
    output_segmentation_ids: list[str]
    report: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def review_order(reports: Sequence[dict[str, Any]], self_mode: bool) -> Callable[[SliceRow], tuple]:
    """Sort key of the review table. Within the annotated volume (``self_mode``) the rows of
    output 0 follow the engine's review queue (``report["review_queue"]`` of the last engine
    report: the slices whose correction is expected to fix most first, the order the
    correction benchmark measures, docs/corrections.md); every other row (follow-up targets,
    whose slices are on their own grid, and slices the queue does not list) comes after
    them, flagged first, then lowest confidence."""
    queue = list(reports[-1].get("review_queue") or []) if (self_mode and reports) else []
    rank = {int(q["slice"]) if isinstance(q, dict) else int(q): i for i, q in enumerate(queue)}

    def key(r: SliceRow) -> tuple:
        pos = rank.get(r.slice_index) if r.output_index == 0 else None
        return (pos is None, pos if pos is not None else 0, not r.flagged, r.confidence,
                r.output_index, r.slice_index)

    return key


__all__ = ["SliceRow", "RunOutcome", "review_order"]
