"""What multiprocessing's own pickler sends to a child, a parallelkit process accepts.

Each object is sent to a ``Process`` and to ``spawn()`` under fork, spawn
and forkserver, and used there: the parent then sees what the child did
(a lock held, bytes through a connection, a buffer written...).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import socket
from collections.abc import Callable, Iterator
from multiprocessing import heap, reduction
from multiprocessing.context import BaseContext
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import pytest

import parallelkit

METHODS = [
    m for m in ("fork", "spawn", "forkserver") if m in multiprocessing.get_all_start_methods()
]


@pytest.fixture(scope="module", autouse=True)
def _heap_arena() -> Iterator[None]:
    """Make multiprocessing's heap arena (one descriptor, kept for the process's life) early.

    Created inside a test, it would count as a leaked descriptor.
    """
    keep = heap.BufferWrapper(8)
    yield
    del keep


@pytest.fixture(params=METHODS)
def method(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each start method in turn, configured for the process backend."""
    name: str = request.param
    with parallelkit.config(backend="process", start_method=name):
        yield name


def run_in_process(fn: Callable[..., object], *args: object) -> None:
    process = parallelkit.Process(target=fn, args=args)
    process.start()
    process.join(30)
    assert process.exitcode == 0


def run_in_spawn(fn: Callable[..., object], *args: object) -> None:
    job = parallelkit.spawn(fn, *args)
    job.result(timeout=30)
    assert job.exitcode == 0


RUNNERS = {"Process": run_in_process, "spawn": run_in_spawn}


@pytest.fixture(params=sorted(RUNNERS))
def run(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Run a function with arguments in a Process, or with spawn(), and check it returned."""
    return RUNNERS[request.param]


# -- what the children do --------------------------------------------------------------------


def take(lock: Any) -> None:
    assert lock.acquire(timeout=10)  # and keep it: the parent sees it held


def take_twice(sem: Any) -> None:
    assert sem.acquire(timeout=10)
    assert sem.acquire(timeout=10)


def double(conn: Any) -> None:
    conn.send(conn.recv() * 2)
    conn.close()


def write_five(arr: Any) -> None:
    arr[1] = 5


def add_one(value: Any) -> None:
    with value.get_lock():
        value.value += 1


def write_seven(shm: SharedMemory) -> None:
    assert shm.buf is not None
    shm.buf[0] = 7
    shm.close()


def ping(sock: socket.socket) -> None:
    sock.sendall(b"ping")
    sock.close()


class FdBox:
    """A descriptor that crosses as multiprocessing's own reducers send one: with DupFd."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Callable[..., FdBox], tuple[object, ...]]:
        return (FdBox.rebuild, (reduction.DupFd(self.fd),))

    @staticmethod
    def rebuild(dup: Any) -> FdBox:
        return FdBox(dup.detach())


def write_fd(box: FdBox) -> None:
    os.write(box.fd, b"fd")
    os.close(box.fd)


def wait_once(barrier: parallelkit.Barrier) -> None:
    barrier.wait(10)


# -- one test per object ---------------------------------------------------------------------


def context(method: str) -> BaseContext:
    return multiprocessing.get_context(method)


def test_a_multiprocessing_lock_is_acquired_in_the_child(method: str, run: Any) -> None:
    lock = context(method).Lock()
    run(take, lock)
    assert not lock.acquire(block=False)
    lock.release()


def test_a_multiprocessing_semaphore_is_acquired_in_the_child(method: str, run: Any) -> None:
    sem = context(method).Semaphore(2)
    run(take_twice, sem)
    assert sem.get_value() == 0


def test_a_connection_carries_data_both_ways(method: str, run: Any) -> None:
    ours, theirs = context(method).Pipe()
    ours.send(21)
    run(double, theirs)
    theirs.close()
    assert ours.poll(10)
    assert ours.recv() == 42
    ours.close()


def test_a_raw_array_in_the_heap_is_written_by_the_child(method: str, run: Any) -> None:
    arr = context(method).RawArray("i", 3)
    run(write_five, arr)
    assert arr[:] == [0, 5, 0]


def test_a_synchronized_value_is_updated_under_its_lock(method: str, run: Any) -> None:
    value = context(method).Value("i", 41)
    run(add_one, value)
    assert value.value == 42


def test_shared_memory_bytes_written_by_the_child_are_seen(method: str, run: Any) -> None:
    shm = SharedMemory(create=True, size=16)
    try:
        run(write_seven, shm)
        assert shm.buf is not None
        assert shm.buf[0] == 7
    finally:
        shm.close()
        shm.unlink()


def test_a_socket_sends_from_the_child(method: str, run: Any) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        run(ping, theirs)
        ours.settimeout(10)
        assert ours.recv(4) == b"ping"


def test_a_descriptor_sent_with_dupfd_is_usable_in_the_child(method: str, run: Any) -> None:
    r, w = os.pipe()
    try:
        run(write_fd, FdBox(w))
        assert os.read(r, 2) == b"fd"
    finally:
        os.close(r)
        os.close(w)


# -- a Barrier's action ----------------------------------------------------------------------


def test_a_barrier_action_holding_a_synchronized_value_runs_in_the_child(
    method: str, run: Any
) -> None:
    value = context(method).Value("i", 0)

    def bump() -> None:
        with value.get_lock():
            value.value += 10

    barrier = parallelkit.Barrier(1, action=bump)
    run(wait_once, barrier)
    assert value.value == 10


def test_a_barrier_action_holding_a_connection_sends_from_the_child(method: str, run: Any) -> None:
    ours, theirs = context(method).Pipe()
    barrier = parallelkit.Barrier(1, action=lambda: theirs.send("action ran"))
    run(wait_once, barrier)
    assert ours.poll(10)
    assert ours.recv() == "action ran"
    ours.close()
    theirs.close()


def test_a_barrier_action_holding_a_lock_refuses_to_travel_outside_a_process_start() -> None:
    lock = multiprocessing.get_context("spawn").Lock()
    # A lambda: multiprocessing's lock.acquire is the raw SemLock's method, refused by type.
    barrier = parallelkit.Barrier(1, action=lambda: lock.acquire(), backend="process")  # noqa: PLW0108
    with pytest.raises(pickle.PicklingError, match=r"action of a Barrier.*through inheritance"):
        pickle.dumps(barrier)
    del barrier
    gc.collect()
