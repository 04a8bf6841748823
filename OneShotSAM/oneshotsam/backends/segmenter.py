"""Base class of the torch backends: caching, validation, frames.

Subclasses (:mod:`.sam1`, :mod:`.sam2`) supply the package-specific parts:
``_encode`` (image -> features), ``_to_input_xy`` (image frame -> input
frame points), ``_prompt_decode`` (prompt encoder + decoder), ``_upsample``
(low-res/grid maps -> image frame, the package's own post-processing) and
``_image_to_input`` (a mask through the image's resize / pad).

Importing this module does not import torch.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from oneshotsam.backends.base import Decoded, Embedding
from oneshotsam.backends.common import (
    MASK_LOGIT_SCALE, PRECISIONS, EmbeddingCache, autocast_context, check_image,
    content_key)
from oneshotsam.devices import resolve_device
from oneshotsam.errors import OneShotError

#: reductions of a mask to the feature grid (:meth:`TorchSegmenter.mask_to_grid_centre`)
GRID_RULES = ("midpoint", "persam")
#: SAM 1's pixel mean / std of the first channel, which PerSAM's code applies to the mask
PERSAM_MASK_MEAN, PERSAM_MASK_STD = 123.675, 58.395


class TorchSegmenter(abc.ABC):
    """A promptable segmenter over a SAM-family torch model.

    Beyond the :class:`~oneshotsam.backends.base.PromptableSegmenter` protocol:
    :meth:`decode_batch` (B prompt sets in one decoder pass, results equal to
    :meth:`decode`), ``attn_sim`` (PerSAM target-guided attention),
    :meth:`clear_cache` and ``token_dim`` (length of a ``token_prototype``).

    Attributes:
        name: backend name (``"sam-vit-b"``, ``"sam2-tiny-test"``, ...).
        grid_size: side G of the square feature grid (64 for real models).
        input_size: side L of the square model input (1024 for real models).
        encode_calls: number of real encoder runs (cache hits not counted).
        device: torch device string; precision: ``"fp32"`` or ``"bf16"``
            (autocast of the image encoder; the decoder always runs fp32).
    """

    #: precision used when ``precision="auto"`` (tiny test models: fp32)
    auto_precision = "bf16"
    #: clamp of the returned low-res logits (SAM 2 predictor: 32), None = none
    low_res_clamp: float | None = None

    def __init__(self, model: Any, name: str, *, device: str = "auto",
                 precision: str = "auto", cache_size: int = 8) -> None:
        if precision not in PRECISIONS:
            raise OneShotError(f"precision must be one of {PRECISIONS}; got {precision!r}")
        self.name = name
        self.device = resolve_device(device)
        self.precision = self.auto_precision if precision == "auto" else precision
        self.model = model.to(self.device).eval()
        self.cache = EmbeddingCache(cache_size)
        #: prompt sets per decoder pass in :meth:`decode_batch`
        self.decode_batch_size = 64 if self.device.startswith("cuda") else 1
        self.encode_calls = 0

    # -- to be supplied by subclasses ------------------------------------------------
    grid_size: int
    input_size: int
    token_dim: int

    @abc.abstractmethod
    def _encode(self, image: np.ndarray) -> tuple[Any, dict[str, Any]]:
        """Run the image encoder: (features, extra tensors)."""

    @abc.abstractmethod
    def _to_input_xy(self, xy: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """Map ``(N, 2)`` image-frame points to the model input frame."""

    @abc.abstractmethod
    def _prompt_decode(self, emb, coords, labels, box, mask, multimask, proto, sim):
        """Prompt encoder + mask decoder on input-frame prompts."""

    @abc.abstractmethod
    def _upsample(self, maps, image_hw: tuple[int, int]):
        """Low-res logits (input frame) to the image frame."""

    @abc.abstractmethod
    def _image_to_input(self, mask, image_hw: tuple[int, int]):
        """An image-frame map resized (and padded) into the input frame."""

    # -- public API -----------------------------------------------------------------
    def embed(self, image_rgb_uint8: np.ndarray) -> Embedding:
        """Encode an ``(H, W, 3)`` uint8 RGB image (``(H, W)`` grey accepted).

        Cached by content (SHA-1 of bytes, shape, dtype): an equal image is never
        encoded twice while it stays in the LRU (``cache_size`` entries).
        """
        import torch

        a = check_image(image_rgb_uint8)
        key = content_key(a)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        with torch.inference_mode(), autocast_context(self.device, self.precision == "bf16"):
            features, extra = self._encode(a)
        self.encode_calls += 1
        extra["backend"] = id(self)
        emb = Embedding(key=key, image_hw=(int(a.shape[0]), int(a.shape[1])),
                        features=features, extra=extra)
        self.cache.put(emb)
        return emb

    def decode(self, emb: Embedding, points_xy: np.ndarray | None = None,
               point_labels: np.ndarray | None = None, box_xyxy: np.ndarray | None = None,
               mask_logits: np.ndarray | None = None, multimask: bool = False,
               token_prototype: np.ndarray | None = None,
               attn_sim: np.ndarray | None = None) -> Decoded:
        """Predict masks from prompts in the image frame (see ``base.py``).

        ``attn_sim``: optional ``(G, G)`` term in the grid frame for PerSAM's
        target-guided attention, added as given to the softmaxed token-to-image
        attention of every two-way block, then re-softmaxed (PerSAM's code).
        The methods build it from a similarity map the authors' way
        (``oneshotsam.methods.persam.target_guided_attention``: standardised
        at image resolution, resized to the grid, sigmoid). Works for SAM 1
        and SAM 2 decoders.
        """
        self._check_emb(emb)
        xy = lab = None
        if points_xy is not None or point_labels is not None:
            xy, lab = _check_points(points_xy, point_labels)
        box = None if box_xyxy is None else _check_box(box_xyxy)[None]
        side = 4 * self.grid_size
        mask = (None if mask_logits is None else
                _check_array(mask_logits, (side, side), "mask_logits")[None])
        return self._decode_group(emb, None if xy is None else xy[None],
                                  None if lab is None else lab[None], box, mask, multimask,
                                  *self._extras(token_prototype, attn_sim))[0]

    def decode_batch(self, emb: Embedding, points_xy: np.ndarray | None = None,
                     point_labels: np.ndarray | None = None,
                     box_xyxy: np.ndarray | None = None, mask_logits: np.ndarray | None = None,
                     multimask: bool = False, token_prototype: np.ndarray | None = None,
                     attn_sim: np.ndarray | None = None) -> list[Decoded]:
        """Decode B prompt sets on one embedding; ``result[b]`` equals
        ``decode(emb, <set b>)`` exactly.

        Args:
            points_xy: ``(B, N, 2)`` pixel ``(x, y)``; point_labels ``(B, N)``
                with 1 / 0, and -1 marking padding (sets of fewer points).
            box_xyxy: ``(B, 4)`` or None; mask_logits: ``(B, 4G, 4G)`` or None.
            token_prototype, attn_sim: shared by all sets (see :meth:`decode`).

        Sets are grouped by their number of real points and each group runs in
        chunks of :attr:`decode_batch_size` sets through the decoder (no padding
        tokens reach SAM, so results do not depend on batching). On CPU the
        chunk is 1: measured, one 15-set batch of the real decoder took about
        twice as long as 15 single decodes (memory traffic of the repeated
        64 x 64 x 256 embedding); on CUDA it is 64.
        """
        self._check_emb(emb)
        sizes = {len(a) for a in (points_xy, point_labels, box_xyxy, mask_logits)
                 if a is not None}
        if len(sizes) != 1:
            raise OneShotError("decode_batch needs at least one prompt array and the same "
                               f"number of prompt sets B in each; got sizes {sorted(sizes)}")
        n_sets = sizes.pop()
        sets: list[tuple[np.ndarray, np.ndarray] | None] = [None] * n_sets
        if points_xy is not None or point_labels is not None:
            if points_xy is None or point_labels is None:
                raise OneShotError("points_xy and point_labels must be given together")
            xy = np.asarray(points_xy, dtype=np.float64)
            lab = np.asarray(point_labels)
            if xy.ndim != 3 or xy.shape[2] != 2 or lab.shape != xy.shape[:2]:
                raise OneShotError(f"points_xy must be (B, N, 2) and point_labels (B, N); got "
                                   f"{xy.shape} and {lab.shape}")
            for i in range(n_sets):
                keep = lab[i] != -1
                sets[i] = _check_points(xy[i][keep], lab[i][keep])
        boxes = None
        if box_xyxy is not None:
            boxes = np.stack([_check_box(b) for b in np.asarray(box_xyxy, dtype=np.float64)])
        side = 4 * self.grid_size
        masks = None
        if mask_logits is not None:
            masks = _check_array(mask_logits, (n_sets, side, side), "mask_logits")
        extras = self._extras(token_prototype, attn_sim)
        groups: dict[int, list[int]] = {}
        for i, st in enumerate(sets):
            groups.setdefault(-1 if st is None else len(st[1]), []).append(i)
        out: list[Decoded | None] = [None] * n_sets
        step = max(1, int(self.decode_batch_size))
        chunks = [(n, idx[k:k + step]) for n, idx in groups.items()
                  for k in range(0, len(idx), step)]
        for n, idx in chunks:
            xy_g = None if n < 0 else np.stack([sets[i][0] for i in idx]).reshape(len(idx), n, 2)
            lab_g = None if n < 0 else np.stack([sets[i][1] for i in idx]).reshape(len(idx), n)
            res = self._decode_group(emb, xy_g, lab_g, None if boxes is None else boxes[idx],
                                     None if masks is None else masks[idx], multimask, *extras)
            for i, d in zip(idx, res):
                out[i] = d
        return out  # type: ignore[return-value]

    def _extras(self, token_prototype, attn_sim):
        import torch

        proto = sim = None
        if token_prototype is not None:
            p = _check_array(token_prototype, (self.token_dim,), "token_prototype")
            proto = torch.as_tensor(p, dtype=torch.float, device=self.device).view(1, 1, -1)
        if attn_sim is not None:
            g = self.grid_size
            s = _check_array(attn_sim, (g, g), "attn_sim")
            sim = torch.as_tensor(s, dtype=torch.float, device=self.device).view(1, 1, 1, g * g)
        return proto, sim

    def _decode_group(self, emb, xy, lab, box, mask, multimask, proto, sim) -> list[Decoded]:
        """Validated numpy prompts with a leading batch axis -> one Decoded per set."""
        import torch

        hw = emb.image_hw
        dev = self.device
        coords = labels = box_t = mask_t = None
        if xy is not None:
            coords = torch.as_tensor(self._to_input_xy(xy, hw), dtype=torch.float, device=dev)
            labels = torch.as_tensor(lab, dtype=torch.int, device=dev)
        if box is not None:
            box_t = torch.as_tensor(self._to_input_xy(box.reshape(-1, 2, 2), hw).reshape(-1, 4),
                                    dtype=torch.float, device=dev)
        if mask is not None:
            mask_t = torch.as_tensor(mask, dtype=torch.float, device=dev)[:, None]
        with torch.inference_mode():
            low_res, iou = self._prompt_decode(emb, coords, labels, box_t, mask_t,
                                               bool(multimask), proto, sim)
            masks = (self._upsample(low_res, hw) > self.model.mask_threshold).cpu().numpy()
            if self.low_res_clamp is not None:
                low_res = low_res.clamp(-self.low_res_clamp, self.low_res_clamp)
            low = low_res.float().cpu().numpy().astype(np.float32)
            scores = iou.float().cpu().numpy().astype(np.float32)
        return [Decoded(masks=masks[i], scores=scores[i], low_res_logits=low[i])
                for i in range(low.shape[0])]

    def feature_map(self, emb: Embedding) -> np.ndarray:
        """``(C, G, G)`` float32 raw image features (encoder neck output; SAM 2:
        the lowest-resolution level after ``no_mem_embed``)."""
        self._check_emb(emb)
        cached = emb.extra.get("feature_map_np")
        if cached is None:
            cached = emb.features[0].float().cpu().numpy().astype(np.float32)
            cached.flags.writeable = False
            emb.extra["feature_map_np"] = cached
        return cached

    def valid_grid_hw(self, emb: Embedding) -> tuple[int, int]:
        """Grid rows/cols covering image content (SAM 2: the whole grid)."""
        return self.grid_size, self.grid_size

    def mask_to_grid(self, mask: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """``(G, G)`` float32 coverage in [0, 1]: the mask through the image's
        resize (and pad) to the ``L x L`` input, then area-averaged to ``G x G``."""
        return self._mask_to_square(mask, image_hw, self.grid_size)

    def mask_to_grid_centre(self, mask: np.ndarray, image_hw: tuple[int, int],
                            rule: str = "midpoint") -> np.ndarray:
        """``(G, G)`` float32, ``> 0`` on the grid cells of a mask (the authors' reduction).

        The ``(H, W)`` mask (``> 0`` = inside) goes through the image's resize
        (and pad) to the ``L x L`` input as 8-bit values (the authors resize an
        8-bit mask image) and is then resized bilinearly (no antialias,
        half-pixel centres) to ``G x G``, i.e. sampled at each cell centre.

        ``rule="midpoint"`` (P2SAM's code): the midpoint ``(max + min) / 2`` of
        the input-frame map is subtracted first, so ``> 0`` marks cells whose
        centre lies inside the mask (coverage about >= 0.5), not cells the mask
        merely touches; values in units of the mask's 0..1 range.
        ``rule="persam"`` (PerSAM's code): the resized mask is normalised like
        the image's first channel, ``(255 m - 123.675) / 58.395``, before the
        zero padding; ``> 0`` is then the same centre rule (threshold 0.485)
        except next to the padding, where the zeros count as half inside.
        """
        import torch
        import torch.nn.functional as F

        if rule not in GRID_RULES:
            raise OneShotError(f"rule must be one of {GRID_RULES}; got {rule!r}")
        hw = _check_hw(image_hw)
        m = np.asarray(mask)
        if m.shape != hw:
            raise OneShotError(f"mask is {m.shape[1]}x{m.shape[0]} but the image is "
                               f"{hw[1]}x{hw[0]}: they must share one pixel grid")
        g = self.grid_size
        with torch.inference_mode():
            t = torch.as_tensor((m > 0).astype(np.float32), device=self.device)[None, None]
            t = torch.round(self._image_to_input(t, hw).clamp(0.0, 1.0) * 255.0)
            if rule == "midpoint":
                t = (t - (t.max() + t.min()) / 2.0) / 255.0
            else:
                ones = torch.ones((1, 1) + hw, device=self.device)
                inside = self._image_to_input(ones, hw)  # 1 on the image, 0 on padding
                t = torch.where(inside > 0.5, (t - PERSAM_MASK_MEAN) / PERSAM_MASK_STD, 0.0)
            t = F.interpolate(t, size=(g, g), mode="bilinear", align_corners=False)
            return t[0, 0].cpu().numpy().astype(np.float32)

    def similarity_to_image(self, maps: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """``(P, G, G)`` grid maps -> ``(P, H, W)`` float32 in the image frame, the
        way PerSAM's and P2SAM's code brings a similarity map to the image before
        picking points: bilinear x4 (``F.interpolate(scale_factor=4)``), then
        the package's mask post-processing (SAM 1: to ``L``, crop the padding,
        to ``H x W``)."""
        import torch
        import torch.nn.functional as F

        g = self.grid_size
        m = np.asarray(maps, dtype=np.float32)
        if m.ndim != 3 or m.shape[1:] != (g, g):
            raise OneShotError(f"maps must be (P, {g}, {g}); got {m.shape}")
        hw = _check_hw(image_hw)
        with torch.inference_mode():
            t = torch.as_tensor(m, device=self.device)[None]
            t = F.interpolate(t, scale_factor=4, mode="bilinear")
            return self._upsample(t, hw)[0].cpu().numpy().astype(np.float32)

    def lowres_to_image(self, low_res: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """``(N, 4G, 4G)`` low-res logits -> ``(N, H, W)`` float32 logits in the image
        frame by the package's own mask post-processing (the maps :meth:`decode`
        thresholds into masks; PerSAM-F weighs them)."""
        import torch

        side = 4 * self.grid_size
        lr = np.asarray(low_res, dtype=np.float32)
        if lr.ndim != 3 or lr.shape[1:] != (side, side):
            raise OneShotError(f"low_res must be (N, {side}, {side}); got {lr.shape}")
        hw = _check_hw(image_hw)
        with torch.inference_mode():
            t = torch.as_tensor(lr, device=self.device)[None]
            return self._upsample(t, hw)[0].cpu().numpy().astype(np.float32)

    def grid_to_image(self, grid_map: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """``(G, G)`` map -> ``(H, W)`` float32 in the image frame, upsampled with
        the package's own mask post-processing (bilinear; SAM 1 drops padding)."""
        import torch

        g = self.grid_size
        m = _check_array(grid_map, (g, g), "grid_map")
        hw = _check_hw(image_hw)
        with torch.inference_mode():
            t = torch.as_tensor(m, dtype=torch.float, device=self.device)[None, None]
            return self._upsample(t, hw)[0, 0].cpu().numpy().astype(np.float32)

    def mask_to_logits(self, mask: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """``(H, W)`` binary mask -> ``(4G, 4G)`` float32 mask prompt in the input
        frame: ``MASK_LOGIT_SCALE * (2 * coverage - 1)`` (+8 in, -8 out)."""
        cov = self._mask_to_square(mask, image_hw, 4 * self.grid_size)
        return (MASK_LOGIT_SCALE * (2.0 * cov - 1.0)).astype(np.float32)

    def clear_cache(self) -> None:
        self.cache.clear()

    def _dense_pe(self, prompt_encoder):
        """``prompt_encoder.get_dense_pe()`` (constant for a model), computed once."""
        pe = getattr(self, "_dense_pe_cache", None)
        if pe is None:
            pe = prompt_encoder.get_dense_pe()
            self._dense_pe_cache = pe
        return pe

    # -- helpers --------------------------------------------------------------------
    def _mask_to_square(self, mask: np.ndarray, image_hw, side: int) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        hw = _check_hw(image_hw)
        m = np.asarray(mask)
        if m.shape != hw:
            raise OneShotError(f"mask is {m.shape[1]}x{m.shape[0]} but the image is "
                               f"{hw[1]}x{hw[0]}: they must share one pixel grid")
        with torch.inference_mode():
            t = torch.as_tensor((m > 0).astype(np.float32), device=self.device)[None, None]
            t = self._image_to_input(t, hw)
            t = F.interpolate(t, size=(side, side), mode="area")
            return t[0, 0].clamp(0.0, 1.0).cpu().numpy().astype(np.float32)

    def _check_emb(self, emb: Embedding) -> None:
        if not isinstance(emb, Embedding) or emb.extra.get("backend") != id(self):
            raise OneShotError(
                f"this embedding was not made by backend {self.name!r}: embed the image "
                "with the same backend that decodes it")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, device={self.device!r}, "
                f"precision={self.precision!r}, grid_size={self.grid_size}, "
                f"input_size={self.input_size})")


def _check_hw(image_hw) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in image_hw)
    except (TypeError, ValueError):
        raise OneShotError(f"image_hw must be (H, W); got {image_hw!r}") from None
    if h < 1 or w < 1:
        raise OneShotError(f"image_hw must be positive; got {image_hw!r}")
    return h, w


def _check_array(a, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64) if not isinstance(a, np.ndarray) else a
    if arr.shape != shape:
        raise OneShotError(f"{what} must have shape {shape}; got {arr.shape}")
    if not np.isfinite(arr).all():
        raise OneShotError(f"{what} contains NaN or Inf values")
    return np.asarray(arr, dtype=np.float32)


def _check_points(points_xy, point_labels) -> tuple[np.ndarray, np.ndarray]:
    if points_xy is None or point_labels is None:
        raise OneShotError("points_xy and point_labels must be given together")
    xy = np.asarray(points_xy, dtype=np.float64)
    lab = np.asarray(point_labels)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise OneShotError(f"points_xy must be (N, 2) pixel (x, y); got shape {xy.shape}")
    if lab.shape != (xy.shape[0],):
        raise OneShotError(f"point_labels must be ({xy.shape[0]},); got shape {lab.shape}")
    if not np.isfinite(xy).all():
        raise OneShotError("points_xy contains NaN or Inf")
    if lab.size and not np.isin(lab, (0, 1)).all():
        raise OneShotError("point_labels must be 1 (positive) or 0 (negative)")
    return xy, lab.astype(np.int64)


def _check_box(box_xyxy) -> np.ndarray:
    b = np.asarray(box_xyxy, dtype=np.float64).reshape(-1)
    if b.shape != (4,):
        raise OneShotError(f"box_xyxy must be (x0, y0, x1, y1); got {np.shape(box_xyxy)}")
    if not np.isfinite(b).all():
        raise OneShotError("box_xyxy contains NaN or Inf")
    if b[2] < b[0] or b[3] < b[1]:
        raise OneShotError(f"box_xyxy must have x0 <= x1 and y0 <= y1; got {b.tolist()}")
    return b
