"""A small synthetic cohort on disk for the cohort tests (helper, not a test).

Each patient: a reference volume with a ball labelled on one slice, and follow-up
volumes where the ball moved a little (different grids, NIfTI and NRRD), each with its
ground truth; a manifest CSV with patient,visit,image,labels,ground_truth columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oneshotsam.types import Volume
from volume_synth import affine, ellipsoid, sample

from test_volume_engines_cli import TINY_WARP  # tiny warp-volume training

#: options shared by every cohort / propagate call of the tests
TINY_ARGS = ["--window", "0,1", "--no-align", "--device", "cpu", "--quiet"] + sum(
    (["--set", f"{k}={v}"] for k, v in TINY_WARP), [])


def run_cohort(manifest: Path, out: Path, *extra: str) -> int:
    """``oneshotsam cohort MANIFEST --output-dir OUT`` with the tiny settings and ``extra``."""
    from oneshotsam.cli import main

    return main(["cohort", str(manifest), "--output-dir", str(out), *TINY_ARGS, *extra])


def _write(path: Path, vol: Volume) -> str:
    import SimpleITK as sitk

    from oneshotsam.geometry import volume_to_sitk

    sitk.WriteImage(volume_to_sitk(vol), str(path))
    return str(path)


def _ball(center, shape, aff, name):
    img = sample(lambda p: 0.2 + 0.7 * ellipsoid(center, (8, 6, 3))(p), shape, aff, name)
    truth = (sample(ellipsoid(center, (8, 6, 3)), shape, aff).voxels > 0.5).astype(np.uint8)
    return img, Volume(truth, aff, name)


def make_cohort(root: Path, n_patients: int = 2, n_targets: int = 2) -> Path:
    """Write the cohort under ``root``; returns the manifest path (relative paths inside)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["patient,visit,image,labels,ground_truth"]
    aff = affine((1.0, 1.0, 1.5), (0, 0, 0))
    for p in range(n_patients):
        pid = f"P{p + 1:02d}"
        d = root / pid
        d.mkdir(exist_ok=True)
        img, truth = _ball((16 + p, 15, 5), (8, 32, 32), aff, "ref")
        lab = np.zeros_like(truth.voxels)
        lab[3] = truth.voxels[3]
        _write(d / "ref.nii.gz", img)
        _write(d / "ref_label.nii.gz", Volume(lab, aff))
        lines.append(f"{pid},baseline,{pid}/ref.nii.gz,{pid}/ref_label.nii.gz,")
        for t in range(n_targets):
            suf = ".nrrd" if t % 2 else ".nii.gz"
            img, truth = _ball((16 + p + 0.7 * (t + 1), 15.5, 5), (8, 32, 32), aff, f"t{t}")
            _write(d / f"fu{t + 1}{suf}", img)
            _write(d / f"fu{t + 1}_gt{suf}", truth)
            lines.append(f"{pid},week{t + 1},{pid}/fu{t + 1}{suf},,{pid}/fu{t + 1}_gt{suf}")
    m = root / "manifest.csv"
    m.write_text("\n".join(lines) + "\n")
    return m
