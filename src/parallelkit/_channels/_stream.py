"""Framed messages over a named FIFO: the wire of the process Queue and Pipe.

::

    writer ── os.write / os.writev ──▶ FIFO (kernel pipe, 1 MiB when allowed) ──▶ os.read ── reader
             [8-byte header: kind << 56 | length][payload]    [header][payload] ...

Every process that holds a Queue opens the FIFO by path with ``O_RDWR``, which
on Linux never blocks and never sees EOF: the end of a stream is a message
(a shared "closed" flag), not a side effect of descriptors being closed, so
it means the same thing however many processes hold copies. (A Pipe opens
its FIFOs read-only or write-only instead, so that the kernel's count of
descriptors is its count of copies: see ``_pipe``. It uses the framing only.)
A second descriptor with ``O_NONBLOCK`` lets a writer try a write without
ever blocking. Reads take the header and then the payload straight into the
final buffer (``readv`` into a ``bytearray`` for big messages, no
intermediate copies); big writes use ``writev`` of header and payload.
"""

from __future__ import annotations

import array
import contextlib
import os
import select
import struct
import sys
import time
import weakref
from collections.abc import Sequence
from typing import Any, Final

if sys.platform == "win32":  # pragma: no cover - process channels need POSIX FIFOs
    fcntl: Any = None
    termios: Any = None
else:
    import fcntl
    import termios

__all__ = (
    "BULK",
    "DATA",
    "HEADER",
    "WAKE",
    "Fifo",
    "advance",
    "frame",
    "split_header",
)

HEADER: Final = struct.Struct("=Q")
_KIND_SHIFT: Final = 56
_LENGTH_MASK: Final = (1 << _KIND_SHIFT) - 1

DATA: Final = 0
#: "Look again": wakes a reader blocked on an empty FIFO after a close.
WAKE: Final = 1
#: A Pipe's pickled object whose big buffers are in shared memory (see
#: :mod:`parallelkit._bulk`): never raw bytes of ``send_bytes``.
BULK: Final = 2

#: Writes up to this size are atomic on a pipe (POSIX guarantees at least 512).
PIPE_BUF: Final = getattr(select, "PIPE_BUF", 512)
#: Below this, header and payload are joined into one bytes object.
_JOIN_BELOW: Final = 1 << 16
#: The capacity asked for each FIFO (Linux's default limit for unprivileged users).
CAPACITY: Final = 1 << 20
_IOV_MAX: Final = 512
_PAGE: Final = 4096
_F_SETPIPE_SZ: Final[int | None] = getattr(fcntl, "F_SETPIPE_SZ", None)
_F_GETPIPE_SZ: Final[int | None] = getattr(fcntl, "F_GETPIPE_SZ", None)


def frame(kind: int, payload: bytes | bytearray | memoryview) -> list[bytes | memoryview]:
    """Return the parts of one message, ready for :meth:`Fifo.write`."""
    header = HEADER.pack(kind << _KIND_SHIFT | len(payload))
    if len(payload) < _JOIN_BELOW:
        return [header + payload]
    return [header, memoryview(payload)]


def split_header(header: bytes) -> tuple[int, int]:
    """Return ``(kind, length)`` of a message header."""
    (word,) = HEADER.unpack(header)
    return word >> _KIND_SHIFT, word & _LENGTH_MASK


