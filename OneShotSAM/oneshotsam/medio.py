"""Medical image I/O through SimpleITK (and slicerio for Slicer ``.seg.nrrd``).

Reads PNG / JPG / BMP / TIFF (grey or RGB, 8 or 16 bit), NIfTI, NRRD, MHA/MHD,
DICOM series folders and Slicer segmentations; writes label maps back in the
input's geometry and format family, atomically (temporary file in the target
folder, then ``os.replace``), so no half-written file is ever left behind.

Geometry conventions are those of :mod:`oneshotsam.geometry` (LPS, ``[k, j, i]``
arrays). SimpleITK and slicerio are imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oneshotsam import geometry
from oneshotsam.errors import OneShotError
from oneshotsam.types import Volume
from oneshotsam.fileformats import (IMAGE2D_SUFFIXES, LABEL_WRITE_SUFFIXES, VOLUME_SUFFIXES,
                                    SEGMENT_PALETTE, atomic_write, keep_locale, path_stem, segments_for,
                                    split_suffix)

_FORMATS_TEXT = "PNG, JPG, BMP, TIFF, NIfTI (.nii/.nii.gz), NRRD (.nrrd/.seg.nrrd), MHA/MHD, DICOM"
_FAMILY = {".png": ".png", ".jpg": ".png", ".jpeg": ".png", ".bmp": ".png", ".tif": ".png",
           ".tiff": ".png", ".nii.gz": ".nii.gz", ".nii": ".nii.gz", ".seg.nrrd": ".seg.nrrd",
           ".nrrd": ".nrrd", ".nhdr": ".nrrd", ".mha": ".mha", ".mhd": ".mha", ".dcm": ".nii.gz"}


def output_name_for(input_path: str | Path) -> str:
    """Output file name for a prediction on ``input_path``: its stem,
    ``_oneshotsam`` (:func:`oneshotsam.writer.output_stem`, so never the input's own
    name) and the suffix of its format family (``.png`` for PNG/JPG/BMP/TIFF,
    ``.nii.gz`` for NIfTI and DICOM, ``.nrrd``, ``.seg.nrrd``, ``.mha``). One slice
    file of a DICOM series stands for its series: ``<folder>_series<N>``
    (:func:`oneshotsam.dicom_series.series_stem`), not the slice's name."""
    from oneshotsam.dicom_series import series_stem
    from oneshotsam.writer import output_stem

    p = Path(input_path)
    if series_stem(p):
        return output_stem(series_stem(p)) + ".nii.gz"
    suf = ".nii.gz" if p.is_dir() else _FAMILY.get(split_suffix(p)[1], ".nii.gz")
    return output_stem(p) + suf


def supported_files(folder: str | Path, kinds: str = "all") -> list[Path]:
    """Sorted image files in ``folder`` (not recursive); ``kinds``: "2d", "3d" or "all"."""
    sufs = {"2d": IMAGE2D_SUFFIXES, "3d": VOLUME_SUFFIXES}.get(kinds, IMAGE2D_SUFFIXES + VOLUME_SUFFIXES)
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and not p.name.startswith(".") and split_suffix(p)[1] in sufs)


# ----------------------------------------------------------------------------- reading
def _check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise OneShotError(f"file not found: {p}")
    return p


