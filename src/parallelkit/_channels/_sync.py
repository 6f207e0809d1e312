"""Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event and Barrier.

::

    Lock() ──backend flag──▶ "process": a named POSIX semaphore (sem_open), shared
                                         with any process that unpickles it
                             otherwise:  threading.Lock in an adapter that takes
                                         multiprocessing's acquire(block, timeout)

                             "dask":     a lease of distributed.Lock / Semaphore on
                                         the cluster's scheduler (see ._cluster)

    Condition ─ a lock + three counting semaphores (process) or threading.Condition
    Event     ─ a Condition + a flag semaphore       (process) or threading.Event
                                                     (dask: distributed.Event)
    Barrier   ─ a Condition + two shared ints        (process) or threading.Barrier

On dask, Condition and Barrier are refused (distributed has no such
primitive); a Semaphore needs an initial value of at least 1 and is released
in the process that acquired it (a lease).

Every method keeps ``multiprocessing``'s signature (``acquire(block=True,
timeout=None)``), and errors are the same on both backends: releasing an
unheld Lock raises ``ValueError``, releasing an RLock held by another thread
raises ``AssertionError``, as ``multiprocessing`` does.
"""

# The channel classes build and rebuild one another's objects (unpickling, locks shared
# by Values): access to their underscore attributes stays inside this package.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from multiprocessing import util
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, TypeVar, cast, final

from .._config import Settings
from .._serialize import ChildParcel
from ._memory import Segment, allocate, attach
from ._select import family, is_process, not_on_cluster, on_cluster, resolve
from ._sharing import (
    RECURSIVE_MUTEX,
    SEM_VALUE_MAX,
    SEMAPHORE,
    RawSemLock,
    create_semlock,
    local_reduce,
    new_token,
    open_semlock,
    own,
    remember,
    reopens,
)

__all__ = (
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Lock",
    "RLock",
    "Semaphore",
)

if TYPE_CHECKING:
    from ._cluster import ClusterEvent

R = TypeVar("R")


class _Acquirable(Protocol):
    def acquire(self, block: bool = True, timeout: float | None = None) -> bool: ...
    def release(self) -> None: ...


class _ThreadAdapter:
    """A ``threading`` lock or semaphore with ``multiprocessing``'s signatures and errors."""

    __slots__ = ("lock", "over_release")

    def __init__(self, lock: Any, over_release: type[Exception], message: str) -> None:
        self.lock = lock
        self.over_release = (over_release, message)

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        if not block:
            return bool(self.lock.acquire(False))
        if timeout is None:
            return bool(self.lock.acquire())
        return bool(self.lock.acquire(True, max(timeout, 0.0)))

    def release(self) -> None:
        try:
            self.lock.release()
        except (RuntimeError, ValueError):
            kind, message = self.over_release
            raise kind(message) from None


class _Primitive:
    """Shared body of Lock, RLock, Semaphore and BoundedSemaphore."""

    __slots__ = ("__weakref__", "_backend", "_impl", "_shared", "_token")
    _what: ClassVar[str] = "Lock"

    _impl: _Acquirable
    _backend: str
    _shared: bool
    _token: str

    def _setup(
        self,
        settings: Settings,
        kind: int,
        value: int,
        maxvalue: int,
        make_thread: Callable[[], _ThreadAdapter],
    ) -> None:
        self._backend = settings.backend
        self._shared = is_process(settings)
        if on_cluster(settings):
            from ._cluster import ClusterSemaphore, connect

            if value < 1:
                raise ValueError(
                    f"a {self._what} on the {settings.backend} backend is a set of leases and "
                    "needs an initial value of at least 1; to signal between tasks, use an "
                    "Event or a Queue"
                )
            self._token = new_token()
            link = connect(settings.address)
            self._impl = ClusterSemaphore(link, self._token, value, kind == RECURSIVE_MUTEX)
        elif self._shared:
            raw, name = create_semlock(kind, value, maxvalue)
            self._impl = raw
            self._token = name
            own(self, semaphores=(name,))
            util.register_after_fork(self, _Primitive._after_fork)
        else:
            self._impl = make_thread()
            self._token = new_token()
        remember(self._token, self)

    def _after_fork(self) -> None:
        if self._shared:
            self._raw()._after_fork()

    def _raw(self) -> RawSemLock:
        impl: Any = self._impl
        raw: RawSemLock = impl
        return raw

    @property
    def backend(self) -> str:
        """The backend this object was made for (``"process"``, ``"thread"``, ...)."""
        return self._backend

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        """Acquire, as ``multiprocessing``'s ``acquire(block=True, timeout=None)``.

        Args:
            block: Wait when it is not available; when False, return at once.
            timeout: With ``block``, wait at most this many seconds (None: forever).

        Returns:
            Whether it was acquired.
        """
        return self._impl.acquire(block, timeout)

    def release(self) -> None:
        """Release it.

        Raises:
            ValueError: A Lock or BoundedSemaphore was released more times than acquired.
            AssertionError: An RLock is not held by the calling thread.
        """
        self._impl.release()

    def __enter__(self) -> bool:
        return self._impl.acquire(True, None)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._impl.release()

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        impl: Any = self._impl
        if not self._shared and not isinstance(impl, _ThreadAdapter):  # on a cluster
            return (
                _open_cluster_primitive,
                (self._token, type(self), self._backend, impl.kind, impl.address),
            )
        if not self._shared:
            return local_reduce(self, self._token, self._what)
        raw = self._raw()
        return (_open_primitive, (self._token, type(self), self._backend, raw.kind, raw.maxvalue))

    def __repr__(self) -> str:
        return f"<parallelkit.{type(self).__name__} backend={self._backend!r}>"


