"""Channels as ordinary task arguments: every face, every start method, nothing left behind."""

from __future__ import annotations

import functools
import gc
import multiprocessing
import pickle
import subprocess
import sys
import textwrap
from multiprocessing.process import BaseProcess
from typing import Any

import pytest

import parallelkit
from parallelkit import (
    Array,
    ClosedChannelError,
    Connection,
    Event,
    Executor,
    Lock,
    Pipe,
    Pool,
    Queue,
    Value,
)

from .helpers import FORK_WARNING, START_METHODS

pytestmark = pytest.mark.usefixtures("collect_channels")


def use_all(
    q: Queue[int],
    conn: Connection[int],
    counter: Value[int],
    squares: Array[int],
    lock: Lock,
    go: Event,
    i: int,
) -> int:
    assert go.wait(20)
    q.put(i)
    conn.send(i)
    counter.add(1)
    with lock:
        squares[i] = i * i
    return i


Channels = tuple[Queue[int], Connection[int], Connection[int], Value[int], Array[int], Lock, Event]


def channels() -> Channels:
    q = Queue[int](backend="process")
    mine, theirs = Pipe[int](backend="process")
    go = Event(backend="process")
    go.set()
    return (
        q,
        mine,
        theirs,
        Value("i", 0, backend="process"),
        Array("i", 8, backend="process"),
        Lock(backend="process"),
        go,
    )


def check_arrivals(
    q: Queue[int],
    mine: Connection[int],
    counter: Value[int],
    squares: Array[int],
    indexes: list[int],
) -> None:
    assert sorted(q.get(timeout=20) for _ in indexes) == sorted(indexes)
    assert sorted(mine.recv() for _ in indexes) == sorted(indexes)
    assert counter.value == len(indexes)
    assert [squares[i] for i in indexes] == [i * i for i in indexes]


def params_for_start_methods() -> list[Any]:
    return [
        pytest.param(m, marks=pytest.mark.filterwarnings(FORK_WARNING)) if m == "fork" else m
        for m in START_METHODS
    ]


@pytest.mark.parametrize("start_method", params_for_start_methods())
def test_channels_pass_through_executor_submit_and_map(start_method: str) -> None:
    q, mine, theirs, counter, squares, lock, go = channels()
    with Executor("process", 1, start_method=start_method) as ex:
        assert ex.submit(use_all, q, theirs, counter, squares, lock, go, 0).result(30) == 0
        args = [[x] * 3 for x in (q, theirs, counter, squares, lock, go)]
        assert list(ex.map(use_all, *args, [1, 2, 3], timeout=30)) == [1, 2, 3]
    check_arrivals(q, mine, counter, squares, [0, 1, 2, 3])


@pytest.mark.parametrize("start_method", params_for_start_methods())
def test_channels_pass_through_pool_apply_and_map(start_method: str) -> None:
    q, mine, theirs, counter, squares, lock, go = channels()
    with Pool(1, backend="process", start_method=start_method) as pool:
        assert pool.apply(use_all, (q, theirs, counter, squares, lock, go, 4)) == 4
        task = functools.partial(use_all, q, theirs, counter, squares, lock, go)
        assert pool.map(task, [5, 6]) == [5, 6]
        assert pool.apply_async(use_all, (q, theirs, counter, squares, lock, go, 7)).get(30) == 7
    check_arrivals(q, mine, counter, squares, [4, 5, 6, 7])


@pytest.mark.parametrize("start_method", params_for_start_methods())
def test_channels_pass_to_a_multiprocessing_process(start_method: str) -> None:
    q, mine, theirs, counter, squares, lock, go = channels()
    context: Any = multiprocessing.get_context(start_method)  # typeshed's BaseContext lacks Process
    proc: BaseProcess = context.Process(
        target=use_all, args=(q, theirs, counter, squares, lock, go, 3)
    )
    proc.start()
    proc.join(30)
    assert proc.exitcode == 0
    check_arrivals(q, mine, counter, squares, [3])


@pytest.mark.parametrize("backend", ["thread", "serial"])
def test_channels_pass_through_the_thread_and_serial_backends(backend: str) -> None:
    q, mine, theirs = Queue[int](backend=backend), *Pipe[int](backend=backend)
    counter, squares = Value("i", 0, backend=backend), Array("i", 8, backend=backend)
    lock, go = Lock(backend=backend), Event(backend=backend)
    go.set()
    with Executor(backend, 2) as ex:
        futures = [ex.submit(use_all, q, theirs, counter, squares, lock, go, i) for i in range(3)]
        assert [f.result(10) for f in futures] == [0, 1, 2]
    check_arrivals(q, mine, counter, squares, [0, 1, 2])


