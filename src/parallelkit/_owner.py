"""What the two faces share: building the engine, ``repr``, and the leak warning."""

from __future__ import annotations

import contextlib
import importlib
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar, overload

from ._backends._base import BackendOptions
from ._backends._registry import backend_names, runs_on_cluster
from ._config import Settings, config, resolve_settings, workers_source
from ._engine import Engine
from ._errors import ConfigError

if TYPE_CHECKING:
    import ctypes
    from ctypes import _SimpleCData  # pyright: ignore[reportPrivateUsage]

    from . import _channels
    from ._channels._types import FloatCode, IntCode
    from ._channels._types import T as _ItemT
else:

    class _LazyModule:
        """``parallelkit._channels``, imported on first use (executors rarely need it)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(importlib.import_module("._channels", __package__), name)

    _channels = _LazyModule()

__all__ = ("EngineOwner",)

_V = TypeVar("_V")
_S = TypeVar("_S", bound="ctypes.Structure | ctypes.Union")
#: What ``lock=`` of Value and Array accepts.
_LockArg: TypeAlias = "bool | _channels.Lock | _channels.RLock | None"


def _check_cluster_options(
    settings: Settings, workers: int | None, address: str | None, client: Any, workers_name: str
) -> None:
    """Refuse options that do not fit together with the backend in force.

    Raises:
        ConfigError: ``client=`` or ``address=`` with another backend than
            dask, or a number of workers where the cluster decides it (an
            explicit ``workers`` meeting an address from the configuration
            is ignored instead).
    """
    if not runs_on_cluster(settings.backend):
        for name, given in (("client", client), ("address", address)):
            if given is not None:
                clusters = " or ".join(repr(n) for n in backend_names() if runs_on_cluster(n))
                raise ConfigError(
                    f"{name}= runs work on a cluster, but the backend is "
                    f"{settings.backend!r}; pass backend={clusters} too"
                )
        return
    if client is None and settings.address is None:
        return
    # The same call giving both, or a configuration setting both, is a mistake. Code
    # written for any backend (Executor(workers=4)) that meets a configured address
    # is not: the flag must be the only change, and the cluster decides.
    source = workers_source(workers)
    in_code = address is not None or client is not None
    if source is not None and (in_code or workers is None):
        where = "client= was given" if client is not None else f"address={settings.address!r}"
        raise ConfigError(
            f"{workers_name} (from {source}) cannot be set when {where}: the cluster decides "
            "how many workers it has; leave it unset, or scale the cluster itself"
        )


class EngineOwner:
    """Base of :class:`~parallelkit.Executor` and :class:`~parallelkit.Pool`."""

    _engine: Engine

    def _here(self) -> contextlib.AbstractContextManager[object]:
        """The configuration for this owner's channels: its own cluster's, if it has one."""
        engine = self._engine
        if engine.channel_settings is engine.settings:
            return contextlib.nullcontext()
        return config(address=engine.channel_settings.address)

    def _start_engine(
        self,
        backend: str | None,
        workers: int | None,
        start_method: str | None,
        initializer: Callable[..., object] | None,
        initargs: Iterable[Any],
        max_tasks_per_worker: int | None,
        task_timeout: float | None,
        check_pickle: bool | None,
        *,
        workers_name: str = "workers",
        max_tasks_name: str = "max_tasks_per_worker",
        address: str | None = None,
        client: Any = None,
    ) -> None:
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
        ):
            raise ValueError(f"{workers_name} must be a whole number >= 1 or None, got {workers!r}")
        if max_tasks_per_worker is not None and (
            isinstance(max_tasks_per_worker, bool)
            or not isinstance(max_tasks_per_worker, int)
            or max_tasks_per_worker < 1
        ):
            raise ValueError(
                f"{max_tasks_name} must be a whole number >= 1 or None, "
                f"got {max_tasks_per_worker!r}"
            )
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable or None, got {initializer!r}")
        settings = resolve_settings(backend, workers, start_method, check_pickle, address)
        _check_cluster_options(settings, workers, address, client, workers_name)
        options = BackendOptions(initializer, tuple(initargs), max_tasks_per_worker, client)
        self._engine = Engine(settings, options, task_timeout, type(self).__name__)

    @property
    def backend(self) -> str:
        """The backend in use: ``"process"``, ``"thread"``, ``"serial"``."""
        return self._engine.settings.backend

    @property
    def workers(self) -> int:
        """The number of workers (1 for the serial backend)."""
        return self._engine.backend.workers

    @property
    def start_method(self) -> str | None:
        """The start method of the process backend; None for the others."""
        return self._engine.backend.start_method

    def __repr__(self) -> str:
        engine = getattr(self, "_engine", None)
        if engine is None:
            return f"<parallelkit.{type(self).__name__} (not started)>"
        method = f" start_method={self.start_method!r}" if self.start_method else ""
        return (
            f"<parallelkit.{type(self).__name__} backend={self.backend!r} "
            f"workers={self.workers}{method} state={engine.state!r}>"
        )

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is None or engine.released:
            return
        warnings.warn(
            f"{self!r} was garbage-collected without being shut down; its workers were "
            "stopped. Use it in a 'with' block or call shutdown()/close()+join().",
            ResourceWarning,
            stacklevel=2,
        )
        engine.terminate()

    # -- channels of this owner's backend ---------------------------------------------------
    # Queues, Pipes, Values, Arrays and sync primitives made here are of this executor's
    # (or pool's) backend, and of its check_pickle, whatever the configuration says where
    # they are made. They are implemented in parallelkit._channels.

    def Queue(self, maxsize: int = 0) -> _channels.Queue[_ItemT]:
        """Make a :class:`~parallelkit.Queue` of this owner's backend.

        Args:
            maxsize: Most items held at once; 0 means unbounded.

        Returns:
            The queue; pass it to tasks as an ordinary argument.

        Examples:
            >>> import parallelkit
            >>> with parallelkit.Executor("thread", 2) as ex:
            ...     q = ex.Queue()
            ...     ex.submit(q.put, 42).result()
            ...     q.get()
            42
        """
        return _channels.make_queue(self._engine.channel_settings, maxsize)

    def JoinableQueue(self, maxsize: int = 0) -> _channels.JoinableQueue[_ItemT]:
        """Make a :class:`~parallelkit.JoinableQueue` of this owner's backend.

        Args:
            maxsize: Most items held at once; 0 means unbounded.

        Returns:
            The queue; pass it to tasks as an ordinary argument.
        """
        return _channels.make_joinable_queue(self._engine.channel_settings, maxsize)

    @overload
    def Pipe(
        self, duplex: Literal[True] = True
    ) -> tuple[_channels.Connection[_ItemT], _channels.Connection[_ItemT]]: ...
    @overload
    def Pipe(
        self, duplex: Literal[False]
    ) -> tuple[_channels.Receiver[_ItemT], _channels.Sender[_ItemT]]: ...
    @overload
    def Pipe(self, duplex: bool) -> tuple[_channels.Receiver[_ItemT], _channels.Sender[_ItemT]]: ...
    def Pipe(self, duplex: bool = True) -> Any:
        """Make the two ends of a :class:`~parallelkit.Pipe` of this owner's backend.

        Args:
            duplex: Two :class:`~parallelkit.Connection` ends (True), or
                ``(receiver, sender)`` (False).

        Returns:
            The two ends.
        """
        return _channels.make_pipe(self._engine.channel_settings, duplex)

    @overload
    def Value(
        self,
        typecode_or_type: type[bool] | Literal["?"],
        value: bool = ...,
        /,
        *,
        lock: _LockArg = True,
    ) -> _channels.Value[bool]: ...
    @overload
    def Value(
        self, typecode_or_type: type[int] | IntCode, value: int = ..., /, *, lock: _LockArg = True
    ) -> _channels.Value[int]: ...
    @overload
    def Value(
        self,
        typecode_or_type: type[float] | FloatCode,
        value: float = ...,
        /,
        *,
        lock: _LockArg = True,
    ) -> _channels.Value[float]: ...
    @overload
    def Value(
        self,
        typecode_or_type: type[bytes] | Literal["c"],
        value: bytes = ...,
        /,
        *,
        lock: _LockArg = True,
    ) -> _channels.Value[bytes]: ...
    @overload
    def Value(
        self,
        typecode_or_type: type[str] | Literal["u"],
        value: str = ...,
        /,
        *,
        lock: _LockArg = True,
    ) -> _channels.Value[str]: ...
    @overload
    def Value(
        self, typecode_or_type: type[_SimpleCData[_V]], value: _V = ..., /, *, lock: _LockArg = True
    ) -> _channels.Value[_V]: ...
    @overload
    def Value(
        self, typecode_or_type: type[_S], /, *args: Any, lock: _LockArg = True
    ) -> _channels.Value[_S]: ...
    def Value(self, typecode_or_type: Any, /, *args: Any, lock: _LockArg = True) -> Any:
        """Make a :class:`~parallelkit.Value` of this owner's backend.

        Args:
            typecode_or_type: What it holds (as for :class:`~parallelkit.Value`).
            *args: The initial value.
            lock: True (or None), False, or a lock of this backend.

        Returns:
            The shared value.
        """
        with self._here():
            return _channels.Value(
                typecode_or_type, *args, lock=lock, backend=self._engine.settings.backend
            )

    @overload
    def Array(
        self,
        typecode_or_type: type[bool] | Literal["?"],
        size_or_initializer: int | Iterable[bool],
        /,
        *,
        lock: _LockArg = True,
    ) -> _channels.Array[bool]: ...
    @overload
    def Array(
        self,
        typecode_or_type: type[int] | IntCode,
        size_or_initializer: int | Iterable[int],
        /,
        *,
        lock: _LockArg = True,
    ) -> _channels.Array[int]: ...
    @overload
    def Array(
        self,
        typecode_or_type: type[float] | FloatCode,
        size_or_initializer: int | Iterable[float],
        /,
        *,
        lock: _LockArg = True,
    ) -> _channels.Array[float]: ...
    @overload
    def Array(
        self,
        typecode_or_type: type[bytes] | Literal["c"],
        size_or_initializer: int | bytes,
        /,
        *,
        lock: _LockArg = True,
    ) -> _channels.Array[bytes]: ...
    @overload
    def Array(
        self,
        typecode_or_type: type[str] | Literal["u"],
        size_or_initializer: int | str,
        /,
        *,
        lock: _LockArg = True,
    ) -> _channels.Array[str]: ...
    @overload
    def Array(
        self,
        typecode_or_type: type[_SimpleCData[_V]],
        size_or_initializer: int | Iterable[_V],
        /,
        *,
        lock: _LockArg = True,
    ) -> _channels.Array[_V]: ...
    @overload
    def Array(
        self,
        typecode_or_type: type[_S],
        size_or_initializer: int | Iterable[_S | tuple[Any, ...]],
        /,
        *,
        lock: _LockArg = True,
    ) -> _channels.Array[_S]: ...
    def Array(
        self, typecode_or_type: Any, size_or_initializer: Any, /, *, lock: _LockArg = True
    ) -> Any:
        """Make an :class:`~parallelkit.Array` of this owner's backend.

        Args:
            typecode_or_type: The element type (as for :class:`~parallelkit.Array`).
            size_or_initializer: The length, or the initial elements.
            lock: True (or None), False, or a lock of this backend.

        Returns:
            The shared array.
        """
        with self._here():
            return _channels.Array(
                typecode_or_type,
                size_or_initializer,
                lock=lock,
                backend=self._engine.settings.backend,
            )

    def Lock(self) -> _channels.Lock:
        """Make a :class:`~parallelkit.Lock` of this owner's backend."""
        with self._here():
            return _channels.Lock(backend=self._engine.settings.backend)

    def RLock(self) -> _channels.RLock:
        """Make an :class:`~parallelkit.RLock` of this owner's backend."""
        with self._here():
            return _channels.RLock(backend=self._engine.settings.backend)

    def Semaphore(self, value: int = 1) -> _channels.Semaphore:
        """Make a :class:`~parallelkit.Semaphore` of this owner's backend."""
        with self._here():
            return _channels.Semaphore(value, backend=self._engine.settings.backend)

    def BoundedSemaphore(self, value: int = 1) -> _channels.BoundedSemaphore:
        """Make a :class:`~parallelkit.BoundedSemaphore` of this owner's backend."""
        with self._here():
            return _channels.BoundedSemaphore(value, backend=self._engine.settings.backend)

    def Condition(
        self, lock: _channels.Lock | _channels.RLock | None = None
    ) -> _channels.Condition:
        """Make a :class:`~parallelkit.Condition` of this owner's backend."""
        with self._here():
            return _channels.Condition(lock, backend=self._engine.settings.backend)

    def Event(self) -> _channels.Event:
        """Make an :class:`~parallelkit.Event` of this owner's backend."""
        with self._here():
            return _channels.Event(backend=self._engine.settings.backend)

    def Barrier(
        self, parties: int, action: Callable[[], object] | None = None, timeout: float | None = None
    ) -> _channels.Barrier:
        """Make a :class:`~parallelkit.Barrier` of this owner's backend."""
        with self._here():
            return _channels.Barrier(
                parties, action, timeout, backend=self._engine.settings.backend
            )