@reopens
def _open_primitive(
    name: str, cls: type[_Primitive], backend: str, kind: int, maxvalue: int
) -> _Primitive:
    obj = cls.__new__(cls)
    obj._impl = open_semlock(kind, maxvalue, name, cls._what)
    obj._backend = backend
    obj._shared = True
    obj._token = name
    util.register_after_fork(obj, _Primitive._after_fork)
    return obj


@reopens
def _open_cluster_primitive(
    name: str, cls: type[_Primitive], backend: str, kind: tuple[int, bool], address: str
) -> _Primitive:
    from ._cluster import ClusterSemaphore, connect

    obj = cls.__new__(cls)
    obj._impl = ClusterSemaphore(connect(address), name, *kind)
    obj._backend = backend
    obj._shared = False
    obj._token = name
    return obj


def on_cluster_lock(lock: Lock | RLock) -> bool:
    """Whether ``lock`` lives on a cluster's scheduler."""
    return not lock._shared and not isinstance(lock._impl, _ThreadAdapter)


@final
class Lock(_Primitive):
    """A non-recursive lock for threads or processes, following the backend flag.

    On the process backend it is a named POSIX semaphore that any process
    receiving it (as a task argument, through a Queue or Pipe...) can use;
    otherwise a ``threading.Lock``. Use it with ``with`` or
    ``acquire(block=True, timeout=None)`` / ``release()``.

    Args:
        backend: ``"process"``, ``"thread"``, ``"serial"`` or ``"dask"``; None follows the
            configuration, like the Executor.

    Examples:
        >>> import parallelkit
        >>> lock = parallelkit.Lock(backend="thread")
        >>> with lock:
        ...     lock.acquire(block=False)
        False
    """

    __slots__ = ()
    _what: ClassVar[str] = "Lock"

    def __init__(self, *, backend: str | None = None) -> None:
        self._start(resolve(backend))

    def _start(self, settings: Settings) -> None:
        self._setup(
            settings,
            SEMAPHORE,
            1,
            1,
            lambda: _ThreadAdapter(
                threading.Lock(), ValueError, "semaphore or lock released too many times"
            ),
        )


@final
class RLock(_Primitive):
    """A recursive lock for threads or processes, following the backend flag.

    The thread that holds it may acquire it again; it is free once released
    as many times. It is the default lock of :class:`Value`, :class:`Array`
    and :class:`Condition`.

    Args:
        backend: ``"process"``, ``"thread"``, ``"serial"`` or ``"dask"``; None follows
            the configuration.

    Examples:
        >>> import parallelkit
        >>> lock = parallelkit.RLock(backend="thread")
        >>> with lock, lock:
        ...     "held twice"
        'held twice'
    """

    __slots__ = ()
    _what: ClassVar[str] = "RLock"

    def __init__(self, *, backend: str | None = None) -> None:
        self._start(resolve(backend))

    def _start(self, settings: Settings) -> None:
        self._setup(
            settings,
            RECURSIVE_MUTEX,
            1,
            1,
            lambda: _ThreadAdapter(
                threading.RLock(),
                AssertionError,
                "attempt to release recursive lock not owned by thread",
            ),
        )