def _close_all(fds: tuple[int, ...]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class Fifo:
    """One FIFO opened in this process, for reading and/or writing.

    Attributes:
        path: Its path.
        capacity: The kernel buffer size in bytes.
    """

    __slots__ = ("__weakref__", "_finalizer", "_nb", "_poller", "_rd", "capacity", "path")

    def __init__(
        self, path: str, *, size: int | None = None, read: bool = True, write: bool = True
    ) -> None:
        self.path = path
        # Reading (and blocking writes) go through a blocking descriptor; writes
        # that must never block through a non-blocking one. O_RDWR on a FIFO
        # never blocks at open and never sees EOF.
        fds: list[int] = []
        try:
            self._rd = os.open(path, os.O_RDWR | os.O_CLOEXEC) if read else -1
            fds.append(self._rd)
            self._nb = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC) if write else -1
            fds.append(self._nb)
        except BaseException:
            _close_all(tuple(fd for fd in fds if fd >= 0))
            raise
        self._finalizer = weakref.finalize(self, _close_all, tuple(fd for fd in fds if fd >= 0))
        self._finalizer.atexit = False  # a feeder may still write at exit; the OS closes them
        self.capacity = self._grow(size) if size else self._query()
        self._poller = select.poll()
        if read:
            self._poller.register(self._rd, select.POLLIN)

    @property
    def _any(self) -> int:
        return self._rd if self._rd >= 0 else self._nb

    def _grow(self, size: int) -> int:
        if _F_SETPIPE_SZ is not None:
            try:
                return int(fcntl.fcntl(self._any, _F_SETPIPE_SZ, size))
            except OSError:  # the user's pipe-buffer quota is used up: keep the default
                pass
        return self._query()

    def _query(self) -> int:
        if _F_GETPIPE_SZ is not None:
            return int(fcntl.fcntl(self._any, _F_GETPIPE_SZ))
        return PIPE_BUF  # pragma: no cover - be conservative without the query

    def close(self) -> None:
        """Close this process's descriptors (idempotent)."""
        self._finalizer()

    # -- writing --------------------------------------------------------------------------

    def unread(self) -> int:
        """Bytes written and not yet read."""
        count = array.array("i", [0])
        fcntl.ioctl(self._any, termios.FIONREAD, count, True)
        return count[0]

    def room(self) -> int:
        """A lower bound on the bytes that can be written now without blocking."""
        used = self.unread()
        return self.capacity - (-(-used // _PAGE) + 1) * _PAGE

    def try_write(self, parts: Sequence[bytes | memoryview]) -> bool:
        """Write a whole message now if it fits without blocking; else write nothing.

        Args:
            parts: The message (one or more frames, see :func:`frame`).

        Returns:
            Whether it was written.
        """
        total = sum(len(p) for p in parts)
        if total <= PIPE_BUF:
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            try:
                os.write(self._nb, data)  # atomic: all or EAGAIN
            except BlockingIOError:
                return False
            return True
        if self.room() < total:
            return False
        self.write(parts)
        return True

    def write(self, parts: Sequence[bytes | memoryview]) -> None:
        """Write all of ``parts``, blocking while the FIFO is full."""
        _write_all(self._rd, parts)

    def write_nowait(self, data: bytes) -> bool:
        """Write a small message (<= PIPE_BUF) if there is room; never blocks."""
        try:
            os.write(self._nb, data)
        except BlockingIOError:
            return False
        return True

    def write_watching(
        self, parts: Sequence[bytes | memoryview], give_up: object, interval: float = 0.05
    ) -> None:
        """Write all of ``parts``, checking ``give_up()`` while the FIFO stays full.

        Args:
            parts: The message.
            give_up: A callable; when it returns an exception while waiting,
                that exception is raised.
            interval: Seconds between checks.
        """
        views = [memoryview(p).cast("B") for p in parts]
        waiter = select.poll()
        waiter.register(self._nb, select.POLLOUT)
        while views:
            try:
                written = os.writev(self._nb, views[:_IOV_MAX])
            except BlockingIOError:
                written = 0
            views = advance(views, written)
            if views and not written:
                problem = give_up()  # type: ignore[operator]
                if isinstance(problem, BaseException):
                    raise problem
                waiter.poll(interval * 1000)

    # -- reading --------------------------------------------------------------------------

    def wait_readable(self, timeout: float | None) -> bool:
        """Wait until a read would not block; None waits forever."""
        ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
        while True:
            try:
                return bool(self._poller.poll(ms))
            except InterruptedError:  # pragma: no cover - retried by Python already
                continue

    def read_header(self) -> tuple[int, int]:
        """Read one header, blocking; return ``(kind, length)``."""
        data = os.read(self._rd, 8)
        if len(data) < 8:
            data += self.read_exact(8 - len(data))
        return split_header(data)

    def read_exact(self, n: int) -> bytes | bytearray:
        """Read exactly ``n`` bytes, blocking."""
        if n < _JOIN_BELOW:
            data = os.read(self._rd, n)
            while len(data) < n:
                more = os.read(self._rd, n - len(data))
                if not more:  # pragma: no cover - impossible with O_RDWR
                    raise EOFError("FIFO closed")
                data += more
            return data
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            got += os.readv(self._rd, [view[got:]])
        return buf

    def read_into(self, view: memoryview) -> None:
        """Fill ``view`` (a writable byte view) from the FIFO, blocking."""
        got = 0
        n = len(view)
        while got < n:
            got += os.readv(self._rd, [view[got:]])

    def discard(self, n: int) -> None:
        """Read and drop ``n`` bytes."""
        while n > 0:
            n -= len(os.read(self._rd, min(n, _JOIN_BELOW)))

    def read_some(self, n: int) -> bytes:
        """Read up to ``n`` bytes that are known to be there."""
        return os.read(self._rd, n)


def advance(views: list[memoryview], written: int) -> list[memoryview]:
    """Drop the first ``written`` bytes of a vectored write's parts (what ``writev`` took)."""
    while written and views:
        head = views[0]
        if written >= len(head):
            written -= len(head)
            views.pop(0)
        else:
            views[0] = head[written:]
            written = 0
    return views


def _write_all(fd: int, parts: Sequence[bytes | memoryview]) -> None:
    if len(parts) == 1:
        data = parts[0]
        written = os.write(fd, data)
        if written == len(data):
            return
        views = [memoryview(data).cast("B")[written:]]
    else:
        views = [memoryview(p).cast("B") for p in parts]
    while views:
        views = advance(views, os.writev(fd, views[:_IOV_MAX]))


def monotonic_deadline(timeout: float | None) -> float | None:
    """``time.monotonic() + timeout`` (never in the past), or None."""
    return None if timeout is None else time.monotonic() + max(0.0, timeout)


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (>= 0), or None."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())
