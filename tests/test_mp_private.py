"""The private attributes of multiprocessing.Pool that the process backend reads.

If a Python version renames them, these tests fail before anything hangs.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.synchronize as synchronize
import threading
import time
from collections.abc import Callable, Generator
from multiprocessing.pool import Pool
from multiprocessing.process import BaseProcess
from typing import Any

import pytest

from parallelkit._backends import _mp_private
from parallelkit._backends._looks import _all_exit_within as all_exit_within  # pyright: ignore[reportPrivateUsage]
from parallelkit._backends._pipes import TaskChannel
from parallelkit._backends._result_reader import ResultReader
from parallelkit._worker import SpawnedWorker


def test_workers_lists_the_pool_processes() -> None:
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        procs = _mp_private.workers(pool)
        assert len(procs) == 2
        assert all(isinstance(p, BaseProcess) and p.sentinel for p in procs)
        pool.close()
        pool.join()


def test_forget_removes_a_job_from_the_cache() -> None:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        res = pool.apply_async(abs, (-1,))
        assert res.get(20) == 1
        held = pool.apply_async(abs, (-2,))
        held.wait(20)
        _mp_private.forget(pool, held)  # already gone: no error
        pool.close()
        pool.join()


def test_inqueue_lock_is_a_lock() -> None:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        lock = _mp_private.inqueue_lock(pool)
        assert hasattr(lock, "acquire") and hasattr(lock, "release")
        pool.close()
        pool.join()


def test_maintainer_alive_until_close_with_no_job_left() -> None:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert _mp_private.maintainer_alive(pool)
        pool.close()
        pool.join()
        assert not _mp_private.maintainer_alive(pool)


@contextlib.contextmanager
def channel_pool(
    workers: int = 2, tasks_per_worker: int | None = None
) -> Generator[tuple[Pool, TaskChannel], None, None]:
    """A spawn pool on a task channel; terminated and freed after."""
    ctx = multiprocessing.get_context("spawn")
    channel = TaskChannel(ctx, lambda task: 0)
    pool = _mp_private.pool_with_task_channel(
        channel, ResultReader(), workers, None, (), tasks_per_worker, ctx
    )
    try:
        yield pool, channel
    finally:
        pool.terminate()  # drains the channel with idle workers holding its lock
        pool.join()
        _mp_private.release_terminated(pool)
        channel.close()


def count_maintenance(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Count the looks of every pool's worker-maintenance thread at its workers."""
    looks = 0
    maintain: Callable[..., Any] = getattr(Pool, "_maintain_pool")  # noqa: B009

    def counting(*args: Any) -> Any:
        nonlocal looks
        looks += 1
        return maintain(*args)

    monkeypatch.setattr(Pool, "_maintain_pool", staticmethod(counting))
    return lambda: looks


def test_a_pool_with_a_task_channel_runs_tasks_and_shuts_down() -> None:
    with channel_pool() as (pool, channel):
        assert _mp_private.inqueue_lock(pool) is channel._rlock  # pyright: ignore[reportPrivateUsage]
        assert pool.map(abs, range(-50, 0)) == list(range(50, 0, -1))
        assert pool.apply_async(abs, (-3,)).get(20) == 3


def test_the_worker_maintenance_thread_does_not_wake_each_time_the_pool_runs_dry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # multiprocessing.Pool's job table wakes that thread each time it empties
    # (once per job run one at a time); only after close() does it need to.
    looks = count_maintenance(monkeypatch)
    with channel_pool() as (pool, _):
        # Every thread of the pool took the table that replaced the pool's own.
        table = pool._cache  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
        assert type(table).__name__ == "_QuietCache"  # pyright: ignore[reportUnknownArgumentType]
        for thread, position in (
            ("_worker_handler", 0),
            ("_task_handler", 4),
            ("_result_handler", 2),
        ):
            assert getattr(pool, thread)._args[position] is table, thread
        assert pool.apply_async(abs, (-1,)).get(20) == 1
        before = looks()
        for i in range(50):
            assert pool.apply_async(abs, (-i,)).get(20) == i
        assert looks() - before < 5, f"{looks() - before} looks for 50 jobs run one at a time"
        # After close() the emptied table still wakes it, to end: join() returns.
        last = pool.apply_async(time.sleep, (0.2,))
        pool.close()
        assert last.get(20) is None
        pool.join()


