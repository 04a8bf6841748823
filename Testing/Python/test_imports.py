"""Importing the engine must stay light: no torch, sam2, hydra, slicer or qt at import time.

Each module is imported in a fresh interpreter (a subprocess), so what other
tests imported does not hide a heavy module-level import.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "OneShotSAM"
HEAVY = ("torch", "torchvision", "sam2", "segment_anything", "hydra", "slicer", "qt", "PythonQt",
         "monai", "pydicom", "highdicom", "rt_utils", "ray", "trame", "trame_slicer", "vtkmodules",
         "itk")

#: modules meant to be light (importing them must not load a heavy package)
LIGHT_MODULES = [
    "oneshotsam",
    "oneshotsam.cli",
    "oneshotsam.cli_inputs",
    "oneshotsam.cli_segment",
    "oneshotsam.cli_evaluate",
    "oneshotsam.cli_weights",
    "oneshotsam.cli_benchmark",
    "oneshotsam.types",
    "oneshotsam.devices",
    "oneshotsam.methods",
    "oneshotsam.methods.base",
    "oneshotsam.methods.registry",
    "oneshotsam.backends",
    "oneshotsam.backends.base",
    "oneshotsam.backends.factory",
    "oneshotsam.backends.checkpoints",
    "oneshotsam.backends.download",
    "oneshotsam.presets",
    "oneshotsam.geometry",
    "oneshotsam.medio",
    "oneshotsam.dicom_series",
    "oneshotsam.dicom_rt",
    "oneshotsam.dicom_seg",
    "oneshotsam.contours",
    "oneshotsam.label_outputs",
    "oneshotsam.intensity",
    "oneshotsam.evaluate",
    "oneshotsam.volume",
    "oneshotsam.volume.pipeline",
    "oneshotsam.volume.cli",
    "oneshotsam.benchmark2d",
    "oneshotsam.peer_elastix",
    "oneshotsam.protocols",
    "oneshotsam.protocols.cli",
    "oneshotsam.protocols.runner",
    "oneshotsam.protocols.jsrt",
    "oneshotsam.protocols.acdc",
    "oneshotsam.protocols.la",
    "oneshotsam.protocols.perturb",
    "oneshotsam.cli_cohort",
    "oneshotsam.cohort.execute",
    "oneshotsam.cohort.patient",
    "OneShotSAMWeb",
    "OneShotSAMWeb.cli",
]

_PROBE = """
import importlib, json, sys
mod = sys.argv[1]
importlib.import_module(mod)
heavy = json.loads(sys.argv[2])
loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)
print(json.dumps(loaded))
"""


def _available(module: str) -> bool:
    sys.path.insert(0, str(ENGINE))
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False
    finally:
        sys.path.remove(str(ENGINE))


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_module_import_is_light(module: str) -> None:
    if not _available(module):
        pytest.skip(f"{module} is not part of this checkout yet")
    env_path = str(ENGINE)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, module, json.dumps(HEAVY)],
        capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": env_path})
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing {module} pulled in heavy modules: {loaded}"


def _heavy_modules_after(code: str) -> list[str]:
    """Heavy top-level modules loaded by ``code`` in a fresh interpreter."""
    code += (f"\nimport sys, json\nheavy = {list(HEAVY)!r}\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**__import__("os").environ, "PYTHONPATH": str(ENGINE)})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cli_help_is_light() -> None:
    """Building the whole parser (``oneshotsam --help``) imports no heavy module either."""
    assert _heavy_modules_after("from oneshotsam.cli import build_parser\nbuild_parser()") == []


@pytest.mark.parametrize("argv", [["segment", "--help"], ["--help"]])
def test_cli_help_run_is_light(argv) -> None:
    """Running ``oneshotsam segment --help`` (``main`` as the console script calls it,
    until argparse exits) imports no heavy module: no torch, no monai."""
    code = f"from oneshotsam.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    assert _heavy_modules_after(code) == []
