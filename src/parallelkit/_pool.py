"""The ``multiprocessing.Pool`` face: :class:`Pool` and :class:`AsyncResult`."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Callable, Iterable, Mapping
from multiprocessing.context import BaseContext
from types import TracebackType
from typing import Any, Generic, TypeVar, final

from ._backends._modes import MAP, STAR
from ._engine import Engine, describe
from ._errors import ClosedError
from ._owner import EngineOwner
from ._progress import Progress, ProgressArg, check_progress, start_progress
from ._results import ResultIterator
from ._signals import SigtermInterrupts
from ._timed import unwrap

__all__ = ("AsyncResult", "Pool")

T = TypeVar("T")
S = TypeVar("S")


@final
class AsyncResult(Generic[T]):
    """The pending result of ``apply_async`` / ``map_async`` / ``starmap_async``.

    Behaves like ``multiprocessing.pool.AsyncResult``; :attr:`future` gives
    the underlying ``concurrent.futures.Future`` for ``asyncio.wrap_future``,
    ``concurrent.futures.wait`` and friends.

    Examples:
        >>> import parallelkit
        >>> with parallelkit.Pool(2, backend="thread") as pool:
        ...     result = pool.apply_async(divmod, (7, 2))
        ...     print(result.get(timeout=5), result.ready(), result.successful())
        (3, 1) True True
    """

    __slots__ = ("_engine", "future")

    def __init__(
        self,
        engine: Engine,
        future: concurrent.futures.Future[T],
        callback: Callable[[T], object] | None,
        error_callback: Callable[[BaseException], object] | None,
    ) -> None:
        self._engine = engine
        self.future: concurrent.futures.Future[T] = future
        if callback is not None or error_callback is not None:

            def call_back(done: concurrent.futures.Future[T]) -> None:
                if done.cancelled():
                    return
                exc = done.exception()
                if exc is None:
                    if callback is not None:
                        callback(done.result())
                elif error_callback is not None:
                    error_callback(exc)

            future.add_done_callback(call_back)

    def get(self, timeout: float | None = None) -> T:
        """Return the result, or raise the task's exception.

        Args:
            timeout: Seconds to wait; None waits as long as it takes.

        Returns:
            The result.

        Raises:
            multiprocessing.TimeoutError: ``timeout`` passed first.
            KeyboardInterrupt: Ctrl-C (or SIGTERM) while waiting; the task's
                running work is stopped.
        """
        future = self.future
        try:
            with SigtermInterrupts():
                return future.result(timeout)
        except KeyboardInterrupt:
            self._engine.stop_future(future, "interrupted")
            raise
        except concurrent.futures.TimeoutError:
            if future.done():
                raise  # the task's own TimeoutError (or TaskTimeoutError)
            raise multiprocessing.TimeoutError(
                f"the result was not ready within {timeout}s"
            ) from None
        finally:
            # A task's exception carries this frame in its traceback, and the
            # future holds the exception: without this, the two would keep
            # each other, and the pool, alive until the garbage collector runs.
            del self, future

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the result is ready or ``timeout`` seconds have passed."""
        concurrent.futures.wait([self.future], timeout)

    def cancel(self, *, kill: bool = False) -> bool:
        """Cancel the call if it has not started; with ``kill``, also if it runs.

        Killing stops the worker process running it (process backend only;
        the pool replaces the worker); the result then raises
        ``concurrent.futures.CancelledError``.

        Returns:
            True if the call will not deliver a result.
        """
        return self._engine.cancel(self.future, kill)

    def ready(self) -> bool:
        """Return whether the call has completed."""
        return self.future.done()

    def successful(self) -> bool:
        """Return whether the call completed without raising.

        Raises:
            ValueError: The result is not ready.
        """
        if not self.future.done():
            raise ValueError(f"{self!r} not ready")
        return not self.future.cancelled() and self.future.exception() is None


