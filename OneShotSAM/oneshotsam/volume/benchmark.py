"""Volume propagation benchmarks on ../shared/data (a command, not a test).

* ``la``: each LA volume, only the axial slice with the largest left-atrium area
  annotated; propagated through the volume.
* ``acdc-mid``: reference = ED volume annotated on the mid-ventricular slice only
  (middle of the ED LV extent), target = ES volume.
* ``acdc-all``: reference = ED volume annotated on every slice, target = ES.
  (ACDC has unit spacing and ED/ES share the grid; copying the ED labels unchanged
  is reported as ``copy_dice`` for comparison.)
* ``brain``: pyradiomics brain1/brain2, the axial slice of largest tumour area
  annotated; propagated.

Per case: 3D Dice per structure and their mean, wall time, and the process's
peak resident memory (``ru_maxrss``) so far. Numpy at import time.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from oneshotsam.errors import OneShotError
from oneshotsam.volume.types import PropagationConfig


#: benchmark names (``--dataset``)
DATASETS = ("la", "acdc-mid", "acdc-all", "brain")


def dice_per_label(pred: np.ndarray, gt: np.ndarray, values: list[int]) -> dict[int, float]:
    """3D Dice per label value (1.0 when both are empty; :func:`oneshotsam.evaluate.dice_iou`)."""
    from oneshotsam.evaluate import dice_iou

    return {int(v): d["dice"] for v, d in dice_iou(pred, gt, values).items()}


def peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(r / 1024.0 if sys.platform != "darwin" else r / 2**20, 1)


def _keep_slices(lab, axis_name: str, keep: list[int]):
    from oneshotsam.geometry import get_slice, set_slice, slice_geometry
    from oneshotsam.types import Volume

    sg = slice_geometry(lab, axis_name)
    out = np.zeros_like(np.asarray(lab.voxels))
    for k in keep:
        set_slice(out, sg.array_axis, k, get_slice(lab.voxels, sg.array_axis, k))
    return Volume(out, lab.ijk_to_lps, lab.name, dict(lab.meta))


def _largest_slice(lab, axis_name: str = "axial") -> int:
    from oneshotsam.geometry import slice_geometry

    sg = slice_geometry(lab, axis_name)
    axes = tuple(a for a in range(3) if a != sg.array_axis)
    return int(np.argmax((np.asarray(lab.voxels) > 0).sum(axis=axes)))


def _cases(name: str, root: Path) -> list[dict[str, Any]]:
    if name == "la":
        d = root / "la"
        return [{"case": p.name[: -len("_image.nii.gz")], "ref": p,
                 "lab": d / p.name.replace("_image", "_label")}
                for p in sorted(d.glob("*_image.nii.gz"))]
    if name in ("acdc-mid", "acdc-all"):
        d = root / "acdc"
        return [{"case": p.name[: -len("_ED.nii.gz")], "ref": p,
                 "lab": d / p.name.replace("_ED", "_ED_label"),
                 "tgt": d / p.name.replace("_ED", "_ES"), "tgt_lab": d / p.name.replace("_ED", "_ES_label")}
                for p in sorted(d.glob("patient*_ED.nii.gz"))]
    if name == "brain":
        d = root / "pyradiomics"
        return [{"case": c, "ref": d / f"{c}_image.nrrd", "lab": d / f"{c}_label.nrrd"}
                for c in ("brain1", "brain2") if (d / f"{c}_image.nrrd").is_file()]
    raise OneShotError(f"unknown volume benchmark {name!r}: {', '.join(DATASETS)}")


def run_case(name: str, case: dict[str, Any], cfg: PropagationConfig, output_dir: str | None) -> dict:
    """Propagate one case with ``cfg`` and score it (3D Dice per label against the ground truth)."""
    from oneshotsam.medio import read_label_volume, read_volume
    from oneshotsam.volume.pipeline import propagate

    ref, lab = read_volume(case["ref"]), read_label_volume(case["lab"])
    values = sorted(int(v) for v in np.unique(lab.voxels) if v)
    targets, gt, copy = [], np.asarray(lab.voxels), None
    if name in ("la", "brain"):
        k = _largest_slice(lab)
        ref_lab, info = _keep_slices(lab, "axial", [k]), {"annotated_slice": k}
    else:
        tgt, tgt_lab = read_volume(case["tgt"]), read_label_volume(case["tgt_lab"])
        targets, gt = [tgt], np.asarray(tgt_lab.voxels)
        if name == "acdc-mid":
            from oneshotsam.geometry import slice_geometry

            sg = slice_geometry(lab, "axial")
            axes = tuple(a for a in range(3) if a != sg.array_axis)
            lv = np.nonzero((np.asarray(lab.voxels) == 3).any(axis=axes))[0]
            k = int((lv.min() + lv.max()) // 2) if lv.size else _largest_slice(lab)
            ref_lab, info = _keep_slices(lab, "axial", [k]), {"annotated_slice": k}
        else:
            ref_lab, info = lab, {"annotated_slices": "all"}
            copy = dice_per_label(np.asarray(lab.voxels), gt, values)
    t0 = time.perf_counter()
    res = propagate(ref, ref_lab, targets, cfg)
    seconds = time.perf_counter() - t0
    pred = np.asarray(res.label_volumes[0].voxels)
    d = dice_per_label(pred, gt, values)
    row = {"dataset": name, "case": case["case"], **info,
           "dice": {str(v): round(x, 4) for v, x in d.items()},
           "mean_dice": round(float(np.mean(list(d.values()))), 4),
           "seconds": round(seconds, 1), "peak_rss_mb": peak_rss_mb(),
           "n_slices": int(pred.shape[0]),
           "flagged": len(res.report["targets"][0].get("slices_flagged", [])),
           "stopped": len(res.report["targets"][0].get("slices_stopped", []))}
    if copy is not None:
        row["copy_dice"] = round(float(np.mean(list(copy.values()))), 4)
    if targets:
        row["alignment"] = res.report["targets"][0].get("alignment", {}).get("kind")
    if output_dir:
        from oneshotsam.volume.outputs import write_outputs

        out = Path(output_dir) / name / case["case"]
        write_outputs(res, out, [case["tgt"] if targets else case["ref"]],
                      segments=lab.meta.get("segments"))
    return row


def run_datasets(names: list[str], data: str, config: PropagationConfig = PropagationConfig(),
                 limit: int | None = None, start: int = 0,
                 output_dir: str | None = None) -> dict[str, Any]:
    """Run the named benchmarks with ``config`` (its method, backend, preset, device,
    method overrides and propagation mode; the reference slices come from the
    protocol); prints one line per case and a summary per dataset."""
    root = Path(data)
    if not root.is_dir():
        raise OneShotError(f"data folder {root} not found: pass --data PATH")
    shown = ("method", "backend", "checkpoint", "preset", "device", "method_overrides", "propagation")
    results: dict[str, Any] = {"config": {k: v for k, v in config.to_dict().items() if k in shown},
                               "datasets": {}}
    for name in names:
        cases = _cases(name, root)[start:]
        cases = cases[: limit] if limit else cases
        if not cases:
            raise OneShotError(f"no {name} cases under {root}")
        rows = []
        for case in cases:
            row = run_case(name, case, config, output_dir)
            rows.append(row)
            print(f"{name:9s} {row['case']:24s} dice {row['mean_dice']:.4f} "
                  f"{row['dice']} {row['seconds']:7.1f} s  peak {row['peak_rss_mb']} MB"
                  + (f"  (copy {row['copy_dice']:.4f})" if "copy_dice" in row else ""), flush=True)
        summary = {"cases": len(rows),
                   "mean_dice": round(float(np.mean([r["mean_dice"] for r in rows])), 4),
                   "mean_seconds": round(float(np.mean([r["seconds"] for r in rows])), 1),
                   "max_peak_rss_mb": max(r["peak_rss_mb"] for r in rows)}
        if "copy_dice" in rows[0]:
            summary["mean_copy_dice"] = round(float(np.mean([r["copy_dice"] for r in rows])), 4)
        print(f"{name:9s} MEAN dice {summary['mean_dice']:.4f} over {len(rows)} cases, "
              f"{summary['mean_seconds']} s/case, peak {summary['max_peak_rss_mb']} MB", flush=True)
        results["datasets"][name] = {"summary": summary, "cases": rows}
    return results