def _sitk_read(path: Path) -> Any:
    import SimpleITK as sitk

    from oneshotsam.integrity import check_compressed_stream

    check_compressed_stream(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ""
        raise OneShotError(
            f"cannot read {path}: not a supported image or a damaged file (supported: "
            f"{_FORMATS_TEXT}). SimpleITK said: {first}") from None


@dataclass(frozen=True)
class RawImage2D:
    """A 2D image as stored on disk.

    Attributes:
        array: ``(H, W)`` grey or ``(H, W, 3)`` RGB, the file's dtype (a 16-bit
            image stays 16 bit; :mod:`oneshotsam.intensity` windows it). Read-only.
        spacing_mm: pixel size ``(row_mm, col_mm)``.
        path: the file it came from.
        meta: geometry to write results back: ``dimension`` (2 or 3),
            ``singleton_axis`` (array axis of the 1-voxel axis of a 3D file, else
            None), SimpleITK ``origin``/``spacing``/``direction`` of the file, ``suffix``.
    """

    array: np.ndarray
    spacing_mm: tuple[float, float]
    path: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        a = np.asarray(self.array)
        if a.flags.writeable:
            a = a.view()
            a.flags.writeable = False
        object.__setattr__(self, "array", a)

    @property
    def shape_hw(self) -> tuple[int, int]:
        return int(self.array.shape[0]), int(self.array.shape[1])

    @property
    def name(self) -> str:
        return path_stem(self.path)


def _components_to_grey_or_rgb(arr: np.ndarray, ncomp: int, path: Path) -> np.ndarray:
    if ncomp == 1:
        return arr
    if ncomp == 2:  # grey + alpha
        return arr[..., 0]
    if ncomp in (3, 4):  # RGB / RGBA -> RGB
        return arr[..., :3]
    raise OneShotError(f"{path} has {ncomp} channels per pixel; only grey, RGB and RGBA images are supported")


def read_image2d(path: str | Path) -> RawImage2D:
    """Read a 2D image: PNG/JPG/BMP/TIFF, or a 2D / single-slice 3D NIfTI, NRRD, MHA.

    Returns the pixels in the file's dtype (RGBA -> RGB, grey+alpha -> grey) and
    the geometry needed by :func:`write_label_image_like`. A single-slice 3D
    file is sliced with :func:`oneshotsam.geometry.get_slice`'s rule.
    """
    import SimpleITK as sitk

    p = _check_file(path)
    if p.is_dir():
        raise OneShotError(f"{p} is a folder; a 2D image file is needed here (a DICOM folder is a "
                           "volume: use the volume commands)")
    try:
        img = _sitk_read(p)
    except OneShotError:
        fallback = _cv2_raster(p)  # e.g. grey + alpha PNG, which ITK cannot read
        if fallback is None:
            raise
        return fallback
    dim = img.GetDimension()
    arr = sitk.GetArrayFromImage(img)
    ncomp = img.GetNumberOfComponentsPerPixel()
    sp = img.GetSpacing()
    singleton = None
    if dim == 2:
        spacing_rc = (float(sp[1]), float(sp[0]))
    elif dim == 3:
        shape_kji = arr.shape[:3]
        ones = [a for a in range(3) if shape_kji[a] == 1]
        if not ones:
            raise OneShotError(
                f"{p} is a volume with {shape_kji[0]} slices of {shape_kji[2]}x{shape_kji[1]}: pick a "
                "slice (--reference-slice K) or use the volume command 'propagate'")
        singleton = ones[0]
        arr = np.take(arr, 0, axis=singleton)
        row_c, col_c, _ = geometry._PLANE_IJK[singleton]
        spacing_rc = (float(sp[row_c]), float(sp[col_c]))
    else:
        raise OneShotError(f"{p} is a {dim}D image; only 2D images (or one-slice 3D files) work here")
    arr = _components_to_grey_or_rgb(arr, ncomp, p)
    meta = {"dimension": dim, "singleton_axis": singleton, "origin": tuple(img.GetOrigin()),
            "spacing": tuple(sp), "direction": tuple(img.GetDirection()), "suffix": split_suffix(p)[1]}
    return RawImage2D(array=arr, spacing_mm=spacing_rc, path=str(p), meta=meta)


def _cv2_raster(p: Path) -> RawImage2D | None:
    """OpenCV reading of a 2D raster file (BGR(A) -> RGB; equal channels -> grey), or None."""
    if split_suffix(p)[1] not in IMAGE2D_SUFFIXES:
        return None
    import cv2

    a = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if a is None or a.ndim not in (2, 3):
        return None
    if a.ndim == 3:
        a = np.ascontiguousarray(a[..., :3][..., ::-1])
        if np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]):
            a = np.ascontiguousarray(a[..., 0])
    meta = {"dimension": 2, "singleton_axis": None, "origin": (0.0, 0.0), "spacing": (1.0, 1.0),
            "direction": (1.0, 0.0, 0.0, 1.0), "suffix": split_suffix(p)[1]}
    return RawImage2D(array=a, spacing_mm=(1.0, 1.0), path=str(p), meta=meta)


