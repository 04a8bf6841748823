"""The offline self-test of the module (used by ``OneShotSAMTest`` in Slicer and by pytest).

Builds a synthetic case in the given scene, saves a tiny random-weight SAM
checkpoint (real SAM architecture, ``oneshotsam.backends.tiny``) into a
temporary folder and runs the Logic end to end: no weights download, no
network. Random weights segment nothing meaningful: the test checks the
plumbing (slices written in the right place, table rows, undo), not accuracy.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def run_selftest(scene: Any, method: str = "persam", workdir: str | None = None) -> dict[str, Any]:
    """Run a tiny propagation through the Logic and check its effects.

    Returns:
        ``{"rows": n_rows, "written": [...slice indices], "undo_ok": bool}``.

    Raises:
        AssertionError: a check failed (this is a test).
    """
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
    after = labels_from_segments(case.segmentation_node, [case.segment_id], case.volume_node)
    assert not out.cancelled, "the run was cancelled"
    assert ticks, "progress was never reported"
    np.testing.assert_array_equal(after[3], before[3])          # the annotation is kept
    written = sorted(r.slice_index for r in out.rows)
    assert 3 not in written and set(written) <= set(range(6))
    assert [r.confidence for r in out.rows] == sorted(r.confidence for r in out.rows)
    logic.undo()
    restored = labels_from_segments(case.segmentation_node, [case.segment_id], case.volume_node)
    undo_ok = bool(np.array_equal(restored, before))
    assert undo_ok, "undo did not restore the segmentation"
    return {"rows": len(out.rows), "written": written, "undo_ok": undo_ok,
            "report": out.report}
