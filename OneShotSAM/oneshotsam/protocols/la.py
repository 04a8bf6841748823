"""``la``: one annotated slice -> the rest of the left-atrium volume.

For each LA case (``--cases N``: the first N in name order) the axial slice with
the largest left-atrium area (:func:`~oneshotsam.protocols.rules.largest_slice`,
first on ties) is the only annotated slice; one ``propagate`` call with the
default settings fills the volume; 3D Dice of the atrium against the full label.

No elastix peer: registering the annotated slice to every other slice of the
same volume is not what a user would do. Instead a cheap baseline: the annotated
slice's label copied unchanged onto every slice where the ground truth has the
atrium (an ORACLE extent: it is told where the atrium starts and ends, which the
method is not, so it is optimistic for copying). To tell the two sources of
error apart, the method's own prediction is also scored within the true extent
(slices where the ground truth has no atrium emptied, nothing added): the gap
between the two Dice figures is what a perfect absence rule would gain, and
``slices outside`` counts the slices labelled beyond the atrium's ends. Numpy at
import time.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from oneshotsam.protocols.data import la_cases
from oneshotsam.protocols.rules import largest_slice
from oneshotsam.protocols.runner import Runner, environment, score, slices_outside, within_extent
from oneshotsam.protocols.stats import fmt, fmt_pm, mean_or_nan, mean_se, table

NAMES = {1: "left atrium"}


def _one_slice(labels: np.ndarray, axis: int, k: int) -> np.ndarray:
    out = np.zeros_like(labels)
    idx = [slice(None)] * labels.ndim
    idx[axis] = k
    out[tuple(idx)] = labels[tuple(idx)]
    return out


def copy_baseline(labels: np.ndarray, axis: int, k: int) -> np.ndarray:
    """Slice ``k``'s labels copied onto every slice (along ``axis``) where ``labels`` is not empty."""
    lab = np.asarray(labels)
    src = np.take(lab, k, axis=axis)
    out = np.zeros_like(lab)
    other = tuple(a for a in range(lab.ndim) if a != axis)
    for j in np.nonzero((lab > 0).any(axis=other))[0]:
        idx = [slice(None)] * lab.ndim
        idx[axis] = int(j)
        out[tuple(idx)] = src
    return out


def run_la(r: Runner, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """The ``la`` protocol (module docstring); prints the table, returns the results."""
    from oneshotsam.geometry import slice_geometry
    from oneshotsam.medio import read_label_volume, read_volume
    from oneshotsam.types import Volume

    o = r.opts
    cases = la_cases(o.data)[: o.cases if o.cases else None]
    echo(f"la: {len(cases)} volumes; the axial slice with the largest atrium area annotated, "
         "propagate (default settings) fills the volume")
    r.prepare(volumes=True)
    rows = []
    for ci, (case, img_path, lab_path) in enumerate(cases):
        ref = read_volume(img_path)
        lab = read_label_volume(lab_path, reference=ref)
        full = np.asarray(lab.voxels)
        axis = slice_geometry(lab, "axial").array_axis
        k = largest_slice(full, axis)
        one = Volume(_one_slice(full, axis, k), lab.ijk_to_lps, lab.name, dict(lab.meta))
        r.say(f"{case}: propagate from slice {k}", ci, len(cases))
        res, clock, record = r.propagate(ref, one)
        pred = np.asarray(res.label_volumes[0].voxels)
        values = sorted(int(v) for v in np.unique(full) if v)
        kept = within_extent(pred, full, axis)
        rows.append({"case": case, "annotated_slice": k, "slices": int(full.shape[axis]),
                     **score(pred, full, values, NAMES),
                     "within_extent": score(kept, full, values, NAMES),
                     "slices_outside": slices_outside(pred, full, axis, kept),
                     "copy": score(copy_baseline(full, axis, k), full, values, NAMES),
                     "cpu_seconds": round(clock.cpu, 2), "wall_seconds": round(clock.wall, 2),
                     "propagate": record})
    m, se = mean_se(x["mean"] for x in rows)
    worst = min(rows, key=lambda x: x["mean"])
    summary = {"cases": len(rows), "mean_dice": m, "se_dice": se, "worst_case": worst["case"],
               "worst_dice": worst["mean"],
               "within_extent_dice": mean_se(x["within_extent"]["mean"] for x in rows),
               "copy_dice": mean_se(x["copy"]["mean"] for x in rows),
               "cpu_per_case": mean_or_nan(x["cpu_seconds"] for x in rows)}
    result = {"protocol": "la", "rows": rows, "summary": summary, "settings": r.settings(),
              "peer": None, "environment": environment()}
    echo(format_la(result))
    return result


def format_la(result: dict[str, Any]) -> str:
    s = result["summary"]
    body = [[x["case"], x["annotated_slice"], x["slices"], x["mean"], x["within_extent"]["mean"],
             x["slices_outside"], x["copy"]["mean"], fmt(x["cpu_seconds"], 1)]
            for x in result["rows"]]
    body.append(["mean +- SE", "", "", fmt_pm(s["mean_dice"], s["se_dice"]),
                 fmt_pm(*s["within_extent_dice"]), "", fmt_pm(*s["copy_dice"]),
                 fmt(s["cpu_per_case"], 1)])
    return "\n".join([
        table(["case", "annotated slice", "slices", "3D Dice", "within the true extent",
               "slices outside", "copy (oracle extent)", "CPU s/case"], body),
        f"worst case: {s['worst_case']} (3D Dice {fmt(s['worst_dice'])})",
        "note: no elastix peer (registering one slice to its neighbours is not what a user "
        "would do); 'copy' = the annotated slice's label copied onto every slice where the "
        "ground truth has the atrium (told the extent, so optimistic for copying); 'within the "
        "true extent' = the method's prediction with the slices beyond the atrium's ends "
        "emptied (what a perfect absence rule would score); 'slices outside' = slices "
        "labelled where the atrium is absent"])


__all__ = ["NAMES", "run_la", "copy_baseline", "format_la"]
