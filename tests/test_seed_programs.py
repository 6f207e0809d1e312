"""The multiprocessing tutorial's programs, rewritten with parallelkit, print what it prints.

Each program below is the parallelkit version of one program of the
tutorial (Process, Pool, Pipe, Queue with a None sentinel, Value/Array with
c_bool, 'c', 'i' and a ctypes Structure). They are stored here and in
``docs/channels.md`` (a test checks the two copies are identical), and each
runs as its own script, as a user would run it, once with
``PARALLELKIT_BACKEND=process`` and once with ``thread``: only the flag
changes, and the output must be the tutorial's.

The two CPU-bound programs add up ``range(100_000_000)``; to keep the suite
fast they run here with ``range(1_000_000)``, and the tutorial's printed
number is checked against the same formula. Output is unbuffered, as on a
terminal, so lines printed by different processes appear in the order they
were printed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_user_script

DOCS = Path(__file__).resolve().parent.parent / "docs" / "channels.md"
BACKENDS = ["process", "thread"]
TUTORIAL_TOTAL = "100_000_000"
TEST_TOTAL = "1_000_000"

PROCESS = """\
import parallelkit


def run(total: int) -> int:
    return sum(range(total))


def main() -> None:
    process = parallelkit.spawn(run, 100_000_000)
    process2 = parallelkit.spawn(run, 100_000_000)
    print(process.result())
    print(process2.result())


if __name__ == "__main__":
    main()
"""

POOL = """\
import parallelkit


def run(total: int) -> int:
    return sum(range(total))


def main() -> None:
    # A pool saves starting and stopping a process per task when tasks are many.
    with parallelkit.Pool(2) as pool:
        for result in pool.map(run, [100_000_000, 100_000_000]):
            print(result)


if __name__ == "__main__":
    main()
"""

PIPE = """\
import parallelkit


def f(conn: parallelkit.Connection[str]) -> None:
    conn.send("hello")
    print(conn.recv())
    conn.close()


if __name__ == "__main__":
    conn1, conn2 = parallelkit.Pipe[str]()
    p = parallelkit.spawn(f, conn2)
    print(conn1.recv())
    conn1.send("world")
    p.join()
"""

QUEUE = """\
import random

import parallelkit


def consumer(q: parallelkit.Queue[float]) -> None:
    for num in q:  # ends when the queue is closed: no None sentinel
        print(num * 2)


if __name__ == "__main__":
    q = parallelkit.Queue[float]()
    c = parallelkit.spawn(consumer, q)
    r = random.random()
    print(r)
    q.put(r)
    q.close()
    c.join()
"""

SHARED = """\
from ctypes import Structure, c_bool, c_double

import parallelkit


class Point(Structure):
    _fields_ = [("x", c_double), ("y", c_double)]


def modify(
    n: parallelkit.Value[int],
    b: parallelkit.Value[bool],
    s: parallelkit.Array[bytes],
    arr: parallelkit.Array[int],
    A: parallelkit.Array[Point],
) -> None:
    n.value **= 2
    b.value = True
    s.value = s.value.upper()
    arr[0] = 10
    for a in A:
        a.x **= 2
        a.y **= 2


if __name__ == "__main__":
    lock = parallelkit.Lock()
    n = parallelkit.Value("i", 7)
    b = parallelkit.Value(c_bool, False, lock=False)
    s = parallelkit.Array("c", b"hello world", lock=lock)
    arr = parallelkit.Array("i", range(5), lock=True)
    A = parallelkit.Array(Point, [(1.875, -6.25), (-5.75, 2.0)], lock=lock)

    p = parallelkit.spawn(modify, n, b, s, arr, A)
    p.join()

    print(n.value)
    print(b.value)
    print(s.value)
    print(arr[:])
    print([(a.x, a.y) for a in A])
