"""Pipe: two connected ends whose copies belong to processes, like file descriptors.

Process backend: one named FIFO per direction, opened like an OS pipe's ends::

    process P (a copy of end A)                         process Q (a copy of end B)
    ───────────────────────────                         ───────────────────────────
    send: [hdr|pickle] ── O_WRONLY fd ──▶ FIFO a→b ──▶ O_RDONLY fd ── recv
    recv ── O_RDONLY fd ◀── FIFO b→a ◀── O_WRONLY fd ── send: [hdr|pickle]   (duplex only)

    pickling A ──▶ names + a ticket ─(task argument, spawn, a Queue…)─▶ unpickling in R:
       │          (a marker file P holds                                 R opens its own fds,
       │           flock'ed while in flight)                             then unlinks the ticket
       └─ P closes its copy before R opened? its read fd is kept with the ticket until
          R unlinked it (so nothing written meanwhile is lost); P's next pipe call drops it

Each process that holds an end holds its own descriptors of the two FIFOs,
so the kernel counts the copies: when every copy of an end is closed — by
``close()``, by garbage collection, or because its process died, SIGKILL
included — the other end's ``recv()`` reads what is left and then EOF
(``EOFError``), and its ``send()`` gets ``EPIPE`` (``BrokenPipeError``),
exactly as with ``os.pipe()``. A forked child inherits the copies its parent
holds, as it inherits file descriptors. ``fileno()`` of a receiving end is
its read descriptor: ``select``, ``selectors``, asyncio's ``add_reader`` and
``multiprocessing.connection.wait`` see it readable when a message or the
EOF is there.

An end in flight (pickled, not yet unpickled) is a copy too: the sender
creates a small ticket file next to the FIFOs and holds an ``flock`` on it
until the receiver has opened its descriptors and unlinks it. A peer that
sees EOF or EPIPE while a live ticket of the other end exists waits for it
to land instead (a ticket whose sender died is void), so closing an end
right after handing it to a child is safe.

Dask backend: one queue on the cluster's scheduler per direction (see
:mod:`._cluster`). An end is one object for the whole cluster, not a copy per
process: ``close()`` anywhere ends it for everyone (the other end reads what
was sent, then ``EOFError``; its ``send()`` raises ``BrokenPipeError``), and
an end dropped without ``close()`` does not end it. It has no ``fileno()``.

Thread (and serial) backend: one deque and condition per direction. There is
one copy of each end in the process, so ``close()`` is what the peer sees at
once. ``fileno()`` lazily makes an ``os.pipe()`` per direction holding one
byte exactly while ``poll()`` would return True (a message, or the writing
end closed); until it is asked for, no system call is made.
"""

# The channel classes build and rebuild one another's objects (unpickling, locks shared
# by Values): access to their underscore attributes stays inside this package.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import contextlib
import os
import secrets
import select
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing import BufferTooShort
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, final, overload

from .._config import Settings
from .._errors import ClosedChannelError
from .._serialize import dumps, loads, roundtrip
from ._big import Items, prefix_of
from ._select import is_process, on_cluster, resolve
from ._sharing import (
    at_exit,
    create_fifo,
    gone,
    local_reduce,
    new_token,
    own,
    remember,
    reopens,
)
from ._stream import CAPACITY, DATA, PIPE_BUF, advance, frame, split_header
from ._types import T, T_co, T_contra

if sys.platform == "win32":  # pragma: no cover - process channels need POSIX FIFOs
    fcntl: Any = None
else:
    import fcntl

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from .._bulk import Placement
    from ._cluster import ClusterEnd

__all__ = ("Connection", "ItemReceiver", "Pipe", "Receiver", "Sender", "make_pipe")

#: Seconds between looks at an in-flight copy of the other end.
_LANDING_POLL: Final = 0.02
#: Milliseconds between looks at the keepers while a send waits for room.
_KEEPER_POLL_MS: Final = 100
_JOIN_BELOW: Final = 1 << 16
_IOV_MAX: Final = 512
_F_SETPIPE_SZ: Final[int | None] = getattr(fcntl, "F_SETPIPE_SZ", None)


