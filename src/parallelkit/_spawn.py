"""``Process`` and ``spawn(fn, *args, **kwargs)``: one function in its own process or thread.

:class:`Process` is the one runner; :func:`spawn` is a Process whose target
sends the function's outcome back to its :class:`Spawned` handle.

Process backend::

    parent                                            child (fork / spawn / forkserver,
    ──────                                                   the configured start method)
    Process(target, args)
      .start() ── multiprocessing.Process(_process_main, ChildParcel(process)).start()
                  pickles the parcel while it starts the child ──▶ _process_main(parcel):
                  (dumps_for_child: cloudpickle + multiprocessing's       process = parcel.value
                  reducers; under fork nothing is pickled)                process.run()
      .join() / .exitcode / .terminate() ◀── multiprocessing's own handle: 0 on return,
                                             1 on an exception (traceback on stderr),
                                             the code of sys.exit(n), -N if killed by signal N

    spawn(fn, *args) = Process(target=_spawned_main, args=(fn, args, kwargs, w)).start()
    Spawned.result() ◀── r ◀── one-way Pipe ◀── w ─── dumps((True, value))
                                                      or (False, error envelope) + exit code 1
    Spawned.join()   waits on the child's sentinel *and* r, reading the result
                     as soon as it comes, so a large result never blocks the child

Thread and serial backends: the Process is a ``threading.Thread``, as
``multiprocessing.dummy.Process`` is (the serial backend has no
concurrency of its own, and a Process usually talks to its parent through a
Pipe or Queue, which needs the two to run at the same time). ``spawn()``'s
outcome goes back in memory.

The target and arguments (and, for a subclass that overrides ``run``, the
Process object itself) cross as :class:`~parallelkit._serialize.ChildParcel`:
lambdas and closures work, parallelkit channels travel by name, and what
``multiprocessing``'s own pickler can send to a child crosses as it would.
"""

# Process and spawn() fill in one another's handles.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable, Mapping
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, Generic, TypeVar, cast, final

from ._backends._registry import crosses_processes
from ._config import Settings, resolve_settings
from ._engine import describe
from ._errors import WorkerCrashedError, describe_exit
from ._serialize import (
    ChildParcel,
    ErrorEnvelope,
    dumps,
    dumps_function,
    envelope_from_exception,
    exception_from_envelope,
    loads,
    roundtrip,
)

__all__ = ("Process", "Spawned", "spawn")

R = TypeVar("R")

#: The outcome of a run: (True, value) or (False, exception).
_Outcome = tuple[bool, Any]

#: Started processes of the process backend, kept (with their arguments, which
#: may hold channels the child opens by name) until they are seen to end.
_running: set[Process] = set()


def _process_main(parcel: ChildParcel[Process]) -> None:
    """Body of a Process's child: load the Process object and run it."""
    process = parcel.value
    process._handle = multiprocessing.current_process()
    process.run()


