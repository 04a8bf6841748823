"""Build a promptable segmenter by name.

>>> seg = create_backend("sam-tiny-test", random_weights=True)   # doctest: +SKIP
>>> emb = seg.embed(image_rgb_uint8)                              # doctest: +SKIP
>>> out = seg.decode(emb, points_xy=[[40, 30]], point_labels=[1]) # doctest: +SKIP

Importing this module does not import torch.
"""

from __future__ import annotations

from pathlib import Path

from oneshotsam.backends.base import PromptableSegmenter
from oneshotsam.backends.checkpoints import (
    default_checkpoint_path, load_checkpoint, missing_message)
from oneshotsam.backends.sam1 import SAM1_ARCHS
from oneshotsam.backends.sam2 import SAM2_ARCHS
from oneshotsam.backends.tiny import TINY_NAMES
from oneshotsam.errors import OneShotError

#: every backend name, real architectures first
BACKEND_NAMES: tuple[str, ...] = (*SAM1_ARCHS, *SAM2_ARCHS, *TINY_NAMES)

_ALIASES = {
    "vit_b": "sam-vit-b", "vit_l": "sam-vit-l", "vit_h": "sam-vit-h",
    "sam2.1-tiny": "sam2.1-hiera-tiny", "sam2.1-small": "sam2.1-hiera-small",
    "sam2.1-base-plus": "sam2.1-hiera-base-plus", "sam2.1-large": "sam2.1-hiera-large",
    "sam2.1_hiera_t": "sam2.1-hiera-tiny", "sam2.1_hiera_s": "sam2.1-hiera-small",
    "sam2.1_hiera_b+": "sam2.1-hiera-base-plus", "sam2.1_hiera_l": "sam2.1-hiera-large",
}


def list_backends() -> list[str]:
    """All backend names accepted by :func:`create_backend`."""
    return list(BACKEND_NAMES)


def canonical_name(name: str) -> str:
    """The registry name for ``name`` (case-insensitive, common aliases)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in BACKEND_NAMES:
        raise OneShotError(f"unknown backend {name!r}; choose one of: {', '.join(BACKEND_NAMES)}")
    return key


def build_model(name: str):
    """The randomly initialised model of backend ``name`` (CPU, eval mode)."""
    name = canonical_name(name)
    if name in TINY_NAMES:
        from oneshotsam.backends.tiny import build_tiny_model

        return build_tiny_model(name)
    if name in SAM1_ARCHS:
        from oneshotsam.backends.sam1 import build_sam1_model

        return build_sam1_model(name)
    from oneshotsam.backends.sam2 import build_sam2_model

    return build_sam2_model(SAM2_ARCHS[name])


def create_backend(name: str, checkpoint: str | Path | None = None, device: str = "auto",
                   random_weights: bool = False, cache_size: int = 8, *,
                   precision: str = "auto",
                   fast_attention: bool | None = None) -> PromptableSegmenter:
    """Create a SAM 1 / SAM 2.1 promptable segmenter.

    Args:
        name: one of :data:`BACKEND_NAMES` (``"sam-vit-b"``, ...,
            ``"sam2.1-hiera-large"``, test models ``"sam-tiny-test"``,
            ``"sam2-tiny-test"``).
        checkpoint: weights file. None: the per-user cache file of
            ``oneshotsam weights download NAME`` when present.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        random_weights: build without weights (tests, timing); ignores
            ``checkpoint``. Tiny models get fixed-seed weights.
        cache_size: embeddings kept in the LRU cache (0 disables caching).
        precision: image-encoder autocast, ``"auto"`` (bf16 for the real
            architectures -- measured faster on CPU, see
            benchmarks/bench_backends.py -- fp32 for tiny models), ``"fp32"``
            or ``"bf16"``.
        fast_attention: SAM 1 image encoder attention through
            ``F.scaled_dot_product_attention`` (same features to ~3e-6 in fp32,
            measured faster on CPU); None = on for the real SAM 1
            architectures, off for the tiny test model (stock code path).

    Raises:
        OneShotError: unknown name, missing / corrupt / mismatched checkpoint,
            CUDA requested but absent.
    """
    name = canonical_name(name)
    path: Path | None = None
    if not random_weights:
        if checkpoint is not None:
            path = Path(checkpoint).expanduser()
        elif name in TINY_NAMES:
            raise OneShotError(
                f"{name!r} is a test architecture without official weights: pass "
                "random_weights=True or a checkpoint written by "
                "oneshotsam.backends.tiny.save_tiny_checkpoint")
        else:
            path = default_checkpoint_path(name)
            if path is None or not path.is_file():
                raise OneShotError(missing_message(name))
        state = load_checkpoint(path, name)  # clear errors before the (slow) model build
    model = build_model(name)
    if path is not None:
        from oneshotsam.backends.checkpoints import load_into

        load_into(model, state, name, path)
        del state
    if precision == "auto" and name in TINY_NAMES:
        precision = "fp32"
    kwargs = dict(device=device, precision=precision, cache_size=cache_size)
    if name in SAM1_ARCHS or name == "sam-tiny-test":
        from oneshotsam.backends.sam1 import Sam1Segmenter, use_sdpa_attention

        if fast_attention if fast_attention is not None else name in SAM1_ARCHS:
            use_sdpa_attention(model)

        return Sam1Segmenter(model, name, **kwargs)
    from oneshotsam.backends.sam2 import Sam2Segmenter

    return Sam2Segmenter(model, name, **kwargs)
