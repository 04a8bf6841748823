"""The offline self-test of the module (used by ``OneShotSAMTest`` in Slicer and by pytest).

Two variants, both through the real Logic on a synthetic case in the given scene:

* ``"numpy"``: a small numpy-only 2D method (:class:`IntensityRangeMethod`) is
  injected through the Logic's ``method=`` argument, so the test passes in a
  clean Slicer without torch, SAM weights or network. It still exercises MRML
  writes, live review rows, Undo, Update (review and correct) and scene close.
* ``"persam"`` (needs torch and segment-anything): PerSAM on a tiny
  random-weight SAM checkpoint written to a temporary folder
  (``oneshotsam.backends.tiny``). Random weights segment nothing meaningful:
  it checks the plumbing, not accuracy.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from oneshotsam.checks import label_values
from oneshotsam.methods.base import RunResult, TargetResult
from oneshotsam.progress import ProgressFn, no_progress


def _dilate(mask: np.ndarray, reach: int) -> np.ndarray:
    """Square dilation of a 2D boolean mask by ``reach`` pixels (numpy only)."""
    out = mask.copy()
    for _ in range(reach):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


class IntensityRangeMethod:
    """A numpy-only one-shot method for the self-test (not for clinical use).

    Label ``v`` in a target = pixels within ``reach`` pixels of the reference's
    ``v`` region whose intensity is within ``k_std`` standard deviations of that
    region's mean intensity. Confidence = Dice of that mask with the reference
    region. Follows :class:`oneshotsam.methods.base.OneShotMethod`
    (``progress`` after each target; False returns the finished ones, cancelled).
    """

    name = "selftest-intensity"

    def __init__(self, reach: int = 3, k_std: float = 3.0) -> None:
        self.reach, self.k_std = reach, k_std
        self.calls = 0

    def segment(self, reference: Any, reference_labels: np.ndarray, targets: Sequence[Any],
                progress: ProgressFn = no_progress) -> RunResult:
        self.calls += 1
        ref = np.asarray(reference_labels)
        values = label_values(ref)
        results: list[TargetResult] = []
        for n, target in enumerate(targets):
            grey = target.grey()
            lab = np.zeros(target.shape_hw, dtype=ref.dtype)
            conf: dict[int, float] = {}
            for v in values:
                src = ref == v if ref.shape == target.shape_hw else np.zeros(target.shape_hw, bool)
                px = reference.grey()[ref == v]
                tol = max(self.k_std * float(px.std()), 0.05)
                m = _dilate(src, self.reach) & (np.abs(grey - float(px.mean())) <= tol)
                lab[m] = v
                conf[v] = float(2.0 * (m & src).sum() / max(1, m.sum() + src.sum()))
            absent = [v for v in values if not (lab == v).any()]
            results.append(TargetResult(lab, float(np.mean(list(conf.values()))), conf, {}, absent))
            if not progress(n + 1, len(targets), f"{self.name}: target {n + 1}/{len(targets)}"):
                return RunResult(results, cancelled=True)
        return RunResult(results)


def run_selftest(scene: Any, method: str = "persam", workdir: str | None = None) -> dict[str, Any]:
    """Run a tiny propagation through the Logic and check its effects.

    Args:
        method: ``"numpy"`` (no torch needed, see module docstring) or ``"persam"``
            (tiny random-weight SAM).

    Returns:
        ``{"rows": n_rows, "written": [...slice indices], "undo_ok": bool, ...}``
        (the numpy variant adds ``"dice"`` and ``"update_ok"``).

    Raises:
        AssertionError: a check failed (this is a test).
    """
    if method == "numpy":
        return run_numpy_selftest(scene)
    from oneshotsam.backends.tiny import save_tiny_checkpoint

    from OneShotSAMLib import parameters as P
    from OneShotSAMLib.logic import OneShotSAMLogic
    from OneShotSAMLib.mrml_bridge import labels_from_segments
    from OneShotSAMLib.synthetic import make_case

    case = make_case(scene, shape_kji=(6, 32, 32), annotated=(3,), spacing=(1.0, 1.0, 2.0),
                     name="OneShotSAM self-test")
    before = labels_from_segments(case.segmentation_node, [case.segment_id], case.volume_node)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        ckpt = save_tiny_checkpoint(Path(tmp) / "sam-tiny-test.pth", "sam-tiny-test")
        logic = OneShotSAMLogic(scene)
        node = logic.parameter_node()
        P.set_inputs(node, case.volume_node, case.segmentation_node)
        P.write_settings(node, P.RunSettings(method=method, backend="sam-tiny-test",
                                             checkpoint=str(ckpt), device="cpu",
                                             segment_ids=(case.segment_id,)))
        ticks: list[int] = []
        out = logic.run(progress=lambda d, t, m: ticks.append(d) is None)
        logic.release_model()
    after = labels_from_segments(case.segmentation_node, [case.segment_id], case.volume_node)
    assert not out.cancelled, "the run was cancelled"
    assert ticks, "progress was never reported"
    np.testing.assert_array_equal(after[3], before[3])          # the annotation is kept
    written = sorted(r.slice_index for r in out.rows)
    assert 3 not in written and set(written) <= set(range(6))
    _assert_queue_order(out)
    logic.undo()
    restored = labels_from_segments(case.segmentation_node, [case.segment_id], case.volume_node)
    undo_ok = bool(np.array_equal(restored, before))
    assert undo_ok, "undo did not restore the segmentation"
    return {"rows": len(out.rows), "written": written, "undo_ok": undo_ok,
            "report": out.report}


def _assert_queue_order(out: Any) -> None:
    """The review rows of a self-mode run follow the engine's review queue."""
    queue = [int(k) for k in out.report["engine"][-1]["review_queue"]]
    shown = [r.slice_index for r in out.rows]
    assert shown == [k for k in queue if k in shown], "review rows are not in the queue's order"


