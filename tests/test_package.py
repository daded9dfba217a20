"""The package's shape: no import cycle, a light `import profit_optax`, one version."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import profit_optax

PACKAGE_DIR = Path(profit_optax.__file__).resolve().parent


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports, at module level or inside a
    function (``import`` statements anywhere in the file, relative ones resolved).

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module of the
    package, else ``pkg``; the parent packages Python imports on the way are not edges.
    """
    modules: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                names = [f"{base}.{alias.name}" for alias in node.names]
                targets = [t for t in names if t in modules]
                if len(targets) < len(names):  # some names are attributes of `base`
                    targets.append(base)
            else:
                continue
            for target in targets:
                while target and target not in modules:  # `import pkg.mod.attr` -> pkg.mod
                    target = target.rpartition(".")[0]
                if target and target != mod:
                    graph[mod].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for succ in sorted(graph.get(node, ())):
            if state.get(succ) == 1:
                return [*path[path.index(succ) :], succ]
            if succ not in state and (cycle := visit(succ)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_inside_the_package():
    graph = import_graph(PACKAGE_DIR)
    assert "profit_optax._src.profit" in graph["profit_optax"]  # the graph sees the imports
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_cycle_finder_sees_imports_inside_functions(tmp_path):
    """The check fails on a cycle that function-level imports hide (as profit.py and
    lean.py had before they were split)."""
    pkg = tmp_path / "pkg"
    (pkg / "_src").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg._src.core import f\n")
    (pkg / "_src" / "__init__.py").write_text("")
    (pkg / "_src" / "core.py").write_text("def f():\n    from pkg._src import lean\n")
    (pkg / "_src" / "lean.py").write_text("from . import numerics, core\n")
    (pkg / "_src" / "numerics.py").write_text("")
    assert find_cycle(import_graph(pkg)) == ["pkg._src.core", "pkg._src.lean", "pkg._src.core"]
    (pkg / "_src" / "lean.py").write_text("import numpy\n")
    assert find_cycle(import_graph(pkg)) is None


def test_import_loads_neither_the_experiments_nor_the_benchmarks():
    code = (
        "import sys, profit_optax\n"
        "print(sorted(m for m in sys.modules if m.startswith(('profit_optax', 'benchmarks', "
        "'experiments'))))\n"
        "print(hasattr(profit_optax, 'registry'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    loaded = ast.literal_eval(out[0])
    assert "profit_optax._src.profit" in loaded
    assert not any(m.startswith(("benchmarks", "experiments")) for m in loaded), loaded
    assert out[1] == "False"  # the experiments' table of methods is experiments.methods


def test_public_names_resolve():
    for name in profit_optax.__all__:
        assert getattr(profit_optax, name) is not None, name


def test_installed_version_is_the_package_version():
    """pyproject.toml reads the version from ``profit_optax.__version__``."""
    assert importlib.metadata.version("profit-optax") == profit_optax.__version__
