"""The Slicer module's Logic as a clinician meets it, on real MRML classes (slicer-core).

* closing the scene drops the undo step and the review rows: Undo afterwards
  touches nothing of the next patient, although Slicer reuses node IDs;
* one parameter node per scene, however often the scene is closed;
* Update repeats the recorded run (mode, axis, reference), whatever the controls show now;
* a review row of a sequence target shows the right item (through the browser);
* the reference slice is the one shown in the view of the chosen axis;
* weights downloaded into Slicer's cache are found; errors name the module's controls;
* progress before the first slice, cancel reaching into a method's training loop;
* the self-test passes in a process where torch cannot be imported.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

MODULE_DIR = Path(__file__).resolve().parents[2] / "OneShotSAM"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

pytest.importorskip("slicer")

from oneshotsam.errors import OneShotError  # noqa: E402
from oneshotsam.methods.base import RunResult, TargetResult  # noqa: E402

from OneShotSAMLib import parameters as P  # noqa: E402
from OneShotSAMLib.logic import OneShotSAMLogic  # noqa: E402
from OneShotSAMLib.mrml_bridge import SliceWriter, slice_center_ras  # noqa: E402
from OneShotSAMLib.synthetic import make_case  # noqa: E402
from test_slicer_logic import configure, fake, seg_labels  # noqa: E402,F401


def _count(scene, cls):
    return scene.GetNumberOfNodesByClass(cls)


# ------------------------------------------------------------------ scene close
def test_scene_close_then_undo_touches_nothing(scene, fake):
    case = make_case(scene, annotated=(6,))
    follow = make_case(scene, annotated=(), name="Visit 2", seed=3)
    logic = OneShotSAMLogic(scene)
    configure(logic, case, target_mode="volumes", targets=[follow.volume_node])
    out = logic.run()
    configure(logic, case)
    logic.run()                                      # the last run wrote into case's segmentation
    old_ids = {case.segmentation_node.GetID(), out.output_segmentation_ids[0]}
    assert logic.can_undo()

    scene.Clear(0)                                   # File > Close scene, next patient loaded
    other = make_case(scene, annotated=(2, 9), name="Patient B", seed=11)
    extra = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Patient B extra")
    extra.CreateDefaultDisplayNodes()
    assert {other.segmentation_node.GetID(), extra.GetID()} & old_ids   # IDs are reused
    before = seg_labels(other)
    n_seg = _count(scene, "vtkMRMLSegmentationNode")

    assert not logic.can_undo()
    with pytest.raises(OneShotError, match="nothing to undo"):
        logic.undo()
    np.testing.assert_array_equal(seg_labels(other), before)
    assert _count(scene, "vtkMRMLSegmentationNode") == n_seg
    assert scene.IsNodePresent(extra)
    assert logic.rows == []                          # the review table is emptied too


def test_scene_closed_during_a_run_gets_nothing_written(scene, fake):
    case = make_case(scene, annotated=(6,))
    logic = OneShotSAMLogic(scene)
    configure(logic, case)
    after_close = {}

    def progress(done, total, message):
        if total > 0 and done == 3 and not after_close:
            scene.Clear(0)                           # File > Close scene while it runs
            nxt = make_case(scene, annotated=(4,), name="Patient B", seed=2)
            after_close["case"], after_close["labels"] = nxt, seg_labels(nxt)
        return True

    out = logic.run(progress=progress)
    nxt = after_close["case"]
    assert out.cancelled and out.rows == [] and not logic.can_undo()
    np.testing.assert_array_equal(seg_labels(nxt), after_close["labels"])
    assert logic.parameter_node().GetParameter("RunRecord") == ""   # no record of the old run


def test_undo_skips_nodes_deleted_since_the_run(scene, fake):
    case = make_case(scene, annotated=(6,))
    follow = make_case(scene, annotated=(), name="Visit 2", seed=3)
    logic = OneShotSAMLogic(scene)
    configure(logic, case, target_mode="volumes", targets=[follow.volume_node])
    out = logic.run()
    created = scene.GetNodeByID(out.output_segmentation_ids[0])
    scene.RemoveNode(created)                        # the user deleted the result
    newcomer = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "new")
    assert not logic.can_undo()                      # nothing of the run is left
    with pytest.raises(OneShotError, match="nothing to undo"):
        logic.undo()
    assert scene.IsNodePresent(newcomer)


def test_one_parameter_node_however_often_the_scene_closes(scene):
    logic = OneShotSAMLogic(scene)
    node = logic.parameter_node()
    P.write_settings(node, P.RunSettings(method="p2sam", axis="coronal"))
    for _ in range(3):
        scene.Clear(0)
        node = logic.parameter_node()
    mine = [scene.GetNthNodeByClass(i, "vtkMRMLScriptedModuleNode")
            for i in range(_count(scene, "vtkMRMLScriptedModuleNode"))]
    assert len(mine) == 1 and mine[0] is node
    assert node.GetModuleName() == P.MODULE_NAME and node.GetAttribute("ModuleName") == P.MODULE_NAME
    assert P.read_settings(node) == P.RunSettings()  # reset by the close, defaults back


# ------------------------------------------------------------------ Update = the recorded run
def test_update_after_mode_change_uses_the_recorded_run(scene, fake):
    case = make_case(scene, annotated=(6,))
    follow = make_case(scene, annotated=(), name="Visit 2", seed=3)
    logic = OneShotSAMLogic(scene)
    configure(logic, case)                           # self mode, axial
    logic.run()
    edited = np.zeros(case.truth_kji.shape[1:], np.uint8)
    edited[5:12, 5:12] = 1
    SliceWriter(case.segmentation_node, case.volume_node).write(case.segment_id, 0, 1, edited)
    # the user now looks at other settings: follow-up volumes, another axis
    node = logic.parameter_node()
    P.set_inputs(node, case.volume_node, case.segmentation_node, (follow.volume_node,))
    P.write_settings(node, P.RunSettings(segment_ids=(case.segment_id,), target_mode="volumes",
                                         axis="coronal"))
    n_seg = _count(scene, "vtkMRMLSegmentationNode")
    out = logic.run(update=True)
    call = fake.calls[-1]
    assert call["n_targets"] == 0                    # within the reference, as recorded
    assert call["config"].axis == "axial" and call["config"].reference_slices == (1, 6)
    assert _count(scene, "vtkMRMLSegmentationNode") == n_seg   # no follow-up output created
    lab = seg_labels(case)
    np.testing.assert_array_equal(lab[1], edited)
    np.testing.assert_array_equal(lab[0], edited)
    assert {r.slice_index for r in out.rows} == set(range(12)) - {1, 6}
    rec = P.read_run_record(node)
    assert rec["mode"] == "self" and rec["axis"] == "axial"


# ------------------------------------------------------------------ sequence rows
def test_sequence_row_resolves_to_the_right_item(scene, fake):
    import slicer.util

    case = make_case(scene, annotated=(6,))
    v_a = make_case(scene, annotated=(), name="visit A", seed=5).volume_node
    v_b = make_case(scene, annotated=(), name="visit B", seed=9).volume_node
    seq = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "visits")
    for n, v in enumerate((case.volume_node, v_b, v_a)):   # item order differs from node order
        seq.SetDataNodeAtValue(v, str(n))
    logic = OneShotSAMLogic(scene)
    configure(logic, case, target_mode="sequence", sequence=seq)
    out = logic.run()
    rows_b = [r for r in out.rows if r.sequence_item == 1]
    assert rows_b and all(r.target_name == "visit B" for r in rows_b)
    row = next(r for r in rows_b if r.slice_index == 4)
    # the row's volume ID belongs to the sequence's internal scene: in the main scene it
    # names another volume (the bug this guards against)
    naive = scene.GetNodeByID(row.volume_node_id)
    assert naive is None or not np.array_equal(slicer.util.arrayFromVolume(naive),
                                               slicer.util.arrayFromVolume(v_b))
    loc = logic.locate_row(row)
    assert loc.item == 1 and loc.browser_node.GetSelectedItemNumber() == 1
    assert loc.volume_node.GetScene() is scene
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(loc.volume_node),
                                  slicer.util.arrayFromVolume(v_b))
    np.testing.assert_allclose(loc.ras, slice_center_ras(v_b, row.array_axis, 4))
    # the same browser is reused for the next row; another item is selected
    row_a = next(r for r in out.rows if r.sequence_item == 2)
    loc_a = logic.locate_row(row_a)
    assert loc_a.browser_node is loc.browser_node and loc_a.browser_node.GetSelectedItemNumber() == 2
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(loc_a.volume_node),
                                  slicer.util.arrayFromVolume(v_a))
    # Update re-resolves the items from the record
    rec = P.read_run_record(logic.parameter_node())
    assert [(o["sequence_item"], o["target_name"]) for o in rec["outputs"]] == \
        [(1, "visit B"), (2, "visit A")]


# ------------------------------------------------------------------ reference slice from the view
def _view(scene, layout, orientation):
    n = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    n.SetLayoutName(layout)
    n.SetOrientation(orientation)
    return n


def test_reference_slice_is_the_one_shown_in_the_view_of_the_axis(scene, fake):
    case = make_case(scene, shape_kji=(12, 30, 40), annotated=(5, 12), array_axis=1)
    red, green = _view(scene, "Red", "Axial"), _view(scene, "Green", "Coronal")
    red.SetSliceOffset(float(slice_center_ras(case.volume_node, 0, 3)[2]))
    green.SetSliceOffset(float(slice_center_ras(case.volume_node, 1, 12)[1]))
    logic = OneShotSAMLogic(scene)
    node = configure(logic, case, axis="coronal")
    P.set_reference_source(node, "view")
    logic.run()
    assert fake.calls[-1]["config"].reference_slices == (12,)
    assert fake.calls[-1]["config"].axis == "coronal"
    logic.undo()                                     # back to the two annotated slices
    green.SetSliceOffset(float(slice_center_ras(case.volume_node, 1, 20)[1]))
    with pytest.raises(OneShotError, match="coronal view shows slice 20.*scroll the view"):
        logic.run()
    P.set_reference_source(node, "all")
    logic.run()
    assert fake.calls[-1]["config"].reference_slices == (5, 12)


# ------------------------------------------------------------------ readiness
def test_blockers_say_why_run_is_disabled(scene, tmp_path, monkeypatch):
    monkeypatch.setenv("ONESHOTSAM_CACHE", str(tmp_path / "empty"))
    logic = OneShotSAMLogic(scene)
    node = logic.parameter_node()
    reasons = logic.blockers()
    assert any("reference volume" in r for r in reasons) and any("segment" in r for r in reasons)
    case = make_case(scene, annotated=(6,))
    configure(logic, case)
    assert logic.blockers() == []
    P.write_settings(node, P.RunSettings(segment_ids=(case.segment_id,), target_mode="volumes"))
    assert logic.blockers() == ["tick at least one follow-up volume (other than the reference)"]
    P.write_settings(node, P.RunSettings(segment_ids=(case.segment_id,), method="persam",
                                         backend="sam-vit-b"))
    [reason] = logic.blockers()
    assert "Download official weights" in reason and "--" not in reason


# ------------------------------------------------------------------ weights
@pytest.fixture
def slicer_cache(tmp_path, monkeypatch):
    """Slicer's cache folder (``slicer.app.cachePath``) and an empty engine cache."""
    import slicer

    from oneshotsam.backends import checkpoints

    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(cachePath=str(tmp_path / "slicer")),
                        raising=False)
    monkeypatch.setenv("ONESHOTSAM_CACHE", str(tmp_path / "engine"))
    info = checkpoints.CheckpointInfo("sam-tiny-test", "https://example.invalid/sam-tiny-test.pth",
                                      "sam-tiny-test.pth", None, None, "Apache-2.0", "sam1")
    monkeypatch.setitem(checkpoints.REGISTRY, "sam-tiny-test", info)
    return tmp_path / "slicer" / "OneShotSAM" / "weights"


