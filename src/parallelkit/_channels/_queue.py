"""Queue: a typed FIFO between threads or processes, with close() as end-of-stream.

Process backend::

    producer (any process)                        consumer (any process)
    put(x): pickle, items += 1
      ├─ wlock free, room in the FIFO ─▶ ┌──────────────┐
      │  (write now, in this thread)     │  named FIFO  │ ─▶ get(): rlock, read header
      └─ else: this process's buffer ──▶ │ [hdr|pickle] │    and payload, items -= 1,
         (a feeder thread writes it      └──────────────┘    unpickle
          when there is room)
    close(): closed flag (a named semaphore) + a WAKE frame for a reader blocked on the FIFO

    named semaphores: rlock, wlock, items (accepted and not yet taken), closed,
                      slots (free places, bounded queues only)

A put writes straight into the FIFO when it can, so a lone producer costs one
system call per item and no thread hand-off; only when the FIFO is full (or
another writer holds it) does the item wait in this process's buffer for
the feeder thread, so that ``put`` on an unbounded queue never blocks, as
with ``multiprocessing.Queue``. ``items`` counts what has been accepted and
not taken, wherever it is (FIFO or a feeder's buffer), which makes
end-of-stream exact: a consumer stops when the queue is closed *and* nothing
accepted is left, even if some of it is still in another process's feeder.

Thread (and serial) backend: a deque and two conditions, same contract.

Dask backend: queues on the cluster's scheduler (:mod:`._cluster`), same contract.

JoinableQueue (:mod:`._joinable`) extends both implementations: each counts
what it accepts through ``_accept``, at the moment the items become takeable.
"""

# The channel classes build and rebuild one another's objects (unpickling, locks shared
# by Values): access to their underscore attributes stays inside this package.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import os
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic

from .._config import Settings
from .._errors import ClosedChannelError
from .._serialize import roundtrip
from ._big import Items, prefix_of
from ._select import is_process, not_on_cluster, on_cluster, resolve
from ._sharing import (
    SEM_VALUE_MAX,
    SEMAPHORE,
    RawSemLock,
    at_exit,
    create_fifo,
    create_semlock,
    gone,
    local_reduce,
    new_token,
    open_semlock,
    own,
    remember,
    reopens,
)
from ._stream import (
    CAPACITY,
    DATA,
    HEADER,
    WAKE,
    Fifo,
    frame,
    monotonic_deadline,
    remaining,
    split_header,
)
from ._types import T

if TYPE_CHECKING:
    from typing_extensions import Self

    from .._bulk import Placement
    from ._cluster import ClusterQueue

__all__ = ("Queue", "make_queue")

#: How long a put waits for another writer to finish before using the feeder.
_WRITER_PATIENCE: Final = 0.002
#: While closed items are still in another process's feeder, look again this often.
_IN_FLIGHT_POLL: Final = 0.01
_WAKE_FRAME: Final = HEADER.pack(WAKE << 56)


def _closed_for_put() -> ClosedChannelError:
    return ClosedChannelError(
        "put() on a closed Queue: close() (in this or another process) ended the stream"
    )


def _drained() -> ClosedChannelError:
    return ClosedChannelError("the Queue is closed and every item in it has been taken")


def _full(done: int, count: int) -> queue.Full:
    if count == 1:
        return queue.Full()
    return queue.Full(f"put {done} of {count} items before the timeout")


# -- the thread implementation -------------------------------------------------------------


