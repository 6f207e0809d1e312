"""Queue on every backend: multiprocessing's contract, close() as end-of-stream, batches."""

from __future__ import annotations

import gc
import pickle
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

import pytest

import parallelkit
from parallelkit import ClosedChannelError, Queue

from .helpers import loop_size


@pytest.fixture(autouse=True)
def _collect_channels() -> Iterator[None]:
    """Release channels caught in reference cycles before the leak check runs."""
    yield
    gc.collect(0)


def produce(q: Queue[int], start: int, count: int) -> None:
    for i in range(start, start + count):
        q.put(i)


def produce_batch(q: Queue[int], start: int, count: int) -> None:
    q.put_many(range(start, start + count))


def consume(q: Queue[int]) -> list[int]:
    return list(q)


def consume_batches(q: Queue[int]) -> list[int]:
    taken: list[int] = []
    while True:
        try:
            taken += q.get_many(max_items=7)
        except ClosedChannelError:
            return taken


def put_after_close(q: Queue[int]) -> str:
    try:
        q.put(1)
    except ClosedChannelError as exc:
        return type(exc).__name__
    return "accepted"


# -- the multiprocessing contract ----------------------------------------------------------


def test_put_then_get_returns_items_in_order(backend: str) -> None:
    q = Queue[int]()
    for i in range(5):
        q.put(i)
    assert [q.get(timeout=5) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert q.backend == backend


def test_get_times_out_with_queue_empty(backend: str) -> None:
    q = Queue[int]()
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.1)
    assert time.monotonic() - started >= 0.09


def test_get_nowait_and_nonblocking_get_raise_queue_empty(backend: str) -> None:
    q = Queue[int]()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(block=False)


def test_bounded_put_times_out_with_queue_full(backend: str) -> None:
    q = Queue[int](2)
    q.put(1)
    q.put(2)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.1)
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    assert q.get() == 1
    q.put(3, timeout=1)
    assert [q.get(), q.get()] == [2, 3]


def test_qsize_empty_and_full_follow_the_contents(backend: str) -> None:
    q = Queue[str](2)
    assert (q.qsize(), q.empty(), q.full(), q.maxsize) == (0, True, False, 2)
    q.put("a")
    q.put("b")
    assert (q.qsize(), q.empty(), q.full()) == (2, False, True)
    q.get()
    assert (q.qsize(), q.empty(), q.full()) == (1, False, False)


def test_unbounded_queue_is_never_full(backend: str) -> None:
    q = Queue[int]()
    q.put_many(range(loop_size(backend, 1000)))
    assert not q.full()
    assert q.maxsize == 0


# -- batches -------------------------------------------------------------------------------


def test_put_many_and_get_many_move_batches_in_order(backend: str) -> None:
    q = Queue[int]()
    q.put_many(range(100))
    q.put(100)
    assert q.get_many() == list(range(101))


def test_get_many_takes_at_most_max_items(backend: str) -> None:
    q = Queue[int]()
    q.put_many(range(10))
    assert q.get_many(max_items=3) == [0, 1, 2]
    assert q.get_many(max_items=1) == [3]
    assert q.get_many(max_items=100) == [4, 5, 6, 7, 8, 9]


def test_get_many_waits_for_the_first_item_then_times_out(backend: str) -> None:
    q = Queue[int]()
    with pytest.raises(queue.Empty):
        q.get_many(timeout=0.05)


def test_get_many_rejects_max_items_below_one(backend: str) -> None:
    with pytest.raises(ValueError, match="max_items"):
        Queue[int]().get_many(0)


def test_bounded_put_many_says_how_many_items_went_in(backend: str) -> None:
    q = Queue[int](3)
    with pytest.raises(queue.Full, match="put 3 of 5 items"):
        q.put_many(range(5), timeout=0.1)
    assert q.get_many() == [0, 1, 2]


def test_bounded_put_many_larger_than_maxsize_completes_as_room_appears(backend: str) -> None:
    q = Queue[int](4)
    taken: list[int] = []

    def take() -> None:
        while len(taken) < 20:
            taken.extend(q.get_many(timeout=10))

    reader = threading.Thread(target=take)
    reader.start()
    q.put_many(range(20), timeout=10)
    reader.join(10)
    assert taken == list(range(20))


# -- close() as end-of-stream --------------------------------------------------------------


def test_close_ends_iteration_without_a_sentinel(backend: str) -> None:
    q = Queue[int]()
    q.put_many([1, 2, 3])
    q.close()
    assert list(q) == [1, 2, 3]
    assert q.closed


def test_put_after_close_raises_closed_channel_error(backend: str) -> None:
    q = Queue[int]()
    q.close()
    with pytest.raises(ClosedChannelError, match="closed"):
        q.put(1)
    with pytest.raises(ClosedChannelError):
        q.put_many([1, 2])


