"""The ``concurrent.futures`` face: :class:`Executor`."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast, final

from ._backends._modes import MAP, STAR
from ._owner import EngineOwner
from ._progress import ProgressArg, check_progress
from ._results import MapIterator, ResultIterator
from ._timed import unwrap

__all__ = ("Executor",)

T = TypeVar("T")
S = TypeVar("S")
P = ParamSpec("P")


@final
class Executor(EngineOwner, concurrent.futures.Executor):
    """A ``concurrent.futures.Executor`` whose backend is one flag.

    Args:
        backend: ``"process"``, ``"thread"``, ``"serial"`` or ``"dask"``; None reads the
            configuration (argument > :func:`config` > ``PARALLELKIT_BACKEND``
            > config file > ``"process"``). A number here is taken as
            ``max_workers``, as ``ProcessPoolExecutor(4)`` has it, and the
            backend then comes from the configuration.
        workers: Number of workers; None reads the configuration, then the
            number of CPUs this process may use.
        max_workers: The same as ``workers``, under the name
            ``concurrent.futures`` gives it; pass one or the other.
        start_method: ``"fork"``, ``"spawn"`` or ``"forkserver"`` for the
            process backend; None reads the configuration, then
            ``"forkserver"`` on every Python version.
        initializer: Called once in each worker before its first task.
        initargs: Arguments for ``initializer``.
        max_tasks_per_worker: Replace a worker after it ran this many chunks.
        task_timeout: Default time limit in seconds for each task; see
            :class:`TaskTimeoutError`.
        check_pickle: On the thread and serial backends, send tasks and
            results through the serializer, as processes would.
        address: The dask backend's scheduler (``"tcp://10.0.0.5:8786"``);
            None reads the configuration (``PARALLELKIT_ADDRESS``...), then
            starts a cluster on this machine that closes with the executor.
        client: A ``distributed.Client`` to run on (dask backend); it stays
            open when the executor closes.

    Raises:
        ConfigError: A setting from any source is invalid.
        TypeError: A number of workers was given twice (``workers`` and
            ``max_workers``, or a number as the first argument and ``max_workers``).
        ValueError: ``workers``, ``max_workers`` or ``max_tasks_per_worker``
            is not a whole number >= 1.

    Examples:
        >>> import parallelkit
        >>> with parallelkit.Executor("serial") as ex:
        ...     ex.submit(pow, 2, 10).result()
        1024
    """

    def __init__(
        self,
        backend: str | int | None = None,
        workers: int | None = None,
        *,
        max_workers: int | None = None,
        start_method: str | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        max_tasks_per_worker: int | None = None,
        task_timeout: float | None = None,
        check_pickle: bool | None = None,
        address: str | None = None,
        client: Any = None,
    ) -> None:
        name: object = backend
        if isinstance(name, int) and not isinstance(name, bool):
            # ProcessPoolExecutor(4) / ThreadPoolExecutor(4), ported as they stand: the
            # first argument of concurrent.futures' executors is max_workers.
            if max_workers is not None:
                raise TypeError(
                    f"Executor() got a number of workers twice, {name!r} as its first "
                    f"argument and max_workers={max_workers!r}: pass only one"
                )
            name, max_workers = None, name
        if max_workers is not None:
            if workers is not None:
                raise TypeError(
                    f"Executor() got both workers={workers!r} and max_workers={max_workers!r}, "
                    "two names for one setting: pass only one"
                )
            given = max_workers
            if isinstance(given, bool) or not isinstance(given, int):
                raise ValueError(
                    f"max_workers must be a whole number greater than 0 or None, got {given!r}"
                )
            if given <= 0:  # concurrent.futures' own message, which ported code may match
                raise ValueError("max_workers must be greater than 0")
            workers = given
        self._start_engine(
            cast("str | None", name),  # anything but a name is refused there, by value
            workers,
            start_method,
            initializer,
            initargs,
            max_tasks_per_worker,
            task_timeout,
            check_pickle,
            address=address,
            client=client,
        )

    def submit(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> concurrent.futures.Future[T]:
        """Schedule ``fn(*args, **kwargs)``; return a ``concurrent.futures.Future``.

        To give this one call a time limit, wrap the function:
        ``ex.submit(parallelkit.Timed(fn, 5.0), x)``.

        Args:
            fn: The function; lambdas and closures work on every backend.
            *args: Its positional arguments.
            **kwargs: Its keyword arguments.

        Returns:
            The Future of the call.

        Raises:
            ClosedError: The executor was shut down.
            pickle.PicklingError: On the process backend, the function or an
                argument cannot be serialized.

        Examples:
            >>> import parallelkit
            >>> with parallelkit.Executor("thread", 2) as ex:
            ...     ex.submit(lambda a, b: a * b, 6, b=7).result()
            42
        """
        fn_, timeout = unwrap(fn, None)
        return self._engine.submit(fn_, args, kwargs, timeout)

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
        task_timeout: float | None = None,
        progress: ProgressArg = False,
    ) -> MapIterator[T]:
        """Like ``map(fn, *iterables)``, in parallel, lazily.

        The input is read as workers need it, with a bounded number of chunks
        in flight; results come in input order. A task's exception is raised
        when its result is reached, after which the iterator ends. As with
        ``concurrent.futures``, ``close()`` on the iterator (or dropping it)
        cancels the work not yet started, and a result handed out is not kept.

        Args:
            fn: The function.
            *iterables: One iterable per positional argument of ``fn``.
            timeout: Seconds from this call until every result must be there;
                ``concurrent.futures.TimeoutError`` otherwise.
            chunksize: Items per chunk; None chooses (see the docs).
            task_timeout: Time limit for each call; :class:`TaskTimeoutError`.
            progress: True for a tqdm bar, a dict of tqdm options for a bar made
                with them, or a callable ``fn(done, total)``; see the docs.

        Returns:
            A :class:`MapIterator` over the results.

        Raises:
            ConfigError: ``progress`` asks for a bar and tqdm is not installed.

        Examples:
            >>> import parallelkit
            >>> with parallelkit.Executor("serial") as ex:
            ...     list(ex.map(lambda a, b: a + b, [1, 2], [10, 20]))
            [11, 22]
        """
        if not iterables:
            raise TypeError("map() needs at least one iterable")
        end = None if timeout is None else time.monotonic() + timeout
        spec = check_progress(progress)
        fn_, limit = unwrap(fn, task_timeout)
        total: int | None = None
        if len(iterables) == 1:
            source: Iterable[Any] = iterables[0]
            mode = MAP
        else:
            source = zip(*iterables)  # noqa: B905 - shortest wins, as with map()
            mode = STAR
            if spec is not None:
                total = _shortest(iterables)
        results: ResultIterator[T] = ResultIterator(
            self._engine,
            fn_,
            source,
            mode,
            chunksize=chunksize,
            ordered=True,
            timeout=limit,
            kind="map",
            timeout_error=concurrent.futures.TimeoutError,
            progress=spec,
            total=total,
        )
        return MapIterator(results, end)

    def imap(
        self,
        fn: Callable[[S], T],
        iterable: Iterable[S],
        chunksize: int | None = None,
        *,
        task_timeout: float | None = None,
        progress: ProgressArg = False,
    ) -> ResultIterator[T]:
        """Lazy ordered map of a one-argument function, like ``Pool.imap``.

        Unlike :meth:`map`, the iterator can be advanced after it raised a
        task's exception, to get the results after it.

        Args:
            fn: The function.
            iterable: Its arguments; may be endless.
            chunksize: Items per chunk; None chooses.
            task_timeout: Time limit for each call.
            progress: A tqdm bar or a callable ``fn(done, total)``, as for :meth:`map`.

        Returns:
            An iterator over the results, in input order.
        """
        spec = check_progress(progress)
        fn_, limit = unwrap(fn, task_timeout)
        return ResultIterator(
            self._engine,
            fn_,
            iterable,
            MAP,
            chunksize=chunksize,
            ordered=True,
            timeout=limit,
            kind="imap",
            progress=spec,
        )

    def imap_unordered(
        self,
        fn: Callable[[S], T],
        iterable: Iterable[S],
        chunksize: int | None = None,
        *,
        task_timeout: float | None = None,
        progress: ProgressArg = False,
    ) -> ResultIterator[T]:
        """Like :meth:`imap`, but results come as they finish.

        Args:
            fn: The function.
            iterable: Its arguments; may be endless.
            chunksize: Items per chunk; None chooses.
            task_timeout: Time limit for each call.
            progress: A tqdm bar or a callable ``fn(done, total)``, as for :meth:`map`.

        Returns:
            An iterator over the results, in completion order.
        """
        spec = check_progress(progress)
        fn_, limit = unwrap(fn, task_timeout)
        return ResultIterator(
            self._engine,
            fn_,
            iterable,
            MAP,
            chunksize=chunksize,
            ordered=False,
            timeout=limit,
            kind="imap_unordered",
            progress=spec,
        )

    def starmap(
        self,
        fn: Callable[..., T],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        *,
        task_timeout: float | None = None,
        progress: ProgressArg = False,
    ) -> ResultIterator[T]:
        """Lazy ordered ``fn(*args)`` for each ``args`` in ``iterable``.

        Args:
            fn: The function.
            iterable: Argument tuples.
            chunksize: Items per chunk; None chooses.
            task_timeout: Time limit for each call.
            progress: A tqdm bar or a callable ``fn(done, total)``, as for :meth:`map`.

        Returns:
            An iterator over the results, in input order.
        """
        spec = check_progress(progress)
        fn_, limit = unwrap(fn, task_timeout)
        return ResultIterator(
            self._engine,
            fn_,
            iterable,
            STAR,
            chunksize=chunksize,
            ordered=True,
            timeout=limit,
            kind="starmap",
            progress=spec,
        )

    def cancel(self, future: concurrent.futures.Future[Any], *, kill: bool = False) -> bool:
        """Cancel a task of this executor; with ``kill``, also a running one.

        ``future.cancel()`` drops a task that has not started. A running task
        can only be stopped by killing the worker process that runs it:
        ``kill=True`` does that on the process backend (the worker is
        replaced) and the future then raises
        ``concurrent.futures.CancelledError`` (``future.cancelled()`` stays
        False: the concurrent.futures contract keeps that for tasks that never
        ran). Threads cannot be killed: on the thread and serial backends a
        running task is not stopped and False is returned.

        Args:
            future: A Future returned by :meth:`submit`.
            kill: Also stop the task if it is running.

        Returns:
            True if the task will not deliver a result.

        Examples:
            >>> import parallelkit
            >>> with parallelkit.Executor("serial") as ex:
            ...     ex.cancel(ex.submit(abs, -1))  # already done inline
            False
        """
        return self._engine.cancel(future, kill)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work; free the workers once the work is done.

        Args:
            wait: Block until all work has finished and the workers have exited.
            cancel_futures: Cancel the tasks that have not started.
        """
        self._engine.close(cancel_pending=cancel_futures, background=not wait)
        if wait:
            self._engine.join()

    def terminate(self) -> None:
        """Stop now: tasks not started are cancelled, running ones fail with ClosedError."""
        self._engine.terminate()

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self._engine.terminate()
        else:
            self.shutdown(wait=True)


def _shortest(iterables: tuple[Iterable[Any], ...]) -> int | None:
    """The length of the shortest iterable (what ``zip`` yields), or None if one has none."""
    try:
        return min(len(it) for it in iterables)  # type: ignore[arg-type]
    except TypeError:
        return None
