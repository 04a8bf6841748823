"""The engine package's structure: arrows that point one way, short signatures, small files.

The import graph is read from the source with ``ast`` (no import runs): an edge
``a -> b`` for every ``import``/``from ... import`` of a module in ``a``, at
module level AND inside functions (a lazy import is still a dependency), and for
every module named by a string: the argument of ``importlib.import_module`` /
``__import__``, and any string constant that is a whole dotted module name
(optionally ``module:attribute``), as lazy-loading tables hold them. Checked:

* the engine graph is acyclic;
* the engine (``oneshotsam``) imports no front end (the Slicer module, its
  ``OneShotSAMLib``, the browser app ``OneShotSAMWeb``), neither by statement nor
  by string; front ends register their subcommands through package metadata;
* the lower layers import nothing above them: the ground floor (shared types,
  checks, geometry, writing), then the I/O layer, then the backends and presets,
  then the methods (:data:`LAYERS`);
* no function takes more than 10 parameters (``self``/``cls`` not counted); no
  engine file exceeds 500 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "OneShotSAM"
PKG = ROOT / "oneshotsam"
MAX_PARAMS = 10
MAX_LINES = 500
#: top-level names of the front ends (and of the GUI stacks only they may use)
FRONT_ENDS = ("OneShotSAM", "OneShotSAMLib", "OneShotSAMWeb", "slicer", "qt", "trame",
              "trame_slicer")
#: layers from the ground up, as module prefixes below ``oneshotsam.``; a module of a
#: listed layer imports only modules of its own or a lower layer; every module not
#: listed (settings, the volume engine, evaluation, benchmarks, cohorts, command
#: lines) stands above them all
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ground", ("errors", "progress", "types", "checks", "typecheck", "devices", "fileformats",
                "contours", "geometry", "intensity", "integrity", "writer")),
    ("io", ("medio", "dicom_series", "dicom_identity", "dicom_rt", "dicom_rt_write", "dicom_seg",
            "label_outputs")),
    ("backends", ("backends", "presets")),
    ("methods", ("methods",)),
)


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _is_dynamic_import(node: ast.Call) -> bool:
    f = node.func
    return ((isinstance(f, ast.Name) and f.id in ("import_module", "__import__"))
            or (isinstance(f, ast.Attribute) and f.attr in ("import_module", "__import__")))


def _names_a_module(text: str) -> bool:
    """``a.b`` or ``a.b:attr`` (a dotted name of identifiers)."""
    name, _, attr = text.partition(":")
    parts = name.split(".")
    return len(parts) > 1 and all(p.isidentifier() for p in parts) and (
        not attr or attr.isidentifier())


def imported_names(path: Path, mod: str) -> set[str]:
    """Every dotted name that ``mod`` (file ``path``) imports: ``import`` statements,
    the constant argument of ``import_module``/``__import__`` calls, and string
    constants shaped like ``package.module`` or ``package.module:attribute``."""
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr)
                  and isinstance(n.body[0].value, ast.Constant)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            names.update(f"{name}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Call) and _is_dynamic_import(node) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings and _names_a_module(node.value)):
            names.add(node.value.partition(":")[0])
    return names


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` (function-level imports and
    module names in strings included)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for t in imported_names(path, mod):
            if t.split(".")[0] != "oneshotsam":
                continue
            r = _resolve(t, mods)
            if r and r != mod:
                graph[mod].add(r)
    return graph


def layer_of(module: str) -> int | None:
    """Index in :data:`LAYERS` of ``module``; None = above them all. The package's
    own ``__init__`` (its version only) is ground."""
    if module == "oneshotsam":
        return 0
    rest = module.split(".", 1)[1]
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(rest == p or rest.startswith(p + ".") for p in prefixes):
            return i
    return None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a module path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_cycle_finder_sees_function_level_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_graph_includes_function_level_imports_and_module_strings() -> None:
    graph = import_graph()
    # cli_segment imports oneshotsam.geometry inside a function only
    assert "oneshotsam.geometry" in graph["oneshotsam.cli_segment"]
    # the command line loads its subcommand modules through importlib.import_module("...")
    assert "oneshotsam.cli_segment" in graph["oneshotsam.cli"]
    # the method registry names its classes' modules in a table of strings
    assert "oneshotsam.methods.p2sam" in graph["oneshotsam.methods.registry"]


IMPORT_CASES = [  # (source, the names it imports)
    ("import oneshotsam.medio", {"oneshotsam.medio"}),
    ("from oneshotsam import medio", {"oneshotsam.medio"}),
    ("from . import geometry", {"oneshotsam.geometry"}),
    ("import importlib\nimportlib.import_module('OneShotSAMWeb.cli')",
     {"importlib", "OneShotSAMWeb.cli"}),
    ("from importlib import import_module as im\nim('a.b')", {"importlib.import_module", "a.b"}),
    ("__import__('OneShotSAMLib.logic')", {"OneShotSAMLib.logic"}),
    ("TABLE = {'x': 'OneShotSAMWeb.app:OneShotSAMWebApp'}", {"OneShotSAMWeb.app"}),
    ('"""A docstring naming OneShotSAMWeb.cli is no import."""', set()),
    ("x = ('not a module name', '1.5', 'a.b:c d')", set()),
]


@pytest.mark.parametrize("source, expected", IMPORT_CASES)
def test_imported_names_reads_statements_and_strings(tmp_path: Path, source: str,
                                                     expected: set) -> None:
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert imported_names(path, "oneshotsam.probe") == expected


def test_engine_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_engine_imports_no_front_end() -> None:
    offenders = sorted(f"{mod} -> {name}" for mod, path in _modules().items()
                       for name in imported_names(path, mod) if name.split(".")[0] in FRONT_ENDS)
    assert not offenders, ("the engine must not import a front end (front ends register their "
                           f"subcommands through the 'oneshotsam.commands' entry points): {offenders}")


def test_lower_layers_import_nothing_above_them() -> None:
    offenders = []
    for mod, targets in sorted(import_graph().items()):
        own = layer_of(mod)
        if own is None:
            continue
        for t in sorted(targets):
            other = layer_of(t)
            if other is None or other > own:
                up = "above the layers" if other is None else LAYERS[other][0]
                offenders.append(f"{mod} ({LAYERS[own][0]}) -> {t} ({up})")
    assert not offenders, f"imports that point up: {offenders}"


def test_every_layer_prefix_names_a_module() -> None:
    mods = _modules()
    missing = [p for _, prefixes in LAYERS for p in prefixes
               if not any(m == f"oneshotsam.{p}" or m.startswith(f"oneshotsam.{p}.") for m in mods)]
    assert not missing, f"LAYERS names modules that do not exist: {missing}"


def _param_count(fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> int:
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args]
    n = len(names) + len(a.kwonlyargs) + bool(a.vararg) + bool(a.kwarg)
    return n - 1 if names and names[0] in ("self", "cls") else n


def test_no_function_has_more_than_ten_parameters() -> None:
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                n = _param_count(node)
                if n > MAX_PARAMS:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} "
                                     f"{getattr(node, 'name', 'lambda')} ({n})")
    assert not offenders, f"functions with more than {MAX_PARAMS} parameters: {offenders}"


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_engine_file_is_small(path: Path) -> None:
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)} has {n} lines (> {MAX_LINES}): split it"
