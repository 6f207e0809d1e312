"""cloudpickle in one place: how functions, data and errors cross to a worker and back.

Functions go by reference with plain pickle when they can (a module-level
function, also one of a main script, is a few dozen bytes and loads by
import), and by value with cloudpickle otherwise: lambdas, closures, nested
functions and functions of an interactive ``__main__``, so they work under
fork, spawn and forkserver alike. Data takes
pickle's fast path and falls back to cloudpickle only when pickle refuses.

An exception is shipped as an :data:`ErrorEnvelope`: its pickled form when it
survives a round trip (checked in the worker, where a failure can still be
reported), plus its type name, message and formatted traceback, so that an
exception that cannot cross still arrives as a :class:`~parallelkit.RemoteError`.

What crosses to a process started for it (the target and arguments of
``spawn()`` and ``Process``, a Barrier's action) goes in a
:class:`ChildParcel`, pickled by :func:`dumps_for_child` *while*
``multiprocessing`` starts the child, so that the objects its own pickler
can send (its locks, ``Connection``s, heap buffers, sockets, ``DupFd``)
cross too::

    Process.start() ── multiprocessing's Popen ── ForkingPickler.dump(process)
                                                      └─ ChildParcel.__reduce__
                                                          └─ dumps_for_child(obj): cloudpickle
                                                             + multiprocessing's reducers,
                                                             inside the spawning window
    (under fork nothing is pickled: the child inherits the parcel as it is)
"""

import functools
import io
import pickle
import sys
import traceback
import types
from collections import ChainMap
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar, cast, final

__all__ = (
    "ChildParcel",
    "ErrorEnvelope",
    "by_value",
    "dumps",
    "dumps_for_child",
    "dumps_function",
    "envelope_from_exception",
    "exception_from_envelope",
    "loads",
    "roundtrip",
)

PROTOCOL: Final = pickle.HIGHEST_PROTOCOL

#: (pickled exception or None, "module.Type", str(exc), formatted traceback)
ErrorEnvelope = tuple[bytes | None, str, str, str]

T = TypeVar("T")

loads = pickle.loads


def _cloudpickle_dumps(obj: object, protocol: int) -> bytes:
    # Imported on first use: workers only load what cloudpickle wrote, which
    # pickle does by itself, and need not pay for importing it.
    import cloudpickle

    dumps = cast("Callable[[object, int], bytes]", cloudpickle.dumps)  # pyright: ignore[reportUnknownMemberType]
    return dumps(obj, protocol)


def dumps(obj: object) -> bytes:
    """Pickle ``obj``: plain pickle first, cloudpickle when plain pickle refuses.

    Args:
        obj: Any object.

    Returns:
        Bytes that :func:`loads` reads back.

    Raises:
        pickle.PicklingError: Neither pickle nor cloudpickle can serialize it.
        TypeError: The object refuses pickling outright.
    """
    try:
        return pickle.dumps(obj, PROTOCOL)
    except Exception:
        return _cloudpickle_dumps(obj, PROTOCOL)


def dumps_function(fn: object) -> bytes:
    """Pickle a callable so that it loads in a worker under any start method.

    Args:
        fn: The callable.

    Returns:
        The serialized callable.

    Raises:
        pickle.PicklingError: The callable (or what it closes over) cannot be pickled.
        TypeError: As :func:`dumps`.
    """
    if not by_value(fn):
        try:
            return pickle.dumps(fn, PROTOCOL)
        except Exception:  # lambdas, closures: by value below
            pass
    return _cloudpickle_dumps(fn, PROTOCOL)


def by_value(fn: object) -> bool:
    """Whether ``fn`` must travel by value even where pickle could name it.

    A function of an interactive ``__main__`` (a notebook, ``python -c``): a
    worker would not find it by name.

    Args:
        fn: The callable.

    Returns:
        True when only cloudpickle sends it correctly.
    """
    return getattr(fn, "__module__", None) == "__main__" and not _main_can_import(fn)


def dumps_for_child(obj: object) -> bytes:
    """Pickle ``obj`` for a process being started for it, as ``multiprocessing`` would.

    cloudpickle (lambdas and closures by value, a main script's top-level
    functions and classes by reference, as :func:`dumps_function` does),
    whose dispatch table also holds ``multiprocessing``'s own reducers: its
    ``Connection``s, sockets, heap arenas (``RawArray``, ``Value``) and
    ``DupFd``. Called while ``multiprocessing`` starts the child (from
    :meth:`ChildParcel.__reduce__`), its locks and descriptors see the
    spawning process, as they do when ``multiprocessing`` pickles a
    ``Process``'s arguments itself. Outside that window they refuse, as in
    ``multiprocessing``.

    Args:
        obj: Any object.

    Returns:
        Bytes that :func:`loads` reads back.

    Raises:
        pickle.PicklingError: Something in ``obj`` cannot be pickled.
        TypeError: An object refuses pickling outright.
        RuntimeError: A ``multiprocessing`` lock pickled outside a process start.
    """
    buffer = io.BytesIO()
    _child_pickler()(buffer, PROTOCOL).dump(obj)
    return buffer.getvalue()


