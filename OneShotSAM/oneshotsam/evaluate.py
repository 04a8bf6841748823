"""Overlap evaluation of predicted label maps against ground truth (2D or 3D).

Conventions:

* Per label value ``v``: ``Dice = 2|P∩G| / (|P| + |G|)`` and
  ``IoU = |P∩G| / |P∪G|`` with ``P = pred == v``, ``G = gt == v``.
* Empty-vs-empty (the label absent from both) scores 1.0: correctly
  predicting absence is a success. Absent from one side only scores 0.0.
* A case's mean is the mean over the evaluated labels; the table's overall
  mean is the mean of the case means (the Med-PerSAM JSRT protocol: average
  over classes, then over images). Per-label means average over cases.
* Files are paired by stem (``a.nii.gz`` with ``a.png``...); when a stem has
  no exact partner, one trailing tag among ``_label(s)``, ``_mask``, ``_seg``,
  ``_gt``, ``_image``, ``_img``, ``_pred``, ``_oneshotsam`` is ignored on both sides
  (``patient001_ED_label.nii.gz`` pairs with ``patient001_ED.nii.gz``, the output
  ``case01_oneshotsam.png`` with ``case01.png``).
* Predictions and ground truths must be label maps: a file with more distinct values
  than a mask may hold (:data:`oneshotsam.cli_inputs.MAX_LABELS`, the rule of the
  reference mask) or with non-integer values is an image given by mistake and refused.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from oneshotsam import medio
from oneshotsam.errors import OneShotError

_TAG = re.compile(r"(_labels?|_mask|_seg|_gt|_image|_img|_pred|_oneshotsam)$", re.IGNORECASE)


def _counts(pred: np.ndarray, gt: np.ndarray, value: int) -> tuple[int, int, int]:
    p, g = pred == value, gt == value
    return int(np.count_nonzero(p & g)), int(np.count_nonzero(p)), int(np.count_nonzero(g))


def _check_shapes(pred: np.ndarray, gt: np.ndarray, what: str = "") -> None:
    if pred.shape != gt.shape:
        raise OneShotError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape{what}: "
                           "evaluate labels on the same pixel grid")


def dice_iou(pred: np.ndarray, gt: np.ndarray, labels: Iterable[int] | None = None
             ) -> dict[int, dict[str, float]]:
    """Per label ``{"dice", "iou", "pred_voxels", "gt_voxels"}`` for 2D or 3D label arrays.

    ``labels`` defaults to the non-zero values of ``gt``. Shapes must match.
    """
    p, g = np.asarray(pred), np.asarray(gt)
    _check_shapes(p, g)
    values = sorted(int(v) for v in (labels if labels is not None else np.unique(g)) if int(v) != 0)
    out: dict[int, dict[str, float]] = {}
    for v in values:
        inter, n_p, n_g = _counts(p, g, v)
        union = n_p + n_g - inter
        dice = 1.0 if n_p + n_g == 0 else 2.0 * inter / (n_p + n_g)
        iou = 1.0 if union == 0 else inter / union
        out[v] = {"dice": dice, "iou": iou, "pred_voxels": n_p, "gt_voxels": n_g}
    return out


def dice(pred: np.ndarray, gt: np.ndarray, label: int = 1) -> float:
    """Dice of one label value (1.0 when absent from both)."""
    return dice_iou(pred, gt, [label])[int(label)]["dice"]


def iou(pred: np.ndarray, gt: np.ndarray, label: int = 1) -> float:
    """IoU (Jaccard) of one label value (1.0 when absent from both)."""
    return dice_iou(pred, gt, [label])[int(label)]["iou"]


@dataclass
class CaseScores:
    """Scores of one (prediction, ground truth) pair; ``scores[label] = {"dice", "iou", ...}``."""

    name: str
    pred_path: str
    gt_path: str
    scores: dict[int, dict[str, float]]
    notes: list[str] = field(default_factory=list)

    def mean(self, metric: str = "dice") -> float:
        vals = [s[metric] for s in self.scores.values()]
        return float(np.mean(vals)) if vals else math.nan


@dataclass
class EvalTable:
    """Per-case, per-label Dice / IoU with their means (see module docstring)."""

    labels: list[int]
    cases: list[CaseScores]
    unmatched_predictions: list[str] = field(default_factory=list)
    unmatched_ground_truth: list[str] = field(default_factory=list)

    def label_mean(self, label: int, metric: str = "dice") -> float:
        vals = [c.scores[label][metric] for c in self.cases if label in c.scores]
        return float(np.mean(vals)) if vals else math.nan

    def mean(self, metric: str = "dice") -> float:
        vals = [c.mean(metric) for c in self.cases if c.scores]
        return float(np.mean(vals)) if vals else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (NaN written as null)."""
        def num(x: float) -> float | None:
            return None if isinstance(x, float) and math.isnan(x) else x

        return {
            "labels": self.labels,
            "mean": {"dice": num(self.mean("dice")), "iou": num(self.mean("iou"))},
            "per_label": {str(v): {"dice": num(self.label_mean(v, "dice")), "iou": num(self.label_mean(v, "iou"))}
                          for v in self.labels},
            "cases": [{"name": c.name, "prediction": c.pred_path, "ground_truth": c.gt_path,
                       "mean": {"dice": num(c.mean("dice")), "iou": num(c.mean("iou"))},
                       "scores": {str(v): s for v, s in c.scores.items()}, "notes": c.notes}
                      for c in self.cases],
            "unmatched_predictions": self.unmatched_predictions,
            "unmatched_ground_truth": self.unmatched_ground_truth,
        }


