"""``corrections``: one annotated slice, then a simulated clinician corrects one slice
per step and presses Update (protocol: docs/corrections.md).

Kinds of case (``--kinds``):

* ``la``: LA volumes; ``acdc-ed``: ACDC ED volumes; ``tumour``: the pyradiomics tumour
  volumes (a small structure). Step 0: the truth on the axial slice with the largest
  structure is the only annotation; propagate within the volume.
* ``acdc-es``: ACDC ED labelled on every slice -> the ES volume as a follow-up visit;
  the corrections are made on ES.

Split (:func:`split_of`): in each dataset, the case at 0-based position ``i`` in name
order is **held out** when ``i % 3 == 2``, else **tuning** (ACDC ED and ES share the
patient's split). Settings may be chosen on the tuning split only.

Steps 1..K, in two orders from the same step 0 (:mod:`.corrections_loop`): "queue"
(the product's review queue) and "oracle" (most wrong voxels). Correcting replaces the
slice with the truth (drawn, or erased where the structure has ended); Update is the
session's (or the full re-run's, :mod:`.corrections_engine`). The peer, Fill between
slices, gets ``n = 1..K+1`` slices spread over the structure's extent.
Numpy at import time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from oneshotsam.errors import OneShotError
from oneshotsam.protocols import corrections_loop as loop
from oneshotsam.protocols.corrections_engine import (engine_name, fill_between_slices, open_session,
                                                     paste_slices, queue_of, records_of)
from oneshotsam.protocols.rules import largest_slice
from oneshotsam.protocols.runner import Runner, score
from oneshotsam.protocols.stats import Clock

KINDS = ("la", "acdc-ed", "acdc-es", "tumour")
SPLITS = ("tuning", "held-out", "all")
ORDERS = ("queue", "oracle")
NAMES = {"la": {1: "left atrium"}, "acdc-ed": {1: "RV", 2: "MYO", 3: "LV"},
         "acdc-es": {1: "RV", 2: "MYO", 3: "LV"}, "tumour": {}}


@dataclass
class Case:
    """One case: ``reference`` (volume propagated in), ``truth`` (the ``(K, J, I)`` labels
    scored, on the corrected volume's grid), ``axis`` (array axis of its axial slices),
    ``start`` (step 0's annotation on ``reference``), ``target`` (the follow-up, or None)."""

    kind: str
    name: str
    split: str
    reference: Any
    truth: np.ndarray
    axis: int
    start: Any
    target: Any = None


def split_of(position: int) -> str:
    """``held-out`` for the 0-based name-order positions 2, 5, 8, ...; else ``tuning``."""
    return "held-out" if int(position) % 3 == 2 else "tuning"


def _pairs(root: Path, kind: str) -> list[tuple[str, Path, Path, Path | None]]:
    """``[(name, image, label, follow-up image or None)]`` of one kind, in name order."""
    from oneshotsam.protocols.data import acdc_patients, acdc_paths, dataset_dir, la_cases

    if kind == "la":
        return [(c, i, lab, None) for c, i, lab in la_cases(root)]
    if kind == "tumour":
        d = dataset_dir(root, "pyradiomics", "*_image.nrrd")
        return [(p.name[: -len("_image.nrrd")], p, d / p.name.replace("_image", "_label"), None)
                for p in sorted(d.glob("*_image.nrrd"))
                if (d / p.name.replace("_image", "_label")).is_file()]
    out = []
    for n in acdc_patients(root):
        p = acdc_paths(root, n)
        out.append((n, p["ED"], p["ED_label"], p["ES"] if kind == "acdc-es" else None))
    return out


def list_cases(root: Path, kind: str, split: str) -> list[tuple[str, str, tuple]]:
    """``[(name, split, paths)]`` of ``kind`` in the requested split, name order."""
    if kind not in KINDS:
        raise OneShotError(f"unknown kind {kind!r}: use {', '.join(KINDS)}")
    if split not in SPLITS:
        raise OneShotError(f"unknown split {split!r}: use {', '.join(SPLITS)}")
    rows = [(p[0], split_of(i), p) for i, p in enumerate(_pairs(root, kind))]
    return [r for r in rows if split == "all" or r[1] == split]


def _one_slice(labels: np.ndarray, axis: int, k: int) -> np.ndarray:
    return loop.keep_slices(labels, axis, [k])


def load_case(kind: str, name: str, split: str, paths: tuple) -> Case:
    """Read one case (module docstring)."""
    from oneshotsam.geometry import slice_geometry
    from oneshotsam.medio import read_label_volume, read_volume
    from oneshotsam.types import Volume

    _, img_path, lab_path, follow_path = paths
    ref = read_volume(img_path)
    lab = read_label_volume(lab_path, reference=ref)
    full = np.asarray(lab.voxels)
    axis = slice_geometry(lab, "axial").array_axis
    if not full.any():
        raise OneShotError(f"{lab_path} holds no label: the case cannot be scored")
    if follow_path is None:
        k = largest_slice(full, axis)
        start = Volume(_one_slice(full, axis, k), lab.ijk_to_lps, lab.name, dict(lab.meta))
        return Case(kind, name, split, ref, full, axis, start)
    target = read_volume(follow_path)
    truth = np.asarray(read_label_volume(Path(str(follow_path).replace(".nii.gz", "_label.nii.gz")),
                                         reference=target).voxels)
    t_axis = slice_geometry(target, "axial").array_axis
    return Case(kind, name, split, ref, truth, t_axis, lab, target)


def _fork(session, case: Case, make: Callable[[], Any]) -> tuple[Any, str]:
    """A second session in the state of ``session`` and how it was made: ``"copy"`` (a
    deep copy) or, when the session cannot be copied, ``"second run"`` (a fresh one that
    runs step 0 again)."""
    try:
        return copy.deepcopy(session), "copy"
    except Exception:  # noqa: BLE001 -- not copyable (native handles): run step 0 again
        s = make()
        s.run(case.start)
        return s, "second run"


def _labels_now(case: Case, pred: np.ndarray, done: set[int]) -> np.ndarray:
    """The label array the clinician hands to Update: the prediction with every
    corrected slice holding the truth."""
    out = np.array(pred, copy=True)
    for k in done:
        out, _ = loop.correct(out, case.truth, case.axis, k)
    return out


def run_order(case: Case, session, res0, order: str, steps: int, values, names) -> dict[str, Any]:
    """Steps 1..``steps`` of one order from step 0's result ``res0``; per-step Dice,
    slices, Update seconds, first-flag outcomes, corrections not kept."""
    from oneshotsam.types import Volume

    ti = 0
    followup = case.target is not None
    grid = case.target if followup else case.reference
    pred = np.asarray(res0.label_volumes[ti].voxels)
    done: set[int] = set() if followup else {row_start(case)}
    dices = [score(pred, case.truth, values, names)["mean"]]
    out: dict[str, Any] = {"slices": [], "erased": [], "update_wall": [], "update_cpu": [],
                           "first_flag_wrong": [], "not_kept": 0, "update_kind": "update",
                           "beyond_after": []}
    res = res0
    for _ in range(steps):
        records, queue = records_of(res.report, ti), queue_of(res.report, ti)
        if order == "queue":
            out["first_flag_wrong"].append(loop.first_flag_wrong(pred, case.truth, case.axis, queue,
                                                                 records, done))
            k = loop.queue_choice(pred, case.truth, case.axis, queue, records, done)
        else:
            k = loop.oracle_choice(pred, case.truth, case.axis, done)
        if k is None:  # nothing left to correct: the structure is acceptable everywhere
            out["slices"].append(None)
            dices.append(dices[-1])
            continue
        done.add(k)
        labels = _labels_now(case, pred, done)
        erased = not np.any(np.take(case.truth, k, axis=case.axis))
        vol = Volume(labels, grid.ijk_to_lps, grid.name, dict(case.start.meta))
        with Clock() as c:
            res = _update(session, res, vol, k, erased, ti if followup else None, out)
        pred = np.asarray(res.label_volumes[ti].voxels)
        if not np.array_equal(np.take(pred, k, axis=case.axis), np.take(case.truth, k, axis=case.axis)):
            out["not_kept"] += 1
        out["slices"].append(int(k))
        out["erased"].append(bool(erased))
        out["update_wall"].append(round(c.wall, 3))
        out["update_cpu"].append(round(c.cpu, 3))
        dices.append(score(pred, case.truth, values, names)["mean"])
        out["beyond_after"].append(_beyond_flags(pred, case, records_of(res.report, ti)))
    out["dice"] = dices
    for t in (0.85, 0.90):
        n, reached = loop.noc(dices, t)
        out[f"noc{int(t * 100)}"], out[f"reached{int(t * 100)}"] = n, reached
    return out


def _beyond_flags(pred: np.ndarray, case: Case, records) -> list[int]:
    """``[slices predicted beyond the structure, how many of them are flagged]`` after an
    Update (the review must keep flagging an overrun, not only at step 0)."""
    beyond = loop.beyond_structure(pred, case.truth, case.axis)
    return [len(beyond), sum(1 for k in beyond if records.get(k, (1.0, False))[1])]


def _update(session, res, vol, k: int, erased: bool, target_index: int | None, out: dict):
    """One Update; a session that refuses follow-up corrections is replaced by pasting
    the correction in (recorded in ``out["update_kind"]``)."""
    if out.get("update_kind", "").startswith("paste"):
        return paste_slices(res, target_index, vol, [k], "axial")
    try:
        return session.update(vol, [] if erased else [k], [k] if erased else [],
                              target_index=target_index)
    except OneShotError as e:
        if target_index is None:
            raise
        out["update_kind"] = f"paste (the session refused follow-up corrections: {e})"
        return paste_slices(res, target_index, vol, [k], "axial")


def peer_curve(case: Case, n_max: int, values, names) -> dict[str, Any]:
    """Fill between slices with ``n = 1..n_max`` drawn slices spread over the extent."""
    first, last = loop.extent(case.truth, case.axis)
    big = largest_slice(case.truth, case.axis)
    slices, dices = [], []
    for n in range(1, n_max + 1):
        drawn = loop.spread_slices(first, last, n, big)
        filled = fill_between_slices(loop.keep_slices(case.truth, case.axis, drawn), case.axis)
        slices.append(drawn)
        dices.append(score(filled, case.truth, values, names)["mean"])
    return {"slices": slices, "dice": dices}


def run_case(case: Case, cfg, engine: str, steps: int, method=None) -> dict[str, Any]:
    """Step 0, both orders, the peer and the review scores of one case (``cfg``: the
    :class:`~oneshotsam.volume.types.PropagationConfig`; ``method``: a ready 2D method or
    None for the configured one)."""
    targets = [case.target] if case.target is not None else []
    make = lambda: open_session(engine, case.reference, cfg, targets, method)  # noqa: E731
    session = make()
    with Clock() as c0:
        res0 = session.run(case.start)
    values = sorted(int(v) for v in np.unique(case.truth) if v)
    names = NAMES.get(case.kind, {})
    pred0 = np.asarray(res0.label_volumes[0].voxels)
    records = records_of(res0.report, 0)
    states = loop.slice_states(pred0, case.truth, case.axis)
    scored = sorted(records)
    beyond = loop.beyond_structure(pred0, case.truth, case.axis)
    start = None if case.target is not None else row_start(case)
    row: dict[str, Any] = {
        "kind": case.kind, "case": case.name, "split": case.split,
        "slices": int(case.truth.shape[case.axis]), "extent": list(loop.extent(case.truth, case.axis)),
        "annotated_slice": start,
        "first_run": {"wall": round(c0.wall, 3), "cpu": round(c0.cpu, 3)},
        "confidence": [records[k][0] for k in scored], "wrong": [not states[k] for k in scored],
        "flagged": [records[k][1] for k in scored],
        "auroc": loop.auroc([records[k][0] for k in scored], [not states[k] for k in scored]),
        "beyond": {"slices": len(beyond), "flagged": sum(1 for k in beyond if records.get(k, (1, 0))[1]),
                   "unreported": sum(1 for k in beyond if k not in records)},
        "wrong_unreported": sum(1 for k, ok in enumerate(states) if not ok and k not in records
                                and k != start),
    }
    orders: dict[str, Any] = {}
    for order in ORDERS:
        sess, row["fork"] = (session, row.get("fork")) if order == ORDERS[-1] else \
            _fork(session, case, make)
        orders[order] = run_order(case, sess, res0, order, steps, values, names)
    row["orders"] = orders
    row["peer"] = peer_curve(case, steps + 1, values, names)
    return row


def row_start(case: Case) -> int:
    """Step 0's annotated slice of a within-volume case."""
    return loop.extent(np.asarray(case.start.voxels), case.axis)[0]


def run_corrections(r: Runner, echo: Callable[[str], None] = print,
                    on_row: Callable[[list[dict[str, Any]]], None] | None = None) -> dict[str, Any]:
    """The ``corrections`` protocol (module docstring); prints the tables, returns the
    results. ``on_row(rows)`` is called after each case (partial results)."""
    from oneshotsam.protocols.corrections_report import format_corrections, summarise
    from oneshotsam.protocols.runner import environment

    o = r.opts
    engine = engine_name(o.update_engine)
    plan = []
    for kind in o.correction_kinds:
        rows = list_cases(o.data, kind, o.split)
        plan.extend((kind, *x) for x in rows[: o.cases if o.cases else None])
    if not plan:
        raise OneShotError(f"no case in the {o.split} split of {', '.join(o.correction_kinds)} "
                           f"under {o.data}")
    echo(f"corrections: {len(plan)} cases ({o.split} split), K = {o.steps} corrections per order, "
         f"Update = {engine}")
    r.prepare(volumes=True)
    rows = []
    for i, (kind, name, split, paths) in enumerate(plan):
        r.say(f"{kind} {name}: step 0 and {o.steps} corrections x {len(ORDERS)} orders", i, len(plan))
        rows.append(run_case(load_case(kind, name, split, paths), r.volume_config(), engine, o.steps))
        if on_row is not None:
            on_row(rows)
    result = {"protocol": "corrections", "update_engine": engine, "steps": o.steps, "split": o.split,
              "rows": rows, "summary": summarise(rows, o.steps), "settings": r.settings(),
              "environment": environment()}
    echo(format_corrections(result))
    return result


__all__ = ["KINDS", "SPLITS", "ORDERS", "Case", "split_of", "list_cases", "load_case",
           "run_order", "peer_curve", "run_case", "run_corrections"]
