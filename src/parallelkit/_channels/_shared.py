"""What Value and Array share: placing the memory, the lock, closing and pickling.

::

    Value("i", 7) / Array("d", 5) ──backend flag──▶ "process": a block of a shared arena
                                                             (see ._memory) + a named RLock
                                                             (see ._sync)
                                                   otherwise: a private bytearray
                                                             + threading.RLock
                                                   "dask" (Value only): a private bytearray
                                                             + a cluster RLock, and the bytes
                                                             in a distributed.Variable, loaded
                                                             and stored under the lock
                                                             (see ._cluster.ClusterCell)
        the same ctypes object is laid over either memory, so coercion,
        overflow and every read are identical on every backend

An Array on dask is refused: a cluster has no shared memory, and an Array
sent whole through the scheduler at every element access would be a slow
fake (use ``client.scatter``, or a Queue of chunks).

    pickle ──▶ (arena name, offset, C type, lock, token) ──▶ _open_shared() in the
               receiving process: the object already there for that token, else
               one laid over the same block of the same arena

``lock=False`` makes an object without a lock and, as in ``multiprocessing``
(where it is a raw ctypes object), without ``get_lock`` and ``get_obj``:
looking them up raises AttributeError.
"""

# The channel classes build and rebuild one another's objects (unpickling, locks shared
# by Values): access to their underscore attributes stays inside this package.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import ctypes
from collections.abc import Callable
from types import MethodType, TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._errors import ClosedChannelError, NotALockError
from ._layout import is_struct, load_type, type_ref
from ._memory import Segment, allocate, attach
from ._select import family, is_process, not_on_cluster, on_cluster, resolve
from ._sharing import local_reduce, new_token, remember, reopens
from ._sync import Lock, RLock, rlock_for

__all__ = ("Holding", "LockedView", "SharedBase", "closed_error")

_V = TypeVar("_V", bound="LockedView")


