"""The task channel: a reader that dies half-way through a task damages nothing for good."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from typing import Any

import pytest

from parallelkit._backends import _mp_private
from parallelkit._backends._pipes import HEADER, TaskChannel


def _tag(task: Any) -> int:
    tag: int = task[0]
    return tag


def _take_header_then_die(channel: TaskChannel) -> None:
    """Take the channel's lock and the next header, then die before the body."""
    channel._rlock.acquire()  # pyright: ignore[reportPrivateUsage]
    channel._take_header()  # pyright: ignore[reportPrivateUsage]
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture
def channel() -> Any:
    made = TaskChannel(multiprocessing.get_context("spawn"), _tag)
    yield made
    made.close()


def test_tasks_arrive_in_order_with_their_payloads(channel: TaskChannel) -> None:
    channel.put((1, "a"))
    channel.put(None)
    channel.put((2, "b"))
    assert channel.get() == (1, "a")
    assert channel.get() is None
    assert channel.get() == (2, "b")


def test_a_task_larger_than_the_pipe_arrives_whole(channel: TaskChannel) -> None:
    big = bytes(range(256)) * 8192  # 2 MB: written in parts while it is read
    writer = threading.Thread(target=channel.put, args=((3, big),))
    writer.start()
    try:
        assert channel.get() == (3, big)
    finally:
        writer.join(30)


def test_a_reader_resynchronizes_after_a_partly_read_task(channel: TaskChannel) -> None:
    channel.put((1, "lost" * 50))
    channel.put((2, "next"))
    # A reader that died after the header and a few bytes of the body.
    os.read(channel._reader.fileno(), HEADER.size + 7)  # pyright: ignore[reportPrivateUsage]
    assert channel.get() == (2, "next")


def test_the_record_names_a_dead_reader_and_the_task_it_took(channel: TaskChannel) -> None:
    assert channel.holder() == (0, 0)
    channel.put((7, "taken by a reader that dies" * 20))
    reader = multiprocessing.get_context("spawn").Process(
        target=_take_header_then_die, args=(channel,)
    )
    reader.start()
    reader.join(30)
    assert reader.exitcode == -signal.SIGKILL
    lock = channel._rlock  # pyright: ignore[reportPrivateUsage]
    assert _mp_private.lock_held(lock)
    assert channel.holder() == (reader.pid, 7)
    channel.release_for_dead_reader()
    assert not _mp_private.lock_held(lock)
    assert channel.holder() == (0, 0)
    channel.put((8, "after"))
    assert channel.get() == (8, "after")  # the rest of task 7 is skipped


@pytest.mark.parametrize("read_size", [7, 50, 1 << 16])
def test_the_looks_read_every_ack_whatever_their_reads_cut(
    monkeypatch: pytest.MonkeyPatch, read_size: int
) -> None:
    # The looks take acks from their pipe in large reads and split them
    # themselves; a read that ends inside an ack must keep its start for the next.
    import types

    from parallelkit import _worker
    from parallelkit._backends import _looks

    monkeypatch.setattr(_looks, "ACK_READ", read_size)
    reader, writer = multiprocessing.get_context("spawn").Pipe(duplex=False)
    seen: list[bytes] = []
    fake_looks = types.SimpleNamespace(
        _ack_reader=reader, _ack_rest=b"", _on_ack=seen.append, _to_kill=[], holding={}
    )
    fake_looks._split_acks = lambda data: _looks.WorkerLooks._split_acks(fake_looks, data)  # type: ignore[arg-type]  # pyright: ignore[reportPrivateUsage, reportArgumentType]
    sent = [_worker.ACK_STARTED + _worker.ACK_FORMAT.pack(1234, i, 0.0) for i in range(2000)]
    sent.insert(1000, b"W")  # messages of other lengths go through too
    try:
        for message in sent:
            writer.send_bytes(message)
        while reader.poll():
            _looks.WorkerLooks._read_acks(fake_looks)  # type: ignore[arg-type]  # pyright: ignore[reportPrivateUsage, reportArgumentType]
        assert seen == sent
        assert fake_looks._ack_rest == b""  # pyright: ignore[reportPrivateUsage]
    finally:
        reader.close()
        writer.close()


@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_the_looks_do_not_spin_on_workers_that_ended(
    monkeypatch: pytest.MonkeyPatch, start_method: str
) -> None:
    # An ended worker's sentinel stays ready until someone reaps the worker;
    # waiting on it again returned at once, and the looks ran hundreds of
    # times during a join, taking the GIL from the threads doing the join.
    import parallelkit
    from parallelkit._backends import _looks

    looks = 0
    reap = _looks.WorkerLooks._reap  # pyright: ignore[reportPrivateUsage]

    def counting(self: _looks.WorkerLooks, ready: set[Any]) -> None:
        nonlocal looks
        looks += 1
        reap(self, ready)

    monkeypatch.setattr(_looks.WorkerLooks, "_reap", counting)
    for _ in range(5):
        pool = parallelkit.Pool(2, backend="process", start_method=start_method)
        assert pool.map(abs, range(-4, 0)) == [4, 3, 2, 1]
        looks = 0
        pool.close()
        time.sleep(0.1)  # the workers end; nobody reaps them until join()
        pool.join()
        # A look per event (two worker exits), and one per 10 ms at most while
        # the ended workers wait to be reaped.
        assert looks < 20, f"{looks} looks in 0.1 s"