def _closed_here() -> ClosedChannelError:
    return ClosedChannelError("handle is closed: this end of the Pipe was closed in this process")


def _peer_closed() -> BrokenPipeError:
    return BrokenPipeError("the other end of the Pipe was closed (every copy of it)")


def _bytes_of(buf: Buffer, offset: int, size: int | None) -> memoryview:
    """``multiprocessing``'s ``send_bytes(buf, offset, size)`` slice, checked the same way."""
    view = memoryview(buf).cast("B")
    if offset < 0:
        raise ValueError("offset is negative")
    if len(view) < offset:
        raise ValueError("buffer length < offset")
    if size is None:
        size = len(view) - offset
    elif size < 0:
        raise ValueError("size is negative")
    elif offset + size > len(view):
        raise ValueError("buffer length < offset + size")
    return view[offset : offset + size]


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()


# -- thread implementation -----------------------------------------------------------------


class _Direction:
    """Messages from one end to the other: ("o", obj) or ("b", bytes).

    ``wake`` is made by the first ``fileno()``: an ``os.pipe()`` that holds
    one byte exactly while there is a message or the writer is closed.
    """

    __slots__ = (
        "__weakref__",
        "cond",
        "flagged",
        "items",
        "reader_closed",
        "wake",
        "writer_closed",
    )

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.items: deque[tuple[str, Any]] = deque()
        self.reader_closed = False
        self.writer_closed = False
        self.wake: list[int] | None = None
        self.flagged = False

    def wake_fds(self) -> list[int]:
        """The wake-up pipe ``[read, write]``, made now if needed (holding ``cond``)."""
        if self.wake is None:
            read, write = os.pipe()
            os.set_blocking(read, False)
            os.set_blocking(write, False)
            self.wake = [read, write]
            weakref.finalize(self, _close_fds, self.wake)
            self.sync()
        return self.wake

    def sync(self) -> None:
        """Make the wake-up pipe readable iff a reader would not block (holding ``cond``)."""
        if self.wake is None:
            return
        ready = bool(self.items) or self.writer_closed
        if ready != self.flagged:
            if ready:
                os.write(self.wake[1], b"\0")
            else:
                os.read(self.wake[0], 1)
            self.flagged = ready


class ItemReceiver:
    """The receiving calls of an end whose messages are ``(kind, value)`` items.

    ``"b"``: bytes sent with ``send_bytes``; ``"o"``: an object sent with
    ``send`` (on a cluster, already pickled). The thread backend's ends and
    the cluster's ends are both made of such items; each says how it takes
    the next one (``_get``).
    """

    __slots__ = ()

    def _get(self) -> tuple[str, Any]:
        raise NotImplementedError

    def recv(self) -> Any:
        kind, value = self._get()
        return loads(value) if kind == "b" else value

    def recv_bytes(self, maxlength: int | None) -> bytes:
        kind, value = self._get()
        data: bytes = value if kind == "b" else dumps(value)
        if maxlength is not None and len(data) > maxlength:
            raise OSError("bad message length")
        return data

    def recv_bytes_into(self, buf: memoryview, offset: int) -> int:
        kind, value = self._get()
        data: bytes = value if kind == "b" else dumps(value)
        if len(data) > len(buf) - offset:
            raise BufferTooShort(data)
        buf[offset : offset + len(data)] = data
        return len(data)