def _list(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(paths, (str, Path)):
        p = Path(paths)
        if p.is_dir():
            return medio.supported_files(p)
        return [p]
    out: list[Path] = []
    for q in paths:
        out.extend(_list(q))
    return out


def _without_previews(paths: list[Path]) -> list[Path]:
    """Drop ``segment``'s colour previews: ``<x>_preview.png`` beside its label file ``<x>.png``
    (:mod:`oneshotsam.preview`)."""
    names = {p.name for p in paths}
    return [p for p in paths if not (p.name.endswith("_preview.png")
                                     and p.name[: -len("_preview.png")] + ".png" in names)]


def _key(path: Path, loose: bool) -> str:
    stem = medio.path_stem(path)
    return _TAG.sub("", stem) if loose else stem


def pair_by_stem(pred_paths: Sequence[Path], gt_paths: Sequence[Path]
                 ) -> tuple[list[tuple[Path, Path]], list[Path], list[Path]]:
    """``(pairs, unmatched predictions, unmatched ground truths)``: exact stems first,
    then stems without a trailing tag (module docstring). Raises on duplicate stems."""
    for side, paths in (("prediction", pred_paths), ("ground-truth", gt_paths)):
        stems = [medio.path_stem(p) for p in paths]
        dup = sorted({s for s in stems if stems.count(s) > 1})
        if dup:
            raise OneShotError(f"several {side} files share the stem(s) {dup}: keep one file per case")
    pairs: list[tuple[Path, Path]] = []
    preds, gts = list(pred_paths), list(gt_paths)
    for loose in (False, True):
        gt_by_key: dict[str, list[Path]] = {}
        for gp in gts:
            gt_by_key.setdefault(_key(gp, loose), []).append(gp)
        left = []
        for pp in preds:
            cands = gt_by_key.get(_key(pp, loose), [])
            if len(cands) == 1 and cands[0] in gts:
                pairs.append((pp, cands[0]))
                gts.remove(cands[0])
            else:
                left.append(pp)
        preds = left
    return sorted(pairs, key=lambda t: medio.path_stem(t[0])), preds, gts


def check_label_map(a: np.ndarray, path: Path, role: str) -> np.ndarray:
    """``a`` when it is a label map (integer values, at most ``MAX_LABELS`` classes);
    refuses a grey image given as ``role`` ("prediction", "ground truth")."""
    from oneshotsam.cli_inputs import MAX_LABELS

    if not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
        if not np.all(np.isfinite(a)) or not np.array_equal(a, np.round(a)):
            raise OneShotError(f"the {role} {path} holds non-integer values: it is an image, not a "
                               "label map (0 = background, 1..N = classes)")
    n = np.unique(a).size
    if n > MAX_LABELS + 1:
        raise OneShotError(f"the {role} {path} holds {n} distinct values: that looks like an image, "
                           f"not a label map (0 = background, 1..N = classes); give the label files "
                           f"(e.g. the *_oneshotsam.* outputs of segment / propagate)")
    return a


def _read_labels(path: Path, role: str = "prediction") -> tuple[np.ndarray, np.ndarray | None]:
    """Label array and its ijk->LPS affine (None for 2D files); refuses images (:func:`check_label_map`)."""
    if medio.split_suffix(path)[1] in medio.IMAGE2D_SUFFIXES:
        raw = medio.read_label_image2d(path)  # palette PNG -> its indices
        a = np.asarray(raw.array)
        if a.ndim == 3:
            if not (np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2])):
                raise OneShotError(f"{path} is a colour image, not a label map: save labels as a grey PNG")
            a = a[..., 0]
        return check_label_map(a, path, role), None
    vol = medio.read_label_volume(path)
    return check_label_map(np.asarray(vol.voxels), path, role), np.asarray(vol.ijk_to_lps)