class _ThreadQueue:
    __slots__ = (
        "__weakref__",
        "_check",
        "_closed",
        "_items",
        "_maxsize",
        "_mutex",
        "_not_empty",
        "_not_full",
        "token",
    )

    def __init__(self, maxsize: int, check_pickle: bool) -> None:
        self._maxsize = maxsize if maxsize > 0 else 0
        self._check = check_pickle
        self._items: deque[Any] = deque()
        self._closed = False
        self._mutex = threading.Lock()
        self._not_empty = threading.Condition(self._mutex)
        self._not_full = threading.Condition(self._mutex)
        self.token = new_token()

    def _room(self) -> int:
        if not self._maxsize:
            return SEM_VALUE_MAX
        return self._maxsize - len(self._items)

    def put(self, obj: Any, block: bool, timeout: float | None) -> None:
        self.put_many([obj], block, timeout)

    def _accept(self, count: int) -> None:
        """``count`` items are about to become takeable (the mutex is held)."""

    def put_many(self, objs: list[Any], block: bool, timeout: float | None) -> None:
        if self._check:
            objs = [roundtrip(o) for o in objs]
        deadline = monotonic_deadline(timeout if block else 0.0)
        done, count = 0, len(objs)
        with self._not_full:
            while done < count:
                if self._closed:
                    raise _closed_for_put()
                room = self._room()
                if room <= 0:
                    if not block and deadline is not None and time.monotonic() >= deadline:
                        raise _full(done, count)
                    if not self._not_full.wait(remaining(deadline)):
                        raise _full(done, count)
                    continue
                take = min(room, count - done)
                self._accept(take)
                self._items.extend(objs[done : done + take])
                done += take
                self._not_empty.notify(take)

    def get(self, block: bool, timeout: float | None) -> Any:
        return self.get_many(1, block, timeout)[0]

    def get_many(self, max_items: int | None, block: bool, timeout: float | None) -> list[Any]:
        deadline = monotonic_deadline(timeout if block else 0.0)
        with self._not_empty:
            while not self._items:
                if self._closed:
                    raise _drained()
                left = remaining(deadline)
                if left == 0.0 or not self._not_empty.wait(left):
                    if self._items:
                        break
                    if self._closed:
                        raise _drained()
                    raise queue.Empty
            items = self._items
            take = len(items) if max_items is None else min(max_items, len(items))
            out = [items.popleft() for _ in range(take)]
            if self._maxsize:
                self._not_full.notify(take)
            return out

    def close(self) -> None:
        with self._mutex:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return bool(self._maxsize) and len(self._items) >= self._maxsize

    @property
    def maxsize(self) -> int:
        return self._maxsize


# -- the process implementation ------------------------------------------------------------