class _ThreadEnd(ItemReceiver):
    __slots__ = ("__weakref__", "_check", "_closed", "_eof", "_in", "_out", "token")

    def __init__(
        self, inbound: _Direction | None, outbound: _Direction | None, check: bool
    ) -> None:
        self._in = inbound
        self._out = outbound
        self._check = check
        self._closed = False
        self._eof = False
        self.token = new_token()

    def _outbound(self) -> _Direction:
        if self._closed:
            raise _closed_here()
        if self._out is None:
            raise OSError("connection is read-only")
        if self._out.reader_closed:
            raise _peer_closed()
        return self._out

    def _inbound(self) -> _Direction:
        if self._closed:
            raise _closed_here()
        if self._in is None:
            raise OSError("connection is write-only")
        return self._in

    def send(self, obj: Any) -> None:
        self._put(("o", roundtrip(obj) if self._check else obj))

    def send_bytes(self, data: memoryview) -> None:
        self._put(("b", bytes(data)))

    def _put(self, item: tuple[str, Any]) -> None:
        out = self._outbound()
        with out.cond:
            out.items.append(item)
            out.sync()
            out.cond.notify()

    def _get(self) -> tuple[str, Any]:
        inbound = self._inbound()
        if self._eof:
            raise EOFError
        with inbound.cond:
            inbound.cond.wait_for(lambda: inbound.items or inbound.writer_closed)
            if not inbound.items:
                self._eof = True
                raise EOFError
            item = inbound.items.popleft()
            inbound.sync()
            return item

    def poll(self, timeout: float | None) -> bool:
        inbound = self._inbound()
        if self._eof:
            return True
        with inbound.cond:
            return bool(
                inbound.cond.wait_for(lambda: inbound.items or inbound.writer_closed, timeout)
            )

    def fileno(self) -> int:
        if self._closed:
            raise _closed_here()
        direction = self._in if self._in is not None else self._out
        assert direction is not None
        with direction.cond:
            fds = direction.wake_fds()
        # A receiving end waits for its inbound flag; a Sender's write end is always writable
        # (sending never blocks on this backend).
        return fds[0] if self._in is not None else fds[1]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for direction, attr in ((self._out, "writer_closed"), (self._in, "reader_closed")):
            if direction is not None:
                with direction.cond:
                    setattr(direction, attr, True)
                    direction.sync()
                    direction.cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


def _thread_pipe(duplex: bool, check: bool) -> tuple[_ThreadEnd, _ThreadEnd]:
    first = _Direction()
    if duplex:
        second = _Direction()
        return _ThreadEnd(second, first, check), _ThreadEnd(first, second, check)
    return _ThreadEnd(first, None, check), _ThreadEnd(None, first, check)


# -- process implementation: tickets for ends in flight -------------------------------------

#: Tickets made here and not yet unlinked by their receiver: (end key, marker fd, path).
_tickets: list[tuple[str, int, str]] = []
#: Read descriptors of ends closed here while a ticket of theirs was in flight.
_keepers: dict[str, list[int]] = {}
# Reentrant: a copy collected while this thread sweeps sweeps too.
_tickets_lock = threading.RLock()


def _ticket(folder: str, key: str) -> str:
    """Create a ticket for end ``key`` leaving this process; return its path."""
    path = os.path.join(folder, f"{key}.t{secrets.token_hex(6)}")
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if this process dies
    with _tickets_lock:
        _tickets.append((key, fd, path))
    at_exit(_void_tickets, 0)
    return path


def _sweep() -> None:
    """Forget the tickets that landed; release the keepers nobody waits for."""
    if not _tickets and not _keepers:
        return
    with _tickets_lock:
        landed = [entry for entry in _tickets if not os.fstat(entry[1]).st_nlink]
        for entry in landed:
            if entry in _tickets:
                _tickets.remove(entry)
                os.close(entry[1])
        waiting = {key for key, _, _ in _tickets}
        for key in [k for k in _keepers if k not in waiting]:
            _close_fds(_keepers.pop(key, []))


def _keep_if_in_flight(key: str, fd: int) -> bool:
    """Keep ``fd`` open while a ticket of ``key`` made here is in flight."""
    _sweep()
    with _tickets_lock:
        if any(k == key for k, _, _ in _tickets):
            _keepers.setdefault(key, []).append(fd)
            return True
    return False


