"""Faults a test can inject from inside a task, to see how the code around it copes.

Each helper is an ordinary function: call it *inside* the task
(``ex.submit(parallelkit.testing.crash_worker)``, or from your own task
function) and it misbehaves the way real workers do.
"""

from __future__ import annotations

import os
import signal
import time
from typing import NoReturn, final

__all__ = (
    "Unpicklable",
    "UnpicklableError",
    "crash_worker",
    "exit_worker",
    "hang",
    "raise_unpicklable",
    "return_unpicklable",
)


def crash_worker(sig: int = signal.SIGKILL) -> NoReturn:
    """Kill the process running this task with ``sig`` (SIGKILL by default).

    Only meaningful on the process backend: on the thread and serial backends
    it would kill the test process itself, so it raises instead.

    Raises:
        RuntimeError: Not inside a worker process.
    """
    _require_worker_process("crash_worker")
    os.kill(os.getpid(), sig)
    time.sleep(60)  # the signal arrives first
    raise AssertionError("unreachable")  # pragma: no cover


def exit_worker(code: int = 1) -> NoReturn:
    """End the worker process at once with ``os._exit(code)`` (no cleanup).

    Raises:
        RuntimeError: Not inside a worker process.
    """
    _require_worker_process("exit_worker")
    os._exit(code)


def hang(seconds: float = 3600.0) -> None:
    """Sleep for ``seconds``: a task that does not finish in time."""
    time.sleep(seconds)


@final
class Unpicklable:
    """An object that refuses to be pickled (it holds a lock, say)."""

    def __reduce__(self) -> NoReturn:
        raise TypeError("cannot pickle 'Unpicklable' object")


def return_unpicklable() -> Unpicklable:
    """Return a value that cannot be sent back from a worker process."""
    return Unpicklable()


@final
class UnpicklableError(Exception):
    """An exception whose pickled form cannot be loaded again.

    Its constructor needs two arguments but ``args`` holds one, which is the
    classic way real exception classes break ``multiprocessing``.
    """

    def __init__(self, message: str, code: int) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code


def raise_unpicklable(message: str = "boom") -> NoReturn:
    """Raise :class:`UnpicklableError`, which cannot cross back from a process.

    Raises:
        UnpicklableError: Always.
    """
    raise UnpicklableError(message, 7)


def _require_worker_process(name: str) -> None:
    import multiprocessing

    if multiprocessing.parent_process() is None:
        raise RuntimeError(
            f"{name}() kills the process it runs in; call it only in a task on the process backend"
        )
