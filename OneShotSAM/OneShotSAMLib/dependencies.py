"""Python dependencies of OneShotSAM inside Slicer: what is missing, how to install it.

Nothing is installed at import time. The Widget asks the user ONE question
(listing :func:`describe` of the plan), then calls :func:`install` with a
progress callback. torch and torchvision come through the PyTorch
extension's ``PyTorchUtils`` (the right CUDA/CPU build) with the version
requirement of :data:`TORCH_REQUIREMENTS` (sam2 needs torch >= 2.5.1);
everything else from ``Resources/requirements.txt`` through
``slicer.packaging.pip_install`` (Slicer >= 5.11; ``import slicer`` does not
import ``slicer.packaging``, it is imported explicitly) or
``slicer.util.pip_install``. Every pip call gets a constraints file that pins
what is installed of the packages Slicer ships (numpy, SciPy, SimpleITK...)
and of torch/torchvision, so no requirement can replace them (``pip install
sam2`` would otherwise pull another torch build). sam2 is a source
distribution that tries to compile a CUDA extension: it is installed last
with ``SAM2_BUILD_CUDA=0`` and ``--no-build-isolation``.

Requirements are checked with their versions (an old torch is not enough).
On failure the user gets the last lines of pip's log and, when the log shows
a network problem, what to check. When a package that was already imported
changed, Slicer must be restarted (:func:`restart_needed`).

Everything but :func:`install` is pure Python (tested headless).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

REQUIREMENTS_TXT = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"
#: torch through PyTorchUtils: sam2 >= 1.1 needs torch >= 2.5.1 (torchvision 0.20 pairs with it)
TORCH_REQUIREMENTS = ("torch>=2.5.1", "torchvision>=0.20")
#: distribution name -> import name
IMPORT_NAMES = {
    "torch": "torch", "torchvision": "torchvision", "segment-anything": "segment_anything",
    "sam2": "sam2", "monai": "monai", "pot": "ot", "scikit-learn": "sklearn",
    "opencv-python-headless": "cv2", "slicerio": "slicerio",
}
#: shipped with Slicer: never installed or upgraded by OneShotSAM (pinned during installs)
SHIPPED_BY_SLICER = ("numpy", "scipy", "SimpleITK", "pydicom", "vtk")
#: pip log text that means "no network / no package index"
NETWORK_PATTERNS = ("Could not fetch URL", "NewConnectionError", "Temporary failure in name resolution",
                    "Name or service not known", "Failed to establish a new connection",
                    "ConnectTimeoutError", "Read timed out", "ProxyError", "SSLError",
                    "No matching distribution found", "Network is unreachable",
                    "getaddrinfo failed", "CERTIFICATE_VERIFY_FAILED")


@dataclass(frozen=True)
class InstallStep:
    """One installation action.

    Attributes:
        kind: ``"pytorch"`` (PyTorchUtils), ``"pip_ensure"`` (through
            ``slicer.packaging``, Slicer >= 5.11) or ``"pip_install"`` (``slicer.util``).
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