def read_label_image2d(path: str | Path) -> RawImage2D:
    """:func:`read_image2d` for masks: an indexed (palette) PNG/BMP/TIFF keeps its palette
    indices, which are the label values (a plain read expands them to RGB colours)."""
    raw = read_image2d(path)
    if raw.array.ndim == 3 and split_suffix(raw.path)[1] in IMAGE2D_SUFFIXES:
        try:
            from PIL import Image
        except ImportError:  # Pillow comes with torchvision; without it keep the colours
            return raw
        with Image.open(raw.path) as im:
            if im.mode == "P":
                idx = np.asarray(im)
                if idx.shape == raw.shape_hw:
                    return RawImage2D(array=idx, spacing_mm=raw.spacing_mm, path=raw.path, meta=raw.meta)
    return raw


def read_volume(path_or_dicom_dir: str | Path) -> Volume:
    """Read a scalar 3D image: NIfTI, NRRD, MHA/MHD, or a DICOM series (a folder, or one
    ``.dcm`` file of it). Geometry in LPS; ``meta``: ``path``, ``suffix``; for DICOM also
    ``dicom_series_uid`` and ``dicom_series`` (the validated
    :class:`oneshotsam.dicom_series.DicomSeries`, slices in ``k`` order)."""
    import SimpleITK as sitk

    p = _check_file(path_or_dicom_dir)
    meta: dict[str, Any] = {"path": str(p), "suffix": "dicom" if p.is_dir() else split_suffix(p)[1]}
    img = None
    if p.is_dir() or meta["suffix"] == ".dcm":
        from oneshotsam.dicom_series import scan_series

        series = scan_series(p)  # one validated series: no mixed series, duplicates or gaps
        files = list(series.files)
        meta.update({"dicom_series_uid": series.series_instance_uid, "dicom_series": series})
        if len(files) > 1 or p.is_dir():
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(files)
            try:
                img = reader.Execute()
            except RuntimeError as exc:
                raise OneShotError(f"cannot read the DICOM series in {p}: {str(exc).strip()[-200:]}") from None
    if img is None:
        img = _sitk_read(p)
    if img.GetDimension() == 2:
        raise OneShotError(f"{p} is a 2D image; a 3D volume is needed here (use the 2D 'segment' "
                           "command for single images)")
    return geometry.sitk_to_volume(img, name=path_stem(p), meta=meta)


def _as_labels(arr: np.ndarray, what: str) -> np.ndarray:
    """Integer label array in the smallest fitting unsigned dtype (validated)."""
    a = np.asarray(arr)
    if a.dtype == bool:
        return a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise OneShotError(f"{what} holds non-integer values: a label map must hold integer labels "
                               "(0 = background)")
    if a.size and a.min() < 0:
        raise OneShotError(f"{what} holds negative values ({a.min()}); labels must be >= 0")
    top = int(a.max()) if a.size else 0
    for dt in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dt).max:
            return a.astype(dt, copy=False) if a.dtype != dt else a
    raise OneShotError(f"{what} has label values up to {top}; at most 2**32-1 is supported")


def _read_seg_nrrd(p: Path) -> Volume:
    import slicerio
    from slicerio.segmentation import terminology_entry_to_string

    from oneshotsam.integrity import check_compressed_stream

    check_compressed_stream(p)
    try:
        seg = slicerio.read_segmentation(str(p))
    except Exception as exc:  # pynrrd / slicerio raise several types
        raise OneShotError(f"cannot read the Slicer segmentation {p}: {exc}") from None
    vox = np.asarray(seg["voxels"])
    segments = list(seg.get("segments", []))
    overlap = 0
    if vox.ndim == 4:  # overlapping segments on several layers: one label per segment
        out = np.zeros(vox.shape[1:], np.uint16)
        for n, s in enumerate(segments, start=1):
            m = vox[s.get("layer", 0)] == s.get("labelValue", 1)
            overlap += int(np.count_nonzero(m & (out > 0)))
            out[m] = n
            s["labelValue"] = n
        vox = out
    voxels = _as_labels(vox.transpose(2, 1, 0), str(p))
    meta_segments = []
    for n, s in enumerate(segments):
        term = s.get("terminology")
        meta_segments.append({
            "value": int(s.get("labelValue", n + 1)), "name": s.get("name", s.get("id", f"Segment_{n + 1}")),
            "color": [float(c) for c in s.get("color", SEGMENT_PALETTE[n % len(SEGMENT_PALETTE)])],
            "terminology": terminology_entry_to_string(term) if isinstance(term, dict) else term,
            "id": s.get("id")})
    meta = {"path": str(p), "suffix": ".seg.nrrd", "segments": meta_segments}
    if overlap:
        meta["overlapping_voxels"] = overlap
    return Volume(voxels=voxels, ijk_to_lps=np.asarray(seg["ijkToLPS"], float), name=path_stem(p), meta=meta)


