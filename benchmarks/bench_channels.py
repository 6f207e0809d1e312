"""parallelkit's channels beside the raw multiprocessing objects, between two processes.

Usage::

    python benchmarks/bench_channels.py            # the full run (about a minute on 2 cores)
    python benchmarks/bench_channels.py --quick    # a smoke run (small inputs, 3 repeats)
    python benchmarks/bench_channels.py --only queue --repeat 9

Each row times the same workload twice in one run: once with parallelkit's
channel (process backend) and once with the ``multiprocessing`` object it
stands in for, alternating, ``--repeat`` times after a warm-up; the table
shows the medians and their ratio (higher is better for parallelkit).
Absolute figures move with the load of the machine; the ratios are what
count.

Workloads (a child process started with ``--start-method``, forkserver by
default, is on the other end; the clock starts when it is ready):

- queue, small items: the child ``put``s ints one by one, the parent ``get``s them;
- queue, batches: parallelkit's ``put_many``/``get_many`` (1,000 per batch)
  against ``multiprocessing.Queue`` moving the same ints one by one;
- queue, 1 MB: the child puts 1 MB ``bytes`` objects;
- pipe: the child ``send``s ints on a duplex pipe, the parent ``recv``s;
- Value.add: two children increment one shared int concurrently,
  ``v.add(1)`` against ``with v.get_lock(): v.value += 1`` (both exact);
- Array bulk copy: 1,000,000 doubles in and out of shared memory,
  ``copy_from``/``copy_into`` against slice assignment from/to a list;
- numpy view: ``arr.numpy().sum()`` against ``np.frombuffer(arr.get_obj()).sum()``
  over 1,000,000 doubles (skipped without numpy).
"""

from __future__ import annotations

import argparse
import array
import fnmatch
import multiprocessing
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Event as MpEvent
from typing import Any, cast

import parallelkit

BATCH = 1000


@dataclass
class Sizes:
    small: int
    big: int
    adds: int
    cells: int


FULL = Sizes(small=100_000, big=100, adds=100_000, cells=1_000_000)
QUICK = Sizes(small=10_000, big=20, adds=10_000, cells=100_000)


# -- what the child processes run ----------------------------------------------------------


def put_each(q: Any, ready: MpEvent, go: MpEvent, count: int) -> None:
    ready.set()
    go.wait()
    for i in range(count):
        q.put(i)


def put_batches(q: parallelkit.Queue[int], ready: MpEvent, go: MpEvent, count: int) -> None:
    ready.set()
    go.wait()
    for start in range(0, count, BATCH):
        q.put_many(range(start, min(start + BATCH, count)))


def put_blobs(q: Any, ready: MpEvent, go: MpEvent, count: int) -> None:
    blob = b"x" * (1 << 20)
    ready.set()
    go.wait()
    for _ in range(count):
        q.put(blob)


def send_each(conn: Any, ready: MpEvent, go: MpEvent, count: int) -> None:
    ready.set()
    go.wait()
    for i in range(count):
        conn.send(i)


def add_pk(value: parallelkit.Value[int], ready: MpEvent, go: MpEvent, count: int) -> None:
    ready.set()
    go.wait()
    for _ in range(count):
        value.add(1)


def add_mp(value: Any, ready: MpEvent, go: MpEvent, count: int) -> None:
    ready.set()
    go.wait()
    for _ in range(count):
        with value.get_lock():
            value.value += 1


# -- timing --------------------------------------------------------------------------------


def with_children(
    context: Any,
    target: Callable[..., None],
    args: tuple[Any, ...],
    consume: Callable[[], None],
    children: int = 1,
) -> float:
    """Start children running ``target(*args, ready, go)``, time ``consume()`` from go."""
    readies = [context.Event() for _ in range(children)]
    go = context.Event()
    procs = [
        context.Process(target=target, args=(args[0], ready, go, *args[1:])) for ready in readies
    ]
    for proc in procs:
        proc.start()
    for ready in readies:
        if not ready.wait(60):
            raise RuntimeError("a benchmark child did not start")
    started = time.perf_counter()
    go.set()
    consume()
    for proc in procs:
        proc.join()
    elapsed = time.perf_counter() - started
    if any(proc.exitcode for proc in procs):
        raise RuntimeError(f"a benchmark child failed: {[p.exitcode for p in procs]}")
    return elapsed


