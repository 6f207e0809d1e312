"""Shared memory for Value, Array and Barrier: named segments, packed into arenas.

::

    owner process                                      other processes
    ─────────────                                      ───────────────
    allocate(n) ──▶ arena /pk…  (1 MiB, shm_open + mmap) ◀── attach(name): shm_open + mmap
                    ├─ Value('i')   offset 0                 (one mapping per arena per
                    ├─ Value(Point) offset 16                 process, shared by every
                    └─ …bump allocation, 16-byte aligned      object that lives in it)
    allocate(n > 64 KiB) ──▶ a segment of its own

A ctypes object is laid over the mapping with ``from_buffer``; it keeps the
mapping alive (a buffer export), and so does every numpy view made from it.
The mapping is therefore unmapped only when the last object or view using it
is gone: nothing can read freed memory. The *name* is unlinked when the owning
segment object is collected, i.e. when every Value/Array of the arena in the
owner process is gone; processes that already mapped it keep their mapping.

Arenas keep the number of mappings (and, before Python 3.13, of file
descriptors held by ``mmap``) small when a program makes thousands of Values.
Freed space inside an arena is not reused; an arena disappears once all of
its objects have.
"""

from __future__ import annotations

import mmap
import os
import sys
import threading
import weakref
from typing import Final

from ._sharing import gone, new_token, own, shm_open, shm_unlink

__all__ = ("Segment", "allocate", "attach")

ARENA_SIZE: Final = 1 << 20
#: Blocks larger than this get a segment of their own.
LARGE: Final = 1 << 16
ALIGN: Final = 16


class Segment:
    """A named shared-memory segment mapped into this process.

    Attributes:
        name: Its POSIX shared-memory name.
        buffer: The writable mapping.
        used: Bytes handed out so far (owner side).
    """

    __slots__ = ("__weakref__", "buffer", "name", "used")

    def __init__(self, name: str, buffer: mmap.mmap) -> None:
        self.name = name
        self.buffer = buffer
        self.used = 0


def _map(fd: int, size: int) -> mmap.mmap:
    if sys.version_info >= (3, 13):
        return mmap.mmap(fd, size, trackfd=False)
    return mmap.mmap(fd, size)  # pragma: no cover - keeps a descriptor until unmapped


_segments: weakref.WeakValueDictionary[tuple[int, str], Segment] = weakref.WeakValueDictionary()
_lock = threading.Lock()
_current: tuple[int, weakref.ref[Segment]] | None = None


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # it may have been held by a thread that did not fork


os.register_at_fork(after_in_child=_after_fork_in_child)


def _create(size: int) -> Segment:
    name = "/" + new_token()
    fd = shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR)
    try:
        os.ftruncate(fd, size)
        segment = Segment(name, _map(fd, size))
    except BaseException:
        os.close(fd)
        shm_unlink(name)
        raise
    os.close(fd)
    own(segment, segments=(name,))
    _segments[(os.getpid(), name)] = segment
    return segment


def allocate(nbytes: int) -> tuple[Segment, int]:
    """Reserve ``nbytes`` of zeroed shared memory.

    Args:
        nbytes: Size of the block.

    Returns:
        ``(segment, offset)``; keep the segment referenced as long as the block is used.
    """
    global _current
    if nbytes > LARGE:
        return _create(nbytes), 0
    with _lock:
        segment = None
        if _current is not None and _current[0] == os.getpid():
            segment = _current[1]()
        if segment is None or segment.used + nbytes > len(segment.buffer):
            segment = _create(ARENA_SIZE)
            _current = (os.getpid(), weakref.ref(segment))
        offset = segment.used
        segment.used = offset + max(ALIGN, -(-nbytes // ALIGN) * ALIGN)
    return segment, offset


def attach(name: str, what: str) -> Segment:
    """Map the segment ``name`` in this process (once per process).

    Args:
        name: The segment's name.
        what: What lives in it, for the error message.

    Returns:
        The segment.

    Raises:
        ClosedChannelError: Its owner already released it.
    """
    key = (os.getpid(), name)
    segment = _segments.get(key)
    if segment is not None:
        return segment
    try:
        fd = shm_open(name, os.O_RDWR)
    except OSError as exc:
        raise gone(what, exc) from None
    try:
        segment = Segment(name, _map(fd, os.fstat(fd).st_size))
    finally:
        os.close(fd)
    _segments[key] = segment
    return segment