def test_weights_downloaded_to_slicer_cache_are_found(scene, slicer_cache):
    pytest.importorskip("torch")
    pytest.importorskip("segment_anything")
    from oneshotsam.backends.tiny import save_tiny_checkpoint

    from OneShotSAMLib import weights

    case = make_case(scene, shape_kji=(5, 32, 32), annotated=(2,))
    logic = OneShotSAMLogic(scene)
    configure(logic, case, method="persam", backend="sam-tiny-test", device="cpu")
    with pytest.raises(OneShotError) as err:        # nothing downloaded yet
        logic.run()
    assert "Download official weights" in str(err.value) and "--" not in str(err.value)
    slicer_cache.mkdir(parents=True)
    save_tiny_checkpoint(slicer_cache / "sam-tiny-test.pth", "sam-tiny-test")
    assert weights.status("sam-tiny-test").path == slicer_cache / "sam-tiny-test.pth"
    seen = []
    out = logic.run(progress=lambda d, t, m: seen.append((d, t, m)) is None)
    assert not out.cancelled and sorted(r.slice_index for r in out.rows) == [0, 1, 3, 4]
    assert out.report["engine"][0]["config"]["checkpoint"] == str(slicer_cache / "sam-tiny-test.pth")
    # "loading the model" is said before the first counted step
    first_count = next(i for i, (_, t, _) in enumerate(seen) if t > 0)
    assert any("loading the SAM model sam-tiny-test" in m and t == 0 for _, t, m in seen[:first_count])
    logic.release_model()


