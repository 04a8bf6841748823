"""Tiny, randomly initialised SAM 1 / SAM 2 models of the REAL architectures.

For tests and demos without pretrained weights (none can be downloaded on
the build machines). They run the same code paths as the real models
(``segment_anything.modeling`` parts; ``sam2`` built from the SAM 2.1 Hiera-T
config with Hydra overrides) at a 128-pixel input with an 8 x 8 feature grid
and 32 x 32 low-res logits. Outputs are meaningless but deterministic: the
weights come from a fixed seed.

Names: ``"sam-tiny-test"`` and ``"sam2-tiny-test"``.
Importing this module does not import torch.
"""

from __future__ import annotations

from pathlib import Path

TINY_INPUT_SIZE = 128
TINY_DIM = 32
TINY_NAMES = ("sam-tiny-test", "sam2-tiny-test")

#: Hydra overrides shrinking configs/sam2.1/sam2.1_hiera_t.yaml. Traps avoided:
#: no global attention on a stage's first block (block 3 is the 2nd block of
#: stage 3), window sizes dividing the stage sizes of a 128-pixel input.
SAM2_TINY_OVERRIDES = [
    f"++model.image_size={TINY_INPUT_SIZE}",
    "++model.image_encoder.trunk.embed_dim=8",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.trunk.window_spec=[8,4,4,2]",
    "++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[4,4]",
    f"++model.image_encoder.neck.d_model={TINY_DIM}",
    "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
    f"++model.image_encoder.neck.position_encoding.num_pos_feats={TINY_DIM}",
    f"++model.memory_attention.d_model={TINY_DIM}",
    "++model.memory_attention.num_layers=1",
    f"++model.memory_attention.layer.d_model={TINY_DIM}",
    "++model.memory_attention.layer.dim_feedforward=32",
    f"++model.memory_attention.layer.self_attention.embedding_dim={TINY_DIM}",
    "++model.memory_attention.layer.self_attention.feat_sizes=[8,8]",
    f"++model.memory_attention.layer.cross_attention.embedding_dim={TINY_DIM}",
    "++model.memory_attention.layer.cross_attention.feat_sizes=[8,8]",
    "++model.memory_attention.layer.cross_attention.kv_in_dim=16",
    "++model.memory_encoder.out_dim=16",
    "++model.memory_encoder.position_encoding.num_pos_feats=16",
    f"++model.memory_encoder.in_dim={TINY_DIM}",
    f"++model.memory_encoder.mask_downsampler.embed_dim={TINY_DIM}",
    f"++model.memory_encoder.fuser.layer.dim={TINY_DIM}",
    "++model.memory_encoder.fuser.num_layers=1",
]


def _build_sam1_tiny():
    from functools import partial

    import torch
    from segment_anything.modeling import (
        ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer)

    grid = TINY_INPUT_SIZE // 16
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=TINY_INPUT_SIZE, patch_size=16, embed_dim=32, depth=2, num_heads=2,
            mlp_ratio=4, out_chans=TINY_DIM, qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
            window_size=2, global_attn_indexes=(1,)),
        prompt_encoder=PromptEncoder(
            embed_dim=TINY_DIM, image_embedding_size=(grid, grid),
            input_image_size=(TINY_INPUT_SIZE, TINY_INPUT_SIZE), mask_in_chans=4),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=TINY_DIM, mlp_dim=64,
                                          num_heads=2),
            transformer_dim=TINY_DIM, iou_head_depth=3, iou_head_hidden_dim=16),
    ).eval()


def build_tiny_model(name: str, seed: int = 0):
    """The tiny architecture ``name`` with weights drawn from ``seed``.

    Initialisation is the packages' own, drawn under ``torch.manual_seed(seed)``
    inside a forked RNG (the caller's global torch RNG state is left untouched),
    so equal seeds give equal weights.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "sam-tiny-test":
            model = _build_sam1_tiny()
        elif name == "sam2-tiny-test":
            from oneshotsam.backends.sam2 import build_sam2_model

            model = build_sam2_model("configs/sam2.1/sam2.1_hiera_t.yaml",
                                     SAM2_TINY_OVERRIDES)
        else:
            raise ValueError(f"not a tiny test architecture: {name!r}; use one of {TINY_NAMES}")
    return model.eval()


def tiny_state_dict(name: str, seed: int = 0) -> dict:
    """Checkpoint content for a tiny model, in the official file layout
    (SAM 1: a bare state dict; SAM 2: ``{"model": state_dict}``)."""
    sd = build_tiny_model(name, seed).state_dict()
    return {"model": sd} if name.startswith("sam2") else sd


def save_tiny_checkpoint(path: str | Path, name: str, seed: int = 0) -> Path:
    """Write a tiny random checkpoint of ``name`` to ``path`` (parents created).

    Load it with ``create_backend(name, checkpoint=path)``.
    """
    import torch

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_state_dict(name, seed), out)
    return out
