"""DICOM RT Structure Set (RTSTRUCT) read and write, on the grid of a DICOM image series.

* :func:`read_rtstruct`: rasterise the ROIs of an RTSTRUCT onto a volume (the series
  the contours were drawn on, read by :func:`oneshotsam.medio.read_volume`): one label
  value per ROI (1..N in the order chosen), names and colours in ``meta["segments"]``
  as from a Slicer ``.seg.nrrd``. Holes and several contours per slice follow the
  even-odd rule of :mod:`oneshotsam.contours`.
* writing is in :mod:`oneshotsam.dicom_rt_write` (:func:`~oneshotsam.dicom_rt_write.write_rtstruct`).

Why not rt-utils: its writer emits Contour Data values longer than the 16 characters a
DS allows (dciodvfy rejects the file), maps pixel columns with ``PixelSpacing[0]`` (the
row spacing) so contours are misplaced on pixels that are not square, and its reader
swaps rows and columns on non-square matrices; its contours (OpenCV's) run through the
centres of the boundary pixels, so a planning system that fills them reads a smaller
structure. highdicom has no RT Structure Set. So the dataset is built with pydicom from
the standard's modules, the contours run along the pixel edges
(:func:`oneshotsam.contours.mask_contours`: they enclose exactly the labelled voxels)
and the geometry comes from :mod:`oneshotsam.geometry`. docs/dicom_rt.md has the
comparison and the measurements. pydicom is imported lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from oneshotsam import geometry
from oneshotsam.contours import rasterise_contours
from oneshotsam.errors import OneShotError
from oneshotsam.types import Volume

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
#: how far (in slices) a contour may lie off a slice plane of the series
PLANE_TOL_SLICES = 0.25


def dicom_label_kind(path: str | Path) -> str | None:
    """``"rtstruct"``, ``"seg"`` or None (not a DICOM RTSTRUCT / SEG file; a folder -> None)."""
    p = Path(path)
    if not p.is_file():
        return None
    from oneshotsam.fileformats import IMAGE2D_SUFFIXES, split_suffix

    if split_suffix(p)[1] in IMAGE2D_SUFFIXES + (".nii", ".nii.gz", ".nrrd", ".seg.nrrd", ".nhdr", ".mha", ".mhd"):
        return None
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(p), stop_before_pixels=True, specific_tags=["Modality", "SOPClassUID"])
    except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError, EOFError):
        return None
    cls, mod = str(ds.get("SOPClassUID", "")), str(ds.get("Modality", ""))
    if cls == RTSTRUCT_SOP_CLASS or mod == "RTSTRUCT":
        return "rtstruct"
    if cls == SEG_SOP_CLASS or mod == "SEG":
        return "seg"
    return None


def series_of(vol: Volume) -> Any:
    """The :class:`oneshotsam.dicom_series.DicomSeries` a volume was read from, or None."""
    return vol.meta.get("dicom_series") if isinstance(vol.meta, dict) else None


def check_frame_of_reference(uid: str, vol: Volume, what: str) -> None:
    """Refuse ``what`` (a file) whose Frame of Reference UID is not the volume's series'."""
    series = series_of(vol)
    if series is None or not series.frame_of_reference_uid or not uid:
        return
    if uid != series.frame_of_reference_uid:
        raise OneShotError(
            f"{what} is in Frame of Reference {uid} but the series {series.folder} is in "
            f"{series.frame_of_reference_uid}: the contours were not drawn on this patient "
            "position; give the series they were drawn on (or register it first)")


def select_rois(available: Sequence[str], wanted: Sequence[str] | None, what: str) -> list[int]:
    """Indices into ``available`` of the ``wanted`` names (all when None), in wanted order."""
    if not wanted:
        return list(range(len(available)))
    twice = sorted({n for n in wanted if [w.strip().lower() for w in wanted].count(n.strip().lower()) > 1})
    if twice:
        raise OneShotError(f"--roi names {', '.join(repr(n) for n in twice)} more than once: each ROI "
                           "becomes one label, name it once")
    out = []
    for name in wanted:
        hits = [i for i, a in enumerate(available) if a == name]
        if not hits:  # tolerate case and surrounding spaces, but only when unambiguous
            hits = [i for i, a in enumerate(available) if a.strip().lower() == name.strip().lower()]
        if len(hits) != 1:
            listed = ", ".join(repr(a) for a in available) or "none"
            raise OneShotError(f"ROI {name!r} is not in {what} (or not unique); ROIs there: {listed}")
        out.append(hits[0])
    return out


# ----------------------------------------------------------------------------- reading
def _roi_tables(ds: Any) -> tuple[list[dict], dict[int, Any]]:
    rois = [{"number": int(r.ROINumber), "name": str(r.get("ROIName", f"ROI_{r.ROINumber}")),
             "frame": str(r.get("ReferencedFrameOfReferenceUID", ""))}
            for r in ds.get("StructureSetROISequence", [])]
    contours = {int(c.ReferencedROINumber): c for c in ds.get("ROIContourSequence", [])}
    return rois, contours


def _slice_position_mm(vol: Volume, k: float) -> float:
    """Position (mm) along the slice normal of slice ``k`` of ``vol``."""
    a = np.asarray(vol.ijk_to_lps, dtype=np.float64)
    normal = np.cross(a[:3, 0], a[:3, 1])
    normal /= np.linalg.norm(normal)
    return float((a[:3, 3] + k * a[:3, 2]) @ normal)


def _slice_contours(item: Any, vol: Volume, roi_name: str, path: Path,
                    outside: list[float] | None = None) -> dict[int, list[np.ndarray]]:
    """Closed planar contours of one ROI Contour item as ``{k: [(N, 2) (i, j) arrays]}``;
    the positions (mm) of contours on planes beyond the series' first or last slice are
    appended to ``outside``."""
    out: dict[int, list[np.ndarray]] = {}
    n_slices = vol.voxels.shape[0]
    for c in item.get("ContourSequence", []):
        if str(c.get("ContourGeometricType", "CLOSED_PLANAR")) != "CLOSED_PLANAR":
            continue  # POINT / OPEN_PLANAR markers have no inside
        data = np.asarray([float(v) for v in c.get("ContourData", [])], dtype=np.float64)
        if data.size < 3 or data.size % 3:
            raise OneShotError(f"{path}: a contour of ROI {roi_name!r} has {data.size} Contour Data "
                               "values, not a multiple of 3 (x, y, z per point)")
        ijk = geometry.lps_to_ijk_points(vol, data.reshape(-1, 3))
        k = float(np.median(ijk[:, 2]))
        if np.max(np.abs(ijk[:, 2] - k)) > PLANE_TOL_SLICES or abs(k - round(k)) > PLANE_TOL_SLICES:
            raise OneShotError(
                f"{path}: a contour of ROI {roi_name!r} does not lie on a slice of the series "
                f"(slice index {k:.2f}): the RTSTRUCT was drawn on another series or orientation")
        kk = int(round(k))
        if 0 <= kk < n_slices:
            out.setdefault(kk, []).append(ijk[:, :2])
        elif outside is not None:
            outside.append(round(_slice_position_mm(vol, kk), 3))
    return out


#: ``meta`` key of :func:`read_rtstruct`: contours on planes beyond the series' ends
LOST_KEY = "contours_outside_series"


def lost_contours_text(meta: Any) -> str | None:
    """A warning naming the ROIs that lost contours beyond the series' ends, or None."""
    lost = meta.get(LOST_KEY) if isinstance(meta, dict) else None
    if not lost:
        return None
    parts = [f"{e['roi']!r} on {len(e['slices_mm'])} slice(s) at "
             + ", ".join(f"{z:g}" for z in e["slices_mm"][:6]) + (" ..." if len(e["slices_mm"]) > 6 else "")
             + " mm" for e in lost]
    return ("warning: the reference series ends before some contours of the structure set: "
            + "; ".join(parts) + ". Those slices are missing from the series, so these structures "
            "are shorter than planned (listed in report.json under " + LOST_KEY + "); export the "
            "complete planning series to keep them")