@final
class Pool(EngineOwner):
    """A drop-in for ``multiprocessing.Pool`` whose backend is one flag.

    Same signatures and return types as ``multiprocessing.Pool``; ``backend``
    and the other keyword-only arguments are parallelkit's additions. Lambdas
    and closures work; ``imap``/``imap_unordered`` read their input lazily; a
    dead worker fails its task instead of hanging the pool.

    Args:
        processes: Number of workers; None reads the configuration, then the
            number of CPUs this process may use.
        initializer: Called once in each worker before its first task.
        initargs: Arguments for ``initializer``.
        maxtasksperchild: Replace a worker after it ran this many chunks.
        context: A ``multiprocessing`` context; its start method is used.
        backend: ``"process"``, ``"thread"``, ``"serial"`` or ``"dask"``; None
            reads the configuration.
        start_method: Start method of the process backend (instead of ``context``).
        task_timeout: Default time limit in seconds for each task.
        check_pickle: On the thread and serial backends, send tasks and
            results through the serializer, as processes would.
        address: The dask backend's scheduler; None reads the configuration,
            then starts a cluster on this machine that closes with the pool.
        client: A ``distributed.Client`` to run on (dask backend).

    Examples:
        >>> import parallelkit
        >>> with parallelkit.Pool(2, backend="thread") as pool:
        ...     pool.map(lambda x: x * x, range(5))
        [0, 1, 4, 9, 16]
    """

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: BaseContext | None = None,
        *,
        backend: str | None = None,
        start_method: str | None = None,
        task_timeout: float | None = None,
        check_pickle: bool | None = None,
        address: str | None = None,
        client: Any = None,
    ) -> None:
        if context is not None and start_method is None:
            start_method = context.get_start_method()
        self._start_engine(
            backend,
            processes,
            start_method,
            initializer,
            initargs,
            maxtasksperchild,
            task_timeout,
            check_pickle,
            workers_name="processes",
            max_tasks_name="maxtasksperchild",
            address=address,
            client=client,
        )

    # -- one call -----------------------------------------------------------------------

    def apply(
        self,
        func: Callable[..., T],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] = {},
        *,
        task_timeout: float | None = None,
    ) -> T:
        """Call ``func(*args, **kwds)`` in a worker and return its result.

        Examples:
            >>> import parallelkit
            >>> with parallelkit.Pool(backend="serial") as pool:
            ...     pool.apply(divmod, (7, 2))
            (3, 1)
        """
        return self.apply_async(func, args, kwds, task_timeout=task_timeout).get()

    def apply_async(
        self,
        func: Callable[..., T],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] = {},
        callback: Callable[[T], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        *,
        task_timeout: float | None = None,
    ) -> AsyncResult[T]:
        """Schedule ``func(*args, **kwds)``; return an :class:`AsyncResult`.

        ``callback`` gets the result, ``error_callback`` the exception; both
        run in a background thread of this process.
        """
        fn, limit = unwrap(func, task_timeout)
        future = self._engine.submit(fn, tuple(args), dict(kwds), limit)
        return AsyncResult(self._engine, future, callback, error_callback)

    # -- whole lists --------------------------------------------------------------------

    def map(
        self,
        func: Callable[[S], T],
        iterable: Iterable[S],
        chunksize: int | None = None,
        *,
        task_timeout: float | None = None,
        progress: ProgressArg = False,
    ) -> list[T]:
        """Return ``[func(x) for x in iterable]``, computed in parallel.

        ``progress`` shows a tqdm bar (True, or a dict of tqdm options) or
        calls ``fn(done, total)`` as chunks finish; see the docs.

        Examples:
            >>> import parallelkit
            >>> with parallelkit.Pool(2, backend="thread") as pool:
            ...     pool.map(str.upper, ["a", "b"])
            ['A', 'B']
        """
        return self._map_wait(func, iterable, MAP, chunksize, task_timeout, "map", progress)

    def map_async(
        self,
        func: Callable[[S], T],
        iterable: Iterable[S],
        chunksize: int | None = None,
        callback: Callable[[list[T]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        *,
        task_timeout: float | None = None,
        progress: ProgressArg = False,
    ) -> AsyncResult[list[T]]:
        """Like :meth:`map`, returning an :class:`AsyncResult` of the list.

        A ``progress`` callable is called from the thread that delivers the
        results, as ``callback`` is.
        """
        return self._map_async(
            func, iterable, MAP, chunksize, callback, error_callback, task_timeout, "map", progress
        )[0]

    def starmap(
        self,
        func: Callable[..., T],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        *,
        task_timeout: float | None = None,
        progress: ProgressArg = False,
    ) -> list[T]:
        """Return ``[func(*args) for args in iterable]``, computed in parallel."""
        return self._map_wait(func, iterable, STAR, chunksize, task_timeout, "starmap", progress)

    def starmap_async(
        self,
        func: Callable[..., T],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        callback: Callable[[list[T]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        *,
        task_timeout: float | None = None,
        progress: ProgressArg = False,
    ) -> AsyncResult[list[T]]:
        """Like :meth:`starmap`, returning an :class:`AsyncResult` of the list."""
        return self._map_async(
            func,
            iterable,
            STAR,
            chunksize,
            callback,
            error_callback,
            task_timeout,
            "starmap",
            progress,
        )[0]

    def _map_wait(
        self,
        func: Callable[..., T],
        iterable: Iterable[Any],
        mode: int,
        chunksize: int | None,
        task_timeout: float | None,
        kind: str,
        progress: ProgressArg,
    ) -> list[T]:
        """The blocking maps: the bar is closed before they return or raise."""
        result, shown = self._map_async(
            func, iterable, mode, chunksize, None, None, task_timeout, kind, progress
        )
        try:
            return result.get()
        finally:
            if shown is not None:
                shown.close()
            # As in AsyncResult.get: a task's exception carries this frame, and
            # the result holds the exception; without this, each keeps the other.
            del self, result, shown

    def _map_async(
        self,
        func: Callable[..., T],
        iterable: Iterable[Any],
        mode: int,
        chunksize: int | None,
        callback: Callable[[list[T]], object] | None,
        error_callback: Callable[[BaseException], object] | None,
        task_timeout: float | None,
        kind: str,
        progress: ProgressArg,
    ) -> tuple[AsyncResult[list[T]], Progress | None]:
        spec = check_progress(progress)
        fn, limit = unwrap(func, task_timeout)
        items = iterable if isinstance(iterable, list) else list(iterable)
        shown = start_progress(spec, len(items), f"{kind}(fn={describe(fn)})")
        try:
            future: concurrent.futures.Future[list[T]] = self._engine.map_all(
                fn,
                items,
                mode,
                chunksize=chunksize,
                timeout=limit,
                kind=kind,
                on_chunk=None if shown is None else shown.advance,
            )
        except BaseException:
            if shown is not None:
                shown.close()
            raise
        if shown is not None:  # it closes itself once every result is in; else here
            future.add_done_callback(lambda _: shown.close())
        return AsyncResult(self._engine, future, callback, error_callback), shown

    # -- lazy iteration -----------------------------------------------------------------

    def imap(
        self,
        func: Callable[[S], T],
        iterable: Iterable[S],
        chunksize: int | None = None,
        *,
        task_timeout: float | None = None,
        progress: ProgressArg = False,
    ) -> ResultIterator[T]:
        """Lazy ordered map; reads ``iterable`` only as workers need it.

        ``chunksize=None`` (the default) sizes chunks automatically, also for
        inputs of unknown length; ``multiprocessing.Pool.imap`` uses 1.
        ``next(timeout)`` raises ``multiprocessing.TimeoutError``.
        """
        spec = check_progress(progress)
        fn, limit = unwrap(func, task_timeout)
        return ResultIterator(
            self._engine,
            fn,
            iterable,
            MAP,
            chunksize=chunksize,
            ordered=True,
            timeout=limit,
            kind="imap",
            timeout_error=multiprocessing.TimeoutError,
            progress=spec,
        )

    def imap_unordered(
        self,
        func: Callable[[S], T],
        iterable: Iterable[S],
        chunksize: int | None = None,
        *,
        task_timeout: float | None = None,
        progress: ProgressArg = False,
    ) -> ResultIterator[T]:
        """Like :meth:`imap`, but results come as they finish."""
        spec = check_progress(progress)
        fn, limit = unwrap(func, task_timeout)
        return ResultIterator(
            self._engine,
            fn,
            iterable,
            MAP,
            chunksize=chunksize,
            ordered=False,
            timeout=limit,
            kind="imap_unordered",
            timeout_error=multiprocessing.TimeoutError,
            progress=spec,
        )

    # -- life cycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Accept no more tasks; workers exit when the queued work is done."""
        self._engine.close()

    def join(self) -> None:
        """Wait for the workers to exit; call :meth:`close` or :meth:`terminate` first.

        Raises:
            ValueError: The pool is still running.
        """
        if self._engine.state == "running":
            raise ValueError("Pool is still running: call close() or terminate() before join()")
        self._engine.join()

    def terminate(self) -> None:
        """Stop the workers now; unfinished tasks fail with :class:`ClosedError`."""
        self._engine.terminate()

    def __enter__(self) -> Pool:
        if self._engine.state != "running":
            raise ClosedError("Pool not running")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.terminate()