def test_engine_errors_reach_the_user_without_command_line_flags(scene, slicer_cache, tmp_path):
    bad = tmp_path / "not-weights.pth"
    bad.write_bytes(b"not a checkpoint")
    case = make_case(scene, shape_kji=(5, 32, 32), annotated=(2,))
    logic = OneShotSAMLogic(scene)
    configure(logic, case, method="persam", backend="sam-vit-b", checkpoint=str(bad), device="cpu")
    pytest.importorskip("torch")
    with pytest.raises(OneShotError) as err:
        logic.run()
    assert "--" not in str(err.value) and "oneshotsam weights" not in str(err.value)
    assert "Download official weights" in str(err.value)


# ------------------------------------------------------------------ cancel inside a method
class SlowTrainingMethod:
    """Copies the reference labels after ``steps`` 'training' steps, each reported."""

    name = "slow-test"

    def __init__(self, steps: int = 40) -> None:
        self.steps, self.steps_run, self.calls = steps, 0, 0

    def segment(self, reference, reference_labels, targets, progress=None):
        self.calls += 1
        for s in range(self.steps):
            self.steps_run += 1
            if progress is not None and not progress(s + 1, self.steps, f"training step {s + 1}"):
                return RunResult([], cancelled=True)
        lab = np.asarray(reference_labels)
        return RunResult([TargetResult(lab.copy(), 0.9) for _ in targets])


