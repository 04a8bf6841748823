"""Machinery shared by the SAM 1 and SAM 2 backends.

* :class:`TorchSegmenter`: the backend base class (embedding cache, encoder
  call counting, input and prompt validation, device and precision);
* :func:`run_mask_decoder`: the SAM mask decoder re-run from its own
  submodules, so that PerSAM's target-semantic prompting (a token prototype
  added to the query tokens) and target-guided attention can be injected;
  without them the output equals the stock decoder's bit for bit.

Torch is imported inside functions only: importing this module imports numpy.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections import OrderedDict
from typing import Any

import numpy as np

from oneshotsam.backends.base import Embedding
from oneshotsam.errors import OneShotError

#: A binary mask given to :meth:`TorchSegmenter.mask_to_logits` becomes
#: ``MASK_LOGIT_SCALE * (2 * coverage - 1)`` at each low-res cell: +8 inside,
#: -8 outside, 0 on a half-covered boundary cell. SAM's own confident low-res
#: logits are of this magnitude (about 5-20), so the prompt reads like one of
#: SAM's outputs fed back.
MASK_LOGIT_SCALE = 8.0

PRECISIONS = ("auto", "fp32", "bf16")


def content_key(image: np.ndarray) -> str:
    """SHA-1 of an array's bytes, shape and dtype (the embedding cache key)."""
    a = np.ascontiguousarray(image)
    h = hashlib.sha1()
    h.update(str((a.shape, a.dtype.str)).encode())
    h.update(a.tobytes())
    return h.hexdigest()


