"""The classical peer of one 2D pair as a whole command (a script, not a test).

What a user without OneShotSAM would run for one ED -> ES slice pair: read the two
volumes (SimpleITK), take the labelled slice and the target slice, register them with
elastix (``itk-elastix``: affine + B-spline, Mattes MI, the pinned settings of
``oneshotsam.peer_elastix``, one ITK thread unless ``--threads``), warp the labels
with transformix and write them as NIfTI. Timed from outside against the same pair
through ``oneshotsam segment``, e.g.::

    farm-bench -n 5 --timeout 600 -- oneshotsam segment --method medpersam-warp \\
        --reference-image ED.nii.gz --reference-mask ED_label.nii.gz --reference-slice 5 \\
        --targets ES.nii.gz --target-slices 5 --window percentile --output-dir /tmp/pair \\
        --vs "python benchmarks/elastix_pair.py --reference-image ED.nii.gz \\
        --reference-mask ED_label.nii.gz --target ES.nii.gz --slice 5 --output /tmp/pair.nii.gz"

Prints the Dice per label when ``--truth`` (the target's label volume) is given.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference-image", required=True)
    ap.add_argument("--reference-mask", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--slice", type=int, required=True, help="slice index (same in both volumes)")
    ap.add_argument("--output", required=True, help="NIfTI file for the warped label slice")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--truth", default=None)
    args = ap.parse_args()

    import SimpleITK as sitk
    from oneshotsam.evaluate import dice_iou
    from oneshotsam.peer_elastix import ElastixSettings, register_2d

    ref = sitk.ReadImage(args.reference_image)
    read = lambda p: sitk.GetArrayFromImage(sitk.ReadImage(p))
    k = args.slice
    moving = sitk.GetArrayFromImage(ref)[k]  # the reference volume is read once
    labels, fixed = read(args.reference_mask)[k], read(args.target)[k]
    spacing = tuple(float(s) for s in reversed(ref.GetSpacing()[:2]))  # (rows, columns)
    res = register_2d(fixed.astype(np.float32), moving.astype(np.float32), labels.astype(np.int16),
                      spacing, ElastixSettings(threads=args.threads))
    out = sitk.GetImageFromArray(res.labels.astype(np.uint8))
    out.SetSpacing(tuple(reversed(spacing)))
    sitk.WriteImage(out, args.output)
    if args.truth:
        values = sorted(int(x) for x in np.unique(labels) if x)
        for v, sc in dice_iou(res.labels, read(args.truth)[k], values).items():
            print(f"label {v}: Dice {float(sc['dice']):.4f}")


if __name__ == "__main__":
    main()
