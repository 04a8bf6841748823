"""Official checkpoints: registry, cache location and safe loading.

The registry lists Meta's official files (dl.fbaipublicfiles.com, Apache-2.0).
SHA-256 values were not computed here (no internet on the build machines);
they are recorded only where several independent public sources agree:

* SAM 1: the values published with many projects verifying these exact URLs;
* SAM 2.1: the Git LFS object ids (= SHA-256 of the file) of the same files on
  Hugging Face (``facebook/sam2.1-hiera-small`` and mirrors of all four); their
  byte sizes match the CDN files' published sizes.

An entry whose SHA-256 is ``None`` makes
:func:`oneshotsam.backends.download.download` refuse to finish unless the user
supplies ``--sha256 HEX`` (never a guessed hash).

Importing this module does not import torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from oneshotsam.errors import OneShotError


@dataclass(frozen=True)
class CheckpointInfo:
    """One official checkpoint.

    Attributes:
        name: backend name (``create_backend`` name) it loads into.
        url: official download URL.
        filename: file name in the cache.
        sha256: lower-case hex SHA-256 of the file, or None where unknown.
        size_bytes: file size where known (progress display only), else None.
        licence: SPDX licence of the weights.
        family: ``"sam1"`` or ``"sam2"``.
    """

    name: str
    url: str
    filename: str
    sha256: str | None
    size_bytes: int | None
    licence: str
    family: str


_SAM1 = "https://dl.fbaipublicfiles.com/segment_anything/"
_SAM2 = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"

REGISTRY: dict[str, CheckpointInfo] = {c.name: c for c in (
    CheckpointInfo("sam-vit-b", _SAM1 + "sam_vit_b_01ec64.pth", "sam_vit_b_01ec64.pth",
                   "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
                   375042383, "Apache-2.0", "sam1"),
    CheckpointInfo("sam-vit-l", _SAM1 + "sam_vit_l_0b3195.pth", "sam_vit_l_0b3195.pth",
                   "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
                   None, "Apache-2.0", "sam1"),
    CheckpointInfo("sam-vit-h", _SAM1 + "sam_vit_h_4b8939.pth", "sam_vit_h_4b8939.pth",
                   "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
                   2564550879, "Apache-2.0", "sam1"),
    CheckpointInfo("sam2.1-hiera-tiny", _SAM2 + "sam2.1_hiera_tiny.pt", "sam2.1_hiera_tiny.pt",
                   "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
                   156008466, "Apache-2.0", "sam2"),
    CheckpointInfo("sam2.1-hiera-small", _SAM2 + "sam2.1_hiera_small.pt",
                   "sam2.1_hiera_small.pt",
                   "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38",
                   184416285, "Apache-2.0", "sam2"),
    CheckpointInfo("sam2.1-hiera-base-plus", _SAM2 + "sam2.1_hiera_base_plus.pt",
                   "sam2.1_hiera_base_plus.pt",
                   "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5",
                   323606802, "Apache-2.0", "sam2"),
    CheckpointInfo("sam2.1-hiera-large", _SAM2 + "sam2.1_hiera_large.pt",
                   "sam2.1_hiera_large.pt",
                   "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318",
                   898083611, "Apache-2.0", "sam2"),
)}


def cache_dir() -> Path:
    """Per-user weights cache: ``$ONESHOTSAM_CACHE``, else
    ``$XDG_CACHE_HOME/oneshotsam``, else ``~/.cache/oneshotsam``."""
    env = os.environ.get("ONESHOTSAM_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "oneshotsam"


def find_checkpoint(name: str, search_dirs: Sequence[str | Path] = ()) -> Path | None:
    """The downloaded official weights file of backend ``name``, wherever a front end put it.

    Looks for the official file name in each of ``search_dirs`` (a front end's own
    download folder, e.g. Slicer's cache), then in :func:`cache_dir`. The one lookup
    shared by the engine (``create_backend`` without a checkpoint) and the front ends.

    Returns:
        The first existing file, or None (no official file for ``name``, or not downloaded).
    """
    info = REGISTRY.get(name)
    if info is None:
        return None
    for folder in (*search_dirs, cache_dir()):
        path = Path(folder).expanduser() / info.filename
        if path.is_file():
            return path
    return None


def missing_message(name: str, path: Path | None = None) -> str:
    where = f"checkpoint file not found: {path}" if path else f"no checkpoint for {name!r}"
    if name in REGISTRY:
        return (f"{where}. Download the official weights with "
                f"`oneshotsam weights download {name}` (cache: {cache_dir()}; set "
                "ONESHOTSAM_CACHE to change it) or pass --checkpoint PATH")
    return f"{where}; pass --checkpoint PATH to a checkpoint of {name!r}"


def identify_architecture(state_dict: dict[str, Any]) -> str | None:
    """Guess which registry architecture a model state dict belongs to."""
    def shape(key: str):
        v = state_dict.get(key)
        return tuple(v.shape) if hasattr(v, "shape") else None

    vit = shape("image_encoder.patch_embed.proj.weight")
    if vit is not None:
        return {768: "sam-vit-b", 1024: "sam-vit-l", 1280: "sam-vit-h",
                32: "sam-tiny-test"}.get(vit[0])
    hiera = shape("image_encoder.trunk.patch_embed.proj.weight")
    if hiera is not None:
        blocks = {k.split(".")[3] for k in state_dict if k.startswith("image_encoder.trunk.blocks.")}
        dim, n = hiera[0], len(blocks)
        return {(96, 12): "sam2.1-hiera-tiny", (96, 16): "sam2.1-hiera-small",
                (112, 24): "sam2.1-hiera-base-plus", (144, 48): "sam2.1-hiera-large",
                (8, 5): "sam2-tiny-test"}.get((dim, n))
    return None


def read_state_dict(path: str | Path, name: str) -> dict[str, Any]:
    """Read the model weights of a checkpoint file (``torch.load(weights_only=True)``).

    SAM 2 files keep the weights under ``"model"``; SAM 1 files are bare state
    dicts. Raises :class:`OneShotError` for a missing, unreadable or
    non-checkpoint file.
    """
    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        raise OneShotError(missing_message(name, p))
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated pickle, unsafe pickle content
        raise OneShotError(
            f"cannot read checkpoint {p}: the file is corrupt, incomplete or not a PyTorch "
            f"weights file ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}). "
            f"Delete it and download it again (`oneshotsam weights download {name}`)") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj) or not obj:
        raise OneShotError(f"{p} holds no model state dict: it is not a SAM / SAM 2 checkpoint")
    return obj


def load_checkpoint(path: str | Path, arch: str, model: Any = None) -> dict[str, Any]:
    """Read a checkpoint for architecture ``arch`` and return its state dict.

    Raises :class:`OneShotError` when the file is missing, unreadable, or belongs
    to another known architecture. With ``model``, also loads the weights into
    it strictly (keys and shapes checked, see :func:`load_into`).
    """
    sd = read_state_dict(path, arch)
    guess = identify_architecture(sd)
    if guess is not None and guess != arch:
        raise OneShotError(
            f"checkpoint {path} is a {guess!r} checkpoint but backend {arch!r} was requested: "
            f"use --backend {guess} (or the checkpoint of {arch})")
    if model is not None:
        load_into(model, sd, arch, path)
    return sd


def load_into(model: Any, state_dict: dict[str, Any], arch: str, path: str | Path = "") -> None:
    """Load ``state_dict`` into ``model`` (strict), or raise a clear OneShotError
    naming the architecture the checkpoint looks like."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [k for k in expected if k in state_dict and hasattr(state_dict[k], "shape")
                  and tuple(state_dict[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        guess = identify_architecture(state_dict)
        hint = (f"it looks like a {guess!r} checkpoint: use --backend {guess}" if guess and
                guess != arch else "it matches no known SAM / SAM 2.1 architecture")
        detail = (f"{len(missing)} missing, {len(unexpected)} unexpected, "
                  f"{len(mismatched)} mis-shaped tensors")
        raise OneShotError(
            f"checkpoint {path} does not fit backend {arch!r} ({detail}); {hint}")
    model.load_state_dict(state_dict, strict=True)
