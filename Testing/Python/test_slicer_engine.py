"""The Logic with the REAL engine pipeline, on slicer-core MRML nodes.

* the offline self-test (tiny random-weight SAM through PerSAM);
* medpersam-warp on a synthetic volume (tiny schedule);
* geometry: the Volume the engine receives is the LPS version of the node's
  world geometry (oblique direction, parent transform), and a non-axial
  reference writes into the right voxels;
* ACDC (real data): ED annotated on one slice, propagated to ES through the
  Logic; Dice equals the engine's own pipeline on the same files.
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
pytest.importorskip("torch")

from oneshotsam.geometry import LPS_TO_RAS  # noqa: E402
from oneshotsam.volume import pipeline as pipeline_mod  # noqa: E402

from OneShotSAMLib import parameters as P  # noqa: E402
from OneShotSAMLib.headless import bootstrap  # noqa: E402
from OneShotSAMLib.logic import OneShotSAMLogic  # noqa: E402
from OneShotSAMLib.mrml_bridge import (SliceWriter, labels_from_segments, slice_center_ras,  # noqa: E402
                                       slice_index_at_ras, volume_from_node)
from OneShotSAMLib.synthetic import dice, make_case  # noqa: E402

TINY_WARP = {"steps": 30, "resolution": 32, "batch": 4, "threads": 1}


@pytest.fixture(scope="module")
def scene():
    s = bootstrap()
    s.scene.Clear(0)
    yield s.scene
    s.scene.Clear(0)


@pytest.fixture
def clean(scene):
    scene.Clear(0)
    return scene


def test_selftest_tiny_sam_offline(clean, tmp_path):
    from OneShotSAMLib.selftest import run_selftest

    r = run_selftest(clean, "persam", workdir=str(tmp_path))
    assert r["undo_ok"] and r["rows"] == 5 and r["written"] == [0, 1, 2, 4, 5]
    assert r["report"]["engine"][0]["reference"]["reference_slices"] == [3]


def test_medpersam_warp_self_propagation(clean):
    case = make_case(clean, shape_kji=(8, 32, 32), annotated=(4,))
    logic = OneShotSAMLogic(clean)
    node = logic.parameter_node()
    P.set_inputs(node, case.volume_node, case.segmentation_node)
    P.write_settings(node, P.RunSettings(method="medpersam-warp", device="cpu",
                                         segment_ids=(case.segment_id,), method_overrides=TINY_WARP))
    out = logic.run()
    lab = labels_from_segments(case.segmentation_node, [case.segment_id], case.volume_node)
    np.testing.assert_array_equal(lab[4], case.truth_kji[4])
    assert {r.slice_index for r in out.rows} <= set(range(8)) - {4}
    assert dice(lab, case.truth_kji) > 0.7          # an ellipsoid in clean contrast
    assert out.report["engine"][0]["engine"]["engine"] == "warp-volume"


# ------------------------------------------------------------------ geometry
class Capture:
    def __init__(self):
        self.args = None

    def __call__(self, reference, reference_labels, targets=(), config=None, progress=None,
                 on_slice=None, method=None):
        from oneshotsam.volume.pipeline import PropagationResult
        self.args = (reference, reference_labels, list(targets), config)
        return PropagationResult([], {}, False)


def _rot(deg):
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def test_engine_gets_lps_world_geometry_oblique_and_transformed(clean, monkeypatch):
    import vtk

    cap = Capture()
    monkeypatch.setattr(pipeline_mod, "propagate", cap)
    case = make_case(clean, annotated=(6,), directions=_rot(20), spacing=(0.8, 0.9, 2.5),
                     origin=(10, -20, 5))
    follow = make_case(clean, shape_kji=(10, 36, 44), annotated=(), name="visit2", seed=5,
                       spacing=(1.1, 1.1, 3.0))
    tnode = clean.AddNewNodeByClass("vtkMRMLLinearTransformNode", "T")
    m = vtk.vtkMatrix4x4()
    m.SetElement(0, 3, 7.0)
    m.SetElement(1, 3, -3.0)
    tnode.SetMatrixTransformToParent(m)
    follow.volume_node.SetAndObserveTransformNodeID(tnode.GetID())
    logic = OneShotSAMLogic(clean)
    node = logic.parameter_node()
    P.set_inputs(node, case.volume_node, case.segmentation_node, (follow.volume_node,))
    P.write_settings(node, P.RunSettings(segment_ids=(case.segment_id,), target_mode="volumes"))
    logic.run()
    ref, ref_lab, targets, cfg = cap.args
    ijk2ras = np.eye(4)
    ijk2ras[:3, :3] = _rot(20) @ np.diag([0.8, 0.9, 2.5])
    ijk2ras[:3, 3] = (10, -20, 5)
    np.testing.assert_allclose(ref.ijk_to_lps, LPS_TO_RAS @ ijk2ras, atol=1e-9)
    np.testing.assert_allclose(ref_lab.ijk_to_lps, ref.ijk_to_lps)
    np.testing.assert_array_equal(np.asarray(ref_lab.voxels)[6], case.truth_kji[6])
    assert np.asarray(ref_lab.voxels).sum() == case.truth_kji[6].sum()
    t_ras = np.diag([1.1, 1.1, 3.0, 1.0])
    t_ras[:2, 3] = (7.0, -3.0)                               # the parent transform is applied
    np.testing.assert_allclose(targets[0].ijk_to_lps, LPS_TO_RAS @ t_ras, atol=1e-9)
    assert follow.volume_node.GetParentTransformNode() is tnode   # user's node untouched
    assert cfg.reference_slices == (6,)


def test_non_axial_reference_slice_writes_right_voxels(clean):
    # sagittal annotation (i = const) on a volume whose i axis is L-R
    truth = np.zeros((10, 20, 24), np.uint8)
    truth[2:8, 4:16, 5:19] = 1
    case = make_case(clean, shape_kji=truth.shape, annotated=(12,), array_axis=2, truth_kji=truth)
    lab = labels_from_segments(case.segmentation_node, [case.segment_id], case.volume_node)
    assert np.flatnonzero(lab.any(axis=(0, 1))).tolist() == [12]
    np.testing.assert_array_equal(lab[:, :, 12], truth[:, :, 12])
    a, k = slice_index_at_ras(case.volume_node, slice_center_ras(case.volume_node, 2, 12), "sagittal")
    assert (a, k) == (2, 12)
    a, k = slice_index_at_ras(case.volume_node, slice_center_ras(case.volume_node, 0, 3), "axial")
    assert (a, k) == (0, 3)
    w = SliceWriter(case.segmentation_node, case.volume_node)
    w.write(case.segment_id, 1, 7, np.ones((10, 24)))          # coronal write
    lab = labels_from_segments(case.segmentation_node, [case.segment_id], case.volume_node)
    assert lab[:, 7, :].all() and np.array_equal(lab[:, :, 12][:, np.r_[0:7, 8:20]],
                                                  truth[:, :, 12][:, np.r_[0:7, 8:20]])


def test_volume_from_node_copies_and_never_modifies(clean):
    case = make_case(clean, annotated=(6,))
    import slicer.util
    before = slicer.util.arrayFromVolume(case.volume_node).copy()
    vol = volume_from_node(case.volume_node)
    assert not vol.voxels.flags.writeable
    np.testing.assert_array_equal(vol.voxels, before)
    assert vol.voxels.base is not slicer.util.arrayFromVolume(case.volume_node).base


# ------------------------------------------------------------------ ACDC real data
def _read_into_node(scene, path, name):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    st = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    st.SetFileName(str(path))
    assert st.ReadData(node)
    return node


@pytest.mark.data
@pytest.mark.slow
def test_acdc_through_logic_equals_engine(clean, data_root, monkeypatch):
    import slicer.util

    from oneshotsam.medio import read_label_volume, read_volume
    from oneshotsam.volume.pipeline import PropagationConfig, propagate

    d = data_root / "acdc"
    if not (d / "patient001_ED.nii.gz").is_file():
        pytest.skip("ACDC patient001 not found")
    ed, ed_lab = _read_into_node(clean, d / "patient001_ED.nii.gz", "ED"), \
        _read_into_node(clean, d / "patient001_ED_label.nii.gz", "EDlab")
    es = _read_into_node(clean, d / "patient001_ES.nii.gz", "ES")
    gt_es = np.asarray(read_label_volume(d / "patient001_ES_label.nii.gz").voxels)
    lab = slicer.util.arrayFromVolume(ed_lab).copy()
    lv = np.flatnonzero((lab == 3).any(axis=(1, 2)))
    k = int((lv.min() + lv.max()) // 2)                      # mid-ventricular slice (acdc-mid)
    seg = clean.AddNewNodeByClass("vtkMRMLSegmentationNode", "ED seg")
    seg.SetReferenceImageGeometryParameterFromVolumeNode(ed)
    w = SliceWriter(seg, ed)
    ids = []
    for v, name in ((1, "RV"), (2, "Myocardium"), (3, "LV")):
        sid = seg.GetSegmentation().AddEmptySegment("", name, [v / 3.0, 0.2, 0.2])
        w.write(sid, 0, k, lab[k] == v)
        ids.append(sid)
    overrides = {"steps": 40, "resolution": 64, "threads": 1}
    seen = {}
    real = pipeline_mod.propagate

    def spy(*args, **kw):
        seen["args"] = args
        seen["result"] = real(*args, **kw)
        return seen["result"]

    monkeypatch.setattr(pipeline_mod, "propagate", spy)
    logic = OneShotSAMLogic(clean)
    node = logic.parameter_node()
    P.set_inputs(node, ed, seg, (es,))
    P.write_settings(node, P.RunSettings(method="medpersam-warp", device="cpu", target_mode="volumes",
                                         segment_ids=tuple(ids), method_overrides=overrides))
    out = logic.run()
    out_node = clean.GetNodeByID(out.output_segmentation_ids[0])
    oids = [out_node.GetSegmentation().GetNthSegmentID(n) for n in range(3)]
    via_logic = np.zeros(gt_es.shape, np.uint8)
    for v, sid in enumerate(oids, start=1):
        via_logic[labels_from_segments(out_node, [sid], es) > 0] = v

    # 1. the engine received exactly what the engine's own reader gives
    ref_lab = read_label_volume(d / "patient001_ED_label.nii.gz")
    keep = np.zeros_like(np.asarray(ref_lab.voxels))
    keep[k] = np.asarray(ref_lab.voxels)[k]
    ref_in, lab_in, tgts_in = seen["args"][:3]
    ed_engine, es_engine = read_volume(d / "patient001_ED.nii.gz"), read_volume(d / "patient001_ES.nii.gz")
    np.testing.assert_array_equal(ref_in.voxels, ed_engine.voxels)
    np.testing.assert_allclose(ref_in.ijk_to_lps, ed_engine.ijk_to_lps)
    np.testing.assert_array_equal(lab_in.voxels, keep)
    np.testing.assert_array_equal(tgts_in[0].voxels, es_engine.voxels)
    np.testing.assert_allclose(tgts_in[0].ijk_to_lps, es_engine.ijk_to_lps)
    # 2. what the Logic wrote into the segments is exactly the engine's result
    np.testing.assert_array_equal(via_logic, np.asarray(seen["result"].label_volumes[0].voxels))
    monkeypatch.setattr(pipeline_mod, "propagate", real)
    # 3. an independent engine run (training is not bit-reproducible run to run) scores the same
    from oneshotsam.geometry import volume_like
    cfg = PropagationConfig(method="medpersam-warp", device="cpu",
                            method_overrides=tuple(sorted(overrides.items())), reference_slices=(k,))
    res = propagate(ed_engine, volume_like(ref_lab, keep), [es_engine], cfg)
    via_engine = np.asarray(res.label_volumes[0].voxels)
    d_logic = np.mean([dice(via_logic == v, gt_es == v) for v in (1, 2, 3)])
    d_engine = np.mean([dice(via_engine == v, gt_es == v) for v in (1, 2, 3)])
    print(f"ACDC patient001 mid-slice ED->ES mean Dice: logic {d_logic:.4f} engine {d_engine:.4f}")
    assert d_logic == pytest.approx(d_engine, abs=0.03)
    assert d_logic > 0.3
