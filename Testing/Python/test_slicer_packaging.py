"""Extension packaging and the module script, checked without the Slicer application.

* CMakeLists.txt / OneShotSAM.s4ext / OneShotSAM.json metadata agree;
* the module CMakeLists lists every script and resource on disk (and nothing missing);
* the .ui is valid Qt Designer XML, every ``self.ui.X`` used by OneShotSAM.py exists,
  every non-Qt widget class is declared in <customwidgets>;
* OneShotSAM.py imports with qt / ctk / slicer.ScriptedLoadableModule stubbed (smoke test);
* dependency planning (torch through PyTorchUtils, sam2 last without build isolation).
"""

from __future__ import annotations

import ast
import json
import re
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "OneShotSAM"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))


def cmake_sets(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r'set\((EXTENSION_\w+)\s+"([^"]*)"\)', text)}


def s4ext_fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            out[key] = value.strip()
    return out


def test_metadata_agrees_across_cmake_s4ext_catalog():
    cm = cmake_sets((ROOT / "CMakeLists.txt").read_text())
    s4 = s4ext_fields((ROOT / "OneShotSAM.s4ext").read_text())
    cat = json.loads((ROOT / "OneShotSAM.json").read_text())
    assert cm["EXTENSION_CATEGORY"] == s4["category"] == cat["category"] == "Segmentation"
    assert cm["EXTENSION_DEPENDS"].split() == s4["depends"].split() == cat["build_dependencies"] == ["PyTorch"]
    assert cm["EXTENSION_HOMEPAGE"] == s4["homepage"]
    assert cm["EXTENSION_DESCRIPTION"] == s4["description"]
    assert cm["EXTENSION_ICONURL"] == s4["iconurl"]
    assert cm["EXTENSION_SCREENSHOTURLS"] == s4["screenshoturls"]
    assert cm["EXTENSION_CONTRIBUTORS"] == s4["contributors"]
    assert s4["scmurl"] == cat["scm_url"] and s4["scmrevision"] == cat["scm_revision"]
    assert s4["build_subdirectory"] == cat["build_subdirectory"] == "."
    assert "v1.0.2" in cat["$schema"]
    # icon and screenshot URLs point at files of this repository
    assert cm["EXTENSION_ICONURL"].endswith("Resources/Icons/OneShotSAM.png")
    assert (ROOT / "Resources/Icons/OneShotSAM.png").is_file()
    # no screenshot yet: no URL may point at a file that does not exist
    for url in cm["EXTENSION_SCREENSHOTURLS"].split():
        marker = "/main/"
        assert marker in url and (ROOT / url.split(marker, 1)[1]).is_file(), url
    for ref in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (ROOT / "docs" / "slicer.md").read_text()):
        assert (ROOT / "docs" / ref).is_file(), ref
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert "add_subdirectory(OneShotSAM)" in (ROOT / "CMakeLists.txt").read_text()


def test_module_cmakelists_lists_every_file_on_disk():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    listed = set(re.findall(r"\$\{MODULE_NAME\}([\w/.]+)", text))
    listed = {"OneShotSAM" + x for x in listed}
    listed |= set(re.findall(r"^\s+(Resources/[\w/.]+)", text, re.M))
    listed = {x.replace("${MODULE_NAME}", "OneShotSAM") for x in listed}
    on_disk = {"OneShotSAM.py"} | {f"OneShotSAMLib/{p.name}" for p in (MODULE_DIR / "OneShotSAMLib").glob("*.py")}
    on_disk |= {str(p.relative_to(MODULE_DIR)) for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file()}
    resources = set(re.findall(r"(Resources/[\w/.${}]+)", text))
    resources = {r.replace("${MODULE_NAME}", "OneShotSAM") for r in resources}
    scripts = {s.replace("${MODULE_NAME}", "OneShotSAM")
               for s in re.findall(r"^\s+(\$\{MODULE_NAME\}[\w/.]*\.py)", text, re.M)}
    assert on_disk == scripts | resources, (on_disk ^ (scripts | resources))
    for f in scripts | resources:
        assert (MODULE_DIR / f).is_file(), f
    # the engine package is packaged whole through a recursive glob
    assert "GLOB_RECURSE ENGINE_PYTHON_SCRIPTS" in text and "oneshotsam/*.py" in text
    assert "${ENGINE_PYTHON_SCRIPTS}" in text and "oneshotsam/*.json" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    # no stray .py directly in the module folder (Slicer would load it as a module)
    assert sorted(p.name for p in MODULE_DIR.glob("*.py")) == ["OneShotSAM.py"]
    assert not (ROOT / "Testing" / "Python" / "slicer").exists()