"""

PROGRAMS = {"process": PROCESS, "pool": POOL, "pipe": PIPE, "queue": QUEUE, "shared": SHARED}

#: What the tutorial prints for each program (the queue's number is random).
TUTORIAL_OUTPUT = {
    "process": "4999999950000000\n4999999950000000\n",
    "pool": "4999999950000000\n4999999950000000\n",
    "pipe": "hello\nworld\n",
    "shared": "49\nTrue\nb'HELLO WORLD'\n[10, 1, 2, 3, 4]\n[(3.515625, 39.0625), (33.0625, 4.0)]\n",
}


def run_program(name: str, backend: str, tmp_path: Path) -> str:
    return run_script(
        PROGRAMS[name].replace(TUTORIAL_TOTAL, TEST_TOTAL), name, backend, None, tmp_path
    )


def run_script(
    source: str, name: str, backend: str, start_method: str | None, tmp_path: Path
) -> str:
    """Run ``source`` as a script on ``backend``: it must succeed quietly; return its output."""
    # Named seed_*.py, not queue.py: that would shadow the stdlib.
    result = run_user_script(
        source, tmp_path, backend=backend, start_method=start_method, name=f"seed_{name}"
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def expected_output(name: str) -> str:
    small = sum(range(int(TEST_TOTAL)))
    return TUTORIAL_OUTPUT[name].replace("4999999950000000", str(small))


def test_the_tutorials_sum_is_what_the_programs_compute() -> None:
    total = int(TUTORIAL_TOTAL)
    assert str(total * (total - 1) // 2) == "4999999950000000"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["process", "pool", "pipe", "shared"])
def test_program_prints_what_the_tutorial_prints(name: str, backend: str, tmp_path: Path) -> None:
    assert run_program(name, backend, tmp_path) == expected_output(name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_queue_program_prints_a_number_then_its_double(backend: str, tmp_path: Path) -> None:
    first, second = run_program("queue", backend, tmp_path).splitlines()
    assert second == str(float(first) * 2)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_the_docs_show_the_same_program(name: str) -> None:
    assert PROGRAMS[name] in DOCS.read_text(encoding="utf-8")


# -- the tutorial's programs as it wrote them ------------------------------------------------
#
# Each program below is copied from the tutorial character for character. The
# test changes its import line(s) to parallelkit and nothing else (the two
# CPU-bound programs also get a smaller total, as above), runs it as a
# script under the process backend with each start method and under the
# thread backend, and checks that it prints what the tutorial prints.

SEED_PROCESS = """\
# coding: utf-8
import multiprocessing

def run(total):
    sum = 0
    for i in range(total):
        sum += i
    print(sum)

def main():
    process = multiprocessing.Process(target=run, args=(100000000,))
    process.start()
    process2 = multiprocessing.Process(target=run, args=(100000000,))
    process2.start()

if __name__ == "__main__":
    main()
"""

SEED_POOL = """\
# coding: utf-8
import multiprocessing

def run(total):
    sum = 0
    for i in range(total):
        sum += i
    print(sum)

def main():
    pool = multiprocessing.Pool(2)
    # 使用进程池主要是在任务很多的时候避免频繁启动和关闭进程带来的资源消耗
    args = [100000000, 100000000]
    pool.map(run, args)

if __name__ == "__main__":
    main()
"""

SEED_PIPE = """\
# coding: utf-8
from multiprocessing import Process, Pipe

def f(conn):
    conn.send('hello')
    print(conn.recv())
    conn.close()

if __name__ == "__main__":
    conn1, conn2 = Pipe()
    p = Process(target=f, args=(conn2,))
    p.start()
    print(conn1.recv())
    conn1.send('world')
    p.join()
"""

SEED_QUEUE = """\
# coding: utf-8
import time
from multiprocessing import Process, Queue
import random

q = Queue()

def consumer(q):
    while 1:
        num = q.get()
        if num is None:
            break
        result = num * 2
        print(result)

if __name__ == '__main__':
    c = Process(target=consumer, args=(q,))
    c.start()

    r = random.random()
    print(r)
    q.put(r)
    q.put(None)
"""

SEED_SHARED = """\
# coding: utf-8
from multiprocessing import Process, Lock
from multiprocessing.sharedctypes import Value, Array
from ctypes import Structure, c_bool, c_double

lock = Lock()