def _in_flight(folder: str, key: str) -> bool:
    """Whether a live ticket of end ``key`` exists (its sender is alive and holds it)."""
    _sweep()
    prefix = f"{key}.t"
    for name in os.listdir(folder):
        if not name.startswith(prefix):
            continue
        path = os.path.join(folder, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True  # its sender holds it
        else:  # its sender died before the copy landed: the ticket is void
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        finally:
            os.close(fd)
    return False


def _land(ticket: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(ticket)
    _sweep()


def _void_tickets() -> None:
    """At exit: remove the tickets that never landed (they die with this process)."""
    with _tickets_lock:
        for _, fd, path in _tickets:
            with contextlib.suppress(OSError):
                os.unlink(path)
            os.close(fd)
        _tickets.clear()


def _forget_in_child() -> None:
    # A forked child did not send these tickets: its parent still holds them. (The lock
    # may have been held by a thread that does not exist here: make a new one.)
    global _tickets_lock
    _tickets_lock = threading.RLock()
    for _, fd, _ in _tickets:
        with contextlib.suppress(OSError):
            os.close(fd)
    _tickets.clear()
    for fds in _keepers.values():
        _close_fds(fds)
    _keepers.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _remove_tickets(folder: str, token: str, pid: int) -> None:
    """The owner's clean-up: tickets left by processes that died with an end in flight."""
    if os.getpid() != pid:
        return
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            if name.startswith(token) and ".t" in name:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))


# -- process implementation: one copy of an end in this process ------------------------------


def _open_fifo(path: str, flags: int) -> int:
    """Open a FIFO end without blocking, as an OS pipe's end.

    A descriptor opened for both directions meanwhile lets a write end open
    with no reader, and lets a read end report a later hang-up to ``poll``.
    """
    bridge = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC)
    finally:
        os.close(bridge)
    return fd


def _drop_copy(key: str, fds: list[int], reader: int) -> None:
    """Close this process's copy; keep its read side while a ticket is in flight."""
    if reader >= 0 and reader in fds and _keep_if_in_flight(key, reader):
        fds.remove(reader)
    _close_fds(fds)
    _sweep()


class _PipeNames:
    """Owns the FIFOs of one pipe in the creating process."""

    __slots__ = ("__weakref__",)


