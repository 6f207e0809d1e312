"""The pipes between the process backend and its workers: tasks down, outcomes up.

**Tasks** travel through :class:`TaskChannel`, one pipe that every idle
worker takes turns reading, under one lock: whichever worker is free first
takes the next chunk. A worker killed while it reads leaves two kinds of
damage behind: the lock stays held, so no worker gets a task again (CPython
gh-96062), and, if it had read part of a task, the rest of that task stays in
the pipe, where every later reader takes it for the start of a new message
and reads garbage for ever. This channel makes both repairable::

    the backend ── frame(task) ──▶ [MAGIC | length | chunk id | crc32] body ──▶ pipe
                                                                              │
    worker: get(), under the read lock  ◀─────────────────────────────────────┘
        1. writes its pid into the shared *record*;
        2. reads the header straight into the record (one system call), so
           the parent sees which chunk it is taking the moment it has it; on
           bytes that are not a valid header it slides forward, byte by
           byte, to the next one (resynchronizing after a dead reader);
        3. reads the body, acks b"S"(pid, chunk id, time) to the parent;
        4. clears the record, releases the lock, unpickles the task.

    parent (the process backend's manager thread), after a worker ended:
        - lock held by a pid that has died: release the lock for it; if the
          record holds a chunk that was never acked, that chunk is lost: fail it;
        - lock held with no pid recorded for a long time (the holder died in
          the instant before writing it or after clearing it): release the lock.

Which chunk a dead reader took is therefore known exactly: the header lands
in shared memory in the same system call that takes it from the pipe.

**Outcomes and acks** travel up through each worker's own pipe, read in the
parent by an :class:`Inbox`: ``multiprocessing.connection`` framing (a 4-byte
length, then the message), read without blocking, so that a message cut
short by its writer's death never blocks the reader.

Every worker loads this module (under spawn and forkserver, at start-up), so
it leaves out ``from __future__ import annotations``: each module it imports
is a file to find and load before the worker takes its first task.
"""

import mmap
import os
import pickle
import select
import struct
import tempfile
import weakref
import zlib
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import assert_spawning
from multiprocessing.reduction import DupFd
from typing import Any, Final

from .. import _worker

__all__ = ("Inbox", "TaskChannel")

MAGIC: Final = b"\x93pk-task"
#: magic, body length, chunk id (0: not a chunk), crc32 of the 24 bytes before it
HEADER: Final = struct.Struct("!8sQqI")
_PID: Final = struct.Struct("!q")
#: The shared record: the reader's pid, then the header it is reading.
_RECORD_SIZE: Final = _PID.size + HEADER.size
_CHECKED: Final = HEADER.size - 4
_READ_CAP: Final = 1 << 20
#: Most bytes taken from a worker's outbox at once (a longer message is read
#: straight into a buffer of its size).
INBOX_READ: Final = 1 << 16
_FRAME: Final = struct.Struct("!i")
_LONG_FRAME: Final = struct.Struct("!Q")


def _valid(header: memoryview) -> bool:
    return header[:8].tobytes() == MAGIC and zlib.crc32(header[:_CHECKED]) == int.from_bytes(
        header[_CHECKED:], "big"
    )


