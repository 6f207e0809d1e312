"""JoinableQueue on every backend: task_done() and join() with multiprocessing's contract."""

from __future__ import annotations

import gc
import pickle
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import parallelkit
from parallelkit import ClosedChannelError, Event, Executor, JoinableQueue, Queue

from .helpers import FORK_WARNING, START_METHODS

ITEMS = 40


@pytest.fixture(autouse=True)
def _collect_channels() -> Iterator[None]:
    """Release channels caught in reference cycles before the leak check runs."""
    yield
    gc.collect(0)


def params_for_start_methods() -> list[Any]:
    return [
        pytest.param(m, marks=pytest.mark.filterwarnings(FORK_WARNING)) if m == "fork" else m
        for m in START_METHODS
    ]


def work(q: JoinableQueue[int], results: Queue[int]) -> int:
    """Take items until the stream ends; record each one's result, then mark it done."""
    handled = 0
    for item in q:
        time.sleep(0.001)  # the items take a moment, so join() really waits for them
        results.put(item * item)
        q.task_done()
        handled += 1
    return handled


def join_after(q: JoinableQueue[int], started: Event) -> str:
    started.set()
    q.join(timeout=30)
    return "joined"


class Unloadable:
    """Pickles fine, but cannot be unpickled."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (refuse_to_load, ())


def refuse_to_load() -> None:
    raise RuntimeError("this item cannot be unpickled")


def assert_join_returns_at_once(q: JoinableQueue[Any]) -> None:
    started = time.monotonic()
    q.join(timeout=10)
    assert time.monotonic() - started < 5


# -- the multiprocessing contract ----------------------------------------------------------


def test_join_with_nothing_put_returns_at_once(backend: str) -> None:
    assert_join_returns_at_once(JoinableQueue[int]())


def test_join_waits_until_every_item_taken_is_task_done(backend: str) -> None:
    q = JoinableQueue[int]()
    q.put_many([1, 2])
    q.get()
    q.get()
    q.task_done()
    with pytest.raises(TimeoutError):
        q.join(timeout=0.1)
    q.task_done()
    assert_join_returns_at_once(q)


def test_join_counts_items_not_yet_taken(backend: str) -> None:
    q = JoinableQueue[int]()
    q.put(1)
    with pytest.raises(TimeoutError):
        q.join(timeout=0.1)


def test_join_timeout_error_says_how_many_items_are_not_done(backend: str) -> None:
    q = JoinableQueue[int]()
    q.put_many([1, 2, 3])
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"timeout=0\.1\): 3 items put are not done"):
        q.join(timeout=0.1)
    assert time.monotonic() - started >= 0.09


def test_task_done_more_times_than_items_put_raises_value_error(backend: str) -> None:
    q = JoinableQueue[int]()
    q.put(1)
    q.get()
    q.task_done()
    with pytest.raises(ValueError, match=r"^task_done\(\) called too many times$"):
        q.task_done()


def test_task_done_on_a_fresh_queue_raises_value_error(backend: str) -> None:
    with pytest.raises(ValueError, match="too many times"):
        JoinableQueue[int]().task_done()


def test_a_blocked_join_wakes_when_another_thread_finishes_the_last_task(backend: str) -> None:
    q = JoinableQueue[int]()
    q.put_many([1, 2])
    joined = threading.Event()

    def join() -> None:
        q.join(timeout=20)
        joined.set()

    joiner = threading.Thread(target=join)
    joiner.start()
    q.get_many()
    q.task_done()
    time.sleep(0.1)
    assert not joined.is_set()
    q.task_done()
    joiner.join(10)
    assert joined.is_set()


def test_it_is_a_queue_with_the_queue_methods(backend: str) -> None:
    q = JoinableQueue[int](5)
    q.put_many([1, 2])
    q.put_nowait(3)
    assert isinstance(q, Queue)
    assert (q.qsize(), q.maxsize, q.backend) == (3, 5, backend)
    assert q.get_many() == [1, 2, 3]


# -- what counts as a task -----------------------------------------------------------------


def test_a_put_refused_by_a_full_queue_adds_no_task(backend: str) -> None:
    q = JoinableQueue[int](1)
    q.put(1)
    with pytest.raises(queue.Full):
        q.put_nowait(2)
    q.get()
    q.task_done()
    assert_join_returns_at_once(q)


def test_a_bounded_put_many_that_times_out_counts_only_the_items_that_went_in(
    backend: str,
) -> None:
    q = JoinableQueue[int](3)
    with pytest.raises(queue.Full, match="put 3 of 5 items"):
        q.put_many(range(5), timeout=0.1)
    for _ in q.get_many():
        q.task_done()
    assert_join_returns_at_once(q)


# -- close() -------------------------------------------------------------------------------


def test_close_does_not_release_join_while_items_are_unfinished(backend: str) -> None:
    q = JoinableQueue[int]()
    q.put(1)
    q.close()
    with pytest.raises(TimeoutError):
        q.join(timeout=0.1)


def test_items_put_before_close_are_taken_and_done_after_it(backend: str) -> None:
    q = JoinableQueue[int]()
    q.put_many([1, 2])
    q.close()
    for _ in q:
        q.task_done()
    assert_join_returns_at_once(q)


def test_a_put_after_close_adds_no_task(backend: str) -> None:
    q = JoinableQueue[int]()
    q.close()
    with pytest.raises(ClosedChannelError):
        q.put(1)
    with pytest.raises(ClosedChannelError):
        q.put_many([1, 2])
    assert_join_returns_at_once(q)


# -- producers and consumers in other threads and processes --------------------------------


def test_join_returns_only_after_spawned_consumers_processed_every_item(backend: str) -> None:
    q, results = JoinableQueue[int](), Queue[int]()
    consumers = [parallelkit.spawn(work, q, results) for _ in range(2)]
    q.put_many(range(ITEMS))
    q.join(timeout=30)
    assert results.qsize() == ITEMS  # every result was put before its task_done()
    q.close()
    assert sum(job.result(timeout=30) for job in consumers) == ITEMS
    assert sorted(results.get(timeout=10) for _ in range(ITEMS)) == [i * i for i in range(ITEMS)]


@pytest.mark.parametrize("start_method", params_for_start_methods())
def test_join_returns_only_after_executor_tasks_processed_every_item(start_method: str) -> None:
    q, results = JoinableQueue[int](backend="process"), Queue[int](backend="process")
    with Executor("process", 2, start_method=start_method) as ex:
        consumers = [ex.submit(work, q, results) for _ in range(2)]
        q.put_many(range(ITEMS))
        q.join(timeout=30)
        assert results.qsize() == ITEMS
        q.close()
        assert sum(f.result(timeout=30) for f in consumers) == ITEMS


@pytest.mark.parametrize("start_method", params_for_start_methods())
def test_join_in_another_process_waits_for_task_done_here(start_method: str) -> None:
    q, started = JoinableQueue[int](backend="process"), Event(backend="process")
    q.put_many([1, 2])
    with Executor("process", 1, start_method=start_method) as ex:
        joiner = ex.submit(join_after, q, started)
        assert started.wait(30)
        time.sleep(0.2)
        assert not joiner.done()
        for _ in q.get_many():
            q.task_done()
        assert joiner.result(timeout=30) == "joined"


def test_join_returns_only_after_thread_executor_tasks_processed_every_item() -> None:
    with Executor("thread", 2) as ex:
        q, results = ex.JoinableQueue(), ex.Queue()
        consumers = [ex.submit(work, q, results) for _ in range(2)]
        q.put_many(range(ITEMS))
        q.join(timeout=30)
        assert results.qsize() == ITEMS
        q.close()
        assert sum(f.result(timeout=30) for f in consumers) == ITEMS


def test_executors_and_pools_make_joinable_queues_of_their_own_backend(backend: str) -> None:
    with parallelkit.config(backend="process" if backend != "process" else "thread"):
        with Executor(backend, 1) as ex:
            made = ex.JoinableQueue(3)
        with parallelkit.Pool(1, backend=backend) as pool:
            from_pool = pool.JoinableQueue()
    assert isinstance(made, JoinableQueue) and isinstance(from_pool, JoinableQueue)
    assert (made.backend, from_pool.backend, made.maxsize) == (backend, backend, 3)


# -- broken states that join() must not wait for -------------------------------------------


def test_an_item_that_cannot_be_unpickled_counts_as_done() -> None:
    q = JoinableQueue[Any](backend="process")
    q.put(Unloadable())
    with pytest.raises(RuntimeError, match="cannot be unpickled"):
        q.get(timeout=10)
    assert_join_returns_at_once(q)


# -- identity, pickling, repr --------------------------------------------------------------


def test_it_unpickles_to_the_same_object_in_its_own_process(backend: str) -> None:
    q = JoinableQueue[int]()
    assert pickle.loads(pickle.dumps(q)) is q


def test_a_thread_joinable_queue_cannot_be_used_in_another_process() -> None:
    q = JoinableQueue[int](backend="thread")
    with (
        Executor("process", 1) as ex,
        pytest.raises(RuntimeError, match="a JoinableQueue of the thread backend cannot"),
    ):
        ex.submit(q.task_done).result(timeout=30)


def test_repr_names_the_class_backend_bound_and_state(backend: str) -> None:
    q = JoinableQueue[int](3)
    assert repr(q) == f"<parallelkit.JoinableQueue backend={backend!r} maxsize=3 open>"