class _SemaphoreBase(_Primitive):
    """Shared body of Semaphore and BoundedSemaphore."""

    __slots__ = ()

    def get_value(self) -> int:
        """Return the current value (``multiprocessing``'s ``get_value``).

        Returns:
            The number of times it can be acquired without blocking.

        Raises:
            NotImplementedError: On the process backend of a platform without
                ``sem_getvalue`` (macOS).
        """
        if self._shared:
            return self._raw()._get_value()
        impl: Any = self._impl
        if not isinstance(impl, _ThreadAdapter):  # on a cluster
            on: int = impl.get_value()
            return on
        value: int = impl.lock._value
        return value


def _check_value(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"semaphore initial value must be a whole number >= 0, got {value!r}")
    return value


@final
class Semaphore(_SemaphoreBase):
    """A counting semaphore for threads or processes, following the backend flag.

    Args:
        value: The initial count (>= 0).
        backend: ``"process"``, ``"thread"``, ``"serial"`` or ``"dask"``; None follows
            the configuration.

    On the dask backend it is a set of ``value`` leases (``value`` >= 1):
    it cannot go above its start, and a lease is released in the process
    that acquired it (see the channels guide).

    Raises:
        ValueError: ``value`` is negative (or 0 on the dask backend).

    Examples:
        >>> import parallelkit
        >>> sem = parallelkit.Semaphore(2, backend="thread")
        >>> sem.acquire(), sem.acquire(), sem.acquire(block=False)
        (True, True, False)
    """

    __slots__ = ()
    _what: ClassVar[str] = "Semaphore"

    def __init__(self, value: int = 1, *, backend: str | None = None) -> None:
        _check_value(value)
        self._setup(
            resolve(backend),
            SEMAPHORE,
            value,
            SEM_VALUE_MAX,
            lambda: _ThreadAdapter(threading.Semaphore(value), ValueError, "cannot release"),
        )


@final
class BoundedSemaphore(_SemaphoreBase):
    """A semaphore that refuses to be released above its initial value.

    Args:
        value: The initial (and largest) count.
        backend: ``"process"``, ``"thread"``, ``"serial"`` or ``"dask"``; None follows
            the configuration.

    Raises:
        ValueError: ``value`` is negative.

    Examples:
        >>> import parallelkit
        >>> sem = parallelkit.BoundedSemaphore(1, backend="thread")
        >>> sem.release()
        Traceback (most recent call last):
        ...
        ValueError: semaphore or lock released too many times
    """

    __slots__ = ()
    _what: ClassVar[str] = "BoundedSemaphore"

    def __init__(self, value: int = 1, *, backend: str | None = None) -> None:
        _check_value(value)
        self._setup(
            resolve(backend),
            SEMAPHORE,
            value,
            value,
            lambda: _ThreadAdapter(
                threading.BoundedSemaphore(value),
                ValueError,
                "semaphore or lock released too many times",
            ),
        )


def lock_for(settings: Settings) -> Lock:
    """A new Lock for already resolved settings (no second look at the configuration)."""
    lock = Lock.__new__(Lock)
    lock._start(settings)
    return lock


def rlock_for(settings: Settings) -> RLock:
    """A new RLock for already resolved settings."""
    lock = RLock.__new__(RLock)
    lock._start(settings)
    return lock


# -- Condition -----------------------------------------------------------------------------


def _choose_lock(
    lock: Lock | RLock | None, backend: str | None, what: str
) -> tuple[Lock | RLock, str]:
    """The lock of a Condition/Value/Array and the backend that follows from it."""
    if lock is None:
        made = rlock_for(resolve(backend))
        return made, made.backend
    if not isinstance(lock, (Lock, RLock)):
        raise TypeError(
            f"lock must be a parallelkit.Lock or parallelkit.RLock (or True/False for "
            f"Value and Array), got {type(lock).__name__}"
        )
    if backend is not None:
        settings = resolve(backend)
        if family(settings) != family(resolve(lock.backend)):
            raise TypeError(
                f"a {what} for the {settings.backend!r} backend cannot use a lock made for "
                f"the {lock.backend!r} backend"
            )
        return lock, settings.backend
    return lock, lock.backend


