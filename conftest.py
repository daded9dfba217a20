"""pytest setup for the whole repository: one JAX compilation cache per test run.

Most of the test command's time is XLA compiling programs, and many programs recur: a
suite's quick run and its resume, the notebooks and the tests they mirror, a subprocess
per process of a multi-process test. A persistent compilation cache shared by every
process of one run (pytest-xdist workers, their subprocesses and notebook kernels inherit
the environment) compiles each of them once. The cache lives in a temporary directory
made for the run and removed after it, so runs never share compiled code (the test
command's second run, under another CPU instruction set, compiles its own). A
``JAX_COMPILATION_CACHE_DIR`` already set is left alone (and not removed).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pytest

_OWNER = "PROFIT_TEST_JAX_CACHE_OWNER"  # the pid of the process that made the directory
_SETTINGS = {
    "JAX_COMPILATION_CACHE_DIR": None,  # filled in below
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",  # small programs recur too
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
}


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return  # the user's own cache, or the run's (an xdist worker inherits it)
    os.environ.update(
        {
            **_SETTINGS,
            "JAX_COMPILATION_CACHE_DIR": tempfile.mkdtemp(prefix="profit-optax-jax-cache-"),
            _OWNER: str(os.getpid()),
        }
    )
    if "jax" in sys.modules:  # imported before this ran: its config read the old environment
        import jax

        jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config: pytest.Config) -> None:
    if os.environ.get(_OWNER) == str(os.getpid()):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
