"""Synthetic DICOM CT series and RT objects for the DICOM RT tests (pydicom, rt-utils, highdicom).

A series is written slice by slice as CT Image Storage files with the geometry of a
:class:`oneshotsam.types.Volume` affine (LPS; oblique allowed), in shuffled file order.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from oneshotsam.types import Volume

CT_CLASS = "1.2.840.10008.5.1.4.1.1.2"


def affine(spacing_ijk, origin, rot=np.eye(3)) -> np.ndarray:
    """``(4, 4)`` ijk->LPS affine with direction columns ``rot`` and the given spacing."""
    a = np.eye(4)
    a[:3, :3] = np.asarray(rot, float) @ np.diag(spacing_ijk)
    a[:3, 3] = origin
    return a


def rotation(axis: str, degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def write_ct_series(folder: Path, voxels_kji: np.ndarray, ijk_to_lps: np.ndarray, *, patient="SYNTH^PATIENT",
                    patient_id="SYN001", study_uid=None, frame_uid=None, series_uid=None,
                    description="synthetic CT", seed=0, prefix="ct") -> dict:
    """Write one CT slice file per ``k``; returns the UIDs used."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    a = np.asarray(ijk_to_lps, float)
    sp = np.linalg.norm(a[:3, :3], axis=0)
    d = a[:3, :3] / sp
    iop = [float(v) for v in np.concatenate([d[:, 0], d[:, 1]])]
    order = np.random.default_rng(seed).permutation(voxels_kji.shape[0])
    sops = []
    for k in range(voxels_kji.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_CLASS
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CT_CLASS, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = patient, patient_id, "19600101", "O"
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = study_uid, "20240102", "101500", "S1"
        ds.AccessionNumber, ds.ReferringPhysicianName = "ACC1", ""
        ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "CT", series_uid, 2
        ds.SeriesDescription = description
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_uid, ""
        ds.Manufacturer = "synthetic"
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [float(v) for v in a[:3, 3] + k * a[:3, 2]]
        ds.ImageOrientationPatient = iop
        ds.PixelSpacing = [float(sp[1]), float(sp[0])]  # row spacing (j), column spacing (i)
        ds.SliceThickness = float(sp[2])
        ds.KVP = "120"
        ds.AcquisitionNumber = 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = int(voxels_kji.shape[1]), int(voxels_kji.shape[2])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.PixelData = np.ascontiguousarray(voxels_kji[k].astype(np.int16)).tobytes()
        ds.save_as(folder / f"{prefix}_{order[k]:03d}.dcm", enforce_file_format=True)
        sops.append(str(ds.SOPInstanceUID))
    return {"study": study_uid, "frame": frame_uid, "series": series_uid, "sops": sops}


def copy_series(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def ellipse_mask(shape_kji, centre_ijk, radii_ijk) -> np.ndarray:
    """``(K, J, I)`` bool ellipsoid in voxel coordinates (pixel-centre rule)."""
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape_kji], indexing="ij")
    c, r = centre_ijk, radii_ijk
    return ((i - c[0]) / r[0]) ** 2 + ((j - c[1]) / r[1]) ** 2 + ((k - c[2]) / r[2]) ** 2 <= 1.0


def phantom(shape_kji, aff) -> tuple[Volume, dict[str, np.ndarray]]:
    """A CT-like volume (HU) with three structures: 'Body Ring' (a ring: a hole on every
    slice), two 'Nodules' (two contours per slice) and 'Liver' (an ellipsoid)."""
    K, J, I = shape_kji
    body = ellipse_mask(shape_kji, (I * 0.5, J * 0.5, K * 0.5), (I * 0.42, J * 0.42, K * 2.0))
    hole = ellipse_mask(shape_kji, (I * 0.5, J * 0.5, K * 0.5), (I * 0.30, J * 0.30, K * 2.0))
    ring = body & ~hole
    liver = ellipse_mask(shape_kji, (I * 0.42, J * 0.45, K * 0.5), (I * 0.14, J * 0.12, K * 0.38))
    nod = (ellipse_mask(shape_kji, (I * 0.62, J * 0.42, K * 0.5), (I * 0.05, J * 0.06, K * 0.3))
           | ellipse_mask(shape_kji, (I * 0.62, J * 0.62, K * 0.5), (I * 0.05, J * 0.06, K * 0.3)))
    hu = np.full(shape_kji, -1000, np.int16)
    hu[body] = 40
    hu[ring] = 400
    hu[liver] = 90
    hu[nod] = -200
    masks = {"Body Ring": ring, "Liver": liver, "Nodules": nod}
    return Volume(hu, aff, "phantom"), masks


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two masks (:func:`oneshotsam.evaluate.dice`; 1.0 when both are empty)."""
    from oneshotsam.evaluate import dice as engine_dice

    return engine_dice(np.asarray(a, bool).astype(np.uint8), np.asarray(b, bool).astype(np.uint8), 1)
