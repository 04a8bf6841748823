"""A propagation session: the first run, then Updates after the user's corrections.

::

    session = PropagationSession(reference, config, targets=(), method=None)
    result = session.run(reference_labels)            # first propagation
    result = session.update(labels, corrected_slices=[k], erased_slices=[], approved_slices=[])

``labels`` is the whole label volume as the user now has it: the reference
volume's labels (``target_index=None``) or, for a follow-up, that target's labels in
its own grid. ``corrected_slices`` become anchors (for a follow-up: anchors of that
visit), ``erased_slices`` were emptied by the user (the structure ends there on that
side: nothing is drawn beyond unless another annotation lies beyond),
``approved_slices`` are kept exactly as they are and bound later Updates.

What an Update recomputes (:mod:`oneshotsam.volume.gaps`): anchors split the slices
into gaps; only the gaps bounded by a corrected or erased slice are walked again,
with the engine trained by the first run (no retraining); every other slice keeps
its labels voxel for voxel, and the corrected slices are kept exactly. The result's
report lists ``update.recomputed_slices``; per slice ``confidence`` (its order ranks
how likely the slice is wrong), ``flagged``, and ``review_queue``
(:mod:`oneshotsam.volume.confidence`). Numpy at import time.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any, Callable, Sequence

import numpy as np

from oneshotsam.errors import OneShotError
from oneshotsam.methods.base import OneShotMethod
from oneshotsam.progress import ProgressFn, no_progress
from oneshotsam.types import Volume
from oneshotsam.volume.chain import SliceOutcome
from oneshotsam.volume.confidence import review_queue
from oneshotsam.volume.gaps import gaps_touching, plan_gaps
from oneshotsam.volume.jobs import (JobContext, JobProgress, JobState, emit_within, finish_job,
                                    walk_gaps)
from oneshotsam.volume.types import PropagationConfig, PropagationResult, SliceEvent, elapsed


class PropagationSession:
    """Keeps what the first run built (trained warp state, encodings, per-slice results)
    so an Update recomputes only the slices a correction changes."""

    def __init__(self, reference: Volume, config: PropagationConfig = PropagationConfig(),
                 targets: Sequence[Volume] = (), method: OneShotMethod | None = None) -> None:
        self.reference, self.config = reference, config
        self.targets, self.method = list(targets), method
        self.result: PropagationResult | None = None
        self.ctx: JobContext | None = None
        self.states: list[JobState] = []
        self._refs: dict[int, set[int]] = {}  # Updates without a kept state: references per job
        self._followups: dict[int, dict[str, Any]] = {}  # per follow-up: first labels, edits

    def run(self, reference_labels: Volume, progress: ProgressFn = no_progress,
            on_slice: Callable[[SliceEvent], None] | None = None) -> PropagationResult:
        """The first propagation, through :func:`oneshotsam.volume.pipeline.propagate`; keeps
        its state (a ``propagate`` that returns none, e.g. a test's stand-in, makes every
        Update a full re-run with the corrections as references)."""
        from oneshotsam.volume import pipeline

        res = pipeline.propagate(self.reference, reference_labels, self.targets, self.config,
                                 progress, on_slice, self.method)
        self.ctx, self.states = res.state if res.state is not None else (None, [])
        self._refs, self._followups = {}, {}
        self.result = res
        return res

    def update(self, labels: Volume, corrected_slices: Sequence[int],
               erased_slices: Sequence[int] = (), approved_slices: Sequence[int] = (),
               target_index: int | None = None, progress: ProgressFn = no_progress,
               on_slice: Callable[[SliceEvent], None] | None = None) -> PropagationResult:
        """Propagate again after corrections (see the module docstring).

        Raises:
            OneShotError: no finished first run, labels on another grid, a slice index
                outside the volume, or ``target_index`` not a target of this session.
        """
        t0 = time.perf_counter()
        if self.result is None or self.result.cancelled:
            raise OneShotError("Update needs a finished first run: call session.run(reference_labels)")
        if target_index is None and self.targets:
            raise OneShotError("this session propagates onto follow-ups: pass target_index (the "
                               "follow-up whose slices were corrected), or start a new run to change "
                               "the reference annotation")
        ti = 0 if target_index is None else int(target_index)
        if not 0 <= ti < max(len(self.targets), 1):
            raise OneShotError(f"target_index {target_index} is not a follow-up of this session "
                               f"(0..{max(len(self.targets), 1) - 1})")
        if self.ctx is None:
            return self._rerun(labels, corrected_slices, erased_slices, approved_slices,
                               target_index, progress, on_slice)
        state = self.states[ti]
        grid = state.target if state.followup else self.reference
        edits = _Edits.read(labels, grid, self.ctx.cfg.axis, corrected_slices, erased_slices,
                            approved_slices)
        proc = _to_processing(self.ctx, state, edits)
        changed = _set_anchors(state, proc)
        cleared = _clear_beyond_erased(state, proc) if state.followup else set()
        changed |= cleared
        todo = gaps_touching(plan_gaps(self.ctx.sg.n_slices, list(state.anchors),
                                       min(state.in_fov), max(state.in_fov)), changed)
        if state.followup and self.ctx.dense and not self.ctx.cfg.extend_beyond_contour:
            todo = []  # beyond a planning contour stays empty, as the first run left it
        recomputed = sorted({k for g in todo for k in g.indices} | cleared)
        steps = sum(len(g.indices) * (2 if g.lo is not None and g.hi is not None else 1) for g in todo)
        ctx = dataclasses.replace(self.ctx, progress=JobProgress(progress, max(steps, 1)),
                                  on_slice=on_slice if not state.followup else None)
        cancelled = walk_gaps(ctx, state, todo)
        state.outcomes.update({k: state.anchors[k] for k in proc})
        if on_slice is not None and not state.followup:
            for k in sorted(proc):
                emit_within(state.anchors[k], on_slice, ctx.sg)
        before = self.result.label_volumes[ti]
        state.report = copy.deepcopy(state.report)  # the previous result keeps its report
        vol, rep, _ = finish_job(dataclasses.replace(ctx, on_slice=None), state, cancelled, t0)
        refined: set[int] = set()
        if state.followup:
            touched = set(recomputed) | set(proc)
            from oneshotsam.geometry import slice_geometry

            tsg = slice_geometry(state.target, ctx.cfg.axis)
            proc_of_t = _processing_slice_of_target(ctx, state, tsg)
            vol = _compose_followup(tsg, proc_of_t, before, vol, edits, touched)
            walks = {}
            if self.ctx.dense:
                from oneshotsam.volume.followup_update import neighbour_walks

                cache = self._followups.setdefault(state.index, {}).setdefault("walks", {})
                walks = neighbour_walks(self.ctx, state, tsg, proc_of_t, cache)
            vol, refined = self._refine_followup(tsg, proc_of_t, state, before, vol, edits, touched,
                                                 walks)
            if on_slice is not None:
                _emit_followup(ctx, state, vol, touched | _processing_of(ctx, state, refined),
                               on_slice)
        rep["update"] = {"corrected_slices": sorted(edits.corrected), "erased_slices": sorted(edits.erased),
                         "approved_slices": sorted(edits.approved),
                         "recomputed_slices": recomputed, "seconds": elapsed(t0),
                         **({"refined_slices": sorted(refined)} if state.followup else {}),
                         **({"walked_slices": sorted(walks)} if state.followup and walks else {})}
        rep["anchors"] = {str(k): o.info.get("kind", "seed") for k, o in sorted(state.anchors.items())}
        self.result = _replace_job(self.result, ti, vol, rep, cancelled)
        return self.result

    def _refine_followup(self, tsg, proc_of_t: list[int], state: JobState, before: Volume,
                         vol: Volume, edits: "_Edits", touched: set[int],
                         walks: dict[int, list[np.ndarray]] | None = None) -> tuple[Volume, set[int]]:
        """What the follow-up's corrections say about its other slices
        (:func:`oneshotsam.volume.followup_update.label_ends_rule` with its shape carry and
        ``walks`` from :func:`~oneshotsam.volume.followup_update.neighbour_walks`, from the first run's labels and every edit
        so far); returns the labels and the target slices changed. ``tsg``: the follow-up's
        slice geometry; ``proc_of_t``: processing slice of each of its slices."""
        from oneshotsam.volume.followup_update import NEIGHBOUR_WALK, SHAPE_CARRY, label_ends_rule

        m = self._followups.setdefault(state.index, {})
        m.setdefault("base", np.asarray(before.voxels))
        m.setdefault("edited", {})
        m.setdefault("frozen", set())
        for kind, ks in (("approved", edits.approved), ("corrected", edits.corrected),
                         ("erased", edits.erased)):
            m["edited"].update({int(k): kind for k in ks})
        m["frozen"] |= {s for s in range(tsg.n_slices) if proc_of_t[s] in touched}
        out, changed = label_ends_rule(m["base"], np.asarray(vol.voxels), tsg.array_axis,
                                       m["edited"], m["frozen"] - set(m["edited"]), SHAPE_CARRY,
                                       walks, NEIGHBOUR_WALK)
        return Volume(out, vol.ijk_to_lps, vol.name, dict(vol.meta)), changed

    def _rerun(self, labels: Volume, corrected: Sequence[int], erased: Sequence[int],
               approved: Sequence[int], target_index: int | None, progress: ProgressFn,
               on_slice: Callable[[SliceEvent], None] | None) -> PropagationResult:
        """An Update without a kept state: propagate again, the corrected slices as
        references (for a follow-up: within that follow-up, from its corrected slices)."""
        from oneshotsam.volume import pipeline

        ti = -1 if target_index is None else int(target_index)
        first = set(self.result.report.get("reference", {}).get("reference_slices", []))
        refs = self._refs.setdefault(ti, first | set(self.config.reference_slices or ())
                                     if ti < 0 else set())
        refs |= {int(k) for k in corrected}
        fixed = {int(k) for k in erased} | {int(k) for k in approved}
        cfg = dataclasses.replace(self.config, reference_slices=tuple(sorted(refs)),
                                  fixed_slices=tuple(sorted(fixed - refs)))
        if ti < 0:
            self.result = pipeline.propagate(self.reference, labels, (), cfg, progress, on_slice,
                                             self.method)
            return self.result

        def on_target(ev: SliceEvent) -> None:
            ev.target_index = ti
            if on_slice is not None:
                on_slice(ev)

        res = pipeline.propagate(self.targets[ti], labels, (), cfg, progress, on_target, self.method)
        reports = res.report.get("targets") or [res.report]
        if not res.label_volumes or len(self.result.label_volumes) <= ti:
            self.result = res  # a stand-in engine without volumes: nothing to put together
            return res
        self.result = _replace_job(self.result, ti, res.label_volumes[0], reports[0], res.cancelled)
        return self.result


@dataclasses.dataclass
class _Edits:
    """The user's edits in the grid of the volume they were made on."""

    labels: np.ndarray
    array_axis: int
    corrected: set[int]
    erased: set[int]
    approved: set[int]

    @classmethod
    def read(cls, labels: Volume, grid: Volume, axis: str, corrected: Sequence[int],
             erased: Sequence[int], approved: Sequence[int]) -> "_Edits":
        from oneshotsam.geometry import get_slice, slice_geometry
        from oneshotsam.volume.slices import check_label_grid

        lab = check_label_grid(grid, labels)
        sg = slice_geometry(grid, axis)
        sets = [{int(k) for k in s} for s in (corrected, erased, approved)]
        for name, s in zip(("corrected", "erased", "approved"), sets):
            bad = sorted(k for k in s if not 0 <= k < sg.n_slices)
            if bad:
                raise OneShotError(f"{name} slice(s) {bad} outside the volume (0..{sg.n_slices - 1} "
                                   f"along {axis})")
        corr, era, appr = sets
        both = sorted((corr | appr) & era)
        if both:
            raise OneShotError(f"slice(s) {both} are both erased and corrected/approved: say which")
        empty = {k for k in corr if not np.any(get_slice(lab, sg.array_axis, k))}
        return cls(lab, sg.array_axis, corr - empty, era | empty, appr - corr)


