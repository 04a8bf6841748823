"""What a Logic run gives its front ends: the review table's rows and the run's outcome.

Plain dataclasses (no MRML, no numpy), shared by the Slicer widget, the browser app and
the tests through :mod:`OneShotSAMLib.logic`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SliceRow:
    """One written slice for the review table (sorted lowest confidence first).

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
        rows: written slices, lowest confidence first.
        cancelled: the progress callback asked to stop (finished slices kept).
        output_segmentation_ids: MRML IDs of the segmentations written into.
        report: the engine's JSON report plus the Logic's timings.
    """

    rows: list[SliceRow]
    cancelled: bool
    output_segmentation_ids: list[str]
    report: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


__all__ = ["SliceRow", "RunOutcome"]
