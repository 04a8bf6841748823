"""One patient per browser-app session: every DICOM volume opened is checked before it loads.

The first DICOM input the session opens (on the command line or with the page's Load
button) sets the session's patient; every later DICOM input, from either, is compared
with it (Patient ID always; Patient's Name and Birth Date where both files have them:
:func:`oneshotsam.dicom_identity.differences`). Another patient's files are refused with
nothing loaded, unless the server was started with ``--allow-other-patient``: then they
load and the page shows a warning for the rest of the session. Save's ``report.json``
records the check (:meth:`PatientGuard.record`).

Files uploaded on the page are read from a temporary folder that is gone after the load:
identities are read once, at the check, and kept. An upload's DICOM files of one patient
are listed as one input (first file name and how many more). NIfTI / NRRD / MHA files
carry no identity and are listed with ``"identity": None``. No trame or VTK import here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from oneshotsam.dicom_identity import ALLOW_OPTION, IDENTITY_TAGS, differences, identity_of_path
from oneshotsam.errors import OneShotError


class PatientGuard:
    """The session's patient check.

    Args:
        allow_other_patient: the server's ``--allow-other-patient``: another patient's
            volumes load, with a warning.
    """

    def __init__(self, allow_other_patient: bool = False) -> None:
        self.allow_other_patient = bool(allow_other_patient)
        self.inputs: list[dict[str, Any]] = []
        self.mismatches: list[str] = []
        self._n_page_loads = 0

    def admit(self, paths: Sequence[str], from_page: bool) -> str:
        """Check ``paths`` (files or DICOM folders) against the session's patient, before
        they load; returns the session's warning text ("" when every input is one patient's).

        Raises: :class:`OneShotError` naming both inputs and the differing attributes
        (nothing is recorded: the caller loads nothing), unless ``allow_other_patient``."""
        if from_page:
            self._n_page_loads += 1
        new = _inputs_of(paths, f"file opened on the page (load {self._n_page_loads})" if from_page else None,
                         first_is_reference=not self.inputs)
        known = [e for e in self.inputs + new if e["identity"] is not None]
        found = []
        for e in (e for e in new if e["identity"] is not None and known and e is not known[0]):
            diff = differences(known[0]["identity"], e["identity"])
            if diff:
                shown = "; ".join(f"{t} {known[0]['identity'][t]!r} vs {e['identity'][t]!r}" for t in diff)
                found.append(f"the {e['what']} {e['path']} is not the patient of the {known[0]['what']} "
                             f"{known[0]['path']} ({shown})")
        if found and not self.allow_other_patient:
            raise OneShotError(
                found[0] + (f" (and {len(found) - 1} more of another patient)" if len(found) > 1 else "")
                + ": nothing was loaded (the volumes open are kept). One patient per session: "
                "open this patient's series in "
                f"another 'oneshotsam web', or, for research data only, start the app with {ALLOW_OPTION} "
                "(recorded in the saved report)")
        self.inputs += new
        self.mismatches += found
        return self.warning()

    def warning(self) -> str:
        """What the page shows while volumes of another patient are loaded (or were)."""
        return (f"WARNING ({ALLOW_OPTION}): volumes of more than one patient in this session: "
                + "; ".join(self.mismatches)) if self.mismatches else ""

    def record(self) -> dict[str, Any]:
        """The check for Save's report: :func:`oneshotsam.dicom_identity.check_same_patient`'s
        record over every input of the session, plus ``override_used`` (another patient let
        through by ``--allow-other-patient``)."""
        dicom = [e for e in self.inputs if e["identity"] is not None]
        return {"allow_other_patient": self.allow_other_patient,
                "patient_id": dicom[0]["identity"]["PatientID"] if dicom else None,
                "inputs": [dict(e) for e in self.inputs], "mismatches": list(self.mismatches),
                "override_used": bool(self.mismatches)}


def _inputs_of(paths: Sequence[str], page_what: str | None, first_is_reference: bool) -> list[dict[str, Any]]:
    """One entry per path given on the command line (``page_what`` None; the first is the
    reference volume when the session has none yet); for a page upload, one entry per
    patient of its DICOM files and one per other file."""
    if page_what is None:
        return [{"what": "reference volume" if (i == 0 and first_is_reference) else "follow-up volume",
                 "path": str(p), "identity": identity_of_path(p)} for i, p in enumerate(paths)]
    out: list[dict[str, Any]] = []
    groups: dict[tuple[str, ...], list[str]] = {}
    for p in paths:
        ident = identity_of_path(p)
        if ident is None:
            out.append({"what": page_what, "path": Path(p).name, "identity": None})
        else:
            groups.setdefault(tuple(ident[t] for t in IDENTITY_TAGS), []).append(Path(p).name)
    dicom = []
    for key, names in groups.items():
        names = sorted(names)
        shown = names[0] + (f" (+{len(names) - 1} more files)" if len(names) > 1 else "")
        dicom.append({"what": page_what, "path": shown, "identity": dict(zip(IDENTITY_TAGS, key))})
    return dicom + out
