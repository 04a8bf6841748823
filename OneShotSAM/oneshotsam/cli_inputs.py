"""Reading and validating the inputs of ``oneshotsam segment`` (before anything runs).

Rules (documented in the README):

* **2D or 3D.** PNG/JPG/BMP/TIFF files are 2D. NIfTI/NRRD/MHA files are 2D
  when they hold one slice, volumes otherwise; a folder without image files is
  read as a DICOM series (a volume). Volumes are cut into 2D slices along
  ``--axis`` (:func:`oneshotsam.geometry.slice_geometry`).
* **Intensity window.** 8-bit images are used as they are (0..255 -> 0..1).
  Anything else (16-bit CT/MR slices, float images) needs ``--window``: we do
  not guess Hounsfield windows. ``--window`` given: CT presets and explicit
  windows are the same for every image; ``auto``/``percentile`` windows are
  computed per 2D image and once per volume (the same for all its slices).
* **Masks.** A single-channel integer label image: 0 background, 1..N classes.
  An RGB mask is accepted only when its three channels are identical (a grey
  PNG saved as RGB); colour images, non-integer, negative, NaN/Inf values and
  "masks" with more than :data:`MAX_LABELS` distinct values are refused.
* **Pixels** must be finite (NaN/Inf refused with advice).

Heavy modules (SimpleITK through :mod:`oneshotsam.medio`) are imported inside
functions. Every refusal is a :class:`OneShotError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oneshotsam.checks import check_reference
from oneshotsam.errors import OneShotError
from oneshotsam.types import Image2D, Volume

#: suffixes read as plain 2D images
SUFFIXES_2D = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: suffixes that may hold a 2D image or a volume
SUFFIXES_ND = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
#: a "mask" with more distinct values than this is an image given by mistake
MAX_LABELS = 64

WINDOW_HELP = (
    "choose an intensity window with --window: a CT preset in HU (lung, mediastinum, "
    "abdomen, brain, p2sam-lung4d), 'percentile' (MR: 0.5-99.5 percentiles), "
    "'LOW,HIGH' (explicit) or 'auto'")


def has_image_suffix(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(SUFFIXES_2D) or name.endswith(SUFFIXES_ND)


def is_own_output(path: Path) -> bool:
    """True for a file named as OneShotSAM writes its outputs: a label file
    ``<stem>_oneshotsam<suffix>`` or its ``<stem>_oneshotsam_preview.png``
    (:func:`oneshotsam.writer.output_stem`, :mod:`oneshotsam.preview`)."""
    from oneshotsam.fileformats import path_stem
    from oneshotsam.preview import SUFFIX as PREVIEW_SUFFIX
    from oneshotsam.writer import OUTPUT_TAG

    name = path.name
    if name.lower().endswith(PREVIEW_SUFFIX) and name[: -len(PREVIEW_SUFFIX)].endswith(OUTPUT_TAG):
        return True
    return path_stem(path).endswith(OUTPUT_TAG)


def expand_targets(items: list[str], exclude: tuple[Path, ...] = (),
                   skipped: list[Path] | None = None) -> list[Path]:
    """Target files from ``--targets`` (files, or folders of image files).

    A folder contributes its image files (sorted by name; hidden files, ``exclude``
    and OneShotSAM's own outputs (:func:`is_own_output`: an earlier run written into
    that folder) skipped, the latter appended to ``skipped`` when given); a folder
    without image files is one DICOM series. A file named explicitly is taken as it is.
    """
    excluded = {p.resolve() for p in exclude}
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if not p.exists():
            raise OneShotError(f"target not found: {p}")
        if p.is_dir():
            files = sorted(f for f in p.iterdir()
                           if f.is_file() and not f.name.startswith(".") and has_image_suffix(f))
            files = [f for f in files if f.resolve() not in excluded]
            own = [f for f in files if is_own_output(f)]
            files = [f for f in files if not is_own_output(f)]
            if skipped is not None:
                skipped.extend(own)
            if own and not files:
                raise OneShotError(f"target folder {p} holds only OneShotSAM outputs ({own[0].name}, ...): "
                                   "pass the folder of the images they were made from")
            if files:
                out.extend(files)
            elif any(f.is_file() for f in p.iterdir()):
                out.append(p)  # a DICOM series folder
            else:
                raise OneShotError(f"target folder {p} holds no image files")
        else:
            out.append(p)
    if not out:
        raise OneShotError("no target images: --targets names only the reference itself")
    seen: dict[str, Path] = {}
    for p in out:
        key = str(p.resolve())
        if key in seen:
            raise OneShotError(f"target {p} is given twice")
        seen[key] = p
    return out


def is_volume_file(path: Path) -> bool:
    """True when ``path`` is a 3D volume with more than one slice (or a DICOM folder)."""
    if path.is_dir():
        return True
    if path.name.lower().endswith(SUFFIXES_2D):
        return False
    import SimpleITK as sitk
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return False  # medio.read_image2d will say why it cannot be read
    size = reader.GetSize()
    return len(size) >= 3 and int(size[2]) > 1


from oneshotsam.integrity import check_finite, check_image_values  # noqa: E402


@dataclass(frozen=True)
class Window:
    """How one image or volume is mapped to [0, 1]: ``(low, high)`` and where it came from."""

    low: float
    high: float
    source: str

    def apply(self, array: np.ndarray) -> np.ndarray:
        from oneshotsam.intensity import apply_window
        return apply_window(np.asarray(array), self.low, self.high)


def choose_window(array: np.ndarray, path: Path, window_text: str | None) -> Window:
    """The window of one 2D image or one whole volume (rules in the module docstring)."""
    a = np.asarray(array)
    check_image_values(a, path)
    if window_text is None:
        if a.dtype == np.uint8:
            return Window(0.0, 255.0, "8-bit")
        lo, hi = (a.min(), a.max()) if a.size else (0, 0)
        raise OneShotError(
            f"{path} holds {a.dtype} values ({lo}..{hi}), not 8-bit: {WINDOW_HELP}")
    from oneshotsam.intensity import compute_window, parse_window
    spec = parse_window(window_text)
    low, high = compute_window(a, spec)
    return Window(float(low), float(high), window_text)


def labels_from_mask(array: np.ndarray, path: Path, is_volume: bool = False) -> np.ndarray:
    """A validated integer label map (uint8 when it fits, else uint16/int32) from a mask array.

    ``array`` is ``(H, W)``, ``(H, W, 3|4)`` (2D colour) or, with ``is_volume``, ``(K, J, I)``.
    """
    a = np.asarray(array)
    if not is_volume and a.ndim == 3 and a.shape[-1] in (3, 4):
        rgb = a[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise OneShotError(
                f"the mask {path} is an RGB colour image: a mask must be a single-channel "
                "label image (0 = background, 1..N = classes), e.g. a grey/indexed PNG or a "
                "NIfTI/NRRD label map")
        a = rgb[..., 0]
    if np.issubdtype(a.dtype, np.floating):
        check_finite(a, path)
        if not np.array_equal(a, np.round(a)):
            raise OneShotError(f"the mask {path} holds non-integer values: a mask must hold "
                               "integer label values (0 = background, 1..N = classes)")
    elif a.dtype != bool and not np.issubdtype(a.dtype, np.integer):
        raise OneShotError(f"the mask {path} has unsupported data type {a.dtype}")
    if a.size and a.min() < 0:
        raise OneShotError(f"the mask {path} holds negative values: label values must be >= 0")
    values = np.unique(a)
    if values.size > MAX_LABELS + 1:
        raise OneShotError(
            f"the mask {path} holds {values.size} distinct values: that looks like an image, "
            "not a label map (0 = background, 1..N = classes); check --reference-mask")
    top = int(values.max()) if values.size else 0
    dtype = np.uint8 if top <= 255 else (np.uint16 if top <= 65535 else np.int32)
    return a.astype(dtype)


@dataclass
class Source:
    """One input file turned into method-ready 2D images.

    Attributes:
        path: the file (or DICOM folder).
        kind: ``"image"`` (2D) or ``"volume"`` (segmented slice by slice).
        images: the windowed 2D images (one, or one per slice along ``array_axis``).
        window: the window used.
        raw: the :class:`oneshotsam.medio.RawImage2D` of a 2D input (geometry for writing back).
        volume: the :class:`Volume` of a 3D input.
        array_axis: sliced axis of a volume's ``[k, j, i]`` array.
        slice_indices: slice index of each entry of ``images`` (volumes).
    """

    path: Path
    kind: str
    images: list[Image2D]
    window: Window
    raw: Any = None
    volume: Volume | None = None
    array_axis: int | None = None
    slice_indices: list[int] = field(default_factory=list)

    @property
    def output_name(self) -> str:
        """File name of this input's label output (stem + format-family suffix)."""
        from oneshotsam.medio import output_name_for
        return str(output_name_for(self.path))


