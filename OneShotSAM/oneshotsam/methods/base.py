"""The contract every one-shot method fulfils.

A method takes ONE reference image with its label map and any number of
target images, and returns one label map per target. Methods that learn from
the whole target set (Med-PerSAM trains its warping model on all targets at
once) need the targets together, so the call takes them as a sequence.

Shared types below the methods (errors, progress, reference checks) live on the
ground floor: :mod:`oneshotsam.errors`, :mod:`oneshotsam.progress`,
:mod:`oneshotsam.checks`. This module imports numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from oneshotsam.progress import ProgressFn, no_progress
from oneshotsam.types import Image2D


@dataclass
class TargetResult:
    """The answer for one target image.

    Attributes:
        labels: ``(H, W)`` integer label map in the target's pixel grid, with the
            reference's label values (0 = background).
        confidence: overall confidence in ``[0, 1]`` (method-specific evidence,
            e.g. SAM's predicted IoU, warp similarity); used to rank slices for
            review.
        class_confidence: per label value, confidence in ``[0, 1]``.
        report: JSON-serialisable details (prompts used, part counts,
            retrieval costs, timings in seconds, messages).
        absent: label values the method judged absent from this target (an
            empty prediction that is an answer, not a failure).
        label_fit: per predicted label value, how well the target image agrees
            with the method's evidence INSIDE that label's region relative to the
            whole (1 = as well as elsewhere, lower = the target shows something
            else there); only methods that register an image report it
            (``medpersam-warp``: local SSIM / global SSIM); empty otherwise.
    """

    labels: np.ndarray
    confidence: float = 0.0
    class_confidence: dict[int, float] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    absent: list[int] = field(default_factory=list)
    label_fit: dict[int, float] = field(default_factory=dict)


@dataclass
class RunResult:
    """Results of a method run, in target order.

    ``results[i]`` answers ``targets[i]``; when the run was cancelled the list
    is shorter than the targets (only finished targets, in order) and
    ``cancelled`` is True.
    """

    results: list[TargetResult]
    cancelled: bool = False
    report: dict[str, Any] = field(default_factory=dict)


class OneShotMethod(Protocol):
    """A one-shot segmentation method."""

    #: registry name, e.g. ``"p2sam"``
    name: str

    def segment(
        self,
        reference: Image2D,
        reference_labels: np.ndarray,
        targets: Sequence[Image2D],
        progress: ProgressFn = no_progress,
    ) -> RunResult:
        """Segment every target like the reference.

        Args:
            reference: the annotated image.
            reference_labels: ``(H, W)`` integer labels on the reference grid;
                every non-zero value is a class to find in the targets.
            targets: images to segment (any size; grey or RGB like the reference).
            progress: called after each finished unit of work; False cancels.
        """
        ...


#: Backend used in messages and docs as the default suggestion.
SUGGESTED_BACKEND = "sam-vit-b"


def missing_backend_message(name: str) -> str:
    """What to tell a user who asked for ``name`` without a SAM backend."""
    return (
        f"method {name!r} needs a SAM model: pass --backend NAME --checkpoint PATH "
        f"(e.g. --backend {SUGGESTED_BACKEND} --checkpoint sam_vit_b_01ec64.pth). "
        f"Download official weights with `oneshotsam weights download {SUGGESTED_BACKEND}` "
        "(`oneshotsam weights list` shows all names), or use --method medpersam-warp, "
        "which needs no weights")