def test_requirements_have_lower_bounds_and_skip_shipped():
    from OneShotSAMLib import dependencies as D

    reqs = D.read_requirements()
    assert reqs and all(">=" in r for r in reqs)
    names = {D.requirement_name(r) for r in reqs}
    assert "opencv-python-headless" in names and "opencv-python" not in names
    assert not names & {"numpy", "scipy", "SimpleITK", "torch", "torchvision"}


@pytest.mark.parametrize("missing,has_ensure,expected", [
    (["torch", "torchvision", "sam2", "monai"], True,
     [("pytorch", ("torch>=2.5.1", "torchvision>=0.20"), (), ()),
      ("pip_ensure", ("monai>=1.3",), (), ()),
      ("pip_ensure", ("sam2>=1.1.0",), ("--no-build-isolation",), (("SAM2_BUILD_CUDA", "0"),))]),
    (["pot", "numpy"], False, [("pip_install", ("pot>=0.9",), (), ())]),
    ([], True, []),
])
def test_plan_install(missing, has_ensure, expected):
    from OneShotSAMLib import dependencies as D

    steps = D.plan_install(missing, D.read_requirements(), has_ensure)
    assert [(s.kind, s.requirements, s.pip_args, s.env) for s in steps] == expected
    if steps:
        assert D.describe(steps)


def test_missing_reports_unimportable():
    from OneShotSAMLib import dependencies as D

    assert D.missing(["monai>=1.3", "pot>=0.9"], installed=lambda n: n != "pot") == ["pot"]
    assert D.parse_requirements("# c\n\nmonai>=1.3  # x\n") == ["monai>=1.3"]


def test_versions_are_checked_not_just_imports():
    from OneShotSAMLib import dependencies as D

    versions = {"torch": "2.4.0+cu121", "torchvision": "0.19.0", "monai": "1.4.0", "pot": None,
                "opencv-python-headless": None, "sam2": "1.1.0"}
    importable = {"opencv-python-headless"}          # cv2 from opencv-python: accepted
    todo = D.unsatisfied(["monai>=1.3", "pot>=0.9", "opencv-python-headless>=4.8", "sam2>=1.1.0",
                          "numpy>=9"], versions.get, lambda n: n in importable)
    assert todo == ["torch>=2.5.1", "torchvision>=0.20", "pot>=0.9"]   # old torch is not enough
    assert D.satisfied("torch>=2.5.1", {"torch": "2.5.1+cpu"}.get, lambda n: False)
    assert not D.satisfied("monai>=1.3", {"monai": "1.2.9"}.get, lambda n: True)
    assert D.satisfied("monai[nibabel]>=1.3", {"monai": "1.4.0"}.get, lambda n: True)
    steps = D.plan_install([D.requirement_name(r) for r in todo], ["pot>=0.9"], True)
    assert steps[0] == D.InstallStep("pytorch", ("torch>=2.5.1", "torchvision>=0.20"))
    assert "torch>=2.5.1" in D.describe(steps)


def test_constraints_pin_what_slicer_ships_and_torch():
    from OneShotSAMLib import dependencies as D

    have = {"numpy": "1.26.4", "scipy": "1.13.1", "SimpleITK": "2.4.0", "torch": "2.5.1+cu121"}
    text = D.constraints_text(have.get)
    assert text.splitlines() == ["numpy==1.26.4", "scipy==1.13.1", "SimpleITK==2.4.0",
                                 "torch==2.5.1+cu121"]


def test_failure_message_shows_the_log_tail_and_a_network_hint():
    from OneShotSAMLib import dependencies as D

    log = [f"line {i}" for i in range(30)] + [
        "WARNING: Retrying ... NewConnectionError('Failed to establish a new connection')",
        "ERROR: No matching distribution found for monai>=1.3"]
    msg = D.failure_message(log, "monai")
    assert msg.startswith("Installing monai failed.") and "internet connection" in msg
    assert "No matching distribution found for monai" in msg and "line 16" not in msg
    assert "line 17" in msg                               # the last 15 lines
    other = D.failure_message(["error: subprocess-exited-with-error", "gcc failed"], "sam2")
    assert "internet" not in other and "gcc failed" in other


def test_restart_needed_only_for_changed_imported_packages():
    from OneShotSAMLib import dependencies as D

    before = {"torch": "2.4.0", "monai": "1.3.0", "pot": "0.9.4"}
    after = {"torch": "2.5.1", "monai": "1.4.0", "pot": "0.9.4", "sam2": "1.1.0"}
    names = {"torch": ["torch"], "monai": ["monai"], "pot": ["ot"], "sam2": ["sam2"]}
    assert D.restart_needed(before, after, {"torch", "ot"}, names.get) == ["torch"]
    assert D.restart_needed(before, after, set(), names.get) == []


