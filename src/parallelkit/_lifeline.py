"""A worker dies with the process that owns its executor: the kernel sees to it.

::

    owner process                          worker processes (any start method)
    ─────────────                          ──────────────────────────────────
    Lifeline(): pipe ── write end ── kept here only (every process forked
                   │                 from here closes its copy at once)
                   └── read end ───▶ arm(): reopened (an open file of its own),
                                     owned by the worker, O_ASYNC, signal SIGKILL

    the owner ends, however it ends ──▶ the pipe's last writer closes ──▶ the
    kernel sends each armed worker SIGKILL, whatever the worker is doing

Linux only (``F_SETSIG``, ``/proc/self/fd``). Where :meth:`Lifeline.arm`
cannot arm, it says so and the worker watches its owner with a thread
instead (:func:`parallelkit._worker.init_process_worker`).

Why not a thread everywhere: a thread in every worker wakes four times a
second for the life of the pool, a worker with two threads takes longer to
start and to end, and a thread notices the death up to a quarter of a
second late.
"""

import contextlib
import os
import signal
import sys
import weakref
from collections.abc import Callable
from multiprocessing.context import assert_spawning
from multiprocessing.reduction import DupFd
from typing import Any, Final, final

__all__ = ("Lifeline",)

if sys.platform == "linux":
    import fcntl

    #: ``F_SETSIG``: the signal sent when the file becomes readable (in
    #: :mod:`fcntl` on every Python this runs on; the number is Linux's).
    _F_SETSIG: Final[int] = getattr(fcntl, "F_SETSIG", 10)
    _F_SETOWN: Final[int] = fcntl.F_SETOWN
    _F_SETFL: Final[int] = fcntl.F_SETFL
    _SIGKILL: Final = int(signal.SIGKILL)
    _OPEN: Final = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    _ASYNC: Final = os.O_RDONLY | os.O_NONBLOCK | os.O_ASYNC

#: Write ends held by this process; a forked child closes them all at once.
_writers: set[int] = set()


def _close_writers_in_child() -> None:
    # Runs in every child forked from here: kept to what it must touch.
    for fd in _writers:
        os.close(fd)
    _writers.clear()


os.register_at_fork(after_in_child=_close_writers_in_child)


def _close_pair(read: int, write: int, owner: int) -> None:
    """Close a lifeline's two ends, in the process that made it only.

    A forked child inherits the lifeline object (and this finalizer) but
    not its ends: the child closed the write end at once, and the numbers
    may name other files there by now.
    """
    if os.getpid() == owner:
        _writers.discard(write)
        for fd in (read, write):
            with contextlib.suppress(OSError):
                os.close(fd)


@final
class Lifeline:
    """A pipe whose write end only the owner holds, and whose read end workers arm.

    Made in the owner; travels to workers in their initializer's arguments
    (inherited under fork, passed as a descriptor under spawn and forkserver).
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()  # neither survives an exec
        _writers.add(self._write)
        self._path = b"/proc/self/fd/%d" % self._read  # made here: a forked worker only reads it
        # Closed by close(), or when the lifeline is collected (an executor
        # dropped without shutdown: its pool's workers are stopped then anyway).
        # Not at interpreter exit: the pools still open are shut down then, and
        # their workers must not be killed first (the process's end closes it).
        close = weakref.finalize(self, _close_pair, self._read, self._write, os.getpid())
        close.atexit = False
        self._close: Callable[[], object] = close

    def __getstate__(self) -> tuple[Any, ...]:
        assert_spawning(self)
        return (DupFd(self._read),)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        (read,) = state
        self._read = read.detach()
        self._write = -1
        self._path = b"/proc/self/fd/%d" % self._read
        self._close = lambda: None  # a worker's copy: arm() owns its end

    def close(self) -> None:
        """In the owner: close both ends. Workers still alive are killed."""
        self._close()

    def arm(self) -> bool:
        """In a worker: be killed (SIGKILL) when the owner is gone.

        The worker gets an open file of its own on the pipe's read end (the
        signal's target is a property of the open file, which workers would
        otherwise share), asks for SIGKILL instead of SIGIO, and turns on
        O_ASYNC. Nothing is ever written to the pipe: its only event is the
        close of its last write end. (An owner gone before the worker armed
        leaves the worker's task pipe with no writer: it reads the end of
        the file there and exits.)

        Returns:
            False where this cannot be done (not Linux, no ``/proc``): the
            caller must watch the owner itself.
        """
        if sys.platform != "linux" or self._read < 0:
            return False
        try:
            fd = os.open(self._path, _OPEN)
        except OSError:
            return False
        try:
            fcntl.fcntl(fd, _F_SETOWN, os.getpid())
            fcntl.fcntl(fd, _F_SETSIG, _SIGKILL)
            fcntl.fcntl(fd, _F_SETFL, _ASYNC)
        except OSError:
            os.close(fd)
            return False
        os.close(self._read)  # the open file of its own stays open, unreferenced
        self._read = -1
        return True
