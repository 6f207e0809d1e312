"""Channels as the type checkers see them: every line here must pass mypy and pyright.

Only type-checked, never run: each check sits in a function, so importing
this module creates nothing.
"""

from __future__ import annotations

import array
import ctypes
from collections.abc import Iterator
from ctypes import Structure, c_bool, c_char, c_double, c_int, c_uint8
from typing import TYPE_CHECKING, Any

import parallelkit
from parallelkit import (
    Array,
    Barrier,
    BoundedSemaphore,
    Condition,
    Connection,
    Event,
    JoinableQueue,
    Lock,
    LockedArray,
    LockedValue,
    Pipe,
    Queue,
    Receiver,
    RLock,
    Semaphore,
    Sender,
    Spawned,
    Value,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from typing_extensions import assert_type


class Point(Structure):
    _fields_ = [("x", c_double), ("y", c_double)]


def double(x: int) -> int:
    return 2 * x


def check_queue_factories(ex: parallelkit.Executor, pool: parallelkit.Pool) -> None:
    assert_type(Queue[int](), Queue[int])
    assert_type(Queue[str](10, backend="thread"), Queue[str])
    assert_type(Queue(), Queue[Any])
    typed: Queue[float] = Queue()
    assert_type(typed, Queue[float])
    from_executor: Queue[int] = ex.Queue()
    assert_type(from_executor, Queue[int])
    from_pool: Queue[bytes] = pool.Queue(5)
    assert_type(from_pool, Queue[bytes])


def check_queue_methods(q: Queue[int]) -> None:
    q.put(1)
    q.put(2, block=False)
    q.put(3, True, 0.5)
    q.put_nowait(4)
    q.put_many([5, 6], timeout=1.0)
    q.put_many(range(3))
    assert_type(q.get(), int)
    assert_type(q.get(timeout=1.0), int)
    assert_type(q.get_nowait(), int)
    assert_type(q.get_many(), list[int])
    assert_type(q.get_many(10, timeout=0.1), list[int])
    assert_type(q.qsize(), int)
    assert_type(q.empty(), bool)
    assert_type(q.full(), bool)
    assert_type(q.closed, bool)
    assert_type(q.maxsize, int)
    assert_type(q.backend, str)
    assert_type(iter(q), Iterator[int])
    for item in q:
        assert_type(item, int)
    with q as same:
        assert_type(same, Queue[int])
    q.close()


def check_joinable_queue(ex: parallelkit.Executor, pool: parallelkit.Pool) -> None:
    assert_type(JoinableQueue[int](), JoinableQueue[int])
    assert_type(JoinableQueue[str](10, backend="thread"), JoinableQueue[str])
    assert_type(JoinableQueue(), JoinableQueue[Any])
    from_executor: JoinableQueue[int] = ex.JoinableQueue()
    assert_type(from_executor, JoinableQueue[int])
    from_pool: JoinableQueue[bytes] = pool.JoinableQueue(5)
    assert_type(from_pool, JoinableQueue[bytes])
    q = JoinableQueue[int]()
    as_queue: Queue[int] = q
    as_queue.put(1)
    assert_type(q.get(), int)
    assert_type(q.get_many(), list[int])
    assert_type(q.task_done(), None)
    assert_type(q.join(), None)
    assert_type(q.join(timeout=0.5), None)
    assert_type(q.join(2), None)
    for item in q:
        assert_type(item, int)
    with q as same:
        assert_type(same, JoinableQueue[int])


def check_pipe_factories(ex: parallelkit.Executor) -> None:
    a, b = Pipe[str]()
    assert_type(a, Connection[str])
    assert_type(b, Connection[str])
    r, w = Pipe[int](duplex=False)
    assert_type(r, Receiver[int])
    assert_type(w, Sender[int])
    r2, w2 = Pipe[int](False, backend="thread")
    assert_type(r2, Receiver[int])
    assert_type(w2, Sender[int])
    c, d = Pipe()
    assert_type(c, Connection[Any])
    assert_type(d, Connection[Any])
    e: Connection[bytes]
    f: Connection[bytes]
    e, f = ex.Pipe()
    assert_type(e, Connection[bytes])
    assert_type(f, Connection[bytes])
    g: Receiver[float]
    h: Sender[float]
    g, h = ex.Pipe(duplex=False)
    assert_type(g, Receiver[float])
    assert_type(h, Sender[float])


def consume_ints(end: Receiver[int]) -> list[int]:
    return list(end)


def produce_bools(end: Sender[bool]) -> None:
    end.send(True)


def check_pipe_methods(conn: Connection[int], buf: bytearray) -> None:
    conn.send(1)
    conn.send_bytes(b"raw")
    conn.send_bytes(buf, 1, 2)
    conn.send_bytes(array.array("d", [1.0]))
    assert_type(conn.recv(), int)
    assert_type(conn.recv_bytes(), bytes)
    assert_type(conn.recv_bytes(1024), bytes)
    assert_type(conn.recv_bytes_into(buf), int)
    assert_type(conn.recv_bytes_into(buf, 4), int)
    assert_type(conn.poll(), bool)
    assert_type(conn.poll(None), bool)
    assert_type(conn.poll(0.5), bool)
    assert_type(conn.closed, bool)
    assert_type(conn.readable, bool)
    assert_type(conn.writable, bool)
    assert_type(conn.fileno(), int)
    assert_type(list(conn), list[int])
    conn.close()


def check_variance(ints: Connection[int], bools: Receiver[bool], any_ints: Sender[int]) -> None:
    consume_ints(ints)  # a duplex end is a receiver
    consume_ints(bools)  # receivers are covariant: bool is an int
    produce_bools(ints)  # a duplex end is a sender
    produce_bools(any_ints)  # senders are contravariant: who takes ints takes bools


def check_value_factories(ex: parallelkit.Executor) -> None:
    assert_type(Value("i", 0), Value[int])
    assert_type(Value("q"), Value[int])
    assert_type(Value("d", 1.5), Value[float])
    assert_type(Value("f", 1), Value[float])
    assert_type(Value("c", b"x"), Value[bytes])
    assert_type(Value("u", "x"), Value[str])
    assert_type(Value("?", True), Value[bool])
    assert_type(Value(int, 3), Value[int])
    assert_type(Value(float), Value[float])
    assert_type(Value(bool, False), Value[bool])
    assert_type(Value(c_int, 7), Value[int])
    assert_type(Value(c_uint8, 7), Value[int])
    assert_type(Value(c_double, 2.0), Value[float])
    assert_type(Value(c_bool, False, lock=False), Value[bool])
    assert_type(Value(c_char, b"x"), Value[bytes])
    assert_type(Value(Point, 1.0, 2.0), Value[Point])
    assert_type(Value(Point), Value[Point])
    assert_type(Value("i", 0, lock=Lock()), Value[int])
    assert_type(Value("i", 0, lock=RLock(), backend="thread"), Value[int])
    assert_type(ex.Value("i", 0), Value[int])
    assert_type(ex.Value(c_bool, False, lock=False), Value[bool])
    assert_type(ex.Value(Point, 1.0, 2.0), Value[Point])


def check_value_methods(n: Value[int], x: Value[float], p: Value[Point]) -> None:
    assert_type(n.value, int)
    assert_type(x.value, float)
    assert_type(p.value, Point)
    n.set(3)
    p.set(Point(1.0, 2.0))
    assert_type(n.add(1), int)
    assert_type(x.add(0.5), float)
    assert_type(x.add(1), float)
    assert_type(n.update(lambda v: v * 2), int)
    assert_type(p.update(lambda q: Point(q.y, q.x)), Point)
    assert_type(n.compare_and_set(3, 4), bool)
    with n.locked() as cell:
        assert_type(cell, LockedValue[int])
        cell.value = cell.value + 1
    with p.locked() as point:
        point.value.x = 2.0
    assert_type(n.get_lock(), Lock | RLock)
    assert_type(n.get_obj(), Any)
    assert_type(n.closed, bool)
    with n as same:
        assert_type(same, Any)
    n.close()


def check_value_assignment(
    n: Value[int], x: Value[float], flag: Value[bool], p: Value[Point], ex: parallelkit.Executor
) -> None:
    n.value = 1
    n.value += 1
    n.value **= 2
    x.value = 1  # an int where a float is expected, as everywhere
    x.value *= 0.5
    flag.value = True
    p.value = Point(1.0, 2.0)
    assert_type(n.value, int)
    assert_type(Value("i", 0, lock=None), Value[int])
    assert_type(ex.Value("d", 0.5, lock=None), Value[float])


def check_array_factories(ex: parallelkit.Executor, pool: parallelkit.Pool) -> None:
    lock = Lock()
    assert_type(Array("i", range(5)), Array[int])
    assert_type(Array("i", 10), Array[int])
    assert_type(Array("d", [1.0, 2.0]), Array[float])
    assert_type(Array("c", b"hello world", lock=lock), Array[bytes])
    assert_type(Array("c", 11), Array[bytes])
    assert_type(Array("u", "text"), Array[str])
    assert_type(Array(bool, [True, False]), Array[bool])
    assert_type(Array(int, 3), Array[int])
    assert_type(Array(c_double, 4), Array[float])
    assert_type(Array(c_bool, [True]), Array[bool])
    assert_type(Array(Point, [(1.875, -6.25), (-5.75, 2.0)], lock=lock), Array[Point])
    assert_type(Array(Point, [Point(1.0, 2.0)]), Array[Point])
    assert_type(Array(Point, 3), Array[Point])
    assert_type(ex.Array("i", range(5), lock=True), Array[int])
    assert_type(pool.Array(Point, 2), Array[Point])


def check_array_methods(
    ints: Array[int], chars: Array[bytes], points: Array[Point], out: array.array[int]
) -> None:
    assert_type(ints[0], int)
    assert_type(ints[1:3], list[int])
    assert_type(chars[0], bytes)
    assert_type(chars[:], bytes)
    assert_type(points[0], Point)
    assert_type(points[:], list[Point])
    assert_type(len(ints), int)
    assert_type(list(ints), list[int])
    ints[0] = 10
    ints[1:3] = [1, 2]
    chars[0:5] = b"HELLO"
    assert_type(chars.value, bytes)
    assert_type(chars.raw, bytes)
    with chars.locked() as live_chars:
        assert_type(live_chars, LockedArray[bytes])
        live_chars.value = live_chars.value.upper()
    with points.locked() as live:
        for point in live:
            point.x **= 2
    ints.copy_from(array.array("i", [1, 2, 3]))
    ints.copy_from(b"\x00" * 8, start=1)
    assert_type(ints.copy_into(out), int)
    assert_type(ints.get_lock(), Lock | RLock)


def check_array_assignment(
    ints: Array[int], chars: Array[bytes], points: Array[Point], pool: parallelkit.Pool
) -> None:
    ints[0] = 1
    ints[0] += 1
    ints[1:3] = [1, 2]
    chars.value = b"x"
    chars.value = chars.value.upper()
    chars.raw = b"hello"
    points[0].y = 1.0
    for point in points:
        point.x **= 2
    assert_type(Array("i", 3, lock=None), Array[int])
    assert_type(pool.Array("c", b"abc", lock=None), Array[bytes])


def check_numpy_views(ints: Array[int], floats: Array[float], points: Array[Point]) -> None:
    assert_type(ints.numpy(), NDArray[Any])
    assert_type(floats.numpy(), NDArray[Any])
    assert_type(points.numpy(), NDArray[Any])


def check_sync_factories(ex: parallelkit.Executor) -> None:
    assert_type(Lock(), Lock)
    assert_type(RLock(backend="process"), RLock)
    assert_type(Semaphore(2), Semaphore)
    assert_type(BoundedSemaphore(), BoundedSemaphore)
    assert_type(Condition(), Condition)
    assert_type(Condition(Lock()), Condition)
    assert_type(Event(), Event)
    assert_type(Barrier(2), Barrier)
    assert_type(Barrier(2, lambda: None, 1.0), Barrier)
    assert_type(ex.Lock(), Lock)
    assert_type(ex.RLock(), RLock)
    assert_type(ex.Semaphore(3), Semaphore)
    assert_type(ex.BoundedSemaphore(), BoundedSemaphore)
    assert_type(ex.Condition(), Condition)
    assert_type(ex.Event(), Event)
    assert_type(ex.Barrier(2), Barrier)


def check_sync_methods(lock: Lock, cond: Condition, event: Event, barrier: Barrier) -> None:
    assert_type(lock.acquire(), bool)
    assert_type(lock.acquire(block=False), bool)
    assert_type(lock.acquire(True, 0.5), bool)
    lock.release()
    with lock:
        pass
    with cond:
        assert_type(cond.wait(0.1), bool)
        assert_type(cond.wait_for(lambda: 3, timeout=1.0), int)
        cond.notify()
        cond.notify_all()
    event.set()
    assert_type(event.is_set(), bool)
    assert_type(event.wait(1.0), bool)
    event.clear()
    assert_type(barrier.wait(), int)
    assert_type(barrier.parties, int)
    assert_type(barrier.n_waiting, int)
    assert_type(barrier.broken, bool)


def check_spawn(conn: Connection[str]) -> None:
    job = parallelkit.spawn(double, 21)
    assert_type(job, Spawned[int])
    assert_type(job.result(), int)
    assert_type(job.result(timeout=1.0), int)
    assert_type(job.exitcode, int | None)
    assert_type(job.pid, int | None)
    assert_type(job.is_alive(), bool)
    job.join(0.5)
    job.terminate()
    assert_type(parallelkit.spawn(lambda: "x", backend="thread"), Spawned[str])
    assert_type(parallelkit.spawn(conn.send, "hello"), Spawned[None])
    with parallelkit.spawn(print, "hi") as joined:
        assert_type(joined, Spawned[None])


class _Worker(parallelkit.Process):
    def run(self) -> None:
        print(self.name)


def check_process(conn: Connection[str]) -> None:
    p = parallelkit.Process(target=conn.send, args=("hello",), name="p", daemon=True)
    q = parallelkit.Process(None, print, "q", ("x",), {"sep": ""}, backend="thread")
    assert_type(p.start(), None)
    assert_type(p.join(), None)
    assert_type(p.join(0.5), None)
    assert_type(p.is_alive(), bool)
    assert_type(p.name, str)
    assert_type(p.daemon, bool)
    assert_type(p.pid, int | None)
    assert_type(p.ident, int | None)
    assert_type(p.exitcode, int | None)
    assert_type(p.sentinel, int)
    p.name = "renamed"
    p.daemon = False
    p.terminate()
    p.kill()
    p.close()
    q.run()
    assert_type(_Worker(daemon=True), _Worker)


def check_raw_ctypes(v: Value[int]) -> None:
    raw = v.get_obj()
    assert_type(ctypes.sizeof(raw), int)
