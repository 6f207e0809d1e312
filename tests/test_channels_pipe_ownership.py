"""Pipe ends belong to processes, like file descriptors: close() closes this process's copy.

The other end sees EOF (``recv``) or ``BrokenPipeError`` (``send``) once every
copy is closed, in every process, a killed process's included; ends have a
``fileno()`` that ``select``-style waiting understands.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import multiprocessing.connection
import os
import pickle
import selectors
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

import parallelkit
from parallelkit import ClosedChannelError, Connection, Event, Pipe, Receiver, Sender

from .helpers import FORK_WARNING, START_METHODS


def start_methods() -> list[Any]:
    return [
        pytest.param(m, marks=pytest.mark.filterwarnings(FORK_WARNING)) if m == "fork" else m
        for m in START_METHODS
    ]


@pytest.fixture(autouse=True)
def _collect_channels() -> Iterator[None]:
    """Release channels caught in reference cycles before the leak check runs."""
    yield
    gc.collect()


@pytest.fixture(params=start_methods())
def start_method(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each start method in turn, for processes started with ``spawn``."""
    method: str = request.param
    with parallelkit.config(backend="process", start_method=method):
        yield method


@pytest.fixture(params=[m for m in START_METHODS if m != "fork"])
def fresh_start_method(request: pytest.FixtureRequest) -> Iterator[str]:
    """The start methods whose children inherit no copies: only what they are given."""
    method: str = request.param
    with parallelkit.config(backend="process", start_method=method):
        yield method


# -- what the children run ------------------------------------------------------------------


def answer_once(conn: Connection[bytes]) -> None:
    conn.send_bytes(conn.recv_bytes().upper())


def send_then_close(end: Sender[int], values: list[int], go: Event | None) -> None:
    if go is not None:
        assert go.wait(20)
    for v in values:
        end.send(v)
    end.close()


def send_then_hang(end: Sender[int]) -> None:
    end.send(1)
    time.sleep(60)


def hold_then_hang(end: Receiver[int], ready: Event) -> None:
    assert not end.closed
    ready.set()
    time.sleep(60)


def receive_one(end: Receiver[bytes]) -> bytes:
    return end.recv()


def receive_all(end: Receiver[int]) -> list[int]:
    return list(end)


# -- the multiprocessing idiom ---------------------------------------------------------------


def test_closing_the_childs_end_here_leaves_it_open_in_the_child(start_method: str) -> None:
    parent, child = Pipe[bytes]()
    job = parallelkit.spawn(answer_once, child)
    child.close()  # this process's copy only
    parent.send_bytes(b"ping")
    assert parent.recv_bytes() == b"PING"
    with pytest.raises(EOFError):
        parent.recv()  # the child exited: no copy of its end is left
    job.result(timeout=30)


def test_on_the_thread_backend_close_closes_the_one_copy_of_the_process() -> None:
    parent, child = Pipe[bytes](backend="thread")
    child.close()
    with pytest.raises(ClosedChannelError):
        child.recv_bytes()
    with pytest.raises(BrokenPipeError):
        parent.send_bytes(b"ping")


def test_the_tutorial_exchange_works_on_every_backend(backend: str) -> None:
    parent, child = Pipe[bytes]()
    job = parallelkit.spawn(answer_once, child)
    parent.send_bytes(b"ping")
    assert parent.recv_bytes() == b"PING"
    job.result(timeout=30)


# -- EOF and BrokenPipeError once every copy is closed ---------------------------------------


def test_eof_comes_only_after_every_copy_in_every_process_is_closed(start_method: str) -> None:
    r, w = Pipe[int](duplex=False)
    first_go, second_go = Event(), Event()
    first = parallelkit.spawn(send_then_close, w, [1], first_go)
    second = parallelkit.spawn(send_then_close, w, [2], second_go)
    w.close()
    first_go.set()
    assert r.recv() == 1
    first.result(timeout=30)
    assert not r.poll(0.3)  # the second child still holds a copy
    second_go.set()
    assert r.recv() == 2
    with pytest.raises(EOFError):
        r.recv()
    second.result(timeout=30)


