"""Every public exception of parallelkit, in one hierarchy.

::

    ParallelkitError
    ├── ConfigError (ValueError)          a bad backend/workers/... from any source
    ├── ClosedError (RuntimeError, ValueError)
    │                                     use of a shut-down Executor or closed Pool
    ├── BrokenExecutorError (RuntimeError)
    │                                     the workers cannot start (initializer failed)
    ├── WorkerCrashedError                a worker process died while running a task
    ├── TaskTimeoutError (TimeoutError)   a task ran longer than its ``task_timeout``
    ├── RemoteError                       a task's exception or result could not be
    │                                     sent back; carries type name, message, traceback
    ├── ClosedChannelError (OSError)      a channel was used after ``close()``
    └── NotALockError (TypeError, AttributeError)
                                          ``lock=`` of a Value or Array is not a lock

``ClosedError`` is both a ``RuntimeError`` (what ``concurrent.futures`` raises
after ``shutdown``) and a ``ValueError`` (what ``multiprocessing.Pool`` raises
after ``close``), so handlers written for either library keep working.
``ClosedChannelError`` is an ``OSError``, as ``multiprocessing`` raises
``OSError("handle is closed")`` for a closed Connection.
"""

from __future__ import annotations

import signal
from typing import final

__all__ = (
    "BrokenExecutorError",
    "ClosedChannelError",
    "ClosedError",
    "ConfigError",
    "NotALockError",
    "ParallelkitError",
    "RemoteError",
    "RemoteTraceback",
    "TaskTimeoutError",
    "WorkerCrashedError",
    "describe_exit",
)


class ParallelkitError(Exception):
    """Base class of every exception parallelkit raises on its own account."""


@final
class ConfigError(ParallelkitError, ValueError):
    """A configuration value is invalid.

    The message names the value, where it came from (argument, context,
    environment variable, config file) and the valid choices.
    """


@final
class ClosedError(ParallelkitError, RuntimeError, ValueError):
    """An Executor or Pool was used after it was shut down, closed or terminated."""


@final
class BrokenExecutorError(ParallelkitError, RuntimeError):
    """The executor cannot run tasks any more (for example its initializer failed)."""


@final
class ClosedChannelError(ParallelkitError, OSError):
    """A channel (Queue, Pipe end) was used after it was closed.

    An ``OSError`` too, as ``multiprocessing`` raises ``OSError("handle is
    closed")`` for a Connection used after ``close()``: ``except OSError``
    handlers written for it keep working.
    """


@final
class NotALockError(ParallelkitError, TypeError, AttributeError):
    """``lock=`` of a Value or Array is neither a bool, None nor a parallelkit lock.

    It is a TypeError (the argument has the wrong type) and also an
    AttributeError, which is what ``multiprocessing`` raises for it (later,
    when the lock is first used), so code written for either catches it.
    """


@final
class WorkerCrashedError(ParallelkitError):
    """A worker process died while it was running a task.

    Attributes:
        pid: The process id of the worker that died.
        exitcode: Its exit code; negative for a signal (``-9`` is SIGKILL), or
            ``None`` when it could not be read.
        task: A description of the task(s) the worker held.
    """

    def __init__(self, message: str, *, pid: int, exitcode: int | None, task: str) -> None:
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode
        self.task = task

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_crash, (str(self), self.pid, self.exitcode, self.task))


def describe_exit(exitcode: int | None) -> str:
    """Return how a process ended: ``"signal SIGKILL"``, ``"exit code 3"``, ``"an unknown status"``.

    Args:
        exitcode: Its exit code as ``multiprocessing`` reports it (``-N`` for signal N).
    """
    if exitcode is None:
        return "an unknown status"
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


def _rebuild_crash(message: str, pid: int, exitcode: int | None, task: str) -> WorkerCrashedError:
    return WorkerCrashedError(message, pid=pid, exitcode=exitcode, task=task)


@final
class TaskTimeoutError(ParallelkitError, TimeoutError):
    """A task ran longer than its ``task_timeout``.

    On the process backend the worker running it was killed and replaced; on
    the thread backend the thread cannot be killed and runs on, but its result
    is discarded.
    """


@final
class RemoteError(ParallelkitError):
    """A task failed and its exception (or its result) could not be sent back.

    Raised in place of an exception that cannot be pickled or unpickled, or of
    a result that cannot be pickled. The executor keeps working.

    Attributes:
        type_name: Qualified name of the original exception's type
            (``"module.Class"``).
        message: ``str()`` of the original exception.
        traceback_text: The worker-side traceback, formatted.
    """

    def __init__(self, type_name: str, message: str, traceback_text: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text

    def __reduce__(self) -> tuple[object, ...]:
        return (RemoteError, (self.type_name, self.message, self.traceback_text))

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"


@final
class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, set as its ``__cause__``."""

    def __init__(self, traceback_text: str) -> None:
        super().__init__(traceback_text)
        self.traceback_text = traceback_text

    def __str__(self) -> str:
        return f'\n"""\n{self.traceback_text}"""'