class EmbeddingCache:
    """A bounded LRU of :class:`Embedding` by content key (size 0 disables)."""

    def __init__(self, size: int = 8) -> None:
        if size < 0:
            raise OneShotError(f"cache_size must be >= 0; got {size}")
        self.size = int(size)
        self._items: OrderedDict[str, Embedding] = OrderedDict()

    def get(self, key: str) -> Embedding | None:
        emb = self._items.get(key)
        if emb is not None:
            self._items.move_to_end(key)
        return emb

    def put(self, emb: Embedding) -> None:
        if self.size == 0:
            return
        self._items[emb.key] = emb
        self._items.move_to_end(emb.key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items


def check_image(image: Any) -> np.ndarray:
    """Validate an encoder input: ``(H, W, 3)`` uint8 RGB (``(H, W)`` grey is
    repeated to RGB). Returns a (possibly new) array; the input is untouched."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise OneShotError(
            f"the backend takes uint8 RGB images; got dtype {a.dtype}. Window the image "
            "(oneshotsam.intensity) and use Image2D.rgb_uint8()")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise OneShotError(f"the backend takes (H, W, 3) RGB images; got shape {a.shape}")
    if a.shape[0] < 2 or a.shape[1] < 2:
        raise OneShotError(f"image is too small to segment: {a.shape[1]}x{a.shape[0]} pixels")
    return a


def autocast_context(device: str, use_bf16: bool):
    """bf16 autocast on ``device`` when ``use_bf16``, else a no-op context."""
    import torch

    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu",
                          dtype=torch.bfloat16)


def _attention_with_sim(attn, q, k, v, attn_sim):
    """A SAM ``Attention`` module's forward with PerSAM's target-guided term:
    softmax(q k^T / sqrt(d)) + attn_sim, softmaxed again (PerSAM)."""
    import torch

    q = attn._separate_heads(attn.q_proj(q), attn.num_heads)
    k = attn._separate_heads(attn.k_proj(k), attn.num_heads)
    v = attn._separate_heads(attn.v_proj(v), attn.num_heads)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    weights = torch.softmax(weights + attn_sim, dim=-1)
    return attn.out_proj(attn._recombine_heads(weights @ v))


def _block_with_sim(layer, queries, keys, query_pe, key_pe, attn_sim):
    """``TwoWayAttentionBlock.forward`` with target-guided token-to-image attention."""
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        queries = queries + layer.self_attn(q=q, k=q, v=queries)
    queries = layer.norm1(queries)
    q = queries + query_pe
    k = keys + key_pe
    queries = layer.norm2(queries + _attention_with_sim(
        layer.cross_attn_token_to_image, q, k, keys, attn_sim))
    queries = layer.norm3(queries + layer.mlp(queries))
    q = queries + query_pe
    k = keys + key_pe
    keys = layer.norm4(keys + layer.cross_attn_image_to_token(q=k, k=q, v=queries))
    return queries, keys


def _run_transformer(tr, image_embedding, image_pe, point_embedding, proto, attn_sim):
    """``TwoWayTransformer.forward`` with PerSAM's additions, as the PerSAM and
    P2SAM code computes them: ``queries += target_embedding`` before each block
    and ``q += target_embedding`` before the final token-to-image attention.
    Their first ``+=`` runs in place on the tensor that is also
    ``point_embedding``, so the prototype enters the tokens' positional term
    (``query_pe`` of every block and of the final attention) once as well."""
    keys = image_embedding.flatten(2).permute(0, 2, 1)
    key_pe = image_pe.flatten(2).permute(0, 2, 1)
    if proto is not None:
        point_embedding = point_embedding + proto  # their in-place add on the shared tensor
    queries = point_embedding
    for i, layer in enumerate(tr.layers):
        if proto is not None and i > 0:
            queries = queries + proto
        if attn_sim is None:
            queries, keys = layer(queries=queries, keys=keys, query_pe=point_embedding,
                                  key_pe=key_pe)
        else:
            queries, keys = _block_with_sim(layer, queries, keys, point_embedding, key_pe,
                                            attn_sim)
    q = queries + point_embedding
    k = keys + key_pe
    if proto is not None:
        q = q + proto
    queries = tr.norm_final_attn(queries + tr.final_attn_token_to_image(q=q, k=k, v=keys))
    return queries, keys


def run_mask_decoder(decoder, image_embeddings, image_pe, sparse, dense, multimask: bool,
                     token_prototype=None, attn_sim=None, high_res_features=None):
    """Run a SAM 1 or SAM 2 ``MaskDecoder`` from its submodules.

    Mirrors ``MaskDecoder.forward`` of both packages (SAM 2: object-score token,
    high-resolution features, dynamic multimask fallback via stability).

    Args:
        image_embeddings: ``(1, C, G, G)``; image_pe: ``(1, C, G, G)``.
        sparse: ``(B, N, C)``; dense: ``(B, C, G, G)`` prompt embeddings.
        token_prototype: ``(1, 1, C)`` tensor or None.
        attn_sim: ``(1, 1, 1, G*G)`` tensor (post-softmax additive term) or None.
    Returns:
        ``(low_res_logits (B, M, 4G, 4G), iou (B, M))`` tensors.
    """
    import torch

    s = 1 if getattr(decoder, "pred_obj_scores", False) else 0
    weights = ([decoder.obj_score_token.weight] if s else []) + [
        decoder.iou_token.weight, decoder.mask_tokens.weight]
    output_tokens = torch.cat(weights, dim=0).unsqueeze(0).expand(sparse.size(0), -1, -1)
    tokens = torch.cat((output_tokens, sparse), dim=1)
    src = torch.repeat_interleave(image_embeddings, tokens.shape[0], dim=0) + dense
    pos_src = torch.repeat_interleave(image_pe, tokens.shape[0], dim=0)
    b, c, h, w = src.shape
    hs, src = _run_transformer(decoder.transformer, src, pos_src, tokens, token_prototype,
                               attn_sim)
    iou_token_out = hs[:, s, :]
    mask_tokens_out = hs[:, s + 1:(s + 1 + decoder.num_mask_tokens), :]
    src = src.transpose(1, 2).reshape(b, c, h, w)
    if not getattr(decoder, "use_high_res_features", False):
        upscaled = decoder.output_upscaling(src)
    else:
        dc1, ln1, act1, dc2, act2 = decoder.output_upscaling
        feat_s0, feat_s1 = high_res_features
        upscaled = act1(ln1(dc1(src) + feat_s1))
        upscaled = act2(dc2(upscaled) + feat_s0)
    hyper_in = torch.stack([mlp(mask_tokens_out[:, i, :]) for i, mlp in
                            enumerate(decoder.output_hypernetworks_mlps)], dim=1)
    b, c, h, w = upscaled.shape
    masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
    iou = decoder.iou_prediction_head(iou_token_out)
    if multimask:
        return masks[:, 1:], iou[:, 1:]
    if getattr(decoder, "dynamic_multimask_via_stability", False) and not decoder.training:
        return decoder._dynamic_multimask_via_stability(masks, iou)
    return masks[:, 0:1], iou[:, 0:1]