def read_label_volume(path: str | Path, reference: Volume | None = None,
                      rois: list[str] | tuple[str, ...] | None = None) -> Volume:
    """Read a 3D label map (NIfTI, NRRD, MHA, Slicer ``.seg.nrrd``, DICOM RTSTRUCT or SEG)
    as an unsigned integer volume.

    For ``.seg.nrrd``, ``meta["segments"]`` lists ``{"value", "name", "color" (RGB 0..1),
    "terminology" (Slicer's string), "id"}``; overlapping segments (several layers)
    get one label value each, in segment order, later segments winning on overlaps.

    A DICOM RT Structure Set or SEG file is rasterised onto ``reference`` (the image it
    was drawn on, required then) by :func:`oneshotsam.dicom_rt.read_rtstruct` /
    :func:`oneshotsam.dicom_seg.read_dicom_seg`: ``rois`` picks ROIs / segments by name
    (default all), ROI ``n`` of that order gets label ``n``, names and colours as above.
    ``rois`` given for any other format is refused.
    """
    p = _check_file(path)
    kind = None
    if p.is_file() and split_suffix(p)[1] not in VOLUME_SUFFIXES[:-1] + IMAGE2D_SUFFIXES:
        from oneshotsam.dicom_rt import dicom_label_kind

        kind = dicom_label_kind(p)
    if kind is not None:
        if reference is None:
            raise OneShotError(f"{p} is a DICOM {kind.upper()}: it needs the image series it was drawn "
                               "on as the reference (a DICOM folder)")
        if kind == "rtstruct":
            from oneshotsam.dicom_rt import read_rtstruct

            return read_rtstruct(p, reference, rois)
        from oneshotsam.dicom_seg import read_dicom_seg

        return read_dicom_seg(p, reference, rois)
    if rois:
        raise OneShotError(f"--roi picks ROIs of a DICOM RTSTRUCT or SEG; {p} is neither")
    if p.is_file() and split_suffix(p)[1] == ".seg.nrrd":
        vol = _read_seg_nrrd(p)
    else:
        raw = read_volume(p)
        vol = Volume(voxels=_as_labels(raw.voxels, str(p)), ijk_to_lps=raw.ijk_to_lps,
                     name=raw.name, meta=raw.meta)
    return vol


# ----------------------------------------------------------------------------- writing
def _check_write_suffix(out_path: str | Path) -> str:
    suf = split_suffix(out_path)[1]
    if suf in (".jpg", ".jpeg"):
        raise OneShotError(f"cannot write labels to {out_path}: JPEG is lossy and would change label "
                           "values; use .png")
    if suf not in LABEL_WRITE_SUFFIXES:
        raise OneShotError(f"cannot write labels to {out_path}: use one of {', '.join(LABEL_WRITE_SUFFIXES)}")
    return suf


def write_label_image_like(labels2d: np.ndarray, like: RawImage2D, out_path: str | Path) -> Path:
    """Write a 2D label map with ``like``'s size and geometry, in ``out_path``'s format.

    PNG/BMP/TIFF: uint8 when labels <= 255, else uint16. NIfTI/NRRD/MHA: the
    geometry of ``like``'s file (a one-slice 3D file is written back as one).
    Use :func:`output_name_for` for the name. Written atomically.
    """
    import SimpleITK as sitk

    suf = _check_write_suffix(out_path)
    lab = _as_labels(labels2d, "the label map")
    if lab.shape != like.shape_hw:
        raise OneShotError(f"label map is {lab.shape[1]}x{lab.shape[0]} but {like.path} is "
                           f"{like.shape_hw[1]}x{like.shape_hw[0]}: they must share one pixel grid")
    if suf in (".png", ".bmp", ".tif", ".tiff"):
        if lab.dtype == np.uint32:
            raise OneShotError("label values above 65535 cannot be stored in a PNG; write NIfTI or NRRD")
        if suf == ".bmp" and lab.dtype != np.uint8:
            raise OneShotError("label values above 255 cannot be stored in a BMP; write PNG")
    meta = like.meta
    if meta.get("dimension") == 3:
        img = sitk.GetImageFromArray(np.expand_dims(lab, int(meta["singleton_axis"])))
    else:
        img = sitk.GetImageFromArray(np.ascontiguousarray(lab))
    if "origin" in meta and len(meta["origin"]) == img.GetDimension():
        img.SetOrigin(meta["origin"])
        img.SetSpacing(meta["spacing"])
        img.SetDirection(meta["direction"])
    return atomic_write(out_path, lambda tmp: _sitk_write(img, tmp))


