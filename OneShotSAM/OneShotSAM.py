"""OneShotSAM: one-shot segmentation with SAM / SAM 2 in 3D Slicer.

Module, Widget and self-test. All processing is in ``OneShotSAMLib.logic``
(MRML + numpy, testable without the application); this file holds only the
Qt user interface. Heavy packages (torch, sam2, ...) are imported when a run
starts, after the user agreed to install what is missing.
"""

from __future__ import annotations

import logging
import os

import ctk  # noqa: F401  (Slicer application)
import qt
import slicer
import vtk  # noqa: F401
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from OneShotSAMLib import parameters as P


class OneShotSAM(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "OneShotSAM"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["OneShotSAM contributors"]
        self.parent.helpText = (
            "Annotate one slice (Segment Editor), choose the targets (the rest of the volume, "
            "follow-up volumes or a sequence) and press Run: the structure is propagated slice by "
            "slice with Med-PerSAM, P2SAM or PerSAM on SAM / SAM 2. Review the slices with the "
            "lowest confidence first, correct them, and press Update: corrected slices become "
            "references and are never overwritten. See docs/slicer.md.")
        self.parent.acknowledgementText = (
            "Builds on Segment Anything (Meta AI), SAM 2, Med-PerSAM (Yoon, Jang, Kim and Yang; KAIST / "
            "AITRICS), P2SAM (Zhao and Shen) and PerSAM.")


class OneShotSAMWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._updatingGUI = False
        self._cancelRequested = False
        self._running = False
        self._rows = []

    # ------------------------------------------------------------------ setup
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/OneShotSAM.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        from OneShotSAMLib.logic import OneShotSAMLogic

        self.logic = OneShotSAMLogic(slicer.mrmlScene)
        for label in P.METHODS:
            self.ui.methodComboBox.addItem(label, P.METHODS[label])
        self.ui.backendComboBox.addItems(_backend_names())
        self.ui.targetVolumesSelector.setMRMLScene(slicer.mrmlScene)
        self.ui.resultsTable.horizontalHeader().setStretchLastSection(True)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        for w, sig in ((self.ui.referenceVolumeSelector, "currentNodeChanged(vtkMRMLNode*)"),
                       (self.ui.targetSequenceSelector, "currentNodeChanged(vtkMRMLNode*)"),
                       (self.ui.targetVolumesSelector, "checkedNodesChanged()"),
                       (self.ui.segmentSelector, "currentSegmentChanged(QString)"),
                       (self.ui.segmentSelector, "currentNodeChanged(vtkMRMLNode*)"),
                       (self.ui.methodComboBox, "currentIndexChanged(int)"),
                       (self.ui.backendComboBox, "currentIndexChanged(int)"),
                       (self.ui.presetComboBox, "currentIndexChanged(int)"),
                       (self.ui.deviceComboBox, "currentIndexChanged(int)"),
                       (self.ui.axisComboBox, "currentIndexChanged(int)"),
                       (self.ui.targetModeComboBox, "currentIndexChanged(int)"),
                       (self.ui.referenceSlicesComboBox, "currentIndexChanged(int)"),
                       (self.ui.windowLineEdit, "editingFinished()"),
                       (self.ui.checkpointPathLineEdit, "currentPathChanged(QString)")):
            w.connect(sig, self.updateParameterNodeFromGUI)
        self.ui.methodComboBox.connect("currentIndexChanged(int)", self._refreshPresets)
        self.ui.runButton.connect("clicked(bool)", lambda _=False: self.onRun(update=False))
        self.ui.updateButton.connect("clicked(bool)", lambda _=False: self.onRun(update=True))
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.undoButton.connect("clicked(bool)", self.onUndo)
        self.ui.downloadWeightsButton.connect("clicked(bool)", self.onDownloadWeights)
        self.ui.resultsTable.connect("cellClicked(int,int)", self.onResultClicked)
        self._refreshPresets()
        self.initializeParameterNode()

    def cleanup(self):
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode is not None:
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    # ------------------------------------------------------------------ parameter node
    def initializeParameterNode(self):
        node = self.logic.parameter_node()
        if not node.GetNodeReference(P.REF_REFERENCE_VOLUME):
            vol = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if vol:
                node.SetNodeReferenceID(P.REF_REFERENCE_VOLUME, vol.GetID())
        self.setParameterNode(node)

    def setParameterNode(self, node):
        if self._parameterNode is not None:
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = node
        if node is not None:
            self.addObserver(node, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self.updateGUIFromParameterNode()

    def updateGUIFromParameterNode(self, caller=None, event=None):
        node = self._parameterNode
        if node is None or self._updatingGUI:
            return
        self._updatingGUI = True
        try:
            s = P.read_settings(node)
            self.ui.referenceVolumeSelector.setCurrentNode(node.GetNodeReference(P.REF_REFERENCE_VOLUME))
            self.ui.segmentSelector.setCurrentNode(node.GetNodeReference(P.REF_SEGMENTATION))
            if s.segment_ids:
                self.ui.segmentSelector.setCurrentSegmentID(s.segment_ids[0])
            self.ui.targetSequenceSelector.setCurrentNode(node.GetNodeReference(P.REF_TARGET_SEQUENCE))
            checked = {n.GetID() for n in P.target_volume_nodes(node) if n}
            for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"):
                self.ui.targetVolumesSelector.setCheckState(
                    n, qt.Qt.Checked if n.GetID() in checked else qt.Qt.Unchecked)
            self.ui.methodComboBox.setCurrentIndex(max(0, self.ui.methodComboBox.findData(s.method)))
            self._setCombo(self.ui.backendComboBox, s.backend or "")
            self._setCombo(self.ui.presetComboBox, s.preset or "")
            self._setCombo(self.ui.deviceComboBox, s.device)
            self._setCombo(self.ui.axisComboBox, s.axis)
            self.ui.targetModeComboBox.setCurrentIndex(P.TARGET_MODES.index(s.target_mode))
            self.ui.referenceSlicesComboBox.setCurrentIndex(0 if s.reference_slices is not None else 1)
            self.ui.windowLineEdit.text = s.window or ""
            self.ui.checkpointPathLineEdit.currentPath = s.checkpoint or ""
            mode = s.target_mode
            self.ui.targetVolumesSelector.enabled = mode == "volumes"
            self.ui.targetSequenceSelector.enabled = mode == "sequence"
            needs_sam = s.method != "medpersam-warp"
            for w in (self.ui.backendComboBox, self.ui.checkpointPathLineEdit, self.ui.downloadWeightsButton):
                w.enabled = needs_sam
            ready = bool(node.GetNodeReference(P.REF_REFERENCE_VOLUME) and s.segment_ids)
            self.ui.runButton.enabled = ready and not self._running
            self.ui.updateButton.enabled = bool(node.GetParameter("RunRecord")) and not self._running
            self.ui.undoButton.enabled = self.logic.can_undo() and not self._running
            self.ui.cancelButton.enabled = self._running
        except Exception as exc:  # a bad value typed in a saved scene must not break the GUI
            self.ui.statusLabel.text = str(exc)
        finally:
            self._updatingGUI = False

    def updateParameterNodeFromGUI(self, *args):
        node = self._parameterNode
        if node is None or self._updatingGUI:
            return
        wasModifying = node.StartModify()
        try:
            seg = self.ui.segmentSelector.currentNode()
            P.set_inputs(node, self.ui.referenceVolumeSelector.currentNode(), seg,
                         tuple(self.ui.targetVolumesSelector.checkedNodes()),
                         self.ui.targetSequenceSelector.currentNode())
            sid = self.ui.segmentSelector.currentSegmentID() if seg else ""
            ref_slices = self._currentRedSlice() if self.ui.referenceSlicesComboBox.currentIndex == 0 else None
            P.write_settings(node, P.RunSettings(
                method=self.ui.methodComboBox.currentData, backend=self.ui.backendComboBox.currentText or None,
                preset=self.ui.presetComboBox.currentText or None, device=self.ui.deviceComboBox.currentText,
                axis=self.ui.axisComboBox.currentText, window=self.ui.windowLineEdit.text.strip() or None,
                checkpoint=self.ui.checkpointPathLineEdit.currentPath or None,
                target_mode=P.TARGET_MODES[self.ui.targetModeComboBox.currentIndex],
                segment_ids=(sid,) if sid else (), reference_slices=ref_slices,
                method_overrides=P.read_settings(node).method_overrides))
        except Exception as exc:
            self.ui.statusLabel.text = str(exc)
        finally:
            node.EndModify(wasModifying)

    def _setCombo(self, combo, text):
        idx = combo.findText(text)
        if idx < 0 and text:
            combo.addItem(text)
            idx = combo.findText(text)
        combo.setCurrentIndex(max(idx, 0))

    def _refreshPresets(self, *args):
        method = self.ui.methodComboBox.currentData
        self.ui.presetComboBox.clear()
        self.ui.presetComboBox.addItem("")
        try:
            from oneshotsam.presets import list_presets

            self.ui.presetComboBox.addItems(list_presets(method))
        except Exception:  # presets missing for this method: defaults only
            pass

    def _currentRedSlice(self):
        """The red view's slice index in the reference volume, as a 1-tuple (None if unknown)."""
        vol = self.ui.referenceVolumeSelector.currentNode()
        lm = slicer.app.layoutManager()
        if vol is None or lm is None or lm.sliceWidget("Red") is None:
            return None
        from OneShotSAMLib.mrml_bridge import slice_index_at_ras

        m = lm.sliceWidget("Red").mrmlSliceNode().GetSliceToRAS()
        ras = [m.GetElement(r, 3) for r in range(3)]
        _, k = slice_index_at_ras(vol, ras, self.ui.axisComboBox.currentText)
        return (k,)

    # ------------------------------------------------------------------ actions
    def onRun(self, update=False):
        from oneshotsam.methods.base import OneShotError

        from OneShotSAMLib import dependencies
        from OneShotSAMLib.logic import ProgressClock

        if not self._ensureDependencies(dependencies):
            return
        self.updateParameterNodeFromGUI()
        self._running, self._cancelRequested = True, False
        self._rows = []
        self.ui.resultsTable.setRowCount(0)
        self.updateGUIFromParameterNode()
        clock = ProgressClock()

        def progress(done, total, message):
            self.ui.progressBar.maximum = max(total, 1)
            self.ui.progressBar.value = done
            eta = clock.remaining_s(done, total)
            self.ui.statusLabel.text = message + (f" (about {eta:.0f} s left)" if eta is not None else "")
            slicer.app.processEvents()
            return not self._cancelRequested

        try:
            with slicer.util.tryWithErrorDisplay("OneShotSAM run failed.", waitCursor=True):
                try:
                    out = self.logic.run(self._parameterNode, progress=progress, update=update,
                                         on_row=lambda row: slicer.app.processEvents())
                except OneShotError as exc:
                    slicer.util.warningDisplay(str(exc), windowTitle="OneShotSAM")
                    return
                self._rows = out.rows
                self._fillTable()
                state = "cancelled: finished slices kept" if out.cancelled else "done"
                self.ui.statusLabel.text = f"{state}; {len(out.rows)} slices in {out.seconds:.0f} s"
        finally:
            self._running = False
            self.updateGUIFromParameterNode()

    def _ensureDependencies(self, dependencies):
        names = dependencies.missing()
        if not names:
            return True
        steps = dependencies.plan_install(names, dependencies.read_requirements(),
                                          hasattr(getattr(slicer, "packaging", None), "pip_ensure"))
        if not slicer.util.confirmOkCancelDisplay(
                "OneShotSAM needs these Python packages, installed once into Slicer's Python "
                "(several GB with PyTorch):\n\n" + dependencies.describe(steps) + "\n\nInstall now?",
                windowTitle="OneShotSAM: install dependencies"):
            return False
        with slicer.util.tryWithErrorDisplay("Installing the dependencies failed.", waitCursor=True):
            dependencies.install_missing(lambda msg: logging.info(msg))
            return True
        return False

    def onCancel(self):
        self._cancelRequested = True
        self.ui.statusLabel.text = "cancelling after the current slice..."

    def onUndo(self):
        with slicer.util.tryWithErrorDisplay("Undo failed.", waitCursor=True):
            self.logic.undo()
            self.ui.resultsTable.setRowCount(0)
            self.ui.statusLabel.text = "restored the segmentation as before the last run"
        self.updateGUIFromParameterNode()

    def onDownloadWeights(self):
        from OneShotSAMLib import weights

        backend = self.ui.backendComboBox.currentText
        st = weights.status(backend)
        if st.path is not None:
            self.ui.checkpointPathLineEdit.currentPath = str(st.path)
            return
        if not st.official:
            slicer.util.warningDisplay(f"No official download for '{backend}': choose a local file.")
            return
        size = f" ({st.size_bytes / 1e6:.0f} MB)" if st.size_bytes else ""
        if not slicer.util.confirmOkCancelDisplay(
                f"Download the official {backend} weights{size} from\n{st.url}\ninto "
                f"{weights.weights_dir()}?", windowTitle="OneShotSAM: download weights"):
            return
        dlg = slicer.util.createProgressDialog(labelText=f"Downloading {backend}...", maximum=100)

        def progress(done, total, message):
            dlg.value = int(100 * done / total) if total else 0
            slicer.app.processEvents()
            return not dlg.wasCanceled

        try:
            with slicer.util.tryWithErrorDisplay("Download failed.", waitCursor=True):
                path = weights.download(backend, progress)
                self.ui.checkpointPathLineEdit.currentPath = str(path)
        finally:
            dlg.close()

    # ------------------------------------------------------------------ results
    def _fillTable(self):
        t = self.ui.resultsTable
        t.setRowCount(len(self._rows))
        for r, row in enumerate(self._rows):
            for c, text in enumerate((row.target_name, str(row.slice_index),
                                      f"{row.confidence:.2f}", "yes" if row.flagged else "")):
                t.setItem(r, c, qt.QTableWidgetItem(text))

    def onResultClicked(self, r, c):
        if not 0 <= r < len(self._rows):
            return
        from OneShotSAMLib.mrml_bridge import slice_center_ras

        row = self._rows[r]
        vol = slicer.mrmlScene.GetNodeByID(row.volume_node_id)
        if vol is None:
            return
        ras = slice_center_ras(vol, row.array_axis, row.slice_index)
        slicer.util.setSliceViewerLayers(background=vol)
        slicer.vtkMRMLSliceNode.JumpAllSlices(slicer.mrmlScene, *ras,
                                              slicer.vtkMRMLSliceNode.CenteredJumpSlice)


def _backend_names():
    try:
        from oneshotsam.backends.checkpoints import REGISTRY

        return list(REGISTRY)
    except Exception:
        return ["sam-vit-b", "sam2.1-hiera-tiny"]


class OneShotSAMLogic(ScriptedLoadableModuleLogic):
    """Slicer's module-logic entry point; the work is in ``OneShotSAMLib.logic.OneShotSAMLogic``."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        from OneShotSAMLib.logic import OneShotSAMLogic as Impl

        self.impl = Impl(slicer.mrmlScene)


class OneShotSAMTest(ScriptedLoadableModuleTest):
    """Offline self-test: a synthetic volume and a tiny random-weight SAM (no download)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_tiny_propagation()

    def test_tiny_propagation(self):
        from OneShotSAMLib.selftest import run_selftest

        self.delayDisplay("Propagating a synthetic annotation with a tiny SAM")
        result = run_selftest(slicer.mrmlScene, workdir=os.environ.get("TMPDIR"))
        self.assertTrue(result["undo_ok"])
        self.assertGreater(result["rows"], 0)
        self.delayDisplay("Test passed")
