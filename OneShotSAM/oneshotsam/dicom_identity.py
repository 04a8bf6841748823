"""Patient identity of the DICOM inputs of one run: one patient, or a refusal.

Contours propagated from one patient's planning series onto another patient's images,
written as an RTSTRUCT carrying the planning patient's identity, is the worst error a
radiotherapy tool can make. Every front end that reads DICOM (``segment``, ``propagate``,
``cohort``) therefore compares, before any work, the Patient ID (and, where both files
have them, Patient's Name and Birth Date) of the reference series, the reference
RTSTRUCT / SEG and every target, and refuses when they differ. The option
:data:`ALLOW_OPTION` lets research data through (e.g. an atlas from another subject);
the run's report records the check either way (:func:`check_same_patient`'s record).

NIfTI / NRRD / MHA files carry no patient identity: they are not checked (the record
lists them as ``"identity": None``). pydicom is imported lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from oneshotsam.errors import OneShotError

#: the command-line option that lets another patient's DICOM through
ALLOW_OPTION = "--allow-other-patient"
#: compared attributes; PatientID always, the others where both sides have a value
IDENTITY_TAGS = ("PatientID", "PatientName", "PatientBirthDate")


def _normalised(tag: str, value: str) -> str:
    v = str(value or "").strip()
    if tag == "PatientName":  # DOE^JANE == DOE^JANE^^^ == doe^jane
        v = "^".join(part.strip() for part in v.split("^")).rstrip("^").upper()
    return v


def _identity_of_dataset(ds: Any) -> dict[str, str]:
    return {t: str(ds.get(t, "") or "").strip() for t in IDENTITY_TAGS}


def _first_image_file(folder: Path) -> Path | None:
    from oneshotsam.dicom_series import _read_header, is_image_header

    for f in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        ds = _read_header(f)
        if ds is not None and is_image_header(ds):
            return f
    return None


def identity_of_path(path: str | Path) -> dict[str, str] | None:
    """Patient identity of a DICOM input: a series folder (its first image slice), one
    DICOM file (slice, RTSTRUCT, SEG); None for a non-DICOM file or a folder without a
    DICOM image. pydicom is imported only for a DICOM candidate (about 1 s of start-up
    that a NIfTI-only command, e.g. ``propagate --update-from``, does not pay)."""
    p = Path(path)
    if p.is_dir():
        first = _first_image_file(p)
        if first is None:
            return None
        p = first
    elif not p.is_file():
        return None
    from oneshotsam.fileformats import split_suffix

    if split_suffix(p)[1] in (".nii", ".nii.gz", ".nrrd", ".seg.nrrd", ".nhdr", ".mha", ".mhd", ".png",
                              ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
        return None
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(p), stop_before_pixels=True, specific_tags=list(IDENTITY_TAGS) + ["SOPClassUID"])
    except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError, EOFError):
        return None
    if "SOPClassUID" not in ds and not any(t in ds for t in IDENTITY_TAGS):
        return None
    return _identity_of_dataset(ds)


def differences(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """The identity attributes on which ``a`` and ``b`` differ (PatientID always compared,
    PatientName / PatientBirthDate only when both have a value)."""
    out = []
    for t in IDENTITY_TAGS:
        va, vb = _normalised(t, a.get(t, "")), _normalised(t, b.get(t, ""))
        if t != "PatientID" and (not va or not vb):
            continue
        if va != vb:
            out.append(t)
    return out


def check_same_patient(inputs: Sequence[tuple[str, str | Path]], allow_other_patient: bool = False,
                       ) -> dict[str, Any]:
    """Refuse DICOM inputs of more than one patient, before any work.

    Args:
        inputs: ``(what, path)`` pairs, the first DICOM one being the reference (e.g.
            ``("reference series", "plan_ct/")``, ``("reference labels", "RS.dcm")``,
            ``("target", "fu_ct/")``); non-DICOM paths are listed but not compared.
        allow_other_patient: let a mismatch through (:data:`ALLOW_OPTION`).

    Returns: the record for the report: ``{"allow_other_patient", "patient_id",
    "inputs": [{"what", "path", "identity"}], "mismatches": [text]}``.

    Raises: :class:`OneShotError` naming both inputs and the differing attributes, unless
    ``allow_other_patient``.
    """
    listed = [{"what": what, "path": str(p), "identity": identity_of_path(p)} for what, p in inputs]
    dicom = [e for e in listed if e["identity"] is not None]
    mismatches = []
    if dicom:
        first = dicom[0]
        for e in dicom[1:]:
            diff = differences(first["identity"], e["identity"])
            if diff:
                shown = "; ".join(f"{t} {first['identity'][t]!r} vs {e['identity'][t]!r}" for t in diff)
                mismatches.append(f"the {e['what']} {e['path']} is not the patient of the {first['what']} "
                                  f"{first['path']} ({shown})")
    if mismatches and not allow_other_patient:
        raise OneShotError(
            f"{mismatches[0]}" + (f" (and {len(mismatches) - 1} more input(s) of another patient)"
                                  if len(mismatches) > 1 else "")
            + ": refusing to put one patient's contours on another patient's images. Give the "
            f"series of the same patient, or, for research data only, add {ALLOW_OPTION} "
            "(recorded in the report)")
    return {"allow_other_patient": bool(allow_other_patient),
            "patient_id": dicom[0]["identity"]["PatientID"] if dicom else None,
            "inputs": listed, "mismatches": mismatches}
