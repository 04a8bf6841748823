"""``acdc-pairs`` and ``acdc-volumes``: ACDC end-diastole -> end-systole, per pathology group.

``acdc-pairs``: for every patient (``--patients`` to restrict) and every slice
index ``k`` where the ED label slice is not empty, one method call with the ED
slice + its labels as reference and the ES slice ``k`` as the only target
(what ``oneshotsam segment`` does per pair). Dice per class of the ED slice's
classes against the ES labels (a class absent from the ES slice scores 1 when
the prediction is empty too, else 0: predicting a structure that has left the
slice is an error). elastix 2D on the same pairs (``--peer-every k``: on every
k-th pair in patient / slice order). This differs from ``oneshotsam benchmark
acdc`` (pairs labelled at both phases, classes absent at ES not scored); that
scoring is printed beside it ("classes present at ES": per pair the mean over
the classes the ES slice has, pairs with none left out), so the share of the
error that comes from structures which left the slice is read off one run.

``acdc-volumes``: for every patient one ``propagate`` call with the ED volume and
its labels on every slice as the reference and the ES volume as the follow-up
target (what ``oneshotsam propagate --reference-volume ED --reference-labels
ED_label --targets ES`` does), 3D Dice per class against the ES labels (and, to
tell the error of structures that left a slice at ES from the rest, the same
prediction within the ES extent: :func:`~oneshotsam.protocols.runner.within_extent`); elastix
3D (ED -> ES, affine + B-spline) on the same patients; and copying the ED labels
unchanged (ED and ES share the grid) for scale.

Groups (:data:`~oneshotsam.protocols.rules.ACDC_GROUPS`): DCM, HCM, MINF, NOR,
ABNRV by patient number. Classes: 1 RV, 2 myocardium, 3 LV. Numpy at import time.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from oneshotsam.protocols.data import acdc_paths, acdc_patients, read_array
from oneshotsam.protocols.rules import ACDC_GROUPS, acdc_group, patient_number
from oneshotsam.protocols.runner import Runner, environment, score, slices_outside, within_extent
from oneshotsam.protocols.stats import fmt, fmt_pm, mean_or_nan, mean_se, ratio, table

NAMES = {1: "RV", 2: "myocardium", 3: "LV"}


def _values(labels: np.ndarray) -> list[int]:
    return sorted(int(v) for v in np.unique(labels) if v)


def _class_means(rows: list[dict], key: str = "dice") -> dict[str, float]:
    return {n: mean_or_nan(x[key][n] for x in rows if n in x[key]) for n in NAMES.values()
            if any(n in x[key] for x in rows)}


def _group_rows(rows: list[dict], unit: str) -> list[dict[str, Any]]:
    """One summary per ACDC group present, then ``all``."""
    out = []
    groups = [(g, [x for x in rows if x["group"] == g]) for _, _, g, _ in ACDC_GROUPS]
    for g, rs in [*(x for x in groups if x[1]), ("all", rows)]:
        peer = [x for x in rs if x.get("elastix") is not None]
        m, se = mean_se(x["mean"] for x in rs)
        s = {"group": g, unit: len(rs), "patients": len({x["patient"] for x in rs}),
             "per_class": _class_means(rs), "mean_dice": m, "se_dice": se,
             "method_cpu": mean_or_nan(x["cpu_seconds"] for x in rs),
             f"peer_{unit}": len(peer),
             "method_dice_on_peer": mean_or_nan(x["mean"] for x in peer),
             "elastix_dice": mean_or_nan(x["elastix"]["mean"] for x in peer),
             "elastix_cpu": mean_or_nan(x["elastix"]["cpu_seconds"] for x in peer)}
        s["dice_difference"] = s["method_dice_on_peer"] - s["elastix_dice"] if peer else None
        s["cpu_ratio_elastix_over_method"] = ratio(s["elastix_cpu"], s["method_cpu"]) if peer else None
        present = [x["present_mean"] for x in rs if x.get("present_mean") is not None]
        if any("present_mean" in x for x in rs):
            s["present_dice"] = mean_or_nan(present)
            s["present_pairs"] = len(present)
        if any("within_extent" in x for x in rs):
            s["within_extent_dice"] = mean_or_nan(x["within_extent"]["mean"] for x in rs)
        if any("copy" in x for x in rs):
            s["copy_dice"] = mean_or_nan(x["copy"]["mean"] for x in rs)
        out.append(s)
    return out


def _format_groups(groups: list[dict], unit: str, extra_copy: bool = False) -> str:
    head = ["group", unit, *NAMES.values(), "mean +- SE", "CPU s/" + unit.rstrip("s"),
            f"peer {unit}", "method (peer)", "elastix", "method - elastix",
            "elastix CPU s/" + unit.rstrip("s"), "elastix / method CPU"]
    present = any("present_dice" in g for g in groups)
    if present:
        head.insert(head.index("mean +- SE") + 1, "classes present at ES")
    extent = any("within_extent_dice" in g for g in groups)
    if extent:
        head.insert(head.index("mean +- SE") + 1, "within the ES extent")
    if extra_copy:
        head.append("copy ED labels")
    body = []
    for g in groups:
        row = [g["group"], g[unit], *(g["per_class"].get(n) for n in NAMES.values()),
               fmt_pm(g["mean_dice"], g["se_dice"]), fmt(g["method_cpu"], 2), g[f"peer_{unit}"],
               g["method_dice_on_peer"], g["elastix_dice"], g["dice_difference"],
               fmt(g["elastix_cpu"], 2), fmt(g["cpu_ratio_elastix_over_method"], 2)]
        if present:
            row.insert(head.index("classes present at ES"), g.get("present_dice"))
        if extent:
            row.insert(head.index("within the ES extent"), g.get("within_extent_dice"))
        if extra_copy:
            row.append(g.get("copy_dice"))
        body.append(row)
    names = ", ".join(f"{n} = {what} ({lo}-{hi})" for lo, hi, n, what in ACDC_GROUPS)
    return table(head, body) + f"\ngroups by ACDC patient number: {names}"


# ----------------------------------------------------------------------------- acdc-pairs
def run_acdc_pairs(r: Runner, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """The ``acdc-pairs`` protocol (module docstring); prints the table, returns the results."""
    o = r.opts
    patients = acdc_patients(o.data, o.patients)
    every = max(1, int(o.peer_every))
    echo(f"acdc-pairs: {len(patients)} patients; every ED slice with labels -> the ES slice "
         f"at the same index; elastix on " + (f"1 pair in {every}" if o.peer else "no pair"))
    r.prepare()
    rows: list[dict[str, Any]] = []
    for pi, pat in enumerate(patients):
        a = {k: read_array(p) for k, p in acdc_paths(o.data, pat).items()}
        slices = [k for k in range(a["ED"].shape[0]) if a["ED_label"][k].any()]
        for si, k in enumerate(slices):
            r.say(f"{pat} slice {k} ({si + 1}/{len(slices)} of this patient)", pi, len(patients))
            rows.append(_pair(r, pat, k, a, o.peer and len(rows) % every == 0))
    groups = _group_rows(rows, "pairs")
    result = {"protocol": "acdc-pairs", "patients": patients, "peer_every": every,
              "groups": groups, "pairs": rows, "settings": r.settings(),
              "peer": r.peer_settings(), "environment": environment()}
    echo(_format_groups(groups, "pairs"))
    empty = sum(1 for x in rows if x["absent_at_es"])
    echo(f"{len(rows)} pairs ({empty} with a reference class absent from the ES slice, scored "
         "1 if predicted absent, else 0); Dice mean over pairs +- SE over pairs; 'classes "
         "present at ES' = per pair the mean over the classes the ES slice has (the scoring of "
         "`benchmark acdc`); CPU s per pair = one method call / one elastix pair")
    return result


def present_mean(dice: dict[str, float], absent: list[int]) -> float | None:
    """Mean Dice over the classes of ``dice`` (by name) not in ``absent`` (values); None if none."""
    kept = [dice[n] for v, n in NAMES.items() if n in dice and v not in absent]
    return float(np.mean(kept)) if kept else None


def _pair(r: Runner, pat: str, k: int, a: dict[str, np.ndarray], peer: bool) -> dict[str, Any]:
    ref, lab, tgt, gt = a["ED"][k], a["ED_label"][k], a["ES"][k], a["ES_label"][k]
    values = _values(lab)
    seg = r.segment((f"{pat}_ED_{k}", ref), lab, [(f"{pat}_ES_{k}", tgt)])
    scored = score(seg.labels[0], gt, values, NAMES)
    absent = [v for v in values if not (gt == v).any()]
    row = {"patient": pat, "group": acdc_group(patient_number(pat)), "slice": int(k),
           **scored, "present_mean": present_mean(scored["dice"], absent),
           "cpu_seconds": round(seg.cpu, 3),
           "wall_seconds": round(seg.wall, 3), "absent_at_es": absent,
           "method_report": seg.report, "elastix": None}
    if peer:
        pr = r.peer_2d(tgt, ref, lab)
        row["elastix"] = {**score(pr.labels, gt, values, NAMES), "cpu_seconds": round(pr.cpu_seconds, 3),
                          "wall_seconds": round(pr.wall_seconds, 3), "threads": pr.threads}
    return row


# ----------------------------------------------------------------------------- acdc-volumes
def run_acdc_volumes(r: Runner, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """The ``acdc-volumes`` protocol (module docstring); prints the table, returns the results."""
    from oneshotsam.medio import read_label_volume, read_volume

    o = r.opts
    patients = acdc_patients(o.data, o.patients)
    echo(f"acdc-volumes: {len(patients)} patients; ED volume + labels -> ES with propagate "
         "(default settings)" + ("; elastix 3D on each" if o.peer else ""))
    r.prepare(volumes=True)
    rows = []
    for pi, pat in enumerate(patients):
        paths = acdc_paths(o.data, pat)
        ed, es = read_volume(paths["ED"]), read_volume(paths["ES"])
        lab = read_label_volume(paths["ED_label"], reference=ed)
        gt = np.asarray(read_label_volume(paths["ES_label"], reference=es).voxels)
        values = _values(np.asarray(lab.voxels))
        r.say(f"{pat}: propagate ED -> ES", pi, len(patients))
        res, clock, record = r.propagate(ed, lab, [es])
        pred = np.asarray(res.label_volumes[0].voxels)
        kept = within_extent(pred, gt, 0)
        row = {"patient": pat, "group": acdc_group(patient_number(pat)),
               **score(pred, gt, values, NAMES), "cpu_seconds": round(clock.cpu, 2),
               "wall_seconds": round(clock.wall, 2), "propagate": record,
               "within_extent": score(kept, gt, values, NAMES),
               "slices_outside": slices_outside(pred, gt, 0, kept),
               "copy": score(np.asarray(lab.voxels), gt, values, NAMES), "elastix": None}
        if o.peer:
            r.say(f"{pat}: elastix 3D ED -> ES", pi, len(patients))
            sp = tuple(reversed(ed.spacing_mm))  # array order (k, j, i)
            pr = r.peer_3d(np.asarray(es.voxels), np.asarray(ed.voxels), np.asarray(lab.voxels), sp)
            row["elastix"] = {**score(pr.labels, gt, values, NAMES),
                              "cpu_seconds": round(pr.cpu_seconds, 2),
                              "wall_seconds": round(pr.wall_seconds, 2), "threads": pr.threads,
                              "grid_spacing": pr.grid_spacing}
        rows.append(row)
    groups = _group_rows(rows, "patients")
    result = {"protocol": "acdc-volumes", "patients": patients, "groups": groups, "rows": rows,
              "settings": r.settings(), "peer": r.peer_settings(), "environment": environment()}
    echo(_format_groups(groups, "patients", extra_copy=True))
    echo("3D Dice per class against the ES labels; mean +- SE over patients; 'within the ES "
         "extent' = the same prediction with each class removed from the slices where the ES "
         "labels lack it (what a perfect absence rule would score); CPU s per patient = "
         "one propagate call (method) / one 3D registration + warp (elastix); 'copy ED labels' = "
         "the ED labels unchanged (same grid)")
    return result


__all__ = ["NAMES", "present_mean", "run_acdc_pairs", "run_acdc_volumes"]