class _ProcessEnd:
    __slots__ = (
        "__weakref__",
        "_anchor",
        "_big",
        "_closed",
        "_eof",
        "_fds",
        "_finalizer",
        "_folder",
        "_peer",
        "_poller",
        "_rd",
        "_state",
        "_wr",
        "token",
    )

    def __init__(
        self,
        state: tuple[str, str, str | None, str | None],
        anchor: _PipeNames | None,
        threshold: int | None,
    ) -> None:
        token, letter, in_path, out_path = state
        self.token = token + letter
        self._big = Items(token, threshold)  # the creator's threshold, in every process
        self._peer = token + ("b" if letter == "a" else "a")
        self._folder = os.path.dirname(in_path or out_path or "")
        self._state = state
        self._anchor = anchor
        self._closed = False
        self._eof = False
        self._fds: list[int] = []
        try:
            self._rd = _open_fifo(in_path, os.O_RDONLY) if in_path else -1
            if self._rd >= 0:
                self._fds.append(self._rd)
                os.set_blocking(self._rd, True)
            self._wr = _open_fifo(out_path, os.O_WRONLY) if out_path else -1
            if self._wr >= 0:
                self._fds.append(self._wr)
        except FileNotFoundError as exc:
            _close_fds(self._fds)
            raise gone("Pipe", exc) from None
        except BaseException:
            _close_fds(self._fds)
            raise
        self._finalizer = weakref.finalize(self, _drop_copy, self.token, self._fds, self._rd)
        self._finalizer.atexit = False  # the OS closes them at exit
        # Closed or not, an end going away is a moment to drop landed tickets and keepers.
        weakref.finalize(self, _sweep).atexit = False
        self._poller = select.poll()
        if self._rd >= 0:
            self._poller.register(self._rd, select.POLLIN)

    def _writer(self) -> int:
        if self._closed:
            raise _closed_here()
        if self._wr < 0:
            raise OSError("connection is read-only")
        return self._wr

    def _reader(self) -> int:
        if self._closed:
            raise _closed_here()
        if self._rd < 0:
            raise OSError("connection is write-only")
        return self._rd

    # -- sending ----------------------------------------------------------------------------

    def send(self, obj: Any) -> None:
        self._writer()
        placed: list[Placement] = []
        message = self._big.dumps(obj, placed)
        try:
            self.send_bytes(message)
        except BaseException:
            Items.give_back(placed)  # not sent: its segment is free again
            raise

    def send_bytes(self, data: bytes | memoryview) -> None:
        fd = self._writer()
        if _keepers:
            _sweep()  # an end closed here while in flight may have landed since
        parts = frame(DATA, data)
        if len(parts) == 1 and len(parts[0]) <= PIPE_BUF:
            try:
                os.write(fd, parts[0])  # atomic: all, or EAGAIN / EPIPE
            except (BlockingIOError, BrokenPipeError):
                pass
            else:
                return
        self._write_slow(fd, [memoryview(p).cast("B") for p in parts])

    def _write_slow(self, fd: int, views: list[memoryview]) -> None:
        waiter = select.poll()
        waiter.register(fd, select.POLLOUT)
        looked_again = False
        while views:
            try:
                written = os.writev(fd, views[:_IOV_MAX])
            except BlockingIOError:
                # A reader kept here for an end in flight would hide the last reader's
                # exit: drop it once that end has landed.
                waiter.poll(_KEEPER_POLL_MS if _keepers else None)
                _sweep()
                continue
            except BrokenPipeError:
                if _in_flight(self._folder, self._peer):
                    time.sleep(_LANDING_POLL)  # a copy of the peer is on its way
                    continue
                if not looked_again:
                    # A copy that landed between the write and the look for tickets
                    # opened its reader before it removed its ticket: write once more.
                    looked_again = True
                    continue
                raise _peer_closed() from None
            looked_again = False
            views = advance(views, written)

    # -- receiving --------------------------------------------------------------------------

    def _read(self, fd: int, n: int) -> bytes:
        data = os.read(fd, n)
        while len(data) < n:
            more = os.read(fd, n - len(data))
            if not more:
                self._eof = True
                raise EOFError("the other end closed in the middle of a message")
            data += more
        return data

    def _read_into(self, fd: int, view: memoryview) -> None:
        got = 0
        while got < len(view):
            count = os.readv(fd, [view[got:]])
            if not count:
                self._eof = True
                raise EOFError("the other end closed in the middle of a message")
            got += count

    def _header(self) -> int:
        """Read up to the next data header; return the payload length."""
        fd = self._reader()
        while True:
            if self._eof:
                raise EOFError
            head = os.read(fd, 8)
            if not head:  # no writer left: EOF, unless a copy of the peer is in flight
                if _in_flight(self._folder, self._peer):
                    time.sleep(_LANDING_POLL)
                    continue
                # A copy that landed between that read and the look for tickets opened
                # its writer before it removed its ticket: read once more.
                head = os.read(fd, 8)
                if not head:
                    self._eof = True
                    raise EOFError
            if len(head) < 8:
                head += self._read(fd, 8 - len(head))
            kind, length = split_header(head)
            if kind == DATA:
                return length
            self._read(fd, length)  # pragma: no cover - no other kinds are sent

    def _payload(self, length: int) -> bytes | bytearray:
        fd = self._reader()
        if length < _JOIN_BELOW:
            return self._read(fd, length) if length else b""
        buf = bytearray(length)
        self._read_into(fd, memoryview(buf))
        return buf

    def recv(self) -> Any:
        return Items.loads(self._payload(self._header()))

    def recv_bytes(self, maxlength: int | None) -> bytes:
        length = self._header()
        data = self._payload(length)
        if maxlength is not None and length > maxlength:
            raise OSError("bad message length")
        return bytes(data)

    def recv_bytes_into(self, buf: memoryview, offset: int) -> int:
        length = self._header()
        if length > len(buf) - offset:
            raise BufferTooShort(bytes(self._payload(length)))
        if length:
            self._read_into(self._reader(), buf[offset : offset + length])
        return length

    def poll(self, timeout: float | None) -> bool:
        self._reader()
        if self._eof:
            return True
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            events = self._poller.poll(None if left is None else int(left * 1000 + 0.999))
            if not events:
                return False
            if events[0][1] & select.POLLIN:
                return True
            # A hang-up with nothing to read: EOF, unless a copy of the peer is in flight.
            if not _in_flight(self._folder, self._peer):
                # A copy that landed between the hang-up and the look for tickets opened
                # its writer before it removed its ticket: then the hang-up is gone.
                if self._poller.poll(0):
                    return True
                continue
            if left is not None and left <= 0:
                return False
            time.sleep(_LANDING_POLL if left is None else min(_LANDING_POLL, left))

    def fileno(self) -> int:
        if self._closed:
            raise _closed_here()
        return self._rd if self._rd >= 0 else self._wr

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._finalizer()
        self._big.close()  # what the peer has not received yet stays for it

    @property
    def closed(self) -> bool:
        return self._closed

    def reduce_args(self) -> tuple[tuple[str, str, str | None, str | None], str, int | None]:
        """This end's names, a fresh ticket that keeps it open in flight, and its threshold."""
        if self._closed:
            raise ClosedChannelError("a closed end of a Pipe cannot be sent")
        return self._state, _ticket(self._folder, self.token), self._big.threshold


