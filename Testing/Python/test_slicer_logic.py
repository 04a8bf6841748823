"""OneShotSAM Logic against real MRML classes (slicer-core), with a fake engine.

The fake ``propagate`` (below, test-only) obeys the volume pipeline contract
(SliceEvents in the target grid, progress with cancel, reference slices
skipped) and copies the nearest reference slice, so every written slice is
known exactly: these tests check the Logic's writing, undo, cancel,
review-and-correct and input checks. The real engine runs in
test_slicer_engine.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

MODULE_DIR = Path(__file__).resolve().parents[2] / "OneShotSAM"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

pytest.importorskip("slicer")

from oneshotsam.geometry import get_slice, slice_geometry  # noqa: E402
from oneshotsam.errors import OneShotError  # noqa: E402
from oneshotsam.volume import pipeline as pipeline_mod  # noqa: E402
from oneshotsam.volume.pipeline import PropagationResult, SliceEvent  # noqa: E402

from OneShotSAMLib import parameters as P  # noqa: E402
from OneShotSAMLib.logic import OneShotSAMLogic, ProgressClock  # noqa: E402
from OneShotSAMLib.mrml_bridge import SliceWriter, labels_from_segments  # noqa: E402
from OneShotSAMLib.synthetic import make_case  # noqa: E402


class FakePipeline:
    """Records calls; labels of slice k = labels of the nearest reference slice."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, reference, reference_labels, targets=(), config=None, progress=None,
                 on_slice=None, method=None):
        self.calls.append({"config": config, "n_targets": len(targets),
                           "labels": np.array(reference_labels.voxels)})
        a = slice_geometry(reference, config.axis).array_axis
        lab = np.asarray(reference_labels.voxels)
        refs = list(config.reference_slices)
        jobs = list(targets) or [None]
        total = sum((t or reference).shape_kji[a] for t in jobs)
        done = 0
        for ti, t in enumerate(jobs):
            vol = reference if t is None else t
            ta = slice_geometry(vol, config.axis).array_axis
            for k in range(vol.shape_kji[ta]):
                done += 1
                if t is None and k in refs:
                    continue
                src = min(refs, key=lambda r: (abs(r - k), r))
                plane = np.asarray(get_slice(lab, a, src))
                if plane.shape != get_slice(np.asarray(vol.voxels), ta, k).shape:
                    plane = np.zeros(get_slice(np.asarray(vol.voxels), ta, k).shape, np.uint8)
                if on_slice:
                    on_slice(SliceEvent(ti, ta, k, plane.copy(), 1.0 - abs(k - src) / 100.0,
                                        abs(k - src) > 3, {"source": src}))
                if not progress(done, total, f"slice {k}"):
                    return PropagationResult([], {"cancelled": True}, True)
        return PropagationResult([], {"fake": True}, False)


@pytest.fixture
def fake(monkeypatch):
    f = FakePipeline()
    monkeypatch.setattr(pipeline_mod, "propagate", f)
    return f


def configure(logic, case, **kw):
    node = logic.parameter_node()
    targets = kw.pop("targets", ())
    P.set_inputs(node, case.volume_node, case.segmentation_node, tuple(targets), kw.pop("sequence", None))
    P.write_settings(node, P.RunSettings(segment_ids=(case.segment_id,), **kw))
    return node


def seg_labels(case, seg_node=None, sid=None, vol=None):
    return labels_from_segments(seg_node or case.segmentation_node, [sid or case.segment_id],
                                vol or case.volume_node)


# ------------------------------------------------------------------ self-propagation
def test_self_run_writes_every_slice_and_keeps_reference(scene, fake):
    case = make_case(scene, annotated=(6,))
    seg = case.segmentation_node.GetSegmentation()
    other = seg.AddEmptySegment("", "Other", [0, 1, 0])
    other_mask = np.zeros(case.truth_kji.shape, np.uint8)
    other_mask[2:9, 1:5, 1:6] = 1
    w = SliceWriter(case.segmentation_node, case.volume_node)
    for k in range(2, 9):
        w.write(other, 0, k, other_mask[k])
    logic = OneShotSAMLogic(scene)
    configure(logic, case)
    out = logic.run()
    lab = seg_labels(case)
    # the fake copies slice 6 everywhere: every slice equals the annotated one
    for k in range(lab.shape[0]):
        np.testing.assert_array_equal(lab[k], case.truth_kji[6])
    np.testing.assert_array_equal(seg_labels(case, sid=other), other_mask)  # other segment intact
    # the fake engine reports no review queue: flagged first, then lowest confidence
    assert [r.slice_index for r in out.rows][0] in (0,)  # lowest confidence first (farthest slice)
    assert [r.confidence for r in out.rows] == sorted(r.confidence for r in out.rows)
    assert len(out.rows) == lab.shape[0] - 1 and not out.cancelled
    import slicer
    status = slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentStatus(seg.GetSegment(case.segment_id))
    assert status == slicer.vtkSlicerSegmentationsModuleLogic.InProgress
    rec = P.read_run_record(logic.parameter_node())
    assert rec["mode"] == "self" and rec["reference_slices"] == [6]
    assert sorted(int(k) for k in rec["outputs"][0]["written"]) == [k for k in range(12) if k != 6]
    assert fake.calls[0]["config"].reference_slices == (6,)


