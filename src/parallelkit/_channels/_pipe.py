"""Pipe: two connected ends, typed, whose close() the other end always sees.

Process backend::

    end A ── send: [hdr|pickle] ──▶ FIFO a→b ──▶ recv ── end B
    end A ◀── recv ─────────────── FIFO b→a ◀── send: ── end B      (duplex only)
    closed flags: one named semaphore per end; close() sets the flag and
    writes an EOF frame, so the peer's recv() raises EOFError once it has
    read what came before, and the peer's send() raises BrokenPipeError.

Thread (and serial) backend: one deque and condition per direction, same
contract. In both, ``close()`` is global and idempotent: closing an end in any
thread or process closes it for everyone (there is no per-process copy to
close, unlike a ``multiprocessing`` Connection's file descriptor).
"""

# The channel classes build and rebuild one another's objects (unpickling, locks shared
# by Values): access to their underscore attributes stays inside this package.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing import BufferTooShort
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, final, overload

from .._config import Settings
from .._errors import ClosedChannelError
from .._serialize import dumps, loads, roundtrip
from ._select import is_process, resolve
from ._sharing import (
    SEM_VALUE_MAX,
    SEMAPHORE,
    RawSemLock,
    create_fifo,
    create_semlock,
    gone,
    local_reduce,
    new_token,
    open_semlock,
    own,
    recall,
    remember,
)
from ._stream import CAPACITY, DATA, EOF, HEADER, PIPE_BUF, Fifo, frame
from ._types import T, T_co, T_contra

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ("Connection", "Pipe", "Receiver", "Sender", "make_pipe")

_EOF_FRAME: Final = HEADER.pack(EOF << 56)


def _closed_here() -> ClosedChannelError:
    return ClosedChannelError("this end of the Pipe was closed")


def _peer_closed() -> BrokenPipeError:
    return BrokenPipeError("the other end of the Pipe was closed")


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


# -- thread implementation -----------------------------------------------------------------


class _Direction:
    """Messages from one end to the other: ("o", obj) or ("b", bytes)."""

    __slots__ = ("cond", "items", "reader_closed", "writer_closed")

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.items: deque[tuple[str, Any]] = deque()
        self.reader_closed = False
        self.writer_closed = False


class _ThreadEnd:
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
            out.cond.notify()

    def _get(self, timeout: float | None = None) -> tuple[str, Any]:
        inbound = self._inbound()
        if self._eof:
            raise EOFError
        with inbound.cond:
            if not inbound.cond.wait_for(
                lambda: inbound.items or inbound.writer_closed, timeout
            ):  # pragma: no cover - only used without a timeout
                raise TimeoutError
            if not inbound.items:
                self._eof = True
                raise EOFError
            return inbound.items.popleft()

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

    def poll(self, timeout: float | None) -> bool:
        inbound = self._inbound()
        if self._eof:
            return True
        with inbound.cond:
            return bool(
                inbound.cond.wait_for(lambda: inbound.items or inbound.writer_closed, timeout)
            )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for direction, attr in ((self._out, "writer_closed"), (self._in, "reader_closed")):
            if direction is not None:
                with direction.cond:
                    setattr(direction, attr, True)
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


# -- process implementation ----------------------------------------------------------------


class _PipeNames:
    """Owns the FIFOs and flags of one pipe in the creating process."""

    __slots__ = ("__weakref__",)