class _Feeder:
    """Writes this process's buffered messages into the FIFO when there is room."""

    __slots__ = (
        "__weakref__",
        "_batches",
        "_cond",
        "_fifo",
        "_stopping",
        "_thread",
        "_wlock",
        "pending",
        "pid",
    )

    def __init__(self, fifo: Fifo, wlock: RawSemLock) -> None:
        self._fifo = fifo
        self._wlock = wlock
        self._cond = threading.Condition(threading.Lock())
        self._batches: deque[list[bytes | memoryview]] = deque()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.pending = 0
        self.pid = os.getpid()
        _track_feeder(self)

    def push(self, parts: list[bytes | memoryview]) -> None:
        with self._cond:
            self._batches.append(parts)
            self.pending += 1
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(
                    target=self._run, name="parallelkit-queue-feeder", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._batches:
                    if self._stopping:
                        self._thread = None
                        cond.notify_all()
                        return
                    cond.wait()
                batches = list(self._batches)
                self._batches.clear()
            parts = [part for batch in batches for part in batch]
            with self._wlock:
                self._fifo.write(parts)
            with cond:
                self.pending -= len(batches)
                cond.notify_all()

    def finish(self) -> None:
        """Exit once everything buffered has been written."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def drain(self) -> None:
        """Wait until everything buffered has been written."""
        with self._cond:
            while self.pending and self._thread is not None:
                self._cond.wait()


_feeders: weakref.WeakSet[_Feeder] = weakref.WeakSet()
_feeder_creation = threading.Lock()


def _after_fork_in_child() -> None:
    global _feeder_creation
    _feeder_creation = threading.Lock()  # it may have been held by a thread that did not fork


os.register_at_fork(after_in_child=_after_fork_in_child)


def _track_feeder(feeder: _Feeder) -> None:
    """At exit, wait for this process's feeders, as ``multiprocessing.Queue`` does.

    This runs before the names of the channels created here are unlinked.
    """
    _feeders.add(feeder)
    at_exit(_drain_feeders, -5)


def _drain_feeders() -> None:
    for feeder in list(_feeders):
        if feeder.pid == os.getpid():
            feeder.drain()
            feeder.finish()


class _ProcessQueue:
    __slots__ = (
        "__weakref__",
        "_big",
        "_closed",
        "_feeder",
        "_fifo",
        "_items",
        "_maxsize",
        "_rlock",
        "_slots",
        "_state",
        "_wlock",
        "token",
    )

    token: str
    _maxsize: int
    _closed: RawSemLock
    _items: RawSemLock
    _rlock: RawSemLock
    _wlock: RawSemLock
    _slots: RawSemLock | None
    _fifo: Fifo
    _feeder: _Feeder | None
    _state: tuple[Any, ...]
    _big: Items

    @classmethod
    def create(cls, maxsize: int, threshold: int | None) -> Self:
        self = cls.__new__(cls)
        self.token = new_token()
        self._maxsize = maxsize if maxsize > 0 else 0
        self._big = Items(self.token, threshold)
        path = create_fifo(self.token, ".q")
        # The owner also removes what big items left in shared memory (see ._big).
        own(self, fifos=(path,), prefixes=(prefix_of(self.token),))

        def semaphore(value: int, maxvalue: int) -> tuple[RawSemLock, str]:
            raw, name = create_semlock(SEMAPHORE, value, maxvalue)
            own(self, semaphores=(name,))
            return raw, name

        self._rlock, rlock = semaphore(1, 1)
        self._wlock, wlock = semaphore(1, 1)
        self._items, items = semaphore(0, SEM_VALUE_MAX)
        self._closed, closed = semaphore(0, SEM_VALUE_MAX)
        slots_name = None
        self._slots = None
        if self._maxsize:
            self._slots, slots_name = semaphore(self._maxsize, SEM_VALUE_MAX)
        self._fifo = Fifo(path, size=CAPACITY)
        self._feeder = None
        self._state = (
            self.token,
            self._maxsize,
            path,
            rlock,
            wlock,
            items,
            closed,
            slots_name,
            threshold,
        )
        return self

    @classmethod
    def open(cls, state: tuple[Any, ...]) -> Self:
        token, maxsize, path, rlock, wlock, items, closed, slots, threshold = state
        self = cls.__new__(cls)
        self.token = token
        self._maxsize = maxsize
        self._state = state
        self._big = Items(token, threshold)  # the creator's threshold, in every process

        def semaphore(name: str) -> RawSemLock:
            return open_semlock(
                SEMAPHORE, 1 if name in (rlock, wlock) else SEM_VALUE_MAX, name, "Queue"
            )

        self._rlock = semaphore(rlock)
        self._wlock = semaphore(wlock)
        self._items = semaphore(items)
        self._closed = semaphore(closed)
        self._slots = semaphore(slots) if slots is not None else None
        try:
            self._fifo = Fifo(path)
        except FileNotFoundError as exc:
            raise gone("Queue", exc) from None
        self._feeder = None
        return self

    # -- putting ------------------------------------------------------------------------

    def put(self, obj: Any, block: bool, timeout: float | None) -> None:
        if not self._closed._is_zero():
            raise _closed_for_put()
        placed: list[Placement] = []
        parts = frame(DATA, self._big.dumps(obj, placed))
        try:
            if self._slots is not None and not self._slots.acquire(
                block, timeout if block else None
            ):
                raise queue.Full
            self._accept(1)
        except BaseException:
            Items.give_back(placed)  # the item was not put: its segment is free again
            raise
        self._emit(parts)

    def put_many(self, objs: list[Any], block: bool, timeout: float | None) -> None:
        if not self._closed._is_zero():
            raise _closed_for_put()
        big = self._big
        # Per item: the segment its message uses, if any (given back if it is not put).
        placed: list[list[Placement]] = [[] for _ in objs]
        try:
            frames = [
                frame(DATA, big.dumps(obj, mine)) for obj, mine in zip(objs, placed, strict=True)
            ]
        except BaseException:
            for mine in placed:
                Items.give_back(mine)
            raise
        count = len(frames)
        if not count:
            return
        done = 0
        try:
            if self._slots is None:
                self._accept(count)
                done = count
                self._emit(_join(frames))
                return
            deadline = monotonic_deadline(timeout if block else 0.0)
            slots = self._slots
            while done < count:
                left = remaining(deadline)
                if not slots.acquire(block and left != 0.0, left):
                    raise _full(done, count)
                take = 1
                while done + take < count and slots.acquire(False):
                    take += 1
                self._accept(take)
                done += take
                self._emit(_join(frames[done - take : done]))
        except BaseException:
            for mine in placed[done:]:
                Items.give_back(mine)
            raise

    def _accept(self, count: int) -> None:
        """Count ``count`` items as accepted, unless the queue closed meanwhile."""
        items = self._items
        for _ in range(count):
            items.release()
        if not self._closed._is_zero():
            for _ in range(count):
                items.acquire(False)
                if self._slots is not None:
                    self._slots.release()  # also wakes the next producer blocked on a slot
            raise _closed_for_put()

    def _emit(self, parts: list[bytes | memoryview]) -> None:
        feeder = self._feeder
        if feeder is None or feeder.pid != os.getpid():
            feeder = None
        if feeder is None or not feeder.pending:
            wlock = self._wlock
            if wlock.acquire(False) or wlock.acquire(True, _WRITER_PATIENCE):
                try:
                    if self._fifo.try_write(parts):
                        return
                finally:
                    wlock.release()
        if feeder is None:
            feeder = self._start_feeder()
        feeder.push(parts)

    def _start_feeder(self) -> _Feeder:
        with _feeder_creation:  # one feeder per queue and process, even with racing threads
            feeder = self._feeder
            if feeder is None or feeder.pid != os.getpid():
                feeder = self._feeder = _Feeder(self._fifo, self._wlock)
                weakref.finalize(self, feeder.finish).atexit = False
            return feeder

    # -- getting ------------------------------------------------------------------------

    def get(self, block: bool, timeout: float | None) -> Any:
        return Items.loads(self._take_many(1, block, timeout)[0])

    def get_many(self, max_items: int | None, block: bool, timeout: float | None) -> list[Any]:
        return [Items.loads(p) for p in self._take_many(max_items, block, timeout)]

    def _take_many(
        self, max_items: int | None, block: bool, timeout: float | None
    ) -> list[bytes | bytearray | memoryview]:
        deadline = (
            None if block and timeout is None else monotonic_deadline(timeout if block else 0.0)
        )
        rlock = self._rlock
        if not (rlock.acquire(True, remaining(deadline)) if block else rlock.acquire(False)):
            if not self._closed._is_zero() and self._items._is_zero():
                raise _drained()
            raise queue.Empty
        try:
            payloads: list[bytes | bytearray | memoryview] = [self._take_one(deadline)]
            if max_items is None or max_items > 1:
                payloads += self._take_ready(None if max_items is None else max_items - 1)
            items = self._items
            slots = self._slots
            for _ in payloads:
                items.acquire(False)
                if slots is not None:
                    slots.release()
        finally:
            rlock.release()
        return payloads

    def _take_one(self, deadline: float | None) -> bytes | bytearray:
        """Read the next data message (the read lock is held)."""
        fifo = self._fifo
        closed = self._closed
        while True:
            if closed._is_zero():
                if deadline is not None and not fifo.wait_readable(remaining(deadline)):
                    if closed._is_zero():
                        raise queue.Empty
                    continue
            elif not fifo.wait_readable(0):
                if self._items._is_zero():
                    raise _drained()
                left = remaining(deadline)
                if left == 0.0:
                    raise queue.Empty
                fifo.wait_readable(_IN_FLIGHT_POLL if left is None else min(left, _IN_FLIGHT_POLL))
                continue
            kind, length = fifo.read_header()
            payload = fifo.read_exact(length) if length else b""
            if kind == DATA:
                return payload

    def _take_ready(self, want: int | None) -> list[bytes | bytearray | memoryview]:
        """Read up to ``want`` more messages that are already in the FIFO."""
        fifo = self._fifo
        out: list[bytes | bytearray | memoryview] = []
        if want is None:
            ready = fifo.unread()
            if ready < HEADER.size:
                return out
            chunk = memoryview(fifo.read_some(ready))
            pos = 0
            while pos < len(chunk):
                if len(chunk) - pos < HEADER.size:
                    head = bytes(chunk[pos:]) + fifo.read_exact(HEADER.size - (len(chunk) - pos))
                    pos = len(chunk)
                else:
                    head = bytes(chunk[pos : pos + HEADER.size])
                    pos += HEADER.size
                kind, length = split_header(head)
                if pos + length <= len(chunk):
                    payload: bytes | bytearray | memoryview = chunk[pos : pos + length]
                    pos += length
                else:
                    payload = bytes(chunk[pos:]) + fifo.read_exact(length - (len(chunk) - pos))
                    pos = len(chunk)
                if kind == DATA:
                    out.append(payload)
            return out
        ahead: bytes | None = None
        while len(out) < want:
            if ahead is None:
                if fifo.unread() < HEADER.size:
                    break
                ahead = bytes(fifo.read_exact(HEADER.size))
            kind, length = split_header(ahead)
            if len(out) + 1 < want and fifo.unread() >= length + HEADER.size:
                data = memoryview(fifo.read_exact(length + HEADER.size))
                payload = data[:length]
                ahead = bytes(data[length:])
            else:
                payload = fifo.read_exact(length) if length else b""
                ahead = None
            if kind == DATA:
                out.append(payload)
        return out

    # -- the rest -----------------------------------------------------------------------

    def close(self) -> None:
        if self._closed._is_zero():
            self._closed.release()
            if self._slots is not None:
                self._slots.release()  # a blocked producer wakes, sees closed, passes it on
            wlock = self._wlock
            if wlock.acquire(True, 0.1):
                try:
                    self._fifo.write_nowait(_WAKE_FRAME)
                finally:
                    wlock.release()
        feeder = self._feeder
        if feeder is not None:
            feeder.finish()

    @property
    def closed(self) -> bool:
        return not self._closed._is_zero()

    def qsize(self) -> int:
        try:
            return self._items._get_value()
        except NotImplementedError:
            raise NotImplementedError(
                "Queue.qsize() is not available for the process backend on this platform "
                "(it has no sem_getvalue); use empty() or get_nowait()"
            ) from None

    def empty(self) -> bool:
        return self._items._is_zero()

    def full(self) -> bool:
        return self._slots is not None and self._slots._is_zero()

    @property
    def maxsize(self) -> int:
        return self._maxsize

    def state(self) -> tuple[Any, ...]:
        return self._state


def _join(frames: list[list[bytes | memoryview]]) -> list[bytes | memoryview]:
    parts = [part for parts in frames for part in parts]
    if len(parts) > 1 and sum(len(p) for p in parts) < 1 << 20:
        return [b"".join(parts)]
    return parts


# -- the public face -----------------------------------------------------------------------


class Queue(Generic[T]):
    """A typed FIFO queue between threads or processes, following the backend flag.

    The methods of ``multiprocessing.Queue`` keep their signatures
    (``put(obj, block=True, timeout=None)``, ``get(block=True, timeout=None)``,
    ``put_nowait``, ``get_nowait``, ``qsize``, ``empty``, ``full``) and raise
    ``queue.Empty`` / ``queue.Full`` on timeouts, so existing handlers keep
    working. On top of that:

    - :meth:`close` ends the stream for every producer and consumer, in every
      process: ``for item in q`` stops once the items put before the close
      are taken, with no sentinel value; ``put`` afterwards raises
      :class:`~parallelkit.ClosedChannelError`.
    - :meth:`put_many` / :meth:`get_many` move batches with one lock and one
      system call.
    - It can be passed to workers as an ordinary task argument on every
      backend and start method (see the channels guide for the mechanism).

    :class:`JoinableQueue` extends it with ``task_done()`` and ``join()``;
    it is not meant to be subclassed otherwise.

    Items are pickled on the process backend (and, with ``check_pickle``, on
    the others); on the thread and serial backends the objects themselves
    are passed.

    Args:
        maxsize: Most items held at once; 0 or less means unbounded.
        backend: ``"process"``, ``"thread"``, ``"serial"`` or ``"dask"``; None
            follows the configuration, like the Executor.

    On the dask backend the queue lives on the cluster's scheduler (see the
    channels guide): every operation is a round trip to it, ``put_many`` and
    ``get_many`` included (one per item).

    Raises:
        ConfigError: The backend (from any source) is unknown, or dask has no
            cluster to use.

    Examples:
        >>> import parallelkit
        >>> q = parallelkit.Queue[int](backend="thread")
        >>> q.put_many([1, 2, 3])
        >>> q.close()
        >>> list(q)
        [1, 2, 3]
    """

    __slots__ = ("__weakref__", "_backend", "_impl")

    _impl: _ProcessQueue | _ThreadQueue | ClusterQueue
    #: The implementations this class builds (JoinableQueue extends both).
    _process_impl: ClassVar[type[_ProcessQueue]] = _ProcessQueue
    _thread_impl: ClassVar[type[_ThreadQueue]] = _ThreadQueue
    #: Why this class has no implementation on a cluster ("": it has one).
    _no_cluster: ClassVar[str] = ""

    def __init__(self, maxsize: int = 0, *, backend: str | None = None) -> None:
        self._start(maxsize, resolve(backend))

    def _start(self, maxsize: int, settings: Settings) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int, got {maxsize!r}")
        self._backend = settings.backend
        if on_cluster(settings):
            if self._no_cluster:
                raise not_on_cluster(settings, type(self).__name__, self._no_cluster)
            from ._cluster import ClusterQueue, connect

            self._impl = ClusterQueue.create(connect(settings.address), maxsize)
        elif is_process(settings):
            self._impl = self._process_impl.create(maxsize, settings.shared_threshold)
        else:
            self._impl = self._thread_impl(maxsize, settings.check_pickle)
        remember(self._impl.token, self)

    @property
    def backend(self) -> str:
        """The backend this queue was made for."""
        return self._backend

    @property
    def maxsize(self) -> int:
        """The bound given at creation (0: unbounded)."""
        return self._impl.maxsize

    def put(self, obj: T, block: bool = True, timeout: float | None = None) -> None:
        """Put ``obj`` at the end of the queue.

        Args:
            obj: The item.
            block: Wait for room in a bounded queue; when False, raise at once.
            timeout: With ``block``, wait at most this many seconds.

        Raises:
            queue.Full: No room in time (bounded queues only).
            ClosedChannelError: The queue was closed.
        """
        self._impl.put(obj, block, timeout)

    def put_nowait(self, obj: T) -> None:
        """``put(obj, block=False)``.

        Args:
            obj: The item.

        Raises:
            queue.Full: No room.
            ClosedChannelError: The queue was closed.
        """
        self._impl.put(obj, False, None)

    def put_many(
        self, items: Iterable[T], block: bool = True, timeout: float | None = None
    ) -> None:
        """Put every item, in order, as one batch.

        Equivalent to ``for x in items: q.put(x)`` but with one lock and one
        write for the batch. On a bounded queue the batch goes in as room
        appears; if the timeout passes first, the items before the one that
        did not fit have been put and ``queue.Full`` says how many.

        Args:
            items: The items.
            block: Wait for room; when False, raise if it is not there now.
            timeout: With ``block``, the longest total wait in seconds.

        Raises:
            queue.Full: No room in time.
            ClosedChannelError: The queue was closed.
        """
        self._impl.put_many(list(items), block, timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Remove and return the first item.

        Args:
            block: Wait for an item; when False, raise if there is none now.
            timeout: With ``block``, wait at most this many seconds.

        Returns:
            The item.

        Raises:
            queue.Empty: No item in time.
            ClosedChannelError: The queue is closed and empty: the stream ended.
        """
        item: T = self._impl.get(block, timeout)
        return item

    def get_nowait(self) -> T:
        """``get(block=False)``.

        Returns:
            The item.

        Raises:
            queue.Empty: No item now.
            ClosedChannelError: The queue is closed and empty.
        """
        item: T = self._impl.get(False, None)
        return item

    def get_many(
        self, max_items: int | None = None, block: bool = True, timeout: float | None = None
    ) -> list[T]:
        """Wait for one item (as :meth:`get`), then take every item already there.

        Args:
            max_items: Take at most this many (None: no limit).
            block: Wait for the first item.
            timeout: With ``block``, wait at most this many seconds for it.

        Returns:
            At least one item, in order.

        Raises:
            queue.Empty: No item in time.
            ClosedChannelError: The queue is closed and empty.
            ValueError: ``max_items`` is less than 1.
        """
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items must be >= 1 or None, got {max_items}")
        items: list[T] = self._impl.get_many(max_items, block, timeout)
        return items

    def close(self) -> None:
        """End the stream, for every producer and consumer in every process.

        Items already put can still be taken; iteration stops after the last
        of them; ``put`` raises :class:`~parallelkit.ClosedChannelError`.
        Calling it again does nothing. (Unlike ``multiprocessing.Queue.close``,
        this is not a local clean-up: resources go when the queue object is
        garbage-collected.)
        """
        self._impl.close()

    @property
    def closed(self) -> bool:
        """Whether the queue was closed (by anyone)."""
        return self._impl.closed

    def qsize(self) -> int:
        """Return the number of items put and not yet taken (approximate while others work).

        Returns:
            The number of items.

        Raises:
            NotImplementedError: Process backend on a platform without
                ``sem_getvalue`` (macOS).
        """
        return self._impl.qsize()

    def empty(self) -> bool:
        """Return whether no item is waiting (approximate while others work)."""
        return self._impl.empty()

    def full(self) -> bool:
        """Return whether a bounded queue has no room (approximate while others work)."""
        return self._impl.full()

    def __iter__(self) -> Iterator[T]:
        """Take items until the queue is closed and empty."""
        get = self._impl.get
        try:
            while True:
                yield get(True, None)
        except ClosedChannelError:
            return

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        impl = self._impl
        cls = type(self)
        if isinstance(impl, _ThreadQueue):
            return local_reduce(self, impl.token, cls.__name__)
        if not isinstance(impl, _ProcessQueue):
            return (_open_cluster_queue, (impl.state(), self._backend))
        if cls is Queue:  # the common case pickles no class reference
            return (_open_queue, (impl.state(), self._backend))
        return (_open_queue, (impl.state(), self._backend, cls))

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        bound = f" maxsize={self.maxsize}" if self.maxsize else ""
        return f"<parallelkit.{type(self).__name__} backend={self._backend!r}{bound} {state}>"


def make_queue(settings: Settings, maxsize: int) -> Queue[Any]:
    """A Queue for exactly these settings (an Executor's or Pool's own)."""
    q: Queue[Any] = Queue.__new__(Queue)
    q._start(maxsize, settings)
    return q


@reopens
def _open_queue(state: tuple[Any, ...], backend: str, cls: type[Queue[Any]] = Queue) -> Queue[Any]:
    q: Queue[Any] = cls.__new__(cls)
    q._backend = backend
    q._impl = cls._process_impl.open(state)
    return q


@reopens
def _open_cluster_queue(state: tuple[str, int, str], backend: str) -> Queue[Any]:
    from ._cluster import open_queue

    q: Queue[Any] = Queue.__new__(Queue)
    q._backend = backend
    q._impl = open_queue(state)
    return q