def take(get: Callable[[], object], count: int) -> Callable[[], None]:
    def consume() -> None:
        for _ in range(count):
            get()

    return consume


def take_batches(q: parallelkit.Queue[int], count: int) -> Callable[[], None]:
    def consume() -> None:
        got = 0
        while got < count:
            got += len(q.get_many())

    return consume


def wait_only() -> None:
    """The children do the work; the parent only waits for them."""


def best_of(measure: Callable[[], float], repeat: int) -> float:
    measure()  # warm-up: imports, forkserver, first mappings
    return statistics.median(measure() for _ in range(repeat))


@dataclass
class Row:
    name: str
    unit: str
    ours: float  # seconds, median
    theirs: float
    amount: float  # items (or bytes) per run, to show a rate
    target: float
    anchor: str

    @property
    def ratio(self) -> float:
        return self.theirs / self.ours


# -- the workloads -------------------------------------------------------------------------


def queue_small(context: Any, sizes: Sizes, repeat: int) -> Row:
    n = sizes.small

    def ours() -> float:
        q = parallelkit.Queue[int](backend="process")
        return with_children(context, put_each, (q, n), take(q.get, n))

    def theirs() -> float:
        q = context.Queue()
        return with_children(context, put_each, (q, n), take(q.get, n))

    return Row(
        "Queue, small items", "items/s", *interleaved(ours, theirs, repeat), n, 0.95, "mp.Queue"
    )


def queue_batches(context: Any, sizes: Sizes, repeat: int) -> Row:
    n = sizes.small

    def ours() -> float:
        q = parallelkit.Queue[int](backend="process")
        return with_children(context, put_batches, (q, n), take_batches(q, n))

    def theirs() -> float:
        q = context.Queue()
        return with_children(context, put_each, (q, n), take(q.get, n))

    return Row(
        f"Queue, put_many/get_many ({BATCH}/batch)",
        "items/s",
        *interleaved(ours, theirs, repeat),
        n,
        1.5,
        "mp.Queue, one by one",
    )


def queue_big(context: Any, sizes: Sizes, repeat: int) -> Row:
    n = sizes.big

    def ours() -> float:
        q = parallelkit.Queue[bytes](backend="process")
        return with_children(context, put_blobs, (q, n), take(q.get, n))

    def theirs() -> float:
        q = context.Queue()
        return with_children(context, put_blobs, (q, n), take(q.get, n))

    return Row("Queue, 1 MB items", "MB/s", *interleaved(ours, theirs, repeat), n, 1.0, "mp.Queue")


def pipe_small(context: Any, sizes: Sizes, repeat: int) -> Row:
    n = sizes.small

    def ours() -> float:
        mine, theirs_end = parallelkit.Pipe[int](backend="process")
        return with_children(context, send_each, (theirs_end, n), take(mine.recv, n))

    def theirs() -> float:
        mine, theirs_end = context.Pipe()
        return with_children(context, send_each, (theirs_end, n), take(mine.recv, n))

    return Row(
        "Pipe, small items", "items/s", *interleaved(ours, theirs, repeat), n, 0.95, "mp.Pipe()"
    )


def value_add(context: Any, sizes: Sizes, repeat: int) -> Row:
    n = sizes.adds

    def ours() -> float:
        value = parallelkit.Value("i", 0, backend="process")
        elapsed = with_children(context, add_pk, (value, n), wait_only, children=2)
        assert value.value == 2 * n, value.value
        return elapsed

    def theirs() -> float:
        value = context.Value("i", 0)
        elapsed = with_children(context, add_mp, (value, n), wait_only, children=2)
        assert value.value == 2 * n, value.value
        return elapsed

    return Row(
        "Value.add, 2 processes",
        "adds/s",
        *interleaved(ours, theirs, repeat),
        2 * n,
        0.9,
        "with get_lock(): value += 1",
    )


def array_in(context: Any, sizes: Sizes, repeat: int) -> Row:
    n = sizes.cells
    values = [float(i) for i in range(n)]
    source = array.array("d", values)
    ours_array = parallelkit.Array("d", n, backend="process")
    their_array = context.Array("d", n)

    def ours() -> float:
        started = time.perf_counter()
        ours_array.copy_from(source)
        return time.perf_counter() - started

    def theirs() -> float:
        started = time.perf_counter()
        their_array[:] = values
        return time.perf_counter() - started

    row = Row(
        "Array, bulk copy in (copy_from)",
        "MB/s",
        *interleaved(ours, theirs, repeat),
        n * 8 / 1e6,
        10.0,
        "mp.Array[:] = list",
    )
    assert ours_array[n - 1] == values[-1]
    return row