def _exit_status(code: object) -> int:
    """The exit code of ``sys.exit(code)``, as ``multiprocessing`` computes it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


class _ProcessThread(threading.Thread):
    """The thread of a Process on the thread and serial backends."""

    def __init__(self, owner: Process, name: str | None) -> None:
        super().__init__(name=name)
        self.owner = owner

    def run(self) -> None:
        self.owner._run_in_thread()


class Process:
    """A process, or a thread, following the backend flag: ``multiprocessing.Process``'s API.

    The constructor and members are ``multiprocessing.Process``'s: ``start()``,
    ``run()`` (override it in a subclass), ``join(timeout)``, ``is_alive()``,
    ``name``, ``daemon``, ``pid``/``ident``, ``exitcode``, ``terminate()``,
    ``kill()``, ``close()``, ``sentinel``. ``exitcode`` is 0 when ``run``
    returns, 1 when it raises (the traceback is printed to stderr, headed
    ``Process <name>:``), ``n`` after ``sys.exit(n)`` and, for a process,
    ``-N`` when it is killed by signal N. A non-daemon Process still running
    when the program ends is joined then; a daemon one is terminated
    (process) or abandoned (thread).

    On the process backend it is a ``multiprocessing`` process of the
    configured start method. The target and arguments (and the Process
    itself when a subclass overrides ``run``) travel with cloudpickle, so
    lambdas and closures work under every start method; parallelkit
    channels passed to it are shared, not copied; and what
    ``multiprocessing`` can send to a child (its locks, ``Connection``s,
    ``RawArray``/``Value``, ``SharedMemory``, sockets, ``DupFd``) is sent
    the same way. Under ``fork`` nothing is pickled: the child inherits
    them, as with ``multiprocessing``.

    On the thread and serial backends it is a thread, as
    ``multiprocessing.dummy.Process`` is (the serial backend too: a Process
    usually talks to its parent through a Pipe or Queue, which needs the two
    to run at the same time). A thread cannot be stopped from outside, so
    ``terminate()`` and ``kill()`` raise ``NotImplementedError``, and it has
    no ``sentinel`` (``NotImplementedError``); ``pid`` and ``ident`` are None.

    Misuse raises what ``multiprocessing`` raises, on every backend:
    ``AssertionError`` for a second ``start()`` or a ``join()`` before
    ``start()``, ``ValueError`` for ``close()`` while it runs or any use
    after ``close()``.

    Args:
        group: Must be None (as in ``multiprocessing``).
        target: Called by :meth:`run` with ``args`` and ``kwargs``.
        name: The name; None picks ``Process-N`` (process) or ``Thread-N`` (thread).
        args: Positional arguments of ``target``.
        kwargs: Keyword arguments of ``target``.
        daemon: Whether it is a daemon; None inherits the caller's.
        backend: ``"process"``, ``"thread"`` or ``"serial"``; None follows the
            configuration, like the Executor.

    Raises:
        ConfigError: The backend or start method (from any source) is invalid.
        AssertionError: ``group`` is not None.

    Examples:
        >>> import parallelkit
        >>> seen = parallelkit.Queue[int](backend="thread")
        >>> p = parallelkit.Process(target=seen.put, args=(42,), backend="thread")
        >>> p.start()
        >>> p.join()
        >>> seen.get(), p.exitcode
        (42, 0)
    """

    _handle: BaseProcess | threading.Thread | None

    def __init__(
        self,
        group: None = None,
        target: Callable[..., object] | None = None,
        name: str | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        daemon: bool | None = None,
        backend: str | None = None,
    ) -> None:
        if group is not None:
            raise AssertionError("group argument must be None for now")
        self._setup(resolve_settings(backend), target, name, args, kwargs, daemon, None)

    def _setup(
        self,
        settings: Settings,
        target: Callable[..., object] | None,
        name: str | None,
        args: Iterable[Any],
        kwargs: Mapping[str, Any] | None,
        daemon: bool | None,
        what: str | None,
    ) -> None:
        self._backend = settings.backend
        self._check_pickle = settings.check_pickle
        self._target = target
        self._args = tuple(args)
        self._kwargs = dict(kwargs or {})
        self._exitcode: int | None = None
        self._closed = False
        self._name: str | None = name
        self._daemon = daemon
        if crosses_processes(settings.backend):
            # typeshed's BaseContext lacks Process; every concrete context has it.
            context: Any = multiprocessing.get_context(settings.start_method)
            if what is None:
                what = f"{self._what()} (its target, arguments and attributes)"
            handle: BaseProcess = context.Process(
                target=_process_main, args=(ChildParcel(self, what),), name=name, daemon=daemon
            )
            if (
                name is None
            ):  # "Process-N", as multiprocessing.Process names it ("SpawnProcess-N"...)
                handle.name = "Process" + handle.name[len(type(handle).__name__) :]
            self._handle = handle
        else:
            thread = _ProcessThread(self, name)
            if daemon is not None:
                thread.daemon = daemon
            self._handle = thread

    @classmethod
    def _make(
        cls,
        settings: Settings,
        target: Callable[..., object],
        args: tuple[Any, ...],
        name: str,
        what: str,
    ) -> Process:
        """A Process for already resolved settings (no second look at the configuration)."""
        process = cls.__new__(cls)
        process._setup(settings, target, name, args, None, None, what)
        return process

    def _what(self) -> str:
        return f"process {self._name!r}" if self._name is not None else "a Process"

    # -- the child's side ------------------------------------------------------------------

    def run(self) -> None:
        """What the process or thread runs: ``target(*args, **kwargs)``; override it freely."""
        if self._target is not None:
            self._target(*self._args, **self._kwargs)

    def _run_in_thread(self) -> None:
        try:
            if self._check_pickle:
                copy: Process = roundtrip(self)
                copy._handle = threading.current_thread()
                copy.run()
            else:
                self.run()
        except SystemExit as exc:
            code = _exit_status(exc.code)
        except BaseException:  # reported as multiprocessing does, then exitcode 1
            sys.stderr.write(f"Process {self.name}:\n")
            traceback.print_exc()
            code = 1
        else:
            code = 0
        finally:
            sys.stderr.flush()
        self._exitcode = code

    def __getstate__(self) -> dict[str, Any]:
        # The handle stays here: the child gets its own (see _process_main).
        state = dict(self.__dict__)
        state["_handle"] = None
        state["_name"] = self.name
        state["_daemon"] = self.daemon
        return state

    # -- the parent's side -----------------------------------------------------------------

    def _check_closed(self) -> None:
        if self._closed:
            raise ValueError("process object is closed")

    def _live_handle(self) -> BaseProcess | threading.Thread:
        self._check_closed()
        handle = self._handle
        if handle is None:
            raise AssertionError("this Process object was copied to another process")
        return handle

    def _started(self, handle: BaseProcess | threading.Thread) -> bool:
        return (handle.pid if isinstance(handle, BaseProcess) else handle.ident) is not None

    def _ended(self) -> bool:
        """Whether a started process is known to have ended (or is closed)."""
        handle = self._handle
        return self._closed or not isinstance(handle, BaseProcess) or handle.exitcode is not None

    def start(self) -> None:
        """Start it: ``run()`` begins in the new process or thread.

        Raises:
            AssertionError: It was started already.
            ValueError: It is closed.
            pickle.PicklingError: On the process backend under spawn or
                forkserver, the target, an argument or (for a subclass) an
                attribute cannot be sent to the child.
        """
        handle = self._live_handle()
        if self._started(handle):
            raise AssertionError("cannot start a process twice")
        if isinstance(handle, BaseProcess):
            _running.difference_update([p for p in _running if p._ended()])
            handle.start()
            _running.add(self)
        else:
            handle.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait until it ends.

        Args:
            timeout: Longest wait in seconds; None waits as long as it takes.
                Check :meth:`is_alive` or :attr:`exitcode` to know which happened.

        Raises:
            AssertionError: It was not started.
            ValueError: It is closed.
        """
        handle = self._live_handle()
        if not self._started(handle):
            raise AssertionError("can only join a started process")
        handle.join(timeout)
        if isinstance(handle, BaseProcess) and handle.exitcode is not None:
            _running.discard(self)

    def is_alive(self) -> bool:
        """Return whether it has started and not yet ended.

        Raises:
            ValueError: It is closed.
        """
        return self._live_handle().is_alive()

    @property
    def name(self) -> str:
        """The name (it has no meaning beyond identification)."""
        handle = self._handle
        if handle is not None:
            return handle.name
        return self._name if self._name is not None else "Process"

    @name.setter
    def name(self, name: str) -> None:
        self._name = name
        if self._handle is not None:
            self._handle.name = name

    @property
    def daemon(self) -> bool:
        """Whether it is a daemon: not waited for at exit (terminated, for a process)."""
        handle = self._handle
        if handle is not None:
            return handle.daemon
        return bool(self._daemon)

    @daemon.setter
    def daemon(self, daemonic: bool) -> None:
        handle = self._live_handle()
        if self._started(handle):
            raise AssertionError("process has already started")
        handle.daemon = daemonic
        self._daemon = daemonic

    @property
    def pid(self) -> int | None:
        """The process id: None before start and on the thread and serial backends."""
        handle = self._live_handle()
        return handle.pid if isinstance(handle, BaseProcess) else None

    @property
    def ident(self) -> int | None:
        """Same as :attr:`pid`, as in ``multiprocessing``."""
        return self.pid

    @property
    def exitcode(self) -> int | None:
        """None while it runs (or before start), else its exit code.

        0 when ``run`` returned, 1 when it raised, ``n`` after ``sys.exit(n)``;
        ``-N`` when a process was killed by signal N.
        """
        handle = self._live_handle()
        if isinstance(handle, BaseProcess):
            return handle.exitcode
        return self._exitcode if not handle.is_alive() else None

    @property
    def sentinel(self) -> int:
        """A descriptor that becomes ready when the process ends (process backend only).

        Raises:
            NotImplementedError: On the thread and serial backends.
            ValueError: The process was not started, or is closed.
        """
        handle = self._live_handle()
        if not isinstance(handle, BaseProcess):
            raise NotImplementedError(
                f"{self._what()} runs in a thread (backend={self._backend!r}), which has no "
                "sentinel; wait with join(timeout) or is_alive(), or use the process backend"
            )
        return handle.sentinel

    def _cannot_stop(self) -> NotImplementedError:
        return NotImplementedError(
            f"{self._what()} runs in a thread (backend={self._backend!r}), which cannot be "
            "terminated from outside; make run() return, e.g. when a parallelkit.Event is set"
        )

    def terminate(self) -> None:
        """Stop the process with SIGTERM.

        Raises:
            NotImplementedError: On the thread and serial backends: a thread
                cannot be stopped from outside.
        """
        handle = self._live_handle()
        if not isinstance(handle, BaseProcess):
            raise self._cannot_stop()
        handle.terminate()

    def kill(self) -> None:
        """Stop the process with SIGKILL.

        Raises:
            NotImplementedError: On the thread and serial backends.
        """
        handle = self._live_handle()
        if not isinstance(handle, BaseProcess):
            raise self._cannot_stop()
        handle.kill()

    def close(self) -> None:
        """Release what it holds; most members raise ``ValueError`` afterwards.

        Raises:
            ValueError: It is still running.
        """
        if self._closed:
            return
        handle = self._live_handle()
        if isinstance(handle, BaseProcess):
            handle.close()
            _running.discard(self)
        elif handle.is_alive():
            raise ValueError(
                "Cannot close a process while it is still running. "
                "You should first call join() or terminate()."
            )
        self._closed = True

    def __repr__(self) -> str:
        if self._closed:
            return f"<parallelkit.{type(self).__name__} name={self.name!r} closed>"
        handle = self._handle
        parts = [f"name={self.name!r}", f"backend={self._backend!r}"]
        if handle is None or not self._started(handle):
            parts.append("initial")
        else:
            if self.pid is not None:
                parts.append(f"pid={self.pid}")
            code = self.exitcode
            parts.append("started" if code is None else f"stopped exitcode={code}")
        if self.daemon:
            parts.append("daemon")
        return f"<parallelkit.{type(self).__name__} {' '.join(parts)}>"


