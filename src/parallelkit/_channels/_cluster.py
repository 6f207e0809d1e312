"""Channels on a cluster (the dask backend): named objects on the scheduler.

::

    caller (any process)                  scheduler                 a dask worker (a task)
    ────────────────────                  ─────────                 ──────────────────────
    Queue() ── distributed.Client ──▶ distributed.Queue "pk…-i" ◀── get_client() of the worker
      │        (one per address,          (+ "pk…-s" slot tokens     (pickling a channel
      │         shared, closed with        when bounded,              writes its name and the
      │         the last channel)          Event "pk…-c": closed)     scheduler address; it
    Lock()/RLock() ─────────────────▶ distributed.Lock (leases)      reopens by name there)
    Semaphore()/BoundedSemaphore() ─▶ distributed.Semaphore (leases)
    Event() ────────────────────────▶ distributed.Event
    Value() ────────────────────────▶ distributed.Variable (its bytes) + an RLock above
    Pipe() ─────────────────────────▶ one Queue per direction

Which scheduler: inside a dask worker, the worker's own (``get_client()``);
elsewhere the ``address`` setting (``parallelkit.config(address=...)``,
``PARALLELKIT_ADDRESS``), through a client of this module's that lives as long
as a channel made through it (closed by the garbage collector of the last
one, or by a short "parallelkit-dask-close" thread when that runs on an
event loop); without an address, the default
``distributed.Client`` of the process (the last one made with
``set_as_default=True``); with none of them, :class:`~parallelkit.ConfigError`.

Every operation is at least one round trip to the scheduler, and items travel
through it pickled (cloudpickle) as bytes: channels carry coordination, not
bulk data (for that: task arguments and results, ``client.scatter``).

Queue end-of-stream: ``close()`` sets the closed Event and puts an end
marker (not bytes, so never an item) into the items queue (and the slots
queue, for a producer waiting for room). A consumer that takes the marker
puts it back for the others, so every consumer ends; an item put by a
producer racing the close lands behind the marker and is still taken (a
consumer that meets the marker with items behind it goes on to them).

Locks and semaphores are distributed's leases: a lease belongs to the object
that acquired it in one process, which refreshes it; if that process dies,
the scheduler frees the lease after ``distributed.scheduler.locks.lease-timeout``
(30 s by default). So a Lock or Semaphore is released by the process that
acquired it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import queue
import threading
import time
import weakref
from typing import Any, Final

import distributed

from .._errors import ClosedChannelError, ConfigError
from .._serialize import dumps, loads
from ._pipe import ItemReceiver
from ._sharing import new_token
from ._stream import monotonic_deadline, remaining

__all__ = (
    "ClusterCell",
    "ClusterEnd",
    "ClusterEvent",
    "ClusterQueue",
    "ClusterSemaphore",
    "Link",
    "cluster_pipe",
    "connect",
    "ctype_bytes",
    "disconnect",
    "open_end",
    "open_queue",
)

#: distributed, where its functions are not typed: the one untyped boundary.
_dask: Any = distributed

#: What close() puts in the queues: never bytes, so never an item.
_END: Final = "parallelkit-end-of-stream"
#: What a bounded queue's slot queue holds, one per free place.
_SLOT: Final = 0
_TIMEOUTS: Final = (TimeoutError,)


def _closed_for_put() -> ClosedChannelError:
    return ClosedChannelError(
        "put() on a closed Queue: close() (in this or another process) ended the stream"
    )


def _drained() -> ClosedChannelError:
    return ClosedChannelError("the Queue is closed and every item in it has been taken")


def _closed_end() -> ClosedChannelError:
    return ClosedChannelError("handle is closed: this end of the Pipe was closed")


# -- which scheduler ------------------------------------------------------------------------


class Link:
    """A client to a cluster's scheduler, held by the channels made through it.

    Attributes:
        client: The ``distributed.Client``.
        address: The scheduler's address (written into pickles of the channels).
    """

    __slots__ = ("__weakref__", "address", "client")

    def __init__(self, client: Any, address: str) -> None:
        self.client = client
        self.address = address


_links: weakref.WeakValueDictionary[str, Link] = weakref.WeakValueDictionary()
_links_lock = threading.Lock()


def _close_client(client: Any) -> None:
    """Close a client of ours, when its last channel is gone.

    The garbage collector may run this in a thread with an event loop
    running (distributed's own included), where a blocking close would
    wait for that loop: the close then happens in a thread of its own.
    """

    def close() -> None:
        with contextlib.suppress(Exception):
            client.close(timeout=10)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        close()
    else:
        threading.Thread(target=close, name="parallelkit-dask-close", daemon=True).start()


def disconnect(address: str) -> None:
    """Close the client that channels made for ``address`` share, before its cluster ends.

    An executor calls this before it closes a cluster of its own: a client
    left open would try to reach the gone scheduler again and again, logging
    errors, for as long as a channel of that cluster lives on in the program.
    The channels made there cannot be used afterwards (their operations fail).

    Args:
        address: The scheduler's address.
    """
    with _links_lock:
        link = _links.pop(address, None)
    if link is not None:
        with contextlib.suppress(Exception):
            link.client.close(timeout=10)


def _in_worker() -> Any:
    """The worker's client when this runs in a dask worker's task, else None."""
    try:
        _dask.get_worker()
    except ValueError:
        return None
    return _dask.get_client()


def connect(address: str | None) -> Link:
    """Find the scheduler for a channel (see the module docstring for the order).

    Args:
        address: The configured scheduler address, or None.

    Returns:
        The link; keep a reference while the channel lives.

    Raises:
        ConfigError: No worker, no address and no default client.
        OSError: The scheduler at ``address`` cannot be reached.
    """
    client = _in_worker()
    if client is not None:
        return Link(client, str(client.scheduler.address))
    if address is None:
        try:
            client = _dask.default_client()
        except ValueError:
            raise ConfigError(
                "parallelkit's channels on the dask backend need a cluster: set its scheduler "
                "with parallelkit.config(address='tcp://host:8786') (or PARALLELKIT_ADDRESS), "
                "or create a distributed.Client first"
            ) from None
        return Link(client, str(client.scheduler.address))
    with _links_lock:
        link = _links.get(address)
        if link is None:
            try:
                client = _dask.Client(address, set_as_default=False)
            except OSError as exc:
                raise OSError(
                    f"cannot reach the dask scheduler at {address!r}: {exc}; "
                    "check the address and that the scheduler is running"
                ) from exc
            link = Link(client, address)
            weakref.finalize(link, _close_client, client)
            _links[address] = link
        return link


# -- Queue ----------------------------------------------------------------------------------


class ClusterQueue:
    """A Queue's body on a cluster: distributed Queues of pickles, an Event for closed."""

    __slots__ = (
        "__weakref__",
        "_closed",
        "_items",
        "_link",
        "_maxsize",
        "_slots",
        "token",
    )

    def __init__(self, link: Link, token: str, maxsize: int, *, create: bool) -> None:
        client = link.client
        self._link = link
        self.token = token
        self._maxsize = maxsize
        self._items: Any = _dask.Queue(f"{token}-i", client=client)
        self._slots: Any = _dask.Queue(f"{token}-s", client=client) if maxsize else None
        self._closed: Any = _dask.Event(f"{token}-c", client=client)
        if create and self._slots is not None:
            for _ in range(maxsize):
                self._slots.put(_SLOT)
        weakref.finalize(self, _release_queues, self._items, self._slots)

    @classmethod
    def create(cls, link: Link, maxsize: int) -> ClusterQueue:
        """A new queue on the scheduler of ``link``."""
        return cls(link, new_token(), maxsize, create=True)

    def state(self) -> tuple[str, int, str]:
        """What a pickle carries: the name, the bound, the scheduler address."""
        return (self.token, self._maxsize, self._link.address)

    # -- putting -----------------------------------------------------------------------

    def put(self, obj: Any, block: bool, timeout: float | None) -> None:
        self.put_many([obj], block, timeout)

    def _take_slot(self, deadline: float | None, block: bool) -> None:
        slots = self._slots
        while True:
            if not block and slots.qsize() == 0:
                raise queue.Full
            left = remaining(deadline)
            try:
                got = slots.get(timeout=left if block else 0.1)
            except _TIMEOUTS:
                raise queue.Full from None
            if got == _END:
                slots.put(_END)  # the next waiting producer sees it too
                raise _closed_for_put()
            return

    def put_many(self, objs: list[Any], block: bool, timeout: float | None) -> None:
        if self._closed.is_set():
            raise _closed_for_put()
        payloads = [dumps(o) for o in objs]
        deadline = monotonic_deadline(timeout if block else 0.0)
        for done, payload in enumerate(payloads):
            if self._slots is not None:
                try:
                    self._take_slot(deadline, block)
                except queue.Full:
                    count = len(payloads)
                    if count == 1:
                        raise
                    raise queue.Full(f"put {done} of {count} items before the timeout") from None
            self._items.put(payload)

    # -- taking ------------------------------------------------------------------------

    def _free_slots(self, count: int) -> None:
        if self._slots is not None:
            for _ in range(count):
                self._slots.put(_SLOT)

    def _take(self, deadline: float | None, block: bool) -> bytes:
        items = self._items
        after_end = False
        while True:
            if not block and items.qsize() == 0:
                raise _drained() if self._closed.is_set() else queue.Empty
            left = remaining(deadline) if block else 0.1
            try:
                got = items.get(timeout=left)
            except _TIMEOUTS:
                raise queue.Empty from None
            if isinstance(got, bytes):
                return got
            items.put(_END)  # leave the end marker for the other consumers
            if after_end or items.qsize() <= 1:
                raise _drained()
            after_end = True  # items behind the marker: a put raced the close

    def get(self, block: bool, timeout: float | None) -> Any:
        deadline = monotonic_deadline(timeout) if block else None
        payload = self._take(deadline, block)
        self._free_slots(1)
        return loads(payload)

    def get_many(self, max_items: int | None, block: bool, timeout: float | None) -> list[Any]:
        deadline = monotonic_deadline(timeout) if block else None
        payloads = [self._take(deadline, block)]
        items = self._items
        if max_items is None:
            ended = False
            for got in items.get(batch=True):
                if isinstance(got, bytes):
                    payloads.append(got)
                else:
                    ended = True
            if ended:
                items.put(_END)
        else:
            while len(payloads) < max_items:
                try:
                    payloads.append(self._take(None, False))
                except (queue.Empty, ClosedChannelError):
                    break
        self._free_slots(len(payloads))
        return [loads(p) for p in payloads]

    # -- the rest ----------------------------------------------------------------------

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._items.put(_END)
        if self._slots is not None:
            self._slots.put(_END)

    @property
    def closed(self) -> bool:
        return bool(self._closed.is_set())

    def qsize(self) -> int:
        size: int = self._items.qsize()
        if size and self._closed.is_set():
            size -= 1  # the end marker (approximate, as qsize is anyway)
        return max(size, 0)

    def empty(self) -> bool:
        return self.qsize() == 0

    def full(self) -> bool:
        return self._slots is not None and self._slots.qsize() == 0

    @property
    def maxsize(self) -> int:
        return self._maxsize


def _release_queues(items: Any, slots: Any) -> None:
    """Drop this process's hold on the scheduler's queues (they go with the last hold)."""
    for q in (items, slots):
        if q is not None:
            with contextlib.suppress(Exception):
                q.close()


# -- Lock, RLock, Semaphore, BoundedSemaphore ---------------------------------------------------


class ClusterSemaphore:
    """A Lock, RLock or Semaphore on a cluster: distributed's leases.

    A recursive one (RLock) counts the holding thread's nested acquisitions
    here and holds one lease for them.
    """

    __slots__ = (
        "__weakref__",
        "_count",
        "_leases",
        "_link",
        "_owner",
        "_recursive",
        "_sem",
        "token",
    )

    def __init__(self, link: Link, token: str, leases: int, recursive: bool) -> None:
        client = link.client
        self._link = link
        self.token = token
        self._leases = leases
        self._recursive = recursive
        self._owner: int | None = None
        self._count = 0
        if leases == 1:
            self._sem: Any = _dask.Lock(token, scheduler_rpc=client.scheduler, loop=client.loop)
        else:
            self._sem = _dask.Semaphore(
                leases, token, scheduler_rpc=client.scheduler, loop=client.loop
            )

    @property
    def kind(self) -> tuple[int, bool]:
        """How many leases, and whether recursive (what a pickle carries besides the name)."""
        return (self._leases, self._recursive)

    @property
    def address(self) -> str:
        """The scheduler's address."""
        return self._link.address

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        me = threading.get_ident()
        if self._recursive and self._owner == me:
            self._count += 1
            return True
        wait = (None if timeout is None else max(timeout, 0.0)) if block else 0.0
        got = bool(self._sem.acquire(timeout=wait))
        if got and self._recursive:
            self._owner = me
            self._count = 1
        return got

    def release(self) -> None:
        if self._recursive:
            if self._owner != threading.get_ident():
                raise AssertionError("attempt to release recursive lock not owned by thread")
            self._count -= 1
            if self._count:
                return
            self._owner = None
        try:
            self._sem.release()
        except RuntimeError:
            raise ValueError(
                "semaphore or lock released too many times (on the dask backend a lease "
                "is released in the process that acquired it)"
            ) from None

    def __enter__(self) -> bool:
        return self.acquire(True, None)

    def __exit__(self, *args: object) -> None:
        self.release()

    def get_value(self) -> int:
        held: int = self._sem.get_value()
        return self._leases - held


# -- Event ----------------------------------------------------------------------------------


class ClusterEvent:
    """An Event on a cluster: ``distributed.Event``."""

    __slots__ = ("__weakref__", "_event", "_link", "token")

    def __init__(self, link: Link, token: str) -> None:
        self._link = link
        self.token = token
        self._event: Any = _dask.Event(token, client=link.client)

    @property
    def address(self) -> str:
        """The scheduler's address."""
        return self._link.address

    def is_set(self) -> bool:
        return bool(self._event.is_set())

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def wait(self, timeout: float | None) -> bool:
        return bool(self._event.wait(None if timeout is None else max(timeout, 0.0)))


# -- Value ----------------------------------------------------------------------------------


class ClusterCell:
    """The lock of a Value on a cluster, which brings the value along.

    Entering holds the Value's lock and loads the Variable's bytes into the
    local ctypes object; leaving stores them back if they changed, then
    releases. So every Value operation, written for memory under a lock,
    works unchanged: the lock makes the local copy the only live one.
    """

    __slots__ = ("_lock", "_obj", "_seen", "_var")

    def __init__(self, link: Link, token: str, lock: Any, obj: Any) -> None:
        self._lock = lock
        self._obj = obj
        self._var: Any = _dask.Variable(token, client=link.client)
        self._seen = b""

    def publish(self) -> None:
        """Store the local contents as the shared ones (a new Value's initial value)."""
        self._seen = ctype_bytes(self._obj)
        self._var.set(self._seen)

    def __enter__(self) -> bool:
        self._lock.acquire(True, None)
        try:
            data: bytes = self._var.get()
            ctypes.memmove(ctypes.addressof(self._obj), data, len(data))
            self._seen = data
        except BaseException:
            self._lock.release()
            raise
        return True

    def __exit__(self, *args: object) -> None:
        try:
            now = ctype_bytes(self._obj)
            if now != self._seen:
                self._var.set(now)
        finally:
            self._lock.release()


def ctype_bytes(obj: Any) -> bytes:
    """The bytes of a ctypes object."""
    return bytes(memoryview(obj).cast("B"))


# -- Pipe -----------------------------------------------------------------------------------


class ClusterEnd(ItemReceiver):
    """One end of a Pipe on a cluster: it receives from one queue and sends into the other."""

    __slots__ = ("__weakref__", "_closed", "_eof", "_in", "_out", "token")

    def __init__(self, inbound: ClusterQueue | None, outbound: ClusterQueue | None) -> None:
        self._in = inbound
        self._out = outbound
        self._closed = False
        self._eof = False
        first = inbound if inbound is not None else outbound
        assert first is not None
        self.token = (
            first.token
            + ("r" if inbound is not None else "")
            + ("w" if outbound is not None else "")
        )

    def state(self) -> tuple[tuple[str, int, str] | None, tuple[str, int, str] | None]:
        """The names of its queues (what a pickle carries)."""
        return (
            None if self._in is None else self._in.state(),
            None if self._out is None else self._out.state(),
        )

    def _outbound(self) -> ClusterQueue:
        if self._closed:
            raise _closed_end()
        if self._out is None:
            raise OSError("connection is read-only")
        return self._out

    def _inbound(self) -> ClusterQueue:
        if self._closed:
            raise _closed_end()
        if self._in is None:
            raise OSError("connection is write-only")
        return self._in

    def _put(self, item: tuple[str, Any]) -> None:
        try:
            self._outbound().put(item, True, None)
        except ClosedChannelError:
            if self._closed:
                raise
            raise BrokenPipeError("the other end of the Pipe was closed") from None

    def send(self, obj: Any) -> None:
        self._put(("o", obj))

    def send_bytes(self, data: memoryview) -> None:
        self._put(("b", bytes(data)))

    def _get(self, timeout: float | None = None) -> tuple[str, Any]:
        inbound = self._inbound()
        if self._eof:
            raise EOFError
        try:
            item: tuple[str, Any] = inbound.get(True, timeout)
        except ClosedChannelError:
            self._eof = True
            raise EOFError from None
        return item

    def poll(self, timeout: float | None) -> bool:
        inbound = self._inbound()
        if self._eof:
            return True
        deadline = monotonic_deadline(timeout)
        while True:
            if inbound.qsize() or inbound.closed:
                return True
            left = remaining(deadline)
            if left == 0.0:
                return False
            time.sleep(_POLL if left is None else min(left, _POLL))

    def fileno(self) -> int:
        if self._closed:
            raise _closed_end()
        raise OSError(
            "a Pipe on the dask backend has no file descriptor (its messages are on the "
            "scheduler): use poll(timeout) instead of select"
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for direction in (self._out, self._in):
            if direction is not None:
                with contextlib.suppress(Exception):
                    direction.close()

    @property
    def closed(self) -> bool:
        return self._closed


#: How often poll() on a Pipe end looks at the scheduler.
_POLL: Final = 0.01


def cluster_pipe(link: Link, duplex: bool) -> tuple[ClusterEnd, ClusterEnd]:
    """The two ends of a new Pipe on the scheduler of ``link``."""
    first = ClusterQueue.create(link, 0)
    if duplex:
        second = ClusterQueue.create(link, 0)
        return ClusterEnd(second, first), ClusterEnd(first, second)
    return ClusterEnd(first, None), ClusterEnd(None, first)


def open_queue(state: tuple[str, int, str]) -> ClusterQueue:
    """Reopen a queue by the names a pickle carried."""
    token, maxsize, address = state
    return ClusterQueue(connect(address), token, maxsize, create=False)


def open_end(
    state: tuple[tuple[str, int, str] | None, tuple[str, int, str] | None],
) -> ClusterEnd:
    """Reopen a Pipe end by the names a pickle carried."""
    inbound, outbound = state
    return ClusterEnd(
        None if inbound is None else open_queue(inbound),
        None if outbound is None else open_queue(outbound),
    )