def _process_pipe(duplex: bool, threshold: int | None) -> tuple[_ProcessEnd, _ProcessEnd]:
    token = new_token()
    anchor = _PipeNames()
    forward = create_fifo(token, ".p")
    # The owner also removes what big items left in shared memory (see ._big).
    own(anchor, fifos=(forward,), prefixes=(prefix_of(token),))
    backward = None
    if duplex:
        backward = create_fifo(token, ".r")
        own(anchor, fifos=(backward,))
    weakref.finalize(anchor, _remove_tickets, os.path.dirname(forward), token, os.getpid())
    if duplex:
        a = _ProcessEnd((token, "a", backward, forward), anchor, threshold)
        b = _ProcessEnd((token, "b", forward, backward), anchor, threshold)
    else:
        a = _ProcessEnd((token, "a", forward, None), anchor, threshold)
        b = _ProcessEnd((token, "b", None, forward), anchor, threshold)
    for end in (a, b):
        if end._rd >= 0 and _F_SETPIPE_SZ is not None:
            with contextlib.suppress(OSError):  # the pipe-buffer quota is used up: keep it
                fcntl.fcntl(end._rd, _F_SETPIPE_SZ, CAPACITY)
    return a, b


# -- the public face -----------------------------------------------------------------------


class _End:
    """What every end has: close(), fileno(), the backend, pickling."""

    __slots__ = ("__weakref__", "_backend", "_impl")

    _impl: _ProcessEnd | _ThreadEnd | ClusterEnd
    _backend: str

    @property
    def backend(self) -> str:
        """The backend this end was made for."""
        return self._backend

    @property
    def closed(self) -> bool:
        """Whether this end was closed in this process (other processes' copies may be open)."""
        return self._impl.closed

    @property
    def readable(self) -> bool:
        """Whether this end can receive (a :class:`Receiver` or a :class:`Connection`)."""
        return isinstance(self, Receiver)

    @property
    def writable(self) -> bool:
        """Whether this end can send (a :class:`Sender` or a :class:`Connection`)."""
        return isinstance(self, Sender)

    def fileno(self) -> int:
        """A file descriptor to wait on with ``select``, ``selectors`` or asyncio.

        On a receiving end (a :class:`Receiver` or a :class:`Connection`) it
        is readable when :meth:`~Receiver.poll` would return True: a message,
        or the end of the stream, is there. On a :class:`Sender` it is the
        writing descriptor (the thread backend's is always writable). It
        belongs to the end: do not close it or read from it.

        Returns:
            The descriptor, valid until this end is closed in this process.

        Raises:
            ClosedChannelError: This end was closed in this process.
        """
        return self._impl.fileno()

    def close(self) -> None:
        """Close this process's copy of this end. Idempotent.

        Like closing a file descriptor of an OS pipe: copies held by other
        processes stay open. When every copy is closed, in every process
        (a process that exits or is killed closes its copies), the other
        end's ``recv()`` raises ``EOFError`` once it has read what was sent,
        and its ``send()`` raises ``BrokenPipeError``. On the thread backend
        there is one copy, so the other end sees it at once. Using this end
        here afterwards raises :class:`~parallelkit.ClosedChannelError`.
        """
        self._impl.close()

    def __enter__(self) -> Any:
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
        if isinstance(impl, _ThreadEnd):
            return local_reduce(self, impl.token, "Pipe")
        if not isinstance(impl, _ProcessEnd):
            return (_open_cluster_end, (impl.token, type(self), self._backend, impl.state()))
        state, ticket, threshold = impl.reduce_args()
        return (_open_end, (type(self), self._backend, state, ticket, threshold))

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<parallelkit.{type(self).__name__} backend={self._backend!r} {state}>"