def _to_processing(ctx: JobContext, state: JobState, edits: _Edits) -> dict[int, SliceOutcome]:
    """The edited slices as anchors of the processing grid: ``{slice: outcome}``."""
    from oneshotsam.geometry import get_slice

    kinds = {**{k: "approved" for k in edits.approved}, **{k: "corrected" for k in edits.corrected},
             **{k: "erased" for k in edits.erased}}
    if not state.followup:
        return {k: SliceOutcome(k, np.asarray(get_slice(edits.labels, edits.array_axis, k)), 1.0,
                                False, "seed", None, {"kind": kind}) for k, kind in kinds.items()}
    from oneshotsam.geometry import resample_volume

    tgt = state.target
    lab = Volume(edits.labels, tgt.ijk_to_lps, "labels")
    if state.align.transform is None and _same(tgt, ctx.reference):
        proc_lab = edits.labels
    else:
        proc_lab = np.asarray(resample_volume(lab, ctx.reference, state.align.transform, "nearest",
                                              0).voxels)
    t_of_p = _target_slice_of(ctx, state)
    out = {}
    for k in state.in_fov:
        kind = kinds.get(t_of_p[k])
        if kind is not None:
            out[k] = SliceOutcome(k, np.asarray(get_slice(proc_lab, ctx.sg.array_axis, k)), 1.0, False,
                                  "seed", None, {"kind": kind, "target_slice": int(t_of_p[k])})
    if not out:
        raise OneShotError("none of the edited follow-up slices lies inside the processed field "
                           "of view")
    return out


