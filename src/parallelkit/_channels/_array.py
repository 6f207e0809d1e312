"""Array: a typed shared C array, element-wise as in multiprocessing, with bulk copies.

::

    arr[i], arr[i] = x, arr[i:j] = xs, char .value/.raw   each under the lock, as in
                                                          multiprocessing.Array
    list(arr), arr[:]                 a whole snapshot under one lock
    arr.copy_from(buf), copy_into(buf)  bulk, through the buffer protocol
    arr.numpy()                       a zero-copy numpy view of the shared memory
    with arr.locked() as items: ...   several steps under the lock

An element of a Structure array is a live ctypes object over the shared
memory (``arr[0].x = 1`` writes through, as in ``multiprocessing``); like a
numpy view or :meth:`Array.get_obj`, it keeps the memory mapped for as long
as it exists, whatever happens to the Array.

Where the memory and the lock live, and how an Array travels to another
process, is :mod:`._shared`'s part, the same for Value and Array.
"""

# The channel classes build and rebuild one another's objects (unpickling, locks shared
# by Values): access to their underscore attributes stays inside this package.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import ctypes
import importlib
from collections.abc import Iterable, Iterator
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

from ._layout import describe_format, element_type, typecode_of
from ._shared import Holding, LockedView, SharedBase, closed_error
from ._sync import Lock, RLock
from ._types import FloatCode, IntCode, T, T_co

if TYPE_CHECKING:
    from ctypes import _SimpleCData  # pyright: ignore[reportPrivateUsage]

    from numpy.typing import NDArray
    from typing_extensions import Buffer

__all__ = ("Array", "LockedArray")

_S = TypeVar("_S", bound="ctypes.Structure | ctypes.Union")
_V = TypeVar("_V")


class _Element(Protocol[T_co]):
    """Matches an Array by its element type (covariantly), for ``numpy()``'s self type."""

    def _element(self) -> T_co: ...


@final
class LockedArray(LockedView, Generic[T]):
    """The live contents of an :class:`Array` while its lock is held (see :meth:`Array.locked`).

    Indexing returns live elements (a Structure element can be changed in
    place: ``items[0].x = 1``); assignment writes through without locking
    again. The view refuses use after the ``with`` block.
    """

    __slots__ = ()

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
class Array(SharedBase, Generic[T]):
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
        ConfigError: The dask backend: a cluster has no shared memory (send
            the data as task arguments, ``client.scatter``, or a Queue).

    Examples:
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

    def locked(self) -> Holding[LockedArray[T]]:
        """Hold the lock and get the live elements: ``with arr.locked() as items: ...``.

        Returns:
            A context manager yielding a :class:`LockedArray`.

        Raises:
            TypeError: The Array has no lock (``lock=False``).
            ClosedChannelError: The Array was closed.

        Examples:
            >>> import parallelkit
            >>> arr = parallelkit.Array("d", [1.0, 2.0], backend="thread")
            >>> with arr.locked() as items:
            ...     items[0], items[1] = items[1], items[0]
            >>> arr[:]
            [2.0, 1.0]
        """
        obj = self._live()
        return Holding(self._need_lock("locked()"), LockedArray[T](obj))

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

        Examples:
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

        Examples:
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
            raise closed_error("Array")
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