class _WithLockOnly:
    """A method that exists only on objects made with a lock, as in ``multiprocessing``.

    There ``Value(..., lock=False)`` is a raw ctypes object, without
    ``get_lock`` or ``get_obj``; here looking either up on such an object
    raises AttributeError, so ``hasattr(v, "get_lock")`` is False there and here.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn
        self._name = fn.__name__
        self.__doc__ = fn.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, obj: SharedBase | None, owner: type | None = None) -> Any:
        if obj is None:
            return self._fn
        if obj._lock is None:
            raise AttributeError(
                f"this {obj._what} was created with lock=False, so it has no {self._name}() "
                f"(as in multiprocessing, where it is a raw ctypes object); create it with "
                "lock=True (the default) or with a shared lock",
                name=self._name,
                obj=obj,
            )
        return MethodType(self._fn, obj)


def _not_a_lock(lock: object, what: str) -> NotALockError:
    kind = type(lock)
    named = kind.__qualname__
    if kind.__module__ != "builtins":
        named = f"{kind.__module__}.{named}"
    return NotALockError(
        f"lock must be True, None, False, a parallelkit.Lock or a parallelkit.RLock; "
        f"got {lock!r} (a {named}). To share one lock between objects, make it with "
        "parallelkit.Lock() or parallelkit.RLock(): they travel to workers with the "
        f"{what}, on every backend"
    )


def closed_error(what: str) -> ClosedChannelError:
    """The error of a use of a closed Value or Array."""
    return ClosedChannelError(f"this {what} was closed; its memory is no longer reachable from it")


class LockedView:
    """What ``with shared.locked() as view`` hands out: the shared object, until the block ends.

    :class:`~parallelkit.LockedValue` and :class:`~parallelkit.LockedArray`
    build on it; once retired, every use raises :class:`ClosedChannelError`.
    """

    __slots__ = ("_obj", "_open")

    def __init__(self, obj: Any) -> None:
        self._obj = obj
        self._open = True

    def _retire(self) -> None:
        self._open = False

    def _target(self) -> Any:
        if not self._open:
            raise ClosedChannelError("a locked() view was used after its 'with' block ended")
        return self._obj


class Holding(Generic[_V]):
    """``with shared.locked() as view``: hold the lock, hand out a live view, then retire it."""

    __slots__ = ("_lock", "_view")

    def __init__(self, lock: Any, view: _V) -> None:
        self._lock = lock
        self._view = view

    def __enter__(self) -> _V:
        self._lock.__enter__()
        return self._view

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._view._retire()
        self._lock.__exit__(exc_type, exc, tb)


class SharedBase:
    """Memory, lock and pickling shared by Value and Array."""

    __slots__ = (
        "__weakref__",
        "_address",
        "_backend",
        "_buffer",
        "_ctype",
        "_length",
        "_lock",
        "_obj",
        "_offset",
        "_raw",
        "_segment",
        "_shared",
        "_struct",
        "_token",
    )
    _what = "Value"

    _obj: Any
    _ctype: Any
    _length: int | None
    _lock: Lock | RLock | None
    _raw: Any
    _segment: Segment | None
    _buffer: Any
    #: The scheduler's address when it lives on a cluster, else None.
    _address: str | None

    def _place(
        self, ctype: Any, length: int | None, backend: str | None, lock: bool | Lock | RLock | None
    ) -> None:
        settings = resolve(backend)
        shared = is_process(settings)
        cluster = on_cluster(settings)
        if cluster and length is not None:
            raise not_on_cluster(
                settings,
                "Array",
                "a cluster has no memory shared between machines; send the data as a task "
                "argument or result (client.scatter for large data shared by many tasks), or "
                "pass pieces through a parallelkit.Queue",
            )
        if cluster and lock is False:
            raise not_on_cluster(
                settings,
                "a Value with lock=False",
                "its contents live on the scheduler and are loaded under its lock; "
                "use lock=True (the default)",
            )
        self._backend = settings.backend
        self._address = None
        self._shared = shared
        self._ctype = ctype
        self._length = length
        self._struct = is_struct(ctype)
        if lock is True or lock is None:  # None means True, as in multiprocessing
            self._lock = rlock_for(settings)
        elif lock is False:
            self._lock = None
        elif isinstance(lock, (Lock, RLock)):
            if family(resolve(lock.backend)) != family(settings):
                raise TypeError(
                    f"a {self._what} for the {settings.backend!r} backend cannot use a lock "
                    f"made for the {lock.backend!r} backend"
                )
            self._lock = lock
        else:
            raise _not_a_lock(lock, self._what)
        whole = ctype if length is None else ctype * length
        size = ctypes.sizeof(whole)
        if cluster:
            self._segment = None
            self._buffer = bytearray(max(size, 1))
            self._offset = 0
            self._token = new_token()
            self._obj = whole.from_buffer(self._buffer, self._offset)
            self._raw = self._cell(settings.address)
            remember(self._token, self)
            return
        self._raw = _fast_lock(self._lock)
        if shared:
            segment, offset = allocate(size)
            self._segment = segment
            self._buffer = segment.buffer
            self._offset = offset
            self._token = f"{segment.name}@{offset}"
        else:
            self._segment = None
            self._buffer = bytearray(max(size, 1))
            self._offset = 0
            self._token = new_token()
        self._obj = whole.from_buffer(self._buffer, self._offset)
        remember(self._token, self)

    def _cell(self, address: str | None) -> Any:
        """The lock of an object on a cluster, which loads and stores its bytes."""
        from ._cluster import ClusterCell, connect

        assert self._lock is not None
        link = connect(address)
        self._address = link.address
        return ClusterCell(link, self._token, self._lock._impl, self._obj)

    def _publish(self) -> None:
        """Make the contents just initialized here the shared ones (on a cluster)."""
        if self._address is not None:
            self._raw.publish()

    def _live(self) -> Any:
        obj = self._obj
        if obj is None:
            raise closed_error(self._what)
        return obj

    def _need_lock(self, operation: str) -> Any:
        raw = self._raw
        if raw is None:
            raise TypeError(
                f"{operation} needs the lock, but this {self._what} was created with "
                "lock=False; create it with lock=True (the default) or with a shared lock"
            )
        return raw

    @property
    def backend(self) -> str:
        """The backend this object was made for (``"process"``, ``"thread"``, ...)."""
        return self._backend

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._obj is None

    if TYPE_CHECKING:

        def get_lock(self) -> Lock | RLock:
            """Return the lock that guards it (``multiprocessing``'s ``get_lock()``)."""
            ...

        def get_obj(self) -> Any:
            """Return the raw ctypes object over the memory (``get_obj()``), without locking."""
            ...

    else:

        def _get_lock(self) -> Lock | RLock:
            """Return the lock that guards it (``multiprocessing``'s ``get_lock()``).

            An object made with ``lock=False`` has no ``get_lock`` attribute,
            as in ``multiprocessing``.

            Returns:
                The :class:`Lock` or :class:`RLock`.
            """
            return self._lock

        def _get_obj(self) -> Any:
            """Return the raw ctypes object over the memory (``get_obj()``), without locking.

            An object made with ``lock=False`` has no ``get_obj`` attribute,
            as in ``multiprocessing``.

            Returns:
                The ctypes object; it keeps the memory mapped while referenced.

            Raises:
                ClosedChannelError: It was closed.
            """
            return self._live()

        get_lock = _WithLockOnly(_get_lock)
        get_obj = _WithLockOnly(_get_obj)

    def close(self) -> None:
        """Let go of the memory from this object; idempotent.

        Later use of this object raises :class:`~parallelkit.ClosedChannelError`.
        Objects already handed out (numpy views, :meth:`get_obj`, Structure elements) keep the
        memory mapped until they are gone, so nothing reads freed memory. In
        the creating process, the shared name goes once every Value/Array of
        its arena is closed or collected.
        """
        self._obj = None
        self._segment = None
        self._buffer = None

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
        if self._address is not None:
            if self._obj is None:
                raise closed_error(self._what)
            return (
                _open_cluster_shared,
                (
                    self._token,
                    type(self),
                    self._backend,
                    type_ref(self._ctype),
                    self._address,
                    self._lock,
                ),
            )
        if not self._shared:
            return local_reduce(self, self._token, self._what)
        if self._segment is None:
            raise closed_error(self._what)
        return (
            _open_shared,
            (
                self._token,
                type(self),
                self._backend,
                type_ref(self._ctype),
                self._length,
                self._segment.name,
                self._offset,
                self._lock,
            ),
        )


def _fast_lock(lock: Lock | RLock | None) -> Any:
    """The object under a parallelkit lock that supports ``with`` at C speed."""
    if lock is None:
        return None
    if lock._shared:
        return lock._raw()
    adapter: Any = lock._impl
    return adapter.lock


@reopens
def _open_shared(
    token: str,
    cls: type[SharedBase],
    backend: str,
    ref: object,
    length: int | None,
    segment_name: str,
    offset: int,
    lock: Lock | RLock | None,
) -> SharedBase:
    obj = cls.__new__(cls)
    ctype = load_type(ref)
    segment = attach(segment_name, cls._what)
    obj._address = None
    obj._backend = backend
    obj._shared = True
    obj._ctype = ctype
    obj._length = length
    obj._struct = is_struct(ctype)
    obj._lock = lock
    obj._raw = _fast_lock(lock)
    obj._segment = segment
    obj._buffer = segment.buffer
    obj._offset = offset
    obj._token = token
    whole = ctype if length is None else ctype * length
    obj._obj = whole.from_buffer(segment.buffer, offset)
    return obj


@reopens
def _open_cluster_shared(
    token: str, cls: type[SharedBase], backend: str, ref: object, address: str, lock: Lock | RLock
) -> SharedBase:
    obj = cls.__new__(cls)
    ctype = load_type(ref)
    obj._backend = backend
    obj._shared = False
    obj._ctype = ctype
    obj._length = None
    obj._struct = is_struct(ctype)
    obj._lock = lock
    obj._segment = None
    obj._buffer = bytearray(max(ctypes.sizeof(ctype), 1))
    obj._offset = 0
    obj._token = token
    obj._obj = ctype.from_buffer(obj._buffer, 0)
    obj._raw = obj._cell(address)
    return obj