# -- spawn() -------------------------------------------------------------------------------


#: What a spawned function receives: the function, its arguments, its keyword arguments.
_Call = tuple[Callable[..., object], tuple[Any, ...], dict[str, Any]]


def _spawned_main(call: ChildParcel[_Call], out: Connection) -> None:
    """Target of a spawned process: run the function, send back its outcome."""
    try:
        fn, args, kwargs = call.value  # in the try: a failure to load is reported too
        value = fn(*args, **kwargs)
    except BaseException as exc:  # reported to the parent, which raises it
        blob = dumps((False, envelope_from_exception(exc)))
        failed = True
    else:
        failed = False
        try:
            blob = dumps((True, value))
        except BaseException as exc:  # the result cannot cross: say why
            problem = TypeError(
                f"the result of type {type(value).__qualname__} cannot be pickled: {exc}"
            )
            blob = dumps((False, envelope_from_exception(problem)))
            failed = True
    try:
        out.send_bytes(blob)
    finally:
        out.close()
    if failed:
        raise SystemExit(1)


class _Box:
    """Where a spawned thread leaves its outcome."""

    __slots__ = ("outcome",)

    def __init__(self) -> None:
        self.outcome: _Outcome | None = None


def _spawned_in_thread(
    fn: Callable[..., object],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    box: _Box,
    check: bool,
) -> None:
    """Target of a spawned thread: run the function, keep its outcome."""
    try:
        if check:
            fn = loads(dumps_function(fn))
            args, kwargs = roundtrip((args, kwargs))
        value = fn(*args, **kwargs)
        box.outcome = (True, roundtrip(value) if check else value)
    except BaseException as exc:  # raised again by result()
        box.outcome = (False, exc)
        raise SystemExit(1) from None


