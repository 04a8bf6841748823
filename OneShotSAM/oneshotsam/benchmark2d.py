"""Core of ``oneshotsam benchmark jsrt|acdc|lung4d``: the papers' 2D protocols on the shared data.

Protocols (``../shared/data/README.md``; Med-PerSAM section 4.3; P2SAM 4D-Lung):

* ``jsrt``: reference = the first image ID in alphabetical order (JPCLN001), every
  other image a target, in ONE method call; classes 1 right lung, 2 left lung, 3 heart.
* ``acdc``: for every patient and every slice index where both the ED and the ES
  label slices are non-empty: reference = ED slice + labels, target = the same slice
  at ES, ONE method call per pair (as ``oneshotsam segment`` would be run per pair);
  classes 1 RV, 2 myocardium, 3 LV.
* ``lung4d``: reference ``ref_image.png`` + ``ref_mask.png``, target ``test_image.png``.

Dice and IoU are computed per foreground class present in the ground truth of a
case (the reference's classes), averaged over classes per case, then over cases
(Med-PerSAM 4.3). Images are windowed like the ``segment`` command does by default
(``auto``: uint8 -> [0, 255]). Wall time covers I/O, training and inference.

This module imports numpy only at module level.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from oneshotsam.errors import OneShotError
from oneshotsam.progress import ProgressFn, no_progress
from oneshotsam.types import Image2D

DATASETS = ("jsrt", "acdc", "lung4d")
CLASS_NAMES = {"jsrt": {1: "right lung", 2: "left lung", 3: "heart"},
               "acdc": {1: "RV", 2: "myocardium", 3: "LV"},
               "lung4d": {1: "tumour"}}


def _img(a: np.ndarray, name: str) -> Image2D:
    from oneshotsam.intensity import to_image2d
    return to_image2d(np.asarray(a), "auto", name=name)


def _read_png(path: Path) -> np.ndarray:
    import cv2
    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise OneShotError(f"cannot read {path}")
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_BGR2RGB)
    return a


def _scores(pred: np.ndarray, gt: np.ndarray, values: Sequence[int]) -> dict[int, tuple[float, float]]:
    """``{v: (dice, iou)}`` (:func:`oneshotsam.evaluate.dice_iou`); a class absent from
    this ground truth is not scored."""
    from oneshotsam.evaluate import dice_iou

    return {v: (d["dice"], d["iou"]) for v, d in dice_iou(pred, gt, values).items()
            if d["gt_voxels"]}


def jsrt_cases(root: Path, limit: int | None = None):
    """``[(reference, ref_labels, [(target, gt_labels)...])]`` -- one group."""
    d = root / "jsrt"
    ids = sorted(p.stem for p in (d / "images").glob("*.png"))
    if len(ids) < 2:
        raise OneShotError(f"JSRT data not found under {d} (images/*.png, labels/*.png)")
    load = lambda i: (_img(_read_png(d / "images" / f"{i}.png"), i), _read_png(d / "labels" / f"{i}.png"))
    ref, rl = load(ids[0])
    tids = ids[1:] if limit is None else ids[1:1 + int(limit)]
    return [(ref, rl, [load(i) for i in tids])]


def acdc_cases(root: Path, limit: int | None = None, start: int = 0):
    """One group per (patient, slice) pair: ED slice -> same slice at ES, for the
    patients ``[start : start + limit]`` in name order (shards of the full run)."""
    import SimpleITK as sitk
    d = root / "acdc"
    pats = sorted(p.name[:-len("_ED.nii.gz")] for p in d.glob("*_ED.nii.gz"))
    if not pats:
        raise OneShotError(f"ACDC data not found under {d} (patientNNN_ED.nii.gz ...)")
    rd = lambda p: sitk.GetArrayFromImage(sitk.ReadImage(str(p)))
    groups = []
    for pat in pats[int(start):][: None if limit is None else int(limit)]:
        ed, es = rd(d / f"{pat}_ED.nii.gz"), rd(d / f"{pat}_ES.nii.gz")
        edl, esl = rd(d / f"{pat}_ED_label.nii.gz"), rd(d / f"{pat}_ES_label.nii.gz")
        for k in range(ed.shape[0]):
            if edl[k].any() and esl[k].any():
                groups.append((_img(ed[k], f"{pat}_ED_{k}"), edl[k],
                               [(_img(es[k], f"{pat}_ES_{k}"), esl[k])]))
    return groups


def lung4d_cases(root: Path, limit: int | None = None):  # noqa: ARG001
    d = root / "lung4d"
    if not (d / "ref_image.png").is_file():
        raise OneShotError(f"4D-Lung pair not found under {d}")
    m = lambda p: (_read_png(p) > 0).astype(np.uint8)
    return [(_img(_read_png(d / "ref_image.png"), "ref"), m(d / "ref_mask.png"),
             [(_img(_read_png(d / "test_image.png"), "test"), m(d / "test_mask.png"))])]


def make_method(method_name: str, preset: str | None = None, backend: str | None = None,
                checkpoint: str | None = None, device: str = "auto",
                overrides: dict[str, Any] | None = None):
    """Build a method by registry name (backend created from its name when needed)."""
    from oneshotsam.methods.registry import build_method
    return build_method(method_name, backend_name=backend, checkpoint=checkpoint, preset=preset,
                        device=device, **(overrides or {}))


def run_benchmark(dataset: str, method_name: str, data_root: str | Path, *,
                  limit: int | None = None, start: int = 0, out_dir: str | Path | None = None,
                  progress: ProgressFn = no_progress, echo: Callable[[str], None] | None = print,
                  **method_settings: Any) -> dict:
    """Run a 2D benchmark and return its summary (JSON-serialisable).

    Args:
        dataset: ``jsrt``, ``acdc`` or ``lung4d``.
        method_name: registry name (``medpersam-warp``, ``medpersam``, ``p2sam``, ``persam``).
        data_root: folder holding ``jsrt/``, ``acdc/``, ``lung4d/``.
        method_settings: ``preset``, ``backend``, ``checkpoint``, ``device``, ``overrides``
            (``{key: value}``) of :func:`make_method`.
        limit: JSRT: number of targets; ACDC: number of patients; None = all.
        start: ACDC only: skip the first ``start`` patients (name order), so that the
            448-pair run can be split into shards (``start``/``limit``) and combined.
        out_dir: when given, writes ``<dataset>_<method>.json`` (per-case scores) there.
        echo: where progress lines and the final table go (None = silent).
    Returns:
        ``{"dataset", "method", "preset", "cases", "per_class": {name: {"dice","iou"}},
        "mean_dice", "mean_iou", "wall_seconds", "method_seconds", "per_case": [...]}``.
    """
    ds = dataset.strip().lower()
    if ds not in DATASETS:
        raise OneShotError(f"unknown benchmark {dataset!r}: choose one of {', '.join(DATASETS)}")
    t0 = time.perf_counter()
    root = Path(data_root)
    bad = sorted(set(method_settings) - {"preset", "backend", "checkpoint", "device", "overrides"})
    if bad:
        raise TypeError(f"run_benchmark got unexpected settings {bad}")
    preset = method_settings.get("preset")
    method = make_method(method_name, **method_settings)
    if ds == "acdc":
        groups = acdc_cases(root, limit, start)
    else:
        groups = {"jsrt": jsrt_cases, "lung4d": lung4d_cases}[ds](root, limit)
    names = CLASS_NAMES[ds]
    per_case: list[dict] = []
    t_method = 0.0
    cancelled = False
    for gi, (ref, rl, pairs) in enumerate(groups):
        values = sorted(int(v) for v in np.unique(rl) if v != 0)
        tm = time.perf_counter()
        prog = progress
        if echo and progress is no_progress and len(groups) == 1:
            prog = _echo_progress(echo, t0)
        run = method.segment(ref, rl, [t for t, _ in pairs], progress=prog)
        t_method += time.perf_counter() - tm
        for (tgt, gt), res in zip(pairs, run.results):
            sc = _scores(res.labels, gt, values)
            if sc:
                per_case.append({"reference": ref.name, "target": tgt.name,
                                 "dice": {names.get(v, str(v)): d for v, (d, _) in sc.items()},
                                 "iou": {names.get(v, str(v)): i for v, (_, i) in sc.items()},
                                 "mean_dice": float(np.mean([d for d, _ in sc.values()])),
                                 "mean_iou": float(np.mean([i for _, i in sc.values()])),
                                 "confidence": float(res.confidence)})
        if run.cancelled:
            cancelled = True
            break
        if echo and len(groups) > 1 and (gi + 1) % 25 == 0:
            done = np.mean([c["mean_dice"] for c in per_case]) if per_case else float("nan")
            echo(f"  {gi + 1}/{len(groups)} pairs, running mean Dice {done:.4f}, "
                 f"{time.perf_counter() - t0:.0f} s")
    wall = time.perf_counter() - t0
    per_class = {}
    for n in names.values():
        ds_ = [c["dice"][n] for c in per_case if n in c["dice"]]
        is_ = [c["iou"][n] for c in per_case if n in c["iou"]]
        if ds_:
            per_class[n] = {"dice": float(np.mean(ds_)), "iou": float(np.mean(is_)), "cases": len(ds_)}
    summary = {
        "dataset": ds, "method": method_name,
        "preset": getattr(getattr(method, "config", None), "preset", preset),
        "cases": len(per_case), "calls": len(groups) if not cancelled else None,
        "per_class": per_class,
        "mean_dice": float(np.mean([c["mean_dice"] for c in per_case])) if per_case else None,
        "mean_iou": float(np.mean([c["mean_iou"] for c in per_case])) if per_case else None,
        "wall_seconds": round(wall, 1), "method_seconds": round(t_method, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()], "cancelled": cancelled,
        "per_case": per_case}
    if echo:
        echo(format_summary(summary))
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{ds}_{method_name}.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def _echo_progress(echo: Callable[[str], None], t0: float) -> ProgressFn:
    """A progress callback printing about ten lines per run."""
    def prog(done: int, total: int, msg: str) -> bool:
        if done == total or done % max(total // 10, 1) == 0:
            echo(f"  {done}/{total} {msg} ({time.perf_counter() - t0:.0f} s)")
        return True
    return prog


def format_summary(s: dict) -> str:
    lines = [f"{s['dataset']} / {s['method']} (preset {s['preset']}): {s['cases']} cases"]
    for n, v in s["per_class"].items():
        lines.append(f"  {n:<12s} Dice {v['dice']:.4f}  IoU {v['iou']:.4f}  ({v['cases']} cases)")
    if s["mean_dice"] is not None:
        lines.append(f"  {'mean':<12s} Dice {s['mean_dice']:.4f}  IoU {s['mean_iou']:.4f}")
    lines.append(f"  wall time {s['wall_seconds']:.1f} s (method {s['method_seconds']:.1f} s), "
                 f"load average {s['load_average'][0]}")
    return "\n".join(lines)