def _same(a: Volume, b: Volume) -> bool:
    from oneshotsam.geometry import same_grid

    return bool(same_grid(a, b))


def _target_slice_of(ctx: JobContext, state: JobState) -> list[int]:
    """For each processing slice, the follow-up's slice (its own slicing) at the same position."""
    from oneshotsam.geometry import ijk_to_lps_points, lps_to_ijk_points, slice_geometry

    tsg = slice_geometry(state.target, ctx.cfg.axis)
    shape_ijk = np.array(ctx.reference.shape_kji[::-1], dtype=np.float64)
    c = 2 - ctx.sg.array_axis
    centres = np.tile((shape_ijk - 1) / 2.0, (ctx.sg.n_slices, 1))
    centres[:, c] = np.arange(ctx.sg.n_slices)
    pts = ijk_to_lps_points(ctx.reference, centres)
    if state.align.transform is not None:
        pts = np.array([state.align.transform.TransformPoint(tuple(float(x) for x in p)) for p in pts])
    tk = lps_to_ijk_points(state.target, pts)[:, 2 - tsg.array_axis]
    return [int(np.clip(np.rint(x), 0, tsg.n_slices - 1)) for x in tk]


def _set_anchors(state: JobState, proc: dict[int, SliceOutcome]) -> set[int]:
    """Make the edited slices anchors; returns the anchors whose labels changed
    (their gaps are recomputed). Approving a slice changes nothing around it."""
    changed = set()
    for k, o in proc.items():
        old = state.anchors.get(k) or state.outcomes.get(k)
        same = old is not None and np.array_equal(np.asarray(old.labels), np.asarray(o.labels))
        if o.info["kind"] == "approved" and old is not None and not same:
            o.info["kind"] = "corrected"  # approved after an edit: a correction
        if o.info["kind"] != "approved" and (k not in state.anchors or not same):
            changed.add(k)
        state.anchors[k] = o
    return changed