class Point(Structure):
    _fields_ = [('x', c_double), ('y', c_double)]

def modify(n, b, s, arr, A):
    n.value **= 2
    b.value = True
    s.value = s.value.upper()
    arr[0] = 10
    for a in A:
        a.x **= 2
        a.y **= 2

if __name__ == "__main__":
    n = Value('i', 7)
    b = Value(c_bool, False, lock=False)
    s = Array('c', b'hello world', lock=lock)
    arr = Array('i', range(5), lock=True)
    A = Array(Point, [(1.875, -6.25), (-5.75, 2.0)], lock=lock)

    p = Process(target=modify, args=(n, b, s, arr, A))
    p.start()
    p.join()

    print(n.value)
    print(b.value)
    print(s.value)
    print(arr[:])
    print([(a.x, a.y) for a in A])

"""

#: Each tutorial program, and its import lines as parallelkit users write them.
SEED_PROGRAMS: dict[str, tuple[str, dict[str, str]]] = {
    "process": (
        SEED_PROCESS,
        {"import multiprocessing\n": "import parallelkit as multiprocessing\n"},
    ),
    "pool": (SEED_POOL, {"import multiprocessing\n": "import parallelkit as multiprocessing\n"}),
    "pipe": (
        SEED_PIPE,
        {"from multiprocessing import Process, Pipe\n": "from parallelkit import Process, Pipe\n"},
    ),
    "queue": (
        SEED_QUEUE,
        {
            "from multiprocessing import Process, Queue\n": (
                "from parallelkit import Process, Queue\n"
            )
        },
    ),
    "shared": (
        SEED_SHARED,
        {
            "from multiprocessing import Process, Lock\n": (
                "from parallelkit import Process, Lock\n"
            ),
            "from multiprocessing.sharedctypes import Value, Array\n": (
                "from parallelkit import Value, Array\n"
            ),
        },
    ),
}

START_METHODS = ["fork", "spawn", "forkserver"]
SEED_RUNS = [
    *(pytest.param("process", method, id=f"process-{method}") for method in START_METHODS),
    pytest.param("thread", None, id="thread"),
]


def with_parallelkit_imports(name: str) -> str:
    """The tutorial's program ``name`` with only its import lines changed."""
    source, imports = SEED_PROGRAMS[name]
    for old, new in imports.items():
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    return source.replace("100000000", TEST_TOTAL.replace("_", ""))


def run_seed(name: str, backend: str, start_method: str | None, tmp_path: Path) -> str:
    return run_script(with_parallelkit_imports(name), name, backend, start_method, tmp_path)


def test_only_the_import_lines_differ_from_the_tutorial() -> None:
    for name, (source, _) in SEED_PROGRAMS.items():
        changed = with_parallelkit_imports(name).replace(TEST_TOTAL.replace("_", ""), "100000000")
        differing = [
            (old, new)
            for old, new in zip(source.splitlines(), changed.splitlines(), strict=True)
            if old != new
        ]
        assert differing, name
        assert all("import" in old and "parallelkit" in new for old, new in differing), name


@pytest.mark.parametrize(("backend", "start_method"), SEED_RUNS)
@pytest.mark.parametrize("name", ["process", "pool", "pipe", "shared"])
def test_the_tutorials_program_runs_unchanged(
    name: str, backend: str, start_method: str | None, tmp_path: Path
) -> None:
    printed = run_seed(name, backend, start_method, tmp_path)
    if name in ("process", "pool"):
        # Two processes (or threads) print the same number at once, and print() writes
        # a line's text and its end separately: "N\nN\n" may come out as "NN\n\n".
        assert "".join(printed.split()) == "".join(expected_output(name).split())
    else:
        assert printed == expected_output(name)


@pytest.mark.parametrize(("backend", "start_method"), SEED_RUNS)
def test_the_tutorials_queue_program_runs_unchanged(
    backend: str, start_method: str | None, tmp_path: Path
) -> None:
    first, second = run_seed("queue", backend, start_method, tmp_path).splitlines()
    assert second == str(float(first) * 2)
