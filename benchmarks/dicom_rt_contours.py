"""How much of a structure a planning system reads back from our RTSTRUCT contours
(not a test): real ACDC labels -> contours -> filled by a planning system's rule.

For each ACDC patient's end-diastole label and each structure, per slice:

* ``centre``: contours through the centres of the boundary pixels (OpenCV
  ``findContours``, ``RETR_TREE`` / ``CHAIN_APPROX_SIMPLE``: what rt-utils writes, and
  what OneShotSAM wrote before its contours ran along the pixel edges);
* ``edge``: :func:`oneshotsam.contours.mask_contours` (pixel edges, written today).

Measured: polygon area / voxel area (shoelace, holes subtracted), and the Dice of the
label against the contours filled by the usual planning-system rule (pixel centres
strictly inside an odd number of the polygons; OpenCV ``pointPolygonTest``). With
``--rtstruct``, the ``edge`` numbers are taken from real RTSTRUCT files written by
``write_label_formats`` on a DICOM series made from the case (unit spacing, as ACDC
ships), read back by the same rule.

    python benchmarks/dicom_rt_contours.py --data ../shared/data --limit 50 --rtstruct
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STRUCTURES = {1: "RV", 2: "Myocardium", 3: "LV"}


def planning_fill(contours_xy, shape_rc) -> np.ndarray:
    """Pixel centres strictly inside an odd number of the polygons (OpenCV)."""
    import cv2

    out = np.zeros(shape_rc, bool)
    for c in contours_xy:
        c = np.asarray(c, np.float64).reshape(-1, 2)
        x0, y0 = np.maximum(np.floor(c.min(axis=0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(c.max(axis=0)).astype(int), [shape_rc[1] - 1, shape_rc[0] - 1])
        poly = c.astype(np.float32).reshape(-1, 1, 2)
        for y in range(y0, y1 + 1):
            for x in range(x0, x1 + 1):
                if cv2.pointPolygonTest(poly, (float(x), float(y)), False) > 0:
                    out[y, x] = not out[y, x]
    return out


def centre_contours(mask_rc: np.ndarray) -> list[np.ndarray]:
    import cv2

    found, _ = cv2.findContours(mask_rc.astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2).astype(np.float64) for c in found]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.count_nonzero(a & b)) / s


def measure_case(label_kji: np.ndarray, rtstruct_masks: dict[int, np.ndarray] | None = None) -> dict:
    from oneshotsam.contours import mask_contours, polygon_area

    out = {}
    for value, name in STRUCTURES.items():
        m = label_kji == value
        if not m.any():
            continue
        row = {"voxels": int(m.sum())}
        for kind, tracer in (("centre", centre_contours), ("edge", mask_contours)):
            area, filled = 0.0, np.zeros_like(m)
            for k in np.flatnonzero(m.any(axis=(1, 2))):
                cs = tracer(m[k])
                area += abs(sum(polygon_area(c) for c in cs))
                filled[k] = planning_fill(cs, m.shape[1:])
            row[kind] = {"area_ratio": area / row["voxels"], "dice": _dice(filled, m)}
        if rtstruct_masks is not None:
            row["edge_rtstruct_dice"] = _dice(rtstruct_masks[value], m)
        out[name] = row
    return out


def rtstruct_read_back(label_kji: np.ndarray, image_kji: np.ndarray, work: Path) -> dict[int, np.ndarray]:
    """Write the label as an RTSTRUCT on a DICOM series of the case, fill it back by the
    planning rule (positions through the series' geometry)."""
    import pydicom

    from dicom_synth import write_ct_series
    from oneshotsam import geometry, medio
    from oneshotsam.label_outputs import write_label_formats
    from oneshotsam.types import Volume

    write_ct_series(work / "ct", image_kji.astype(np.int16), np.eye(4))
    ref = medio.read_volume(work / "ct")
    segs = [{"value": v, "name": n, "color": [0.5, 0.5, 0.5]} for v, n in STRUCTURES.items()]
    rs = write_label_formats(Volume(label_kji.astype(np.uint8), ref.ijk_to_lps, "l"), ["rtstruct"],
                             work / "out", "rs", segments=segs, grid=ref)["rtstruct"]
    ds = pydicom.dcmread(rs)
    out = {v: np.zeros(label_kji.shape, bool) for v in STRUCTURES}
    for rc in ds.ROIContourSequence:
        per_k: dict[int, list] = {}
        for c in rc.get("ContourSequence", []):
            ijk = geometry.lps_to_ijk_points(ref, np.asarray(c.ContourData, float).reshape(-1, 3))
            per_k.setdefault(int(round(ijk[0, 2])), []).append(ijk[:, :2])
        for k, cs in per_k.items():
            out[int(rc.ReferencedROINumber)][k] = planning_fill(cs, label_kji.shape[1:])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data", help="folder holding acdc/")
    ap.add_argument("--limit", type=int, default=5, help="first N ACDC patients")
    ap.add_argument("--rtstruct", action="store_true", help="also through real RTSTRUCT files")
    ap.add_argument("--json", default=None, help="write per-case results here")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing" / "Python"))
    from oneshotsam import medio

    acdc = Path(args.data) / "acdc"
    labels = sorted(acdc.glob("patient*_ED_label.nii.gz"))[: args.limit]
    if not labels:
        print(f"no ACDC labels in {acdc}: give --data (the shared data folder)", file=sys.stderr)
        return 2
    t0, c0 = time.perf_counter(), time.process_time()
    cases = {}
    for lp in labels:
        lab = np.asarray(medio.read_label_volume(lp).voxels)
        masks = None
        if args.rtstruct:
            img = np.asarray(medio.read_volume(str(lp).replace("_label", "")).voxels)
            with tempfile.TemporaryDirectory() as tmp:
                masks = rtstruct_read_back(lab, img, Path(tmp))
        cases[lp.name] = measure_case(lab, masks)
    print(f"{len(cases)} ACDC ED labels; {time.process_time() - c0:.1f} CPU-s, "
          f"{time.perf_counter() - t0:.1f} s")
    print("structure   | centre area/voxels | centre Dice | edge area/voxels | edge Dice"
          + (" | edge via RTSTRUCT Dice" if args.rtstruct else ""))
    for name in STRUCTURES.values():
        rows = [c[name] for c in cases.values() if name in c]
        mean = lambda f: float(np.mean([f(r) for r in rows]))  # noqa: E731
        lo = lambda f: float(np.min([f(r) for r in rows]))  # noqa: E731
        line = (f"{name:11s} | {mean(lambda r: r['centre']['area_ratio']):.3f} "
                f"(min {lo(lambda r: r['centre']['area_ratio']):.3f}) | "
                f"{mean(lambda r: r['centre']['dice']):.3f} (min {lo(lambda r: r['centre']['dice']):.3f}) | "
                f"{mean(lambda r: r['edge']['area_ratio']):.3f} | {mean(lambda r: r['edge']['dice']):.3f}")
        if args.rtstruct:
            line += f" | {lo(lambda r: r['edge_rtstruct_dice']):.3f} (min)"
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(cases, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