def test_cancel_reaches_into_method_training(scene):
    case = make_case(scene, annotated=(6,))
    logic = OneShotSAMLogic(scene)
    configure(logic, case)
    method = SlowTrainingMethod()
    messages = []

    def progress(done, total, message):
        messages.append(message)
        return not (method.calls == 3 and "training step 5" in message)  # slices 5, 4 done

    out = logic.run(progress=progress, method=method)
    assert out.cancelled and len(out.rows) == 2
    assert method.calls == 3 and method.steps_run == 2 * 40 + 5   # stopped inside the third call
    assert any(m.endswith(": training step 5") for m in messages)  # shown under the slice count
    rec = P.read_run_record(logic.parameter_node())
    assert sorted(int(k) for k in rec["outputs"][0]["written"]) == sorted(r.slice_index for r in out.rows)
    logic.undo()
    assert sorted(np.flatnonzero(seg_labels(case).any(axis=(1, 2)))) == [6]


# ------------------------------------------------------------------ self-test without torch
def test_selftest_passes_where_torch_cannot_be_imported(tmp_path):
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        BLOCKED = ("torch", "torchvision", "sam2", "segment_anything", "monai", "cv2", "hydra",
                   "ot", "sklearn")

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(name + " is not installed (clean Slicer)")
                return None

        sys.meta_path.insert(0, Block())
        sys.path.insert(0, {str(MODULE_DIR)!r})
        from OneShotSAMLib.headless import bootstrap
        from OneShotSAMLib.selftest import run_selftest
        r = run_selftest(bootstrap().scene, "numpy")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not loaded, loaded
        print("SELFTEST", r["rows"], r["undo_ok"], r["update_ok"], r["dice"])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("SELFTEST"))
    _, rows, undo_ok, update_ok, dice = line.split()
    assert int(rows) == 7 and undo_ok == "True" and update_ok == "True" and float(dice) > 0.8


# ------------------------------------------------------------------ runs off the UI thread
def test_ui_call_keeps_mrml_changes_on_the_calling_thread(scene, fake):
    import queue
    import threading

    case = make_case(scene, annotated=(6,))
    follow = make_case(scene, annotated=(), name="Visit 2", seed=3)
    logic = OneShotSAMLogic(scene)
    configure(logic, case, target_mode="volumes", targets=[follow.volume_node])
    main = threading.get_ident()
    jobs: queue.Queue = queue.Queue()
    row_threads, engine_threads, result = [], [], {}

    def ui_call(fn):                                 # run fn on the "UI" thread and wait
        done = threading.Event()
        box = {}

        def job():
            try:
                box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - handed back to the worker
                box["error"] = exc
            done.set()

        jobs.put(job)
        done.wait()
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def progress(d, t, m):
        engine_threads.append(threading.get_ident())
        return True

    worker = threading.Thread(target=lambda: result.setdefault("out", logic.run(
        progress=progress, on_row=lambda r: row_threads.append(threading.get_ident()),
        ui_call=ui_call)))
    worker.start()
    while worker.is_alive() or not jobs.empty():
        try:
            jobs.get(timeout=0.05)()
        except queue.Empty:
            pass
    worker.join()
    out = result["out"]
    assert len(out.rows) == 12 and set(row_threads) == {main}
    assert engine_threads and main not in set(engine_threads)
    assert scene.GetNodeByID(out.output_segmentation_ids[0]) is not None and logic.can_undo()
