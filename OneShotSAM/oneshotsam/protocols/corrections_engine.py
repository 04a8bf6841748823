"""What the correction benchmark calls: the product's session (or the full re-run it
replaces) and the peer, Slicer's "Fill between slices".

* :func:`open_session` -> an object with ``run(reference_labels)`` and
  ``update(labels, corrected_slices, erased_slices=(), approved_slices=(), target_index=None)``,
  both returning a :class:`~oneshotsam.volume.types.PropagationResult`:

  - ``"session"``: :class:`oneshotsam.volume.session.PropagationSession` (Update reuses
    what the first run built);
  - ``"rerun"``: :class:`FullRerun`, the full re-run baseline: every Update calls
    :func:`oneshotsam.volume.pipeline.propagate` again from scratch with
    ``reference_slices`` = every annotated or corrected non-empty slice and
    ``fixed_slices`` = the erased ones. A follow-up (``target_index`` given) cannot take
    corrections through ``propagate``: the baseline keeps the previous prediction and
    pastes the corrected slices in (nothing else changes), so its Update costs nothing;
  - ``"auto"``: the session when the module exists, else the re-run.

* :func:`records_of` / :func:`queue_of`: per-slice ``{slice: (confidence, flagged)}``
  and the review queue of one target of a result's report (``report["review_queue"]``
  when the engine gives one, else flagged slices by confidence,
  :func:`~oneshotsam.protocols.corrections_loop.build_queue`).
* :func:`fill_between_slices`: ITK's ``MorphologicalContourInterpolator`` along the
  slice axis only (pip package ``itk-morphologicalcontourinterpolation``), the
  algorithm of Slicer's Segment Editor effect "Fill between slices".

Numpy at import time; torch / itk inside the functions.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Sequence

import numpy as np

from oneshotsam.errors import OneShotError
from oneshotsam.protocols.corrections_loop import build_queue
from oneshotsam.types import Volume

ENGINES = ("auto", "session", "rerun")


def session_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("oneshotsam.volume.session") is not None


def engine_name(requested: str) -> str:
    """``session`` or ``rerun`` for ``requested`` (``auto`` picks the session when present)."""
    if requested not in ENGINES:
        raise OneShotError(f"unknown --update-engine {requested!r}: use {', '.join(ENGINES)}")
    if requested == "auto":
        return "session" if session_available() else "rerun"
    if requested == "session" and not session_available():
        raise OneShotError("--update-engine session needs oneshotsam.volume.session, which this "
                           "installation lacks: use --update-engine rerun")
    return requested


class FullRerun:
    """The full re-run baseline with the session's signature (module docstring)."""

    def __init__(self, reference: Volume, config, targets: Sequence[Volume] = (), method=None):
        self.reference, self.config, self.targets, self.method = reference, config, list(targets), method
        self._annotated: set[int] = set()
        self._fixed: set[int] = set()
        self._last = None

    def _propagate(self, labels: Volume, cfg):
        from oneshotsam.volume.pipeline import propagate

        return propagate(self.reference, labels, self.targets, cfg, method=self.method)

    def run(self, reference_labels: Volume, progress=None, on_slice=None):
        from oneshotsam.geometry import slice_geometry
        from oneshotsam.volume.slices import annotated_slices

        axis = slice_geometry(self.reference, self.config.axis).array_axis
        self._annotated = set(annotated_slices(np.asarray(reference_labels.voxels), axis))
        self._fixed = set()
        self._last = self._propagate(reference_labels, self.config)
        return self._last

    def update(self, labels: Volume, corrected_slices: Iterable[int], erased_slices: Iterable[int] = (),
               approved_slices: Iterable[int] = (), target_index: int | None = None,
               progress=None, on_slice=None):
        if self._last is None:
            raise OneShotError("update before run: call run(reference_labels) first")
        corrected = {int(k) for k in corrected_slices}
        erased = {int(k) for k in erased_slices}
        if target_index is not None:  # a follow-up: paste the corrections, keep the rest
            self._last = paste_slices(self._last, target_index, labels, corrected | erased,
                                      self.config.axis)
            return self._last
        self._annotated |= corrected - erased
        self._annotated -= erased
        self._fixed = (self._fixed | erased | {int(k) for k in approved_slices}) - self._annotated
        cfg = dataclasses.replace(self.config, reference_slices=tuple(sorted(self._annotated)),
                                  fixed_slices=tuple(sorted(self._fixed)))
        self._last = self._propagate(labels, cfg)
        return self._last


