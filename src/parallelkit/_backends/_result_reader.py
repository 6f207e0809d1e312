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

import os
import pickle
import struct
from multiprocessing.connection import Connection
from typing import Any, Final

__all__ = ("ResultReader",)

#: How often a reader in the middle of a message looks whether it should give up.
LOOK: Final = 0.1
_LENGTH: Final = struct.Struct("!i")
_LONG_LENGTH: Final = struct.Struct("!Q")
_READ_CAP: Final = 1 << 20


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
        size = _LENGTH.unpack(self._read(fd, conn, _LENGTH.size, idle=True))[0]
        if size == -1:
            size = _LONG_LENGTH.unpack(self._read(fd, conn, _LONG_LENGTH.size, idle=False))[0]
        body = self._read(fd, conn, size, idle=False)
        self.suspect = False  # a whole message came: the pipe is in step again
        return pickle.loads(body)

    def _read(self, fd: int, conn: Connection, size: int, *, idle: bool) -> bytes:
        parts: list[bytes] = []
        left = size
        while left:
            if not idle or parts:
                while not conn.poll(LOOK):
                    if self.suspect:
                        raise EOFError("a worker died while writing a result; the rest never came")
            part = os.read(fd, min(left, _READ_CAP))
            if not part:
                raise EOFError("the result pipe was closed")
            parts.append(part)
            left -= len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)
