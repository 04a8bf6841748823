"""Model weights for the Slicer module: official checkpoints or a local file.

Downloads go through the engine (``oneshotsam.backends.download``: official
URLs only, resume, SHA-256 check, atomic rename) into a cache OUTSIDE the
extension folder: Slicer's cache folder (``slicer.app.cachePath``) inside the
application, the engine's cache elsewhere. Nothing is downloaded without the
user's consent: the Widget asks first and passes a progress callback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from oneshotsam.errors import OneShotError
from oneshotsam.progress import ProgressFn, no_progress

#: methods that need SAM weights
NEEDS_WEIGHTS = ("medpersam", "p2sam", "persam", "persam-f")


@dataclass(frozen=True)
class WeightsStatus:
    """Where a backend's checkpoint is (or would go).

    Attributes:
        backend: backend name (``"sam-vit-b"``...).
        path: the local checkpoint path, or None when neither given nor cached.
        official: the backend has an official download.
        url, size_bytes: of the official file (None otherwise).
    """

    backend: str
    path: Path | None
    official: bool
    url: str | None
    size_bytes: int | None


def weights_dir() -> Path:
    """``<Slicer cache>/OneShotSAM/weights`` inside Slicer, else the engine's cache."""
    try:
        import slicer

        app = getattr(slicer, "app", None)
        if app is not None:
            return Path(app.cachePath) / "OneShotSAM" / "weights"
    except ImportError:
        pass
    from oneshotsam.backends.checkpoints import cache_dir

    return cache_dir()


def status(backend: str, checkpoint: str | None = None, folder: Path | None = None) -> WeightsStatus:
    """Find the checkpoint of ``backend``: the given file, else the downloaded official one."""
    from oneshotsam.backends.checkpoints import REGISTRY

    info = REGISTRY.get(backend)
    if checkpoint:
        p = Path(checkpoint).expanduser()
        if not p.is_file():
            raise OneShotError(f"checkpoint file not found: {p}; choose an existing file or "
                               "download the official weights")
        return WeightsStatus(backend, p, info is not None, info.url if info else None,
                             info.size_bytes if info else None)
    if info is None:
        return WeightsStatus(backend, None, False, None, None)
    return WeightsStatus(backend, find(backend, folder), True, info.url, info.size_bytes)


def find(backend: str, folder: Path | None = None) -> Path | None:
    """The downloaded official checkpoint of ``backend``: in ``folder`` (default:
    :func:`weights_dir`, Slicer's cache inside Slicer), else in the engine's cache.

    The lookup is the engine's own (:func:`oneshotsam.backends.checkpoints.find_checkpoint`),
    so a file downloaded from the module or with ``oneshotsam weights download`` is found.
    """
    from oneshotsam.backends.checkpoints import find_checkpoint

    return find_checkpoint(backend, [folder or weights_dir()])


def resolve_checkpoint(method: str, backend: str | None, checkpoint: str | None,
                       folder: Path | None = None) -> str | None:
    """The weights file a run of ``method`` uses (None: the method needs none).

    ``checkpoint`` (the module's "Weights file") wins; otherwise the downloaded
    official file of ``backend`` (:func:`find`): the engine's one resolver,
    :func:`oneshotsam.backends.factory.resolve_checkpoint`, in the module's words.

    Raises:
        OneShotError: no model chosen, the chosen file is missing, or nothing was
            downloaded; the message names the module's controls.
    """
    from oneshotsam.methods.registry import needs_backend

    if not needs_backend(method):
        return None
    if not backend:
        raise OneShotError(f"method '{method}' needs a SAM model: choose one under 'Model' "
                           "(or the method 'Med-PerSAM (warp only)', which needs no weights)")
    from oneshotsam.backends.factory import resolve_checkpoint

    def missing(path: Path | None) -> str:
        if path is not None:
            return (f"weights file not found: {path}; choose an existing file under "
                    "'Weights file' or press 'Download official weights...'")
        return (f"no weights for the model {backend} yet: press 'Download official "
                f"weights...' (saved in {weights_dir()}) or choose a file under 'Weights file'")

    return str(resolve_checkpoint(backend, checkpoint or None, (folder or weights_dir(),),
                                  missing=missing))


def download(backend: str, progress: ProgressFn = no_progress, folder: Path | None = None) -> Path:
    """Download the official checkpoint of ``backend`` (call only after the user agreed)."""
    from oneshotsam.backends.download import download as engine_download

    return engine_download(backend, dest_dir=folder or weights_dir(), progress=progress)
