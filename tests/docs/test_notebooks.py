"""The notebooks in ``notebooks/``: committed without outputs, and they run top to bottom.

Each notebook is executed with nbclient in a fresh kernel of *this* interpreter
(``sys.executable``, through a kernelspec written to a temporary directory, so a
user-level ``python3`` kernelspec pointing elsewhere cannot hijack the run), in a
temporary working directory, with the repository root on ``PYTHONPATH`` (the
``experiments`` package is not installed by pip). Any cell error fails the test,
and so does a notebook that displays no figure. The Fashion-MNIST notebook
reads TFDS's dataset from this run's temporary ``TFDS_DATA_DIR`` (prepared once per run,
``tests/_tfds.py``) unless one is set.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from tests._tfds import prepared_fashion_mnist

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "profit-optax-test"
#: Seconds per cell; every notebook should finish in a few minutes on a 2-core CPU.
CELL_TIMEOUT_S = 900
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def _names(paths):
    return [p.name for p in paths]


def test_expected_notebooks_exist():
    names = _names(NOTEBOOKS)
    for expected in ("01_quickstart.ipynb", "02_toy2d.ipynb", "03_fashion_mnist.ipynb"):
        assert expected in names, f"notebooks/{expected} is missing; found {names}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_names(NOTEBOOKS))
def test_committed_notebook_has_no_outputs(path):
    """Keeps the repository small and diffs readable: strip outputs before committing."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, (
        f"{path.name}: code cells {dirty} have outputs or an execution count; clear them "
        f"(e.g. `jupyter nbconvert --clear-output --inplace {path.relative_to(ROOT)}`)"
    )
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernelspec running this interpreter, and PYTHONPATH with the repository root."""
    jupyter_dir = tmp_path_factory.mktemp("jupyter")
    spec_dir = jupyter_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "profit-optax tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(jupyter_dir), prepend=os.pathsep)
        mp.setenv("PYTHONPATH", str(ROOT), prepend=os.pathsep)
        mp.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        yield KERNEL_NAME


def _execute(nb, workdir: Path, kernel_name: str):
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    return nb


def test_kernel_runs_this_interpreter(kernel_env, tmp_path):
    nb = nbformat.v4.new_notebook()
    source = "import os, sys\nprint(sys.executable)\nprint(os.getcwd())"
    nb.cells = [nbformat.v4.new_code_cell(source)]
    _execute(nb, tmp_path, kernel_env)
    lines = nb.cells[0].outputs[0]["text"].split()
    assert lines[0] == sys.executable
    assert Path(lines[1]).resolve() == tmp_path.resolve()


def _run_notebook(name: str, kernel_env: str, tmp_path: Path) -> None:
    path = NOTEBOOK_DIR / name
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    try:
        _execute(nb, tmp_path, kernel_env)
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{name} failed:\n{e}")
    elapsed = time.perf_counter() - t0
    images = sum(
        1
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    )
    assert images > 0, f"{name} displayed no figure"
    print(f"{name}: {elapsed:.0f} s, {images} figure(s)")


@pytest.mark.slow
def test_quickstart_notebook_runs(kernel_env, tmp_path):
    _run_notebook("01_quickstart.ipynb", kernel_env, tmp_path)


@pytest.mark.slow
def test_toy2d_notebook_runs(kernel_env, tmp_path):
    _run_notebook("02_toy2d.ipynb", kernel_env, tmp_path)


@pytest.mark.slow
def test_fashion_mnist_notebook_runs(kernel_env, tmp_path, tmp_path_factory):
    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip(
            f"{FASHION_MNIST_DIR} is missing: install Debian's dataset-fashion-mnist "
            "(`sudo apt-get install dataset-fashion-mnist`) to run the Fashion-MNIST notebook"
        )
    with pytest.MonkeyPatch.context() as mp:
        if not os.environ.get("TFDS_DATA_DIR"):
            # Hermetic: TFDS's fashion_mnist prepared from the IDX files in this run's
            # temporary directory (once, shared with the data tests), not ~/tensorflow_datasets.
            data_dir = prepared_fashion_mnist(tmp_path_factory, FASHION_MNIST_DIR)
            mp.setenv("TFDS_DATA_DIR", str(data_dir))
        _run_notebook("03_fashion_mnist.ipynb", kernel_env, tmp_path)