def paste_slices(result, target_index: int, labels: Volume, slices: Iterable[int], axis_name: str):
    """``result`` with ``slices`` of target ``target_index`` taken from ``labels`` (a copy;
    every other voxel and the report unchanged): a follow-up Update that only keeps the
    corrections."""
    from oneshotsam.geometry import slice_geometry
    from oneshotsam.volume.types import PropagationResult

    vols = list(result.label_volumes)
    v = vols[target_index]
    out = np.array(v.voxels, copy=True)
    axis = slice_geometry(v, axis_name).array_axis
    new = np.asarray(labels.voxels)
    for k in slices:
        idx = [slice(None)] * out.ndim
        idx[axis] = int(k)
        out[tuple(idx)] = new[tuple(idx)]
    vols[target_index] = Volume(out, v.ijk_to_lps, v.name, dict(v.meta))
    return PropagationResult(vols, result.report, False)


def open_session(engine: str, reference: Volume, config, targets: Sequence[Volume] = (), method=None):
    """The session of ``engine`` (``session`` / ``rerun``, see :func:`engine_name`)."""
    if engine == "session":
        from oneshotsam.volume.session import PropagationSession

        return PropagationSession(reference, config, targets, method=method)
    return FullRerun(reference, config, targets, method=method)


def _target_report(report: dict[str, Any], target_index: int) -> dict[str, Any]:
    targets = report.get("targets") or [{}]
    return targets[min(target_index, len(targets) - 1)] or {}


def records_of(report: dict[str, Any], target_index: int = 0) -> dict[int, tuple[float, bool]]:
    """``{slice: (confidence, flagged)}`` of the predicted (not annotated) slices of one
    target (processing grid: the reference's slices)."""
    out: dict[int, tuple[float, bool]] = {}
    for r in _target_report(report, target_index).get("per_slice") or []:
        if r.get("status") == "seed" and r.get("kind") in ("annotated", "fixed", "corrected",
                                                           "approved", "erased"):
            continue
        out[int(r["slice"])] = (float(r.get("confidence", 1.0)), bool(r.get("flagged", False)))
    return out


def queue_of(report: dict[str, Any], target_index: int = 0) -> list[int]:
    """The review queue of one target: ``report["review_queue"]`` (a list of slices, or
    one list per target) when present, else :func:`build_queue` of :func:`records_of`."""
    q = report.get("review_queue")
    if q is None:
        q = _target_report(report, target_index).get("review_queue")
    if q is None:
        return build_queue(records_of(report, target_index))
    if q and isinstance(q[0], (list, tuple)):
        q = q[min(target_index, len(q) - 1)]
    return [int(x["slice"]) if isinstance(x, dict) else int(x) for x in q]


def fill_between_slices(drawn: np.ndarray, axis: int) -> np.ndarray:
    """Slicer's "Fill between slices" on a label array holding only the drawn slices:
    ``MorphologicalContourInterpolator`` along ``axis`` (every label value). Fewer than
    two drawn slices: returned unchanged (the filter needs two; it never extrapolates)."""
    drawn = np.asarray(drawn)
    other = tuple(a for a in range(drawn.ndim) if a != axis)
    if int((drawn != 0).any(axis=other).sum()) < 2:
        return drawn.copy()
    try:
        import itk
        itk.MorphologicalContourInterpolator  # noqa: B018 -- the lazy attribute loads the module
    except (ImportError, AttributeError) as e:
        raise OneShotError("the Fill-between-slices peer needs ITK's MorphologicalContourInterpolator: "
                           "pip install itk-morphologicalcontourinterpolation (in the dev extra)") from e
    img = itk.image_from_array(np.ascontiguousarray(drawn.astype(np.uint8)))
    f = itk.MorphologicalContourInterpolator.New(img)
    f.SetAxis(drawn.ndim - 1 - axis)  # ITK index axes run opposite to NumPy's
    f.Update()
    return np.asarray(itk.array_from_image(f.GetOutput())).astype(drawn.dtype)


__all__ = ["ENGINES", "session_available", "engine_name", "FullRerun", "open_session",
           "records_of", "queue_of", "fill_between_slices", "paste_slices"]
