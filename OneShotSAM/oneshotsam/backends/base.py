"""The promptable-segmenter contract shared by the SAM 1 and SAM 2 backends.

Frames:
  * image frame: pixels of the image given to :meth:`embed`, points ``(x, y)``;
  * input frame: the backend's square model input (1024 px for the real models;
    SAM 1 resizes the long side and pads bottom/right, SAM 2 stretches both
    axes);
  * grid frame: the ``G x G`` feature map (64 x 64 for the real models),
    cells ``[row, col]``;
  * low-res logits: ``(4G x 4G)`` (256 x 256) logits in the input frame, the
    format SAM takes back as a mask prompt.

This module imports numpy only; torch stays inside implementations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass
class Embedding:
    """The expensive, once-per-image encoder output.

    Attributes:
        key: image identity (content hash) used by the cache.
        image_hw: ``(H, W)`` of the embedded image.
        features: backend tensor(s); opaque to methods (use
            :meth:`PromptableSegmenter.feature_map`).
        extra: backend-specific tensors (SAM 2 high-resolution features).
    """

    key: str
    image_hw: tuple[int, int]
    features: Any
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Decoded:
    """Decoder output for one prompt set.

    Attributes:
        masks: ``(M, H, W)`` bool in the image frame (M = 3 with multimask, else 1).
        scores: ``(M,)`` float32 predicted IoU.
        low_res_logits: ``(M, 4G, 4G)`` float32 logits in the input frame, usable
            as the next ``mask_logits`` prompt.
    """

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray


class PromptableSegmenter(Protocol):
    """SAM-like model: encode once, decode many prompt sets cheaply."""

    name: str
    #: side of the square feature grid (64 for the real models)
    grid_size: int
    #: side of the square model input (1024 for the real models)
    input_size: int

    def embed(self, image_rgb_uint8: np.ndarray) -> Embedding:
        """Encode an ``(H, W, 3)`` uint8 RGB image; cached by content."""
        ...

    def decode(
        self,
        emb: Embedding,
        points_xy: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box_xyxy: np.ndarray | None = None,
        mask_logits: np.ndarray | None = None,
        multimask: bool = False,
        token_prototype: np.ndarray | None = None,
    ) -> Decoded:
        """Predict masks from prompts in the image frame.

        Args:
            points_xy: ``(N, 2)`` float pixel coordinates ``(x, y)``.
            point_labels: ``(N,)`` int, 1 positive, 0 negative.
            box_xyxy: ``(4,)`` float pixels.
            mask_logits: ``(4G, 4G)`` low-res logits (input frame).
            multimask: three masks instead of one.
            token_prototype: ``(C,)`` feature vector added to the decoder's
                tokens (PerSAM's target-semantic prompting), or None.
        """
        ...

    def feature_map(self, emb: Embedding) -> np.ndarray:
        """``(C, G, G)`` float32 raw image features (encoder neck output)."""
        ...

    def valid_grid_hw(self, emb: Embedding) -> tuple[int, int]:
        """Rows/cols of the grid covering image content (SAM 1 pads; SAM 2: G, G)."""
        ...

    def mask_to_grid(self, mask: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """``(G, G)`` float32 coverage in [0, 1] of a ``(H, W)`` mask, through the
        same resize (and pad) as the image."""
        ...

    def mask_to_grid_centre(self, mask: np.ndarray, image_hw: tuple[int, int],
                            rule: str = "midpoint") -> np.ndarray:
        """``(G, G)`` float32, ``> 0`` on cells whose centre lies inside the mask:
        the mask through the image's resize (and pad), minus its midpoint,
        bilinear to ``G x G`` (P2SAM's code; ``rule="persam"``: PerSAM's code)."""
        ...

    def grid_to_image(self, grid_map: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """Upsample a ``(G, G)`` map to the ``(H, W)`` image frame (bilinear),
        dropping padding."""
        ...

    def mask_to_logits(self, mask: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """A ``(H, W)`` binary mask as a ``(4G, 4G)`` mask prompt on SAM's logit scale."""
        ...