def evaluate_pairs(pred_paths: str | Path | Sequence[str | Path], gt_paths: str | Path | Sequence[str | Path],
                   labels: Sequence[int] | None = None) -> EvalTable:
    """Score predictions against ground truth, paired by file stem.

    Args:
        pred_paths, gt_paths: folders or lists of files (2D images or label volumes).
        labels: label values to score; default: the union of the non-zero values
            over all ground-truth files.
    Raises :class:`OneShotError` when nothing pairs or a pair differs in shape.
    """
    preds, gts = _without_previews(_list(pred_paths)), _list(gt_paths)
    pairs, lone_p, lone_g = pair_by_stem(preds, gts)
    if not pairs:
        raise OneShotError(
            f"no prediction pairs with a ground-truth file by name ({len(preds)} predictions, "
            f"{len(gts)} ground truths): name each prediction after its ground-truth file stem")
    loaded = [(pp, gp, *_read_labels(pp), *_read_labels(gp, "ground truth")) for pp, gp in pairs]
    if labels is None:
        values: set[int] = set()
        for *_, g, _ga in loaded:
            values.update(int(v) for v in np.unique(g) if v != 0)
        label_list = sorted(values)
    else:
        label_list = sorted({int(v) for v in labels if int(v) != 0})
    cases = []
    for pp, gp, p, pa, g, ga in loaded:
        _check_shapes(p, g, f" for {pp.name} vs {gp.name}")
        notes = []
        if pa is not None and ga is not None and not np.allclose(pa, ga, atol=1e-3):
            notes.append("prediction and ground truth have different physical geometry (same shape)")
        cases.append(CaseScores(medio.path_stem(gp), str(pp), str(gp), dice_iou(p, g, label_list), notes))
    return EvalTable(label_list, cases, [str(p) for p in lone_p], [str(g) for g in lone_g])


def format_table(table: EvalTable) -> str:
    """A plain-text table: one row per case, Dice/IoU per label and the case mean; a mean row."""
    head = ["case"] + [f"{m}[{v}]" for v in table.labels for m in ("dice", "iou")] + ["dice", "iou"]
    rows = [[c.name] + [f"{c.scores[v][m]:.4f}" for v in table.labels for m in ("dice", "iou")]
            + [f"{c.mean('dice'):.4f}", f"{c.mean('iou'):.4f}"] for c in table.cases]
    rows.append(["mean"] + [f"{table.label_mean(v, m):.4f}" for v in table.labels for m in ("dice", "iou")]
                + [f"{table.mean('dice'):.4f}", f"{table.mean('iou'):.4f}"])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    fmt = lambda r: "  ".join(s.ljust(w) if i == 0 else s.rjust(w) for i, (s, w) in enumerate(zip(r, widths)))  # noqa: E731
    lines = [fmt(head), "-" * len(fmt(head))] + [fmt(r) for r in rows[:-1]] + ["-" * len(fmt(head)), fmt(rows[-1])]
    for name, lst in (("predictions without ground truth", table.unmatched_predictions),
                      ("ground truths without prediction", table.unmatched_ground_truth)):
        if lst:
            lines.append(f"{len(lst)} {name}: " + ", ".join(Path(x).name for x in lst[:10])
                         + (" ..." if len(lst) > 10 else ""))
    return "\n".join(lines)


def to_json(table: EvalTable, path: str | Path | None = None) -> str:
    """The table as JSON text; also written (atomically) to ``path`` when given."""
    text = json.dumps(table.to_dict(), indent=2)
    if path is not None:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    return text