@functools.cache
def _child_pickler() -> Callable[[io.BytesIO, int], Any]:
    """The pickler class of :func:`dumps_for_child` (made once cloudpickle is imported)."""
    from multiprocessing.reduction import ForkingPickler

    import cloudpickle

    base: Any = cloudpickle.Pickler

    def __init__(self: Any, file: io.BytesIO, protocol: int) -> None:
        # Read now: multiprocessing registers reducers as it goes (a RawArray's
        # ctypes type when the array is made). Set before the base __init__,
        # which is where the C pickler looks the table up.
        self.dispatch_table = ChainMap(
            base.dispatch_table, ForkingPickler(io.BytesIO()).dispatch_table
        )
        base.__init__(self, file, protocol)

    def reducer_override(self: Any, obj: object) -> object:
        if isinstance(obj, (types.FunctionType, type)) and _main_can_import(obj):
            return NotImplemented  # by reference, as dumps_function does
        return base.reducer_override(self, obj)

    made: Any = type(
        "ChildPickler",
        (base,),
        {"__init__": __init__, "reducer_override": reducer_override, "__module__": __name__},
    )
    pickler: Callable[[io.BytesIO, int], Any] = made
    return pickler


class _ParcelError(pickle.PicklingError):
    """A parcel could not be pickled (raised once, not wrapped again by an outer parcel)."""


@final
class ChildParcel(Generic[T]):
    """An object on its way to a process started for it.

    Pickling it runs :func:`dumps_for_child` (so do it while the child
    starts); it unpickles to a parcel that loads the object on first use of
    :attr:`value`. A parcel that is never pickled (the child is forked)
    simply hands over the object it holds.

    Args:
        value: The object.
        what: What it is, for error messages (``"the action of a Barrier"``).
    """

    __slots__ = ("_blob", "_value", "what")

    def __init__(self, value: T, what: str) -> None:
        self._value = value
        self._blob: bytes | None = None
        self.what = what

    @property
    def value(self) -> T:
        """The object (loaded here on first use when the parcel came pickled)."""
        blob = self._blob
        if blob is not None:
            self._value = loads(blob)
            self._blob = None
        return self._value

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        try:
            blob = dumps_for_child(self.value)
        except _ParcelError:
            raise
        except Exception as exc:
            raise _ParcelError(f"cannot send {self.what} to another process: {exc}") from exc
        return (_open_parcel, (blob, self.what))


def _open_parcel(blob: bytes, what: str) -> ChildParcel[Any]:
    parcel: ChildParcel[Any] = ChildParcel(None, what)
    parcel._blob = blob  # pyright: ignore[reportPrivateUsage]
    return parcel


def _main_can_import(fn: object) -> bool:
    """Whether a worker finds ``fn`` by name in ``__main__`` (a script's top-level def).

    Workers re-import a main script (spawn, forkserver) or inherit it (fork),
    so such a function travels by reference, as with ``multiprocessing``, and
    may use module globals that cannot be pickled (a lock, a connection).
    Functions of an interactive session or ``python -c`` travel by value.
    """
    main = sys.modules.get("__main__")
    qualname = getattr(fn, "__qualname__", "")
    return (
        main is not None
        and getattr(main, "__file__", None) is not None
        and "." not in qualname
        and getattr(main, qualname, None) is fn
    )


def roundtrip(obj: object) -> Any:
    """Serialize and deserialize ``obj`` the way the process backend would.

    Args:
        obj: Any object.

    Returns:
        The copy that a worker process would have seen.
    """
    return loads(dumps(obj))


def _type_name(tp: type) -> str:
    module = getattr(tp, "__module__", "")
    name = getattr(tp, "__qualname__", tp.__name__)
    if module == "__mp_main__":  # the main script, as a spawned worker imports it
        module = "__main__"
    return name if module in ("builtins", "", None) else f"{module}.{name}"


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<str() of {type(exc).__name__} failed>"


def envelope_from_exception(exc: BaseException, *, limit: int | None = None) -> ErrorEnvelope:
    """Capture an exception for the trip back to the caller.

    The pickled form is kept only if it also loads again here: an exception
    whose constructor cannot be re-run from its ``args`` would otherwise
    explode in the parent.

    Args:
        exc: The exception, with its traceback.
        limit: Cut the traceback text to about this many characters.

    Returns:
        The envelope.
    """
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if limit is not None and len(text) > limit:
        text = "...\n" + text[-limit:]
    blob: bytes | None
    try:
        blob = dumps(exc)
        loads(blob)
    except BaseException:
        blob = None
    message = _safe_str(exc)
    if limit is not None and len(message) > limit:
        message = message[:limit] + "..."
    return (blob, _type_name(type(exc)), message, text)


def exception_from_envelope(envelope: ErrorEnvelope) -> BaseException:
    """Rebuild the exception a worker raised, with its traceback as ``__cause__``.

    Args:
        envelope: What :func:`envelope_from_exception` produced.

    Returns:
        The original exception when it could cross, else a
        :class:`~parallelkit.RemoteError`; either way its ``__cause__`` is a
        :class:`~parallelkit.RemoteTraceback` holding the worker's traceback.
    """
    # Imported here: worker processes import this module, and only the
    # caller's side rebuilds exceptions (a spawned worker's start-up is shorter).
    from ._errors import RemoteError, RemoteTraceback

    blob, type_name, message, text = envelope
    exc: BaseException | None = None
    if blob is not None:
        try:
            loaded = loads(blob)
        except BaseException:
            loaded = None
        if isinstance(loaded, BaseException):
            exc = loaded
    if exc is None:
        exc = RemoteError(type_name, message, text)
    exc.__cause__ = RemoteTraceback(text)
    return exc
