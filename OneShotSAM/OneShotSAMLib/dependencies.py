"""Python dependencies of OneShotSAM inside Slicer: what is missing, how to install it.

Nothing is installed at import time. The Widget asks the user first, then
calls :func:`install_missing`: torch (and torchvision) through the PyTorch
extension's ``PyTorchUtils`` (right CUDA/CPU build), everything else from
``Resources/requirements.txt`` through ``slicer.packaging.pip_ensure`` (Slicer
>= 5.11) or ``slicer.util.pip_install``. Packages Slicer ships (numpy, scipy,
SimpleITK) are never reinstalled. sam2 is a source distribution that tries to
compile a CUDA extension: it is installed last with ``SAM2_BUILD_CUDA=0`` and
``--no-build-isolation`` once torch is present.

:func:`plan_install` is pure (tested headless); :func:`install_missing` needs
the Slicer application.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REQUIREMENTS_TXT = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"
#: distribution name -> import name
IMPORT_NAMES = {
    "torch": "torch", "torchvision": "torchvision", "segment-anything": "segment_anything",
    "sam2": "sam2", "monai": "monai", "pot": "ot", "scikit-learn": "sklearn",
    "opencv-python-headless": "cv2", "slicerio": "slicerio",
}
#: shipped with Slicer: never installed or upgraded by OneShotSAM
SHIPPED_BY_SLICER = ("numpy", "scipy", "SimpleITK", "pydicom", "vtk")


@dataclass(frozen=True)
class InstallStep:
    """One installation action.

    Attributes:
        kind: ``"pytorch"`` (PyTorchUtils), ``"pip_ensure"`` or ``"pip_install"``.
        requirements: requirement strings (``name>=version``).
        pip_args: extra pip arguments (``--no-build-isolation``).
        env: environment variables set during the step.
    """

    kind: str
    requirements: tuple[str, ...]
    pip_args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def parse_requirements(text: str) -> list[str]:
    """Requirement lines of a requirements.txt (comments and blanks dropped)."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def requirement_name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip()


def read_requirements(path: Path = REQUIREMENTS_TXT) -> list[str]:
    return parse_requirements(path.read_text(encoding="utf-8"))


def is_installed(dist_name: str) -> bool:
    mod = IMPORT_NAMES.get(dist_name, dist_name.replace("-", "_"))
    return importlib.util.find_spec(mod) is not None


def missing(requirements: list[str] | None = None,
            installed: Callable[[str], bool] = is_installed) -> list[str]:
    """Distribution names not importable now (torch first when missing)."""
    reqs = requirements if requirements is not None else read_requirements()
    names = ["torch", "torchvision"] + [requirement_name(r) for r in reqs]
    return [n for n in dict.fromkeys(names) if not installed(n)]


def plan_install(missing_names: list[str], requirements: list[str],
                 has_pip_ensure: bool) -> list[InstallStep]:
    """Ordered install steps for the missing distributions.

    torch/torchvision -> PyTorchUtils; sam2 last with SAM2_BUILD_CUDA=0 and
    --no-build-isolation; the rest in one pip call. Slicer-shipped packages are
    refused even when listed.
    """
    by_name = {requirement_name(r): r for r in requirements}
    steps: list[InstallStep] = []
    if "torch" in missing_names or "torchvision" in missing_names:
        steps.append(InstallStep("pytorch", ("torch", "torchvision")))
    rest = [by_name.get(n, n) for n in missing_names
            if n not in ("torch", "torchvision", "sam2") and n not in SHIPPED_BY_SLICER]
    kind = "pip_ensure" if has_pip_ensure else "pip_install"
    if rest:
        steps.append(InstallStep(kind, tuple(rest)))
    if "sam2" in missing_names:
        steps.append(InstallStep("pip_install", (by_name.get("sam2", "sam2"),),
                                 ("--no-build-isolation",), (("SAM2_BUILD_CUDA", "0"),)))
    return steps


def describe(steps: list[InstallStep]) -> str:
    """Text for the consent dialog."""
    lines = []
    for st in steps:
        if st.kind == "pytorch":
            lines.append("PyTorch (torch, torchvision) through the PyTorch extension")
        else:
            env = " ".join(f"{k}={v}" for k, v in st.env)
            lines.append(" ".join(filter(None, [env, "pip install", *st.pip_args,
                                                *st.requirements])))
    return "\n".join(lines)


def install_missing(progress: Callable[[str], None] = lambda msg: None) -> list[str]:
    """Install what is missing (Slicer application only; ask the user BEFORE calling).

    Returns:
        The distributions that were missing.
    """
    import slicer

    reqs = read_requirements()
    names = missing(reqs)
    packaging = getattr(slicer, "packaging", None)
    for st in plan_install(names, reqs, hasattr(packaging, "pip_ensure")):
        progress(describe([st]))
        if st.kind == "pytorch":
            try:
                import PyTorchUtils
            except ImportError:
                raise RuntimeError("the PyTorch extension is required: install 'PyTorch' from "
                                   "the Extensions Manager and restart Slicer") from None
            torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False)
            if torch is None:
                raise RuntimeError("PyTorch was not installed; OneShotSAM cannot run without it")
            continue
        old = {k: os.environ.get(k) for k, _ in st.env}
        os.environ.update(dict(st.env))
        try:
            if st.kind == "pip_ensure":
                packaging.pip_ensure(list(st.requirements))
            else:
                slicer.util.pip_install(" ".join([*st.pip_args, *st.requirements]))
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return names