class _ProcessCondition:
    """A condition variable between processes, made of three counting semaphores.

    ``sleepers`` counts processes that entered :meth:`wait`; a notifier turns
    up to ``n`` of them into ``wakeups``; every waiter that leaves
    :meth:`wait` (woken or timed out) posts ``acks``, which the notifier
    collects before it returns, so a later ``wait`` cannot steal an earlier
    wakeup. Unused wakeups of waiters that timed out meanwhile are taken back.
    """

    __slots__ = ("acks", "lock", "sleepers", "wakeups")

    def __init__(
        self, lock: RawSemLock, sleepers: RawSemLock, wakeups: RawSemLock, acks: RawSemLock
    ) -> None:
        self.lock = lock
        self.sleepers = sleepers
        self.wakeups = wakeups
        self.acks = acks

    def wait(self, timeout: float | None) -> bool:
        lock = self.lock
        if not lock._is_mine():
            raise RuntimeError("cannot wait on un-acquired lock")
        self.sleepers.release()
        depth = lock._count()
        for _ in range(depth):
            lock.release()
        try:
            return self.wakeups.acquire(True, timeout)
        finally:
            self.acks.release()
            for _ in range(depth):
                lock.acquire(True, None)

    def notify(self, n: int) -> None:
        if not self.lock._is_mine():
            raise RuntimeError("cannot notify on un-acquired lock")
        while self.acks.acquire(False):  # waiters that timed out since the last notify
            self.sleepers.acquire(False)
        woken = 0
        while woken < n and self.sleepers.acquire(False):
            self.wakeups.release()
            woken += 1
        for _ in range(woken):
            self.acks.acquire(True, None)
        while self.wakeups.acquire(False):  # meant for a waiter that timed out meanwhile
            pass


@final
class Condition:
    """A condition variable for threads or processes, following the backend flag.

    Args:
        lock: The lock it uses (a :class:`Lock` or :class:`RLock` of the same
            backend); None makes a new :class:`RLock`.
        backend: ``"process"``, ``"thread"`` or ``"serial"``; None follows the
            lock if one is given, else the configuration.

    Raises:
        TypeError: ``lock`` is not a parallelkit lock, or is for another backend.
        ConfigError: The dask backend, which has no condition variable.

    Examples:
        >>> import parallelkit
        >>> cond = parallelkit.Condition(backend="thread")
        >>> with cond:
        ...     cond.wait_for(lambda: True, timeout=1)
        True
    """

    __slots__ = ("__weakref__", "_backend", "_impl", "_lock", "_names")

    _impl: _ProcessCondition | threading.Condition

    def __init__(self, lock: Lock | RLock | None = None, *, backend: str | None = None) -> None:
        self._start(*_choose_lock(lock, backend, "Condition"))

    def _start(self, lock: Lock | RLock, backend: str) -> None:
        if on_cluster_lock(lock):
            raise not_on_cluster(
                resolve(backend),
                "Condition",
                "distributed has no condition variable; wait for an Event, or take items "
                "from a Queue",
            )
        self._lock, self._backend = lock, backend
        if self._lock._shared:
            made = [create_semlock(SEMAPHORE, 0, SEM_VALUE_MAX) for _ in range(3)]
            self._names = tuple(name for _, name in made)
            own(self, semaphores=self._names)
            self._impl = _ProcessCondition(self._lock._raw(), *(raw for raw, _ in made))
            remember(self._names[0], self)
        else:
            self._names = (new_token(),)
            adapter: Any = self._lock._impl
            self._impl = threading.Condition(adapter.lock)

    @property
    def backend(self) -> str:
        """The backend this object was made for."""
        return self._backend

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        """Acquire the underlying lock (see :meth:`Lock.acquire`).

        Args:
            block: Wait when it is held elsewhere.
            timeout: Longest wait in seconds, or None.

        Returns:
            Whether it was acquired.
        """
        return self._lock.acquire(block, timeout)

    def release(self) -> None:
        """Release the underlying lock."""
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait for a notification, re-acquire the lock.

        Args:
            timeout: Longest wait in seconds, or None.

        Returns:
            False if the timeout passed first.

        Raises:
            RuntimeError: The calling thread does not hold the lock.
        """
        return self._impl.wait(timeout)

    def wait_for(self, predicate: Callable[[], R], timeout: float | None = None) -> R:
        """Wait until ``predicate()`` is true (checked with the lock held).

        Args:
            predicate: Called under the lock; its last result is returned.
            timeout: Longest total wait in seconds, or None.

        Returns:
            The last value of ``predicate()`` (falsy if the timeout passed).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        result = predicate()
        while not result:
            if deadline is None:
                self.wait(None)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.wait(remaining)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters; the caller must hold the lock.

        Args:
            n: How many.
        """
        self._impl.notify(n)

    def notify_all(self) -> None:
        """Wake every waiter; the caller must hold the lock."""
        self._impl.notify(SEM_VALUE_MAX)

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        if not self._lock._shared:
            return local_reduce(self, self._names[0], "Condition")
        return (_open_condition, (self._names, self._backend, self._lock))

    def __repr__(self) -> str:
        return f"<parallelkit.Condition backend={self._backend!r} lock={self._lock!r}>"


def condition_for(lock: Lock | RLock) -> Condition:
    """A new Condition over ``lock``, of the lock's backend."""
    cond = Condition.__new__(Condition)
    cond._start(lock, lock.backend)
    return cond


