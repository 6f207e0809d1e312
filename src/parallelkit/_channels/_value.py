"""Value: one typed shared C value, assignable as in multiprocessing, with atomic updates.

::

    v.value, v.value = x     one read or one write, each under the lock (multiprocessing's)
    v.value += 1             a read, then a write: another worker's update in between is
                             lost, as in multiprocessing (the lock is not held in the gap)
    atomic:  v.add(n)  v.update(fn)  v.compare_and_set(old, new)  v.set(x)
             with v.locked() as cell: ...    (or ``with v.get_lock():``, an RLock)

Where the memory and the lock live, and how a Value travels to another
process, is :mod:`._shared`'s part, the same for Value and Array.
"""

# The channel classes build and rebuild one another's objects (unpickling, locks shared
# by Values): access to their underscore attributes stays inside this package.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, final, overload

from ._layout import class_of, element_type, frozen_copy, typecode_of
from ._shared import Holding, LockedView, SharedBase
from ._sync import Lock, RLock
from ._types import FloatCode, IntCode, T

if TYPE_CHECKING:
    from ctypes import _SimpleCData  # pyright: ignore[reportPrivateUsage]

__all__ = ("LockedValue", "Value")

_S = TypeVar("_S", bound="ctypes.Structure | ctypes.Union")
_V = TypeVar("_V")


@final
class LockedValue(LockedView, Generic[T]):
    """The live contents of a :class:`Value` while its lock is held (see :meth:`Value.locked`).

    ``cell.value`` reads and writes the shared memory directly; for a
    Structure it is the shared Structure itself, so ``cell.value.x = 1``
    works. The view refuses use after the ``with`` block.
    """

    __slots__ = ("_struct",)

    def __init__(self, obj: Any, struct: bool) -> None:
        super().__init__(obj)
        self._struct = struct

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
class Value(SharedBase, Generic[T]):
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
        backend: ``"process"``, ``"thread"``, ``"serial"`` or ``"dask"``; None follows the
            configuration, like the Executor.

    Raises:
        TypeError: An unknown type, a pointer type, a value of the wrong
            type, or a lock of another backend.
        NotALockError: ``lock`` is none of the above (a ``TypeError`` that
            is also an ``AttributeError``, what ``multiprocessing`` raises).
        ConfigError: ``lock=False`` on the dask backend, where the value is
            loaded from the scheduler under its lock.

    Examples:
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
        self._publish()

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

    def locked(self) -> Holding[LockedValue[T]]:
        """Hold the lock and get the live value: ``with v.locked() as cell: ...``.

        Several reads and writes in the block form one atomic step. The cell is
        valid only inside the block.

        Returns:
            A context manager yielding a :class:`LockedValue`.

        Raises:
            TypeError: The Value has no lock (``lock=False``).
            ClosedChannelError: The Value was closed.

        Examples:
            >>> import parallelkit
            >>> total = parallelkit.Value("d", 1.5, backend="thread")
            >>> with total.locked() as cell:
            ...     cell.value = cell.value * 2 + 1
            >>> total.value
            4.0
        """
        obj = self._live()
        return Holding(self._need_lock("locked()"), LockedValue[T](obj, self._struct))

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
