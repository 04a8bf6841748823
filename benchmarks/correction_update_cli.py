"""Time ``oneshotsam propagate`` and one ``propagate --update-from`` on one LA volume (docs/corrections.md).

The first run starts from the truth on the axial slice with the most atrium voxels; then the
slice of its output with the most wrong voxels is replaced by the truth (the clinician's
correction) and the whole Update command is timed: wall seconds and the child's CPU
seconds (user + sys), one thread (``OMP_NUM_THREADS=1``). Nothing is written outside ``--out``.

    python benchmarks/correction_update_cli.py --data ../shared/data --out /tmp/update-cli [--case NAME]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """``(wall s, CPU s of the child)`` of one command (it must succeed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    import SimpleITK as sitk

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("ONESHOTSAM_DATA", "../shared/data"))
    p.add_argument("--out", required=True)
    p.add_argument("--case", default="1D7CUD1955YZPGK8XHJX")
    a = p.parse_args()
    image = Path(a.data) / "la" / f"{a.case}_image.nii.gz"
    label = Path(a.data) / "la" / f"{a.case}_label.nii.gz"
    if not image.is_file() or not label.is_file():
        print(f"no LA case {a.case} under {a.data}: pass --data PATH; nothing run")
        return 0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=False)  # a fresh folder: never over an earlier run
    truth_img = sitk.ReadImage(str(label))
    truth = sitk.GetArrayFromImage(truth_img)
    k0 = int(np.argmax((truth > 0).sum(axis=(1, 2))))
    one = np.zeros_like(truth)
    one[k0] = truth[k0]
    img = sitk.GetImageFromArray(one)
    img.CopyInformation(truth_img)
    sitk.WriteImage(img, str(out / "one_slice.nii.gz"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "oneshotsam.cli", "propagate", "--reference-volume", str(image),
            "--quiet"]
    w1, c1 = timed(base + ["--reference-labels", str(out / "one_slice.nii.gz"),
                           "--output-dir", str(out / "first")], env)
    prev_img = sitk.ReadImage(str(next((out / "first").glob("*_oneshotsam.nii.gz"))))
    prev = sitk.GetArrayFromImage(prev_img)
    k = int(np.argmax((prev != truth).sum(axis=(1, 2))))
    prev[k] = truth[k]
    img = sitk.GetImageFromArray(prev)
    img.CopyInformation(prev_img)
    sitk.WriteImage(img, str(out / "corrected.nii.gz"))
    erased = not truth[k].any()
    slices = ["--reference-slices", str(k0)] + ([] if erased else [str(k)])
    w2, c2 = timed(base + ["--reference-labels", str(out / "corrected.nii.gz"), *slices,
                           *(["--fixed-slices", str(k)] if erased else []),
                           "--update-from", str(out / "first"), "--output-dir", str(out / "update")], env)
    print(f"{a.case}: annotated slice {k0}; first run {w1:.1f} s wall, {c1:.1f} s CPU")
    print(f"corrected slice {k} ({'erased' if erased else 'drawn'}); propagate --update-from "
          f"{w2:.1f} s wall, {c2:.1f} s CPU (the whole command); load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