class _ResultReader:
    """The pipe a spawned process's outcome comes back on, read while waiting for it."""

    __slots__ = ("__weakref__", "outcome", "proc", "reader")

    def __init__(self, proc: Process, reader: Connection) -> None:
        self.proc = proc
        self.reader: Connection | None = reader
        self.outcome: bytes | None = None
        weakref.finalize(self, reader.close)

    def _read_ready(self) -> None:
        reader = self.reader
        if reader is None or self.outcome is not None:
            return
        try:
            if reader.poll(0):
                self.outcome = reader.recv_bytes()
        except (EOFError, OSError):
            pass

    def wait(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        proc = self.proc
        while True:
            self._read_ready()
            if proc.exitcode is not None:
                self._read_ready()
                proc.join()
                if self.reader is not None:
                    self.reader.close()
                    self.reader = None
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            ready: list[Any] = [proc.sentinel]
            if self.reader is not None and self.outcome is None:
                ready.append(self.reader)
            wait(ready, left)

    def result(self) -> _Outcome | None:
        if self.outcome is None:
            return None
        ok, payload = loads(self.outcome)
        if ok:
            return (True, payload)
        envelope: ErrorEnvelope = payload
        return (False, exception_from_envelope(envelope))


@final
class Spawned(Generic[R]):
    """The handle of a function started by :func:`spawn`.

    Like ``multiprocessing.Process`` (``join``, ``is_alive``, ``exitcode``,
    ``pid``, ``terminate``) plus :meth:`result`, which returns the function's
    value or raises its exception with the child's traceback as ``__cause__``.
    Use it in a ``with`` block to join on exit.

    Examples:
        >>> import parallelkit
        >>> with parallelkit.spawn(divmod, 7, 2, backend="thread") as job:
        ...     print(job.result(), job.backend)
        (3, 1) thread
        >>> job.is_alive()
        False
    """

    __slots__ = ("__weakref__", "_backend", "_box", "_label", "_process", "_reader")

    _process: Process
    _reader: _ResultReader | None
    _box: _Box | None
    _backend: str
    _label: str

    def __init__(self) -> None:
        raise TypeError("use parallelkit.spawn(fn, *args, **kwargs) to start a function")

    @property
    def backend(self) -> str:
        """The backend it runs on."""
        return self._backend

    @property
    def pid(self) -> int | None:
        """The child's process id (None on the thread backend)."""
        return self._process.pid

    @property
    def name(self) -> str:
        """The process or thread name."""
        return self._process.name

    def join(self, timeout: float | None = None) -> None:
        """Wait until the function has finished.

        Args:
            timeout: Longest wait in seconds; None waits as long as it takes.
                Check :meth:`is_alive` afterwards to know which happened.
        """
        if self._reader is not None:
            self._reader.wait(timeout)
        else:
            self._process.join(timeout)

    def is_alive(self) -> bool:
        """Return whether the function is still running."""
        return self._process.is_alive()

    @property
    def exitcode(self) -> int | None:
        """The exit code: None while running, 0 if it returned, 1 if it raised.

        A process killed by signal N has ``-N``, as in ``multiprocessing``.
        """
        return self._process.exitcode

    def result(self, timeout: float | None = None) -> R:
        """Wait for the function and return its value, or raise its exception.

        Args:
            timeout: Longest wait in seconds; None waits as long as it takes.

        Returns:
            What the function returned.

        Raises:
            TimeoutError: It is still running after ``timeout`` seconds.
            WorkerCrashedError: The process died without returning (killed,
                ``os._exit``...).
            Exception: Whatever the function raised, with the child's
                traceback as ``__cause__`` on the process backend.
        """
        self.join(timeout)
        if self.is_alive():
            raise TimeoutError(f"{self._label} is still running after {timeout} seconds")
        if self._reader is not None:
            outcome = self._reader.result()
        else:
            assert self._box is not None
            outcome = self._box.outcome
        if outcome is None:
            code = self.exitcode
            raise WorkerCrashedError(
                f"the spawned process pid {self.pid} died with {describe_exit(code)} while "
                f"running {self._label}, before returning",
                pid=self.pid or 0,
                exitcode=code,
                task=self._label,
            )
        ok, value = outcome
        if ok:
            result: R = value
            return result
        raise value

    def terminate(self) -> None:
        """Stop the process with SIGTERM, as ``multiprocessing.Process.terminate``.

        Raises:
            NotImplementedError: On the thread backend: a thread cannot be
                stopped from outside; make the function return (for example
                when an :class:`Event` is set).
        """
        if self._reader is None:
            raise NotImplementedError(
                f"{self._label} runs in a thread, which cannot be terminated from outside; "
                "make the function return, e.g. when a parallelkit.Event is set"
            )
        self._process.terminate()

    def __enter__(self) -> Spawned[R]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.join()

    def __repr__(self) -> str:
        state = "running" if self.is_alive() else f"exitcode={self.exitcode}"
        pid = f" pid={self.pid}" if self.pid is not None else ""
        return f"<parallelkit.Spawned {self._label} backend={self._backend!r}{pid} {state}>"


def spawn(
    fn: Callable[..., R], /, *args: Any, backend: str | None = None, **kwargs: Any
) -> Spawned[R]:
    """Run ``fn(*args, **kwargs)`` in a new process or thread, following the backend flag.

    A :class:`Process` whose outcome comes back: the process backend starts
    a ``multiprocessing`` process with the configured start method
    (``forkserver`` by default); the thread and serial backends start a
    thread. ``fn`` and the arguments cross as a Process's do: lambdas and
    closures work, Queues, Pipes, Values, Arrays and locks passed as
    arguments are shared, not copied, and so are ``multiprocessing``'s own
    locks, connections and shared memory.

    Args:
        fn: The function.
        *args: Its positional arguments.
        backend: ``"process"``, ``"thread"`` or ``"serial"``; None follows the
            configuration, like the Executor. (It is taken by ``spawn``, not
            passed to ``fn``.)
        **kwargs: Its keyword arguments.

    Returns:
        The handle: ``join()``, ``is_alive()``, ``exitcode``, ``result()``,
        ``terminate()``.

    Raises:
        ConfigError: The backend or start method (from any source) is invalid.
        pickle.PicklingError: On the process backend under spawn or
            forkserver, ``fn`` or an argument cannot be serialized.

    Examples:
        >>> import parallelkit
        >>> job = parallelkit.spawn(pow, 2, 10, backend="thread")
        >>> job.result()
        1024
        >>> job.exitcode
        0
    """
    settings = resolve_settings(backend)
    handle = cast("Spawned[R]", object.__new__(Spawned))
    handle._backend = settings.backend
    handle._label = f"spawn(fn={describe(fn)})"
    name = f"parallelkit-spawn-{describe(fn)}"
    if crosses_processes(settings.backend):
        context: Any = multiprocessing.get_context(settings.start_method)
        reader: Connection
        writer: Connection
        reader, writer = context.Pipe(duplex=False)
        call: _Call = (fn, args, kwargs)
        what = f"the function and arguments of {handle._label}"
        parcel = ChildParcel(call, what)
        process = Process._make(settings, _spawned_main, (parcel, writer), name, what)
        try:
            process.start()
        except BaseException:
            reader.close()
            raise
        finally:
            writer.close()
        handle._reader = _ResultReader(process, reader)
        handle._box = None
    else:
        box = _Box()
        quiet = settings._replace(check_pickle=False)  # the target checks, not the Process
        target = (fn, args, kwargs, box, settings.check_pickle)
        process = Process._make(quiet, _spawned_in_thread, target, name, handle._label)
        handle._reader = None
        handle._box = box
        process.start()
    handle._process = process
    return handle
