"""``spawn(fn, *args, **kwargs)``: one function in its own process or thread.

Process backend::

    parent                                              child (fork / spawn / forkserver,
    ──────                                                     the configured start method)
    spawn(fn, *args) ── fn: dumps_function ─┐
                        args: dumps ────────┼──▶ multiprocessing.Process(_child_main, blobs, w)
                        (channels by name)  │         loads fn, args; runs fn
    Spawned.result() ◀── r ◀── one-way Pipe ┘◀─ w ─── dumps((True, value))
                                                      or (False, error envelope) + exit code 1
    Spawned.join()   waits on the child's sentinel *and* r, reading the result
                     as soon as it comes, so a large result never blocks the child

Thread and serial backends: a ``threading.Thread`` (the serial backend has
no concurrency of its own, and a spawned function often talks to its parent
through a Pipe or Queue, which needs the two to run at the same time).

The function and arguments are serialized exactly as :class:`Executor`'s
tasks are (lambdas and closures work; channels travel by name), and the
handle keeps the arguments alive until the child has finished, so a channel
created just for the call stays reachable while the child opens it.
"""

# spawn() fills in the handle it creates.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import multiprocessing
import threading
import time
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, Generic, TypeVar, cast, final

from ._backends._registry import crosses_processes
from ._config import resolve_settings
from ._engine import describe
from ._errors import WorkerCrashedError, describe_exit
from ._serialize import (
    ErrorEnvelope,
    dumps,
    dumps_function,
    envelope_from_exception,
    exception_from_envelope,
    loads,
    roundtrip,
)

__all__ = ("Spawned", "spawn")

R = TypeVar("R")

#: The outcome of a run: (True, value) or (False, exception).
_Outcome = tuple[bool, Any]


def _child_main(fn_blob: bytes, args_blob: bytes, out: Connection) -> None:
    """Body of a spawned process: run the function, send back its outcome."""
    try:
        fn = loads(fn_blob)
        args, kwargs = loads(args_blob)
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


class _ProcessRun:
    """A child process and the pipe its outcome comes back on."""

    __slots__ = ("__weakref__", "outcome", "proc", "reader")

    def __init__(self, proc: BaseProcess, reader: Connection) -> None:
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


class _ThreadRun:
    """A thread and its outcome."""

    __slots__ = ("done", "outcome", "thread")

    def __init__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], check: bool
    ) -> None:
        self.outcome: _Outcome | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(
            target=self._run,
            args=(fn, args, kwargs, check),
            name=f"parallelkit-spawn-{describe(fn)}",
        )

    def _run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], check: bool
    ) -> None:
        try:
            if check:
                fn = loads(dumps_function(fn))
                args, kwargs = roundtrip((args, kwargs))
            value = fn(*args, **kwargs)
            self.outcome = (True, roundtrip(value) if check else value)
        except BaseException as exc:  # raised again by result()
            self.outcome = (False, exc)
        finally:
            self.done.set()


@final
class Spawned(Generic[R]):
    """The handle of a function started by :func:`spawn`.

    Like ``multiprocessing.Process`` (``join``, ``is_alive``, ``exitcode``,
    ``pid``, ``terminate``) plus :meth:`result`, which returns the function's
    value or raises its exception with the child's traceback as ``__cause__``.
    Use it in a ``with`` block to join on exit.
    """

    __slots__ = ("__weakref__", "_backend", "_keep", "_label", "_run")

    _run: _ProcessRun | _ThreadRun
    _backend: str
    _label: str
    _keep: tuple[Any, ...] | None

    def __init__(self) -> None:
        raise TypeError("use parallelkit.spawn(fn, *args, **kwargs) to start a function")

    @property
    def backend(self) -> str:
        """The backend it runs on."""
        return self._backend

    @property
    def pid(self) -> int | None:
        """The child's process id (None on the thread backend)."""
        run = self._run
        return run.proc.pid if isinstance(run, _ProcessRun) else None

    @property
    def name(self) -> str:
        """The process or thread name."""
        run = self._run
        return run.proc.name if isinstance(run, _ProcessRun) else run.thread.name

    def join(self, timeout: float | None = None) -> None:
        """Wait until the function has finished.

        Args:
            timeout: Longest wait in seconds; None waits as long as it takes.
                Check :meth:`is_alive` afterwards to know which happened.
        """
        run = self._run
        if isinstance(run, _ProcessRun):
            finished = run.wait(timeout)
        else:
            run.thread.join(timeout)
            finished = not run.thread.is_alive()
        if finished:
            self._keep = None

    def is_alive(self) -> bool:
        """Return whether the function is still running."""
        run = self._run
        if isinstance(run, _ProcessRun):
            return run.proc.is_alive()
        return run.thread.is_alive()

    @property
    def exitcode(self) -> int | None:
        """The exit code: None while running, 0 if it returned, 1 if it raised.

        A process killed by signal N has ``-N``, as in ``multiprocessing``.
        """
        run = self._run
        if isinstance(run, _ProcessRun):
            return run.proc.exitcode
        if not run.done.is_set():
            return None
        return 0 if run.outcome is not None and run.outcome[0] else 1

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
        run = self._run
        outcome = run.result() if isinstance(run, _ProcessRun) else run.outcome
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
        run = self._run
        if isinstance(run, _ThreadRun):
            raise NotImplementedError(
                f"{self._label} runs in a thread, which cannot be terminated from outside; "
                "make the function return, e.g. when a parallelkit.Event is set"
            )
        run.proc.terminate()

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

    The process backend starts a ``multiprocessing`` process with the
    configured start method (``forkserver`` by default); the thread and
    serial backends start a thread. ``fn`` and the arguments are serialized
    as the Executor's tasks are: lambdas and closures work, and Queues,
    Pipes, Values, Arrays and locks passed as arguments are shared, not copied.

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
        pickle.PicklingError: On the process backend, ``fn`` or an argument
            cannot be serialized.

    Example:
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
    handle._keep = (fn, args, kwargs)
    if crosses_processes(settings.backend):
        fn_blob = dumps_function(fn)
        args_blob = dumps((args, kwargs))
        # typeshed's BaseContext lacks Process; every concrete context has it.
        context: Any = multiprocessing.get_context(settings.start_method)
        reader: Connection
        writer: Connection
        reader, writer = context.Pipe(duplex=False)
        proc: BaseProcess = context.Process(
            target=_child_main,
            args=(fn_blob, args_blob, writer),
            name=f"parallelkit-spawn-{describe(fn)}",
        )
        try:
            proc.start()
        except BaseException:
            reader.close()
            raise
        finally:
            writer.close()
        handle._run = _ProcessRun(proc, reader)
    else:
        run = _ThreadRun(fn, args, kwargs, settings.check_pickle)
        handle._run = run
        run.thread.start()
    return handle
