"""Value and Array: typed shared memory, assignable as in multiprocessing, with atomic updates.

::

    Value("i", 7) ──backend flag──▶ "process": a block of a shared arena (see ._memory)
                                               + a named RLock (see ._sync)
                                    otherwise: a private bytearray + threading.RLock
                  the same ctypes object is laid over either memory, so coercion,
                  overflow and every read are identical on both backends

    v.value, v.value = x     one read or one write, each under the lock (multiprocessing's)
    v.value += 1             a read, then a write: another worker's update in between is
                             lost, as in multiprocessing (the lock is not held in the gap)
    atomic:  v.add(n)  v.update(fn)  v.compare_and_set(old, new)  v.set(x)
             with v.locked() as cell: ...    (or ``with v.get_lock():``, an RLock)

An Array works the same way element-wise (``arr[i] = x``, ``arr[i:j] = xs``
and a char array's ``.value``/``.raw`` take the lock, like
``multiprocessing.Array``), reads whole snapshots under one lock
(``list(arr)``, ``arr[:]``), copies in bulk through the buffer protocol
(:meth:`Array.copy_from`, :meth:`Array.copy_into`) and hands out a zero-copy
numpy view (:meth:`Array.numpy`). An element of a Structure array is a live
ctypes object over the shared memory (``arr[0].x = 1`` writes through, as in
``multiprocessing``); like a numpy view or :meth:`get_obj`, it keeps the
memory mapped for as long as it exists, whatever happens to the Array.

``lock=False`` makes an object without a lock and, as in ``multiprocessing``
(where it is a raw ctypes object), without ``get_lock`` and ``get_obj``:
looking them up raises AttributeError.
"""

# The channel classes build and rebuild one another's objects (unpickling, locks shared
# by Values): access to their underscore attributes stays inside this package.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import ctypes
import importlib
from collections.abc import Callable, Iterable, Iterator
from types import MethodType, TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Literal,
    Protocol,
    SupportsIndex,
    TypeVar,
    final,
    overload,
)

from .._errors import ClosedChannelError, NotALockError
from ._layout import (
    class_of,
    describe_format,
    element_type,
    frozen_copy,
    is_struct,
    load_type,
    type_ref,
    typecode_of,
)
from ._memory import Segment, allocate, attach
from ._select import is_process, resolve
from ._sharing import local_reduce, new_token, recall, remember
from ._sync import Lock, RLock, rlock_for
from ._types import FloatCode, IntCode, T, T_co

if TYPE_CHECKING:
    from ctypes import _SimpleCData  # pyright: ignore[reportPrivateUsage]

    from numpy.typing import NDArray
    from typing_extensions import Buffer

__all__ = ("Array", "LockedArray", "LockedValue", "Value")

_S = TypeVar("_S", bound="ctypes.Structure | ctypes.Union")
_V = TypeVar("_V")


class _Element(Protocol[T_co]):
    """Matches an Array by its element type (covariantly), for ``numpy()``'s self type."""

    def _element(self) -> T_co: ...


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

    def __get__(self, obj: _SharedBase | None, owner: type | None = None) -> Any:
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


def _closed(what: str) -> ClosedChannelError:
    return ClosedChannelError(f"this {what} was closed; its memory is no longer reachable from it")


class _Holding(Generic[_V]):
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
        view: Any = self._view
        view._retire()
        self._lock.__exit__(exc_type, exc, tb)


