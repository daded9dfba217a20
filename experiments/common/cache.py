"""A run cache keyed by the full configuration of each run, for resumable suites.

Every run of a suite is a pure function of its configuration (a JSON-able dict:
method, hyper-parameters, budget, seed, data and model settings, code version
of the protocol). :class:`RunCache` stores its record under the SHA-256 of that
configuration, written atomically, so an interrupted suite resumes where it
stopped, across sessions and processes, without redoing or corrupting finished
runs. A stored file whose configuration differs from the requested one (a hash
collision or a hand-edited file) is never returned.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from experiments.common import results


def fingerprint(config: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``config``."""
    blob = json.dumps(results.to_jsonable(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class RunCache:
    """Records of finished runs under ``root/<fingerprint[:2]>/<fingerprint>.json``.

    Example:
      >>> import tempfile
      >>> cache = RunCache(tempfile.mkdtemp())
      >>> calls = []
      >>> run = lambda: calls.append(1) or {"loss": 0.5}
      >>> cache.get_or_run({"lr": 0.1, "seed": 0}, run)
      {'loss': 0.5}
      >>> cache.get_or_run({"seed": 0, "lr": 0.1}, run), len(calls)  # key order is irrelevant
      ({'loss': 0.5}, 1)
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, config: Mapping[str, Any]) -> Path:
        key = fingerprint(config)
        return self.root / key[:2] / f"{key}.json"

    def get(self, config: Mapping[str, Any]) -> dict[str, Any] | None:
        """The stored record of ``config``, or None when it has not run (or the file is bad)."""
        path = self.path(config)
        try:
            stored = results.read_json(path)
        except (OSError, ValueError):
            return None
        if stored.get("config") != results.to_jsonable(config):
            return None
        return stored["record"]

    def put(self, config: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
        """Stores ``record`` for ``config`` atomically; returns it as read back from JSON."""
        payload = {"config": results.to_jsonable(config), "record": results.to_jsonable(record)}
        results.write_json(self.path(config), payload)
        return payload["record"]

    def get_or_run(
        self, config: Mapping[str, Any], run: Callable[[], Mapping[str, Any]]
    ) -> dict[str, Any]:
        """The cached record of ``config``, or ``run()``'s, stored first."""
        record = self.get(config)
        return record if record is not None else self.put(config, run())

    def __contains__(self, config: Mapping[str, Any]) -> bool:
        return self.get(config) is not None
