"""Writing DICOM RT Structure Sets (RTSTRUCT) on the grid of a DICOM image series.

:func:`write_rtstruct`: a label volume on a series' grid -> an RTSTRUCT that references
that series (Frame of Reference, Study, Series and every slice's SOP Instance), copies
its patient and study identity (no new patient or study), one ROI per label value with
the segment's name, colour and (when it came with one) ROI Number. Contours run along
the pixel edges (:func:`oneshotsam.contours.mask_contours`), so a planning system that
fills them reads back exactly the labelled voxels. Also the pieces the DICOM SEG writer
shares (:func:`check_on_series`, :func:`new_derived_dataset`). pydicom is imported lazily.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np

from oneshotsam import geometry
from oneshotsam.contours import mask_contours
from oneshotsam.dicom_rt import RTSTRUCT_SOP_CLASS
from oneshotsam.errors import OneShotError
from oneshotsam.types import Volume

#: "Study Component Management" class used for RT Referenced Study items (PS3.3 C.8.8.5)
_STUDY_REF_CLASS = "1.2.840.10008.3.1.2.3.1"


def check_on_series(labels: Volume, series: Any) -> None:
    """Refuse a label volume that is not on the grid of ``series`` (slice count, matrix,
    slice positions along the series normal)."""
    k, rows, cols = labels.shape_kji
    if k != len(series.sop_instance_uids) or (rows, cols) != tuple(series.shape_rc):
        raise OneShotError(
            f"the labels ({cols}x{rows}, {k} slices) are not on the grid of the series {series.folder} "
            f"({series.shape_rc[1]}x{series.shape_rc[0]}, {len(series.sop_instance_uids)} slices)")
    a = np.asarray(labels.ijk_to_lps)
    normal = np.cross(a[:3, 0], a[:3, 1])
    normal /= np.linalg.norm(normal)
    pos = (a[:3, 3][None, :] + np.arange(k)[:, None] * a[:3, 2][None, :]) @ normal
    if not np.allclose(pos, series.positions_mm, atol=1e-2):
        raise OneShotError(f"the labels' slice positions do not match the series {series.folder}: "
                           "resample them onto the series first")


def _ds_text(values: np.ndarray) -> list[str]:
    """Decimal String values of at most 16 characters (0.1 micrometre resolution)."""
    from pydicom.valuerep import format_number_as_ds

    out = []
    for v in np.asarray(values, dtype=np.float64).ravel():
        t = f"{v:.4f}".rstrip("0").rstrip(".")
        out.append("0" if t in ("-0", "") else (t if len(t) <= 16 else format_number_as_ds(float(v))))
    return out


def _now() -> tuple[str, str]:
    now = datetime.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def new_derived_dataset(series: Any, sop_class_uid: str, modality: str, description: str) -> Any:
    """A pydicom Dataset (with file meta) sharing ``series``' patient and study: new SOP
    and Series Instance UIDs, the series' identity attributes copied as they are."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    date, time_ = _now()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time_
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class_uid, meta.MediaStorageSOPInstanceUID
    for key, value in series.identity.items():
        setattr(ds, key, value)
    ds.StudyInstanceUID = series.study_instance_uid
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 901
    ds.SeriesDate, ds.SeriesTime = date, time_
    ds.SeriesDescription = description[:64]
    ds.OperatorsName = ""
    ds.Manufacturer = "OneShotSAM"
    ds.ManufacturerModelName = "oneshotsam"
    ds.SoftwareVersions = software_version()
    return ds


def software_version() -> str:
    try:
        from importlib.metadata import version

        return version("oneshotsam")
    except Exception:  # running from a source tree
        return "0"


def _referenced_frame(series: Any) -> Any:
    import pydicom

    images = []
    for uid in series.sop_instance_uids:
        it = pydicom.Dataset()
        it.ReferencedSOPClassUID, it.ReferencedSOPInstanceUID = series.sop_class_uid, uid
        images.append(it)
    ser = pydicom.Dataset()
    ser.SeriesInstanceUID = series.series_instance_uid
    ser.ContourImageSequence = images
    study = pydicom.Dataset()
    study.ReferencedSOPClassUID, study.ReferencedSOPInstanceUID = _STUDY_REF_CLASS, series.study_instance_uid
    study.RTReferencedSeriesSequence = [ser]
    frame = pydicom.Dataset()
    frame.FrameOfReferenceUID = series.frame_of_reference_uid
    frame.RTReferencedStudySequence = [study]
    return frame