def read_rtstruct(path: str | Path, volume: Volume, rois: Sequence[str] | None = None) -> Volume:
    """Rasterise an RTSTRUCT's ROIs onto ``volume``'s grid.

    Args:
        path: the RTSTRUCT file.
        volume: the image the contours belong to (its geometry is used; when read from a
            DICOM series, its Frame of Reference must be the RTSTRUCT's).
        rois: ROI names to read (in this order); None = every ROI, in file order.

    Returns: a uint8/uint16 label :class:`Volume` on ``volume``'s grid, ROI ``n`` (1-based
    in the chosen order) -> label ``n``; later ROIs win where ROIs overlap (count in
    ``meta["overlapping_voxels"]``); ``meta["segments"]`` lists ``{"value", "name",
    "color" (0..1), "terminology": None, "id", "roi_number"}``.

    Raises: :class:`OneShotError` for a Frame of Reference mismatch, an unknown ROI name
    (the message lists the ROIs present), a ROI without a contour on any slice of the
    series, contours off the slice planes.
    """
    import pydicom

    p = Path(path)
    try:
        ds = pydicom.dcmread(str(p))
        table, contours = _roi_tables(ds)
    except Exception as exc:  # pydicom raises many kinds on damaged files
        raise OneShotError(f"cannot read the RTSTRUCT {p}: {str(exc)[:200]}") from None
    if not table:
        raise OneShotError(f"{p} is an RTSTRUCT without any ROI")
    frames = [str(f.FrameOfReferenceUID) for f in ds.get("ReferencedFrameOfReferenceSequence", [])
              if "FrameOfReferenceUID" in f]
    for uid in sorted(set(frames + [r["frame"] for r in table if r["frame"]])):
        check_frame_of_reference(uid, volume, str(p))
    picked = [table[i] for i in select_rois([r["name"] for r in table], rois, str(p))]
    shape_kji = volume.shape_kji
    out = np.zeros(shape_kji, np.uint16 if len(picked) > 255 else np.uint8)
    segments, overlap, empty, lost = [], 0, [], []
    for value, roi in enumerate(picked, start=1):
        item = contours.get(roi["number"])
        outside: list[float] = []
        per_slice = _slice_contours(item, volume, roi["name"], p, outside) if item is not None else {}
        if outside:
            lost.append({"roi": roi["name"], "roi_number": roi["number"],
                         "slices_mm": sorted(set(outside)), "contours": len(outside)})
        found = False
        for k, cs in per_slice.items():
            m = rasterise_contours(cs, shape_kji[1:])
            if m.any():
                found = True
                overlap += int(np.count_nonzero(m & (out[k] > 0)))
                out[k][m] = value
        if not found:
            empty.append(roi["name"])
        colour = item.get("ROIDisplayColor") if item is not None else None
        segments.append({"value": value, "name": roi["name"],
                         "color": [float(c) / 255.0 for c in colour] if colour is not None and len(colour) == 3
                         else None, "terminology": None, "id": f"ROI_{roi['number']}",
                         "roi_number": roi["number"]})
    if empty:
        others = [r["name"] for r in table if r["name"] not in empty
                  and len(contours.get(r["number"], {}).get("ContourSequence", []))]
        raise OneShotError(
            f"ROI(s) {', '.join(repr(n) for n in empty)} in {p} have no contour on any slice of the "
            f"series: choose ROIs that do with --roi NAME ... (ROIs with contours in the file: "
            f"{', '.join(repr(n) for n in others) or 'none'})")
    meta: dict[str, Any] = {"path": str(p), "suffix": "rtstruct", "segments": fill_colours(segments),
                            "frame_of_reference_uid": frames[0] if frames else ""}
    if overlap:
        meta["overlapping_voxels"] = overlap
    if lost:
        meta[LOST_KEY] = lost
    return Volume(voxels=out, ijk_to_lps=volume.ijk_to_lps, name=p.stem, meta=meta)


def fill_colours(segments: list[dict]) -> list[dict]:
    """Segment descriptions with ``"color": None`` given the default palette colour of
    :func:`oneshotsam.medio.segments_for` (others unchanged)."""
    from oneshotsam.fileformats import segments_for

    defaults = {s["value"]: s["color"] for s in segments_for([s["value"] for s in segments])}
    return [{**s, "color": s["color"] if s["color"] is not None else defaults[s["value"]]}
            for s in segments]
