"""The multiprocessing.Pool face: same signatures, same return types, same errors."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import threading
import time
from collections.abc import Iterator

import pytest

import parallelkit
from parallelkit import AsyncResult, ClosedError, Pool

from .helpers import CustomError, add, fail_on, inc, raise_custom, sleep_then, square


def test_map_returns_a_list(backend: str) -> None:
    with Pool(2) as pool:
        result = pool.map(square, range(10))
    assert result == [x * x for x in range(10)]
    assert type(result) is list


def test_map_accepts_a_generator_and_a_chunksize(backend: str) -> None:
    with Pool(2) as pool:
        assert pool.map(inc, (x for x in range(7)), 3) == list(range(1, 8))


def test_map_of_empty_input(backend: str) -> None:
    with Pool(2) as pool:
        assert pool.map(inc, []) == []


def test_map_raises_the_first_task_error(backend: str) -> None:
    with Pool(2) as pool, pytest.raises(ValueError, match="bad item 3"):
        pool.map(fail_on, range(6))


def test_apply_passes_args_and_kwds(backend: str) -> None:
    with Pool(2) as pool:
        assert pool.apply(add, (1,), {"b": 2}) == 3


def test_apply_async_get_wait_ready_successful(backend: str) -> None:
    with Pool(2) as pool:
        res = pool.apply_async(sleep_then, (0.05, 7))
        assert isinstance(res, AsyncResult)
        res.wait(10)
        assert res.ready()
        assert res.successful()
        assert res.get(10) == 7


def test_successful_before_ready_raises_value_error() -> None:
    with Pool(1, backend="thread") as pool:
        res = pool.apply_async(sleep_then, (0.5,))
        with pytest.raises(ValueError, match="not ready"):
            res.successful()
        res.get(10)


def test_get_timeout_raises_multiprocessing_timeout_error() -> None:
    with Pool(1, backend="thread") as pool:
        res = pool.apply_async(sleep_then, (1.0,))
        with pytest.raises(multiprocessing.TimeoutError):
            res.get(timeout=0.05)
        assert res.get(10) == 0


def test_get_timeout_on_the_process_backend() -> None:
    with Pool(1, backend="process") as pool:
        res = pool.apply_async(sleep_then, (1.0,))
        with pytest.raises(multiprocessing.TimeoutError):
            res.get(timeout=0.05)


def test_callbacks_receive_result_and_error(backend: str) -> None:
    got: list[object] = []
    done = threading.Event()

    def on_error(exc: BaseException) -> None:
        got.append(exc)
        done.set()

    with Pool(2) as pool:
        pool.apply_async(square, (4,), callback=got.append).get(10)
        pool.apply_async(raise_custom, (3,), error_callback=on_error)
        assert done.wait(10)
        res = pool.map_async(inc, [1, 2], callback=got.append)
        res.get(10)
    assert got[0] == 16
    assert isinstance(got[1], CustomError)
    assert [1 + 1, 2 + 1] in got


def test_unsuccessful_result_reraises(backend: str) -> None:
    with Pool(2) as pool:
        res = pool.apply_async(raise_custom, (9,))
        res.wait(10)
        assert not res.successful()
        with pytest.raises(CustomError):
            res.get()


def test_starmap_and_starmap_async(backend: str) -> None:
    with Pool(2) as pool:
        assert pool.starmap(pow, [(2, 5), (3, 3)]) == [32, 27]
        assert pool.starmap_async(add, [(1, 1), (2, 2)]).get(10) == [2, 4]


def test_imap_and_imap_unordered(backend: str) -> None:
    with Pool(2) as pool:
        assert list(pool.imap(square, range(20))) == [x * x for x in range(20)]
        assert sorted(pool.imap_unordered(square, range(20), 3)) == [x * x for x in range(20)]


def test_imap_next_timeout_raises_multiprocessing_timeout_error() -> None:
    with Pool(1, backend="thread") as pool:
        it = pool.imap(sleep_then, [1.0])
        with pytest.raises(multiprocessing.TimeoutError):
            it.next(timeout=0.05)
        assert it.next(timeout=10) == 0


def test_lambdas_work_where_multiprocessing_refuses_them(backend: str) -> None:
    with Pool(2) as pool:
        assert pool.map(lambda x: x * 2, [1, 2, 3]) == [2, 4, 6]


def test_close_then_join_waits_for_the_work(backend: str) -> None:
    pool = Pool(2)
    res = pool.map_async(sleep_then, [0.05] * 4)
    pool.close()
    pool.join()
    assert res.get(0) == [0, 0, 0, 0]


def test_a_closed_pool_that_is_never_joined_frees_everything(backend: str) -> None:
    # multiprocessing.Pool lets its workers go at close() once the work is
    # done; a program that never calls join() must not keep threads, workers,
    # descriptors or semaphores (the autouse leak check looks after the test).
    before = {t.ident for t in threading.enumerate()}
    pool = Pool(2)
    assert pool.map(inc, range(4)) == [1, 2, 3, 4]
    pool.close()
    started = [
        t.name for t in threading.enumerate() if t.ident not in before and "closer" in t.name
    ]
    assert not started, "close() of an idle pool needs no thread to wait for it"
    deadline = time.monotonic() + 10
    while any(
        t.ident not in before and t.name.startswith("parallelkit") for t in threading.enumerate()
    ):
        assert time.monotonic() < deadline, "the pool's threads did not end after close()"
        time.sleep(0.02)
    del pool


def test_join_before_close_raises_value_error() -> None:
    pool = Pool(1, backend="serial")
    with pytest.raises(ValueError, match="still running"):
        pool.join()
    pool.close()
    pool.join()


def test_use_after_close_raises_closed_error_which_is_a_value_error(backend: str) -> None:
    pool = Pool(2)
    pool.close()
    with pytest.raises(ValueError, match="cannot schedule new tasks"):
        pool.map(inc, [1])
    with pytest.raises(ClosedError):
        pool.apply_async(inc, (1,))
    pool.join()


def test_terminate_fails_running_tasks_instead_of_hanging() -> None:
    pool = Pool(1, backend="process")
    res = pool.apply_async(sleep_then, (30.0,))
    time.sleep(0.3)
    pool.terminate()
    with pytest.raises(ClosedError, match="terminated"):
        res.get(5)
    pool.join()


def test_exit_of_with_block_terminates_like_multiprocessing(backend: str) -> None:
    with Pool(2) as pool:
        pool.map(inc, [1])
    assert "terminated" in repr(pool)
    with pytest.raises(ClosedError):
        pool.apply(inc, (1,))


def test_context_argument_chooses_the_start_method() -> None:
    with Pool(1, context=multiprocessing.get_context("spawn")) as pool:
        assert pool.start_method == "spawn"
        assert pool.apply(inc, (1,)) == 2


@pytest.mark.parametrize("processes", [0, -1, 2.5])
def test_bad_processes_raises_value_error(processes: object) -> None:
    with pytest.raises(ValueError, match="processes must be a whole number >= 1"):
        Pool(processes)  # type: ignore[arg-type]


def test_bad_maxtasksperchild_raises_value_error() -> None:
    with pytest.raises(ValueError, match="maxtasksperchild must be a whole number >= 1"):
        Pool(1, maxtasksperchild=0, backend="serial")


def test_maxtasksperchild_replaces_workers() -> None:
    from .helpers import pid_of

    with Pool(1, maxtasksperchild=1, backend="process") as pool:
        pids = {pool.apply(pid_of) for _ in range(3)}
    assert len(pids) == 3


def test_workers_replaced_after_close_run_the_rest_and_end() -> None:
    # Each worker ends after one chunk; close() comes while most chunks still
    # wait: the workers started in their place run them, then get their own
    # word to end, and join() returns.
    from .helpers import pid_of

    pool = Pool(1, maxtasksperchild=1, backend="process")
    result = pool.map_async(pid_of, range(6), chunksize=1)
    pool.close()
    pool.join()
    assert len(set(result.get(0))) == 6


def test_repr(backend: str) -> None:
    with Pool(2) as pool:
        assert repr(pool).startswith(f"<parallelkit.Pool backend={backend!r}")


def test_pool_and_executor_share_the_async_result_future() -> None:
    with Pool(1, backend="serial") as pool:
        res = pool.apply_async(inc, (1,))
        assert res.future.result() == 2


def test_seed_pool_program_changes_only_its_import(capfd: pytest.CaptureFixture[str]) -> None:
    from .helpers import seed_run

    for backend in ("process", "thread"):
        with parallelkit.config(backend=backend):
            pool = Pool(2)
            assert pool.map(seed_run, [1_000_000, 1_000_000]) == [None, None]
            pool.close()
            pool.join()
    # Forkserver workers print to the stdout the server started with, which
    # pytest's capture may not see; the thread backend prints here (two
    # threads print at once, so their lines may interleave).
    assert capfd.readouterr().out.count("499999500000") >= 2


def _numbers(n: int) -> Iterator[int]:
    yield from range(n)  # a generator: its length is unknown


def test_imap_made_before_close_goes_on_after_close(backend: str) -> None:
    # The usual multiprocessing.Pool shape: close() early, use the results, join().
    pool = Pool(2)
    ordered = pool.imap(inc, _numbers(3000), chunksize=7)
    unordered = pool.imap_unordered(inc, _numbers(3000), chunksize=7)
    pool.close()
    assert list(ordered) == list(range(1, 3001))
    assert sorted(unordered) == list(range(1, 3001))
    pool.join()
    with pytest.raises(ClosedError):
        pool.imap(inc, [1])


def test_join_before_using_a_map_of_known_length_keeps_every_result(backend: str) -> None:
    pool = Pool(2)
    results = pool.imap(inc, list(range(3000)), chunksize=7)
    pool.close()
    pool.join()  # reads the rest of the list now; the results wait in the map
    assert list(results) == list(range(1, 3001))


def test_join_cuts_a_map_of_unknown_length_with_a_clear_error(backend: str) -> None:
    pool = Pool(2)
    results = pool.imap(inc, _numbers(10**9), chunksize=5)  # endless in practice
    pool.close()
    pool.join()  # must not read a billion items: the input is cut where it is
    got: list[int] = []
    with pytest.raises(ClosedError, match="whose length is unknown; it stops after item"):
        got.extend(results)
    assert got == list(range(1, len(got) + 1))
    assert got  # the first window had been queued


def test_terminate_ends_the_wait_for_a_lazy_map_after_close(backend: str) -> None:
    pool = Pool(2)
    results = pool.imap(inc, _numbers(10**9), chunksize=5)
    assert next(results) == 1
    pool.close()  # a closer thread now waits for the map to be used up
    pool.terminate()  # the map can no longer run: nothing may wait for it
    deadline = time.monotonic() + 10
    while any(t.name == "parallelkit-closer" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the closer thread still waits for the map"
        time.sleep(0.05)
    with pytest.raises((ClosedError, concurrent.futures.CancelledError)):
        list(results)


def test_terminate_on_threads_runs_none_of_the_queued_tasks() -> None:
    # The running task cannot be stopped; those waiting behind it never start.
    release = threading.Event()
    ran: list[int] = []
    pool = Pool(1, backend="thread")
    blocker = pool.apply_async(release.wait, (10,))
    queued = [pool.apply_async(ran.append, (i,)) for i in range(6)]
    time.sleep(0.2)
    pool.terminate()
    release.set()
    pool.join()
    time.sleep(0.2)
    assert ran == []
    with pytest.raises(ClosedError, match="terminated"):
        blocker.get(5)
    for res in queued:  # failed if it was handed over, cancelled if it was not
        with pytest.raises((ClosedError, concurrent.futures.CancelledError)):
            res.get(5)
