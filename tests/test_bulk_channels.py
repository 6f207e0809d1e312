# pyright: reportUnknownMemberType=false, reportUnknownArgumentType=false, reportUnknownVariableType=false
"""Big items of process-backend Queues, JoinableQueues and Pipes go through shared memory.

Buffers of at least ``shared_threshold`` bytes are written into segments named
after the channel ("<token>s<pid>-…" in /dev/shm); every test that makes
some checks that none is left once the channel is released.
"""

from __future__ import annotations

import gc
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import parallelkit
from parallelkit import Connection, Event, JoinableQueue, Pipe, Queue, _bulk
from parallelkit._channels._big import prefix_of

from .helpers import FORK_WARNING, START_METHODS

pytestmark = [
    pytest.mark.usefixtures("collect_channels"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /dev/shm"),
]

MB = 1 << 20
KINDS = ["queue", "joinable", "pipe"]


def start_methods() -> list[Any]:
    return [
        pytest.param(m, marks=pytest.mark.filterwarnings(FORK_WARNING)) if m == "fork" else m
        for m in START_METHODS
    ]


@pytest.fixture(params=start_methods())
def start_method(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each start method in turn, for processes started with ``spawn``."""
    method: str = request.param
    with parallelkit.config(backend="process", start_method=method):
        yield method


def prefix(channel: object) -> str:
    """The segment-name prefix of a process-backend Queue, or of a Pipe end."""
    impl: Any = getattr(channel, "_impl")  # noqa: B009 - the implementation's token
    token: str = impl.token
    if isinstance(channel, Connection | parallelkit.Receiver | parallelkit.Sender):
        token = token[:-1]  # an end's token is the pipe's and a letter
    return prefix_of(token)


def segments(name_prefix: str) -> list[str]:
    """The segments in /dev/shm whose names start with ``name_prefix``."""
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(name_prefix))


def wait_until_gone(name_prefix: str, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    left = segments(name_prefix)
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = segments(name_prefix)
    return left


def items_of(size: int) -> list[object]:
    """A bytes, a bytearray and a memoryview of ``size`` bytes, with distinct contents."""
    return [
        bytes(range(256)) * (size // 256),
        bytearray(b"\x07" * size),
        memoryview(bytes(b"m" * size)),
    ]


def same(a: object, b: object) -> bool:
    if isinstance(a, memoryview):
        return isinstance(b, memoryview) and a.tobytes() == b.tobytes()
    return type(a) is type(b) and a == b


def root_base(array: Any) -> object:
    """What a numpy array's chain of bases ends with (the object that owns the memory)."""
    base = array
    while getattr(base, "base", None) is not None:
        base = base.base
    if isinstance(base, memoryview):
        return base.obj
    return base


# -- what the children run ------------------------------------------------------------------


def echo_queue(inbox: Queue[Any], outbox: Queue[Any], count: int) -> None:
    for _ in range(count):
        outbox.put(inbox.get(timeout=30))


def echo_joinable(inbox: JoinableQueue[Any], outbox: JoinableQueue[Any], count: int) -> None:
    for _ in range(count):
        item = inbox.get(timeout=30)
        outbox.put(item)
        del item
        inbox.task_done()


def echo_pipe(conn: Connection[Any], count: int) -> None:
    for _ in range(count):
        conn.send(conn.recv())


def double_array(inbox: Queue[Any], outbox: Queue[Any]) -> str:
    array = inbox.get(timeout=30)
    outbox.put(array * 2)
    return type(root_base(array)).__name__


def put_array_and_exit(q: Queue[Any], size: int) -> None:
    import numpy as np

    q.put(np.arange(size, dtype=np.int64))


def put_and_hang(q: Queue[Any], count: int, ready: Event) -> None:
    for i in range(count):
        q.put(bytes([i]) * (2 * MB))
    ready.set()
    time.sleep(60)


def put_and_return(q: Queue[Any], count: int) -> int:
    for i in range(count):
        q.put(bytes([i]) * (2 * MB))
    return count


def threshold_seen(q: Queue[Any]) -> int | None:
    impl: Any = getattr(q, "_impl")  # noqa: B009
    threshold: int | None = impl._big.threshold
    return threshold


def consume_all(q: Queue[Any]) -> int:
    total = 0
    for item in q:
        total += len(item)
    return total


# -- numpy arrays ---------------------------------------------------------------------------


def test_a_numpy_array_crosses_to_a_child_and_back_as_a_view_on_shared_memory(
    start_method: str,
) -> None:
    np = pytest.importorskip("numpy")
    there, back = Queue[Any](), Queue[Any]()
    names = (prefix(there), prefix(back))
    array = np.arange(8 * MB // 8, dtype=np.float64).reshape(1024, -1)
    there.put(array)
    job = parallelkit.spawn(double_array, there, back)
    received = back.get(timeout=30)
    assert job.result(timeout=30) not in ("bytes", "bytearray")
    assert received.shape == array.shape and received.dtype == array.dtype
    assert np.array_equal(received, array * 2)
    assert not isinstance(root_base(received), bytes | bytearray)
    received[0, 0] = -1.0  # writable, private to this process
    assert received[0, 0] == -1.0
    del received, there, back, job
    gc.collect()
    assert [segments(p) for p in names] == [[], []]


def test_a_64_mb_array_arrives_intact(start_method: str) -> None:
    np = pytest.importorskip("numpy")
    there, back = Queue[Any](), Queue[Any]()
    array = np.random.default_rng(1).integers(0, 2**31, size=64 * MB // 8, dtype=np.int64)
    there.put(array)
    job = parallelkit.spawn(double_array, there, back)
    received = back.get(timeout=60)
    job.result(timeout=30)
    assert np.array_equal(received, array * 2)


def test_a_received_array_stays_valid_after_its_producer_exited_and_the_queue_went(
    start_method: str,
) -> None:
    np = pytest.importorskip("numpy")
    q = Queue[Any]()
    name = prefix(q)
    job = parallelkit.spawn(put_array_and_exit, q, MB)
    job.result(timeout=30)
    assert job.exitcode == 0
    received = q.get(timeout=30)
    del q, job
    gc.collect()
    assert segments(name) == []  # unlinked; this process's mapping stays
    assert np.array_equal(received, np.arange(MB, dtype=np.int64))


# -- bytes, bytearrays and memoryviews, both ways ------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_2_mb_items_go_to_a_child_and_come_back_whole(start_method: str, kind: str) -> None:
    items = items_of(2 * MB)
    channels: list[Any]
    if kind == "pipe":
        mine, theirs = Pipe[Any]()
        channels = [mine, theirs]
        job = parallelkit.spawn(echo_pipe, theirs, len(items))
        for item in items:
            mine.send(item)
        back = [mine.recv() for _ in items]
        del mine, theirs
    else:
        make = Queue[Any] if kind == "queue" else JoinableQueue[Any]
        there, home = make(), make()
        channels = [there, home]
        echo = echo_queue if kind == "queue" else echo_joinable
        job = parallelkit.spawn(echo, there, home, len(items))
        there.put_many(items)
        back = [home.get(timeout=30) for _ in items]
        if isinstance(there, JoinableQueue) and isinstance(home, JoinableQueue):
            there.join(timeout=30)  # the child called task_done() for each
            for _ in back:
                home.task_done()
            home.join(timeout=5)
        del there, home
    job.result(timeout=30)
    assert all(same(a, b) for a, b in zip(items, back, strict=True))
    names = {prefix(c) for c in channels}
    assert any(segments(n) for n in names)  # they did go through shared memory
    del channels, back, job
    gc.collect()
    assert [segments(n) for n in sorted(names)] == [[] for _ in names]


def test_items_below_the_threshold_stay_plain_pickles() -> None:
    q = Queue[Any](backend="process")
    impl: Any = getattr(q, "_impl")  # noqa: B009
    small = [b"x" * 1000, list(range(1000)), {"k": bytearray(100)}]
    assert not any(_bulk.is_bulk(impl._big.dumps(item, [])) for item in small)
    q.put_many(small)
    assert q.get_many() == small
    assert segments(prefix(q)) == []
    big: list[Any] = []
    assert _bulk.is_bulk(impl._big.dumps(bytes(MB), big))
    impl._big.give_back(big)


def test_bytes_nested_deeper_than_three_levels_go_through_the_pipe() -> None:
    q = Queue[Any](backend="process")
    nested: Any = bytes(MB)
    for _ in range(5):
        nested = [nested]
    q.put(nested)
    assert q.get(timeout=5) == nested
    assert segments(prefix(q)) == []


def test_a_threshold_of_none_turns_shared_memory_off(start_method: str) -> None:
    with parallelkit.config(shared_threshold=None):
        q = Queue[Any]()
        a, b = Pipe[Any]()
    impl: Any = getattr(q, "_impl")  # noqa: B009
    assert not _bulk.is_bulk(impl._big.dumps(bytes(2 * MB), []))
    q.put(bytes(2 * MB))
    assert q.get(timeout=5) == bytes(2 * MB)
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(b.recv()))
    reader.start()
    a.send(bytearray(2 * MB))  # all of it through the pipe: read meanwhile
    reader.join(30)
    assert got == [bytearray(2 * MB)]
    job = parallelkit.spawn(put_and_return, q, 2)  # the child follows the creator
    assert [len(q.get(timeout=30)) for _ in range(2)] == [2 * MB, 2 * MB]
    assert job.result(timeout=30) == 2
    assert segments(prefix(q)) == segments(prefix(a)) == []


def test_the_threshold_is_the_creators_in_every_process(start_method: str) -> None:
    with parallelkit.config(shared_threshold=3 * MB):
        q = Queue[Any]()
    assert parallelkit.spawn(threshold_seen, q).result(timeout=30) == 3 * MB
    job = parallelkit.spawn(put_and_return, q, 1)  # 2 MB: below this queue's threshold
    assert len(q.get(timeout=30)) == 2 * MB
    assert job.result(timeout=30) == 1
    assert segments(prefix(q)) == []


# -- segments are reused, and removed ------------------------------------------------------


def test_a_stream_of_1_mb_items_reuses_a_few_segments(start_method: str) -> None:
    q = Queue[Any](4)
    name = prefix(q)
    job = parallelkit.spawn(consume_all, q)
    for i in range(200):
        q.put(bytes([i % 256]) * MB)
    most = len(segments(name))
    q.close()
    assert job.result(timeout=60) == 200 * MB
    assert most <= 8, most  # the bound (4), the one being read, and a little slack
    del q, job
    gc.collect()
    assert segments(name) == []


def test_put_and_get_in_one_process_reuse_one_segment() -> None:
    q = Queue[Any](backend="process")
    for i in range(200):
        q.put(bytes([i % 256]) * MB)
        assert q.get(timeout=5)[0] == i % 256
    assert len(segments(prefix(q))) == 1


def test_unread_items_leave_nothing_once_the_queue_is_collected(start_method: str) -> None:
    q = Queue[Any]()
    p = JoinableQueue[Any]()
    a, b = Pipe[Any](duplex=False)
    names = [prefix(q), prefix(p), prefix(a)]
    job = parallelkit.spawn(put_and_return, q, 3)  # a child's items, never read
    for item in items_of(2 * MB):
        q.put(item)
        p.put(item)
        b.send(item)
    assert job.result(timeout=30) == 3
    assert all(segments(n) for n in names)
    del q, p, a, b, job
    gc.collect()
    assert [segments(n) for n in names] == [[], [], []]


def test_the_items_of_a_killed_producer_are_readable_and_then_removed(start_method: str) -> None:
    q = Queue[Any]()
    name = prefix(q)
    ready = Event()
    job = parallelkit.spawn(put_and_hang, q, 3, ready)
    assert ready.wait(30)
    time.sleep(0.2)  # its feeder has written what it held
    assert job.pid is not None
    os.kill(job.pid, signal.SIGKILL)
    job.join(30)
    assert job.exitcode == -signal.SIGKILL
    assert q.get(timeout=10) == bytes([0]) * (2 * MB)
    assert segments(name)  # the other two are still there, unread
    del q, job
    gc.collect()
    assert segments(name) == []


def test_put_on_a_full_queue_gives_its_segment_back() -> None:
    q = Queue[Any](1, backend="process")
    q.put(bytes(MB))
    for _ in range(5):
        with pytest.raises(queue.Full):
            q.put(bytes(MB), timeout=0.01)
    assert q.get(timeout=5) == bytes(MB)
    q.put(bytes(MB))
    assert len(segments(prefix(q))) <= 2


# -- whole programs: nothing left in /dev/shm, nothing on stderr ---------------------------

PROGRAM = """
import gc, os, signal, sys, time
import numpy as np
import parallelkit
from parallelkit._channels._big import prefix_of

MB = 1 << 20


def echo(inbox, outbox, conn):
    outbox.put(inbox.get(timeout=30) * 2)
    conn.send(conn.recv())
    outbox.put(bytes(2 * MB))  # never read


def hang(q, ready):
    q.put(np.ones(MB))
    q.put(bytearray(2 * MB))
    ready.set()
    time.sleep(60)


def main():
    q, back = parallelkit.Queue(), parallelkit.Queue()
    jq = parallelkit.JoinableQueue()
    a, b = parallelkit.Pipe()
    names = [prefix_of(x._impl.token) for x in (q, back, jq)] + [prefix_of(a._impl.token[:-1])]
    print(" ".join(names), flush=True)
    q.put(np.arange(MB, dtype=np.float64))
    a.send(memoryview(bytes(2 * MB)))
    jq.put(bytes(3 * MB))  # never read
    job = parallelkit.spawn(echo, q, back, b)
    got = back.get(timeout=30)
    assert got[10] == 20.0, got[10]
    assert len(a.recv()) == 2 * MB
    job.result(timeout=30)
    ready = parallelkit.Event()
    killed = parallelkit.spawn(hang, q, ready)
    assert ready.wait(30)
    time.sleep(0.2)
    os.kill(killed.pid, signal.SIGKILL)
    killed.join(30)
    assert q.get(timeout=10)[5] == 1.0
    if sys.argv[1] == "collect":
        del q, back, jq, a, b, job, killed, got
        gc.collect()
        print("left", sum(1 for n in os.listdir("/dev/shm") if n.startswith(tuple(names))))
    a_array = np.ones(MB)  # the program ends holding a big item it never sent
    print("done", a_array.size, flush=True)


if __name__ == "__main__":
    main()
"""


@pytest.mark.parametrize("start_method", START_METHODS)
@pytest.mark.parametrize("ending", ["exit", "collect"])
def test_a_program_leaves_no_segment_and_the_resource_tracker_stays_quiet(
    tmp_path: Path, start_method: str, ending: str
) -> None:
    pytest.importorskip("numpy")
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(PROGRAM), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script), ending],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={
            **os.environ,
            "PARALLELKIT_BACKEND": "process",
            "PARALLELKIT_START_METHOD": start_method,
            "PYTHONPATH": os.pathsep.join(sys.path),
        },
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    names = lines[0].split()
    if ending == "collect":
        assert lines[1] == "left 0"
    assert lines[-1] == f"done {MB}"
    assert [wait_until_gone(n) for n in names] == [[] for _ in names]
    assert result.stderr == ""  # no "leaked shared_memory" warning, no tracker traceback


# -- any size around the threshold ---------------------------------------------------------

THRESHOLD = 4096
SIZES = st.integers(min_value=THRESHOLD - 64, max_value=THRESHOLD + 64)


def _make(kind: str, size: int, seed: int) -> Any:
    data = bytes((seed + i) % 251 for i in range(size))
    if kind == "bytes":
        return data
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(data)
    import numpy as np

    return np.frombuffer(data, dtype=np.uint8).copy()


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, memoryview) and a.nbytes < THRESHOLD:
        return bytes(b) == a.tobytes()  # pickled in band: cloudpickle sends its bytes
    if type(a).__name__ == "ndarray":
        return type(b) is type(a) and bool((a == b).all()) and a.shape == b.shape
    return same(a, b)


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(SIZES, min_size=1, max_size=6),
    kinds=st.lists(st.sampled_from(["bytes", "bytearray", "memoryview", "numpy"]), min_size=6),
    nest=st.booleans(),
)
def test_property_items_around_the_threshold_round_trip(
    sizes: list[int], kinds: list[str], nest: bool
) -> None:
    if "numpy" in kinds[: len(sizes)]:
        pytest.importorskip("numpy")
    with parallelkit.config(shared_threshold=THRESHOLD):
        q = Queue[Any](backend="process")
    items = [_make(k, s, i) for i, (k, s) in enumerate(zip(kinds, sizes, strict=False))]
    sent: list[Any] = [{"items": items, "n": len(items)}] if nest else items
    q.put_many(sent)
    got = q.get_many()
    flat = got[0]["items"] if nest else got
    assert len(flat) == len(items)
    assert all(_equal(a, b) for a, b in zip(items, flat, strict=True))
    del got, flat
    q.put(items)  # the whole list as one item, once more
    assert all(_equal(a, b) for a, b in zip(items, q.get(timeout=5), strict=True))
