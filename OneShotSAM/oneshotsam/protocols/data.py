"""Readers of the shared data folders used by the protocols (``--data``, default ``../shared/data``).

Layout (``../shared/data/README.md``): ``jsrt/images/<ID>.png`` + ``jsrt/labels/<ID>.png``;
``acdc/patientNNN_{ED,ES}[_label].nii.gz`` (unit spacing, ED and ES on one grid);
``la/<CASE>_image.nii.gz`` + ``la/<CASE>_label.nii.gz``. Every missing piece is a
:class:`~oneshotsam.errors.OneShotError` that names the folder and the ``--data``
option. Numpy at import time; OpenCV / SimpleITK inside the functions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oneshotsam.errors import OneShotError


def dataset_dir(root: str | Path, name: str, pattern: str) -> Path:
    """``root/name`` when it holds files matching ``pattern``; else a clear error."""
    root = Path(root)
    if not root.is_dir():
        raise OneShotError(f"data folder not found: {root} (pass --data PATH to the folder "
                           "holding jsrt/, acdc/, la/)")
    d = root / name
    if not d.is_dir() or not any(d.glob(pattern)):
        raise OneShotError(f"no {name} data under {root} (expected {d}/{pattern}; pass --data "
                           "PATH to the folder holding it)")
    return d


def read_png(path: Path) -> np.ndarray:
    """A grey PNG as a 2D array (colour files are converted to grey)."""
    import cv2

    from oneshotsam.benchmark2d import _read_png

    a = _read_png(path)  # RGB for colour files
    return cv2.cvtColor(a, cv2.COLOR_RGB2GRAY) if a.ndim == 3 else a


def jsrt_ids(root: str | Path) -> list[str]:
    """Film IDs with both an image and a label, in name order."""
    d = dataset_dir(root, "jsrt", "images/*.png")
    ids = sorted(p.stem for p in (d / "images").glob("*.png") if (d / "labels" / p.name).is_file())
    if len(ids) < 2:
        raise OneShotError(f"JSRT needs at least two films with labels under {d}")
    return ids


def jsrt_film(root: str | Path, film: str) -> tuple[np.ndarray, np.ndarray]:
    """``(image, labels)`` of one JSRT film."""
    d = Path(root) / "jsrt"
    return read_png(d / "images" / f"{film}.png"), read_png(d / "labels" / f"{film}.png")


def read_array(path: Path) -> np.ndarray:
    """A NIfTI / NRRD file as its voxel array (``(K, J, I)``)."""
    import SimpleITK as sitk

    if not Path(path).is_file():
        raise OneShotError(f"missing file {path}")
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def acdc_patients(root: str | Path, numbers: set[int] | None = None) -> list[str]:
    """``patientNNN`` names with all four files, in name order (``numbers``: keep these)."""
    from oneshotsam.protocols.rules import patient_number

    d = dataset_dir(root, "acdc", "patient*_ED.nii.gz")
    names = sorted(p.name[: -len("_ED.nii.gz")] for p in d.glob("patient*_ED.nii.gz"))
    names = [n for n in names if all((d / f"{n}_{s}.nii.gz").is_file()
                                     for s in ("ES", "ED_label", "ES_label"))]
    if numbers is not None:
        names = [n for n in names if patient_number(n) in numbers]
        if not names:
            raise OneShotError(f"none of the patients {sorted(numbers)[:10]} is under {d}")
    return names


def acdc_paths(root: str | Path, patient: str) -> dict[str, Path]:
    """``{"ED", "ES", "ED_label", "ES_label"}`` file paths of one patient."""
    d = Path(root) / "acdc"
    return {s: d / f"{patient}_{s}.nii.gz" for s in ("ED", "ES", "ED_label", "ES_label")}


def la_cases(root: str | Path) -> list[tuple[str, Path, Path]]:
    """``[(case, image path, label path)]`` in name order."""
    d = dataset_dir(root, "la", "*_image.nii.gz")
    out = []
    for p in sorted(d.glob("*_image.nii.gz")):
        lab = d / p.name.replace("_image", "_label")
        if lab.is_file():
            out.append((p.name[: -len("_image.nii.gz")], p, lab))
    return out


__all__ = ["dataset_dir", "read_png", "jsrt_ids", "jsrt_film", "read_array", "acdc_patients",
           "acdc_paths", "la_cases"]