def test_the_worker_maintenance_thread_does_not_wake_for_each_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looks = count_maintenance(monkeypatch)
    with channel_pool() as (pool, _):
        assert pool.apply_async(abs, (-1,)).get(20) == 1
        before = looks()
        results = [pool.apply_async(abs, (-i,)) for i in range(300)]
        assert [r.get(20) for r in results] == list(range(300))
        # multiprocessing.Pool's own thread also waits on the result pipe and
        # looks at every worker again for each result (hundreds of looks here).
        assert looks() - before < 30


def test_submit_runs_a_job_and_calls_back_once_from_the_result_thread() -> None:
    with channel_pool() as (pool, _):
        outcomes: list[tuple[str, object]] = []
        done = threading.Event()

        def on_result(value: object) -> None:
            outcomes.append(("done", value))
            done.set()

        def on_error(exc: BaseException) -> None:
            outcomes.append(("failed", exc))
            done.set()

        _mp_private.submit(pool, 7, abs, (-5,), on_result, on_error)
        assert done.wait(20)
        assert outcomes == [("done", 5)]
        done.clear()
        _mp_private.submit(pool, 8, int, ("not a number",), on_result, on_error)
        assert done.wait(20)
        kind, exc = outcomes[1]
        assert kind == "failed" and isinstance(exc, ValueError)
        table = pool._cache  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
        deadline = time.monotonic() + 5
        while table and time.monotonic() < deadline:  # pyright: ignore[reportUnknownArgumentType]
            time.sleep(0.01)
        assert not table, "a finished job stays in the pool's table"


def test_a_forgotten_job_leaves_the_table_and_its_late_result_is_dropped() -> None:
    with channel_pool() as (pool, _):
        called: list[object] = []
        handle = _mp_private.submit(pool, 9, time.sleep, (0.3,), called.append, called.append)
        _mp_private.forget(pool, handle)
        assert 9 not in pool._cache  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
        # join() does not wait for it; its result, when it comes, finds no job.
        pool.close()
        pool.join()
        assert called == []


def test_submit_to_a_pool_that_no_longer_runs_raises() -> None:
    with channel_pool() as (pool, _):
        pool.close()
        with pytest.raises(ValueError, match="Pool not running"):
            _mp_private.submit(pool, 1, abs, (-1,), print, print)
        pool.join()


def test_the_result_queue_keeps_multiprocessing_s_contract_with_plain_pickle() -> None:
    # Workers put results with plain pickle: an exception still arrives with its
    # type, and a result that cannot be pickled still becomes MaybeEncodingError.
    with channel_pool() as (pool, _):
        assert type(pool._outqueue).__name__ == "ResultQueue"  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownArgumentType]
        with pytest.raises(ZeroDivisionError):
            pool.apply_async(divmod, (1, 0)).get(20)
        with pytest.raises(Exception, match="Error sending result") as caught:
            pool.apply_async(threading.Lock).get(20)
        assert type(caught.value).__name__ == "MaybeEncodingError"
        assert pool.apply_async(abs, (-4,)).get(20) == 4


def test_the_pool_makes_one_named_semaphore_besides_its_task_channel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # multiprocessing.Pool's result queue and change notifier are SimpleQueues
    # with two named semaphores each, made, inherited by every forked worker
    # and freed again for each pool. Only the result queue's write lock is needed.
    made = 0
    real_init = synchronize.SemLock.__init__

    def counting(self: synchronize.SemLock, *args: Any, **kwargs: Any) -> None:
        nonlocal made
        made += 1
        real_init(self, *args, **kwargs)

    ctx = multiprocessing.get_context("spawn")
    channel = TaskChannel(ctx, lambda task: 0)
    monkeypatch.setattr(synchronize.SemLock, "__init__", counting)
    pool = _mp_private.pool_with_task_channel(channel, ResultReader(), 1, None, (), None, ctx)
    monkeypatch.undo()
    try:
        assert made == 1
        assert pool._ctx is ctx  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
        assert pool._outqueue._rlock is None  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
        assert _mp_private.outqueue_lock(pool) is not None
        assert pool.apply_async(abs, (-2,)).get(20) == 2
        pool.close()
        _mp_private.join_maintainer(pool)
        pool.join()
    finally:
        pool.terminate()
        _mp_private.release_terminated(pool)
        channel.close()


