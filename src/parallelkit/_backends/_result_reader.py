"""How the pool's result thread reads results, without waiting for ever on a cut one.

``multiprocessing.Pool``'s result thread reads each result from one pipe:
a 4-byte length, then that many bytes. A worker killed half-way through
writing a large result leaves a message that never ends, and the thread
waits for the missing bytes for ever — and with it the pool's ``join()`` and
``terminate()``::

    worker ── result queue (length | body) ──▶ ResultReader.get(), in the pool's result thread
                                                  │ body bytes overdue and the
                                                  │ watcher marked the channel
                                                  ▼ suspect (a writer died holding it)
                                               EOFError: the result thread ends quietly,
                                               the watcher marks the executor broken

A reader between messages waits as before: the pool's shutdown writes a
sentinel that wakes it.
"""

from __future__ import annotations

import pickle
import struct
from multiprocessing.connection import Connection
from typing import Any, Final

from ._task_channel import read_exactly

__all__ = ("ResultReader",)

#: How often a reader in the middle of a message looks whether it should give up.
LOOK: Final = 0.1
_LENGTH: Final = struct.Struct("!i")
_LONG_LENGTH: Final = struct.Struct("!Q")
_PIPE: Final = "result pipe"


class ResultReader:
    """Reads ``multiprocessing.connection`` messages from the pool's result pipe."""

    def __init__(self) -> None:
        self._conn: Connection | None = None
        #: Set by the watcher once a worker died while holding the result pipe.
        self.suspect = False

    def attach(self, conn: Connection) -> None:
        """Read from ``conn`` (the read end of the pool's result queue)."""
        self._conn = conn

    def get(self) -> Any:
        """Read and unpickle one message; EOFError once a cut message is overdue."""
        conn = self._conn
        assert conn is not None
        fd = conn.fileno()
        size = _LENGTH.unpack(read_exactly(fd, _LENGTH.size, _PIPE, self._await_rest))[0]
        if size == -1:
            size = _LONG_LENGTH.unpack(read_exactly(fd, _LONG_LENGTH.size, _PIPE, self._await))[0]
        body = read_exactly(fd, size, _PIPE, self._await)
        self.suspect = False  # a whole message came: the pipe is in step again
        return pickle.loads(body)

    def _await_rest(self, started: bool) -> None:
        """Between messages wait as long as it takes; inside one, see :meth:`_await`."""
        if started:
            self._await(started)

    def _await(self, started: bool) -> None:
        """Wait for more of a message; give up once it is overdue on a suspect pipe."""
        assert self._conn is not None
        while not self._conn.poll(LOOK):
            if self.suspect:
                raise EOFError("a worker died while writing a result; the rest never came")
