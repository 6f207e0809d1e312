"""Every use of a private name of ``multiprocessing``, and nothing else.

The process backend runs its own pool on ``multiprocessing``'s public API
(``get_context(m).Process``, ``Pipe``, ``Lock``, sentinels); two things the
public API does not tell remain:

- ``SemLock._semlock._get_value()``: whether a ``multiprocessing`` lock is
  held, by anyone. A worker killed while it reads the task channel leaves
  the channel's lock held (CPython gh-96062); the manager releases it for the
  dead worker only when it is held (see :func:`lock_held`);
- ``multiprocessing.forkserver._forkserver._preload_modules``: the modules
  the forkserver imports before it forks; the worker module is added so that
  workers do not each import it again (see :func:`preload_in_forkserver`);
- ``BaseProcess._bootstrap`` and ``atexit._run_exitfuncs``: a worker started
  by ``spawn`` ends as ``fork`` and forkserver workers do, without tearing its
  interpreter down (see :class:`SpawnedWorker`);
- ``multiprocessing.forkserver._forkserver._forkserver_alive_fd`` and
  ``multiprocessing.resource_tracker._resource_tracker._fd``: the descriptors
  of the session's helper processes, which the leak checker of
  :mod:`parallelkit.testing` does not count (see :func:`helper_fds`).

They have the same names and meaning on CPython 3.10 to 3.14;
``tests/test_mp_private.py`` checks each on every version the suite runs on.
Workers load this module under ``spawn`` (their process class is here), so it
leaves out ``from __future__ import annotations`` and imports little.
"""

import atexit
import contextlib
import os
import sys
from multiprocessing.context import SpawnProcess
from typing import Any

__all__ = ("SpawnedWorker", "helper_fds", "lock_held", "preload_in_forkserver")


def lock_held(lock: Any) -> bool:
    """Whether a ``multiprocessing`` lock is held by someone now."""
    try:
        return bool(lock._semlock._get_value() == 0)  # pyright: ignore[reportUnknownMemberType]
    except (AttributeError, OSError, NotImplementedError):
        return False


def preload_in_forkserver(module: str) -> None:
    """Have the forkserver import ``module`` before it forks any worker.

    Takes effect only if the server has not started yet; keeps the modules
    already asked for (``__main__`` by default). Without it every worker
    imports parallelkit anew, which dominates a pool's start-up.
    """
    from multiprocessing import forkserver

    server = forkserver._forkserver  # pyright: ignore[reportPrivateUsage, reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
    modules: list[str] = list(getattr(server, "_preload_modules", None) or ["__main__"])  # pyright: ignore[reportUnknownArgumentType]
    if module not in modules:
        forkserver.set_forkserver_preload([*modules, module])


class SpawnedWorker(SpawnProcess):
    """A pool worker started by ``spawn`` that ends as ``fork`` and forkserver workers do.

    When its work is done, a spawned process returns to ``spawn_main()``, which
    calls ``sys.exit()``: the whole interpreter is torn down (every module
    cleared, every object collected), about 10 ms on a small machine, which
    ``close()`` + ``join()`` waits for. A worker started by ``fork`` or by the
    forkserver leaves with ``os._exit()`` once ``multiprocessing``'s
    finalizers (from Python 3.13 on, every :mod:`atexit` function) have run
    and the standard streams are flushed. This one runs the exit functions
    (as its interpreter's teardown would have), flushes the streams and
    leaves the same way.
    """

    def _bootstrap(self, parent_sentinel: int | None = None) -> int:
        # Runs in the worker: BaseProcess._bootstrap runs the worker's loop,
        # waits for non-daemon threads and flushes the streams.
        code = int(super()._bootstrap(parent_sentinel))  # type: ignore[misc]  # pyright: ignore[reportUnknownMemberType, reportAttributeAccessIssue, reportUnknownArgumentType]
        try:
            atexit._run_exitfuncs()  # pyright: ignore[reportPrivateUsage]
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    if stream is not None:
                        stream.flush()
            os._exit(code)


def helper_fds() -> set[int]:
    """The descriptors this process holds to the forkserver and the resource tracker."""
    fds: set[int] = set()
    try:
        from multiprocessing import forkserver, resource_tracker

        server = forkserver._forkserver  # pyright: ignore[reportPrivateUsage, reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
        alive = getattr(server, "_forkserver_alive_fd", None)  # pyright: ignore[reportUnknownArgumentType]
        tracker = getattr(resource_tracker._resource_tracker, "_fd", None)  # pyright: ignore[reportPrivateUsage]
        for fd in (alive, tracker):
            if isinstance(fd, int):
                fds.add(fd)
    except (ImportError, AttributeError):  # pragma: no cover
        pass
    return fds