def test_close_with_no_job_left_ends_the_workers_before_the_maintenance_thread_wakes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The word to exit goes to the task thread at close(): the workers end
    # even while the pool's maintenance thread (held back here) has not woken.
    go_on = threading.Event()
    wait: Callable[..., Any] = getattr(Pool, "_wait_for_updates")  # noqa: B009

    def held_back(*args: Any, **kwargs: Any) -> Any:
        go_on.wait(30)
        return wait(*args, **kwargs)

    monkeypatch.setattr(Pool, "_wait_for_updates", staticmethod(held_back))
    with channel_pool() as (pool, _):
        try:
            assert pool.map(abs, range(-8, 0)) == list(range(8, 0, -1))
            pool.close()
            assert all_exit_within(_mp_private.workers(pool), 10)
        finally:
            go_on.set()
        _mp_private.join_maintainer(pool)
        pool.join()


def test_after_close_the_maintenance_thread_ends_without_a_join() -> None:
    # As with multiprocessing.Pool: once the workers have their word to exit,
    # nothing is left for it to do, whether or not join() comes (close() no
    # longer wakes it: the workers' exits do).
    with channel_pool() as (pool, _):
        assert pool.map(abs, range(-8, 0)) == list(range(8, 0, -1))
        pool.close()
        deadline = time.monotonic() + 10
        while _mp_private.maintainer_alive(pool) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not _mp_private.maintainer_alive(pool)
        assert all_exit_within(_mp_private.workers(pool), 10)
        pool.join()


def test_a_worker_started_while_the_pool_closes_is_told_to_end_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One worker, one task per worker: it ends after its task and the
    # maintenance thread replaces it. Here close() comes after the old worker
    # left the pool's list and before its replacement starts, so the task
    # thread, told to end at close(), sends no worker its word to exit.
    # join_maintainer() must send one to the replacement, or join() waits for ever.
    armed = threading.Event()
    replacing = threading.Event()
    go_on = threading.Event()
    repopulate: Callable[..., Any] = getattr(Pool, "_repopulate_pool_static")  # noqa: B009

    def gated(*args: Any) -> Any:
        if armed.is_set():
            replacing.set()
            go_on.wait(30)
        return repopulate(*args)

    monkeypatch.setattr(Pool, "_repopulate_pool_static", staticmethod(gated))
    with channel_pool(workers=1, tasks_per_worker=1) as (pool, _):

        def join() -> None:
            _mp_private.join_maintainer(pool)
            pool.join()

        joiner = threading.Thread(target=join, daemon=True)
        try:
            armed.set()
            assert pool.apply_async(abs, (-1,)).get(20) == 1
            assert replacing.wait(20)
            assert _mp_private.workers(pool) == []
            pool.close()
            pool._task_handler.join(20)  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
            go_on.set()
            joiner.start()
            joiner.join(20)
            assert not joiner.is_alive(), "the replacement worker was never told to exit"
            assert len(_mp_private.workers(pool)) == 1
        finally:
            go_on.set()


def test_spawned_workers_and_their_replacements_end_as_forked_ones_do() -> None:
    with channel_pool(workers=1, tasks_per_worker=1) as (pool, _):
        first = _mp_private.workers(pool)[0]
        assert pool.map(abs, range(-3, 0), chunksize=1) == [3, 2, 1]  # a worker for each
        assert first.exitcode == 0  # it ended after its task, and the pool replaced it
        later = _mp_private.workers(pool)
        assert first not in later
        assert all(type(proc) is SpawnedWorker for proc in [first, *later])
