"""The package's shape: no import cycle, a light `import profit_optax`, one version."""

from __future__ import annotations

import ast
import builtins
import doctest
import email
import importlib.metadata
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import profit_optax

PACKAGE_DIR = Path(profit_optax.__file__).resolve().parent
ROOT = Path(__file__).resolve().parents[2]


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


def test_import_loads_only_the_library():
    """``import profit_optax`` loads neither the experiments, the benchmarks nor flax;
    ``profit_optax.batch_stats`` (which needs flax) loads on first use."""
    code = (
        "import sys, profit_optax\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('profit_optax', "
        "'benchmarks', 'experiments', 'flax')))\n"
        "print(profit_optax.batch_stats.__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    loaded = ast.literal_eval(out[0])
    assert "profit_optax._src.profit" in loaded
    assert not [m for m in loaded if not m.startswith("profit_optax")], loaded
    assert "profit_optax.batch_stats" not in loaded
    assert out[1] == "profit_optax.batch_stats"  # loaded on first use
    assert not hasattr(profit_optax, "registry")  # the experiments' methods: experiments.methods


def test_dir_shows_the_public_api_only():
    """``dir(profit_optax)`` (and tab completion) lists the public names, ``__all__`` and
    ``__version__``, not the imports (``annotations``, ``importlib``, ``Any``) or ``_src``."""
    assert dir(profit_optax) == sorted([*profit_optax.__all__, "__all__", "__version__"])
    assert all(not name.startswith("_") for name in profit_optax.__all__)
    assert len(set(profit_optax.__all__)) == len(profit_optax.__all__)
    # every public object the package binds is in __all__
    bound = {
        name
        for name, value in vars(profit_optax).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("profit_optax")
    }
    assert bound <= set(profit_optax.__all__), bound - set(profit_optax.__all__)


def test_doctests_use_public_names_only():
    """Every docstring example imports what it uses from the public API: no
    ``profit_optax._src`` import, no name taken from the defining module's globals
    (which ``pytest --doctest-modules`` would silently provide)."""
    finder = doctest.DocTestFinder()
    n_examples = 0
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        module = importlib.import_module(name.removesuffix(".__init__"))
        for test in finder.find(module, module.__name__):
            if not test.examples or not test.name.startswith(module.__name__):
                continue
            tree = ast.parse("\n".join(e.source for e in test.examples))
            bound = set(dir(builtins))
            used = {}
            for node in ast.walk(tree):
                if isinstance(node, ast.alias):
                    bound.add((node.asname or node.name).split(".")[0])
                    assert "_src" not in node.name, f"{test.name} imports {node.name}"
                elif isinstance(node, ast.ImportFrom):
                    assert "_src" not in (node.module or ""), f"{test.name}: {node.module}"
                elif isinstance(node, ast.arg):
                    bound.add(node.arg)
                elif isinstance(node, ast.Name):
                    if isinstance(node.ctx, ast.Load):
                        used.setdefault(node.id, node.lineno)
                    else:
                        bound.add(node.id)
            unbound = sorted(set(used) - bound)
            assert not unbound, f"{test.name} uses {unbound} without importing them"
            n_examples += 1
    assert n_examples >= 10


def test_public_names_resolve():
    for name in profit_optax.__all__:
        assert getattr(profit_optax, name) is not None, name


def test_installed_version_is_the_package_version():
    """pyproject.toml reads the version from ``profit_optax.__version__``."""
    assert importlib.metadata.version("profit-optax") == profit_optax.__version__


def _sources(directory: str, names: list[str]) -> set[str]:
    """What a wheel build needs of the repository: Python files, package data, the
    project files; not results, caches or virtual environments."""
    keep = (".py", ".toml", ".md", ".typed", ".cfg", ".in")
    skipped = {".git", ".venv", "__pycache__", "build", "dist", "runs", "tmp", "results"}
    ignored = set()
    for name in names:
        path = Path(directory) / name
        if path.is_dir():
            if name in skipped or name.endswith(".egg-info"):
                ignored.add(name)
        elif not (name.endswith(keep) or name == "LICENSE"):
            ignored.add(name)
    return ignored


def test_wheel_ships_the_license_and_no_experiment_code(tmp_path):
    """``pip wheel .`` of the repository: the Apache-2.0 LICENSE in the wheel's metadata,
    and nothing but the ``profit_optax`` library (no experiments, benchmarks, tests, no
    experiment registry)."""
    assert (ROOT / "LICENSE").is_file(), "no LICENSE file at the repository root"
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=_sources)  # a clean tree: no stale build/ directory
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run(
        [*pip, str(src), "-w", str(tmp_path / "dist")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (license_file,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert zf.read(license_file) == (ROOT / "LICENSE").read_bytes()
        (metadata_file,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(zf.read(metadata_file))
    assert b"Apache License" in (ROOT / "LICENSE").read_bytes()[:200]
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    modules = [n for n in names if ".dist-info/" not in n]
    assert all(n.startswith("profit_optax/") for n in modules), modules
    assert "profit_optax/_src/profit.py" in modules
    assert not [n for n in modules if "registry" in n or "experiment" in n], modules
