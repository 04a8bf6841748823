"""OneShotSAM: one-shot segmentation with SAM / SAM 2 in 3D Slicer.

Module, Widget and self-test. All processing is in ``OneShotSAMLib.logic``
(MRML + numpy, testable without the application); this file holds only the
Qt user interface. Heavy packages (torch, sam2, ...) are imported when a run
starts, after the user agreed to install what is missing.
"""

from __future__ import annotations

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
            "slice with Med-PerSAM, P2SAM or PerSAM on SAM / SAM 2. The table lists the slices "
            "whose correction is expected to fix most first (the review queue) and jumps to the first; "
            "correct or empty a slice and press Update: only the slices between it and its "
            "nearest annotated or corrected slices are recomputed, corrected slices are never "
            "overwritten. Undo restores the segmentation as before the last Run or Update. See "
            "docs/slicer.md.")
        self.parent.acknowledgementText = (
            "Builds on Segment Anything (Meta AI), SAM 2, Med-PerSAM (Yoon, Jang, Kim and Yang; KAIST / "
            "AITRICS), P2SAM (Zhao and Shen) and PerSAM.")


class OneShotSAMWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: a thin layer over ``OneShotSAMLib.logic.OneShotSAMLogic``
    (every decision that can be tested without the application lives there)."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._updatingGUI = False
        self._cancelRequested = False
        self._running = False

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
        self._cancelRequested = True  # a running propagation stops at its next step
        self.setParameterNode(None)
        self.logic.on_scene_close()  # the Logic also observes the close itself
        self.ui.resultsTable.setRowCount(0)
        self.ui.statusLabel.text = ""

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    # ------------------------------------------------------------------ parameter node
    def initializeParameterNode(self):
        node = self.logic.parameter_node()
        if not node.GetParameter("ReferenceSliceSource"):
            P.set_reference_source(node, "view")
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
            self.ui.referenceSlicesComboBox.setCurrentIndex(
                P.REFERENCE_SOURCES.index(P.reference_source(node)))
            self.ui.windowLineEdit.text = s.window or ""
            self.ui.checkpointPathLineEdit.currentPath = s.checkpoint or ""
            mode = s.target_mode
            self.ui.targetVolumesSelector.enabled = mode == "volumes"
            self.ui.targetSequenceSelector.enabled = mode == "sequence"
            needs_sam = s.method != "medpersam-warp"
            for w in (self.ui.backendComboBox, self.ui.checkpointPathLineEdit, self.ui.downloadWeightsButton):
                w.enabled = needs_sam
            self._updateButtons(node)
        except Exception as exc:  # a bad value typed in a saved scene must not break the GUI
            self.ui.statusLabel.text = str(exc)
        finally:
            self._updatingGUI = False

    def _updateButtons(self, node):
        """Buttons follow the Logic: Run says why it is disabled; inputs are locked while running."""
        blockers = [] if node is None else self.logic.blockers(node)
        self.ui.runButton.enabled = not blockers and not self._running
        self.ui.runButton.toolTip = ("Cannot run yet:\n- " + "\n- ".join(blockers)) if blockers else \
            "Propagate the annotation to the targets."
        self.ui.readinessLabel.text = "" if not blockers or self._running else \
            "Run is disabled: " + blockers[0]
        record = node is not None and bool(node.GetParameter("RunRecord"))
        self.ui.updateButton.enabled = record and not self._running
        self.ui.undoButton.enabled = self.logic.can_undo() and not self._running
        self.ui.cancelButton.enabled = self._running
        for w in (self.ui.inputsCollapsibleButton, self.ui.targetsCollapsibleButton,
                  self.ui.methodCollapsibleButton):
            w.enabled = not self._running

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
            P.set_reference_source(node, P.REFERENCE_SOURCES[self.ui.referenceSlicesComboBox.currentIndex])
            P.write_settings(node, P.RunSettings(
                method=self.ui.methodComboBox.currentData, backend=self.ui.backendComboBox.currentText or None,
                preset=self.ui.presetComboBox.currentText or None, device=self.ui.deviceComboBox.currentText,
                axis=self.ui.axisComboBox.currentText, window=self.ui.windowLineEdit.text.strip() or None,
                checkpoint=self.ui.checkpointPathLineEdit.currentPath or None,
                target_mode=P.TARGET_MODES[self.ui.targetModeComboBox.currentIndex],
                segment_ids=(sid,) if sid else (), reference_slices=None,
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
            from oneshotsam.methods.registry import method_presets

            self.ui.presetComboBox.addItems(method_presets(method))
        except Exception:  # presets missing for this method: defaults only
            pass

    # ------------------------------------------------------------------ run
    def onRun(self, update=False):
        from oneshotsam.errors import OneShotError

        from OneShotSAMLib.progress import ProgressClock, progress_text

        if not self._ensureDependencies():
            return
        self.updateParameterNodeFromGUI()
        self._running, self._cancelRequested = True, False
        self.ui.resultsTable.setRowCount(0)
        self.ui.progressBar.maximum, self.ui.progressBar.value = 0, 0
        self.ui.statusLabel.text = "starting..."
        self._updateButtons(self._parameterNode)
        slicer.app.processEvents()
        clock = ProgressClock()

        def progress(done, total, message):
            self.ui.progressBar.maximum = max(int(total), 0)  # 0: busy (loading, training)
            self.ui.progressBar.value = min(int(done), int(total)) if total else 0
            self.ui.statusLabel.text = progress_text(done, total, message, clock.remaining_s(done, total))
            slicer.app.processEvents()
            return not self._cancelRequested

        def on_row(row):
            self._addRow(row)
            slicer.app.processEvents()

        out = None
        try:
            with slicer.util.tryWithErrorDisplay("OneShotSAM run failed.", waitCursor=False):
                try:
                    out = self.logic.run(self._parameterNode, progress=progress, update=update,
                                         on_row=on_row)
                except OneShotError as exc:
                    self.ui.statusLabel.text = str(exc)
                    slicer.util.warningDisplay(str(exc), windowTitle="OneShotSAM")
                    return
                self._fillTable()
                state = "cancelled: finished slices kept" if out.cancelled else "done"
                self.ui.statusLabel.text = f"{state}; {len(out.rows)} slices in {out.seconds:.0f} s"
        finally:
            self._running = False
            self.ui.progressBar.maximum = max(self.ui.progressBar.maximum, 1)
            self.updateGUIFromParameterNode()
        if out is not None and out.rows and not out.cancelled:
            self.ui.resultsTable.selectRow(0)  # the review queue's head: the likeliest wrong slice
            self.onResultClicked(0, 0)

    def _ensureDependencies(self):
        """Install what is missing after ONE question; False when the run cannot start."""
        from OneShotSAMLib import dependencies as D

        todo = D.unsatisfied()
        if not todo:
            return True
        if slicer.app.testingEnabled():
            slicer.util.warningDisplay("Testing mode: missing Python packages are not installed: "
                                       + ", ".join(todo), windowTitle="OneShotSAM")
            return False
        names = [D.requirement_name(r) for r in todo]
        steps = D.plan_install(names, D.read_requirements(), True)
        if not slicer.util.confirmOkCancelDisplay(
                "OneShotSAM needs these Python packages, installed once into Slicer's Python "
                "(several GB with PyTorch; this takes several minutes and needs internet):\n\n"
                + D.describe(steps) + "\n\nInstall now?",
                windowTitle="OneShotSAM: install dependencies"):
            return False
        dlg = slicer.util.createProgressDialog(labelText="Preparing the installation...", maximum=0,
                                               windowTitle="OneShotSAM: installing dependencies")
        dlg.setCancelButton(None)  # pip cannot be interrupted safely
        state = {"step": ""}

        def on_step(text):
            state["step"] = text
            dlg.labelText = text
            slicer.app.processEvents()

        def on_line(line):
            dlg.labelText = state["step"] + "\n" + line.strip()[-100:]
            slicer.app.processEvents()

        try:
            restart = D.install(steps, on_line=on_line, on_step=on_step)
        except D.InstallError as exc:
            dlg.close()
            slicer.util.errorDisplay(str(exc), windowTitle="OneShotSAM: installation failed",
                                     detailedText=exc.log)
            return False
        finally:
            dlg.close()
        if restart:
            if slicer.util.confirmYesNoDisplay(
                    "Installed packages replaced versions already loaded in this session ("
                    + ", ".join(restart) + "). Restart Slicer now? (needed before running)",
                    windowTitle="OneShotSAM: restart needed"):
                slicer.util.restart()
            return False
        still = D.unsatisfied()
        if still:
            slicer.util.errorDisplay("These packages are still missing after the installation: "
                                     + ", ".join(still) + ". See the Python console for details.",
                                     windowTitle="OneShotSAM")
            return False
        return True

    def onCancel(self):
        self._cancelRequested = True
        self.ui.statusLabel.text = "cancelling at the next step (finished slices are kept)..."

    def onUndo(self):
        with slicer.util.tryWithErrorDisplay("Undo failed.", waitCursor=True):
            self.logic.undo()
            self.ui.resultsTable.setRowCount(0)
            self.ui.statusLabel.text = "restored the segmentation as before the last run"
        self.updateGUIFromParameterNode()

    def onDownloadWeights(self):
        from OneShotSAMLib import weights
        from OneShotSAMLib.messages import for_slicer

        backend = self.ui.backendComboBox.currentText
        st = weights.status(backend)
        if st.path is not None:
            self.ui.statusLabel.text = f"{backend} weights are already downloaded: {st.path}"
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
            path = weights.download(backend, progress)
            self.ui.statusLabel.text = f"downloaded {path}; runs with {backend} find it"
        except Exception as exc:  # network, checksum, cancelled
            slicer.util.errorDisplay(for_slicer(str(exc)), windowTitle="OneShotSAM: download failed")
        finally:
            dlg.close()
        self.updateGUIFromParameterNode()

    # ------------------------------------------------------------------ results
    def _rowTexts(self, row):
        return (row.target_name, str(row.slice_index), f"{row.confidence:.2f}", "yes" if row.flagged else "")

    def _addRow(self, row):
        t = self.ui.resultsTable
        r = t.rowCount
        t.setRowCount(r + 1)
        for c, text in enumerate(self._rowTexts(row)):
            t.setItem(r, c, qt.QTableWidgetItem(text))

    def _fillTable(self):
        t = self.ui.resultsTable
        t.setRowCount(0)
        for row in self.logic.rows:  # the Logic's review order (engine queue)
            self._addRow(row)

    def onResultClicked(self, r, c):
        from oneshotsam.errors import OneShotError

        if self._running or not 0 <= r < len(self.logic.rows):
            return  # while running the table is in arrival order; rows become clickable at the end
        try:
            loc = self.logic.locate_row(self.logic.rows[r])
        except OneShotError as exc:
            self.ui.statusLabel.text = str(exc)
            return
        slicer.util.setSliceViewerLayers(background=loc.volume_node)
        slicer.vtkMRMLSliceNode.JumpAllSlices(slicer.mrmlScene, *loc.ras,
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
    """Offline self-test (no network, no weights). The numpy variant needs nothing but
    Slicer; the tiny-SAM variant runs only where torch and segment-anything are installed."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_numpy_propagation()
        self.setUp()
        self.test_tiny_sam_propagation()

    def test_numpy_propagation(self):
        from OneShotSAMLib.selftest import run_selftest

        self.delayDisplay("Propagating a synthetic annotation with a numpy-only method")
        result = run_selftest(slicer.mrmlScene, "numpy")
        self.assertTrue(result["undo_ok"] and result["update_ok"])
        self.assertEqual(result["rows"], 7)
        self.assertGreater(result["dice"], 0.8)
        self.delayDisplay("Test passed")

    def test_tiny_sam_propagation(self):
        import importlib.util

        missing = [m for m in ("torch", "segment_anything") if importlib.util.find_spec(m) is None]
        if missing:
            self.delayDisplay(f"Skipped the tiny-SAM self-test: {', '.join(missing)} not installed "
                              "(press Run once to install the dependencies)")
            return
        from OneShotSAMLib.selftest import run_selftest

        self.delayDisplay("Propagating a synthetic annotation with a tiny SAM")
        result = run_selftest(slicer.mrmlScene, "persam", workdir=os.environ.get("TMPDIR"))
        self.assertTrue(result["undo_ok"])
        self.assertGreater(result["rows"], 0)
        self.delayDisplay("Test passed")