def array_out(context: Any, sizes: Sizes, repeat: int) -> Row:
    n = sizes.cells
    ours_array = parallelkit.Array("d", [1.5] * n, backend="process")
    their_array = context.Array("d", [1.5] * n)
    out = array.array("d", bytes(8 * n))

    def ours() -> float:
        started = time.perf_counter()
        ours_array.copy_into(out)
        return time.perf_counter() - started

    def theirs() -> float:
        started = time.perf_counter()
        their_array[:]  # the copy out is what is timed
        return time.perf_counter() - started

    return Row(
        "Array, bulk copy out (copy_into)",
        "MB/s",
        *interleaved(ours, theirs, repeat),
        n * 8 / 1e6,
        10.0,
        "list(mp.Array[:])",
    )


def numpy_view(context: Any, sizes: Sizes, repeat: int) -> Row | None:
    try:
        import numpy as np
    except ImportError:
        return None
    n = sizes.cells
    ours_array = parallelkit.Array("d", [1.5] * n, backend="process")
    their_array = context.Array("d", [1.5] * n)

    def ours() -> float:
        started = time.perf_counter()
        ours_array.numpy().sum()
        return time.perf_counter() - started

    def theirs() -> float:
        started = time.perf_counter()
        np.frombuffer(their_array.get_obj()).sum()
        return time.perf_counter() - started

    return Row(
        "Array.numpy() view, create + sum",
        "MB/s",
        *interleaved(ours, theirs, repeat),
        n * 8 / 1e6,
        0.9,
        "np.frombuffer(get_obj())",
    )


def interleaved(
    ours: Callable[[], float], theirs: Callable[[], float], repeat: int
) -> tuple[float, float]:
    """Medians of ``repeat`` alternating runs of each, after one warm-up each."""
    ours()
    theirs()
    mine: list[float] = []
    other: list[float] = []
    for round_ in range(repeat):
        pair = (ours, mine), (theirs, other)
        for fn, into in pair if round_ % 2 == 0 else pair[::-1]:
            into.append(fn())
    return statistics.median(mine), statistics.median(other)


WORKLOADS: dict[str, Callable[[Any, Sizes, int], Row | None]] = {
    "queue/small": queue_small,
    "queue/batches": queue_batches,
    "queue/1MB": queue_big,
    "pipe/small": pipe_small,
    "value/add": value_add,
    "array/copy_in": array_in,
    "array/copy_out": array_out,
    "array/numpy": numpy_view,
}


def rate(amount: float, seconds: float, unit: str) -> str:
    per_second = amount / seconds
    if unit == "MB/s" and amount < 10_000:  # amounts given in MB or in 1 MB items
        return f"{per_second:,.0f} MB/s"
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f} M {unit}"
    return f"{per_second / 1e3:,.0f} k {unit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, 3 repeats")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per side (odd)")
    parser.add_argument("--start-method", default="forkserver", help="of the child processes")
    parser.add_argument("--only", action="append", default=[], help="workloads matching *PATTERN*")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    repeat = args.repeat or (3 if args.quick else 5)
    context = cast("Any", multiprocessing.get_context(args.start_method))
    print(
        f"# Python {platform.python_version()}, {platform.system()} {platform.release()}, "
        f"{multiprocessing.cpu_count()} CPUs, start method {args.start_method}, "
        f"median of {repeat} runs\n"
    )
    print("| workload | parallelkit | multiprocessing | anchor | ratio | target | met |")
    print("|---|---:|---:|---|---:|---:|:---:|")
    failed = 0
    for key, workload in WORKLOADS.items():
        if args.only and not any(fnmatch.fnmatch(key, f"*{p}*") for p in args.only):
            continue
        row = workload(context, sizes, repeat)
        if row is None:
            print(f"| {key} | numpy not installed | | | | | |")
            continue
        met = row.ratio >= row.target
        failed += not met
        print(
            f"| {row.name} | {rate(row.amount, row.ours, row.unit)} "
            f"| {rate(row.amount, row.theirs, row.unit)} | {row.anchor} "
            f"| {row.ratio:.2f}x | >= {row.target:g}x | {'yes' if met else 'NO'} |",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
