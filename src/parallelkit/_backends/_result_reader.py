"""How the pool's result thread reads results, and waits between them.

``multiprocessing.Pool``'s result thread reads each result from one pipe:
a 4-byte length, then that many bytes. A worker killed half-way through
writing a large result leaves a message that never ends, and the thread
waits for the missing bytes for ever — and with it the pool's ``join()`` and
``terminate()``. This reader reads the pipe without blocking; whenever
nothing is there it calls a ``wait`` function, which is where the process
backend looks after its workers (see :mod:`._looks`)::

    worker ── result queue (length | body) ──▶ ResultReader.get(), in the pool's result thread
                                                  │ nothing to read
                                                  ▼
                                               wait(fd, started): watches the workers
                                               until the pipe is readable; raises
                                               EOFError once a cut message is overdue
                                               on a suspect pipe (a writer died in it)
                                                  │
                                                  ▼ EOFError: the result thread ends quietly

Without a ``wait`` function a reader waits for the pipe alone, and gives up
on a message cut short once :attr:`ResultReader.suspect` is set.

The workers write to the pipe through :class:`~._pipes.ResultQueue`.
"""

from __future__ import annotations

import functools
import os
import pickle
import select
import struct
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Final

from .._worker import FRAME_LENGTH
from ._pipes import read_exactly

__all__ = ("ResultReader", "readable")

#: How often a reader without a wait function looks whether it should give up.
LOOK: Final = 0.1
_LONG_LENGTH: Final = struct.Struct("!Q")
_PIPE: Final = "result pipe"


def readable(fd: int, timeout: float | None) -> bool:
    """Whether ``fd`` can be read (or is closed) within ``timeout`` seconds."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else 1000 * timeout))


class ResultReader:
    """Reads ``multiprocessing.connection`` messages from the pool's result pipe.

    Args:
        wait: Called with the pipe's descriptor and whether part of a message
            has come, whenever nothing is there to read; returns once there
            is, and raises EOFError to give up on the message.
        tick: Called before each message (looks at the workers fall due even
            while results never stop coming).
    """

    def __init__(
        self,
        wait: Callable[[int, bool], None] | None = None,
        tick: Callable[[], None] | None = None,
    ) -> None:
        self._conn: Connection | None = None
        self._wait = wait if wait is not None else self.wait_alone
        self._tick = tick
        #: Set once a worker died while holding the result pipe.
        self.suspect = False
        #: Set when the pool is terminated: its workers are stopped, and a
        #: message they cut short will never be finished (unlike
        #: :attr:`suspect`, a whole message read later does not clear it).
        self.ending = False

    def attach(self, conn: Connection) -> None:
        """Read from ``conn`` (the read end of the pool's result queue).

        Its descriptor is made non-blocking: the pool's workers only write
        to the pipe, and only this reader reads it.
        """
        os.set_blocking(conn.fileno(), False)
        self._conn = conn

    def get(self) -> Any:
        """Read and unpickle one message.

        Raises:
            EOFError: The pipe was closed, or a cut message is overdue.
        """
        conn = self._conn
        assert conn is not None
        if self._tick is not None:
            self._tick()
        fd = conn.fileno()
        size = FRAME_LENGTH.unpack(self._read(fd, FRAME_LENGTH.size, False))[0]
        if size == -1:
            size = _LONG_LENGTH.unpack(self._read(fd, _LONG_LENGTH.size, True))[0]
        body = self._read(fd, size, True)
        self.suspect = False  # a whole message came: the pipe is in step again
        return pickle.loads(body)

    def _read(self, fd: int, size: int, started: bool) -> bytes:
        return read_exactly(fd, size, _PIPE, functools.partial(self._wait_in, fd, started))

    def _wait_in(self, fd: int, started: bool, got_part: bool) -> None:
        self._wait(fd, started or got_part)

    def wait_alone(self, fd: int, started: bool) -> None:
        """Wait for the pipe; give up on a message cut short once the pipe is suspect or ending."""
        while not readable(fd, LOOK):
            if started and (self.suspect or self.ending):
                raise EOFError("a worker died while writing a result; the rest never came")
