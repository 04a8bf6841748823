"""Build a promptable segmenter by name.

Every backend is one row of :data:`BACKENDS` (its names, how to build the
randomly initialised model, its segmenter class, whether official weights
exist): a new backend is one module plus one row here (and, for downloadable
weights, one row of :data:`oneshotsam.backends.checkpoints.REGISTRY`).

>>> seg = create_backend("sam-tiny-test", random_weights=True)   # doctest: +SKIP
>>> emb = seg.embed(image_rgb_uint8)                              # doctest: +SKIP
>>> out = seg.decode(emb, points_xy=[[40, 30]], point_labels=[1]) # doctest: +SKIP

Importing this module does not import torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from oneshotsam.backends.base import PromptableSegmenter
from oneshotsam.backends.checkpoints import (
    find_checkpoint, load_checkpoint, missing_message)
from oneshotsam.backends.sam1 import SAM1_ARCHS
from oneshotsam.backends.sam2 import SAM2_ARCHS
from oneshotsam.backends.tiny import TINY_NAMES
from oneshotsam.errors import OneShotError


@dataclass(frozen=True)
class BackendRow:
    """One backend family.

    Attributes:
        names: backend names it serves (``--backend``).
        build: ``"module:function"`` building the random-init model from a name.
        segmenter: ``"module:Class"`` of the :class:`PromptableSegmenter` wrapping it.
        official: official weights exist (else a test architecture: fixed-seed
            random weights or a checkpoint written by the tests).
        fast_attention: SAM 1 image-encoder attention can be switched to
            ``F.scaled_dot_product_attention`` (None = not possible); the value is
            the default of ``create_backend(fast_attention=None)``.
    """

    names: tuple[str, ...]
    build: str
    segmenter: str
    official: bool = True
    fast_attention: bool | None = None


def _sam2_by_name(name: str):
    from oneshotsam.backends.sam2 import build_sam2_model

    return build_sam2_model(SAM2_ARCHS[name])


#: the backend table, real architectures first
BACKENDS: tuple[BackendRow, ...] = (
    BackendRow(tuple(SAM1_ARCHS), "oneshotsam.backends.sam1:build_sam1_model",
               "oneshotsam.backends.sam1:Sam1Segmenter", fast_attention=True),
    BackendRow(tuple(SAM2_ARCHS), "oneshotsam.backends.factory:_sam2_by_name",
               "oneshotsam.backends.sam2:Sam2Segmenter"),
    BackendRow(("sam-tiny-test",), "oneshotsam.backends.tiny:build_tiny_model",
               "oneshotsam.backends.sam1:Sam1Segmenter", official=False, fast_attention=False),
    BackendRow(("sam2-tiny-test",), "oneshotsam.backends.tiny:build_tiny_model",
               "oneshotsam.backends.sam2:Sam2Segmenter", official=False),
)
_ROW = {n: row for row in BACKENDS for n in row.names}
#: every backend name, real architectures first
BACKEND_NAMES: tuple[str, ...] = tuple(n for row in BACKENDS for n in row.names)
#: names of the backends with official weights (what a user picks)
OFFICIAL_BACKENDS: tuple[str, ...] = tuple(n for row in BACKENDS if row.official for n in row.names)
assert set(TINY_NAMES) == {n for row in BACKENDS if not row.official for n in row.names}


def _load(ref: str) -> Callable[..., Any]:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


_ALIASES = {
    "vit_b": "sam-vit-b", "vit_l": "sam-vit-l", "vit_h": "sam-vit-h",
    "sam2.1-tiny": "sam2.1-hiera-tiny", "sam2.1-small": "sam2.1-hiera-small",
    "sam2.1-base-plus": "sam2.1-hiera-base-plus", "sam2.1-large": "sam2.1-hiera-large",
    "sam2.1_hiera_t": "sam2.1-hiera-tiny", "sam2.1_hiera_s": "sam2.1-hiera-small",
    "sam2.1_hiera_b+": "sam2.1-hiera-base-plus", "sam2.1_hiera_l": "sam2.1-hiera-large",
}


def canonical_name(name: str) -> str:
    """The registry name for ``name`` (case-insensitive, common aliases)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in BACKEND_NAMES:
        raise OneShotError(f"unknown backend {name!r}; choose one of: {', '.join(BACKEND_NAMES)}")
    return key


def resolve_checkpoint(name: str, checkpoint: str | Path | None = None,
                       search_dirs: tuple[str | Path, ...] = (), *,
                       missing: Callable[[Path | None], str] | None = None) -> Path:
    """The weights file of backend ``name``: the one every front end and
    :func:`create_backend` use.

    ``checkpoint`` when given (it must be a file); otherwise the downloaded official
    file (:func:`~oneshotsam.backends.checkpoints.find_checkpoint`: ``search_dirs``,
    then the per-user cache). ``missing(path)`` words the error of a front end (its
    own controls) for a given file that is not there (``path``) or no downloaded
    file (None); default: the command line's wording.

    Raises:
        OneShotError: unknown backend, the given file is missing, nothing was
            downloaded, or a test architecture without a checkpoint.
    """
    name = canonical_name(name)
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise OneShotError(missing(path) if missing else missing_message(name, path))
        return path
    found = find_checkpoint(name, search_dirs)
    if found is not None:
        return found
    if missing is not None:
        raise OneShotError(missing(None))
    if not _ROW[name].official:
        raise OneShotError(
            f"{name!r} is a test architecture without official weights: pass "
            "random_weights=True or a checkpoint written by "
            "oneshotsam.backends.tiny.save_tiny_checkpoint")
    raise OneShotError(missing_message(name))


def build_model(name: str):
    """The randomly initialised model of backend ``name`` (CPU, eval mode)."""
    name = canonical_name(name)
    return _load(_ROW[name].build)(name)


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
        path = resolve_checkpoint(name, checkpoint)
        state = load_checkpoint(path, name)  # clear errors before the (slow) model build
    model = build_model(name)
    if path is not None:
        from oneshotsam.backends.checkpoints import load_into

        load_into(model, state, name, path)
        del state
    row = _ROW[name]
    if precision == "auto" and not row.official:
        precision = "fp32"
    if row.fast_attention is not None and (fast_attention if fast_attention is not None
                                           else row.fast_attention):
        from oneshotsam.backends.sam1 import use_sdpa_attention

        use_sdpa_attention(model)
    return _load(row.segmenter)(model, name, device=device, precision=precision,
                                cache_size=cache_size)
