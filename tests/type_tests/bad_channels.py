# Misuse of the channels that mypy and pyright must both report.
#
# Only type-checked, never run (tests/test_type_checkers.py). Lines ending in
# "# ok" are set-up and must pass; every other line that is not blank or a
# comment is one self-contained statement that both checkers must flag.

from __future__ import annotations  # ok

from ctypes import Structure, c_double  # ok
from typing import TYPE_CHECKING  # ok

import parallelkit  # ok

if TYPE_CHECKING:  # ok
    from typing_extensions import assert_type  # ok


class Point(Structure):  # ok
    _fields_ = (("x", c_double), ("y", c_double))  # ok


def double(x: int) -> int:  # ok
    return 2 * x  # ok


def wants_int_sender(end: parallelkit.Sender[int]) -> None:  # ok
    end.send(1)  # ok


def wants_bool_receiver(end: parallelkit.Receiver[bool]) -> bool:  # ok
    return end.recv()  # ok


ex = parallelkit.Executor("serial")  # ok
q = parallelkit.Queue[int](backend="thread")  # ok
jq = parallelkit.JoinableQueue[int](backend="thread")  # ok
conn, other = parallelkit.Pipe[str](backend="thread")  # ok
reader, writer = parallelkit.Pipe[int](duplex=False, backend="thread")  # ok
bool_writer: parallelkit.Sender[bool] = parallelkit.Pipe[bool](False)[1]  # ok
n = parallelkit.Value("i", 0, backend="thread")  # ok
flag = parallelkit.Value("?", False, backend="thread")  # ok
letter = parallelkit.Value("c", b"a", backend="thread")  # ok
ratio = parallelkit.Value("d", 0.5, backend="thread")  # ok
point = parallelkit.Value(Point, 1.0, 2.0, backend="thread")  # ok
ints = parallelkit.Array("i", range(5), backend="thread")  # ok
chars = parallelkit.Array("c", b"hello", backend="thread")  # ok
wide = parallelkit.Array("u", "hello", backend="thread")  # ok
lock = parallelkit.Lock(backend="thread")  # ok

# A Queue[int] takes and gives ints.
q.put("x")
q.put_nowait(b"x")
q.put_many(["x", "y"])
print(q.get().upper())
print(q.get_many()[0].upper())
parallelkit.Queue(maxsize="3")
q.get(timeout="1")

# A JoinableQueue[int] is a Queue[int] (invariant), plus task_done() and join().
jq.put("x")
jq.put_many([b"x"])
print(jq.get().upper())
jq.task_done(1)
jq.join(timeout="1")
jq.join(1, 2)
float_queue: parallelkit.Queue[float] = jq
str_joinable: parallelkit.JoinableQueue[str] = jq
joinable_from_plain: parallelkit.JoinableQueue[int] = q
q.task_done()
q.join()

# Pipe ends: typed messages; a receiver cannot send, a sender cannot receive.
conn.send(1)
print(conn.recv() + 1)
reader.send(1)
writer.recv()
writer.send("x")
print(reader.recv().upper())
wants_int_sender(bool_writer)
wants_bool_receiver(reader)
conn.poll("1")
conn.send_bytes("text")

# Value: .value and set/add/update/locked take and give the item type.
n.value = "x"
n.value += "1"
flag.value = 1
letter.value = "a"
n.set("x")
n.add("1")
flag.add(1)
letter.add(1)
ratio.add("0.5")
n.update(lambda v: str(v))
n.compare_and_set("0", 1)
n.locked().__enter__().value = "x"
assert_type(parallelkit.Value("i", 0), parallelkit.Value[float])
parallelkit.Value("i", "x")
parallelkit.Value("z")
parallelkit.Value("d", b"x")
parallelkit.Value(int, 1, lock="yes")
ex.Value("d").add("1")
point.value = 1.0

# Array: element types, char-only attributes, no numpy view of chars.
ints[0] = "x"
ints[0] += 0.5
ints[0:2] = ["x"]
chars.value = "text"
chars.raw = 1
ints.value = b"x"
print(ints[0].upper())
print(chars.value + 1)
print(ints.value)
print(ints.raw)
chars.numpy()
wide.numpy()
parallelkit.Array("i", ["x"])
parallelkit.Array("c", [1.5])
parallelkit.Array("d", "ten")

# Sync primitives keep multiprocessing's signatures.
lock.acquire(timeout="1")
lock.acquire(blocking=True)
parallelkit.Semaphore("2")
parallelkit.Barrier("2")
parallelkit.Condition(lock=True)

# spawn returns the function's result type.
print(parallelkit.spawn(double, 21).result().upper())
assert_type(parallelkit.spawn(double, 21), parallelkit.Spawned[str])

# Process keeps multiprocessing.Process's signature.
parallelkit.Process(target=1)
parallelkit.Process(args=1)
parallelkit.Process(name=1)
parallelkit.Process(daemon="yes")
parallelkit.Process(backend=1)
parallelkit.Process().join("1")
print(parallelkit.Process().pid + 1)
parallelkit.Process().name = 1
