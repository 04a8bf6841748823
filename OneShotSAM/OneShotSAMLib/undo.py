"""One undo step for a run, scoped to its scene and to node references.

The snapshot holds the node OBJECTS a run touched (never their IDs: Slicer
reuses IDs after a scene close, so an ID recorded in one scene names another
patient's node in the next one). Restoring checks that each node still belongs
to the scene the snapshot was taken in; a node that was deleted or whose scene
was closed is left alone. The Logic drops the snapshot when the scene starts
closing. MRML + VTK only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def in_scene(scene: Any, node: Any) -> bool:
    """True when ``node`` is (still) a node of ``scene``."""
    return node is not None and node.GetScene() is scene and bool(scene.IsNodePresent(node))


@dataclass
class UndoSnapshot:
    """What one run changed, to put it back.

    Attributes:
        scene: the scene the run wrote into.
        segmentations: ``(segmentation node, vtkSegmentation copy)`` of every
            existing segmentation the run wrote into, as it was before.
        created: segmentation nodes the run created (undo removes them).
        param_node: the parameter node whose RunRecord the run replaced.
        record: the RunRecord text before the run.
    """

    scene: Any
    segmentations: list[tuple[Any, Any]] = field(default_factory=list)
    created: list[Any] = field(default_factory=list)
    param_node: Any = None
    record: str = ""

    @classmethod
    def take(cls, scene: Any, outputs: list[Any], param_node: Any) -> "UndoSnapshot":
        """Copy the segmentations ``outputs`` (``review.Output``) will write into."""
        import slicer

        snap = cls(scene, param_node=param_node, record=param_node.GetParameter("RunRecord"))
        seen: list[Any] = []
        for o in outputs:
            if o.created:
                snap.created.append(o.seg_node)
            elif not any(o.seg_node is n for n in seen):
                copy = slicer.vtkSegmentation()
                copy.DeepCopy(o.seg_node.GetSegmentation())
                snap.segmentations.append((o.seg_node, copy))
                seen.append(o.seg_node)
        return snap

    def valid(self, scene: Any) -> bool:
        """Something of the run is still in ``scene`` (the scene the run wrote into)."""
        if scene is not self.scene:
            return False
        return any(in_scene(scene, n) for n, _ in self.segmentations) or \
            any(in_scene(scene, n) for n in self.created)

    def restore(self) -> int:
        """Put the segmentations back, remove the created ones, restore the record.

        Returns:
            How many nodes were restored or removed (nodes no longer in the
            scene are skipped, never looked up by ID).
        """
        done = 0
        for node, saved in self.segmentations:
            if in_scene(self.scene, node):
                node.GetSegmentation().DeepCopy(saved)
                node.Modified()
                done += 1
        for node in self.created:
            if in_scene(self.scene, node):
                self.scene.RemoveNode(node)
                done += 1
        if in_scene(self.scene, self.param_node):
            self.param_node.SetParameter("RunRecord", self.record)
        return done