def _read_exactly(fd: int, size: int) -> bytes:
    """Read exactly ``size`` bytes from the task pipe (blocking)."""
    parts: list[bytes] = []
    left = size
    while left:
        part = os.read(fd, min(left, _READ_CAP))
        if not part:
            raise EOFError("the task pipe was closed")
        parts.append(part)
        left -= len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _read_into(fd: int, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if not n:
            raise EOFError("the task pipe was closed")
        got += n


def _shared_file(size: int) -> int:
    """A file descriptor of ``size`` zero bytes that is in no directory."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("parallelkit-task-record", os.MFD_CLOEXEC)
    else:  # pragma: no cover - not Linux
        with tempfile.TemporaryFile() as file:
            fd = os.dup(file.fileno())
    os.ftruncate(fd, size)
    return fd


class TaskChannel:
    """A task queue whose readers may die: ``frame``/``put`` (parent), ``get`` (workers).

    Tasks travel with plain pickle (the process backend's hold ints and
    bytes), not ``ForkingPickler``.

    Args:
        ctx: The multiprocessing context of the workers.
        tag_of: Parent side only: the chunk id carried by a task, or 0.
    """

    def __init__(self, ctx: Any, tag_of: Callable[[Any], int]) -> None:
        self._reader: Connection
        self._writer: Connection
        self._reader, self._writer = ctx.Pipe(duplex=False)
        self._fds = (self._reader.fileno(), self._writer.fileno())  # -1 once closed
        self._rlock: Any = ctx.Lock()
        # The record lives in a shared file mapping (not multiprocessing's heap,
        # which keeps its arenas open for the life of the process).
        self._record_fd = _shared_file(_RECORD_SIZE)
        self._record = mmap.mmap(self._record_fd, _RECORD_SIZE)
        # Kept open to hand to workers started later; closed by close(), or when
        # the channel is collected (a pool closed but never joined).
        self._close_fd: Callable[[], object] | None = weakref.finalize(
            self, os.close, self._record_fd
        )
        self._tag_of: Callable[[Any], int] | None = tag_of

    def __getstate__(self) -> tuple[Any, ...]:
        assert_spawning(self)
        return (self._reader, self._writer, self._rlock, DupFd(self._record_fd))

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self._reader, self._writer, self._rlock, record_fd = state
        self._fds = (self._reader.fileno(), -1)
        fd = record_fd.detach()
        self._record_fd = -1
        try:
            self._record = mmap.mmap(fd, _RECORD_SIZE)  # keeps its own reference to the file
        finally:
            os.close(fd)
        self._close_fd = None
        self._tag_of = None

    # -- parent side ----------------------------------------------------------------------

    @property
    def lock(self) -> Any:
        """The lock a reader holds while it takes a task."""
        return self._rlock

    @property
    def write_fd(self) -> int:
        """The write end's descriptor (-1 once closed), for a writer of its own."""
        return self._fds[1]

    def frame(self, task: Any) -> bytes:
        """Return one task as it travels: header, then the pickled task.

        One writer at a time must write the frames, each whole and in order.
        """
        # Plain pickle, not ForkingPickler: a task holds ints and bytes, none of
        # which needs its reducers, and each ForkingPickler copies its table of
        # them (in a process that has just forked, a page copied for every
        # reducer in it).
        body = pickle.dumps(task, pickle.HIGHEST_PROTOCOL)
        tag = self._tag_of(task) if self._tag_of is not None and task is not None else 0
        start = struct.pack("!8sQq", MAGIC, len(body), tag)
        return b"".join((start, zlib.crc32(start).to_bytes(4, "big"), body))

    def put(self, task: Any) -> None:
        """Write one task, waiting while the pipe is full (the only writer)."""
        data = memoryview(self.frame(task))
        fd = self._fds[1]
        while data:
            try:
                data = data[os.write(fd, data) :]
            except BlockingIOError:
                select.select([], [fd], [])

    def holder(self) -> tuple[int, int]:
        """Return ``(pid, chunk id)`` of the reader that holds the lock now.

        The pid is 0 when none is recorded; the chunk id is 0 when the
        reader has not taken a whole valid header.
        """
        with memoryview(self._record) as view:
            pid: int = _PID.unpack_from(view)[0]
            header = view[_PID.size :]
            tag: int = HEADER.unpack_from(header)[2] if _valid(header) else 0
            header.release()
        return pid, tag

    def release_for_dead_reader(self) -> None:
        """Clear the record and release the lock of a reader that died."""
        self._record[:] = bytes(_RECORD_SIZE)
        self._rlock.release()

    # -- worker side ----------------------------------------------------------------------

    def get(self) -> Any:
        """Take the next task (in a worker); see the module docstring."""
        with self._rlock:
            size, tag = self._take_header()
            body = _read_exactly(self._fds[0], size)
            if tag:
                _worker.acknowledge_start(tag)
            self._record[:] = bytes(_RECORD_SIZE)
        return pickle.loads(body)

    def _take_header(self) -> tuple[int, int]:
        """Record this reader, read the next valid header into the record.

        Returns:
            ``(body size, chunk id)``.
        """
        fd = self._fds[0]
        _PID.pack_into(self._record, 0, os.getpid())
        with memoryview(self._record) as view, view[_PID.size :] as header:
            _read_into(fd, header)
            while not _valid(header):
                header[:-1] = bytes(header[1:])
                _read_into(fd, header[-1:])
            _, size, tag, _ = HEADER.unpack_from(header)
        return size, tag

    def close(self) -> None:
        """Close the pipe and the record in this process."""
        self._fds = (-1, -1)
        self._reader.close()
        self._writer.close()
        self._record.close()
        if self._close_fd is not None:
            self._close_fd()


class Inbox:
    """The parent's end of one worker's outbox: whole messages, read without blocking.

    Args:
        conn: The read end; made non-blocking here (only this inbox reads it).
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.fd: int = conn.fileno()
        os.set_blocking(self.fd, False)
        self._rest = b""  # the start of a message whose rest has not come
        self._big: bytearray | None = None  # a long message being read into place
        self._got = 0

    @property
    def cut(self) -> bool:
        """Whether part of a message has come and the rest has not."""
        return bool(self._rest) or self._big is not None

    def read(self) -> tuple[list[memoryview], bool]:
        """Take every whole message there is now.

        Returns:
            The messages, and whether the pipe is still open (False: every
            writer is gone; any message cut short stays cut).
        """
        messages: list[memoryview] = []
        fd = self.fd
        while True:
            big = self._big
            try:
                if big is not None:
                    with memoryview(big) as view:
                        n = os.readv(fd, [view[self._got :]])
                    if not n:
                        return messages, False
                    self._got += n
                    if self._got == len(big):
                        messages.append(memoryview(big))
                        self._big = None
                    continue
                data = os.read(fd, INBOX_READ)
            except BlockingIOError:
                return messages, True
            if not data:
                return messages, False
            self._split(self._rest + data if self._rest else data, messages)

    def _split(self, buffer: bytes, messages: list[memoryview]) -> None:
        """Take the whole messages out of ``buffer``; keep or place the last part."""
        view = memoryview(buffer)
        start = 0
        end_all = len(buffer)
        while end_all - start >= _FRAME.size:
            (size,) = _FRAME.unpack_from(buffer, start)
            head = _FRAME.size
            if size == -1:  # a message of 2 GiB or more: its length follows
                if end_all - start < head + _LONG_FRAME.size:
                    break
                (size,) = _LONG_FRAME.unpack_from(buffer, start + head)
                head += _LONG_FRAME.size
            body = start + head
            if body + size > end_all:
                if size > INBOX_READ:  # read the rest straight into place
                    big = bytearray(size)
                    got = end_all - body
                    big[:got] = view[body:]
                    self._big, self._got = big, got
                    self._rest = b""
                    return
                break
            messages.append(view[body : body + size])
            start = body + size
        self._rest = buffer[start:]

    def close(self) -> None:
        """Close the read end."""
        self.conn.close()