def _clear_beyond_erased(state: JobState, proc: dict[int, SliceOutcome]) -> set[int]:
    """A follow-up's slice the user emptied ends the structure: the cross-visit
    predictions beyond it (away from the structure's middle, up to the next slice the
    user drew) are emptied too. Returns the slices emptied."""
    drawn = [k for k, o in state.anchors.items() if o.labels.any()]
    if not drawn:
        return set()
    middle = float(np.median(drawn))
    out = set()
    for e in (k for k, o in proc.items() if o.info["kind"] == "erased"):
        step = 1 if e > middle else -1
        k = e + step
        while k in state.anchors or k in state.outcomes:
            a = state.anchors.get(k)
            if a is not None and a.info.get("kind") in ("corrected", "approved"):
                break
            o = state.anchors.get(k) or state.outcomes[k]
            if o.labels.any():
                o.labels = np.zeros_like(o.labels)
                o.status = "stopped" if o.status != "seed" else o.status
                o.info["review"] = f"emptied: beyond slice {e}, which you erased"
                out.add(k)
            k += step
    return out


def _compose_followup(tsg, proc_of_t: list[int], before: Volume, after: Volume, edits: _Edits,
                      touched: set[int]) -> Volume:
    """The follow-up's labels: the previous ones, with the target slices that lie on a
    recomputed processing slice (``proc_of_t``: processing slice of each slice of ``tsg``,
    the follow-up's slice geometry) taken from ``after`` and the edited slices exactly as
    drawn."""
    from oneshotsam.geometry import get_slice, set_slice

    out = np.array(before.voxels, copy=True)
    for s in range(tsg.n_slices):
        if s in edits.corrected or s in edits.erased or s in edits.approved:
            set_slice(out, tsg.array_axis, s, get_slice(edits.labels, tsg.array_axis, s))
        elif proc_of_t[s] in touched:
            set_slice(out, tsg.array_axis, s, get_slice(np.asarray(after.voxels), tsg.array_axis, s))
    return Volume(out, before.ijk_to_lps, before.name, dict(before.meta))