def test_get_after_close_returns_what_is_left_then_raises(backend: str) -> None:
    q = Queue[int]()
    q.put(7)
    q.close()
    assert q.get(timeout=5) == 7
    with pytest.raises(ClosedChannelError, match="every item"):
        q.get(timeout=5)
    with pytest.raises(ClosedChannelError):
        q.get_nowait()
    with pytest.raises(ClosedChannelError):
        q.get_many()


def test_close_is_idempotent(backend: str) -> None:
    q = Queue[int]()
    q.close()
    q.close()
    assert q.closed
    assert list(q) == []


def test_close_wakes_a_blocked_consumer(backend: str) -> None:
    q = Queue[int]()
    outcome: list[object] = []

    def wait_for_item() -> None:
        try:
            outcome.append(q.get(timeout=20))
        except ClosedChannelError as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait_for_item)
    waiter.start()
    time.sleep(0.1)
    q.close()
    waiter.join(10)
    assert not waiter.is_alive()
    assert isinstance(outcome[0], ClosedChannelError)


def test_close_wakes_a_producer_blocked_on_a_full_queue(backend: str) -> None:
    q = Queue[int](1)
    q.put(0)
    outcome: list[object] = []

    def put_one() -> None:
        try:
            q.put(1, timeout=20)
            outcome.append("put")
        except ClosedChannelError as exc:
            outcome.append(exc)

    producers = [threading.Thread(target=put_one) for _ in range(2)]
    for thread in producers:
        thread.start()
    time.sleep(0.1)
    q.close()
    for thread in producers:
        thread.join(10)
    assert [type(x) for x in outcome] == [ClosedChannelError, ClosedChannelError]
    assert list(q) == [0]


def test_a_worker_sees_the_close_of_its_parent(backend: str) -> None:
    q = Queue[int]()
    q.close()
    assert parallelkit.spawn(put_after_close, q).result(timeout=30) == "ClosedChannelError"


def test_many_producers_and_consumers_end_cleanly_with_close(backend: str) -> None:
    q = Queue[int](50)
    n = loop_size(backend, 300)
    producers = [parallelkit.spawn(produce, q, i * 1000, n) for i in range(2)]
    producers.append(parallelkit.spawn(produce_batch, q, 5000, n))
    consumers = [parallelkit.spawn(consume, q), parallelkit.spawn(consume_batches, q)]
    for job in producers:
        job.result(timeout=30)
    q.close()
    taken = [item for job in consumers for item in job.result(timeout=30)]
    expected = [*range(0, n), *range(1000, 1000 + n), *range(5000, 5000 + n)]
    assert Counter(taken) == Counter(expected)


def test_items_of_one_producer_arrive_in_order_across_processes(backend: str) -> None:
    q = Queue[int]()
    n = loop_size(backend, 2000)
    producer = parallelkit.spawn(produce, q, 0, n)
    received = [q.get(timeout=30) for _ in range(n)]
    producer.join()
    assert received == list(range(n))


def test_large_items_cross_whole(backend: str) -> None:
    q = Queue[bytes]()
    blobs = [bytes([i]) * (3 << 20) for i in range(3)]
    for blob in blobs:
        q.put(blob)
    assert [q.get(timeout=30) for _ in blobs] == blobs


def test_put_on_an_unbounded_queue_does_not_wait_for_a_reader(backend: str) -> None:
    q = Queue[bytes]()
    started = time.monotonic()
    for _ in range(8):
        q.put(b"x" * (1 << 20))  # 8 MiB: more than any FIFO holds
    assert time.monotonic() - started < 5
    assert len(q.get_many(timeout=10)) >= 1
    while q.qsize():
        q.get(timeout=10)


# -- identity, pickling, repr --------------------------------------------------------------


def test_queue_unpickles_to_the_same_object_in_its_own_process(backend: str) -> None:
    q = Queue[int]()
    assert pickle.loads(pickle.dumps(q)) is q


def test_thread_queue_cannot_be_used_in_another_process() -> None:
    q = Queue[int](backend="thread")
    with (
        parallelkit.Executor("process", 1) as ex,
        pytest.raises(RuntimeError, match="thread backend cannot be used in process"),
    ):
        ex.submit(produce, q, 0, 1).result(timeout=30)


def test_check_pickle_copies_items_on_the_thread_backend() -> None:
    with parallelkit.config(backend="thread", check_pickle=True):
        q = Queue[list[int]]()
    item = [1]
    q.put(item)
    got = q.get()
    assert got == item
    assert got is not item


def test_repr_names_backend_bound_and_state(backend: str) -> None:
    q = Queue[int](3)
    assert repr(q) == f"<parallelkit.Queue backend={backend!r} maxsize=3 open>"
    q.close()
    assert repr(q).endswith("closed>")


def test_maxsize_must_be_an_int() -> None:
    with pytest.raises(TypeError, match="maxsize"):
        Queue(cast(Any, "3"), backend="thread")
