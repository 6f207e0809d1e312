"""The two pipes between a process pool and its workers: tasks down, results up.

**Tasks** travel through :class:`TaskChannel`, which is safe against a
reader's death. ``multiprocessing.Pool`` sends every task down one pipe; idle
workers take turns reading it under one lock. A worker killed while it reads
leaves two kinds of damage behind: the lock stays held, so no worker gets a
task again (CPython gh-96062), and, if it had read part of a task, the rest of
that task stays in the pipe, where every later reader takes it for the start
of a new message and reads garbage for ever. This channel replaces the pool's task
pipe and makes both repairable::

    pool's task thread ── put(task) ──▶ [MAGIC | length | chunk id | crc32] body ──▶ pipe
                                                                                   │
    worker: get(), under the read lock  ◀──────────────────────────────────────────┘
        1. writes its pid into the shared *record*;
        2. reads the header straight into the record (one system call), so
           the parent sees which chunk it is taking the moment it has it; on
           bytes that are not a valid header it slides forward, byte by
           byte, to the next one (resynchronizing after a dead reader);
        3. reads the body, acks b"S"(pid, chunk id, time) to the parent;
        4. clears the record, releases the lock, unpickles the task.

    parent (the process backend's looks at its workers), when the lock is held:
        - by a pid that has died: release the lock for it; if the record
          holds a chunk that was never acked, that chunk is lost: fail it;
        - with no pid recorded for a long time (the holder died in the
          instant before writing it or after clearing it): release the lock.

Which chunk a dead reader took is therefore known exactly: the header lands
in shared memory in the same system call that takes it from the pipe.

**Results** travel through :class:`ResultQueue`, the pool's ``SimpleQueue``
with plain pickle instead of ``ForkingPickler`` and no read lock; the pool's
result thread reads it with :class:`~._result_reader.ResultReader`.

Every worker loads this module (under spawn and forkserver, at start-up), so
it holds both pipes' classes and leaves out ``from __future__ import
annotations``: each module it imports is a file to find and load before the
worker takes its first task.
"""

import mmap
import os
import pickle
import struct
import tempfile
import time
import weakref
import zlib
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import assert_spawning
from multiprocessing.queues import SimpleQueue
from multiprocessing.reduction import DupFd
from typing import Any, Final, cast

from .. import _worker

__all__ = ("ResultQueue", "TaskChannel", "read_exactly")

MAGIC: Final = b"\x93pk-task"
#: magic, body length, chunk id (0: not a chunk), crc32 of the 24 bytes before it
HEADER: Final = struct.Struct("!8sQqI")
_PID: Final = struct.Struct("!q")
#: The shared record: the reader's pid, then the header it is reading.
_RECORD_SIZE: Final = _PID.size + HEADER.size
_CHECKED: Final = HEADER.size - 4
_READ_CAP: Final = 1 << 20
#: How long a shutdown waits for the read lock before it drains without it.
DRAIN_WAIT: Final = 2.0


def _valid(header: memoryview) -> bool:
    return header[:8].tobytes() == MAGIC and zlib.crc32(header[:_CHECKED]) == int.from_bytes(
        header[_CHECKED:], "big"
    )


def read_exactly(
    fd: int, size: int, pipe: str, when_empty: Callable[[bool], None] | None = None
) -> bytes:
    """Read exactly ``size`` bytes from a pipe.

    Args:
        fd: The pipe's read end (blocking, or non-blocking with ``when_empty``).
        size: How many bytes.
        pipe: What the pipe is, for the EOFError when it is closed.
        when_empty: For a non-blocking pipe: called when there is nothing to
            read, with whether part of the bytes has come already; it returns
            once there is, or raises to give up.

    Raises:
        EOFError: The pipe was closed first.
    """
    parts: list[bytes] = []
    left = size
    while left:
        try:
            part = os.read(fd, min(left, _READ_CAP))
        except BlockingIOError:
            if when_empty is None:
                raise
            when_empty(bool(parts))
            continue
        if not part:
            raise EOFError(f"the {pipe} was closed")
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
    """A task queue for ``multiprocessing.Pool`` whose readers may die.

    It offers what the pool uses of its own task queue: ``put`` (parent),
    ``get`` (workers), and the ``_reader``, ``_writer`` and ``_rlock``
    attributes that the pool's worker loop and shutdown touch. Tasks travel
    with plain pickle (the process backend's hold ints, bytes and a function
    of a module), not ``ForkingPickler``.

    Args:
        ctx: The multiprocessing context of the pool.
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

    def put(self, task: Any) -> None:
        """Write one task (the pool's task thread is the only writer)."""
        # Plain pickle, not ForkingPickler: a task holds ints, bytes and a
        # module-level function, none of which needs its reducers, and each
        # ForkingPickler copies its table of them (in a process that has just
        # forked, a page copied for every reducer in it).
        body = pickle.dumps(task, pickle.HIGHEST_PROTOCOL)
        tag = self._tag_of(task) if self._tag_of is not None and task is not None else 0
        start = struct.pack("!8sQq", MAGIC, len(body), tag)
        data = memoryview(b"".join((start, zlib.crc32(start).to_bytes(4, "big"), body)))
        fd = self._fds[1]
        while data:
            data = data[os.write(fd, data) :]

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

    def drain_while(self, running: Callable[[], bool]) -> None:
        """Take the lock and discard what is written while ``running()`` is true.

        Used when the pool shuts down: its task thread may be blocked on a
        full pipe. What is read here is thrown away, so framing does not matter.
        A lock still held after :data:`DRAIN_WAIT` seconds belongs to a dead
        reader (live ones give it up when the shutdown's sentinels arrive).
        """
        self._rlock.acquire(timeout=DRAIN_WAIT)
        fd = self._reader.fileno()
        while running() and self._reader.poll():
            os.read(fd, _READ_CAP)
            time.sleep(0)

    # -- worker side ----------------------------------------------------------------------

    def get(self) -> Any:
        """Take the next task (in a worker); see the module docstring."""
        with self._rlock:
            size, tag = self._take_header()
            body = read_exactly(self._fds[0], size, "task pipe")
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


class ResultQueue(SimpleQueue[Any]):
    """The pool's result queue; a worker pickles what it puts with plain pickle.

    What a worker of the process backend puts is ``(job, index, (ok, value))``
    with an outcome in bytes or an exception ``multiprocessing.Pool`` wrapped
    for the trip: nothing that needs ``ForkingPickler``'s reducers, each
    instance of which copies their table (in a worker just forked, a page
    copied for every reducer in it). It has no read lock: only the pool's
    result thread reads it, with :class:`~._result_reader.ResultReader`.
    """

    def __init__(self, *, ctx: Any) -> None:
        # SimpleQueue's own, less the read lock (a named semaphore to make,
        # have every forked worker inherit, and free again, for each pool).
        self._reader, self._writer = ctx.Pipe(duplex=False)
        self._rlock = None
        self._poll = self._reader.poll
        self._wlock = ctx.Lock()

    def get(self) -> Any:
        raise TypeError("the result queue is read with ResultReader, by the pool's result thread")

    @property
    def reader(self) -> Connection:
        """The read end, which the pool's result thread reads (with a ``ResultReader``)."""
        return cast("Connection", self._reader)

    def put(self, obj: object) -> None:
        data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
        with self._wlock:
            self._writer.send_bytes(data)