def _processing_slice_of_target(ctx: JobContext, state: JobState, tsg) -> list[int]:
    from oneshotsam.geometry import ijk_to_lps_points, lps_to_ijk_points

    shape_ijk = np.array(state.target.shape_kji[::-1], dtype=np.float64)
    c = 2 - tsg.array_axis
    centres = np.tile((shape_ijk - 1) / 2.0, (tsg.n_slices, 1))
    centres[:, c] = np.arange(tsg.n_slices)
    ref_pts = state.align.target_to_reference_points(ijk_to_lps_points(state.target, centres))
    ref_k = lps_to_ijk_points(ctx.reference, ref_pts)[:, 2 - ctx.sg.array_axis]
    return [int(np.clip(np.rint(x), 0, ctx.sg.n_slices - 1)) for x in ref_k]


def _processing_of(ctx: JobContext, state: JobState, target_slices: set[int]) -> set[int]:
    """The processing slices at the positions of ``target_slices`` of the follow-up."""
    t_of_p = _target_slice_of(ctx, state)
    return {k for k in state.in_fov if t_of_p[k] in target_slices}


def _emit_followup(ctx: JobContext, state: JobState, vol: Volume, touched: set[int],
                   on_slice: Callable[[SliceEvent], None]) -> None:
    from oneshotsam.volume.followup import emit_target_events

    emit_target_events(state.index, vol, state.target, ctx.reference, state.align, ctx.sg,
                       {k: state.outcomes[k] for k in touched if k in state.outcomes}, ctx.cfg.axis,
                       on_slice)


def _replace_job(result: PropagationResult, ti: int, vol: Volume, rep: dict[str, Any],
                 cancelled: bool) -> PropagationResult:
    volumes = list(result.label_volumes)
    volumes[ti] = vol
    report = copy.deepcopy({k: v for k, v in result.report.items() if k != "targets"})
    jobs = list(result.report.get("targets") or [{} for _ in volumes])
    report["targets"] = [rep if i == ti else r for i, r in enumerate(jobs)]
    report["review_queue"] = list(report["targets"][0].get("review_queue", []))
    report["cancelled"] = bool(cancelled)
    return PropagationResult(volumes, report, bool(cancelled))


__all__ = ["PropagationSession", "review_queue"]
