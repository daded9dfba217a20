"""Results files and their statistics: JSON written atomically, spreads over seeds, paired
differences, provenance.

One home for the experiments' conventions:

* **Spread.** Every table reports the **standard error** of the mean over seeds
  (:func:`mean_se`, sample std / sqrt(n)), the unit the PROFIT paper uses, and
  names it (:data:`SPREAD`). :func:`mean_std` (sample std) is for criteria that
  are defined on it (the λ_ref study's bar), not for reported spreads.
* **Comparisons** of two methods run on the same seeds are paired differences
  with a two-sided 95% Student-t interval (:func:`paired_difference`).
* **Provenance.** Every results file records :func:`environment` (command, git
  commit, library versions, machine).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def to_jsonable(obj: Any) -> Any:
    """Converts NumPy/JAX scalars and arrays (and containers of them) to JSON-able Python."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):  # np.ndarray, np.generic, jax.Array
        return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Writes ``obj`` as indented JSON (creating parent directories); NaN/inf become null."""
    return write_text_atomic(path, json.dumps(to_jsonable(obj), indent=2) + "\n")


def write_text_atomic(path: str | os.PathLike[str], text: str | bytes) -> Path:
    """Writes ``text`` to ``path`` through a unique temporary file and a rename.

    A crash never leaves a half-written file, and two processes writing the same
    path never interleave (each writes its own temporary file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_json(path: str | os.PathLike[str]) -> Any:
    """Reads a JSON file."""
    return json.loads(Path(path).read_text())


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return float(arr.mean()), std


#: The spread reported by the protocol suites, as it appears in table headers.
SPREAD = "mean ± standard error over seeds"


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std / sqrt(n); 0.0 for one value)."""
    mean, std = mean_std(values)
    n = len(values)
    return mean, (std / math.sqrt(n) if n > 1 else std)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Mean of ``a[i] - b[i]`` over paired seeds with its two-sided 95% Student-t interval.

    Returns ``{"mean", "se", "lo", "hi", "n"}``; ``lo``/``hi`` are NaN for n < 2.

    Example:
      >>> d = paired_difference([1.0, 2.0, 3.0], [0.5, 1.5, 2.0])
      >>> round(d["mean"], 4), round(d["lo"], 3), round(d["hi"], 3), d["n"]
      (0.6667, -0.05, 1.384, 3)
    """
    if len(a) != len(b):
        raise ValueError(f"paired_difference: {len(a)} values against {len(b)}.")
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n = diff.size
    mean, se = mean_se(diff.tolist())
    if n < 2:
        return {"mean": mean, "se": math.nan, "lo": math.nan, "hi": math.nan, "n": n}
    from scipy import stats  # a dependency of jax

    half = float(stats.t.ppf(0.975, n - 1)) * se
    return {"mean": mean, "se": se, "lo": mean - half, "hi": mean + half, "n": n}


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(command: str | None = None) -> dict[str, Any]:
    """Provenance of a results file: command, git commit, versions, machine, date."""
    import jax  # imported here: results files are read without JAX installed too

    versions = {"python": platform.python_version(), "jax": jax.__version__}
    for name in ("optax", "flax", "numpy"):
        module = sys.modules.get(name) or __import__(name)
        versions[name] = getattr(module, "__version__", "unknown")
    return {
        "command": command if command is not None else " ".join(sys.argv),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "versions": versions,
        "machine": {
            "backend": jax.default_backend(),
            "devices": ", ".join(d.device_kind for d in jax.devices()),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def provenance(res: Mapping[str, Any]) -> str:
    """The footer of a generated results page: command, commit and machine of the file.

    The commit is the one that assembled the file from the run cache; every cached run
    is keyed by its full configuration, protocol version included.
    """
    env = res.get("environment", {})
    return (
        f"Command: `{env.get('command', '?')}`; commit {str(env.get('git_commit', '?'))[:12]}; "
        f"{env.get('machine', {}).get('devices', '?')}, {env.get('machine', {}).get('cpus', '?')} "
        f"cores; {env.get('date', '?')}."
    )
