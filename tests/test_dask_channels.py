"""Channels on the dask backend: used inside dask tasks, and what dask refuses.

The generic channel tests run on dask too, through the ``backend`` fixture;
these are the ones only dask has: channels pickled into dask tasks and used
in the workers, and the refusals (each names what to use instead).
"""

from __future__ import annotations

import os
import queue
from collections.abc import Callable, Iterator

import pytest

import parallelkit
from parallelkit import (
    Array,
    Barrier,
    Condition,
    ConfigError,
    Event,
    Executor,
    JoinableQueue,
    Lock,
    Pipe,
    Queue,
    Semaphore,
    Value,
)

distributed = pytest.importorskip("distributed")


@pytest.fixture
def on_cluster(parallelkit_dask_address: str) -> Iterator[str]:
    """The dask backend on the session's cluster, as the default."""
    with parallelkit.config(backend="dask", address=parallelkit_dask_address):
        yield parallelkit_dask_address


def put_range(q: Queue[int], start: int, count: int) -> int:
    q.put_many(range(start, start + count))
    return os.getpid()


def drain(q: Queue[int]) -> list[int]:
    return list(q)


def produce_then_close(q: Queue[int], count: int) -> None:
    for i in range(count):
        q.put(i)
    q.close()


def add_many(total: Value[int], times: int) -> None:
    for _ in range(times):
        total.add(1)


def try_lock(lock: Lock) -> bool:
    got = lock.acquire(block=False)
    if got:
        lock.release()
    return got


def set_event(ev: Event) -> None:
    ev.set()


def echo_upper(end: parallelkit.Connection[str]) -> None:
    for word in end:
        end.send(word.upper())


def test_a_queue_passed_to_a_task_is_filled_in_the_worker(on_cluster: str) -> None:
    q = Queue[int]()
    with Executor() as ex:
        worker_pid = ex.submit(put_range, q, 0, 3).result(30)
    assert worker_pid != os.getpid()
    assert q.get_many() == [0, 1, 2]


def test_a_queue_carries_items_from_one_task_to_another(on_cluster: str) -> None:
    q = Queue[int](maxsize=4)
    with Executor() as ex:
        consumer = ex.submit(drain, q)
        producer = ex.submit(produce_then_close, q, 10)
        producer.result(30)
        assert consumer.result(30) == list(range(10))


def test_close_ends_iteration_for_every_consumer_task(on_cluster: str) -> None:
    q = Queue[int]()
    with Executor() as ex:
        consumers = [ex.submit(drain, q) for _ in range(2)]
        q.put_many(range(12))
        q.close()
        taken = [item for c in consumers for item in c.result(30)]
    assert sorted(taken) == list(range(12))


def test_value_add_from_many_tasks_gives_the_exact_total(on_cluster: str) -> None:
    total = Value("i", 0)
    with Executor() as ex:
        for f in [ex.submit(add_many, total, 5) for _ in range(6)]:
            f.result(30)
    assert total.value == 30


def test_a_lock_held_here_keeps_a_task_out_until_released(on_cluster: str) -> None:
    lock = Lock()
    with Executor() as ex:
        with lock:
            assert ex.submit(try_lock, lock).result(30) is False
        assert ex.submit(try_lock, lock).result(30) is True


def test_an_event_set_in_a_task_is_seen_here(on_cluster: str) -> None:
    ev = Event()
    with Executor() as ex:
        ex.submit(set_event, ev).result(30)
    assert ev.wait(5)


def test_a_pipe_end_passed_to_a_task_answers(on_cluster: str) -> None:
    mine, theirs = Pipe[str]()
    with Executor() as ex:
        job = ex.submit(echo_upper, theirs)
        for word in ("a", "b"):
            mine.send(word)
            assert mine.recv() == word.upper()
        mine.close()
        job.result(30)


def test_a_get_with_a_timeout_on_an_empty_queue_raises_empty(on_cluster: str) -> None:
    q = Queue[int]()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    with pytest.raises(queue.Empty):
        q.get_nowait()


def test_a_value_read_under_its_own_lock_does_not_deadlock(on_cluster: str) -> None:
    v = Value("d", 1.5)
    with v.get_lock():
        v.value = v.value * 2
    assert v.value == 3.0


def test_array_is_refused_naming_scatter_and_queue(on_cluster: str) -> None:
    with pytest.raises(ConfigError, match=r"scatter.*Queue"):
        Array("i", 4)


@pytest.mark.parametrize(
    ("make", "alternative"),
    [
        (Condition, "Event"),
        (lambda: Barrier(2), "futures"),
        (JoinableQueue, "Queue"),
        (lambda: Value("i", 0, lock=False), "lock=True"),
    ],
    ids=["Condition", "Barrier", "JoinableQueue", "Value-lock-False"],
)
def test_what_distributed_has_no_primitive_for_is_refused_naming_the_alternative(
    on_cluster: str, make: Callable[[], object], alternative: str
) -> None:
    with pytest.raises(ConfigError, match=alternative):
        make()


def test_a_semaphore_starting_at_zero_is_refused_naming_event_and_queue(on_cluster: str) -> None:
    with pytest.raises(ValueError, match="Event or a Queue"):
        Semaphore(0)


def test_a_pipe_end_has_no_descriptor_on_dask(on_cluster: str) -> None:
    a, b = Pipe[int]()
    with pytest.raises(OSError, match=r"no file descriptor.*poll"):
        b.fileno()
    a.close()
    b.close()


def test_without_an_address_or_a_client_channels_say_how_to_reach_a_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PARALLELKIT_ADDRESS", raising=False)
    with parallelkit.config(backend="dask"), pytest.raises(ConfigError, match="address="):
        Queue[int]()


def test_channels_of_an_executor_with_a_cluster_of_its_own_live_on_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PARALLELKIT_ADDRESS", raising=False)
    with parallelkit.config(backend="dask"), Executor("dask", 1) as ex:
        q = ex.Queue()
        ex.submit(put_range, q, 0, 2).result(30)
        assert q.get_many() == [0, 1]
        del q  # its client lets go of the cluster before the cluster stops


def acquire_and_keep(lock: Lock) -> bool:
    return lock.acquire(timeout=5)


def test_a_lease_taken_in_a_task_cannot_be_released_here(on_cluster: str) -> None:
    lock = Lock()
    with Executor() as ex:
        assert ex.submit(acquire_and_keep, lock).result(30)
    with pytest.raises(ValueError, match="process that acquired it"):
        lock.release()
    assert not lock.acquire(block=False)