class _ProcessEnd:
    __slots__ = (
        "__weakref__",
        "_anchor",
        "_closed",
        "_eof",
        "_in",
        "_mine",
        "_out",
        "_peer",
        "_state",
        "token",
    )

    def __init__(
        self,
        state: tuple[Any, ...],
        mine: RawSemLock,
        peer: RawSemLock,
        anchor: _PipeNames | None,
        size: int | None,
    ) -> None:
        token, in_path, out_path, _, _ = state
        self.token = token
        self._state = state
        self._mine = mine
        self._peer = peer
        self._anchor = anchor
        self._closed = False
        self._eof = False
        try:
            self._in = Fifo(in_path, size=size, write=False) if in_path else None
            self._out = Fifo(out_path, size=size, read=False) if out_path else None
        except FileNotFoundError as exc:
            raise gone("Pipe", exc) from None

    @classmethod
    def open(cls, state: tuple[Any, ...]) -> _ProcessEnd:
        _, _, _, mine, peer = state
        return cls(
            state,
            open_semlock(SEMAPHORE, SEM_VALUE_MAX, mine, "Pipe"),
            open_semlock(SEMAPHORE, SEM_VALUE_MAX, peer, "Pipe"),
            None,
            None,
        )

    def _outbound(self) -> Fifo:
        if self._closed or not self._mine._is_zero():
            raise _closed_here()
        if self._out is None:
            raise OSError("connection is read-only")
        if not self._peer._is_zero():
            raise _peer_closed()
        return self._out

    def _inbound(self) -> Fifo:
        if self._closed or not self._mine._is_zero():
            raise _closed_here()
        if self._in is None:
            raise OSError("connection is write-only")
        return self._in

    def _peer_gone(self) -> BaseException | None:
        return None if self._peer._is_zero() else _peer_closed()

    def send(self, obj: Any) -> None:
        self.send_bytes(dumps(obj))

    def send_bytes(self, data: bytes | memoryview) -> None:
        out = self._outbound()
        parts = frame(DATA, data)
        if len(parts) == 1 and len(parts[0]) <= PIPE_BUF and out.write_nowait(bytes(parts[0])):
            return
        out.write_watching(parts, self._peer_gone)

    def _header(self) -> int:
        """Read up to the next data header; return the payload length."""
        fifo = self._inbound()
        if self._eof:
            raise EOFError
        while True:
            if not self._peer._is_zero() and not fifo.wait_readable(0):
                self._eof = True
                raise EOFError
            kind, length = fifo.read_header()
            if kind == DATA:
                return length
            if kind == EOF:
                self._eof = True
                raise EOFError
            fifo.discard(length)

    def recv(self) -> Any:
        length = self._header()
        return loads(self._inbound().read_exact(length))

    def recv_bytes(self, maxlength: int | None) -> bytes:
        length = self._header()
        fifo = self._inbound()
        if maxlength is not None and length > maxlength:
            fifo.discard(length)
            raise OSError("bad message length")
        return bytes(fifo.read_exact(length))

    def recv_bytes_into(self, buf: memoryview, offset: int) -> int:
        length = self._header()
        fifo = self._inbound()
        if length > len(buf) - offset:
            raise BufferTooShort(bytes(fifo.read_exact(length)))
        fifo.read_into(buf[offset : offset + length])
        return length

    def poll(self, timeout: float | None) -> bool:
        fifo = self._inbound()
        if self._eof or fifo.wait_readable(0) or not self._peer._is_zero():
            return True
        if timeout is not None and timeout <= 0:
            return False
        return fifo.wait_readable(timeout)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._mine._is_zero():
            self._mine.release()
        if self._out is not None:
            self._out.write_nowait(_EOF_FRAME)
            self._out.close()
        if self._in is not None:
            self._in.close()

    @property
    def closed(self) -> bool:
        return self._closed or not self._mine._is_zero()

    def state(self) -> tuple[Any, ...]:
        if self.closed:
            raise ClosedChannelError("a closed end of a Pipe cannot be sent")
        return self._state