def run_numpy_selftest(scene: Any) -> dict[str, Any]:
    """The torch-free self-test: run, live rows, undo, edit + Update, scene close."""
    from OneShotSAMLib import parameters as P
    from OneShotSAMLib.logic import OneShotSAMLogic
    from OneShotSAMLib.mrml_bridge import SliceWriter, labels_from_segments
    from OneShotSAMLib.synthetic import dice, make_case

    case = make_case(scene, shape_kji=(8, 32, 32), annotated=(4,), spacing=(1.0, 1.0, 2.0),
                     name="OneShotSAM self-test")

    def labels() -> np.ndarray:
        return labels_from_segments(case.segmentation_node, [case.segment_id], case.volume_node)

    before = labels()
    logic = OneShotSAMLogic(scene)
    node = logic.parameter_node()
    P.set_inputs(node, case.volume_node, case.segmentation_node)
    P.write_settings(node, P.RunSettings(method="persam", device="cpu",
                                         segment_ids=(case.segment_id,)))
    seen: list[int] = []
    method = IntensityRangeMethod()
    out = logic.run(progress=lambda d, t, m: True, method=method,
                    on_row=lambda row: seen.append(len(logic.rows)))
    after = labels()
    assert not out.cancelled and method.calls > 0, "the injected method did not run"
    np.testing.assert_array_equal(after[4], before[4])          # the annotation is kept
    written = sorted(r.slice_index for r in out.rows)
    assert written == [k for k in range(8) if k != 4], f"written slices {written}"
    assert seen == list(range(1, len(written) + 1)), "review rows were not reported as they finished"
    _assert_queue_order(out)
    d = dice(after, case.truth_kji)
    assert d > 0.8, f"the synthetic blob was not followed (Dice {d:.3f})"
    assert logic.can_undo()
    logic.undo()
    undo_ok = bool(np.array_equal(labels(), before))
    assert undo_ok, "undo did not restore the segmentation"

    # review and correct: edit one written slice, Update keeps it and rewrites the rest
    logic.run(method=method)
    edit = np.zeros(case.truth_kji.shape[1:], np.uint8)
    edit[8:20, 10:22] = 1
    SliceWriter(case.segmentation_node, case.volume_node).write(case.segment_id, 0, 1, edit)
    upd = logic.run(method=method, update=True)
    lab = labels()
    rec = P.read_run_record(node)
    update_ok = bool(np.array_equal(lab[1], edit) and 1 not in [r.slice_index for r in upd.rows]
                     and rec["reference_slices"] == [1, 4] and np.array_equal(lab[4], before[4]))
    assert update_ok, "Update did not keep the edited slice as a reference"
    logic.undo()                                                 # undoes the Update only
    np.testing.assert_array_equal(labels()[1], edit)

    # closing the scene forgets the undo step and the rows (node IDs are reused after it)
    scene.Clear(0)
    assert not logic.can_undo() and not logic.rows, "the closed scene's undo step survived"
    return {"rows": len(out.rows), "written": written, "undo_ok": undo_ok,
            "update_ok": update_ok, "dice": round(d, 4), "report": out.report}
