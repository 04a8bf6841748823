"""What the Slicer side creates it removes, and Save writes over no loaded file
(real MRML on slicer-core).

* ``mrml_bridge.labels_from_segments`` exports each segment through a temporary
  labelmap node; the export also created a colour table named after the
  segmentation (listed in the Data module) and a hidden labelmap display node:
  the scene's nodes, counted by class, are the same before and after.
* the browser app's Save names its files ``<volume>_oneshotsam.*``: with the output
  folder = the folder of the loaded volume, the loaded file is kept; a loaded file
  that still has an output's name is refused before anything is written.
"""

from __future__ import annotations

import asyncio
import collections
import sys
from pathlib import Path

import pytest

MODULE_DIR = Path(__file__).resolve().parents[2] / "OneShotSAM"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

pytest.importorskip("slicer")


def _census(scene) -> collections.Counter:
    return collections.Counter((scene.GetNthNode(i).GetClassName(), scene.GetNthNode(i).GetName())
                               for i in range(scene.GetNumberOfNodes()))


@pytest.mark.parametrize("n_segments", [1, 2])
def test_labels_from_segments_leaves_the_scene_as_it_was(scene, n_segments):
    import slicer

    from OneShotSAMLib.mrml_bridge import labels_from_segments
    from OneShotSAMLib.synthetic import make_case

    case = make_case(scene, annotated=(5, 6))
    ids = [case.segment_id]
    if n_segments == 2:
        ids.append(case.segmentation_node.GetSegmentation().AddEmptySegment("", "Other", [0, 1, 0]))
    slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)  # there in every Slicer scene
    before = _census(scene)
    for _ in range(3):
        lab = labels_from_segments(case.segmentation_node, ids, case.volume_node)
        assert lab[5].any() and lab[6].any() and not lab[0].any()
    assert _census(scene) == before


# ------------------------------------------------------------------ browser app Save
def _loaded_case(scene, folder: Path, file_name: str):
    """A case whose volume node was "loaded" from ``folder / file_name`` (storage node)."""
    from OneShotSAMLib import parameters as P
    from OneShotSAMLib.synthetic import make_case

    case = make_case(scene, name="synth")
    folder.mkdir(parents=True, exist_ok=True)
    st = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    st.SetFileName(str(folder / file_name))
    assert st.WriteData(case.volume_node)
    case.volume_node.SetAndObserveStorageNodeID(st.GetID())
    return case, P


def _save(scene, case, P, out: Path) -> list[Path]:
    pytest.importorskip("torch")
    from OneShotSAMWeb.session import RunController

    loop = asyncio.new_event_loop()
    try:
        run = RunController(scene, loop, lambda: None)
        node = run.logic.parameter_node()
        P.set_inputs(node, case.volume_node, case.segmentation_node)
        P.write_settings(node, P.RunSettings(segment_ids=(case.segment_id,)))
        return run.save(out)
    finally:
        loop.close()


def test_save_into_the_loaded_volumes_folder_keeps_it(scene, tmp_path):
    from oneshotsam.medio import read_label_volume

    case, P = _loaded_case(scene, tmp_path / "d", "synth.nii.gz")
    data = (tmp_path / "d" / "synth.nii.gz").read_bytes()
    written = _save(scene, case, P, tmp_path / "d")
    assert sorted(p.name for p in written) == ["report.json", "synth_oneshotsam.nii.gz",
                                               "synth_oneshotsam.seg.nrrd"]
    assert (tmp_path / "d" / "synth.nii.gz").read_bytes() == data
    lab = read_label_volume(tmp_path / "d" / "synth_oneshotsam.nii.gz").voxels
    assert lab[6].any() and not lab[0].any()


def test_save_refuses_a_loaded_file_named_like_an_output(scene, tmp_path):
    from oneshotsam.errors import OneShotError

    case, P = _loaded_case(scene, tmp_path / "d", "synth_oneshotsam.nii.gz")
    before = {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir()}
    with pytest.raises(OneShotError, match="would replace the input"):
        _save(scene, case, P, tmp_path / "d")
    assert {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir()} == before


# ------------------------------------------------------------------ the scene fixture
def test_reset_scene_removes_the_singletons_a_test_added(scene):
    """``Clear(0)`` keeps singleton slice nodes: a coronal ``Green`` view (orientation and
    all) then outlived its test and was found before the next test's own ``Green`` view."""
    import slicer

    from conftest import reset_scene

    before = _census(scene)
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    for layout, orientation in (("Red", "Axial"), ("Green", "Coronal")):
        node = scene.CreateNodeByClass("vtkMRMLSliceNode")
        node.SetName(layout)
        node.SetLayoutName(layout)
        scene.AddNode(node)
        node.SetOrientation(orientation)
    scene.Clear(0)
    assert scene.GetNumberOfNodesByClass("vtkMRMLSliceNode") == 2  # what used to leak
    reset_scene(scene)
    assert scene.GetNumberOfNodesByClass("vtkMRMLSliceNode") == 0 and _census(scene) == before