def _sitk_write(img: Any, path: str) -> None:
    """``SimpleITK.WriteImage`` (compressed), the process locale kept (:func:`keep_locale`)."""
    import SimpleITK as sitk

    with keep_locale():
        sitk.WriteImage(img, path, True)


def write_dicom_series(vol: Volume, folder: str | Path, tags: dict[str, str]) -> list[Path]:
    """One DICOM file per ``k`` slice of ``vol`` (``slice000.dcm``...; test data, examples),
    each with ``tags`` (``{"gggg|eeee": text}``: modality, UIDs...) and its own position,
    orientation and instance number; SOP instance UIDs ``<0020|000e>.2.<k>``. The process
    locale is kept (GDCM's writer would leave it at ``C``)."""
    import SimpleITK as sitk

    img, out = geometry.volume_to_sitk(vol), Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    d, files = img.GetDirection(), []
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(img.GetSize()[2]):
        sl = img[:, :, k]
        per = {"0020|0013": str(k + 1), "0008|0018": f"{tags.get('0020|000e', '1.2.3')}.2.{k}",
               "0020|0037": "\\".join(str(v) for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
               "0020|0032": "\\".join(str(v) for v in img.TransformIndexToPhysicalPoint((0, 0, k)))}
        for key, val in {**tags, **per}.items():
            sl.SetMetaData(key, val)
        files.append(out / f"slice{k:03d}.dcm")
        writer.SetFileName(str(files[-1]))
        with keep_locale():
            writer.Execute(sl)
    return files


def write_label_volume(vol: Volume, out_path: str | Path) -> Path:
    """Write a label volume; format from the suffix (.nii.gz, .nii, .nrrd, .mha, .seg.nrrd).

    ``.seg.nrrd`` gets one segment per label value (present in the voxels or listed
    in ``vol.meta["segments"]``), with the names, colours and terminology given
    there (defaults ``Segment_<value>`` and a palette colour). Written atomically.
    """
    suf = _check_write_suffix(out_path)
    if suf in (".png", ".bmp", ".tif", ".tiff"):
        raise OneShotError(f"cannot write a volume to {out_path}: use .nii.gz, .nrrd, .mha or .seg.nrrd")
    lab = _as_labels(vol.voxels, f"label volume {vol.name!r}")
    if suf == ".seg.nrrd":
        return atomic_write(out_path, lambda tmp: _write_seg_nrrd(lab, vol, tmp))
    img = geometry.volume_to_sitk(Volume(lab, vol.ijk_to_lps))
    return atomic_write(out_path, lambda tmp: _sitk_write(img, tmp))


def _write_seg_nrrd(lab: np.ndarray, vol: Volume, tmp: str) -> None:
    import slicerio
    from slicerio.segmentation import terminology_entry_from_string

    values = [int(v) for v in np.unique(lab) if v != 0]
    segs = []
    for n, s in enumerate(segments_for(values, vol.meta.get("segments")), start=1):
        entry: dict[str, Any] = {"id": f"Segment_{s['value']}", "name": s["name"], "color": s["color"],
                                 "labelValue": s["value"], "layer": 0}
        term = s.get("terminology")
        if isinstance(term, str) and term:
            try:
                entry["terminology"] = terminology_entry_from_string(term)
            except Exception:  # not a Slicer terminology string: keep it as a plain tag
                entry["tags"] = {"TerminologyEntry": term}
        elif isinstance(term, dict):
            entry["terminology"] = term
        segs.append(entry)
    seg = {"voxels": np.asfortranarray(lab.transpose(2, 1, 0)), "ijkToLPS": np.asarray(vol.ijk_to_lps),
           "segments": segs, "containedRepresentationNames": ["Binary labelmap"],
           "masterRepresentation": "Binary labelmap"}
    slicerio.write_segmentation(tmp, seg)
