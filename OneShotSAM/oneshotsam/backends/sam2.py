"""SAM 2.1 backend over the real ``sam2`` package.

Frames: ``SAM2Transforms`` stretches the image to ``L x L`` (no padding);
points are divided by (W, H) and multiplied by L, boxes become two corner
points with labels 2 and 3 placed before the clicks, masks are upsampled
straight to H x W -- all as ``SAM2ImagePredictor`` does. Feature-level sizes
are read from the model's output (``SAM2ImagePredictor._bb_feat_sizes``
assumes a 1024-pixel input and is not used).

Importing this module does not import torch, sam2 or hydra (``import sam2``
initialises Hydra, so it happens inside functions).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from oneshotsam.backends.segmenter import TorchSegmenter

#: official SAM 2.1 architectures: name -> config inside the sam2 package
SAM2_ARCHS = {
    "sam2.1-hiera-tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1-hiera-small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1-hiera-base-plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1-hiera-large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


def build_sam2_model(config: str, overrides: list[str] | None = None):
    """A randomly initialised SAM 2 model from a config of the sam2 package.

    Built on CPU with ``build_sam2`` (its default post-processing: dynamic
    multimask fallback via stability, as ``SAM2ImagePredictor`` uses).
    """
    from hydra.core.global_hydra import GlobalHydra

    from sam2.build_sam import build_sam2  # importing sam2 initialises Hydra

    if not GlobalHydra.instance().is_initialized():  # cleared by someone since the import
        from hydra import initialize_config_module

        initialize_config_module("sam2", version_base="1.2")
    return build_sam2(config, ckpt_path=None, device="cpu", mode="eval",
                      hydra_overrides_extra=list(overrides or []))


class Sam2Segmenter(TorchSegmenter):
    """:class:`PromptableSegmenter` over a ``sam2.modeling.sam2_base.SAM2Base``."""

    def __init__(self, model: Any, name: str, **kwargs: Any) -> None:
        from sam2.utils.transforms import SAM2Transforms

        super().__init__(model, name, **kwargs)
        self.input_size = int(self.model.image_size)
        self.grid_size = int(self.model.sam_image_embedding_size)
        self.token_dim = int(self.model.sam_mask_decoder.transformer_dim)
        # SAM2ImagePredictor clamps the returned low-res logits (after upsampling)
        self.low_res_clamp = 32.0
        self.model.mask_threshold = 0.0
        with warnings.catch_warnings():  # SAM2Transforms uses torch.jit.script (deprecated)
            warnings.simplefilter("ignore", FutureWarning)
            self.transforms = SAM2Transforms(resolution=self.input_size, mask_threshold=0.0)

    def _encode(self, image: np.ndarray):
        x = self.transforms(image)[None].to(self.device)
        backbone_out = self.model.forward_image(x)
        _, vision_feats, _, feat_sizes = self.model._prepare_backbone_features(backbone_out)
        if self.model.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + self.model.no_mem_embed
        feats = [f.permute(1, 2, 0).reshape(1, -1, *size).float()
                 for f, size in zip(vision_feats, feat_sizes)]
        return feats[-1], {"high_res_feats": feats[:-1]}

    def _to_input_xy(self, xy: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        h, w = image_hw
        out = np.array(xy, dtype=np.float64)
        out[..., 0] = out[..., 0] / w * self.input_size
        out[..., 1] = out[..., 1] / h * self.input_size
        return out

    def _prompt_decode(self, emb, coords, labels, box, mask, multimask, proto, sim):
        import torch

        from oneshotsam.backends.common import run_mask_decoder

        points = (coords, labels) if coords is not None else None
        if box is not None:
            box_coords = box.reshape(-1, 2, 2)
            box_labels = torch.tensor([[2, 3]], dtype=torch.int, device=box.device).expand(
                box_coords.shape[0], -1)
            if points is not None:
                points = (torch.cat([box_coords, points[0]], dim=1),
                          torch.cat([box_labels, points[1]], dim=1))
            else:
                points = (box_coords, box_labels)
        sparse, dense = self.model.sam_prompt_encoder(points=points, boxes=None, masks=mask)
        return run_mask_decoder(
            self.model.sam_mask_decoder, emb.features,
            self._dense_pe(self.model.sam_prompt_encoder), sparse, dense, multimask,
            token_prototype=proto, attn_sim=sim,
            high_res_features=emb.extra["high_res_feats"])

    def _upsample(self, maps, image_hw: tuple[int, int]):
        import torch.nn.functional as F

        # SAM2Transforms.postprocess_masks without hole/sprinkle filling (off by default)
        return F.interpolate(maps.float(), tuple(int(v) for v in image_hw), mode="bilinear",
                             align_corners=False)

    def _image_to_input(self, mask, image_hw: tuple[int, int]):
        import torch.nn.functional as F

        return F.interpolate(mask, size=(self.input_size, self.input_size), mode="bilinear",
                             align_corners=False, antialias=True)
