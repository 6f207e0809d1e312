"""Big payloads between processes: shared memory (``shared_threshold``) beside the anchors.

Usage::

    python benchmarks/bench_bulk.py              # the full run (a few minutes on 2 cores)
    python benchmarks/bench_bulk.py --quick      # a smoke run (small inputs, 3 repeats)
    python benchmarks/bench_bulk.py --only sweep --repeat 7

``make bench-bulk`` installs numpy, joblib and faster-fifo into .venv first and
runs the full benchmark.

Every contender of a workload is run once untimed, then ``--repeat`` times in
rounds whose order rotates, so that a burst of load touches all of them; the
table shows medians, and each parallelkit figure's ratio to its anchor in the
same run (higher is better for rates, lower for durations). Absolute figures
move with the load of the machine; the ratios are what count.

Workloads (child processes and workers started with ``--start-method``,
forkserver by default; a producer's clock starts when it is ready):

- queue/1MB: a child ``put``s 1 MB ``bytes`` items, the parent ``get``s them:
  parallelkit's Queue with the default ``shared_threshold`` and with
  ``shared_threshold=None`` (every item through the pipe, as before shared
  memory), ``multiprocessing.Queue``, and ``faster_fifo.Queue`` when installed;
- queue/100MB: a child puts 100 MB numpy ``uint8`` arrays; the parent sums every
  4096th byte of each (one byte a page, so that a view on shared memory is not
  free); the anchor is ``np.copyto`` of the same bytes into a preallocated array;
- executor/np.sum: ``Executor.map(np.sum, arrays)`` over 8 arrays of 8 MB (2
  process workers, created once and warmed up) beside ``multiprocessing.Pool(2).map``
  and ``joblib.Parallel(n_jobs=2)`` (loky, automatic memmapping, one
  ``Parallel`` kept open across the rounds);
- executor/closure: ``ex.map(partial(f, big), range(1000))`` where ``f`` reads one
  byte of a 100 MB array, read-only and writable, against the same map with a
  1-byte array;
- sweep: 16 KiB to 4 MiB ``bytes`` items through a process Queue, child to
  parent, with shared memory for every buffer (``shared_threshold=1``) and for
  none (``None``): where shared memory starts to win.

A column says whether a run of the contender created segments in ``/dev/shm``
(sampled while it ran), so a figure cannot silently come from the pipe.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import functools
import gc
import importlib
import importlib.metadata
import multiprocessing
import os
import platform
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as MpEvent
from typing import Any, cast

import numpy as np
from bench_channels import with_children
from bench_executor import seconds

import parallelkit

WORKERS = 2
MB = 1_000_000
KIB = 1024
MIB = 1 << 20
SHM = "/dev/shm"
#: The library's default, whatever the environment or a config file says.
DEFAULT_THRESHOLD: int = parallelkit.Settings._field_defaults["shared_threshold"]
#: faster-fifo's ring buffer: room for 3 items of 1 MB (its default, 200 KB, holds
#: none); of 2, 4, 8, 16 and 32 MiB, the one it ran fastest with here.
FIFO_BYTES = 4 * MIB
FIFO_HINT = (
    "faster-fifo not installed: `.venv/bin/python -m pip install faster-fifo` "
    "(or `make bench-bulk`)"
)


@dataclass
class Sizes:
    blobs: int  # 1 MB items per run
    arrays: int  # 100 MB arrays per run
    array_bytes: int
    chunks: int  # arrays of the executor map
    chunk_bytes: int
    big_bytes: int  # the closed-over array
    tasks: int
    sweep_bytes: int  # bytes per run of a sweep size


FULL = Sizes(400, 8, 100 * MB, 8, 8 * MB, 100 * MB, 1000, 256 * MIB)
QUICK = Sizes(40, 3, 100 * MB, 8, 8 * MB, 100 * MB, 1000, 16 * MIB)
SWEEP = (16 * KIB, 64 * KIB, 256 * KIB, 1 * MIB, 4 * MIB)


def import_optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def settings(threshold: int | None) -> contextlib.AbstractContextManager[parallelkit.Settings]:
    """``parallelkit.config(shared_threshold=threshold)``."""
    return parallelkit.config(shared_threshold=threshold)


# -- what the child processes run ------------------------------------------------------------


def put_bytes(
    q: Any, ready: MpEvent, go: MpEvent, count: int, size: int, threshold: int | None
) -> None:
    """Put ``count`` items of ``size`` bytes (the setting given again here, explicitly)."""
    blob = b"x" * size
    with settings(threshold):
        ready.set()
        go.wait()
        for _ in range(count):
            q.put(blob)


def put_arrays(
    q: Any, ready: MpEvent, go: MpEvent, count: int, size: int, threshold: int | None
) -> None:
    arr = np.ones(size, dtype=np.uint8)
    with settings(threshold):
        ready.set()
        go.wait()
        for _ in range(count):
            q.put(arr)


def touch_one(buffer: Any, i: int) -> int:
    """Read one byte of ``buffer``."""
    return int(buffer[i * 4099 % len(buffer)])


# -- shared memory in use --------------------------------------------------------------------


#: A segment's name ends with the pid of the process that made it and 12 hex digits.
SEGMENT = re.compile(r"(\d+)-[0-9a-f]{12}$")


def in_family(pid: int) -> bool:
    """Whether ``pid`` is this process or a descendant (other programs use /dev/shm too)."""
    me = os.getpid()
    for _ in range(4):  # this process, a forkserver, a worker
        if pid == me:
            return True
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


def shm_entries() -> set[str]:
    try:
        return set(os.listdir(SHM))
    except OSError:  # pragma: no cover - no /dev/shm
        return set()


class ShmWatch:
    """Shared-memory segments of this program that appear after ``start``.

    Only the untimed warm-up run of a contender watches (``active``): in a
    timed run every method here does nothing, so that the sampling costs no
    contender anything.
    """

    def __init__(self, active: bool) -> None:
        self.active = active
        self.before: set[str] = set()
        self.seen: set[str] = set()

    def start(self) -> None:
        if self.active:
            self.before = shm_entries()

    def sample(self) -> None:
        if not self.active:
            return
        for name in shm_entries() - self.before - self.seen:
            found = SEGMENT.search(name)
            if found is not None and in_family(int(found.group(1))):
                self.seen.add(name)

    @contextlib.contextmanager
    def sampling(self, interval: float = 0.002) -> Iterator[None]:
        """Sample every ``interval`` seconds in a thread while the block runs."""
        if not self.active:
            yield
            return
        done = threading.Event()

        def loop() -> None:
            while not done.wait(interval):
                self.sample()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            self.sample()


# -- contenders and rounds -------------------------------------------------------------------


@dataclass
class Contender:
    label: str
    run: Callable[[ShmWatch], float]  # one timed run; returns seconds
    missing: str | None = None
    times: list[float] = field(default_factory=lambda: [])
    shm: bool = False  # created segments in /dev/shm in its warm-up run
    expects_shm: bool = False  # its payloads are over its threshold

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def spread(self) -> float:
        return (max(self.times) - min(self.times)) / 2 / self.median


def rounds(contenders: list[Contender], repeat: int) -> None:
    """One untimed run each, then ``repeat`` rounds in a rotating order."""
    live = [c for c in contenders if c.missing is None]

    def once(c: Contender, watch: ShmWatch) -> float:
        gc.collect()
        took = c.run(watch)
        c.shm |= bool(watch.seen)
        return took

    for c in live:
        progress(f"  warm-up  {c.label}")
        once(c, ShmWatch(active=True))
    for r in range(repeat):
        progress(f"  round {r + 1}/{repeat}")
        shift = r % len(live)
        for c in live[shift:] + live[:shift]:
            c.times.append(once(c, ShmWatch(active=False)))


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the table -------------------------------------------------------------------------------


@dataclass
class Line:
    workload: str
    ours: Contender
    anchor: Contender
    amount: float  # bytes per run (rate rows); 0 for a duration row
    target: float | None  # >= for rates, <= for durations
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours.missing or self.anchor.missing:
            return None
        if self.amount:
            return self.anchor.median / self.ours.median
        return self.ours.median / self.anchor.median

    @property
    def met(self) -> str:
        if self.target is None:
            return ""
        ratio = self.ratio
        if ratio is None:
            return "**no**"
        ok = ratio >= self.target if self.amount else ratio <= self.target
        return "yes" if ok else "**no**"


def figure(c: Contender, amount: float) -> str:
    if c.missing is not None:
        return c.missing
    if amount:
        return f"{amount / c.median / MB:,.0f} MB/s ±{c.spread:.0%}"
    return f"{seconds(c.median)} ±{c.spread:.0%}"


def shm_mark(c: Contender) -> str:
    return "" if c.missing else ("yes" if c.shm else "no")


HEADER = (
    "| parallelkit | figure | shm | anchor | anchor's figure | shm | ratio | target | met |\n"
    "|---|---:|:---:|---|---:|:---:|---:|---|:---:|"
)


def print_line(line: Line) -> None:
    ratio = line.ratio
    shown = "" if ratio is None else f"{ratio:.2f}x"
    target = ""
    if line.target is not None:
        target = f"{'>=' if line.amount else '<='} {line.target:g}x"
    name = line.ours.label
    if line.note:
        name += f" ({line.note})"
    print(
        f"| {name} | {figure(line.ours, line.amount)} | {shm_mark(line.ours)} "
        f"| {line.anchor.label} | {figure(line.anchor, line.amount)} | {shm_mark(line.anchor)} "
        f"| {shown} | {target} | {line.met} |",
        flush=True,
    )


# -- the workloads ---------------------------------------------------------------------------


@dataclass
class Run:
    context: Any
    sizes: Sizes
    repeat: int
    stack: contextlib.ExitStack


def queue_run(
    ctx: Any,
    make: Callable[[], Any],
    producer: Callable[..., None],
    args: tuple[Any, ...],
    consume: Callable[[Any, ShmWatch], None],
) -> Callable[[ShmWatch], float]:
    """A run: a fresh queue from ``make``, a producer child, ``consume`` in this process."""

    def run(watch: ShmWatch) -> float:
        q = make()
        watch.start()
        try:
            return with_children(ctx, producer, (q, *args), lambda: consume(q, watch))
        finally:
            close = getattr(q, "close", None)
            if close is not None:
                close()

    return run


def pk_queue(threshold: int | None) -> Callable[[], Any]:
    def make() -> Any:
        with settings(threshold):  # a channel captures the setting when it is created
            return parallelkit.Queue[Any](backend="process")

    return make


def take_bytes(count: int, size: int) -> Callable[[Any, ShmWatch], None]:
    def consume(q: Any, watch: ShmWatch) -> None:
        for i in range(count):
            item = q.get()
            if i in (0, count // 2):
                watch.sample()
            if len(item) != size:
                raise AssertionError(f"got {len(item)} bytes, expected {size}")

    return consume


def take_fifo_bytes(count: int, size: int) -> Callable[[Any, ShmWatch], None]:
    def consume(q: Any, watch: ShmWatch) -> None:
        for _ in range(count):
            item = q.get(timeout=60)
            if len(item) != size:
                raise AssertionError(f"got {len(item)} bytes, expected {size}")

    return consume


def queue_contenders(
    ctx: Any,
    default_name: str,
    put: Callable[..., None],
    args: tuple[int, int],
    take: Callable[[Any, ShmWatch], None],
) -> tuple[Contender, Contender, Contender]:
    """A parallelkit Queue with the default threshold, one without, multiprocessing's.

    ``put(q, ready, go, *args, threshold)`` runs in the child; ``take`` in the parent.
    """
    return (
        Contender(
            default_name,
            queue_run(ctx, pk_queue(DEFAULT_THRESHOLD), put, (*args, DEFAULT_THRESHOLD), take),
        ),
        Contender(
            "Queue, shared_threshold=None",
            queue_run(ctx, pk_queue(None), put, (*args, None), take),
        ),
        Contender("multiprocessing.Queue", queue_run(ctx, ctx.Queue, put, (*args, None), take)),
    )


def queue_1mb(run: Run) -> list[Line]:
    ctx, n, size = run.context, run.sizes.blobs, MB
    fifo = import_optional("faster_fifo")
    default, today, mp = queue_contenders(
        ctx,
        f"Queue, default threshold ({DEFAULT_THRESHOLD // KIB} KiB)",
        put_bytes,
        (n, size),
        take_bytes(n, size),
    )
    ff = Contender(
        "faster_fifo.Queue",
        queue_run(
            ctx,
            lambda: fifo.Queue(max_size_bytes=FIFO_BYTES),
            put_bytes,
            (n, size, None),
            take_fifo_bytes(n, size),
        ),
        missing=None if fifo is not None else FIFO_HINT,
    )
    default.expects_shm = True
    rounds([default, today, mp, ff], run.repeat)
    amount = n * size
    name = f"Queue, {n} x 1 MB bytes, child -> parent"
    return [
        Line(name, default, today, amount, 2.0),
        Line(name, default, ff, amount, 1.0),
        Line(name, default, mp, amount, None),
        Line(name, today, mp, amount, None),
        Line(name, ff, mp, amount, None, "for scale"),
    ]


def take_arrays(count: int, size: int) -> Callable[[Any, ShmWatch], None]:
    def consume(q: Any, watch: ShmWatch) -> None:
        total = 0
        for i in range(count):
            arr = q.get()
            if i in (0, count // 2):
                watch.sample()
            total += int(arr[::4096].sum())  # one byte a page
            del arr
        if total != count * len(range(0, size, 4096)):
            raise AssertionError(f"wrong sum {total}")

    return consume


def queue_100mb(run: Run) -> list[Line]:
    ctx, n, size = run.context, run.sizes.arrays, run.sizes.array_bytes
    source = np.ones(size, dtype=np.uint8)
    target = np.zeros(size, dtype=np.uint8)
    probe = source[::4096].copy()

    def memcpy(watch: ShmWatch) -> float:
        started = time.perf_counter()
        total = 0
        for _ in range(n):
            np.copyto(target, source)
            total += int(target[::4096].sum())
        took = time.perf_counter() - started
        assert total == n * int(probe.sum())
        return took

    default, today, mp = queue_contenders(
        ctx, "Queue, default threshold", put_arrays, (n, size), take_arrays(n, size)
    )
    copy = Contender("np.copyto, same bytes, one process", memcpy)
    default.expects_shm = True
    rounds([default, today, mp, copy], run.repeat)
    amount = n * size
    name = f"Queue, {n} x {size // MB} MB numpy uint8, child -> parent, every 4096th byte read"
    return [
        Line(name, default, copy, amount, 0.3),
        Line(name, default, today, amount, None),
        Line(name, default, mp, amount, None),
        Line(name, today, mp, amount, None),
    ]


class SumsCheck:
    def __init__(self, arrays: list[Any]) -> None:
        self.expected = [float(np.sum(a)) for a in arrays]

    def __call__(self, result: Any) -> None:
        got = [float(x) for x in result]
        if not np.allclose(got, self.expected):
            raise AssertionError("wrong sums")


def timed_call(
    body: Callable[[], Any], check: Callable[[Any], None]
) -> Callable[[ShmWatch], float]:
    def run(watch: ShmWatch) -> float:
        watch.start()
        with watch.sampling():
            started = time.perf_counter()
            result = body()
            took = time.perf_counter() - started
        check(result)
        return took

    return run


def pk_executor(run: Run, threshold: int | None) -> parallelkit.Executor:
    with settings(threshold):  # an executor captures the setting when it is created
        ex = parallelkit.Executor("process", WORKERS, start_method=run.context.get_start_method())
    run.stack.callback(ex.shutdown, wait=True)
    return ex


def executor_sum(run: Run) -> list[Line]:
    ctx = run.context
    rng = np.random.default_rng(0)
    arrays = [rng.random(run.sizes.chunk_bytes // 8) for _ in range(run.sizes.chunks)]
    frozen = [a.copy() for a in arrays]
    for a in frozen:
        a.setflags(write=False)
    check = SumsCheck(arrays)
    ex = pk_executor(run, DEFAULT_THRESHOLD)
    ex_today = pk_executor(run, None)
    pool = ctx.Pool(WORKERS)
    run.stack.callback(pool.join)
    run.stack.callback(pool.close)
    default = Contender(
        "Executor.map, default threshold",
        timed_call(lambda: list(ex.map(np.sum, arrays)), check),
    )
    today = Contender(
        "Executor.map, shared_threshold=None",
        timed_call(lambda: list(ex_today.map(np.sum, arrays)), check),
    )
    cached = Contender(
        "Executor.map, default threshold, read-only arrays",
        timed_call(lambda: list(ex.map(np.sum, frozen)), check),
    )
    mp = Contender(
        "multiprocessing.Pool(2).map", timed_call(lambda: pool.map(np.sum, arrays), check)
    )
    joblib = import_optional("joblib")
    if joblib is None:
        jl = Contender("joblib.Parallel(n_jobs=2)", lambda w: 0.0, missing="not installed")
        fresh = Contender("joblib, a new Parallel per call", lambda w: 0.0, missing="not installed")
    else:
        run.stack.callback(shutdown_loky)
        parallel = run.stack.enter_context(joblib.Parallel(n_jobs=WORKERS))
        jl = Contender(
            "joblib.Parallel(n_jobs=2), loky, one Parallel for every call",
            timed_call(lambda: parallel(joblib.delayed(np.sum)(a) for a in arrays), check),
        )
        fresh = Contender(
            "joblib.Parallel(n_jobs=2), loky, a new Parallel per call",
            timed_call(
                lambda: joblib.Parallel(n_jobs=WORKERS)(joblib.delayed(np.sum)(a) for a in arrays),
                check,
            ),
        )
    for executor in (ex, ex_today):  # their workers are up before the first run
        list(executor.map(abs, [1]))
    default.expects_shm = cached.expects_shm = True
    rounds([default, today, cached, mp, jl, fresh], run.repeat)
    name = f"Executor.map(np.sum, {len(arrays)} x {run.sizes.chunk_bytes // MB} MB), 2 workers"
    amount = sum(a.nbytes for a in arrays)
    return [
        Line(name, default, mp, amount, 1.5),
        Line(name, default, jl, amount, 1.0),
        Line(name, default, today, amount, None),
        Line(name, default, fresh, amount, None),
        Line(name, cached, jl, amount, None),
        Line(name, today, mp, amount, None),
    ]


def shutdown_loky() -> None:
    loky = importlib.import_module("joblib.externals.loky")
    loky.get_reusable_executor(max_workers=WORKERS).shutdown(wait=True)


#: The closure rows' rounds, in multiples of --repeat: a map of 1,000 tiny tasks
#: takes a millisecond or two, and one pause of the machine moves it by half.
CLOSURE_ROUNDS = 3


def executor_closure(run: Run) -> list[Line]:
    n = run.sizes.tasks
    frozen = np.ones(run.sizes.big_bytes, dtype=np.uint8)
    frozen.setflags(write=False)
    writable = np.ones(run.sizes.big_bytes, dtype=np.uint8)
    tiny = np.ones(1, dtype=np.uint8)
    ex = pk_executor(run, DEFAULT_THRESHOLD)
    ex_today = pk_executor(run, None)

    def check(result: Any) -> None:
        if result != [1] * n:
            raise AssertionError("wrong results")

    def mapped(executor: parallelkit.Executor, arg: Any) -> Callable[[ShmWatch], float]:
        return timed_call(
            lambda: list(executor.map(functools.partial(touch_one, arg), range(n))), check
        )

    mb = run.sizes.big_bytes // MB
    small = Contender("1-byte array", mapped(ex, tiny))
    ro = Contender(f"{mb} MB read-only array", mapped(ex, frozen))
    rw = Contender(f"{mb} MB writable array", mapped(ex, writable))
    ro_today = Contender(
        f"{mb} MB read-only array, shared_threshold=None", mapped(ex_today, frozen)
    )
    list(ex.map(abs, [1]))
    list(ex_today.map(abs, [1]))
    ro.expects_shm = rw.expects_shm = True
    rounds([small, ro, rw, ro_today], CLOSURE_ROUNDS * run.repeat)
    name = f"ex.map(partial(f, big), range({n:,})), time"
    return [
        Line(name, ro, small, 0, 1.2),
        Line(name, rw, small, 0, None),
        Line(name, ro_today, small, 0, None),
    ]


@dataclass
class SweepPoint:
    size: int
    on: Contender
    off: Contender
    amount: int

    @property
    def ratio(self) -> float:
        return self.off.median / self.on.median


def sweep(run: Run) -> list[SweepPoint]:
    ctx = run.context
    points = []
    for size in SWEEP:
        n = max(16, run.sizes.sweep_bytes // size)
        progress(f"sweep {size // KIB} KiB x {n}")
        on = Contender(
            "shared_threshold=1",
            queue_run(ctx, pk_queue(1), put_bytes, (n, size, 1), take_bytes(n, size)),
        )
        off = Contender(
            "shared_threshold=None",
            queue_run(ctx, pk_queue(None), put_bytes, (n, size, None), take_bytes(n, size)),
        )
        rounds([on, off], run.repeat)
        points.append(SweepPoint(size, on, off, n * size))
    return points


#: A sweep point is called for one side only when it is this much faster (noise below).
MARGIN = 1.1


def verdict(ratio: float) -> str:
    if ratio >= MARGIN:
        return "shared memory"
    if ratio <= 1 / MARGIN:
        return "pipe"
    return "even"


def print_sweep(points: list[SweepPoint]) -> None:
    print("### Threshold sweep: bytes items through a process Queue, child -> parent")
    print()
    print(
        "| item size | items | shm forced on (threshold=1) | shm | off (None) | shm "
        f"| on / off | faster (by {MARGIN:g}x or more) |"
    )
    print("|---:|---:|---:|:---:|---:|:---:|---:|---|")
    for p in points:
        print(
            f"| {size_name(p.size)} | {p.amount // p.size:,} | {figure(p.on, p.amount)} "
            f"| {shm_mark(p.on)} | {figure(p.off, p.amount)} | {shm_mark(p.off)} "
            f"| {p.ratio:.2f}x | {verdict(p.ratio) if p.on.shm else 'shared memory not used'} |"
        )
    print()
    if not any(p.on.shm for p in points):
        print(
            "No crossover to read: the Queue made no shared-memory segment with "
            "shared_threshold=1 (this version's channels send everything through the pipe)."
        )
        return
    wins = [verdict(p.ratio) == "shared memory" for p in points]
    first = next((i for i in range(len(points)) if all(wins[i:])), None)
    if first is None:
        print("Shared memory is not faster by the margin at the largest size measured.")
    else:
        print(
            f"Shared memory is faster from {size_name(points[first].size)} up "
            f"(default threshold: {size_name(DEFAULT_THRESHOLD)})."
        )


def size_name(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


WORKLOADS: dict[str, Callable[[Run], list[Line]]] = {
    "queue/1MB": queue_1mb,
    "queue/100MB": queue_100mb,
    "executor/np.sum": executor_sum,
    "executor/closure": executor_closure,
}


def versions() -> Iterator[str]:
    for name in ("numpy", "joblib", "faster-fifo"):
        try:
            yield f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            yield f"{name} not installed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, 3 repeats")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per contender")
    parser.add_argument("--start-method", default="forkserver", help="of the child processes")
    parser.add_argument(
        "--only", action="append", default=[], help="workloads (or 'sweep') matching *PATTERN*"
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    repeat = args.repeat or (3 if args.quick else 7)
    context = cast("Any", multiprocessing.get_context(args.start_method))

    def chosen(key: str) -> bool:
        return not args.only or any(fnmatch.fnmatch(key, f"*{p}*") for p in args.only)

    command = " ".join(["python", "benchmarks/bench_bulk.py", *(argv or sys.argv[1:])])
    print(f"$ {command}")
    print(
        f"# parallelkit {parallelkit.__version__}, Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), start method "
        f"{args.start_method}, median of {repeat} runs; {', '.join(versions())}"
    )
    print(
        f"# default shared_threshold {DEFAULT_THRESHOLD:,} bytes; in force here: "
        f"{parallelkit.current_settings().shared_threshold}; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    if import_optional("faster_fifo") is None:
        print(f"# {FIFO_HINT}")
    print()
    began = time.perf_counter()
    for key, workload in WORKLOADS.items():
        if not chosen(key):
            continue
        progress(key)
        with contextlib.ExitStack() as stack:
            lines = workload(Run(context, sizes, repeat, stack))
        print(f"### {lines[0].workload}\n")
        print(HEADER)
        for line in lines:
            print_line(line)
        print()
        unused = {c.label for ln in lines for c in (ln.ours, ln.anchor) if c.expects_shm}
        unused -= {c.label for ln in lines for c in (ln.ours, ln.anchor) if c.shm or c.missing}
        for label in sorted(unused):
            print(f"Note: {label!r} made no shared-memory segment: its figure is the pipe's.\n")
    if chosen("sweep"):
        with contextlib.ExitStack() as stack:
            print_sweep(sweep(Run(context, sizes, repeat, stack)))
    print()
    print(
        f"# load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"{time.perf_counter() - began:.0f} s in all"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
