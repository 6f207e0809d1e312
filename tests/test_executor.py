# pyright: reportUnknownLambdaType=false, reportUnknownArgumentType=false, reportUnknownVariableType=false
"""The concurrent.futures face on every backend."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import itertools
import os
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import parallelkit
from parallelkit import ClosedError, Executor, Pool, RemoteError, RemoteTraceback
from parallelkit.testing import UnpicklableError, raise_unpicklable, return_unpicklable

from .helpers import (
    FORK_WARNING,
    START_METHODS,
    CustomError,
    add,
    fail_on,
    get_env,
    inc,
    pid_of,
    raise_custom,
    set_env,
    sleep_then,
    square,
)


def test_executor_is_a_concurrent_futures_executor() -> None:
    assert issubclass(Executor, concurrent.futures.Executor)


def test_submit_returns_a_real_future(backend: str) -> None:
    with Executor(backend, 2) as ex:
        fut = ex.submit(add, 2, b=3)
        assert isinstance(fut, concurrent.futures.Future)
        assert fut.result(timeout=10) == 5


def test_submit_runs_lambdas_and_closures(backend: str) -> None:
    offset = 10

    def closure(x: int) -> int:
        return x + offset

    with Executor(backend, 2) as ex:
        assert ex.submit(lambda x: x * 3, 4).result(10) == 12
        assert ex.submit(closure, 1).result(10) == 11


def test_map_equals_builtin_map(backend: str) -> None:
    with Executor(backend, 2) as ex:
        assert list(ex.map(square, range(50))) == [x * x for x in range(50)]


def test_map_with_several_iterables_stops_at_shortest(backend: str) -> None:
    with Executor(backend, 2) as ex:
        assert list(ex.map(add, [1, 2, 3], [10, 20])) == [11, 22]


def test_map_raises_task_exception_when_reached(backend: str) -> None:
    with Executor(backend, 2) as ex:
        results = ex.map(fail_on, range(6), chunksize=2)
        assert [next(results) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(ValueError, match="bad item 3"):
            next(results)
        with pytest.raises(StopIteration):
            next(results)


def test_map_timeout_raises_futures_timeout(backend: str) -> None:
    if backend == "serial":
        pytest.skip("serial runs each task in the caller: nothing can time out while waiting")
    with Executor(backend, 1) as ex:
        results = ex.map(sleep_then, [2.0], timeout=0.2)
        start = time.monotonic()
        with pytest.raises(concurrent.futures.TimeoutError):
            next(results)
        assert time.monotonic() - start < 1.5


def test_imap_unordered_gives_every_result(backend: str) -> None:
    with Executor(backend, 2) as ex:
        assert sorted(ex.imap_unordered(square, range(30))) == [x * x for x in range(30)]


def test_imap_unordered_yields_fast_results_first() -> None:
    with Executor("thread", 2) as ex:
        results = list(ex.imap_unordered(lambda s: sleep_then(s, int(s * 10)), [0.6, 0.0], 1))
    assert results == [0, 6]


def test_starmap_unpacks_arguments(backend: str) -> None:
    with Executor(backend, 2) as ex:
        assert list(ex.starmap(pow, [(2, 3), (3, 2), (10, 0)])) == [8, 9, 1]


def test_imap_iterator_continues_after_a_failed_item(backend: str) -> None:
    with Executor(backend, 2) as ex:
        it = ex.imap(fail_on, range(5), chunksize=1)
        assert [next(it), next(it), next(it)] == [0, 1, 2]
        with pytest.raises(ValueError, match="bad item 3"):
            next(it)
        assert list(it) == [4]


def test_imap_loops_and_next_calls_share_one_position(backend: str) -> None:
    with Executor(backend, 2) as ex:
        it = ex.imap(fail_on, range(8), chunksize=3)
        assert next(it) == 0
        seen: list[int] = []
        with pytest.raises(ValueError, match="bad item 3"):
            for value in it:  # a C-speed loop over the rest of the first chunk
                seen.append(value)
        assert seen == [1, 2]
        for value in it:  # a new loop goes on after the failed item
            seen.append(value)
            if value == 5:
                break
        assert it.next(10) == 6  # break did not close the iterator
        assert list(it) == [7]
        assert list(it) == []


def test_imap_over_an_endless_generator_yields_at_once(backend: str) -> None:
    with Executor(backend, 2) as ex:
        start = time.monotonic()
        it = ex.imap(inc, itertools.count())
        first = [next(it) for _ in range(1000)]
        it.close()
        assert first == list(range(1, 1001))
        assert time.monotonic() - start < 10


def test_imap_reads_its_input_lazily(backend: str) -> None:
    taken: list[int] = []

    def source() -> Iterator[int]:
        for i in itertools.count():
            taken.append(i)
            yield i

    with Executor(backend, 2) as ex:
        it = ex.imap(inc, source())
        assert next(it) == 1
        # chunks start at one item and at most 4 x workers chunks are outstanding
        assert len(taken) < 100
        it.close()


@pytest.mark.parametrize("kind", [list, tuple])
def test_lists_and_tuples_map_in_order_whatever_the_chunk_size(
    backend: str, kind: type[list[int]] | type[tuple[int, ...]]
) -> None:
    # On dask every chunk is a scheduler round trip (milliseconds): fewer items
    # there, still more than the chunks in flight at chunksize 1.
    data = kind(range(203 if backend == "dask" else 1003))
    with Executor(backend, 2) as ex:
        for chunksize in (None, 1, 7, 5000):
            assert list(ex.imap(inc, data, chunksize)) == [x + 1 for x in data]
            assert list(ex.map(add, data, data, chunksize=chunksize)) == [2 * x for x in data]
            assert sorted(ex.imap_unordered(inc, data, chunksize)) == [x + 1 for x in data]


def test_a_list_is_read_where_it_stands_when_each_chunk_is_made() -> None:
    """A list grown while it is mapped is read as ``iter(list)`` would read it."""
    data = [1, 2, 3]
    with Executor("serial") as ex:
        it = ex.imap(inc, data, chunksize=1)
        assert next(it) == 2
        data.append(4)  # a list iterator sees items added before it reaches them
        del data[0]  # ... and skips one when an item before it goes
        assert list(it) == [4, 5]


def test_input_that_raises_midway_delivers_earlier_results_first(backend: str) -> None:
    def source() -> Iterator[int]:
        yield from range(5)
        raise OSError("input broke")

    with Executor(backend, 2) as ex:
        it = ex.imap(inc, source())
        got: list[int] = []
        with pytest.raises(OSError, match="input broke"):
            for value in it:
                got.append(value)
        assert got == [1, 2, 3, 4, 5]
        assert ex.submit(inc, 1).result(10) == 2


def test_exception_keeps_its_type_and_remote_traceback(backend: str) -> None:
    with Executor(backend, 2) as ex:
        fut = ex.submit(raise_custom, 42)
        with pytest.raises(CustomError) as info:
            fut.result(10)
    assert info.value.code == 42
    if backend == "process":
        cause = info.value.__cause__
        assert isinstance(cause, RemoteTraceback)
        assert "raise_custom" in str(cause)
        assert 'raise CustomError("custom failure", code)' in cause.traceback_text


def test_unpicklable_exception_becomes_remote_error_and_executor_lives() -> None:
    with Executor("process", 2) as ex:
        with pytest.raises(RemoteError) as info:
            ex.submit(raise_unpicklable, "bad").result(20)
        assert info.value.type_name == "parallelkit.testing._faults.UnpicklableError"
        assert "bad (code 7)" in info.value.message
        assert "raise_unpicklable" in info.value.traceback_text
        assert ex.submit(inc, 1).result(10) == 2


def test_unpicklable_result_becomes_remote_error_and_executor_lives() -> None:
    with Executor("process", 2) as ex:
        with pytest.raises(RemoteError, match="cannot be pickled"):
            ex.submit(return_unpicklable).result(20)
        assert list(ex.map(inc, range(3))) == [1, 2, 3]


def test_unpicklable_items_in_a_map_fail_only_themselves() -> None:
    with Executor("process", 2) as ex:
        it = ex.imap(lambda x: return_unpicklable() if x == 2 else x, range(4), 2)
        assert [next(it), next(it)] == [0, 1]
        with pytest.raises(RemoteError, match="cannot be pickled"):
            next(it)
        assert list(it) == [3]


def test_check_pickle_on_threads_catches_what_processes_refuse(backend: str) -> None:
    if backend == "process":
        pytest.skip("processes always serialize")
    if "distributed" in sys.modules:
        # distributed installs tblib's pickling for every exception class, in every
        # process that imports it: there an exception that processes cannot send
        # back pickles fine. The check runs in an interpreter of its own.
        code = (
            "import sys; from parallelkit import Executor, RemoteError\n"
            "from parallelkit.testing import raise_unpicklable, return_unpicklable\n"
            f"with Executor({backend!r}, 2, check_pickle=True) as ex:\n"
            "    for fn in (return_unpicklable, raise_unpicklable):\n"
            "        try:\n"
            "            ex.submit(fn).result(10)\n"
            "        except RemoteError:\n"
            "            continue\n"
            "        sys.exit(f'{fn.__name__}: no RemoteError')\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=50)
        return
    with Executor(backend, 2, check_pickle=True) as ex:
        with pytest.raises(RemoteError, match="cannot be pickled"):
            ex.submit(return_unpicklable).result(10)
        with pytest.raises(RemoteError):
            ex.submit(raise_unpicklable).result(10)
        assert ex.submit(inc, 1).result(10) == 2


def test_without_check_pickle_threads_pass_objects_as_they_are() -> None:
    with Executor("thread", 2) as ex:
        value = ex.submit(return_unpicklable).result(10)
        assert type(value).__name__ == "Unpicklable"
        with pytest.raises(UnpicklableError):
            ex.submit(raise_unpicklable).result(10)


@pytest.mark.filterwarnings(FORK_WARNING)
@pytest.mark.parametrize("method", START_METHODS)
def test_lambdas_and_closures_under_each_start_method(method: str) -> None:
    factor = 3

    def nested(x: int) -> int:
        return x * factor

    with Executor("process", 2, start_method=method) as ex:
        assert ex.start_method == method
        assert list(ex.map(lambda x: x + 1, range(5))) == [1, 2, 3, 4, 5]
        assert ex.submit(nested, 5).result(20) == 15


def test_tasks_run_in_other_processes_on_the_process_backend() -> None:
    with Executor("process", 2) as ex:
        pids = set(ex.map(pid_of, range(20), chunksize=1))
    assert os.getpid() not in pids


def test_serial_runs_in_the_caller_in_order() -> None:
    order: list[int] = []
    with Executor("serial") as ex:
        fut = ex.submit(order.append, 1)
        assert fut.done()
        list(ex.map(order.append, [2, 3]))
    assert order == [1, 2, 3]


def test_thread_backend_runs_in_this_process() -> None:
    with Executor("thread", 2) as ex:
        assert ex.submit(pid_of).result(10) == os.getpid()


def test_asyncio_run_in_executor(backend: str) -> None:
    async def main(ex: Executor) -> list[int]:
        loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(loop.run_in_executor(ex, square, i) for i in range(5))))

    with Executor(backend, 2) as ex:
        assert asyncio.run(main(ex)) == [0, 1, 4, 9, 16]


def test_wait_and_as_completed(backend: str) -> None:
    with Executor(backend, 2) as ex:
        futures = [ex.submit(square, i) for i in range(8)]
        done, pending = concurrent.futures.wait(futures, timeout=20)
        assert not pending
        assert sorted(f.result() for f in concurrent.futures.as_completed(futures)) == sorted(
            f.result() for f in done
        )


def test_submit_after_shutdown_raises_closed_error(backend: str) -> None:
    ex = Executor(backend, 2)
    ex.shutdown()
    with pytest.raises(ClosedError, match="cannot schedule new tasks"):
        ex.submit(inc, 1)
    with pytest.raises(RuntimeError):
        ex.map(inc, [1])


def test_shutdown_waits_for_submitted_work(backend: str) -> None:
    ex = Executor(backend, 2)
    futures = [ex.submit(sleep_then, 0.05, i) for i in range(6)]
    ex.shutdown(wait=True)
    assert [f.result(0) for f in futures] == list(range(6))


def test_shutdown_cancel_futures_cancels_queued_tasks() -> None:
    ex = Executor("thread", 1)
    first = ex.submit(sleep_then, 0.3, 1)
    queued = [ex.submit(sleep_then, 0.3, i) for i in range(10)]
    ex.shutdown(wait=True, cancel_futures=True)
    assert first.result(0) == 1
    assert any(f.cancelled() for f in queued)


def test_shutdown_without_wait_still_finishes_the_work(backend: str) -> None:
    ex = Executor(backend, 2)
    futures = [ex.submit(sleep_then, 0.05, i) for i in range(4)]
    ex.shutdown(wait=False)
    assert [f.result(20) for f in futures] == list(range(4))
    ex._engine.join(20)  # pyright: ignore[reportPrivateUsage]


def test_a_task_being_handed_to_the_backend_during_shutdown_still_runs(backend: str) -> None:
    # A submit in one thread and shutdown(wait=False) in another: the task is
    # taken from the queue, and before it reaches the backend the executor
    # closes. The backend must not be closed under it (on processes it then
    # failed with "Pool not running"; on threads it never ran, and shutdown hung).
    ex = Executor(backend, 1)
    backend_ = ex._engine.backend  # pyright: ignore[reportPrivateUsage]
    real_send = backend_.send
    in_hand = threading.Event()
    go_on = threading.Event()

    def send(chunk: Any) -> None:
        in_hand.set()
        assert go_on.wait(20)
        real_send(chunk)

    backend_.send = send  # type: ignore[method-assign]
    futures: list[concurrent.futures.Future[int]] = []
    submitter = threading.Thread(target=lambda: futures.append(ex.submit(pow, 2, 5)))
    submitter.start()
    if backend == "serial":  # runs inline in the submitting thread
        go_on.set()
    assert in_hand.wait(20)
    ex.shutdown(wait=False)
    go_on.set()
    submitter.join(20)
    assert futures[0].result(20) == 32
    ex.shutdown(wait=True)


def test_cancel_a_queued_future_drops_it() -> None:
    with Executor("thread", 1) as ex:
        ran: list[int] = []
        blocker = ex.submit(sleep_then, 0.3)
        futures = [ex.submit(ran.append, i) for i in range(20)]
        cancelled = [f for f in futures if f.cancel()]
        blocker.result(10)
    assert cancelled
    assert len(ran) == 20 - len(cancelled)


def test_repr_shows_backend_workers_start_method_and_state() -> None:
    ex = Executor("process", 2, start_method="spawn")
    assert repr(ex) == (
        "<parallelkit.Executor backend='process' workers=2 start_method='spawn' state='running'>"
    )
    ex.shutdown()
    assert "state='closed'" in repr(ex)
    with Executor("thread", 3) as th:
        assert repr(th) == "<parallelkit.Executor backend='thread' workers=3 state='running'>"


def test_default_workers_follow_cpu_affinity() -> None:
    with Executor("thread") as ex:
        assert ex.workers == len(os.sched_getaffinity(0))


def test_initializer_runs_in_every_worker(backend: str) -> None:
    with Executor(backend, 2, initializer=set_env, initargs=("PK_INIT", "yes")) as ex:
        assert ex.submit(get_env, "PK_INIT").result(20) == "yes"
    os.environ.pop("PK_INIT", None)


def test_garbage_collected_executor_warns_and_cleans_up(backend: str) -> None:
    ex = Executor(backend, 2)
    assert ex.submit(inc, 1).result(20) == 2
    with pytest.warns(ResourceWarning, match="without being shut down"):
        del ex
        gc.collect()


def test_timed_wrapper_limits_one_submit() -> None:
    with Executor("thread", 2) as ex:
        fut = ex.submit(parallelkit.Timed(sleep_then, 0.2), 1.0)
        with pytest.raises(parallelkit.TaskTimeoutError):
            fut.result(5)


def test_executor_works_with_map_of_objects(backend: str) -> None:
    data: list[Any] = [{"a": 1}, [1, 2], "text", 3.5, None]
    with Executor(backend, 2) as ex:
        assert list(ex.map(lambda x: x, data)) == data


def test_map_results_outlive_shutdown_as_with_concurrent_futures(backend: str) -> None:
    ex = Executor(backend, 2)
    results = ex.map(inc, range(3000), chunksize=7)
    ex.shutdown()  # concurrent.futures runs every item of a map before it returns
    assert list(results) == list(range(1, 3001))


def test_shutdown_with_an_endless_map_still_open_returns(backend: str) -> None:
    with Executor(backend, 2) as ex:
        it = ex.imap(inc, itertools.count())
        for value in it:
            if value > 50:
                break
    rest: list[int] = []
    with pytest.raises(parallelkit.ClosedError, match="stops after item"):
        rest.extend(it)
    assert rest == list(range(52, 52 + len(rest)))


def test_shutdown_without_wait_lets_a_lazy_map_finish(backend: str) -> None:
    def numbers() -> Iterator[int]:
        yield from range(3000)

    ex = Executor(backend, 2)
    it = ex.imap(inc, numbers(), chunksize=7)
    ex.shutdown(wait=False)
    assert list(it) == list(range(1, 3001))
    assert ex._engine.join(timeout=20)  # pyright: ignore[reportPrivateUsage]


def _fail_once_and_drop(backend: str, face: str) -> weakref.ref[object]:
    """Run a call that raises through one face, shut down; return a weak ref to the engine."""
    if face.startswith("Pool"):
        pool = parallelkit.Pool(2, backend=backend)
        with pool, pytest.raises(ValueError, match="bad item 3"):
            if face == "Pool.map":
                pool.map(fail_on, range(6))
            elif face == "Pool.imap":
                list(pool.imap(fail_on, range(6)))
            else:
                pool.apply(fail_on, (3,))
        return weakref.ref(pool._engine)  # pyright: ignore[reportPrivateUsage]
    ex = Executor(backend, 2)
    with ex, pytest.raises(ValueError, match="bad item 3"):
        if face == "Executor.map":
            list(ex.map(fail_on, range(6)))
        else:
            ex.submit(fail_on, 3).result(20)
    return weakref.ref(ex._engine)  # pyright: ignore[reportPrivateUsage]


@pytest.mark.parametrize("face", ["Pool.map", "Pool.imap", "Pool.apply", "Executor.map", "submit"])
def test_an_executor_whose_task_failed_is_freed_without_the_garbage_collector(
    backend: str, face: str
) -> None:
    # A cycle (a task's exception, the frames it passed, the chunk, the pool's
    # job table) left the pool, its threads' objects and the named semaphores
    # of its queues to the garbage collector, which then freed them at any
    # moment, once even inside multiprocessing's resource tracker.
    if backend == "serial":
        pytest.skip("serial runs tasks in the caller's own frames, which a task's exception keeps")
    gc.collect()
    gc.disable()
    try:
        engine = _fail_once_and_drop(backend, face)
        assert engine() is None, "the executor is kept alive by a reference cycle"
    finally:
        gc.enable()


@pytest.mark.parametrize("face", ["Executor", "Pool"])
def test_an_idle_process_executor_runs_one_thread_of_its_own(face: str) -> None:
    # One manager thread waits on the workers' pipes and sentinels: no task,
    # result or maintenance thread besides it (multiprocessing.Pool runs three).
    before = {t.ident for t in threading.enumerate()}
    owner = Executor("process", 2) if face == "Executor" else Pool(2, backend="process")
    with owner:
        if isinstance(owner, Executor):
            assert list(owner.map(abs, range(-8, 0))) == list(range(8, 0, -1))
            assert owner.submit(abs, -1).result(20) == 1
        else:
            assert owner.map(abs, range(-8, 0)) == list(range(8, 0, -1))
            assert owner.apply(abs, (-1,)) == 1
        new = [t.name for t in threading.enumerate() if t.ident not in before]
        assert new == ["parallelkit-manager"]


def test_a_second_terminate_leaves_the_threads_their_word_to_end() -> None:
    # After an initializer failed, the engine terminates the backend in a
    # thread of its own, and the owner terminates it too: the second call
    # dropped the first one's words to end, and the threads waited for ever.
    ex = Executor("thread", 2, initializer=time.sleep, initargs=(0.3,))
    backend = ex._engine.backend  # pyright: ignore[reportPrivateUsage]
    backend.terminate()
    backend.terminate()
    ex.terminate()
    deadline = time.monotonic() + 10
    while any(t.name.startswith("parallelkit-thread") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the threads never got their word to end"
        time.sleep(0.02)


def test_tasks_larger_than_the_task_pipe_all_arrive_whole() -> None:
    # A task that does not fit in the task pipe is written in parts: what
    # send() cannot write at once, the manager thread writes as the workers
    # read, in order, without the submitting thread waiting for it.
    blobs = [bytes([i]) * (1 << 20) for i in range(12)]
    with Executor("process", 2) as ex:
        futures = [ex.submit(len, blob) for blob in blobs]
        assert [f.result(60) for f in futures] == [1 << 20] * 12
        assert list(ex.map(bytes.count, blobs, [bytes([i]) for i in range(12)])) == [1 << 20] * 12
