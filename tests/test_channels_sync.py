"""Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event, Barrier on every backend."""

from __future__ import annotations

import gc
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest

import parallelkit
from parallelkit import (
    Barrier,
    BoundedSemaphore,
    Condition,
    Event,
    Lock,
    RLock,
    Semaphore,
    Value,
)


@pytest.fixture(autouse=True)
def _collect_channels() -> Iterator[None]:
    """Release channels caught in reference cycles before the leak check runs."""
    yield
    gc.collect(0)


def hold_lock(lock: Lock, holding: Event, release: Event) -> None:
    with lock:
        holding.set()
        release.wait(20)


def wait_for_flag(cond: Condition, flag: Value[int], ready: Event) -> int:
    with cond:
        ready.set()
        cond.wait_for(lambda: flag.value == 1, timeout=20)
        return flag.value


def meet(barrier: Barrier) -> int:
    return barrier.wait(timeout=20)


def count_arrival(counter: Value[int]) -> Callable[[], None]:
    def action() -> None:
        counter.add(1)

    return action


def broken(barrier: Barrier) -> bool:
    return barrier.broken


def in_thread(fn: Callable[..., Any], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=fn, args=args)
    thread.start()
    return thread


# -- locks and semaphores ------------------------------------------------------------------


def test_lock_acquires_with_multiprocessing_signature(backend: str) -> None:
    lock = Lock()
    assert lock.acquire()
    assert not lock.acquire(block=False)
    started = time.monotonic()
    assert not lock.acquire(True, 0.1)
    assert time.monotonic() - started >= 0.09
    lock.release()
    with lock:
        assert not lock.acquire(False)
    assert lock.backend == backend


def test_releasing_an_unheld_lock_raises_value_error(backend: str) -> None:
    with pytest.raises(ValueError, match="released too many times"):
        Lock().release()


def test_rlock_is_recursive_and_owned_by_its_thread(backend: str) -> None:
    rlock = RLock()
    with rlock, rlock:
        errors: list[BaseException] = []

        def release_elsewhere() -> None:
            try:
                rlock.release()
            except AssertionError as exc:
                errors.append(exc)

        in_thread(release_elsewhere).join(10)
        assert len(errors) == 1
    assert rlock.acquire(block=False)
    rlock.release()


def test_semaphore_counts_and_reports_its_value(backend: str) -> None:
    sem = Semaphore(2)
    assert sem.acquire() and sem.acquire()
    assert not sem.acquire(block=False)
    assert sem.get_value() == 0
    sem.release()
    sem.release()
    sem.release()  # an unbounded semaphore may go above its start
    assert sem.get_value() == 3
    with pytest.raises(ValueError, match="initial value"):
        Semaphore(-1)


def test_bounded_semaphore_refuses_to_exceed_its_start(backend: str) -> None:
    sem = BoundedSemaphore(1)
    with sem:
        assert sem.get_value() == 0
    with pytest.raises(ValueError, match="released too many times"):
        sem.release()


def test_a_lock_held_in_a_worker_excludes_the_parent(backend: str) -> None:
    lock, holding, release = Lock(), Event(), Event()
    job = parallelkit.spawn(hold_lock, lock, holding, release)
    assert holding.wait(20)
    assert not lock.acquire(True, 0.1)
    release.set()
    job.result(timeout=20)
    assert lock.acquire(True, 5)
    lock.release()


def test_primitives_unpickle_to_the_same_objects_in_their_process(backend: str) -> None:
    made = (Lock(), RLock(), Semaphore(), BoundedSemaphore(), Condition(), Event(), Barrier(2))
    for obj in made:
        assert pickle.loads(pickle.dumps(obj)) is obj


# -- Condition and Event -------------------------------------------------------------------


def test_condition_wait_times_out_and_requires_the_lock(backend: str) -> None:
    cond = Condition()
    with cond:
        assert cond.wait(0.05) is False
        assert cond.wait_for(lambda: 0, timeout=0.05) == 0
    with pytest.raises(RuntimeError, match="un-acquired lock"):
        cond.wait(0.01)
    with pytest.raises(RuntimeError, match="un-acquired lock"):
        cond.notify()


def test_condition_notify_wakes_waiting_threads(backend: str) -> None:
    cond = Condition(Lock())
    arrived: list[int] = []
    woken: list[bool] = []

    def waiter() -> None:
        with cond:
            arrived.append(1)
            woken.append(cond.wait(20))

    threads = [in_thread(waiter) for _ in range(3)]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with cond:
            if len(arrived) == 3:  # all three are inside wait(): they release the lock there
                cond.notify()
                break
        time.sleep(0.01)
    with cond:
        cond.notify_all()
    for thread in threads:
        thread.join(20)
    assert woken == [True, True, True]


def test_condition_and_event_coordinate_with_a_worker(backend: str) -> None:
    cond, ready = Condition(), Event()
    flag = Value("i", 0, lock=False)
    job = parallelkit.spawn(wait_for_flag, cond, flag, ready)
    assert ready.wait(20)
    with cond:
        flag.set(1)
        cond.notify_all()
    assert job.result(timeout=20) == 1


def test_event_set_clear_and_wait(backend: str) -> None:
    event = Event()
    assert not event.is_set()
    assert event.wait(0.05) is False
    event.set()
    event.set()
    assert event.is_set() and event.wait(0.05)
    event.clear()
    assert not event.is_set()
    assert "set=False" in repr(event)


def test_condition_follows_the_backend_of_its_lock() -> None:
    assert Condition(Lock(backend="thread")).backend == "thread"
    assert Condition(RLock(backend="process")).backend == "process"
    with pytest.raises(TypeError, match="cannot use a lock"):
        Condition(Lock(backend="thread"), backend="process")
    with pytest.raises(TypeError, match=r"parallelkit\.Lock"):
        Condition(cast(Any, threading.Lock()), backend="thread")


# -- Barrier -------------------------------------------------------------------------------


def test_barrier_releases_its_parties_together_and_runs_the_action_once(backend: str) -> None:
    counter = Value("i", 0)
    barrier = Barrier(3, action=count_arrival(counter))
    jobs = [parallelkit.spawn(meet, barrier) for _ in range(2)]
    index = barrier.wait(timeout=20)
    indexes = sorted([index, *(job.result(timeout=20) for job in jobs)])
    assert indexes == [0, 1, 2]
    assert counter.value == 1
    assert (barrier.parties, barrier.n_waiting, barrier.broken) == (3, 0, False)


def test_barrier_timeout_breaks_it_until_reset(backend: str) -> None:
    barrier = Barrier(2)
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(timeout=0.05)
    assert broken(barrier)
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(timeout=0.05)
    barrier.reset()
    assert not broken(barrier)
    helper = in_thread(barrier.wait, 20)
    assert barrier.wait(timeout=20) in (0, 1)
    helper.join(10)


def test_barrier_abort_wakes_waiters_with_broken_barrier_error(backend: str) -> None:
    barrier = Barrier(2)
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            barrier.wait(timeout=20)
        except threading.BrokenBarrierError as exc:
            errors.append(exc)

    waiter = in_thread(wait)
    deadline = time.monotonic() + 10
    while barrier.n_waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert barrier.n_waiting == 1
    barrier.abort()
    waiter.join(10)
    assert len(errors) == 1 and barrier.broken


def test_barrier_needs_at_least_one_party() -> None:
    with pytest.raises(ValueError, match="parties"):
        Barrier(0, backend="thread")
