"""DICOM Segmentation (SEG) read and write through highdicom, on a DICOM series' grid.

* :func:`read_dicom_seg`: the segments of a SEG that references the slices of the
  series a volume was read from -> one label value per segment (1..N in the order
  chosen), names and colours in ``meta["segments"]``.
* :func:`write_dicom_seg`: a label volume on a series' grid -> a BINARY SEG derived from
  that series (highdicom copies the patient, study and Frame of Reference and
  references every source slice), one segment per label value, named and coloured
  like the ``.seg.nrrd`` output.

pydicom and highdicom are imported lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from oneshotsam.dicom_rt import check_frame_of_reference, select_rois, series_of
from oneshotsam.dicom_rt_write import check_on_series
from oneshotsam.errors import OneShotError
from oneshotsam.types import Volume


def _rgb01(seg_item: Any) -> list[float] | None:
    if "RecommendedDisplayCIELabValue" not in seg_item:
        return None
    from highdicom.color import CIELabColor

    rgb = CIELabColor.from_dicom_value(list(seg_item.RecommendedDisplayCIELabValue)).to_rgb()
    return [float(c) / 255.0 for c in rgb]


def _referenced(seg: Any) -> tuple[set[str], set[str]]:
    """(Series Instance UIDs, SOP Instance UIDs) the SEG says it was derived from."""
    series, sops = set(), set()
    for it in seg.get("ReferencedSeriesSequence", []):
        series.add(str(it.get("SeriesInstanceUID", "")))
        sops |= {str(r.ReferencedSOPInstanceUID) for r in it.get("ReferencedInstanceSequence", [])
                 if "ReferencedSOPInstanceUID" in r}
    return series - {""}, sops


def check_derived_from(seg: Any, series: Any, path: Path) -> None:
    """Refuse a SEG derived from another series than ``series`` (none of its slices)."""
    ref_series, ref_sops = _referenced(seg)
    if not ref_sops or ref_sops & set(series.sop_instance_uids):
        return
    shown = ", ".join(sorted(ref_series)) or "unknown"
    raise OneShotError(
        f"{path} was derived from another series ({shown}, {len(ref_sops)} slices), not from the series "
        f"in {series.folder} ({series.series_instance_uid}): a DICOM SEG can only be read onto the "
        "series it was derived from; give that series as the reference image")


def frames_outside(seg: Any, volume: Volume, names: dict[int, str]) -> list[dict]:
    """Per segment in ``names`` (``{number: name}``), the positions (mm along the slice
    normal) of its frames on slices the series does not have (e.g. missing end slices)."""
    series = series_of(volume)
    have = set(series.sop_instance_uids)
    a = np.asarray(volume.ijk_to_lps, dtype=np.float64)
    normal = np.cross(a[:3, 0], a[:3, 1])
    normal /= np.linalg.norm(normal)
    lost: dict[int, set[float]] = {}
    shared = (seg.get("SharedFunctionalGroupsSequence") or [None])[0]
    segs = seg.get("SegmentSequence", [])
    only = int(segs[0].SegmentNumber) if len(segs) == 1 else None
    for fg in seg.get("PerFrameFunctionalGroupsSequence", []):
        try:
            src = str(fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
            ident = (fg.get("SegmentIdentificationSequence")
                     or (shared.get("SegmentIdentificationSequence") if shared is not None else None))
            number = int(ident[0].ReferencedSegmentNumber) if ident else only
            pos = np.asarray(fg.PlanePositionSequence[0].ImagePositionPatient, dtype=np.float64)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError):
            continue  # frames without these references cannot be placed: not counted
        if src not in have and number in names:
            lost.setdefault(number, set()).add(round(float(pos @ normal), 3))
    return [{"roi": names[n], "roi_number": n, "slices_mm": sorted(v), "frames": len(v)}
            for n, v in sorted(lost.items())]


def read_dicom_seg(path: str | Path, volume: Volume, segments: Sequence[str] | None = None) -> Volume:
    """The segments of a DICOM SEG as a label volume on ``volume``'s grid.

    Args:
        path: the SEG file.
        volume: the series the SEG was derived from (read from a DICOM folder: its
            slices' SOP Instance UIDs locate the SEG's frames).
        segments: segment labels to read (in this order; ``--roi``); None = all.

    Returns: a uint8/uint16 label volume, segment ``n`` of the chosen order -> label ``n``
    (later segments win on overlaps), ``meta["segments"]`` as from a ``.seg.nrrd``.
    """
    import highdicom as hd

    p = Path(path)
    series = series_of(volume)
    if series is None:
        raise OneShotError(f"{p} is a DICOM SEG: give the DICOM series it was derived from as the "
                           "reference image (a folder), not a NIfTI/NRRD file")
    try:
        seg = hd.seg.segread(str(p))
    except Exception as exc:  # highdicom / pydicom raise many kinds
        raise OneShotError(f"cannot read the DICOM SEG {p}: {exc}") from None
    check_frame_of_reference(str(seg.get("FrameOfReferenceUID", "")), volume, str(p))
    check_derived_from(seg, series, p)
    items = list(seg.SegmentSequence)
    names = [str(it.get("SegmentLabel", f"Segment_{it.SegmentNumber}")) for it in items]
    picked = [items[i] for i in select_rois(names, segments, str(p))]
    numbers = [int(it.SegmentNumber) for it in picked]
    lost = frames_outside(seg, volume, {n: names[items.index(it)] for n, it in zip(numbers, picked)})
    try:
        arr = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=list(series.sop_instance_uids), segment_numbers=numbers,
            combine_segments=False, assert_missing_frames_are_empty=True)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise OneShotError(f"{p} does not segment the slices of the series {series.folder}: "
                           f"{str(exc)[:200]}") from None
    out = np.zeros(volume.shape_kji, np.uint16 if len(picked) > 255 else np.uint8)
    metas, empty = [], []
    for n, it in enumerate(picked, start=1):
        m = np.asarray(arr[..., n - 1]) > 0
        if m.shape != out.shape:
            raise OneShotError(f"{p}: segment frames {m.shape} do not fit the series {out.shape}")
        if not m.any():
            empty.append(str(it.get("SegmentLabel", n)))
        out[m] = n
        metas.append({"value": n, "name": names[items.index(it)], "color": _rgb01(it),
                      "terminology": None, "id": f"Segment_{it.SegmentNumber}",
                      "roi_number": int(it.SegmentNumber)})
    if empty:
        raise OneShotError(f"segment(s) {', '.join(map(repr, empty))} of {p} are empty on the series: "
                           f"choose others with --roi NAME ... (segments: {', '.join(map(repr, names))})")
    from oneshotsam.dicom_rt import LOST_KEY, fill_colours

    meta = {"path": str(p), "suffix": "dicom-seg", "segments": fill_colours(metas)}
    if lost:
        meta[LOST_KEY] = lost
    return Volume(voxels=out, ijk_to_lps=volume.ijk_to_lps, name=p.stem, meta=meta)


def _positive(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) and v > 0 else None


def pixel_measures(series: Any, headers: Sequence[Any] | None = None) -> Any:
    """The SEG's Pixel Measures from the series: Pixel Spacing of the slices, Slice
    Thickness when every slice gives the same positive one, else the spacing of the slice
    positions (absent or empty Slice Thickness is common in exports); Spacing Between
    Slices from the positions. Raises :class:`OneShotError` when neither is known."""
    import highdicom as hd

    headers = list(headers) if headers is not None else series.datasets(pixels=False)
    spacing = [_positive(v) for v in (headers[0].get("PixelSpacing") or [])]
    if len(spacing) != 2 or None in spacing:
        raise OneShotError(f"the series {series.folder} has no valid PixelSpacing "
                           f"({headers[0].get('PixelSpacing')!r}): a DICOM SEG needs the pixel size; "
                           "write nifti / seg-nrrd / rtstruct instead, or fix the export")
    steps = np.diff(np.asarray(series.positions_mm, dtype=np.float64))
    step = float(np.median(steps)) if steps.size else None
    thick = {_positive(h.get("SliceThickness")) for h in headers}
    thickness = thick.pop() if len(thick) == 1 and None not in thick else step
    if thickness is None:
        raise OneShotError(f"the series {series.folder} is one slice without a SliceThickness: a DICOM "
                           "SEG needs the slice thickness; write nifti / seg-nrrd / rtstruct instead")
    return hd.PixelMeasuresSequence(pixel_spacing=[float(s) for s in spacing], slice_thickness=thickness,
                                    spacing_between_slices=step)


def write_dicom_seg(labels: Volume, series: Any, out_path: str | Path,
                    segments: list[dict] | None = None, description: str = "OneShotSAM") -> Path:
    """Write ``labels`` (on the grid of the DICOM ``series``) as a BINARY DICOM SEG, atomically.

    Segment ``n`` (1..N) is the ``n``-th label value present in the voxels (SEG numbers
    segments consecutively; label values absent from the voxels are left out), named
    and coloured from ``segments`` (``{"value", "name", "color" 0..1}``).
    """
    from oneshotsam.fileformats import atomic_write

    seg = build_dicom_seg(labels, series, segments, description)
    return atomic_write(out_path, lambda tmp: seg.save_as(tmp, enforce_file_format=True))


def build_dicom_seg(labels: Volume, series: Any, segments: list[dict] | None = None,
                    description: str = "OneShotSAM") -> Any:
    """The highdicom Segmentation of :func:`write_dicom_seg`, in memory."""
    import highdicom as hd
    from highdicom.color import CIELabColor
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from oneshotsam.dicom_rt_write import software_version
    from oneshotsam.fileformats import segments_for

    check_on_series(labels, series)
    lab = np.asarray(labels.voxels)
    values = [int(v) for v in np.unique(lab) if v != 0]
    segs = [s for s in segments_for(values, segments) if s["value"] in values]
    if not segs:
        raise OneShotError(f"the labels of {labels.name!r} are empty: a DICOM SEG needs at least one "
                           "labelled voxel")
    algo = hd.AlgorithmIdentificationSequence(name="OneShotSAM", version=software_version(),
                                              family=codes.cid7162.ArtificialIntelligence)
    descs, numbered = [], np.zeros(lab.shape, np.uint16 if len(segs) > 255 else np.uint8)
    for n, s in enumerate(segs, start=1):
        rgb = [int(round(255 * min(max(float(c), 0.0), 1.0))) for c in s["color"][:3]]
        descs.append(hd.seg.SegmentDescription(
            segment_number=n, segment_label=str(s["name"])[:64],
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=codes.SCT.Organ, algorithm_type="AUTOMATIC",
            algorithm_identification=algo, display_color=CIELabColor.from_rgb(*rgb)))
        numbered[lab == s["value"]] = n
    sources = series.datasets(pixels=False)
    measures = pixel_measures(series, sources)
    for h in sources:  # in memory only: highdicom reads the first slice's SliceThickness
        if _positive(h.get("SliceThickness")) is None:
            h.SliceThickness = measures[0].SliceThickness
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=numbered, segmentation_type="BINARY",
        segment_descriptions=descs, series_instance_uid=generate_uid(), series_number=902,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="OneShotSAM",
        manufacturer_model_name="oneshotsam", software_versions=software_version(),
        device_serial_number="0", series_description=description[:64], pixel_measures=measures)
    return seg