def test_undo_restores_segmentation_and_record(scene, fake):
    case = make_case(scene, annotated=(3, 8))
    before = seg_labels(case)
    logic = OneShotSAMLogic(scene)
    configure(logic, case)
    logic.run()
    assert not np.array_equal(seg_labels(case), before)
    logic.undo()
    np.testing.assert_array_equal(seg_labels(case), before)
    assert P.read_run_record(logic.parameter_node()) == {}
    with pytest.raises(OneShotError, match="nothing to undo"):
        logic.undo()


def test_cancel_keeps_finished_slices(scene, fake):
    case = make_case(scene, annotated=(6,))
    logic = OneShotSAMLogic(scene)
    configure(logic, case)
    calls = []

    def progress(done, total, msg):
        if total > 0:  # busy messages before the first slice carry no count
            calls.append(done)
        return len(calls) < 3

    out = logic.run(progress=progress)
    assert out.cancelled and len(out.rows) == 3
    lab = seg_labels(case)
    written = sorted(r.slice_index for r in out.rows)
    for k in range(12):
        expect = case.truth_kji[6] if (k in written or k == 6) else np.zeros_like(lab[k])
        np.testing.assert_array_equal(lab[k], expect)
    rec = P.read_run_record(logic.parameter_node())
    assert sorted(int(k) for k in rec["outputs"][0]["written"]) == written
    logic.undo()  # the scene stays consistent: undo still works after cancel
    assert sorted(np.flatnonzero(seg_labels(case).any(axis=(1, 2)))) == [6]


def test_explicit_reference_slice_other_user_slices_protected(scene, fake):
    case = make_case(scene, annotated=(2, 9))
    logic = OneShotSAMLogic(scene)
    configure(logic, case, reference_slices=(2,))
    out = logic.run()
    assert fake.calls[0]["config"].reference_slices == (2,)
    assert 9 not in [r.slice_index for r in out.rows]
    np.testing.assert_array_equal(seg_labels(case)[9], case.truth_kji[9])


def test_update_uses_edited_slices_and_rewrites_only_unedited(scene, fake):
    case = make_case(scene, annotated=(6,))
    logic = OneShotSAMLogic(scene)
    configure(logic, case)
    logic.run()
    edited = np.zeros(case.truth_kji.shape[1:], np.uint8)
    edited[5:12, 5:12] = 1
    SliceWriter(case.segmentation_node, case.volume_node).write(case.segment_id, 0, 1, edited)
    out = logic.run(update=True)
    cfg = fake.calls[-1]["config"]
    assert cfg.reference_slices == (1, 6)
    assert 1 not in [r.slice_index for r in out.rows] and 6 not in [r.slice_index for r in out.rows]
    lab = seg_labels(case)
    np.testing.assert_array_equal(lab[1], edited)        # the user's edit survives
    np.testing.assert_array_equal(lab[0], edited)        # nearest reference of 0 is now 1
    np.testing.assert_array_equal(lab[10], case.truth_kji[6])
    logic.undo()                                         # undo the update only
    np.testing.assert_array_equal(seg_labels(case)[0], case.truth_kji[6])
    np.testing.assert_array_equal(seg_labels(case)[1], edited)


def test_update_without_run_is_refused(scene, fake):
    case = make_case(scene)
    logic = OneShotSAMLogic(scene)
    configure(logic, case)
    with pytest.raises(OneShotError, match="run the propagation first"):
        logic.run(update=True)