def test_thread_channels_survive_check_pickle_as_the_same_objects() -> None:
    q, go = Queue[int](backend="thread"), Event(backend="thread")

    def received_the_same(queue: Queue[int], event: Event) -> bool:
        return queue is q and event is go

    with Executor("thread", 1, check_pickle=True) as ex:
        assert ex.submit(received_the_same, q, go).result(10)


def test_executors_and_pools_hand_out_channels_of_their_own_backend(backend: str) -> None:
    with parallelkit.config(backend="process" if backend != "process" else "thread"):
        with Executor(backend, 1) as ex:
            made: list[Any] = [
                ex.Queue(),
                *ex.Pipe(),
                *ex.Pipe(duplex=False),
                ex.Value("i", 1),
                ex.Array("d", 2),
                ex.Lock(),
                ex.RLock(),
                ex.Semaphore(),
                ex.BoundedSemaphore(),
                ex.Condition(),
                ex.Event(),
                ex.Barrier(1),
            ]
        with Pool(1, backend=backend) as pool:
            made += [pool.Queue(), pool.Value("i"), pool.Lock()]
    assert {obj.backend for obj in made} == {backend}


def test_an_executors_check_pickle_reaches_its_queues() -> None:
    with Executor("thread", 1, check_pickle=True) as ex:
        q: Queue[list[int]] = ex.Queue()
    item = [1]
    q.put(item)
    assert q.get() is not item


def test_a_channel_released_by_its_creator_cannot_be_opened() -> None:
    blob = pickle.dumps(Queue[int](backend="process"))
    gc.collect()
    with pytest.raises(ClosedChannelError, match="already released it"):
        pickle.loads(blob)


LIFECYCLE_SCRIPT = """
import gc, os, secrets, sys, time
import parallelkit

mark = "t" + secrets.token_hex(4)
real = secrets.token_hex
if __name__ == "__main__":
    secrets.token_hex = lambda n=None: mark + real(3)  # every channel name now contains mark


def mine():
    return sorted(n for n in os.listdir("/dev/shm") if mark in n)


def work(q, conn, value, arr, lock, cond, event, barrier):
    q.put(1)
    conn.send(2)
    value.add(3)
    with lock:
        arr[0] = 4
    with cond:
        cond.notify_all()
    event.set()
    barrier.wait(5)
    return "done"


def main():
    q = parallelkit.Queue()
    a, b = parallelkit.Pipe()
    objs = [q, b, parallelkit.Value("i"), parallelkit.Array("d", 100_000), parallelkit.Lock(),
            parallelkit.Condition(), parallelkit.Event(), parallelkit.Barrier(1)]
    print("mark", mark)
    print("created", len(mine()))
    with parallelkit.Executor("process", 1) as ex:
        print(ex.submit(work, *objs).result(30))
    print(parallelkit.spawn(work, *objs).result(30))
    print(q.get(), q.get(), a.recv(), a.recv())
    if sys.argv[1] == "kill":
        import signal
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    del q, a, b, objs
    gc.collect()
    print("left", mine())


if __name__ == "__main__":
    main()
"""


def run_lifecycle(tmp_path: Any, mode: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "lifecycle.py"
    script.write_text(textwrap.dedent(LIFECYCLE_SCRIPT), encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script), mode],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PARALLELKIT_BACKEND": "process", "PATH": "", "PYTHONPATH": ":".join(sys.path)},
        check=False,
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /dev/shm")
def test_nothing_is_left_in_dev_shm_and_the_resource_tracker_stays_quiet(tmp_path: Any) -> None:
    result = run_lifecycle(tmp_path, "clean")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert int(lines[1].split()[1]) >= 10  # the channels really made named objects
    assert lines[2:5] == ["done", "done", "1 1 2 2"]
    assert lines[5] == "left []"
    assert result.stderr == ""  # no "leaked semaphore/shared_memory objects" warning


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /dev/shm")
def test_the_resource_tracker_removes_the_names_of_a_killed_creator(tmp_path: Any) -> None:
    import os
    import time

    result = run_lifecycle(tmp_path, "kill")
    assert result.returncode == -9
    lines = result.stdout.splitlines()
    assert lines[2:5] == ["done", "done", "1 1 2 2"]
    mark = lines[0].split()[1]
    deadline = time.monotonic() + 10
    leftovers = [n for n in os.listdir("/dev/shm") if mark in n]
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.05)
        leftovers = [n for n in os.listdir("/dev/shm") if mark in n]
    assert leftovers == []
    assert "leaked" in result.stderr  # the tracker reports what it cleaned up
