"""The public API as the type checkers see it: every line here must pass mypy and pyright.

Only type-checked, never run: each check sits in a function that takes the
objects it inspects, so importing this module starts nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Iterator
from concurrent.futures import Future
from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING, NoReturn

import parallelkit
import parallelkit.testing
from parallelkit import AsyncResult, Executor, MapIterator, Pool, ResultIterator, Settings, Timed

if TYPE_CHECKING:
    from typing_extensions import assert_type


def to_int(x: int) -> int:
    return x


def to_str(x: int) -> str:
    return str(x)


def to_float(x: int) -> float:
    return x / 2


def add(a: int, b: int) -> int:
    return a + b


def scale(x: int, *, factor: float = 1.0) -> float:
    return x * factor


def check_executor_construction() -> None:
    assert_type(Executor(), Executor)
    assert_type(Executor("thread", 2), Executor)
    assert_type(Executor(max_workers=4), Executor)
    assert_type(Executor(4), Executor)
    assert_type(Executor("process", max_workers=None), Executor)
    assert_type(
        Executor(
            backend="process",
            workers=2,
            start_method="spawn",
            initializer=print,
            initargs=("ready",),
            max_tasks_per_worker=10,
            task_timeout=5.0,
            check_pickle=False,
        ),
        Executor,
    )
    with Executor("serial") as ex:
        assert_type(ex, Executor)


def check_executor_submit(ex: Executor) -> None:
    assert_type(ex.submit(to_int, 1), Future[int])
    assert_type(ex.submit(to_int, 1).result(), int)
    assert_type(ex.submit(add, 1, b=2), Future[int])
    assert_type(ex.submit(scale, 3, factor=2.0), Future[float])
    assert_type(ex.submit(lambda: "x"), Future[str])
    assert_type(ex.submit(Timed(to_str, 5.0), 1), Future[str])


def check_executor_maps(ex: Executor) -> None:
    assert_type(ex.map(to_int, [1, 2]), MapIterator[int])
    assert_type(
        ex.map(to_str, range(3), timeout=1.0, chunksize=2, task_timeout=0.5), MapIterator[str]
    )
    assert_type(ex.map(add, [1], [2]), MapIterator[int])
    mapped = ex.map(to_str, [1, 2])
    assert_type(next(mapped), str)
    assert_type(iter(mapped), MapIterator[str])
    assert_type(mapped.close(), None)
    with contextlib.closing(ex.map(to_int, [1])) as closing:
        assert_type(closing, MapIterator[int])
    as_iterator: Iterator[int] = ex.map(to_int, [1])  # an Iterator, as concurrent.futures says
    del as_iterator
    assert_type(ex.imap(to_int, [1, 2]), ResultIterator[int])
    assert_type(ex.imap(to_str, iter([1]), 4, task_timeout=1.0), ResultIterator[str])
    assert_type(ex.imap_unordered(to_float, [1]), ResultIterator[float])
    assert_type(ex.starmap(add, [(1, 2)]), ResultIterator[int])
    results = ex.imap(to_str, [1, 2])
    assert_type(next(results), str)
    assert_type(results.next(1.0), str)
    assert_type(iter(results), Iterator[str])
    assert_type(results.close(), None)


def check_executor_life_cycle(ex: Executor) -> None:
    assert_type(ex.shutdown(), None)
    assert_type(ex.shutdown(wait=False, cancel_futures=True), None)
    assert_type(ex.terminate(), None)
    assert_type(ex.backend, str)
    assert_type(ex.workers, int)
    assert_type(ex.start_method, str | None)


async def check_run_in_executor(ex: Executor) -> None:
    loop = asyncio.get_running_loop()
    assert_type(await loop.run_in_executor(ex, to_str, 1), str)


def check_pool_construction(context: BaseContext) -> None:
    assert_type(Pool(), Pool)
    assert_type(Pool(2, print, ("ready",), 10, context), Pool)
    assert_type(
        Pool(
            processes=2,
            backend="thread",
            start_method="forkserver",
            task_timeout=1.0,
            check_pickle=True,
        ),
        Pool,
    )
    with Pool(backend="serial") as pool:
        assert_type(pool, Pool)


def check_pool_calls(pool: Pool) -> None:
    assert_type(pool.apply(to_float, (1,)), float)
    assert_type(pool.apply(scale, (1,), {"factor": 2.0}), float)
    assert_type(pool.apply_async(to_float, (1,)), AsyncResult[float])
    assert_type(
        pool.apply_async(to_str, (1,), callback=print, error_callback=print), AsyncResult[str]
    )


def check_pool_maps(pool: Pool) -> None:
    assert_type(pool.map(to_str, [1, 2]), list[str])
    assert_type(pool.map(to_str, range(3), 2, task_timeout=1.0), list[str])
    assert_type(pool.map_async(to_str, [1]), AsyncResult[list[str]])
    assert_type(pool.starmap(add, [(1, 2)]), list[int])
    assert_type(pool.starmap_async(add, [(1, 2)]), AsyncResult[list[int]])
    assert_type(pool.imap(to_str, [1]), ResultIterator[str])
    assert_type(pool.imap_unordered(to_int, iter([1]), 4), ResultIterator[int])


def show(done: int, total: int | None) -> None:
    """A progress callable."""


def check_progress(ex: Executor, pool: Pool) -> None:
    # progress=: True | False | a callable fn(done, total) | a dict of tqdm options.
    assert_type(ex.map(to_int, [1], progress=True), MapIterator[int])
    assert_type(ex.map(add, [1], [2], progress=show), MapIterator[int])
    assert_type(ex.imap(to_str, [1], progress={"desc": "x"}), ResultIterator[str])
    assert_type(ex.imap_unordered(to_int, [1], progress=lambda d, t: None), ResultIterator[int])
    assert_type(ex.starmap(add, [(1, 2)], progress=False), ResultIterator[int])
    assert_type(pool.map(to_str, [1], progress=show), list[str])
    assert_type(pool.map_async(to_str, [1], progress=True), AsyncResult[list[str]])
    assert_type(pool.starmap(add, [(1, 2)], progress={"leave": False}), list[int])
    assert_type(pool.starmap_async(add, [(1, 2)], progress=show), AsyncResult[list[int]])
    assert_type(pool.imap(to_str, [1], progress=print), ResultIterator[str])
    assert_type(pool.imap_unordered(to_int, [1], progress=True), ResultIterator[int])


def check_pool_life_cycle(pool: Pool) -> None:
    assert_type(pool.close(), None)
    assert_type(pool.join(), None)
    assert_type(pool.terminate(), None)
    assert_type(pool.backend, str)
    assert_type(pool.workers, int)


def check_async_result(result: AsyncResult[float]) -> None:
    assert_type(result.get(), float)
    assert_type(result.get(1.0), float)
    assert_type(result.wait(0.5), None)
    assert_type(result.ready(), bool)
    assert_type(result.successful(), bool)
    assert_type(result.future, Future[float])


def check_timed() -> None:
    timed = Timed(add, 2.0)
    assert_type(timed(1, 2), int)
    assert_type(timed(1, b=2), int)
    assert_type(timed.seconds, float)
    assert_type(Timed(scale, 1.0)(2, factor=3.0), float)


def check_config() -> None:
    assert_type(parallelkit.current_settings(), Settings)
    assert_type(parallelkit.default_workers(), int)
    settings = parallelkit.current_settings()
    assert_type(settings.backend, str)
    assert_type(settings.workers, int)
    assert_type(settings.start_method, str)
    assert_type(settings.check_pickle, bool)
    with parallelkit.config(backend="thread", workers=2) as configured:
        assert_type(configured, Settings)
    with parallelkit.config(start_method="spawn", check_pickle=True):
        pass
    assert_type(settings.shared_threshold, int | None)
    with parallelkit.config(shared_threshold=None), parallelkit.config(shared_threshold=1 << 20):
        pass


def check_subtypes(
    ex: Executor,
) -> tuple[
    concurrent.futures.Executor,
    RuntimeError,
    ValueError,
    ValueError,
    TimeoutError,
    parallelkit.ParallelkitError,
]:
    """Executor is a concurrent.futures.Executor; the errors are what other libraries raise."""
    return (
        ex,
        parallelkit.ClosedError("closed"),
        parallelkit.ClosedError("closed"),
        parallelkit.ConfigError("bad"),
        parallelkit.TaskTimeoutError("late"),
        parallelkit.WorkerCrashedError("died", pid=1, exitcode=-9, task="task 1"),
    )


def check_error_attributes(
    crashed: parallelkit.WorkerCrashedError, remote: parallelkit.RemoteError
) -> None:
    assert_type(crashed.pid, int)
    assert_type(crashed.exitcode, int | None)
    assert_type(crashed.task, str)
    assert_type(remote.type_name, str)
    assert_type(remote.message, str)
    assert_type(remote.traceback_text, str)


def check_testing() -> None:
    with parallelkit.testing.no_leaks() as before:
        assert_type(before, parallelkit.testing.Snapshot)
    assert_type(parallelkit.testing.snapshot(), parallelkit.testing.Snapshot)
    assert_type(parallelkit.testing.hang(0.1), None)
    assert_type(parallelkit.testing.return_unpicklable(), parallelkit.testing.Unpicklable)


def check_faults_never_return() -> NoReturn:
    parallelkit.testing.crash_worker()