@reopens
def _open_condition(names: tuple[str, ...], backend: str, lock: Lock | RLock) -> Condition:
    cond = Condition.__new__(Condition)
    cond._lock = lock
    cond._backend = backend
    cond._names = names
    sems = [open_semlock(SEMAPHORE, SEM_VALUE_MAX, name, "Condition") for name in names]
    cond._impl = _ProcessCondition(lock._raw(), *sems)
    return cond


# -- Event ---------------------------------------------------------------------------------


@final
class Event:
    """An event flag for threads or processes, following the backend flag.

    Args:
        backend: ``"process"``, ``"thread"``, ``"serial"`` or ``"dask"``; None follows
            the configuration.

    Examples:
        >>> import parallelkit
        >>> ev = parallelkit.Event(backend="thread")
        >>> ev.set()
        >>> ev.is_set(), ev.wait(0.1)
        (True, True)
    """

    __slots__ = ("__weakref__", "_backend", "_cluster", "_cond", "_flag", "_name", "_thread")

    _cond: Condition | None
    _flag: RawSemLock | None
    _thread: threading.Event | None
    _cluster: ClusterEvent | None

    def __init__(self, *, backend: str | None = None) -> None:
        settings = resolve(backend)
        self._backend = settings.backend
        self._cluster = None
        if on_cluster(settings):
            from ._cluster import ClusterEvent, connect

            self._cond = self._flag = self._thread = None
            self._name = new_token()
            self._cluster = ClusterEvent(connect(settings.address), self._name)
        elif is_process(settings):
            self._cond = condition_for(lock_for(settings))
            self._flag, self._name = create_semlock(SEMAPHORE, 0, 1)
            own(self, semaphores=(self._name,))
            self._thread = None
        else:
            self._cond = self._flag = None
            self._thread = threading.Event()
            self._name = new_token()
        remember(self._name, self)

    @property
    def backend(self) -> str:
        """The backend this object was made for."""
        return self._backend

    def is_set(self) -> bool:
        """Return whether the flag is set."""
        if self._thread is not None:
            return self._thread.is_set()
        if self._cluster is not None:
            return self._cluster.is_set()
        assert self._flag is not None
        return not self._flag._is_zero()

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        if self._thread is not None:
            self._thread.set()
            return
        if self._cluster is not None:
            self._cluster.set()
            return
        assert self._cond is not None and self._flag is not None
        with self._cond:
            if self._flag._is_zero():
                self._flag.release()
            self._cond.notify_all()

    def clear(self) -> None:
        """Reset the flag."""
        if self._thread is not None:
            self._thread.clear()
            return
        if self._cluster is not None:
            self._cluster.clear()
            return
        assert self._cond is not None and self._flag is not None
        with self._cond:
            self._flag.acquire(False)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set.

        Args:
            timeout: Longest wait in seconds, or None.

        Returns:
            Whether the flag is set (False if the timeout passed first).
        """
        if self._thread is not None:
            return self._thread.wait(timeout)
        if self._cluster is not None:
            return self._cluster.wait(timeout)
        assert self._cond is not None and self._flag is not None
        flag = self._flag
        with self._cond:
            return bool(self._cond.wait_for(lambda: not flag._is_zero(), timeout))

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        if self._thread is not None:
            return local_reduce(self, self._name, "Event")
        if self._cluster is not None:
            return (_open_cluster_event, (self._name, self._backend, self._cluster.address))
        return (_open_event, (self._name, self._backend, self._cond))

    def __repr__(self) -> str:
        return f"<parallelkit.Event backend={self._backend!r} set={self.is_set()}>"


@reopens
def _open_event(name: str, backend: str, cond: Condition) -> Event:
    event = Event.__new__(Event)
    event._backend = backend
    event._cond = cond
    event._flag = open_semlock(SEMAPHORE, 1, name, "Event")
    event._name = name
    event._thread = None
    event._cluster = None
    return event


@reopens
def _open_cluster_event(name: str, backend: str, address: str) -> Event:
    from ._cluster import ClusterEvent, connect

    event = Event.__new__(Event)
    event._backend = backend
    event._cond = event._flag = event._thread = None
    event._name = name
    event._cluster = ClusterEvent(connect(address), name)
    return event


# -- Barrier -------------------------------------------------------------------------------

_FILLING: Final = 0
_DRAINING: Final = 1
_RESETTING: Final = -1
_BROKEN: Final = -2
_STATE: Final = 0
_COUNT: Final = 1


class _ProcessBarrier:
    """``threading.Barrier``'s states, kept in two shared ints under a Condition.

    state: filling (parties arrive) → draining (the last one arrived: all
    leave) → filling again once the last has left; resetting and broken make
    waiters raise ``BrokenBarrierError``.
    """

    __slots__ = ("action", "cond", "parties", "segment", "timeout", "words")

    def __init__(
        self,
        parties: int,
        action: Callable[[], object] | None,
        timeout: float | None,
        cond: Condition,
        segment: Segment,
        offset: int,
    ) -> None:
        self.parties = parties
        self.action = action
        self.timeout = timeout
        self.cond = cond
        self.segment = segment
        self.words = (ctypes.c_int * 2).from_buffer(segment.buffer, offset)

    def wait(self, timeout: float | None) -> int:
        if timeout is None:
            timeout = self.timeout
        words, cond = self.words, self.cond
        with cond:
            cond.wait_for(lambda: words[_STATE] not in (_DRAINING, _RESETTING))
            if words[_STATE] == _BROKEN:
                raise threading.BrokenBarrierError
            index = words[_COUNT]
            words[_COUNT] = index + 1
            try:
                if index + 1 == self.parties:
                    try:
                        if self.action is not None:
                            self.action()
                    except BaseException:
                        self._break()
                        raise
                    words[_STATE] = _DRAINING
                    cond.notify_all()
                else:
                    if not cond.wait_for(lambda: words[_STATE] != _FILLING, timeout):
                        self._break()
                        raise threading.BrokenBarrierError
                    if words[_STATE] < 0:
                        raise threading.BrokenBarrierError
                return index
            finally:
                words[_COUNT] -= 1
                if words[_COUNT] == 0 and words[_STATE] in (_DRAINING, _RESETTING):
                    words[_STATE] = _FILLING
                    cond.notify_all()

    def _break(self) -> None:
        self.words[_STATE] = _BROKEN
        self.cond.notify_all()

    def reset(self) -> None:
        words = self.words
        with self.cond:
            if words[_COUNT] > 0:
                if words[_STATE] in (_FILLING, _BROKEN):
                    words[_STATE] = _RESETTING
            else:
                words[_STATE] = _FILLING
            self.cond.notify_all()

    def abort(self) -> None:
        with self.cond:
            self._break()


@final
class Barrier:
    """A barrier for a fixed number of threads or processes, following the backend flag.

    Same contract as ``threading.Barrier``: :meth:`wait` blocks until
    ``parties`` callers wait, then releases them all; ``action`` runs in one
    of them first. On the process backend ``action`` travels with the
    barrier, pickled when the barrier is: lambdas work, and when the barrier
    goes to a process started for it (``spawn``, ``Process``) the action may
    hold what ``multiprocessing`` sends to a child (its locks,
    ``Connection``s, ``RawArray``/``Value``...).

    Args:
        parties: How many callers must wait.
        action: Called once per round by one of them, before they are released.
        timeout: Default timeout of :meth:`wait`.
        backend: ``"process"``, ``"thread"`` or ``"serial"``; None follows the configuration.

    Raises:
        ValueError: ``parties`` is not a whole number >= 1.
        ConfigError: The dask backend, which has no barrier.

    Examples:
        >>> import parallelkit
        >>> barrier = parallelkit.Barrier(1, backend="thread")
        >>> barrier.wait()
        0
    """

    __slots__ = ("__weakref__", "_action", "_backend", "_impl", "_offset", "_token")

    _impl: _ProcessBarrier | threading.Barrier
    _action: ChildParcel[Callable[[], object]] | None

    def __init__(
        self,
        parties: int,
        action: Callable[[], object] | None = None,
        timeout: float | None = None,
        *,
        backend: str | None = None,
    ) -> None:
        if isinstance(parties, bool) or not isinstance(parties, int) or parties < 1:
            raise ValueError(f"parties must be a whole number >= 1, got {parties!r}")
        settings = resolve(backend)
        if on_cluster(settings):
            raise not_on_cluster(
                settings,
                "Barrier",
                "distributed has no barrier; have the tasks return and wait for their "
                "futures, or count arrivals with a Value and wait for an Event",
            )
        self._backend = settings.backend
        if is_process(settings):
            self._action = (
                ChildParcel(action, "the action of a Barrier") if action is not None else None
            )
            segment, self._offset = allocate(ctypes.sizeof(ctypes.c_int) * 2)
            cond = condition_for(lock_for(settings))
            self._impl = _ProcessBarrier(parties, action, timeout, cond, segment, self._offset)
            self._token = segment.name + f"@{self._offset}"
        else:
            self._action = None
            self._impl = threading.Barrier(
                parties, cast("Callable[[], None] | None", action), timeout
            )
            self._token = new_token()
        remember(self._token, self)

    @property
    def backend(self) -> str:
        """The backend this object was made for."""
        return self._backend

    def wait(self, timeout: float | None = None) -> int:
        """Wait until all parties have called ``wait``.

        Args:
            timeout: Longest wait in seconds; None uses the barrier's default.

        Returns:
            A different index in ``range(parties)`` for each caller.

        Raises:
            threading.BrokenBarrierError: The barrier was broken, reset or
                aborted, or the timeout passed (which breaks it).
        """
        return self._impl.wait(timeout)

    def reset(self) -> None:
        """Return to the empty state; current waiters get ``BrokenBarrierError``."""
        self._impl.reset()

    def abort(self) -> None:
        """Break the barrier: current and future waiters get ``BrokenBarrierError``."""
        self._impl.abort()

    @property
    def parties(self) -> int:
        """The number of callers needed to pass the barrier."""
        return self._impl.parties

    @property
    def n_waiting(self) -> int:
        """The number of callers currently waiting."""
        impl = self._impl
        if isinstance(impl, threading.Barrier):
            return impl.n_waiting
        with impl.cond:
            return impl.words[_COUNT] if impl.words[_STATE] == _FILLING else 0

    @property
    def broken(self) -> bool:
        """Whether the barrier is broken."""
        impl = self._impl
        if isinstance(impl, threading.Barrier):
            return impl.broken
        return impl.words[_STATE] == _BROKEN

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        impl = self._impl
        if isinstance(impl, threading.Barrier):
            return local_reduce(self, self._token, "Barrier")
        return (
            _open_barrier,
            (
                self._token,
                self._backend,
                impl.parties,
                self._action,
                impl.timeout,
                impl.cond,
                impl.segment.name,
                self._offset,
            ),
        )

    def __repr__(self) -> str:
        return (
            f"<parallelkit.Barrier backend={self._backend!r} parties={self.parties} "
            f"n_waiting={self.n_waiting}>"
        )


@reopens
def _open_barrier(
    token: str,
    backend: str,
    parties: int,
    action_parcel: ChildParcel[Callable[[], object]] | None,
    timeout: float | None,
    cond: Condition,
    segment_name: str,
    offset: int,
) -> Barrier:
    barrier = Barrier.__new__(Barrier)
    barrier._backend = backend
    barrier._action = action_parcel
    barrier._offset = offset
    barrier._token = token
    action = action_parcel.value if action_parcel is not None else None
    segment = attach(segment_name, "Barrier")
    barrier._impl = _ProcessBarrier(parties, action, timeout, cond, segment, offset)
    return barrier
