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
    ``processing_slice``: for a follow-up target's row, the engine's slice (in the
    reference's grid, the frame of that target's review queue) that this target slice
    was predicted as; None for the reference's own rows (their ``slice_index`` is it).
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
    processing_slice: int | None = None


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
    """Sort key of the review table: the rows follow the engine's review queue (the slices
    whose correction is expected to fix most first, the order the correction benchmark
    measures, docs/corrections.md) of the last engine report. Within the annotated volume
    (``self_mode``) output 0's rows by ``slice_index`` and ``report["review_queue"]``; for
    follow-up targets each output ``t``'s rows by ``processing_slice`` and
    ``report["targets"][t]["review_queue"]`` (a target slice takes the rank of the engine
    slice it was predicted as). Rows the queue does not list (slices still streaming in,
    rows without a ``processing_slice``) come after them, flagged first, then lowest
    confidence."""
    last = reports[-1] if reports else {}
    if self_mode:
        queues = {0: last.get("review_queue") or []}
    else:
        queues = {t: (tr or {}).get("review_queue") or []
                  for t, tr in enumerate(last.get("targets") or [])}
    ranks = {t: {int(q["slice"]) if isinstance(q, dict) else int(q): i for i, q in enumerate(queue)}
             for t, queue in queues.items()}

    def key(r: SliceRow) -> tuple:
        k = r.slice_index if self_mode else r.processing_slice
        pos = ranks.get(r.output_index, {}).get(k) if k is not None else None
        return (pos is None, pos if pos is not None else 0, not r.flagged, r.confidence,
                r.output_index, r.slice_index)

    return key


__all__ = ["SliceRow", "RunOutcome", "review_order"]
