"""Starting, waiting for and cleaning up the worker processes that multi-process tests start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from typing import IO


def free_port() -> int:
    """A free TCP port on the loopback interface, for a coordinator."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_all(procs: Sequence[subprocess.Popen], start: float, timeout_s: float) -> None:
    """Waits for every process, within ``timeout_s`` seconds of ``start`` in total."""
    for p in procs:
        p.wait(timeout=max(1.0, timeout_s - (time.monotonic() - start)))


def kill_all(procs: Sequence[subprocess.Popen], logs: Sequence[IO]) -> None:
    """Kills the process group of every process still running, then closes the logs.

    The processes must be started with ``start_new_session=True``.
    """
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    for log in logs:
        log.close()
