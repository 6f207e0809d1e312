"""A dask cluster on 127.0.0.1 in a process of its own, for a test session.

::

    pytest (the plugin's session fixture)
        │ start_cluster(): python -m parallelkit.testing._cluster FILE WORKERS
        ▼
    cluster process: LocalCluster(127.0.0.1, WORKERS workers of one thread,
        │            no dashboard, allowed-failures 0); writes its scheduler's
        │            address to FILE; ends on SIGTERM, or when pytest is gone
        ▼
    its nanny and worker processes (its children, not pytest's)

Tests reach it by address, as a user reaches a cluster that already exists;
pytest holds no pipe or socket of it, and the leak checker knows it by its
command line. This module imports dask only in the cluster process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Final

__all__ = ("start_cluster", "stop_cluster")

#: How long the cluster may take to start, and to stop.
START_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 30.0


def start_cluster(workers: int = 2) -> tuple[subprocess.Popen[bytes], str]:
    """Start a loopback dask cluster in a process of its own.

    Args:
        workers: Number of dask workers (one thread each).

    Returns:
        The cluster process and its scheduler's address.

    Raises:
        RuntimeError: The cluster did not start within a minute.
    """
    folder = tempfile.mkdtemp(prefix="parallelkit-cluster-")
    path = os.path.join(folder, "address")
    proc = subprocess.Popen(
        [sys.executable, "-m", "parallelkit.testing._cluster", path, str(workers)],
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while not os.path.exists(path):
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_cluster(proc)
                raise RuntimeError(
                    f"the dask cluster for the tests did not start ({proc.returncode})"
                )
            time.sleep(0.05)
        with open(path, encoding="utf-8") as file:
            address = file.read().strip()
    finally:
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(folder)
    return proc, address


def stop_cluster(proc: subprocess.Popen[bytes]) -> None:
    """Stop a cluster made by :func:`start_cluster`, and wait for it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _main(path: str, workers: int) -> None:  # pragma: no cover - runs in the cluster process
    import logging

    from .._backends._dask import loopback_cluster

    stop = threading.Event()

    def on_term(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    parent = os.getppid()
    cluster = loopback_cluster(workers, silence_logs=logging.CRITICAL)
    try:
        with open(path + ".tmp", "w", encoding="utf-8") as file:
            file.write(str(cluster.scheduler_address))
        os.replace(path + ".tmp", path)
        while not stop.wait(0.5) and os.getppid() == parent:
            pass
    finally:
        cluster.close(timeout=STOP_TIMEOUT)


if __name__ == "__main__":  # pragma: no cover
    _main(sys.argv[1], int(sys.argv[2]))