def test_install_code_imports_slicer_packaging_explicitly_and_never_at_import():
    src = (MODULE_DIR / "OneShotSAMLib" / "dependencies.py").read_text()
    assert "import slicer.packaging" in src              # `import slicer` does not import it
    tree = ast.parse(src)
    top = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top |= {n.module for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert not {m for m in top if m and m.split(".")[0] in ("slicer", "qt", "PyTorchUtils")}
    widget = (MODULE_DIR / "OneShotSAM.py").read_text()
    assert "pip_install(" not in widget and "installTorch(" not in widget   # only through the lib


# ------------------------------------------------------------------ .ui
QT_CLASSES = {"QWidget", "QLabel", "QComboBox", "QLineEdit", "QPushButton", "QProgressBar",
              "QTableWidget", "QVBoxLayout", "QHBoxLayout", "QFormLayout", "QCheckBox", "QSpinBox"}


def ui_tree():
    return ET.parse(MODULE_DIR / "Resources" / "UI" / "OneShotSAM.ui").getroot()


def test_ui_names_used_by_widget_exist_and_custom_widgets_declared():
    root = ui_tree()
    names = {w.get("name") for w in root.iter("widget")}
    classes = {w.get("class") for w in root.iter("widget")}
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    assert classes - QT_CLASSES <= declared, classes - QT_CLASSES - declared
    for c in root.iter("customwidget"):
        assert c.findtext("extends") and c.findtext("header")
    src = (MODULE_DIR / "OneShotSAM.py").read_text()
    used = set(re.findall(r"self\.ui\.(\w+)", src))
    assert used and used <= names, used - names
    # parameter binding names are real parameter-node names
    bound = {p.findtext("string") for p in root.iter("property") if p.get("name") == "SlicerParameterName"}
    assert bound <= {"ReferenceVolume", "TargetSequence", "Method", "Backend", "Preset", "Device",
                     "Window", "Checkpoint"}
    # every method of the logic is offered: the widget fills the combo from parameters.METHODS
    from OneShotSAMLib import parameters as P
    assert set(P.METHODS.values()) == {"medpersam", "medpersam-warp", "p2sam", "persam",
                                     "persam-f"}


def test_ui_form_labels_are_unique_and_say_what_the_controls_do():
    root = ui_tree()
    texts = [w.findtext("property[@name='text']/string") for w in root.iter("widget")
             if w.get("class") == "QLabel" and w.get("name").endswith("Label")]
    named = [t for t in texts if t]
    assert len(named) == len(set(named)), sorted(named)       # no two rows called "Segment:"
    combo = next(w for w in root.iter("widget") if w.get("name") == "referenceSlicesComboBox")
    items = [i.findtext("property/string") for i in combo.iter("item")]
    assert len(items) == 2 and "red" not in items[0].lower()   # follows the slicing axis
    from OneShotSAMLib import parameters as P
    assert P.REFERENCE_SOURCES == ("view", "all")               # combo index = source index
    names = {w.get("name") for w in root.iter("widget")}
    assert "readinessLabel" in names                            # why Run is disabled


# ------------------------------------------------------------------ import smoke test
def _stub_modules(monkeypatch):
    class _Base:
        def __init__(self, *a, **k):
            self.parent = types.SimpleNamespace()

    sl = types.ModuleType("slicer.ScriptedLoadableModule")
    for n in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
              "ScriptedLoadableModuleTest"):
        setattr(sl, n, type(n, (_Base,), {}))
    qt = types.ModuleType("qt")
    qt.Qt = types.SimpleNamespace(Checked=2, Unchecked=0)
    qt.QTableWidgetItem = lambda text: text
    monkeypatch.setitem(sys.modules, "qt", qt)
    monkeypatch.setitem(sys.modules, "ctk", types.ModuleType("ctk"))
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", sl)


def test_module_script_imports_with_slicer_only_modules_stubbed(monkeypatch):
    pytest.importorskip("slicer")
    import importlib.util

    _stub_modules(monkeypatch)
    before = set(sys.modules)
    spec = importlib.util.spec_from_file_location("OneShotSAM_smoke", MODULE_DIR / "OneShotSAM.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for cls in ("OneShotSAM", "OneShotSAMWidget", "OneShotSAMLogic", "OneShotSAMTest"):
        assert hasattr(mod, cls)
    m = mod.OneShotSAM(types.SimpleNamespace())
    assert m.parent.title == "OneShotSAM" and m.parent.categories == ["Segmentation"]
    assert "Update" in m.parent.helpText
    heavy = {"torch", "sam2", "hydra"} & (set(sys.modules) - before)
    assert not heavy, f"importing the module script imported {heavy}"
    assert mod._backend_names()[0].startswith("sam")


def test_module_script_defines_no_heavy_top_level_imports():
    tree = ast.parse((MODULE_DIR / "OneShotSAM.py").read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            top.add((node.module or "").split(".")[0])
    assert not top & {"torch", "sam2", "hydra", "oneshotsam", "monai", "cv2"}
