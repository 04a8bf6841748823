"""Generate the small SYNTHETIC example in ``Testing/Data/example`` (deterministic).

A 128 x 128 8-bit grey "phantom": a body ellipse holding two organs (label 1,
bright, left; label 2, darker, right) on a black background, with smooth
texture and noise. The reference and four targets differ by organ position,
size and rotation, so a one-shot method has something to do.

Layout written::

    example/reference.png          8-bit grey image
    example/reference_mask.png     labels 0 / 1 / 2
    example/targets/caseNN.png     images to segment
    example/ground_truth/caseNN.png  their true labels (for `oneshotsam evaluate`)

Run: ``python Testing/Data/make_example.py [OUT_DIR]`` (default: the folder beside this script).
No real patient data is used.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SIZE = 128
#: per case: (dx, dy) organ shift in px, organ scale, rotation in degrees, body scale
CASES = {
    "reference": ((0.0, 0.0), 1.00, 0.0, 1.00),
    "case01": ((4.0, -3.0), 1.08, 6.0, 1.02),
    "case02": ((-5.0, 2.0), 0.92, -8.0, 0.97),
    "case03": ((2.0, 5.0), 1.12, 3.0, 1.05),
    "case04": ((-3.0, -4.0), 0.88, -4.0, 0.95),
}


def _ellipse(xx, yy, cx, cy, ax, ay, angle_deg):
    t = np.deg2rad(angle_deg)
    x, y = xx - cx, yy - cy
    u = x * np.cos(t) + y * np.sin(t)
    v = -x * np.sin(t) + y * np.cos(t)
    return (u / ax) ** 2 + (v / ay) ** 2 <= 1.0


def phantom(shift, scale, angle, body_scale, seed):
    """``(image uint8 (H, W), labels uint8 (H, W))`` of one case."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    c = SIZE / 2.0
    body = _ellipse(xx, yy, c, c, 54 * body_scale, 44 * body_scale, 0.0)
    dx, dy = shift
    organ1 = _ellipse(xx, yy, c - 20 + dx, c + dy, 14 * scale, 24 * scale, 10.0 + angle) & body
    organ2 = _ellipse(xx, yy, c + 22 + dx, c + 4 + dy, 12 * scale, 18 * scale, -15.0 + angle) & body
    organ2 &= ~organ1
    texture = 12.0 * np.sin(xx / 9.0 + seed) * np.cos(yy / 11.0)
    img = np.where(body, 90.0 + texture, 0.0)
    img = np.where(organ1, 205.0, img)
    img = np.where(organ2, 150.0, img)
    img = img + rng.normal(0.0, 6.0, img.shape) * body
    labels = np.zeros((SIZE, SIZE), np.uint8)
    labels[organ1] = 1
    labels[organ2] = 2
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), labels


def write_png(path: Path, array: np.ndarray) -> None:
    import SimpleITK as sitk
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))


def main(out_dir: Path) -> None:
    for i, (name, (shift, scale, angle, body_scale)) in enumerate(CASES.items()):
        img, lab = phantom(shift, scale, angle, body_scale, seed=i)
        if name == "reference":
            write_png(out_dir / "reference.png", img)
            write_png(out_dir / "reference_mask.png", lab)
        else:
            write_png(out_dir / "targets" / f"{name}.png", img)
            write_png(out_dir / "ground_truth" / f"{name}.png", lab)
    print(f"wrote the synthetic example to {out_dir}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "example")
