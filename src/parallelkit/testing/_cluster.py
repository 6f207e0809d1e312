"""A dask cluster on 127.0.0.1 in a process of its own, for a test session.

::

    pytest (the plugin's session fixture)
        │ start_cluster(): python -m parallelkit.testing._cluster FILE WORKERS
        ▼
    cluster process: LocalCluster(127.0.0.1, WORKERS workers of one thread,
        │            no dashboard, allowed-failures 0); writes its scheduler's
        │            address to FILE, then, ten times a second, how many workers
        │            the scheduler has to FILE.workers; ends on SIGTERM, or when
        │            pytest is gone
        ▼
    its nanny and worker processes (its children, not pytest's)

Tests reach it by address, as a user reaches a cluster that already exists;
pytest holds no pipe or socket of it, and the leak checker knows it by its
command line. Before each test, :meth:`SessionCluster.wait_ready` waits until
every worker is back (a test before may have killed one; its nanny starts a
new one in a second or so), so one test's kill never becomes the next test's
hang. This module imports dask only in the cluster process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Final, final

__all__ = ("SessionCluster", "start_cluster", "stop_cluster")

#: How long the cluster may take to start, and to stop.
START_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 30.0
#: How long a test waits for the cluster's workers to be back.
READY_TIMEOUT: Final = 30.0


@final
class SessionCluster:
    """A running cluster made by :func:`start_cluster`.

    Attributes:
        proc: The cluster process.
        address: Its scheduler's address.
        workers: How many workers it runs when it is whole.
    """

    def __init__(
        self, proc: subprocess.Popen[bytes], address: str, workers: int, folder: str
    ) -> None:
        self.proc = proc
        self.address = address
        self.workers = workers
        self._count_path = os.path.join(folder, "address.workers")
        self._folder = folder

    def worker_count(self) -> int:
        """How many workers the scheduler had at the cluster process's last look."""
        try:
            with open(self._count_path, encoding="utf-8") as file:
                return int(file.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until every worker is there.

        Raises:
            RuntimeError: The cluster process ended, or workers were missing
                for ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while (count := self.worker_count()) < self.workers:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the tests' dask cluster ended (exit code {self.proc.returncode})"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the tests' dask cluster has {count} of its {self.workers} workers "
                    f"after {timeout:g} s: a test before this one left it broken"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the cluster, wait for it, and remove its folder."""
        stop_cluster(self.proc)
        shutil.rmtree(self._folder)


def start_cluster(workers: int = 2) -> SessionCluster:
    """Start a loopback dask cluster in a process of its own.

    Args:
        workers: Number of dask workers (one thread each).

    Returns:
        The running cluster, its workers all there.

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
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_cluster(proc)
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeError(f"the dask cluster for the tests did not start ({proc.returncode})")
        time.sleep(0.05)
    with open(path, encoding="utf-8") as file:
        address = file.read().strip()
    cluster = SessionCluster(proc, address, workers, folder)
    try:
        cluster.wait_ready(START_TIMEOUT)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def stop_cluster(proc: subprocess.Popen[bytes]) -> None:
    """Stop a cluster made by :func:`start_cluster`, and wait for it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _write(path: str, text: str) -> None:  # pragma: no cover - runs in the cluster process
    with open(path + ".tmp", "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(path + ".tmp", path)


def _main(path: str, workers: int) -> None:  # pragma: no cover - runs in the cluster process
    import logging

    import dask.config

    from .._backends._dask import loopback_cluster

    # Tests kill workers often, one soon after another: LocalCluster must not
    # close the nanny of a worker that is slow to come back (its default
    # gives it 15 s from its first leaving, which a later kill can fall in).
    dask.config.set({"distributed.deploy.lost-worker-timeout": "1 day"})

    stop = threading.Event()

    def on_term(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    parent = os.getppid()
    cluster = loopback_cluster(workers, silence_logs=logging.CRITICAL)
    try:
        _write(path, str(cluster.scheduler_address))
        while not stop.wait(0.1) and os.getppid() == parent:
            _write(path + ".workers", str(len(cluster.scheduler.workers)))
    finally:
        cluster.close(timeout=STOP_TIMEOUT)


if __name__ == "__main__":  # pragma: no cover
    _main(sys.argv[1], int(sys.argv[2]))