class _SharedBase:
    """Memory, lock and pickling shared by Value and Array."""

    __slots__ = (
        "__weakref__",
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

    def _place(
        self, ctype: Any, length: int | None, backend: str | None, lock: bool | Lock | RLock | None
    ) -> None:
        settings = resolve(backend)
        shared = is_process(settings)
        self._backend = settings.backend
        self._shared = shared
        self._ctype = ctype
        self._length = length
        self._struct = is_struct(ctype)
        if lock is True or lock is None:  # None means True, as in multiprocessing
            self._lock = rlock_for(settings)
        elif lock is False:
            self._lock = None
        elif isinstance(lock, (Lock, RLock)):
            if lock._shared != shared:
                raise TypeError(
                    f"a {self._what} for the {settings.backend!r} backend cannot use a lock "
                    f"made for the {lock.backend!r} backend"
                )
            self._lock = lock
        else:
            raise _not_a_lock(lock, self._what)
        self._raw = _fast_lock(self._lock)
        whole = ctype if length is None else ctype * length
        size = ctypes.sizeof(whole)
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

    def _live(self) -> Any:
        obj = self._obj
        if obj is None:
            raise _closed(self._what)
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
        if not self._shared:
            return local_reduce(self, self._token, self._what)
        if self._segment is None:
            raise _closed(self._what)
        return (
            _open_shared,
            (
                type(self),
                self._backend,
                type_ref(self._ctype),
                self._length,
                self._segment.name,
                self._offset,
                self._lock,
                self._token,
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


def _open_shared(
    cls: type[_SharedBase],
    backend: str,
    ref: object,
    length: int | None,
    segment_name: str,
    offset: int,
    lock: Lock | RLock | None,
    token: str,
) -> _SharedBase:
    known = recall(token)
    if known is not None:
        found: _SharedBase = known
        return found
    obj = cls.__new__(cls)
    ctype = load_type(ref)
    segment = attach(segment_name, cls._what)
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
    remember(token, obj)
    return obj


# -- Value ---------------------------------------------------------------------------------


@final
class LockedValue(Generic[T]):
    """The live contents of a :class:`Value` while its lock is held (see :meth:`Value.locked`).

    ``cell.value`` reads and writes the shared memory directly; for a
    Structure it is the shared Structure itself, so ``cell.value.x = 1``
    works. The view refuses use after the ``with`` block.
    """

    __slots__ = ("_obj", "_open", "_struct")

    def __init__(self, obj: Any, struct: bool) -> None:
        self._obj = obj
        self._struct = struct
        self._open = True

    def _retire(self) -> None:
        self._open = False

    def _target(self) -> Any:
        if not self._open:
            raise ClosedChannelError("a locked() view was used after its 'with' block ended")
        return self._obj

    @property
    def value(self) -> T:
        """The shared value (the shared Structure itself, for a Structure)."""
        obj = self._target()
        return obj if self._struct else obj.value  # type: ignore[no-any-return]

    @value.setter
    def value(self, new: T) -> None:
        obj = self._target()
        if self._struct:
            _store_struct(obj, new)
        else:
            obj.value = new


def _store_struct(obj: Any, new: object) -> None:
    """Copy a Structure (or a tuple of its fields) over the shared one."""
    tp = class_of(obj)
    base: Any = next(b for b in tp.__mro__ if "_fields_" in b.__dict__)
    source: Any = new
    if not isinstance(source, base):
        if not isinstance(source, tuple):
            raise TypeError(f"expected a {base.__name__} or a tuple of its fields, got {new!r}")
        source = base(*source)
    ctypes.memmove(ctypes.addressof(obj), ctypes.addressof(source), ctypes.sizeof(obj))


@final
class Value(_SharedBase, Generic[T]):
    """A typed value shared between the workers of either backend.

    Made like ``multiprocessing.Value``: from a typecode (``"i"``, ``"d"``,
    ``"c"``...), a Python type (``int`` is a 64-bit integer, ``float`` a double,
    ``bool``), a ctypes type or a ``ctypes.Structure``, with the same coercion
    (``Value("i", 1.5)`` is a ``TypeError``) and the same ``lock=`` argument.
    ``v.value`` reads and ``v.value = x`` writes, each under the lock, as
    there. ``v.value += 1`` is a read and then a write, so it loses updates
    made by other workers in between, as there too: to count, use
    :meth:`add`; to replace atomically, :meth:`update` or
    :meth:`compare_and_set`; for several steps, :meth:`locked` (or ``with
    v.get_lock():``, an :class:`RLock` by default).

    It can be passed to workers as an ordinary task argument, on every
    backend and start method.

    Args:
        typecode_or_type: What it holds.
        *args: The initial value (a Structure takes its fields); zero if omitted.
        lock: True or None (the default is True) creates an :class:`RLock`; a
            :class:`Lock` or :class:`RLock` of the same backend is shared;
            False creates no lock: then reads and writes of ``.value`` and
            :meth:`set` are unguarded, :meth:`add`, :meth:`update`,
            :meth:`compare_and_set` and :meth:`locked` raise ``TypeError``, and
            the object has no ``get_lock`` or ``get_obj`` attribute, as in
            ``multiprocessing``.
        backend: ``"process"``, ``"thread"`` or ``"serial"``; None follows the
            configuration, like the Executor.

    Raises:
        TypeError: An unknown type, a pointer type, a value of the wrong
            type, or a lock of another backend.
        NotALockError: ``lock`` is none of the above (a ``TypeError`` that
            is also an ``AttributeError``, what ``multiprocessing`` raises).

    Example:
        >>> import parallelkit
        >>> hits = parallelkit.Value("i", 0, backend="thread")
        >>> hits.add(5)
        5
        >>> hits.update(lambda n: n * 10)
        50
        >>> hits.value = hits.value + 1  # one read, one write: not atomic
        >>> hits.value
        51
    """

    __slots__ = ()
    _what = "Value"

    @overload
    def __init__(
        self: Value[bool],
        typecode_or_type: type[bool] | Literal["?"],
        value: bool = ...,
        /,
        *,
        lock: bool | Lock | RLock | None = True,
        backend: str | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Value[int],
        typecode_or_type: type[int] | IntCode,
        value: int = ...,
        /,
        *,
        lock: bool | Lock | RLock | None = True,
        backend: str | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Value[float],
        typecode_or_type: type[float] | FloatCode,
        value: float = ...,
        /,
        *,
        lock: bool | Lock | RLock | None = True,
        backend: str | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Value[bytes],
        typecode_or_type: type[bytes] | Literal["c"],
        value: bytes = ...,
        /,
        *,
        lock: bool | Lock | RLock | None = True,
        backend: str | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Value[str],
        typecode_or_type: type[str] | Literal["u"],
        value: str = ...,
        /,
        *,
        lock: bool | Lock | RLock | None = True,
        backend: str | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Value[_V],
        typecode_or_type: type[_SimpleCData[_V]],
        value: _V = ...,
        /,
        *,
        lock: bool | Lock | RLock | None = True,
        backend: str | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Value[_S],
        typecode_or_type: type[_S],
        /,
        *args: Any,
        lock: bool | Lock | RLock | None = True,
        backend: str | None = None,
    ) -> None: ...
    def __init__(
        self,
        typecode_or_type: object,
        /,
        *args: Any,
        lock: bool | Lock | RLock | None = True,
        backend: str | None = None,
    ) -> None:
        ctype = element_type(typecode_or_type, "Value")
        self._place(ctype, None, backend, lock)
        if args:
            ctype.__init__(self._obj, *args)

    if TYPE_CHECKING:

        def _element(self) -> T: ...

    @property
    def value(self) -> T:
        """The value, read and written under the lock, as ``multiprocessing.Value.value``.

        Each read and each write takes the lock once, so ``v.value += 1`` is
        a read and then a write, and another worker's update in between is
        lost, as in ``multiprocessing``: count with :meth:`add` (or
        :meth:`update`, or inside :meth:`locked`) instead. A Structure reads
        as a copy that refuses attribute assignment (assign a whole Structure,
        or a tuple of its fields, instead).
        """
        obj = self._live()
        raw = self._raw
        if raw is None:
            result: T = frozen_copy(obj) if self._struct else obj.value
            return result
        with raw:
            result = frozen_copy(obj) if self._struct else obj.value
            return result

    @value.setter
    def value(self, new: T) -> None:
        self.set(new)

    def set(self, value: T) -> None:
        """Replace the value.

        Args:
            value: The new value (a Structure or a tuple of its fields, for a Structure).

        Raises:
            ClosedChannelError: The Value was closed.
            TypeError: The value does not fit the type.
        """
        obj = self._live()
        raw = self._raw
        if raw is None:
            self._store(obj, value)
            return
        with raw:
            self._store(obj, value)

    def _store(self, obj: Any, value: object) -> None:
        if self._struct:
            _store_struct(obj, value)
        else:
            obj.value = value

    @overload
    def add(self: Value[int], n: int) -> int: ...
    @overload
    def add(self: Value[float], n: float) -> float: ...
    def add(self, n: Any) -> Any:
        """Add ``n`` atomically; return the new value.

        Integer types wrap around at their size, as in C and ``multiprocessing``.

        Args:
            n: The amount (negative to subtract).

        Returns:
            The value after the addition.

        Raises:
            TypeError: The Value has no lock (``lock=False``) or is not numeric.
            ClosedChannelError: The Value was closed.
        """
        obj = self._live()
        with self._need_lock("add()"):
            obj.value = obj.value + n
            return obj.value

    def update(self, fn: Callable[[T], T]) -> T:
        """Replace the value by ``fn(value)`` atomically; return the new value.

        ``fn`` runs with the lock held: keep it short and do not touch other
        shared objects from it. For a Structure it receives a mutable copy and
        returns the new Structure (it may return the copy it changed).

        Args:
            fn: Computes the new value from the old one.

        Returns:
            The value now stored.

        Raises:
            TypeError: The Value has no lock (``lock=False``).
            ClosedChannelError: The Value was closed.
        """
        obj = self._live()
        with self._need_lock("update()"):
            if self._struct:
                tp = class_of(obj)
                new = fn(tp.from_buffer_copy(obj))
                _store_struct(obj, new)
                result: Any = frozen_copy(obj)
                return result  # type: ignore[no-any-return]
            obj.value = fn(obj.value)
            return obj.value  # type: ignore[no-any-return]

    def compare_and_set(self, expected: T, new: T) -> bool:
        """Store ``new`` if the value equals ``expected``, atomically.

        Args:
            expected: The value it must have (Structures compare byte for byte).
            new: The value to store.

        Returns:
            Whether ``new`` was stored.

        Raises:
            TypeError: The Value has no lock (``lock=False``).
            ClosedChannelError: The Value was closed.
        """
        obj = self._live()
        with self._need_lock("compare_and_set()"):
            if self._struct:
                if bytes(memoryview(obj).cast("B")) != _struct_bytes(self._ctype, expected):
                    return False
            elif obj.value != expected:
                return False
            self._store(obj, new)
            return True

    def locked(self) -> _Holding[LockedValue[T]]:
        """Hold the lock and get the live value: ``with v.locked() as cell: ...``.

        Several reads and writes in the block form one atomic step. The cell is
        valid only inside the block.

        Returns:
            A context manager yielding a :class:`LockedValue`.

        Raises:
            TypeError: The Value has no lock (``lock=False``).
            ClosedChannelError: The Value was closed.

        Example:
            >>> import parallelkit
            >>> total = parallelkit.Value("d", 1.5, backend="thread")
            >>> with total.locked() as cell:
            ...     cell.value = cell.value * 2 + 1
            >>> total.value
            4.0
        """
        obj = self._live()
        return _Holding(self._need_lock("locked()"), LockedValue[T](obj, self._struct))

    def __repr__(self) -> str:
        shown = "<closed>" if self._obj is None else repr(self._peek())
        return f"<parallelkit.Value {typecode_of(self._ctype)!r} {shown} backend={self._backend!r}>"

    def _peek(self) -> object:
        obj = self._obj
        return bytes(memoryview(obj).cast("B")) if self._struct else obj.value


def _struct_bytes(ctype: Any, value: object) -> bytes:
    if isinstance(value, tuple):
        value = ctype(*value)
    return bytes(memoryview(value).cast("B"))  # type: ignore[arg-type]


# -- Array ---------------------------------------------------------------------------------


@final
class LockedArray(Generic[T]):
    """The live contents of an :class:`Array` while its lock is held (see :meth:`Array.locked`).

    Indexing returns live elements (a Structure element can be changed in
    place: ``items[0].x = 1``); assignment writes through without locking
    again. The view refuses use after the ``with`` block.
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

    def __len__(self) -> int:
        return len(self._target())

    @overload
    def __getitem__(self, index: SupportsIndex) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: SupportsIndex | slice) -> Any:
        return self._target()[index]

    @overload
    def __setitem__(self, index: SupportsIndex, value: T) -> None: ...
    @overload
    def __setitem__(self, index: slice, value: Iterable[T]) -> None: ...
    def __setitem__(self, index: SupportsIndex | slice, value: Any) -> None:
        obj = self._target()
        if isinstance(index, slice) and not isinstance(value, (bytes, str)):
            value = list(value)
        obj[index] = value

    def __iter__(self) -> Iterator[T]:
        return iter(self._target())

    @property
    def value(self: LockedArray[bytes]) -> bytes:
        """A char array's contents up to the first NUL byte (readable and writable)."""
        result: bytes = self._target().value
        return result

    @value.setter
    def value(self: LockedArray[bytes], new: bytes) -> None:
        self._target().value = new

    @property
    def raw(self: LockedArray[bytes]) -> bytes:
        """A char array's whole contents (readable and writable)."""
        result: bytes = self._target().raw
        return result

    @raw.setter
    def raw(self: LockedArray[bytes], new: bytes) -> None:
        self._target().raw = new


@final
class Array(_SharedBase, Generic[T]):
    """A typed fixed-size array shared between the workers of either backend.

    Made like ``multiprocessing.Array``: an element type (typecode, Python
    type, ctypes type or ``Structure``) and a size or an initializer, with
    ``lock=`` as there. ``arr[i]``, ``arr[i] = x``, slices and a char
    array's ``.value`` and ``.raw`` (read or assigned) take the lock each
    time; ``list(arr)`` and ``arr[:]`` read a consistent snapshot under one
    lock; :meth:`locked` groups several steps; :meth:`copy_from`,
    :meth:`copy_into` and :meth:`numpy` move data without a Python loop.
    ``arr[i] += 1`` is a read and then a write, not atomic (as there).

    A Structure element (``arr[i]``, or one met while iterating) is a live
    ctypes object over the shared memory, as in ``multiprocessing``:
    ``arr[0].x = 1`` and ``for a in arr: a.x **= 2`` write through, without
    the lock (hold it with :meth:`locked` to make such steps atomic). An
    element keeps the shared memory mapped for as long as it exists, like a
    :meth:`numpy` view, so it never touches freed memory, even after
    :meth:`close`.

    Args:
        typecode_or_type: The element type.
        size_or_initializer: The length (zero-filled), or the initial
            elements (bytes for ``"c"``, str for ``"u"``, tuples or Structures
            for a Structure).
        lock: As for :class:`Value`.
        backend: ``"process"``, ``"thread"`` or ``"serial"``; None follows the configuration.

    Raises:
        TypeError: An unknown type, a pointer type, an element of the wrong
            type, or a lock of another backend.
        NotALockError: ``lock`` is not a lock (see :class:`Value`).
        ValueError: A negative size.

    Example:
        >>> import parallelkit
        >>> arr = parallelkit.Array("i", range(5), backend="thread")
        >>> arr[0] = 10
        >>> arr[:]
        [10, 1, 2, 3, 4]
        >>> name = parallelkit.Array("c", b"hello", backend="thread")
        >>> name.value = name.value.upper()
        >>> name.value
        b'HELLO'
    """

    __slots__ = ()
    _what = "Array"

    @overload
    def __init__(
        self: Array[bool],
        typecode_or_type: type[bool] | Literal["?"],
        size_or_initializer: int | Iterable[bool],
        /,
        *,
        lock: bool | Lock | RLock | None = True,
        backend: str | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Array[int],
        typecode_or_type: type[int] | IntCode,
        size_or_initializer: int | Iterable[int],
        /,
        *,
        lock: bool | Lock | RLock | None = True,
        backend: str | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Array[float],
        typecode_or_type: type[float] | FloatCode,
        size_or_initializer: int | Iterable[float],
        /,
        *,
        lock: bool | Lock | RLock | None = True,
        backend: str | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Array[bytes],
        typecode_or_type: type[bytes] | Literal["c"],
        size_or_initializer: int | bytes,
        /,
        *,
        lock: bool | Lock | RLock | None = True,
        backend: str | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Array[str],
        typecode_or_type: type[str] | Literal["u"],
        size_or_initializer: int | str,
        /,
        *,
        lock: bool | Lock | RLock | None = True,
        backend: str | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Array[_V],
        typecode_or_type: type[_SimpleCData[_V]],
        size_or_initializer: int | Iterable[_V],
        /,
        *,
        lock: bool | Lock | RLock | None = True,
        backend: str | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Array[_S],
        typecode_or_type: type[_S],
        size_or_initializer: int | Iterable[_S | tuple[Any, ...]],
        /,
        *,
        lock: bool | Lock | RLock | None = True,
        backend: str | None = None,
    ) -> None: ...
    def __init__(
        self,
        typecode_or_type: object,
        size_or_initializer: object,
        /,
        *,
        lock: bool | Lock | RLock | None = True,
        backend: str | None = None,
    ) -> None:
        ctype = element_type(typecode_or_type, "Array")
        initial: Any = None
        if isinstance(size_or_initializer, int) and not isinstance(size_or_initializer, bool):
            length = size_or_initializer
            if length < 0:
                raise ValueError(f"Array size must be >= 0, got {length}")
        elif isinstance(size_or_initializer, Iterable):
            given: Iterable[Any] = size_or_initializer  # pyright: ignore[reportUnknownVariableType]
            initial = given if isinstance(given, (bytes, str)) else list(given)
            length = len(initial)
        else:
            raise TypeError(
                f"size_or_initializer must be a size or an iterable, got {size_or_initializer!r}"
            )
        self._place(ctype, length, backend, lock)
        if initial:
            type(self._obj).__init__(self._obj, *initial)

    if TYPE_CHECKING:

        def _element(self) -> T: ...

    def __len__(self) -> int:
        return self._length or 0

    @overload
    def __getitem__(self, index: SupportsIndex) -> T: ...
    @overload
    def __getitem__(self: Array[bytes], index: slice) -> bytes: ...  # type: ignore[overload-overlap]
    @overload
    def __getitem__(self: Array[str], index: slice) -> str: ...  # type: ignore[overload-overlap]
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: SupportsIndex | slice) -> Any:
        obj = self._live()
        raw = self._raw
        if raw is None:
            return obj[index]
        with raw:
            return obj[index]

    @overload
    def __setitem__(self, index: SupportsIndex, value: T) -> None: ...
    @overload
    def __setitem__(self: Array[bytes], index: slice, value: bytes) -> None: ...
    @overload
    def __setitem__(self: Array[str], index: slice, value: str) -> None: ...
    @overload
    def __setitem__(self, index: slice, value: Iterable[T]) -> None: ...
    def __setitem__(self, index: SupportsIndex | slice, value: Any) -> None:
        obj = self._live()
        if isinstance(index, slice) and not isinstance(value, (bytes, str)):
            value = list(value)
        raw = self._raw
        if raw is None:
            obj[index] = value
            return
        with raw:
            obj[index] = value

    def __iter__(self) -> Iterator[T]:
        """Iterate over the elements listed under one acquisition of the lock.

        Numbers, bytes and str are a snapshot; Structure elements are the
        live elements themselves (``for a in arr: a.x = 1`` writes through).
        """
        obj = self._live()
        raw = self._raw
        if raw is None:
            return iter(list(obj))
        with raw:
            return iter(list(obj))

    @property
    def value(self: Array[bytes]) -> bytes:
        """A char array's contents up to the first NUL byte, read and written under the lock.

        Assigning writes the bytes and a NUL after them if they are shorter
        than the array, as ``multiprocessing``'s ``Array("c", ...).value``.
        """
        result: bytes = self._char_attr("value")
        return result

    @value.setter
    def value(self: Array[bytes], new: bytes) -> None:
        self._set_char_attr("value", new)

    @property
    def raw(self: Array[bytes]) -> bytes:
        """A char array's whole contents, read and written under the lock."""
        result: bytes = self._char_attr("raw")
        return result

    @raw.setter
    def raw(self: Array[bytes], new: bytes) -> None:
        self._set_char_attr("raw", new)

    def _chars(self, name: str) -> Any:
        """The ctypes array, after checking that it is one of chars."""
        obj = self._live()
        if self._ctype not in (ctypes.c_char, ctypes.c_wchar) or (
            name == "raw" and self._ctype is not ctypes.c_char
        ):
            raise TypeError(
                f"only a char array ('c') has .{name}; this one holds {typecode_of(self._ctype)!r}"
            )
        return obj

    def _char_attr(self, name: str) -> Any:
        obj = self._chars(name)
        raw = self._raw
        if raw is None:
            return getattr(obj, name)
        with raw:
            return getattr(obj, name)

    def _set_char_attr(self, name: str, new: object) -> None:
        obj = self._chars(name)
        raw = self._raw
        if raw is None:
            setattr(obj, name, new)
            return
        with raw:
            setattr(obj, name, new)

    def locked(self) -> _Holding[LockedArray[T]]:
        """Hold the lock and get the live elements: ``with arr.locked() as items: ...``.

        Returns:
            A context manager yielding a :class:`LockedArray`.

        Raises:
            TypeError: The Array has no lock (``lock=False``).
            ClosedChannelError: The Array was closed.

        Example:
            >>> import parallelkit
            >>> arr = parallelkit.Array("d", [1.0, 2.0], backend="thread")
            >>> with arr.locked() as items:
            ...     items[0], items[1] = items[1], items[0]
            >>> arr[:]
            [2.0, 1.0]
        """
        obj = self._live()
        return _Holding(self._need_lock("locked()"), LockedArray[T](obj))

    # -- bulk copies ----------------------------------------------------------------------

    def _bytes_view(self) -> memoryview:
        self._live()
        size = ctypes.sizeof(self._ctype) * (self._length or 0)
        return memoryview(self._buffer)[self._offset : self._offset + size]

    def _as_bytes(self, data: Buffer, *, writable: bool) -> memoryview:
        """``data`` as a flat byte view, after checking its element type against ours."""
        src = memoryview(data)
        kind = describe_format(src.format, src.itemsize)
        mine = describe_format(memoryview(self._ctype()).format, ctypes.sizeof(self._ctype))
        raw_bytes = kind[1] == 1 and kind[0] in ("uint", "int", "char")
        if kind != mine and not raw_bytes:
            raise TypeError(
                f"cannot copy between a buffer of format {src.format!r} (item size "
                f"{src.itemsize}) and an Array of {typecode_of(self._ctype)!r}; use a buffer "
                "of the same element type, or raw bytes"
            )
        if not src.c_contiguous:
            raise ValueError("the buffer must be C-contiguous")
        try:
            return src.cast("B")
        except TypeError:
            if writable:
                raise TypeError(f"cannot write into a buffer of format {src.format!r}") from None
            return memoryview(src.tobytes())

    def copy_from(self, data: Buffer, start: int = 0) -> None:
        """Copy a buffer into the array at ``start``, under the lock, in one ``memcpy``.

        ``data`` is anything with the buffer protocol whose items have the
        array's element type (an ``array.array``, a numpy array, another
        ctypes array...) or raw bytes of whole elements.

        Args:
            data: The source.
            start: Index of the first element written.

        Raises:
            TypeError: The buffer's element type differs.
            ValueError: It does not fit, or is not whole elements.
            ClosedChannelError: The Array was closed.

        Example:
            >>> import array, parallelkit
            >>> arr = parallelkit.Array("d", 4, backend="thread")
            >>> arr.copy_from(array.array("d", [0.5, 1.5]), start=2)
            >>> arr[:]
            [0.0, 0.0, 0.5, 1.5]
        """
        src = self._as_bytes(data, writable=False)
        itemsize = ctypes.sizeof(self._ctype)
        if len(src) % itemsize:
            raise ValueError(f"{len(src)} bytes is not a whole number of {itemsize}-byte elements")
        count = len(src) // itemsize
        length = self._length or 0
        if start < 0 or start + count > length:
            raise ValueError(f"{count} elements at index {start} do not fit in {length}")
        dest = self._bytes_view()
        raw = self._raw
        if raw is None:
            dest[start * itemsize : (start + count) * itemsize] = src
            return
        with raw:
            dest[start * itemsize : (start + count) * itemsize] = src

    def copy_into(self, out: Buffer, start: int = 0) -> int:
        """Copy elements from ``start`` into a writable buffer, under the lock.

        As many elements are copied as ``out`` holds (or as remain).

        Args:
            out: A writable buffer of the same element type, or raw bytes.
            start: Index of the first element read.

        Returns:
            The number of elements copied.

        Raises:
            TypeError: The buffer's element type differs, or it is read-only.
            ValueError: ``start`` is out of range.
            ClosedChannelError: The Array was closed.

        Example:
            >>> import array, parallelkit
            >>> arr = parallelkit.Array("i", range(5), backend="thread")
            >>> out = array.array("i", [0, 0])
            >>> arr.copy_into(out, start=3), out.tolist()
            (2, [3, 4])
        """
        target = memoryview(out)
        if target.readonly:
            raise TypeError("copy_into() needs a writable buffer")
        dest = self._as_bytes(target, writable=True)
        itemsize = ctypes.sizeof(self._ctype)
        length = self._length or 0
        if not 0 <= start <= length:
            raise ValueError(f"start {start} is out of range for {length} elements")
        count = min(len(dest) // itemsize, length - start)
        source = self._bytes_view()
        raw = self._raw
        if raw is None:
            dest[: count * itemsize] = source[start * itemsize : (start + count) * itemsize]
        else:
            with raw:
                dest[: count * itemsize] = source[start * itemsize : (start + count) * itemsize]
        return count

    def numpy(self: _Element[int | float | ctypes.Structure]) -> NDArray[Any]:
        """Return a numpy array over the shared memory itself (no copy).

        Needs numpy (``pip install parallelkit[numpy]``). The view does not
        take the lock: use ``with arr.get_lock():`` (or :meth:`locked`) around
        code that must not interleave with other writers. The view keeps the
        memory mapped for as long as it exists, even after :meth:`close`, so
        it can never read freed memory. Char arrays have no numeric view.

        Returns:
            A one-dimensional array (a structured one for Structure elements).

        Raises:
            ImportError: numpy is not installed.
            TypeError: The array holds chars.
            ClosedChannelError: The Array was closed.
        """
        arr: Any = self
        if arr._obj is None:
            raise _closed("Array")
        dtype = _dtypes.get(arr._ctype)
        if dtype is None:
            dtype = _numpy_dtype(arr._ctype)
        return _np.frombuffer(arr._buffer, dtype, arr._length, arr._offset)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        code = typecode_of(self._ctype)
        if self._obj is None:
            return f"<parallelkit.Array {code!r} <closed> backend={self._backend!r}>"
        more = ", ..." if (self._length or 0) > 8 else ""
        if self._struct:
            shown = f"{self._length} x {code}"
        else:
            shown = "[" + ", ".join(repr(x) for x in list(self._obj)[:8]) + more + "]"
        return f"<parallelkit.Array {code!r} {shown} backend={self._backend!r}>"


_dtypes: dict[Any, Any] = {}
_np: Any = None


def _numpy_dtype(ctype: Any) -> Any:
    """The numpy dtype of ``ctype``, cached (numpy derives it slowly from ctypes)."""
    global _np
    if ctype in (ctypes.c_char, ctypes.c_wchar):
        raise TypeError("a char array has no numeric numpy view; use .value or .raw")
    if _np is None:
        try:
            _np = importlib.import_module("numpy")
        except ImportError:
            raise ImportError(
                "Array.numpy() needs numpy: pip install 'parallelkit[numpy]'"
            ) from None
    dtype = _dtypes[ctype] = _np.dtype(ctype)
    return dtype
