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
def test_an_inbox_reads_every_message_whatever_its_reads_cut(
    monkeypatch: pytest.MonkeyPatch, read_size: int
) -> None:
    # The manager takes a worker's acks and outcomes from its pipe in large
    # reads and splits them itself; a read that ends inside a message must
    # keep its start for the next, and a long one is read straight into place.
    from parallelkit import _worker
    from parallelkit._backends import _pipes

    monkeypatch.setattr(_pipes, "INBOX_READ", read_size)
    reader, writer = multiprocessing.get_context("spawn").Pipe(duplex=False)
    inbox = _pipes.Inbox(reader)
    sent = [_worker.ACK_STARTED + _worker.ACK_FORMAT.pack(1234, i, 0.0) for i in range(2000)]
    sent.insert(1000, b"W")  # messages of other lengths go through too
    sent.insert(1500, b"D" + bytes(range(256)) * 1000)  # longer than a read
    seen: list[bytes] = []

    def write_all() -> None:
        for message in sent:
            writer.send_bytes(message)

    sender = threading.Thread(target=write_all)
    sender.start()
    try:
        while len(seen) < len(sent):
            messages, still_open = inbox.read()
            assert still_open
            seen.extend(bytes(message) for message in messages)
        assert seen == sent
        assert not inbox.cut
    finally:
        sender.join(30)
        inbox.close()
        writer.close()


def test_an_inbox_keeps_a_message_cut_short_by_its_writer_s_end() -> None:
    from parallelkit._backends._pipes import Inbox

    reader, writer = multiprocessing.get_context("spawn").Pipe(duplex=False)
    inbox = Inbox(reader)
    writer.send_bytes(b"whole")
    os.write(writer.fileno(), (100).to_bytes(4, "big", signed=True) + b"part")
    writer.close()
    messages, still_open = inbox.read()
    assert [bytes(m) for m in messages] == [b"whole"]
    assert not still_open and inbox.cut
    inbox.close()


@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_the_manager_does_not_spin_on_workers_that_ended(
    monkeypatch: pytest.MonkeyPatch, start_method: str
) -> None:
    # An ended worker's sentinel stays ready until someone reaps the worker;
    # waiting on it again returns at once, and the manager would run
    # hundreds of rounds during a join, taking the GIL from the joining thread.
    import parallelkit
    from parallelkit._backends import _process

    rounds = 0
    timeout = _process.Backend._timeout  # pyright: ignore[reportPrivateUsage]

    def counting(self: _process.Backend) -> int | None:
        nonlocal rounds
        rounds += 1
        return timeout(self)

    monkeypatch.setattr(_process.Backend, "_timeout", counting)
    for _ in range(5):
        pool = parallelkit.Pool(2, backend="process", start_method=start_method)
        assert pool.map(abs, range(-4, 0)) == [4, 3, 2, 1]
        rounds = 0
        pool.close()
        time.sleep(0.1)  # the workers end
        pool.join()
        # A round per event (two worker exits), and one per 10 ms at most while
        # an ended worker's status cannot be read yet.
        assert rounds < 20, f"{rounds} rounds in 0.1 s"
