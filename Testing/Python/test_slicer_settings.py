"""Every propagation setting a command-line user has, a Slicer user has: set in the
module's parameter node (real MRML, slicer-core), it reaches the engine's
configuration through the one settings layer; bad values are refused before
anything is written, with the command line's message."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

MODULE_DIR = Path(__file__).resolve().parents[2] / "OneShotSAM"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

pytest.importorskip("slicer")

from oneshotsam import settings as S  # noqa: E402
from oneshotsam.errors import OneShotError  # noqa: E402
from oneshotsam.volume import pipeline as pipeline_mod  # noqa: E402
from oneshotsam.volume.pipeline import PropagationResult  # noqa: E402

from OneShotSAMLib import parameters as P  # noqa: E402
from OneShotSAMLib.logic import OneShotSAMLogic  # noqa: E402
from OneShotSAMLib.messages import for_slicer  # noqa: E402
from OneShotSAMLib.synthetic import make_case  # noqa: E402

from test_settings_layer import NON_DEFAULT  # noqa: E402


@pytest.fixture
def seen(monkeypatch):
    """Replaces the engine: records the configuration the Logic passes."""
    configs = []

    def propagate(reference, reference_labels, targets=(), config=None, progress=None,
                  on_slice=None, method=None):
        configs.append(config)
        return PropagationResult([], {"recorded": True}, False)

    monkeypatch.setattr(pipeline_mod, "propagate", propagate)
    return configs


def _configure(logic, case, parameter: str, text: str):
    node = logic.parameter_node()
    P.set_inputs(node, case.volume_node, case.segmentation_node)
    P.write_settings(node, P.RunSettings(segment_ids=(case.segment_id,)))
    node.SetParameter(parameter, text)  # as the widget (or a saved scene) stores it
    return node


def test_every_cli_setting_is_a_parameter() -> None:
    params = {s.parameter for s in S.PROPAGATION_SETTINGS}
    assert set(P.PROPAGATION_PARAMETERS) | {"Window", "Align"} == params


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_parameter_node_setting_reaches_the_engine(scene, seen, name: str) -> None:
    setting = next(s for s in S.PROPAGATION_SETTINGS if s.name == name)
    case = make_case(scene, annotated=(6,))
    logic = OneShotSAMLogic(scene)
    _configure(logic, case, setting.parameter, NON_DEFAULT[name])
    logic.run()
    expected = getattr(S.propagation_config({name: NON_DEFAULT[name]}), name)
    assert getattr(seen[0], name) == expected != setting.default


@pytest.mark.parametrize("parameter,text", [
    ("StopMinAreaRatio", "abc"), ("Registration", "bspline"), ("ContourEndMinFit", "-1"),
    ("Seed", "1.5"), ("Device", "tpu"),
])
def test_bad_parameter_refused_like_the_cli(scene, seen, parameter: str, text: str) -> None:
    case = make_case(scene, annotated=(6,))
    logic = OneShotSAMLogic(scene)
    node = _configure(logic, case, parameter, text)
    n_nodes = scene.GetNumberOfNodes()
    with pytest.raises(OneShotError) as slicer_err:
        logic.run()
    assert not seen and scene.GetNumberOfNodes() == n_nodes  # nothing run, nothing added
    setting = next((s for s in S.PROPAGATION_SETTINGS if s.parameter == parameter), None)
    with pytest.raises(OneShotError) as cli_err:
        if setting is None:
            S.propagation_config({}, device=text)
        else:
            S.propagation_config({setting.name: text})
    # the same message, with the command line's flags named as the module's settings
    assert str(slicer_err.value) == for_slicer(str(cli_err.value))
    assert node.GetParameter(parameter) == text  # the user's value is kept, not rewritten


def test_widget_style_write_keeps_propagation_parameters(scene) -> None:
    """The widget rewrites its own controls (RunSettings without ``propagation``): the
    propagation settings set in the parameter node survive; ``""`` resets one."""
    logic = OneShotSAMLogic(scene)
    node = logic.parameter_node()
    node.SetParameter("Registration", "rigid")
    P.write_settings(node, P.RunSettings(method="medpersam-warp"))
    assert P.read_settings(node).propagation == {"Registration": "rigid"}
    P.write_settings(node, P.RunSettings(propagation={"Registration": ""}))
    assert P.read_settings(node).propagation == {}
