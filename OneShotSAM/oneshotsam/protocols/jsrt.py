"""``jsrt-refs`` and ``jsrt-perturb``: JSRT chest films, several references, perturbations.

``jsrt-refs`` (Med-PerSAM Table 2 protocol: several references, mean and standard error):

* references: :func:`~oneshotsam.protocols.rules.choose_references` (the ``--washed``
  films with the narrowest 0.5-99.5 percentile grey range, then evenly spaced IDs);
* for each reference, the method on ALL other films in one call (``--targets K``:
  K of them evenly spaced in name order), Dice per class and mean per target;
* elastix on ``--peer-targets P`` of those targets (evenly spaced), one pair at a
  time, and the method's Dice on that same subset (taken from its run above);
* CPU seconds per target: method = the call's process CPU time / its targets;
  elastix = per pair.

``jsrt-perturb``: a fixed reference set (default 2: the most washed-out film and
the first ID) and target subset (the same for every reference, evenly spaced
among the non-reference films); each perturbation of
:mod:`~oneshotsam.protocols.perturb` applied to every target (reference clean),
then to the reference (targets clean); Dice clean vs perturbed and the drop, for
the method and (on ``--peer-targets`` of the targets) elastix.

Classes: 1 right lung, 2 left lung, 3 heart. Numpy at import time.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from oneshotsam.protocols.data import jsrt_film, jsrt_ids
from oneshotsam.protocols.rules import choose_references, grey_range, spread
from oneshotsam.protocols.runner import Runner, environment, score
from oneshotsam.protocols.stats import fmt, fmt_pm, mean_or_nan, mean_se, ratio, table

NAMES = {1: "right lung", 2: "left lung", 3: "heart"}


class Films:
    """JSRT films of one data folder, read once."""

    def __init__(self, root) -> None:
        self.root = root
        self.ids = jsrt_ids(root)
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, film: str) -> tuple[np.ndarray, np.ndarray]:
        if film not in self._cache:
            self._cache[film] = jsrt_film(self.root, film)
        return self._cache[film]

    def references(self, n: int, washed: int) -> list[tuple[str, str]]:
        ranges = {i: grey_range(self(i)[0]) for i in self.ids}
        self.ranges = ranges
        return choose_references(self.ids, ranges, n, washed)


def _values(labels: np.ndarray) -> list[int]:
    return sorted(int(v) for v in np.unique(labels) if v)


def _peer_rows(r: Runner, films: Films, moving: tuple[np.ndarray, np.ndarray],
               subset: list[str], fixed_image: Callable[[str], np.ndarray], tag: str) -> list[dict]:
    """elastix from ``moving`` (image, labels) to each film of ``subset``."""
    rows = []
    values = _values(moving[1])
    for i, t in enumerate(subset):
        r.say(f"{tag}: elastix -> {t}", i, len(subset))
        pr = r.peer_2d(fixed_image(t), moving[0], moving[1])
        rows.append({"target": t, **score(pr.labels, films(t)[1], values, NAMES),
                     "cpu_seconds": round(pr.cpu_seconds, 3),
                     "wall_seconds": round(pr.wall_seconds, 3), "threads": pr.threads})
    return rows


def _class_means(per_target: list[dict]) -> dict[str, float]:
    names = [n for n in NAMES.values() if any(n in t["dice"] for t in per_target)]
    return {n: mean_or_nan(t["dice"][n] for t in per_target if n in t["dice"]) for n in names}


def _reference_row(r: Runner, films: Films, ref: str, why: str, idx: tuple[int, int]) -> dict:
    o = r.opts
    others = [i for i in films.ids if i != ref]
    targets = spread(others, o.targets)
    subset = spread(targets, o.peer_targets) if o.peer else []
    image, labels = films(ref)
    values = _values(labels)
    r.say(f"reference {ref} ({idx[0] + 1}/{idx[1]}): method on {len(targets)} targets",
          idx[0], idx[1])
    seg = r.segment((ref, image), labels, [(t, films(t)[0]) for t in targets])
    per_target = [{"target": t, **score(lab, films(t)[1], values, NAMES)}
                  for t, lab in zip(targets, seg.labels)]
    peer = _peer_rows(r, films, (image, labels), subset, lambda t: films(t)[0], f"reference {ref}")
    on_subset = {t["target"]: t["mean"] for t in per_target}
    m_sub = mean_or_nan(on_subset[p["target"]] for p in peer)
    e_sub = mean_or_nan(p["mean"] for p in peer)
    return {"reference": ref, "chosen_as": why, "grey_range": round(films.ranges[ref], 1),
            "targets": len(targets), "per_class": _class_means(per_target),
            "mean_dice": mean_or_nan(t["mean"] for t in per_target),
            "method_cpu_seconds": round(seg.cpu, 2), "method_wall_seconds": round(seg.wall, 2),
            "method_cpu_per_target": seg.cpu / len(targets), "method_report": seg.report,
            "peer_targets": len(peer), "method_dice_on_peer_targets": m_sub,
            "elastix_dice": e_sub, "dice_difference": m_sub - e_sub if peer else None,
            "elastix_cpu_per_pair": mean_or_nan(p["cpu_seconds"] for p in peer),
            "per_target": per_target, "elastix_per_target": peer}


def run_jsrt_refs(r: Runner, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """The ``jsrt-refs`` protocol (module docstring); prints the table, returns the results."""
    o = r.opts
    films = Films(o.data)
    refs = films.references(o.refs, o.washed)
    echo(f"jsrt-refs: {len(refs)} references of {len(films.ids)} films")
    for ref, why in refs:
        echo(f"  {ref}: {why}")
    r.prepare()
    rows = [_reference_row(r, films, ref, why, (i, len(refs))) for i, (ref, why) in enumerate(refs)]
    summary = _refs_summary(rows, o.peer)
    result = {"protocol": "jsrt-refs", "references": [x for x, _ in refs], "rows": rows,
              "summary": summary, "settings": r.settings(), "peer": r.peer_settings(),
              "environment": environment()}
    echo(format_refs(result))
    return result


def _refs_summary(rows: list[dict], peer: bool) -> dict[str, Any]:
    m, se = mean_se(x["mean_dice"] for x in rows)
    worst = min(rows, key=lambda x: x["mean_dice"])
    s: dict[str, Any] = {
        "references": len(rows), "mean_dice": m, "se_dice": se,
        "per_class": {n: dict(zip(("mean", "se"), mean_se(x["per_class"].get(n, np.nan) for x in rows)))
                      for n in NAMES.values()},
        "worst_reference": worst["reference"], "worst_dice": worst["mean_dice"],
        "method_cpu_per_target": mean_or_nan(x["method_cpu_per_target"] for x in rows)}
    if peer:
        d, dse = mean_se(x["dice_difference"] for x in rows)
        s.update({"elastix_dice": mean_se(x["elastix_dice"] for x in rows),
                  "method_dice_on_peer_targets": mean_se(x["method_dice_on_peer_targets"] for x in rows),
                  "dice_difference": d, "se_dice_difference": dse,
                  "elastix_cpu_per_pair": mean_or_nan(x["elastix_cpu_per_pair"] for x in rows)})
        s["cpu_ratio_elastix_over_method"] = ratio(s["elastix_cpu_per_pair"], s["method_cpu_per_target"])
    return s


def format_refs(result: dict[str, Any]) -> str:
    rows, s = result["rows"], result["summary"]
    head = ["reference", "chosen as", "targets", *NAMES.values(), "mean", "CPU s/target",
            "peer pairs", "method (peer pairs)", "elastix", "method - elastix", "elastix CPU s/pair"]
    body = [[x["reference"], x["chosen_as"].split(":")[0].split(" in ")[0], x["targets"],
             *(x["per_class"].get(n) for n in NAMES.values()), x["mean_dice"],
             fmt(x["method_cpu_per_target"], 2), x["peer_targets"],
             x["method_dice_on_peer_targets"], x["elastix_dice"], x["dice_difference"],
             fmt(x["elastix_cpu_per_pair"], 2)] for x in rows]
    pc = s["per_class"]
    body.append(["mean +- SE", "", "", *(fmt_pm(pc[n]["mean"], pc[n]["se"]) for n in NAMES.values()),
                 fmt_pm(s["mean_dice"], s["se_dice"]), fmt(s["method_cpu_per_target"], 2), "",
                 fmt_pm(*s["method_dice_on_peer_targets"]) if "elastix_dice" in s else "-",
                 fmt_pm(*s["elastix_dice"]) if "elastix_dice" in s else "-",
                 fmt_pm(s["dice_difference"], s["se_dice_difference"]) if "elastix_dice" in s else "-",
                 fmt(s.get("elastix_cpu_per_pair"), 2)])
    lines = [table(head, body),
             f"worst reference: {s['worst_reference']} (mean Dice {fmt(s['worst_dice'])})"]
    if "elastix_dice" in s:
        lines.append(f"CPU s per target: method {fmt(s['method_cpu_per_target'], 2)} (whole call / "
                     f"targets), elastix {fmt(s['elastix_cpu_per_pair'], 2)} per pair: "
                     f"elastix / method = {fmt(s['cpu_ratio_elastix_over_method'], 2)}")
        lines.append("Dice method - elastix on the shared peer targets: "
                     f"{fmt_pm(s['dice_difference'], s['se_dice_difference'])} over "
                     f"{s['references']} references")
    else:
        lines.append("elastix peer not run (--no-peer)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- jsrt-perturb
def _conditions(kinds, apply_to) -> list[tuple[str, str | None, str | None]]:
    out: list[tuple[str, str | None, str | None]] = [("clean", None, None)]
    for where in ("targets", "reference"):
        if where in apply_to:
            out += [(f"{where}: {k}", where, k) for k in kinds]
    return out


def _perturb_run(r: Runner, films: Films, ref: str, targets: list[str], subset: list[str],
                 cond: tuple[str, str | None, str | None]) -> dict[str, Any]:
    from oneshotsam.protocols.perturb import perturb

    name, where, kind = cond
    seed = r.opts.seed
    img = lambda f, w: perturb(films(f)[0], kind, seed, f) if where == w else films(f)[0]
    image, labels = img(ref, "reference"), films(ref)[1]
    values = _values(labels)
    seg = r.segment((ref, image), labels, [(t, img(t, "targets")) for t in targets])
    per_target = [score(lab, films(t)[1], values, NAMES)["mean"] for t, lab in zip(targets, seg.labels)]
    peer = _peer_rows(r, films, (image, labels), subset, lambda t: img(t, "targets"),
                      f"{ref} {name}")
    return {"condition": name, "method_dice": float(np.mean(per_target)),
            "method_per_target": per_target, "method_cpu_per_target": seg.cpu / len(targets),
            "method_report": seg.report,
            "elastix_dice": mean_or_nan(p["mean"] for p in peer) if subset else None,
            "elastix_per_target": [p["mean"] for p in peer],
            "elastix_cpu_per_pair": mean_or_nan(p["cpu_seconds"] for p in peer) if subset else None}


def run_jsrt_perturb(r: Runner, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """The ``jsrt-perturb`` protocol (module docstring); prints the table, returns the results."""
    from oneshotsam.protocols.perturb import KINDS, PERTURBATIONS

    o = r.opts
    kinds = tuple(o.kinds or KINDS)
    films = Films(o.data)
    refs = films.references(o.refs, o.washed)
    ref_ids = [x for x, _ in refs]
    targets = spread([i for i in films.ids if i not in ref_ids], o.targets)
    subset = spread(targets, o.peer_targets) if o.peer else []
    conds = _conditions(kinds, o.apply_to)
    echo(f"jsrt-perturb: references {', '.join(ref_ids)}; {len(targets)} targets "
         f"({len(subset)} for elastix); {len(conds)} conditions")
    for ref, why in refs:
        echo(f"  {ref}: {why}")
    for k in kinds:
        echo(f"  {k}: {PERTURBATIONS[k].description}")
    r.prepare()
    runs: dict[str, list[dict]] = {}
    total = len(refs) * len(conds)
    for i, ref in enumerate(ref_ids):
        for j, cond in enumerate(conds):
            r.say(f"reference {ref}: {cond[0]} (method on {len(targets)} targets)",
                  i * len(conds) + j, total)
            runs.setdefault(ref, []).append(_perturb_run(r, films, ref, targets, subset, cond))
    rows = _perturb_rows(runs, [c[0] for c in conds])
    result = {"protocol": "jsrt-perturb", "references": ref_ids, "targets": targets,
              "peer_targets": subset, "seed": o.seed,
              "perturbations": {k: PERTURBATIONS[k].description for k in kinds},
              "rows": rows, "runs": runs, "settings": r.settings(), "peer": r.peer_settings(),
              "environment": environment()}
    echo(format_perturb(result))
    return result


def _perturb_rows(runs: dict[str, list[dict]], names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for ci, name in enumerate(names):
        per_ref = {ref: rs[ci] for ref, rs in runs.items()}
        clean = {ref: rs[0] for ref, rs in runs.items()}
        m = mean_or_nan(x["method_dice"] for x in per_ref.values())
        e = mean_or_nan(x["elastix_dice"] for x in per_ref.values() if x["elastix_dice"] is not None)
        rows.append({"condition": name, "method_dice": m,
                     "method_drop": mean_or_nan(per_ref[r]["method_dice"] - clean[r]["method_dice"]
                                                for r in per_ref),
                     "method_per_reference": {r: x["method_dice"] for r, x in per_ref.items()},
                     "elastix_dice": e,
                     "elastix_drop": mean_or_nan(per_ref[r]["elastix_dice"] - clean[r]["elastix_dice"]
                                                 for r in per_ref
                                                 if per_ref[r]["elastix_dice"] is not None),
                     "method_cpu_per_target": mean_or_nan(x["method_cpu_per_target"]
                                                          for x in per_ref.values()),
                     "elastix_cpu_per_pair": mean_or_nan(x["elastix_cpu_per_pair"] for x in per_ref.values()
                                                         if x["elastix_cpu_per_pair"] is not None)})
    return rows


def format_perturb(result: dict[str, Any]) -> str:
    head = ["condition", "method Dice", "drop", "per reference", "elastix Dice", "drop",
            "method CPU s/target", "elastix CPU s/pair"]
    body = [[x["condition"], x["method_dice"], x["method_drop"],
             " / ".join(fmt(v, 3) for v in x["method_per_reference"].values()),
             x["elastix_dice"], x["elastix_drop"], fmt(x["method_cpu_per_target"], 2),
             fmt(x["elastix_cpu_per_pair"], 2)] for x in result["rows"]]
    note = (f"mean Dice over references {', '.join(result['references'])}; drop = perturbed - clean "
            f"(same reference); elastix on {len(result['peer_targets'])} of the "
            f"{len(result['targets'])} targets" if result["peer_targets"] else
            "elastix peer not run (--no-peer)")
    return table(head, body) + "\n" + note


__all__ = ["NAMES", "run_jsrt_refs", "run_jsrt_perturb", "format_refs", "format_perturb"]