def installed_version(dist_name: str) -> str | None:
    """The installed version of a distribution (None when not installed)."""
    import importlib.metadata

    try:
        return importlib.metadata.version(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _specifier_set(text: str):
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:  # pip always vendors it
        from pip._vendor.packaging.specifiers import SpecifierSet  # type: ignore[no-redef]
    return SpecifierSet(text)


def satisfied(req: str, version_of: Callable[[str], str | None] = installed_version,
              importable: Callable[[str], bool] = is_installed) -> bool:
    """Is requirement ``req`` (``name>=x``) met? A distribution found with a version
    outside the bounds is not; one without metadata counts when it imports (e.g.
    ``cv2`` from ``opencv-python`` instead of the headless wheel)."""
    name = requirement_name(req)
    version = version_of(name)
    if version is None:
        return importable(name)
    spec = re.sub(r"^\s*\[[^\]]*\]", "", req[len(name):].split(";", 1)[0]).strip()  # drop extras
    if not spec:
        return True
    return _specifier_set(spec).contains(version.split("+", 1)[0], prereleases=True)


def unsatisfied(requirements: Sequence[str] | None = None,
                version_of: Callable[[str], str | None] = installed_version,
                importable: Callable[[str], bool] = is_installed) -> list[str]:
    """Requirement strings not met now (torch's first), shipped packages excluded."""
    reqs = list(TORCH_REQUIREMENTS) + list(requirements if requirements is not None
                                           else read_requirements())
    return [r for r in dict.fromkeys(reqs) if requirement_name(r) not in SHIPPED_BY_SLICER
            and not satisfied(r, version_of, importable)]


def missing(requirements: list[str] | None = None,
            installed: Callable[[str], bool] | None = None) -> list[str]:
    """Distribution names to install now (torch first). With ``installed``, only
    importability is checked (no versions)."""
    if installed is not None:
        reqs = requirements if requirements is not None else read_requirements()
        names = ["torch", "torchvision"] + [requirement_name(r) for r in reqs]
        return [n for n in dict.fromkeys(names) if not installed(n)]
    return [requirement_name(r) for r in unsatisfied(requirements)]


def plan_install(missing_names: list[str], requirements: list[str],
                 has_pip_ensure: bool) -> list[InstallStep]:
    """Ordered install steps for the missing distributions.

    torch/torchvision -> PyTorchUtils with :data:`TORCH_REQUIREMENTS`; sam2 last
    with SAM2_BUILD_CUDA=0 and --no-build-isolation; the rest in one pip call.
    Slicer-shipped packages are refused even when listed.
    """
    by_name = {requirement_name(r): r for r in (*TORCH_REQUIREMENTS, *requirements)}
    steps: list[InstallStep] = []
    if "torch" in missing_names or "torchvision" in missing_names:
        steps.append(InstallStep("pytorch", TORCH_REQUIREMENTS))
    rest = [by_name.get(n, n) for n in missing_names
            if n not in ("torch", "torchvision", "sam2") and n not in SHIPPED_BY_SLICER]
    kind = "pip_ensure" if has_pip_ensure else "pip_install"
    if rest:
        steps.append(InstallStep(kind, tuple(rest)))
    if "sam2" in missing_names:
        steps.append(InstallStep(kind, (by_name.get("sam2", "sam2"),),
                                 ("--no-build-isolation",), (("SAM2_BUILD_CUDA", "0"),)))
    return steps


def describe(steps: list[InstallStep]) -> str:
    """Text for the consent dialog."""
    lines = []
    for st in steps:
        if st.kind == "pytorch":
            lines.append(f"PyTorch ({', '.join(st.requirements)}) through the PyTorch extension "
                         "(CUDA build when an NVIDIA GPU is found, about 2.5 GB; else CPU build)")
        else:
            env = " ".join(f"{k}={v}" for k, v in st.env)
            lines.append(" ".join(filter(None, [env, "pip install", *st.pip_args,
                                                *st.requirements])))
    return "\n".join(lines)


def constraints_text(version_of: Callable[[str], str | None] = installed_version,
                     names: Sequence[str] = (*SHIPPED_BY_SLICER, "torch", "torchvision")) -> str:
    """pip constraints pinning the installed versions of ``names`` (absent ones skipped)."""
    lines = [f"{n}=={v}" for n in names if (v := version_of(n))]
    return "".join(line + "\n" for line in lines)


def failure_message(log_lines: Sequence[str], what: str, keep: int = 15) -> str:
    """What to tell the user when an install step failed: the last log lines, and a
    network hint when the log shows the package index could not be reached."""
    tail = [x for x in log_lines if x.strip()][-keep:]
    text = f"Installing {what} failed."
    if any(p in line for line in log_lines for p in NETWORK_PATTERNS):
        text += (" The package index could not be reached: check the internet connection "
                 "(and proxy settings: HTTPS_PROXY), then press Run again.")
    if tail:
        text += "\n\nLast lines of the log:\n" + "\n".join(tail)
    return text


def restart_needed(before: dict[str, str], after: dict[str, str], imported: set[str],
                   import_names: Callable[[str], Sequence[str]]) -> list[str]:
    """Distributions that changed (``before``/``after``: name -> version) while one of
    their modules was already imported: Slicer must restart to use the new version."""
    changed = [n for n, v in after.items() if n in before and before[n] != v]
    return [n for n in changed if any(m in imported for m in import_names(n))]


def _import_names(dist: str) -> list[str]:
    import importlib.metadata

    names = [m for m, dists in importlib.metadata.packages_distributions().items() if dist in dists]
    return names or [IMPORT_NAMES.get(dist, dist.replace("-", "_"))]


def _versions(names: Sequence[str]) -> dict[str, str]:
    importlib.invalidate_caches()
    return {n: v for n in names if (v := installed_version(n))}


class InstallError(RuntimeError):
    """An install step failed; the message holds the log's last lines (and a network hint)."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


@contextlib.contextmanager
def _captured_lines(on_line: Callable[[str], None]) -> Iterator[list[str]]:
    """Tee stdout line by line (Slicer's pip helpers print every line of the log)."""
    lines: list[str] = []
    real = sys.stdout

    class Tee(io.TextIOBase):
        buf = ""

        def write(self, s: str) -> int:
            real.write(s)
            self.buf += s
            while "\n" in self.buf:
                line, self.buf = self.buf.split("\n", 1)
                lines.append(line)
                on_line(line)
            return len(s)

        def flush(self) -> None:
            real.flush()

    with contextlib.redirect_stdout(Tee()):
        yield lines


def install(steps: list[InstallStep], on_line: Callable[[str], None] = lambda line: None,
            on_step: Callable[[str], None] = lambda text: None) -> list[str]:
    """Run ``steps`` inside Slicer (ask the user BEFORE calling; no further question).

    Args:
        on_line: each line of the installers' log (the Widget shows the latest).
        on_step: the step starting now, in words.

    Returns:
        Distributions that changed while already imported (non-empty: restart Slicer).

    Raises:
        InstallError: a step failed (message: last log lines, network hint).
    """
    import slicer

    try:
        import slicer.packaging as packaging  # Slicer >= 5.11; not imported by `import slicer`
    except ImportError:
        packaging = None
    watched = [requirement_name(r) for st in steps for r in st.requirements] + ["torch", "torchvision"]
    before = _versions(watched)
    for st in steps:
        what = ", ".join(requirement_name(r) for r in st.requirements)
        on_step(f"Installing {what}...")
        with _captured_lines(on_line) as lines:
            try:
                _run_step(st, slicer, packaging)
            except InstallError:
                raise
            except Exception as exc:  # noqa: BLE001 - CalledProcessError, RuntimeError of pip
                raise InstallError(failure_message(lines + [str(exc)], what), "\n".join(lines)) from exc
    return restart_needed(before, _versions(watched), set(sys.modules), _import_names)


def _run_step(st: InstallStep, slicer, packaging) -> None:  # noqa: ANN001 - Slicer modules
    if st.kind == "pytorch":
        try:
            import PyTorchUtils
        except ImportError:
            raise InstallError("OneShotSAM needs the PyTorch extension: install 'PyTorch' from "
                               "the Extensions Manager, restart Slicer, then press Run again") from None
        reqs = {requirement_name(r): r[len(requirement_name(r)):] for r in st.requirements}
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
            askConfirmation=False, torchVersionRequirement=reqs.get("torch") or None,
            torchvisionVersionRequirement=reqs.get("torchvision") or None)
        if torch is None:
            raise InstallError("PyTorch was not installed; OneShotSAM cannot run without it")
        return
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text(constraints_text(), encoding="utf-8")
        args = [*st.pip_args, *st.requirements]
        old = {k: os.environ.get(k) for k, _ in st.env}
        os.environ.update(dict(st.env))
        try:
            if packaging is not None and hasattr(packaging, "pip_install"):
                packaging.pip_install(args, constraints=str(constraints), show_progress=False)
            else:
                slicer.util.pip_install([*args, "-c", str(constraints)])
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