def test_a_killed_child_holding_the_only_copy_gives_eof(start_method: str) -> None:
    r, w = Pipe[int](duplex=False)
    job = parallelkit.spawn(send_then_hang, w)
    w.close()
    assert r.recv() == 1
    assert job.pid is not None
    os.kill(job.pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(EOFError):
        r.recv()
    assert time.monotonic() - started < 5
    job.join(30)


def test_a_killed_child_holding_the_only_reader_gives_broken_pipe(start_method: str) -> None:
    r, w = Pipe[int](duplex=False)
    ready = Event()
    job = parallelkit.spawn(hold_then_hang, r, ready)
    r.close()
    w.send(1)  # the child's copy holds the pipe open
    assert ready.wait(30)
    assert job.pid is not None
    os.kill(job.pid, signal.SIGKILL)
    job.join(30)
    with pytest.raises(BrokenPipeError):
        w.send(2)


def test_a_send_blocked_on_a_full_pipe_fails_when_the_last_reader_exits(
    start_method: str,
) -> None:
    r, w = Pipe[bytes](duplex=False)
    job = parallelkit.spawn(receive_one, r)
    r.close()
    w.send(b"first")
    with pytest.raises(BrokenPipeError):
        w.send_bytes(bytes(8 << 20))  # far more than the FIFO holds: blocks, then breaks
    assert job.result(timeout=30) == b"first"


def test_the_peer_sees_eof_after_a_close_in_this_process(backend: str) -> None:
    a, b = Pipe[int]()
    a.send(1)
    a.close()
    assert b.recv() == 1
    with pytest.raises(EOFError):
        b.recv()
    with pytest.raises(BrokenPipeError):
        b.send(2)


# -- an end in flight ------------------------------------------------------------------------


def test_an_end_closed_here_right_after_it_was_sent_gives_no_false_eof(
    fresh_start_method: str,
) -> None:
    r, w = Pipe[int](duplex=False)
    go = Event()
    job = parallelkit.spawn(send_then_close, w, [1, 2, 3], go)
    w.close()  # before the child could open its copy, under spawn and forkserver
    assert not r.poll(0.2)  # no EOF while the child's copy is on its way
    go.set()
    assert list(r) == [1, 2, 3]
    job.result(timeout=30)


def test_what_was_sent_before_both_ends_left_this_process_arrives(
    fresh_start_method: str,
) -> None:
    r, w = Pipe[int](duplex=False)
    w.send(1)
    w.send(2)
    job = parallelkit.spawn(receive_all, r)
    r.close()  # no copy of either end is left here: the messages must still arrive
    w.close()
    assert job.result(timeout=30) == [1, 2]


def test_an_executor_task_receives_an_end_closed_here_after_submit(start_method: str) -> None:
    with parallelkit.Executor("process", 1, start_method=start_method) as ex:
        ex.submit(int).result(30)  # the worker is running before the Pipe exists
        r, w = Pipe[int](duplex=False)
        future = ex.submit(send_then_close, w, [7, 8], None)
        w.close()
        assert list(r) == [7, 8]
        future.result(30)


def test_ends_unpickled_again_after_a_local_close_are_open() -> None:
    a, b = Pipe[int](backend="process")
    blob = pickle.dumps(b)
    b.close()
    again: Connection[int] = pickle.loads(blob)
    assert again is not b and not again.closed
    a.send(5)
    assert again.recv() == 5


@pytest.mark.skipif("fork" not in START_METHODS, reason="needs the fork start method")
@pytest.mark.filterwarnings(FORK_WARNING)
def test_a_forked_child_holds_the_copies_it_inherited() -> None:
    r, w = Pipe[int](duplex=False)
    with parallelkit.config(backend="process", start_method="fork"):
        job = parallelkit.spawn(send_then_hang, w)
    w.close()
    assert r.recv() == 1
    assert not r.poll(0.3)  # the child inherited this process's copy of w and holds it
    job.terminate()
    job.join(30)
    with pytest.raises(EOFError):
        r.recv()


# -- fileno, readable, writable, closed ------------------------------------------------------


def test_ends_say_whether_they_read_write_and_are_closed(backend: str) -> None:
    a, _ = Pipe[int]()
    r, w = Pipe[int](duplex=False)
    assert (a.readable, a.writable) == (True, True)
    assert (r.readable, r.writable) == (True, False)
    assert (w.readable, w.writable) == (False, True)
    assert not r.closed
    r.close()
    assert r.closed


def test_fileno_is_a_descriptor_until_the_end_is_closed(backend: str) -> None:
    r, w = Pipe[int](duplex=False)
    assert isinstance(r.fileno(), int) and r.fileno() >= 0
    assert isinstance(w.fileno(), int) and w.fileno() >= 0
    os.fstat(r.fileno())
    r.close()
    with pytest.raises(OSError, match="handle is closed"):
        r.fileno()


def test_a_closed_end_raises_os_error_handle_is_closed(backend: str) -> None:
    a, _ = Pipe[int]()
    a.close()
    for use in (lambda: a.send(1), a.recv, a.poll, a.recv_bytes, a.fileno):
        with pytest.raises(OSError, match="handle is closed"):
            use()


def test_closed_channel_error_is_an_os_error() -> None:
    assert isinstance(ClosedChannelError("x"), OSError)
    assert issubclass(ClosedChannelError, parallelkit.ParallelkitError)


# -- waiting on descriptors ------------------------------------------------------------------


def test_multiprocessing_wait_sees_messages_and_eof(backend: str) -> None:
    r, w = Pipe[int](duplex=False)
    # typeshed lists Connection, socket and int; at run time any object with fileno() works.
    wait: Any = multiprocessing.connection.wait
    assert wait([r], 0.05) == []
    w.send(1)
    assert wait([r], 5) == [r]
    assert r.recv() == 1
    assert wait([r], 0.05) == []
    w.close()
    assert wait([r], 5) == [r]
    with pytest.raises(EOFError):
        r.recv()


def test_a_selector_sees_a_message_from_a_child_and_then_its_eof(start_method: str) -> None:
    r, w = Pipe[int](duplex=False)
    go = Event()
    job = parallelkit.spawn(send_then_close, w, [4], go)
    w.close()
    with selectors.DefaultSelector() as selector:
        selector.register(r, selectors.EVENT_READ)
        go.set()
        assert [key.fileobj for key, _ in selector.select(10)] == [r]
        assert r.recv() == 4
        job.result(timeout=30)
        assert [key.fileobj for key, _ in selector.select(10)] == [r]
        with pytest.raises(EOFError):
            r.recv()


def test_a_selector_sees_a_killed_childs_end_as_eof(start_method: str) -> None:
    r, w = Pipe[int](duplex=False)
    job = parallelkit.spawn(send_then_hang, w)
    w.close()
    assert r.recv() == 1
    with selectors.DefaultSelector() as selector:
        selector.register(r, selectors.EVENT_READ)
        assert selector.select(0.05) == []
        assert job.pid is not None
        os.kill(job.pid, signal.SIGKILL)
        assert [key.fileobj for key, _ in selector.select(10)] == [r]
    with pytest.raises(EOFError):
        r.recv()
    job.join(30)


def test_asyncio_add_reader_wakes_for_a_message(backend: str) -> None:
    r, w = Pipe[str](duplex=False)

    async def main() -> str:
        loop = asyncio.get_running_loop()
        arrived: asyncio.Future[str] = loop.create_future()

        def readable() -> None:
            if not arrived.done():
                arrived.set_result(r.recv())

        loop.add_reader(r.fileno(), readable)
        try:
            loop.call_later(0.05, w.send, "hello")
            return await asyncio.wait_for(arrived, 10)
        finally:
            loop.remove_reader(r.fileno())

    assert asyncio.run(main()) == "hello"