def _stem_of(path: Path) -> str:
    name = path.name
    for suf in (".nii.gz", ".seg.nrrd"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return path.stem


def load_image_source(path: Path, window_text: str | None, axis: str,
                      slices: list[int] | None = None) -> Source:
    """Read one reference or target image / volume and window it.

    ``slices``: for a volume, the slice indices along ``axis`` to segment
    (None = every slice); ignored for 2D images.
    """
    from oneshotsam import medio
    if is_volume_file(path):
        from oneshotsam.geometry import get_slice, slice_geometry
        vol = medio.read_volume(path)
        window = choose_window(vol.voxels, path, window_text)
        sg = slice_geometry(vol, axis)
        indices = list(range(sg.n_slices)) if slices is None else sorted(set(slices))
        bad = [k for k in indices if not 0 <= k < sg.n_slices]
        if bad:
            raise OneShotError(f"--target-slices {bad} outside 0..{sg.n_slices - 1} "
                               f"({axis} slices of {path})")
        images = [Image2D(window.apply(get_slice(vol.voxels, sg.array_axis, k)),
                          spacing_mm=sg.spacing_rc_mm, name=f"{_stem_of(path)}[{k}]")
                  for k in indices]
        return Source(path, "volume", images, window, volume=vol, array_axis=sg.array_axis,
                      slice_indices=indices)
    raw = medio.read_image2d(path)
    window = choose_window(raw.array, path, window_text)
    image = Image2D(window.apply(raw.array), spacing_mm=tuple(raw.spacing_mm)[:2],
                    name=_stem_of(path))
    return Source(path, "image", [image], window, raw=raw)


@dataclass
class Reference:
    """The validated reference: one 2D image, its label map and label values."""

    source: Source
    image: Image2D
    labels: np.ndarray
    values: list[int]
    slice_index: int | None
    segments_meta: list[dict] | None
    #: contours of a reference RTSTRUCT beyond the series' ends (dicom_rt.LOST_KEY)
    lost_contours: list[dict] = field(default_factory=list)


def load_reference(image_path: Path, mask_path: Path, window_text: str | None, axis: str,
                   reference_slice: int | None, rois: list[str] | None = None) -> Reference:
    """Read, window and validate the reference pair (2D, or one slice of a volume).

    ``mask_path`` may be a DICOM RTSTRUCT / SEG on a 3D DICOM reference (``rois``: the
    ROI names to use, default all; see :func:`oneshotsam.medio.read_label_volume`)."""
    from oneshotsam import medio
    for p in (image_path, mask_path):
        if not p.exists():
            raise OneShotError(f"file not found: {p}")
    src = load_image_source(image_path, window_text, axis)
    if src.kind == "image":
        from oneshotsam.dicom_rt import dicom_label_kind

        if rois or dicom_label_kind(mask_path):
            raise OneShotError(f"the reference image {image_path} is 2D: a DICOM RTSTRUCT / SEG mask "
                               "(and --roi) needs the 3D DICOM series it was drawn on")
        if is_volume_file(mask_path):
            raise OneShotError(f"the reference image {image_path} is 2D but the mask "
                               f"{mask_path} is a volume: give a 2D mask on the same grid")
        if reference_slice is not None:
            raise OneShotError("--reference-slice applies to a 3D reference only; "
                               f"{image_path} is a 2D image")
        labels = labels_from_mask(medio.read_image2d(mask_path).array, mask_path)
        image = src.images[0]
        values = check_reference(image, labels)
        return Reference(src, image, labels, values, None, None)
    from oneshotsam.geometry import get_slice
    mask_vol = medio.read_label_volume(mask_path, reference=src.volume, rois=rois)
    assert src.volume is not None and src.array_axis is not None
    if mask_vol.shape_kji != src.volume.shape_kji:
        raise OneShotError(
            f"reference mask {mask_path} has shape {mask_vol.shape_kji} (k, j, i) but the "
            f"reference volume {image_path} has {src.volume.shape_kji}: they must share one grid")
    mask_all = labels_from_mask(mask_vol.voxels, mask_path, is_volume=True)
    ax = src.array_axis
    n = mask_all.shape[ax]
    annotated = [k for k in range(n) if np.any(get_slice(mask_all, ax, k))]
    if reference_slice is None:
        if not annotated:
            raise OneShotError(f"the reference mask {mask_path} is empty: annotate the "
                               "structure on one slice and try again")
        if len(annotated) > 1:
            shown = ", ".join(str(k) for k in annotated[:12]) + (" ..." if len(annotated) > 12 else "")
            raise OneShotError(
                f"the reference mask has labels on {len(annotated)} {axis} slices ({shown}): "
                "choose the reference with --reference-slice K (or use `oneshotsam propagate`, "
                "which uses every annotated slice)")
        reference_slice = annotated[0]
    if not 0 <= reference_slice < n:
        raise OneShotError(f"--reference-slice {reference_slice} is outside 0..{n - 1} "
                           f"({axis} slices of {image_path})")
    labels = np.ascontiguousarray(get_slice(mask_all, ax, reference_slice))
    image = src.images[reference_slice]
    try:
        values = check_reference(image, labels)
    except OneShotError as exc:
        raise OneShotError(f"reference slice {reference_slice}: {exc}") from None
    segments = mask_vol.meta.get("segments") if isinstance(mask_vol.meta, dict) else None
    from oneshotsam.dicom_rt import LOST_KEY

    lost = list(mask_vol.meta.get(LOST_KEY, [])) if isinstance(mask_vol.meta, dict) else []
    return Reference(src, image, labels, values, reference_slice, segments, lost)