def _roi_contours(mask_kji: np.ndarray, labels: Volume, series: Any) -> list[Any]:
    import pydicom

    items = []
    for k in range(mask_kji.shape[0]):
        for c in mask_contours(mask_kji[k]):
            ijk = np.column_stack([c, np.full(len(c), float(k))])
            lps = geometry.ijk_to_lps_points(labels, ijk)
            ref = pydicom.Dataset()
            ref.ReferencedSOPClassUID = series.sop_class_uid
            ref.ReferencedSOPInstanceUID = series.sop_instance_uids[k]
            it = pydicom.Dataset()
            it.ContourImageSequence = [ref]
            it.ContourGeometricType = "CLOSED_PLANAR"
            it.NumberOfContourPoints = len(c)
            it.ContourNumber = len(items) + 1
            it.ContourData = _ds_text(lps)
            items.append(it)
    return items


def roi_numbers(segs: list[dict], given: list[dict] | None) -> dict[int, int]:
    """``{label value: ROI Number}``: the ROI Number a segment came with (``"roi_number"``
    of :func:`read_rtstruct` / :func:`oneshotsam.dicom_seg.read_dicom_seg`) where it has one
    and it is unique, else the label value, else the next free number."""
    kept = {int(s["value"]): int(s["roi_number"]) for s in given or []
            if s.get("roi_number") is not None and "value" in s}
    out: dict[int, int] = {}
    for s in segs:  # numbers that came with the segments first
        v = int(s["value"])
        if v in kept and kept[v] not in out.values():
            out[v] = kept[v]
    for s in segs:
        v = int(s["value"])
        if v not in out:
            out[v] = v if v not in out.values() and v not in kept.values() else \
                max([*out.values(), *kept.values(), 0]) + 1
    return out


def build_rtstruct(labels: Volume, series: Any, segments: list[dict] | None = None,
                   description: str = "OneShotSAM contours") -> Any:
    """The RTSTRUCT dataset of a label volume on ``series``' grid (see :func:`write_rtstruct`)."""
    import pydicom
    from oneshotsam.fileformats import segments_for

    check_on_series(labels, series)
    if not series.frame_of_reference_uid:
        raise OneShotError(f"the series {series.folder} has no Frame of Reference UID: an RTSTRUCT "
                           "cannot reference it (write nifti or seg-nrrd instead)")
    lab = np.asarray(labels.voxels)
    values = [int(v) for v in np.unique(lab) if v != 0]
    segs = segments_for(values, segments)
    ds = new_derived_dataset(series, RTSTRUCT_SOP_CLASS, "RTSTRUCT", description)
    date, time_ = _now()
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.StructureSetLabel = "OneShotSAM"
    ds.StructureSetName = description[:64]
    ds.StructureSetDate, ds.StructureSetTime = date, time_
    ds.ReferencedFrameOfReferenceSequence = [_referenced_frame(series)]
    roi_seq, contour_seq, obs_seq = [], [], []
    numbers = roi_numbers(segs, segments)
    for n, s in enumerate(segs, start=1):
        roi = pydicom.Dataset()
        roi.ROINumber = numbers[s["value"]]
        roi.ReferencedFrameOfReferenceUID = series.frame_of_reference_uid
        roi.ROIName = str(s["name"])[:64]
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        roi_seq.append(roi)
        rc = pydicom.Dataset()
        rc.ROIDisplayColor = [int(round(255 * min(max(float(c), 0.0), 1.0))) for c in s["color"][:3]]
        rc.ReferencedROINumber = numbers[s["value"]]
        contours = _roi_contours(lab == s["value"], labels, series)
        if contours:
            rc.ContourSequence = contours
        contour_seq.append(rc)
        obs = pydicom.Dataset()
        obs.ObservationNumber = n
        obs.ReferencedROINumber = numbers[s["value"]]
        obs.RTROIInterpretedType = "ORGAN"
        obs.ROIInterpreter = ""
        obs_seq.append(obs)
    ds.StructureSetROISequence = roi_seq
    ds.ROIContourSequence = contour_seq
    ds.RTROIObservationsSequence = obs_seq
    ds.ApprovalStatus = "UNAPPROVED"
    return ds


def write_rtstruct(labels: Volume, series: Any, out_path: str | Path, segments: list[dict] | None = None,
                   description: str = "OneShotSAM contours") -> Path:
    """Write ``labels`` (on the grid of the DICOM ``series``) as an RTSTRUCT, atomically.

    One ROI per label value (ROI Number = label value), named and coloured from
    ``segments`` (``{"value", "name", "color" 0..1}``, defaults ``Segment_<v>``); a label
    listed in ``segments`` but absent from the voxels becomes a ROI without contours.
    The file references the series' Frame of Reference, Study, Series and every slice,
    and copies its patient / study attributes (:data:`oneshotsam.dicom_series.IDENTITY_KEYWORDS`).
    """
    from oneshotsam.fileformats import atomic_write

    ds = build_rtstruct(labels, series, segments, description)
    return atomic_write(out_path, lambda tmp: ds.save_as(tmp, enforce_file_format=True))
