"""Summaries and tables of the ``corrections`` protocol (:mod:`.corrections`).

Per kind of case: 3D Dice after each step for each order (mean, SD, worst case),
the peer at an equal number of drawn slices, NoC@85 / NoC@90 (capped at K; how many
cases never reach it), seconds per Update (median wall and CPU), the queue's
first-flag precision, the AUROC of per-slice confidence against "slice not acceptable"
(step 0, pooled over the cases, and the mean of the per-case values), slices predicted
beyond the structure and how many of them were flagged. :func:`bars` states each
figure next to the bar it is measured against. Standard library + numpy.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from oneshotsam.protocols.corrections_loop import auroc
from oneshotsam.protocols.stats import fmt, table

ORDERS = ("queue", "oracle")


def _msw(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample SD and minimum (the worst case); NaN when empty."""
    v = np.asarray([float(x) for x in values if x is not None and not math.isnan(float(x))])
    if v.size == 0:
        return {"mean": math.nan, "sd": math.nan, "worst": math.nan, "n": 0}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else math.nan,
            "worst": float(v.min()), "n": int(v.size)}


def _median(values: Sequence[float]) -> float:
    v = [float(x) for x in values]
    return float(np.median(v)) if v else math.nan


def summarise_kind(rows: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    """Every figure of one kind of case (module docstring)."""
    s: dict[str, Any] = {"cases": len(rows)}
    for order in ORDERS:
        o = [r["orders"][order] for r in rows]
        s[order] = {
            "dice": [_msw([x["dice"][j] for x in o]) for j in range(steps + 1)],
            "noc85": _msw([x["noc85"] for x in o])["mean"],
            "noc90": _msw([x["noc90"] for x in o])["mean"],
            "not_reached85": sum(1 for x in o if not x["reached85"]),
            "not_reached90": sum(1 for x in o if not x["reached90"]),
            "update_wall_median": _median([t for x in o for t in x["update_wall"]]),
            "update_cpu_median": _median([t for x in o for t in x["update_cpu"]]),
            "drops": sum(1 for x in o for a, b in zip(x["dice"], x["dice"][1:]) if b < a - 1e-9),
            "cases_with_a_drop": sum(1 for x in o if any(b < a - 1e-9 for a, b in
                                                         zip(x["dice"], x["dice"][1:]))),
            "not_kept": sum(x["not_kept"] for x in o),
            "corrections": sum(len(x["erased"]) for x in o),
            "erasures": sum(sum(x["erased"]) for x in o),
            "beyond_after": [sum(b[0] for x in o for b in x.get("beyond_after", [])),
                             sum(b[1] for x in o for b in x.get("beyond_after", []))],
        }
    s["peer"] = [_msw([r["peer"]["dice"][n] for r in rows]) for n in range(steps + 1)]
    s["queue_minus_peer"] = [_msw([r["orders"]["queue"]["dice"][j] - r["peer"]["dice"][j] for r in rows])
                             for j in range(steps + 1)]
    s["queue_minus_oracle"] = [_msw([r["orders"]["queue"]["dice"][j] - r["orders"]["oracle"]["dice"][j]
                                     for r in rows]) for j in range(steps + 1)]
    flags = [f for r in rows for f in r["orders"]["queue"]["first_flag_wrong"]]
    shown = [f for f in flags if f is not None]
    s["first_flag"] = {"steps": len(flags), "with_a_flag": len(shown), "wrong": sum(shown),
                       "precision": (sum(shown) / len(shown)) if shown else math.nan}
    s["auroc_pooled"] = auroc([c for r in rows for c in r["confidence"]],
                              [w for r in rows for w in r["wrong"]])
    s["auroc_case_mean"] = _msw([r["auroc"] for r in rows])["mean"]
    s["beyond"] = {k: sum(r["beyond"][k] for r in rows) for k in ("slices", "flagged", "unreported")}
    s["first_run_wall_mean"] = _msw([r["first_run"]["wall"] for r in rows])["mean"]
    s["first_run_cpu_mean"] = _msw([r["first_run"]["cpu"] for r in rows])["mean"]
    return s


def summarise(rows: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    """``{kind: summarise_kind(...)}`` in the order the kinds first appear."""
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    return {k: summarise_kind([r for r in rows if r["kind"] == k], steps) for k in kinds}


def _at(curve: list[dict[str, float]], j: int) -> float:
    return curve[j]["mean"] if j < len(curve) else math.nan


def bars(summary: dict[str, Any], steps: int) -> list[tuple[str, str, str]]:
    """``[(bar, measured, met)]``: each figure next to the bar it is measured against
    (``met``: yes / no / ``-`` when the run lacks the cases or the steps)."""
    def row(bar: str, value: float, ok: bool | None, text: str | None = None):
        unknown = ok is None or (isinstance(value, float) and math.isnan(value))
        met = "-" if unknown else ("yes" if ok else "no")
        return bar, text if text is not None else fmt(value), met

    out = []
    la, es = summary.get("la"), summary.get("acdc-es")
    if la:
        q = la["queue"]["dice"]
        for j, goal in ((2, 0.88), (4, 0.90)):
            v = _at(q, j)
            out.append(row(f"LA queue order, mean Dice after {j} corrections >= {goal}", v,
                           None if j > steps else v >= goal))
        out.append(row("LA queue order never lower after a correction", float(la["queue"]["drops"]),
                       la["queue"]["drops"] == 0,
                       f"{la['queue']['drops']} drops in {la['queue']['cases_with_a_drop']} of "
                       f"{la['cases']} cases"))
        for j in (2, 4):
            if j <= steps:
                v = la["queue_minus_peer"][j]["mean"]
                out.append(row(f"LA queue - Fill between slices at {j + 1} drawn slices >= 0.03",
                               v, v >= 0.03))
    if es:
        v = _at(es["queue"]["dice"], 2)
        out.append(row("ACDC ED -> ES, queue order, mean Dice after 2 corrections >= 0.90", v,
                       None if steps < 2 else v >= 0.90))
    for kind, s in summary.items():
        if steps >= 2:
            v = s["queue_minus_oracle"][2]["mean"]
            out.append(row(f"{kind}: queue within 0.01 of oracle after 2 corrections", v, v >= -0.01))
        p = s["first_flag"]["precision"]
        out.append(row(f"{kind}: first-flag precision >= 0.8", p, p >= 0.8,
                       f"{fmt(p, 3)} ({s['first_flag']['wrong']}/{s['first_flag']['with_a_flag']} "
                       f"flagged steps; {s['first_flag']['steps'] - s['first_flag']['with_a_flag']} "
                       "steps without a flag)"))
        a = s["auroc_pooled"]
        out.append(row(f"{kind}: AUROC of per-slice confidence >= 0.85", a, a >= 0.85, fmt(a, 3)))
    if la:
        w = la["queue"]["update_wall_median"]
        out.append(row("LA Update median wall <= 2 s inside a session", w, w <= 2.0, fmt(w, 2) + " s"))
    return out


def format_corrections(result: dict[str, Any]) -> str:
    """The printed tables: per case, per kind, then the bars."""
    steps = result["steps"]
    js = list(range(steps + 1))
    head = (["kind", "case", "split"] + [f"queue {j}" for j in js] + [f"oracle {j}" for j in js]
            + [f"peer n={j + 1}" for j in js]
            + ["NoC85 q/o", "NoC90 q/o", "flag prec", "AUROC", "beyond (flagged)", "Update s wall/CPU"])
    body = []
    for r in result["rows"]:
        q, o = r["orders"]["queue"], r["orders"]["oracle"]
        ff = [f for f in q["first_flag_wrong"] if f is not None]
        walls = q["update_wall"] + o["update_wall"]
        cpus = q["update_cpu"] + o["update_cpu"]
        body.append([r["kind"], r["case"], r["split"], *q["dice"], *o["dice"], *r["peer"]["dice"],
                     f"{q['noc85']}/{o['noc85']}", f"{q['noc90']}/{o['noc90']}",
                     f"{sum(ff)}/{len(ff)}", fmt(r["auroc"], 3),
                     f"{r['beyond']['slices']} ({r['beyond']['flagged']})",
                     f"{fmt(_median(walls), 2)}/{fmt(_median(cpus), 2)}"])
    lines = [table(head, body, digits=3), ""]
    for kind, s in result["summary"].items():
        lines.append(f"{kind}: {s['cases']} cases, Update = {result['update_engine']}; "
                     "3D Dice mean +- SD (worst case) after each step")
        kb = []
        for j in js:
            q, o, p = s["queue"]["dice"][j], s["oracle"]["dice"][j], s["peer"][j]
            kb.append([j, j + 1, _cell(q), _cell(o), _cell(p), fmt(s["queue_minus_peer"][j]["mean"], 3),
                       fmt(s["queue_minus_oracle"][j]["mean"], 3)])
        lines.append(table(["corrections", "annotated slices", "queue", "oracle",
                            "Fill between slices", "queue - peer", "queue - oracle"], kb))
        for order in ORDERS:
            x = s[order]
            lines.append(f"  {order}: NoC@85 {fmt(x['noc85'], 2)} ({x['not_reached85']} not reached), "
                         f"NoC@90 {fmt(x['noc90'], 2)} ({x['not_reached90']} not reached); Update median "
                         f"{fmt(x['update_wall_median'], 2)} s wall, {fmt(x['update_cpu_median'], 2)} "
                         f"s CPU; {x['erasures']} of {x['corrections']} corrections erased a "
                         f"slice; {x['drops']} steps lowered the Dice; {x['not_kept']} corrections "
                         f"not kept exactly; after the Updates {x['beyond_after'][0]} slices "
                         f"predicted beyond the structure, {x['beyond_after'][1]} flagged")
        f = s["first_flag"]
        lines.append(f"  first run {fmt(s['first_run_wall_mean'], 1)} s wall, "
                     f"{fmt(s['first_run_cpu_mean'], 1)} s CPU (mean); first-flag precision "
                     f"{fmt(f['precision'], 3)} ({f['wrong']}/{f['with_a_flag']}); AUROC pooled "
                     f"{fmt(s['auroc_pooled'], 3)}, per-case mean {fmt(s['auroc_case_mean'], 3)}; "
                     f"{s['beyond']['slices']} slices predicted beyond the structure, "
                     f"{s['beyond']['flagged']} flagged, {s['beyond']['unreported']} without a confidence")
        lines.append("")
    lines.append(table(["figure", "measured", "met"], bars(result["summary"], steps)))
    lines.append("note: step j = after j corrections (j + 1 annotated slices); the peer gets "
                 "n = j + 1 slices spread over the true extent; NoC capped at K = "
                 f"{steps}; acceptable slice = both empty or Dice >= 0.90 (docs/corrections.md)")
    return "\n".join(lines)


def _cell(m: dict[str, float]) -> str:
    return f"{fmt(m['mean'], 3)} +- {fmt(m['sd'], 3)} ({fmt(m['worst'], 3)})"


__all__ = ["summarise", "summarise_kind", "bars", "format_corrections"]