def _process_pipe(duplex: bool) -> tuple[_ProcessEnd, _ProcessEnd]:
    token = new_token()
    anchor = _PipeNames()
    forward = create_fifo(token, ".p")
    own(anchor, fifos=(forward,))
    backward = None
    if duplex:
        backward = create_fifo(token, ".r")
        own(anchor, fifos=(backward,))
    flag_a, name_a = create_semlock(SEMAPHORE, 0, SEM_VALUE_MAX)
    own(anchor, semaphores=(name_a,))
    flag_b, name_b = create_semlock(SEMAPHORE, 0, SEM_VALUE_MAX)
    own(anchor, semaphores=(name_b,))
    state_a: tuple[str, str | None, str | None, str, str]
    state_b: tuple[str, str | None, str | None, str, str]
    if duplex:
        state_a = (token + "a", backward, forward, name_a, name_b)
        state_b = (token + "b", forward, backward, name_b, name_a)
    else:
        state_a = (token + "a", forward, None, name_a, name_b)
        state_b = (token + "b", None, forward, name_b, name_a)
    return (
        _ProcessEnd(state_a, flag_a, flag_b, anchor, CAPACITY),
        _ProcessEnd(state_b, flag_b, flag_a, anchor, CAPACITY),
    )


# -- the public face -----------------------------------------------------------------------


class _End:
    """What every end has: close(), the backend, pickling."""

    __slots__ = ("__weakref__", "_backend", "_impl")

    _impl: _ProcessEnd | _ThreadEnd
    _backend: str

    @property
    def backend(self) -> str:
        """The backend this end was made for."""
        return self._backend

    @property
    def closed(self) -> bool:
        """Whether this end was closed (by anyone)."""
        return self._impl.closed

    def close(self) -> None:
        """Close this end, for everyone; the other end sees it. Idempotent.

        The peer's ``recv()`` raises ``EOFError`` once it has read what was
        sent before, and its ``send()`` raises ``BrokenPipeError``. Using
        this end afterwards raises :class:`~parallelkit.ClosedChannelError`.
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
        return (_open_end, (type(self), self._backend, impl.state()))

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<parallelkit.{type(self).__name__} backend={self._backend!r} {state}>"


def _wrap(cls: type[_End], impl: _ProcessEnd | _ThreadEnd, backend: str) -> Any:
    end = cls.__new__(cls)
    end._impl = impl
    end._backend = backend
    remember(impl.token, end)
    return end


def _open_end(cls: type[_End], backend: str, state: tuple[Any, ...]) -> _End:
    known = recall(state[0])
    if known is not None:
        found: _End = known
        return found
    wrapped: _End = _wrap(cls, _ProcessEnd.open(state), backend)
    return wrapped


class Receiver(_End, Generic[T_co]):
    """The receiving end of a one-way :class:`Pipe` (and half of a :class:`Connection`).

    Covariant: a ``Receiver[bool]`` is a ``Receiver[int]``. ``for x in end``
    receives until the other end is closed.
    """

    __slots__ = ()

    def recv(self) -> T_co:
        """Receive the next object (blocking).

        Returns:
            The object.

        Raises:
            EOFError: The other end was closed and everything it sent was read.
            ClosedChannelError: This end was closed.
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
            EOFError: The other end was closed and everything was read.
            ClosedChannelError: This end was closed.
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
            EOFError: The other end was closed and everything was read.
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
            Whether there is something to read (or the other end is closed).
        """
        return self._impl.poll(timeout)

    def __iter__(self) -> Iterator[T_co]:
        """Receive until the other end is closed."""
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
            BrokenPipeError: The other end was closed.
            ClosedChannelError: This end was closed.
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
            BrokenPipeError: The other end was closed.
            ClosedChannelError: This end was closed.
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

    Args:
        duplex: Both ends send and receive (True), or ``(receiver, sender)`` (False).
        backend: ``"process"``, ``"thread"`` or ``"serial"``; None follows the
            configuration, like the Executor.

    Returns:
        The two ends.

    Example:
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
    impls: tuple[_ProcessEnd | _ThreadEnd, _ProcessEnd | _ThreadEnd]
    if is_process(settings):
        impls = _process_pipe(duplex)
    else:
        impls = _thread_pipe(duplex, settings.check_pickle)
    name = settings.backend
    if duplex:
        return (_wrap(Connection, impls[0], name), _wrap(Connection, impls[1], name))
    return (_wrap(Receiver, impls[0], name), _wrap(Sender, impls[1], name))