# ------------------------------------------------------------------ follow-up targets
def test_followup_volume_gets_new_segmentation_like_reference(scene, fake):
    import slicer

    case = make_case(scene, annotated=(6,))
    seg = case.segmentation_node.GetSegmentation().GetSegment(case.segment_id)
    term = "SCT^123037004^Anatomical Structure~SCT^10200004^Liver~^^~Anatomic codes~^^~^^"
    seg.SetTerminology(term)
    follow = make_case(scene, annotated=(), name="Visit 2", seed=3)
    tnode = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    follow.volume_node.SetAndObserveTransformNodeID(tnode.GetID())
    logic = OneShotSAMLogic(scene)
    configure(logic, case, target_mode="volumes", targets=[follow.volume_node])
    out = logic.run()
    assert len(out.output_segmentation_ids) == 1
    out_node = scene.GetNodeByID(out.output_segmentation_ids[0])
    assert out_node.GetTransformNodeID() == tnode.GetID()
    oseg = out_node.GetSegmentation().GetSegment(out_node.GetSegmentation().GetNthSegmentID(0))
    assert oseg.GetName() == "Blob" and np.allclose(oseg.GetColor(), seg.GetColor())
    assert oseg.GetTerminology() == term
    assert slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentStatus(oseg) == \
        slicer.vtkSlicerSegmentationsModuleLogic.InProgress
    lab = labels_from_segments(out_node, [out_node.GetSegmentation().GetNthSegmentID(0)],
                               follow.volume_node)
    for k in range(12):
        np.testing.assert_array_equal(lab[k], case.truth_kji[6])
    assert fake.calls[0]["n_targets"] == 1
    n_before = scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    logic.undo()
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == n_before - 1


def test_followup_update_is_few_shot_within_target(scene, fake):
    case = make_case(scene, annotated=(6,))
    follow = make_case(scene, annotated=(), name="Visit 2", seed=3)
    logic = OneShotSAMLogic(scene)
    configure(logic, case, target_mode="volumes", targets=[follow.volume_node])
    out = logic.run()
    out_node = scene.GetNodeByID(out.output_segmentation_ids[0])
    osid = out_node.GetSegmentation().GetNthSegmentID(0)
    with pytest.raises(OneShotError, match="no slice was edited"):
        logic.run(update=True)
    edited = np.zeros(case.truth_kji.shape[1:], np.uint8)
    edited[1:4, 1:4] = 1
    SliceWriter(out_node, follow.volume_node).write(osid, 0, 3, edited)
    logic.run(update=True)
    cfg = fake.calls[-1]["config"]
    assert cfg.reference_slices == (3,) and fake.calls[-1]["n_targets"] == 0
    lab = labels_from_segments(out_node, [osid], follow.volume_node)
    np.testing.assert_array_equal(lab[3], edited)
    np.testing.assert_array_equal(lab[2], edited)      # re-propagated from the correction


def test_sequence_targets(scene, fake):
    import slicer

    case = make_case(scene, annotated=(6,))
    seq = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "visits")
    visits = [make_case(scene, annotated=(), name=f"v{i}", seed=i + 1).volume_node for i in range(2)]
    seq.SetDataNodeAtValue(case.volume_node, "0")
    for i, v in enumerate(visits):
        seq.SetDataNodeAtValue(v, str(i + 1))
    logic = OneShotSAMLogic(scene)
    configure(logic, case, target_mode="sequence", sequence=seq)
    out = logic.run()
    assert len(out.output_segmentation_ids) == 2       # the reference item is skipped
    assert fake.calls[0]["n_targets"] == 2
    rec = P.read_run_record(logic.parameter_node())
    assert [o["sequence_item"] for o in rec["outputs"]] == [1, 2]
    assert isinstance(slicer.vtkMRMLSequenceNode, type)


# ------------------------------------------------------------------ bad inputs
def test_bad_inputs(scene, fake):
    logic = OneShotSAMLogic(scene)
    case = make_case(scene, annotated=())
    configure(logic, case)
    with pytest.raises(OneShotError, match="empty"):
        logic.run()
    case2 = make_case(scene, annotated=(6,), name="B")
    configure(logic, case2, target_mode="volumes")
    with pytest.raises(OneShotError, match="no target volumes"):
        logic.run()
    configure(logic, case2, reference_slices=(1,))
    with pytest.raises(OneShotError, match="hold no annotation"):
        logic.run()
    node = configure(logic, case2)
    node.SetParameter("SegmentIDs", "nope")
    with pytest.raises(OneShotError, match="not in"):
        logic.run()
    P.set_inputs(node, None, case2.segmentation_node)
    with pytest.raises(OneShotError, match="reference volume"):
        logic.run()
    with pytest.raises(OneShotError, match="unknown method"):
        P.RunSettings(method="magic")
    node.SetParameter("ReferenceSlices", "a,b")
    with pytest.raises(OneShotError, match="integers"):
        P.read_settings(node)


def test_segment_on_another_geometry_outside_volume(scene, fake):
    case = make_case(scene, annotated=(6,))
    far = make_case(scene, annotated=(6,), name="far", origin=(500, 500, 500))
    logic = OneShotSAMLogic(scene)
    node = configure(logic, case)
    P.set_inputs(node, case.volume_node, far.segmentation_node)
    node.SetParameter("SegmentIDs", far.segment_id)
    with pytest.raises(OneShotError, match="empty inside the reference volume"):
        logic.run()


