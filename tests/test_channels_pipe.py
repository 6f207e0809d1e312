"""Pipe on every backend: multiprocessing's Connection contract and a close() the peer sees.

Ends held by other processes: tests/test_channels_pipe_ownership.py.
"""

from __future__ import annotations

import gc
import multiprocessing
import pickle
import threading
import time
from collections.abc import Iterator

import pytest

import parallelkit
from parallelkit import ClosedChannelError, Connection, Pipe, Receiver, Sender


@pytest.fixture(autouse=True)
def _collect_channels() -> Iterator[None]:
    """Release channels caught in reference cycles before the leak check runs."""
    yield
    gc.collect(0)


def echo_upper(conn: Connection[str]) -> None:
    for text in conn:
        conn.send(text.upper())
    conn.close()


def send_numbers(end: Sender[int], count: int) -> None:
    for i in range(count):
        end.send(i)
    end.close()


def test_duplex_ends_send_and_receive_both_ways(backend: str) -> None:
    a, b = Pipe[str]()
    assert isinstance(a, Connection) and isinstance(b, Connection)
    a.send("ping")
    assert b.recv() == "ping"
    b.send("pong")
    assert a.recv() == "pong"
    assert a.backend == backend


def test_one_way_pipe_gives_a_receiver_and_a_sender(backend: str) -> None:
    r, w = Pipe[int](duplex=False)
    assert type(r) is Receiver and type(w) is Sender
    w.send(5)
    assert r.recv() == 5
    with pytest.raises(AttributeError):
        getattr(r, "send")(1)  # noqa: B009 - a Receiver has no send


def test_poll_waits_up_to_its_timeout(backend: str) -> None:
    a, b = Pipe[int]()
    assert not b.poll()
    started = time.monotonic()
    assert not b.poll(0.1)
    assert time.monotonic() - started >= 0.09
    a.send(1)
    assert b.poll(5)
    assert b.poll()
    assert b.recv() == 1


def test_send_bytes_honours_offset_and_size_and_recv_bytes_maxlength(backend: str) -> None:
    a, b = Pipe()
    a.send_bytes(b"abcdef", 1, 3)
    assert b.recv_bytes() == b"bcd"
    a.send_bytes(memoryview(b"xyz"), 2)
    assert b.recv_bytes() == b"z"
    with pytest.raises(ValueError, match="offset"):
        a.send_bytes(b"ab", 3)
    a.send_bytes(b"too long")
    with pytest.raises(OSError, match="bad message length"):
        b.recv_bytes(maxlength=3)
    a.send_bytes(b"next")
    assert b.recv_bytes() == b"next"


def test_recv_bytes_into_fills_the_buffer_or_raises_buffer_too_short(backend: str) -> None:
    a, b = Pipe()
    buf = bytearray(8)
    a.send_bytes(b"abc")
    assert b.recv_bytes_into(buf, 2) == 3
    assert buf == bytearray(b"\0\0abc\0\0\0")
    a.send_bytes(b"123456789")
    with pytest.raises(multiprocessing.BufferTooShort) as caught:
        b.recv_bytes_into(buf)
    assert caught.value.args[0] == b"123456789"


def test_objects_and_bytes_mix_like_multiprocessing(backend: str) -> None:
    a, b = Pipe()
    a.send({"k": [1, 2]})
    assert pickle.loads(b.recv_bytes()) == {"k": [1, 2]}
    a.send_bytes(pickle.dumps((3, 4)))
    assert b.recv() == (3, 4)


def test_close_gives_the_peer_eof_after_what_was_sent(backend: str) -> None:
    a, b = Pipe[int]()
    a.send(1)
    a.send(2)
    a.close()
    assert b.poll()
    assert list(b) == [1, 2]
    with pytest.raises(EOFError):
        b.recv()
    with pytest.raises(BrokenPipeError):
        b.send(3)


def test_close_is_idempotent_and_a_closed_end_refuses_use(backend: str) -> None:
    a, b = Pipe[int]()
    a.close()
    a.close()
    assert a.closed and not b.closed
    with pytest.raises(ClosedChannelError):
        a.send(1)
    with pytest.raises(ClosedChannelError):
        a.recv()
    with pytest.raises(ClosedChannelError):
        pickle.dumps(a) if backend == "process" else a.poll()


def test_close_wakes_a_peer_blocked_in_recv(backend: str) -> None:
    a, b = Pipe[int]()
    outcome: list[object] = []

    def wait() -> None:
        try:
            outcome.append(b.recv())
        except EOFError as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.1)
    a.close()
    waiter.join(10)
    assert not waiter.is_alive()
    assert isinstance(outcome[0], EOFError)


def test_context_manager_closes_the_end(backend: str) -> None:
    a, b = Pipe[int]()
    with a:
        a.send(1)
    assert a.closed
    assert list(b) == [1]


def test_large_messages_cross_whole(backend: str) -> None:
    a, b = Pipe[bytes]()
    blob = bytes(range(256)) * 20_000  # 5 MB, more than the FIFO holds
    sender = threading.Thread(target=a.send, args=(blob,))
    sender.start()
    assert b.recv() == blob
    sender.join(10)
    raw = threading.Thread(target=a.send_bytes, args=(blob,))
    raw.start()
    assert b.recv_bytes() == blob
    raw.join(10)


def test_a_spawned_peer_echoes_until_closed(backend: str) -> None:
    mine, theirs = Pipe[str]()
    job = parallelkit.spawn(echo_upper, theirs)
    for word in ("a", "b", "c"):
        mine.send(word)
        assert mine.recv() == word.upper()
    mine.close()
    job.result(timeout=30)
    # A child process closed its own copy; a thread closed this process's one copy.
    assert theirs.closed is (backend != "process")


def test_a_receiver_iterates_until_the_sender_closes(backend: str) -> None:
    r, w = Pipe[int](duplex=False)
    job = parallelkit.spawn(send_numbers, w, 500)
    if backend == "process":
        w.close()  # this process's copy; the child's own close() ends the stream
    assert list(r) == list(range(500))
    job.result(timeout=30)


def test_ends_unpickle_to_the_same_objects_in_their_process(backend: str) -> None:
    a, b = Pipe[int]()
    assert pickle.loads(pickle.dumps(a)) is a
    assert pickle.loads(pickle.dumps(b)) is b


def test_repr_names_the_kind_of_end_and_its_state(backend: str) -> None:
    r, w = Pipe[int](False)
    assert repr(r) == f"<parallelkit.Receiver backend={backend!r} open>"
    w.close()
    assert repr(w) == f"<parallelkit.Sender backend={backend!r} closed>"
