"""DICOM series folders as a planning system exports them: slices in any file order with the
RTSTRUCT beside them; one file names its series in a mixed folder; uneven spacing refused."""

from __future__ import annotations

import numpy as np
import pytest

from dicom_synth import affine, phantom, rotation, write_ct_series
from oneshotsam import medio
from oneshotsam.dicom_series import scan_series
from oneshotsam.label_outputs import write_label_formats
from oneshotsam.errors import OneShotError
from oneshotsam.types import Volume

pydicom = pytest.importorskip("pydicom")
AFF = affine((0.9, 1.2, 2.0), (-20.0, 10.0, -30.0), rotation("x", 20))


def test_export_folder_with_rtstruct_beside_the_slices(tmp_path):
    vol, masks = phantom((6, 24, 30), AFF)
    uids = write_ct_series(tmp_path / "ct", vol.voxels, AFF, seed=5)
    ref = medio.read_volume(tmp_path / "ct")
    lab = Volume(masks["Liver"].astype(np.uint8), ref.ijk_to_lps, "l", {"segments": [
        {"value": 1, "name": "Liver", "color": [0.5, 0.2, 0.1]}]})
    write_label_formats(lab, ["rtstruct", "dicom-seg"], tmp_path / "ct", "RS", grid=ref)
    (tmp_path / "ct" / "notes.txt").write_text("not DICOM")
    again = medio.read_volume(tmp_path / "ct")  # the RTSTRUCT, SEG and text file are ignored
    assert np.array_equal(again.voxels, vol.voxels) and np.allclose(again.ijk_to_lps, AFF, atol=1e-4)
    series = again.meta["dicom_series"]
    assert sorted(series.sop_instance_uids) == sorted(uids["sops"]) and series.shape_rc == (24, 30)
    assert list(series.positions_mm) == sorted(series.positions_mm)
    back = medio.read_label_volume(tmp_path / "ct" / "RS.rtstruct.dcm", reference=again)
    assert np.array_equal(np.asarray(back.voxels), masks["Liver"])


def test_one_file_names_its_series_in_a_mixed_folder(tmp_path):
    vol, _ = phantom((5, 16, 20), AFF)
    a = write_ct_series(tmp_path / "mixed", vol.voxels, AFF, description="arterial")
    write_ct_series(tmp_path / "mixed", vol.voxels[::-1].copy(), AFF, description="venous", seed=9, prefix="v")
    with pytest.raises(OneShotError, match=r"holds 2 DICOM image series .*arterial.*venous|venous.*arterial"):
        scan_series(tmp_path / "mixed")
    one = next(f for f in (tmp_path / "mixed").iterdir()
               if pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID == a["sops"][2])
    v = medio.read_volume(one)
    assert np.array_equal(v.voxels, vol.voxels) and v.meta["dicom_series_uid"] == a["series"]


def test_uneven_spacing_is_refused(tmp_path):
    vol, _ = phantom((5, 16, 20), AFF)
    write_ct_series(tmp_path / "ct", vol.voxels, AFF)
    f = sorted((tmp_path / "ct").iterdir())[0]
    ds = pydicom.dcmread(f)
    ds.ImagePositionPatient = [float(x) + 0.7 * float(n) for x, n in
                               zip(ds.ImagePositionPatient, np.cross(AFF[:3, 0], AFF[:3, 1]) / 1.08)]
    ds.save_as(f)
    with pytest.raises(OneShotError, match="gap|uneven|missing"):
        scan_series(tmp_path / "ct")