def test_parameters_round_trip(scene):
    logic = OneShotSAMLogic(scene)
    node = logic.parameter_node()
    assert logic.parameter_node() is node                # singleton
    s = P.RunSettings(method="p2sam", backend="sam-vit-b", preset="paper", device="cpu",
                      axis="coronal", window="ct:lung", align=False, target_mode="volumes",
                      segment_ids=("a", "b"), reference_slices=(3, 4),
                      method_overrides={"epochs": 2})
    P.write_settings(node, s)
    assert P.read_settings(node) == s
    assert P.read_settings(node).checkpoint is None


def test_progress_clock():
    c = ProgressClock()
    assert c.remaining_s(0, 10) is None
    assert c.remaining_s(5, 10) >= 0.0


# ------------------------------------------------------------------ incremental Update (real engine)
def test_followup_rows_follow_that_target_s_review_queue(scene):
    """The real warp engine (tiny) onto a follow-up volume: every row of the target names the
    engine slice it was predicted as, and the rows follow the target's review queue."""
    case = make_case(scene, annotated=(6,))
    follow = make_case(scene, annotated=(), name="Visit 2", seed=3)
    logic = OneShotSAMLogic(scene)
    configure(logic, case, target_mode="volumes", targets=[follow.volume_node],
              method="medpersam-warp", device="cpu", align=False,
              method_overrides={"steps": 4, "followup_steps": 4, "resolution": 32, "batch": 2,
                                "aug_per_step": 1})
    out = logic.run()
    queue = [int(q) for q in out.report["engine"][-1]["targets"][0]["review_queue"]]
    procs = [r.processing_slice for r in out.rows]
    assert queue and out.rows and all(p is not None for p in procs)
    listed = [p for p in procs if p in queue]
    assert procs[:len(listed)] == listed                     # the queued rows first ...
    assert listed == sorted(listed, key=queue.index)         # ... in the queue's order


def test_update_recomputes_only_the_corrections_gaps_with_the_kept_session(scene):
    """The real warp engine (tiny): correct the first flagged slice, press Update: the
    session kept by the Logic is updated without training again, only the slices between
    the correction and its nearest annotated slices change, the correction is kept exactly."""
    case = make_case(scene, annotated=(6,))
    logic = OneShotSAMLogic(scene)
    configure(logic, case, method="medpersam-warp", device="cpu",
              method_overrides={"steps": 4, "resolution": 32, "batch": 2, "aug_per_step": 1})
    first = logic.run()
    engine = logic._session[1].states[0].engine
    net, trained = engine.net, len(engine.history)
    flagged = [r for r in first.rows if r.flagged]
    queue = [int(q) for q in first.report["engine"][-1]["review_queue"]]
    shown = [r.slice_index for r in first.rows]
    assert flagged and shown == [q for q in queue if q in shown]  # the engine's queue order
    k = flagged[0].slice_index
    before = seg_labels(case).copy()
    edited = np.zeros(case.truth_kji.shape[1:], np.uint8)
    edited[6:15, 7:16] = 1
    SliceWriter(case.segmentation_node, case.volume_node).write(case.segment_id, 0, k, edited)
    out = logic.run(update=True)
    after = seg_labels(case)
    upd = out.report["engine"][0]["targets"][0]["update"]
    gap = set(range(7, 12)) - {k} if k > 6 else set(range(0, 6)) - {k}
    assert upd["corrected_slices"] == [k] and set(upd["recomputed_slices"]) == gap
    np.testing.assert_array_equal(after[k], edited)               # the correction, exactly
    changed = {j for j in range(after.shape[0]) if not np.array_equal(after[j], before[j])}
    assert changed <= gap | {k} and k in changed
    np.testing.assert_array_equal(after[6], case.truth_kji[6])    # the annotation, untouched
    assert engine.net is net and len(engine.history) == trained   # not trained again
    assert {r.slice_index for r in out.rows} == set(range(12)) - {6, k}  # the whole queue
    queue = [int(q) for q in out.report["engine"][-1]["review_queue"]]
    now = [r.slice_index for r in out.rows]
    assert now == [q for q in queue if q in now]  # the Update's queue order
    logic.undo()  # back to before the Update (the edit stays); the next Update propagates again
    undone = seg_labels(case)
    np.testing.assert_array_equal(undone[k], edited)
    np.testing.assert_array_equal(np.delete(undone, k, axis=0), np.delete(before, k, axis=0))
    assert logic._session is None
