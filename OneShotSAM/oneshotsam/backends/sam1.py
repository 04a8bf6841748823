"""SAM 1 backend over the real ``segment_anything`` package.

Frames: the image is resized with ``ResizeLongestSide`` (long side -> L) and
padded bottom/right to ``L x L`` by ``Sam.preprocess``; points are scaled with
``ResizeLongestSide.apply_coords``; masks come back through
``Sam.postprocess_masks`` (upsample to L, crop the padding, resize to H x W),
exactly like ``SamPredictor``.

Importing this module does not import torch or segment_anything.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from oneshotsam.backends.base import Embedding
from oneshotsam.backends.segmenter import TorchSegmenter

#: official SAM 1 architectures: name -> segment_anything registry key
SAM1_ARCHS = {"sam-vit-b": "vit_b", "sam-vit-l": "vit_l", "sam-vit-h": "vit_h"}


def build_sam1_model(arch: str):
    """A randomly initialised real-size SAM 1 (``sam-vit-b|l|h``), eval mode."""
    from segment_anything import sam_model_registry

    return sam_model_registry[SAM1_ARCHS[arch]](checkpoint=None).eval()


def _sdpa_attention_forward(self, x):
    """``segment_anything`` image-encoder ``Attention.forward`` computed with
    ``F.scaled_dot_product_attention``; the decomposed relative position terms
    become its additive ``attn_mask`` (same maths; fused softmax kernel)."""
    import torch
    import torch.nn.functional as F
    from segment_anything.modeling.image_encoder import get_rel_pos

    b, h, w, _ = x.shape
    qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # (B, heads, HW, head_dim)
    bias = None
    if self.use_rel_pos:
        r_q = q.reshape(b, self.num_heads, h, w, -1)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, get_rel_pos(h, h, self.rel_pos_h))
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, get_rel_pos(w, w, self.rel_pos_w))
        bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, self.num_heads, h * w, h * w)
        bias = bias.to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
    out = out.view(b, self.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
    return self.proj(out)


def use_sdpa_attention(model) -> int:
    """Switch every image-encoder attention of a SAM 1 model to
    :func:`_sdpa_attention_forward` (per instance); returns the count."""
    import types

    n = 0
    for block in model.image_encoder.blocks:
        block.attn.forward = types.MethodType(_sdpa_attention_forward, block.attn)
        n += 1
    return n


class Sam1Segmenter(TorchSegmenter):
    """:class:`PromptableSegmenter` over a ``segment_anything.modeling.Sam``."""

    def __init__(self, model: Any, name: str, **kwargs: Any) -> None:
        from segment_anything.utils.transforms import ResizeLongestSide

        super().__init__(model, name, **kwargs)
        self.input_size = int(self.model.image_encoder.img_size)
        self.grid_size = int(self.model.prompt_encoder.image_embedding_size[0])
        self.token_dim = int(self.model.mask_decoder.transformer_dim)
        self.transform = ResizeLongestSide(self.input_size)

    def input_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """``(h, w)`` of the resized image inside the padded ``L x L`` input."""
        return self.transform.get_preprocess_shape(int(image_hw[0]), int(image_hw[1]),
                                                   self.input_size)

    def valid_grid_hw(self, emb: Embedding) -> tuple[int, int]:
        """Grid rows/cols covering content: ``ceil(h * G / L)``, ``ceil(w * G / L)``."""
        h, w = self.input_hw(emb.image_hw)
        g, side = self.grid_size, self.input_size
        return min(g, math.ceil(h * g / side)), min(g, math.ceil(w * g / side))

    def _encode(self, image: np.ndarray):
        import torch

        resized = self.transform.apply_image(image)
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        x = self.model.preprocess(x)
        feats = self.model.image_encoder(x).float()
        return feats, {"input_hw": tuple(int(s) for s in resized.shape[:2])}

    def _to_input_xy(self, xy: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        return self.transform.apply_coords(np.asarray(xy, dtype=np.float64), tuple(image_hw))

    def _prompt_decode(self, emb, coords, labels, box, mask, multimask, proto, sim):
        from oneshotsam.backends.common import run_mask_decoder

        points = (coords, labels) if coords is not None else None
        sparse, dense = self.model.prompt_encoder(points=points, boxes=box, masks=mask)
        return run_mask_decoder(
            self.model.mask_decoder, emb.features, self._dense_pe(self.model.prompt_encoder),
            sparse, dense, multimask, token_prototype=proto, attn_sim=sim)

    def _upsample(self, maps, image_hw: tuple[int, int]):
        return self.model.postprocess_masks(maps.float(), self.input_hw(image_hw),
                                            tuple(int(v) for v in image_hw))

    def _image_to_input(self, mask, image_hw: tuple[int, int]):
        import torch.nn.functional as F

        h, w = self.input_hw(image_hw)
        t = F.interpolate(mask, size=(h, w), mode="bilinear", align_corners=False,
                          antialias=True)
        return F.pad(t, (0, self.input_size - w, 0, self.input_size - h))