#: This process's copy of each process-backend end, by end key. Not keyed by process:
#: a forked child holds the copies it inherited, as it holds inherited descriptors.
_copies: weakref.WeakValueDictionary[str, _End] = weakref.WeakValueDictionary()


def _wrap(cls: type[_End], impl: _ProcessEnd | _ThreadEnd | ClusterEnd, backend: str) -> Any:
    end = cls.__new__(cls)
    end._impl = impl
    end._backend = backend
    if isinstance(impl, _ProcessEnd):
        _copies[impl.token] = end
    else:
        remember(impl.token, end)
    return end


def _open_end(
    cls: type[_End],
    backend: str,
    state: tuple[str, str, str | None, str | None],
    ticket: str,
    threshold: int | None,
) -> _End:
    """Unpickle an end: this process's copy, opened now if it has none, then land the ticket."""
    try:
        known = _copies.get(state[0] + state[1])
        if known is None or known.closed:
            known = _wrap(cls, _ProcessEnd(state, None, threshold), backend)
        found: _End = known
    finally:
        _land(ticket)
    return found


class Receiver(_End, Generic[T_co]):
    """The receiving end of a one-way :class:`Pipe` (and half of a :class:`Connection`).

    Covariant: a ``Receiver[bool]`` is a ``Receiver[int]``. ``for x in end``
    receives until every copy of the other end is closed.
    """

    __slots__ = ()

    def recv(self) -> T_co:
        """Receive the next object (blocking).

        Returns:
            The object.

        Raises:
            EOFError: Every copy of the other end was closed and everything
                it sent was read.
            ClosedChannelError: This end was closed in this process.
        """
        obj: T_co = self._impl.recv()
        return obj

    def recv_bytes(self, maxlength: int | None = None) -> bytes:
        """Receive the next message as raw bytes (what ``send_bytes`` sent).

        Args:
            maxlength: Refuse longer messages.

        Returns:
            The message.

        Raises:
            OSError: The message is longer than ``maxlength`` (it is dropped).
            EOFError: Every copy of the other end was closed and everything was read.
            ClosedChannelError: This end was closed in this process.
        """
        return self._impl.recv_bytes(maxlength)

    def recv_bytes_into(self, buf: Buffer, offset: int = 0) -> int:
        """Receive the next message into a writable buffer at byte ``offset``.

        Args:
            buf: The destination.
            offset: Where to start writing, in bytes.

        Returns:
            The message's length in bytes.

        Raises:
            multiprocessing.BufferTooShort: It does not fit; the message is
                the exception's ``args[0]``.
            EOFError: Every copy of the other end was closed and everything was read.
            ClosedChannelError: This end was closed in this process.
        """
        view = memoryview(buf).cast("B")
        if not 0 <= offset <= len(view):
            raise ValueError("offset out of bounds")
        return self._impl.recv_bytes_into(view, offset)

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Return whether :meth:`recv` would return (or raise EOFError) without blocking.

        Args:
            timeout: Seconds to wait; 0 returns at once, None waits forever.

        Returns:
            Whether there is something to read (or every copy of the other
            end is closed).

        Raises:
            ClosedChannelError: This end was closed in this process.
        """
        return self._impl.poll(timeout)

    def __iter__(self) -> Iterator[T_co]:
        """Receive until every copy of the other end is closed."""
        recv = self._impl.recv
        try:
            while True:
                yield recv()
        except EOFError:
            return


class Sender(_End, Generic[T_contra]):
    """The sending end of a one-way :class:`Pipe` (and half of a :class:`Connection`).

    Contravariant: a ``Sender[int]`` is a ``Sender[bool]``.
    """

    __slots__ = ()

    def send(self, obj: T_contra) -> None:
        """Send an object (pickled on the process backend).

        Args:
            obj: The object.

        Raises:
            BrokenPipeError: Every copy of the other end was closed.
            ClosedChannelError: This end was closed in this process.
        """
        self._impl.send(obj)

    def send_bytes(self, buf: Buffer, offset: int = 0, size: int | None = None) -> None:
        """Send bytes from a buffer as one message, as ``multiprocessing`` does.

        Args:
            buf: Any bytes-like object.
            offset: Start, in bytes.
            size: Length in bytes (default: to the end).

        Raises:
            ValueError: ``offset``/``size`` do not fit the buffer.
            BrokenPipeError: Every copy of the other end was closed.
            ClosedChannelError: This end was closed in this process.
        """
        self._impl.send_bytes(_bytes_of(buf, offset, size))


@final
class Connection(Receiver[T], Sender[T]):
    """One end of a duplex :class:`Pipe`: it sends and receives ``T``."""

    __slots__ = ()


@final
class Pipe(Generic[T]):
    """Make two connected ends, like ``multiprocessing.Pipe``, following the backend flag.

    ``a, b = parallelkit.Pipe()`` gives two duplex :class:`Connection` ends;
    ``r, w = parallelkit.Pipe(duplex=False)`` a :class:`Receiver` and a
    :class:`Sender`. ``parallelkit.Pipe[str]()`` types the messages. The ends
    can be passed to workers as ordinary task arguments on every backend and
    start method. Calling it returns the tuple of ends (there is no Pipe
    object).

    As with ``multiprocessing``, each process holds its own copy of an end
    it received, and ``close()`` closes this process's copy only: the other
    end sees EOF (or ``BrokenPipeError``) once every copy is closed, in
    every process, including processes that died.

    Args:
        duplex: Both ends send and receive (True), or ``(receiver, sender)`` (False).
        backend: ``"process"``, ``"thread"``, ``"serial"`` or ``"dask"``; None follows the
            configuration, like the Executor.

    Returns:
        The two ends.

    Examples:
        >>> import parallelkit
        >>> a, b = parallelkit.Pipe[str](backend="thread")
        >>> a.send("ping")
        >>> b.recv()
        'ping'
        >>> a.close()
        >>> list(b)
        []
    """

    @overload
    def __new__(  # type: ignore[misc]
        cls, duplex: Literal[True] = True, *, backend: str | None = None
    ) -> tuple[Connection[T], Connection[T]]: ...
    @overload
    def __new__(  # type: ignore[misc]
        cls, duplex: Literal[False], *, backend: str | None = None
    ) -> tuple[Receiver[T], Sender[T]]: ...
    @overload
    def __new__(  # type: ignore[misc]
        cls, duplex: bool, *, backend: str | None = None
    ) -> tuple[Receiver[T], Sender[T]]: ...
    def __new__(cls, duplex: bool = True, *, backend: str | None = None) -> Any:
        return make_pipe(resolve(backend), duplex)


def make_pipe(settings: Settings, duplex: bool) -> Any:
    """The ends of a Pipe for exactly these settings (an Executor's or Pool's own)."""
    impls: tuple[_ProcessEnd | _ThreadEnd | ClusterEnd, _ProcessEnd | _ThreadEnd | ClusterEnd]
    if on_cluster(settings):
        from ._cluster import cluster_pipe, connect

        impls = cluster_pipe(connect(settings.address), duplex)
    elif is_process(settings):
        impls = _process_pipe(duplex, settings.shared_threshold)
    else:
        impls = _thread_pipe(duplex, settings.check_pickle)
    name = settings.backend
    if duplex:
        return (_wrap(Connection, impls[0], name), _wrap(Connection, impls[1], name))
    return (_wrap(Receiver, impls[0], name), _wrap(Sender, impls[1], name))


@reopens
def _open_cluster_end(
    token: str,
    cls: type[_End],
    backend: str,
    state: tuple[tuple[str, int, str] | None, tuple[str, int, str] | None],
) -> _End:
    from ._cluster import open_end

    end = cls.__new__(cls)
    end._impl = open_end(state)
    end._backend = backend
    return end
