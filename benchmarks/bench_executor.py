"""parallelkit beside multiprocessing, concurrent.futures and joblib, in one process.

Usage::

    python benchmarks/bench_executor.py              # the full run (about 6 minutes on 2 cores)
    python benchmarks/bench_executor.py --quick      # a smoke run (small inputs, 2 repeats)
    python benchmarks/bench_executor.py --only imap  # rows whose "section/runner" matches

Every runner of a section is measured in rounds, interleaved with the others
of its section (the order rotates each round), after one untimed warm-up; the
table shows the median. A section runs ``--repeat`` rounds, or a multiple of it
where one figure is short or swings much (its title says how many). Each
parallelkit row shows its ratio against the named anchor measured in the same
run and whether the project's target for it is met. Absolute figures move with
the load of the machine; the ratios within one run are what count.

Workloads, all with 2 workers:

- 100,000 tiny tasks (``x + 1``) through ``map``, ``imap``, ``imap_unordered``
  and ``submit``, on processes, on threads and inline;
- a pool's start + stop (start, one tiny ``map``, close, join) per start method,
  timed in fresh interpreters running a small script that imports only the library
  it times (the first pool of a process, and the ones after it);
- the seed's CPU-bound job (``run(total)``, a sum in a Python loop) as 2 tasks on
  1 worker and on 2 workers, beside the same job in 1 and 2 bare interpreters
  (no pool at all): what the machine lets two processes gain at that moment.

joblib is optional: without it its rows say "not installed".
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import fnmatch
import functools
import gc
import importlib
import json
import math
import multiprocessing
import multiprocessing.dummy
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from multiprocessing.pool import Pool as MpPool

    import parallelkit

# parallelkit and joblib are imported only where they are used: under spawn and
# forkserver every worker of every pool, the anchors' included, imports this
# module, and their import time would otherwise be charged to the anchors.

T = TypeVar("T")

WORKERS = 2
START_METHODS = ("fork", "spawn", "forkserver")
NOT_INSTALLED = "not installed"


# -- the tasks (module level, so that every pool can pickle them by reference) ----------


def inc(x: int) -> int:
    return x + 1


def run(total: int) -> int:
    """The seed's CPU-bound job: sum ``range(total)`` in a Python loop."""
    acc = 0
    for i in range(total):
        acc += i
    return acc


def calibrate(seconds: float) -> int:
    """Return a ``total`` for which :func:`run` takes about ``seconds`` here."""
    n = 100_000
    while True:
        start = time.perf_counter()
        run(n)
        took = time.perf_counter() - start
        if took > 0.05:
            return max(1, int(n * seconds / took))
        n *= 4


# -- rows and sections ------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    """One row of the table.

    Attributes:
        label: The runner, e.g. ``"multiprocessing.Pool.map"``; unique in its section.
        body: The timed call.
        items: Tasks per call, for a rate; 0 for a duration row (start + stop).
        anchor: The label of the row of the same section this one is compared with.
        target: The ratio to reach: ``>=`` for rates, ``<=`` for durations.
        check: Validates the body's result (outside the timed region).
        warmup: Untimed call before the repeats; defaults to ``body``.
        reports_time: The body returns the seconds to record (measured in a
            subprocess) instead of being timed here.
        missing: Why the row cannot run (``"not installed"``), or None.
    """

    label: str
    body: Callable[[], object]
    items: int = 0
    anchor: str | None = None
    target: float | None = None
    check: Callable[[Any], bool] | None = None
    warmup: Callable[[], object] | None = None
    reports_time: bool = False
    missing: str | None = None
    times: list[float] = dataclasses.field(default_factory=lambda: [])

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def rate(self) -> float:
        return self.items / self.median


@dataclasses.dataclass
class Config:
    repeat: int
    tiny: int  # items of the tiny-task maps
    slow: int  # items for the anchors that send one message per item
    submits: int  # tasks of the submit rows
    cpu_seconds: float  # duration of one run(total) call
    start_method: str  # of the steady-state process rows
    cycles: int  # warm start + stop cycles per fresh interpreter


class Resources:
    """Pools created on first use and closed (gracefully) when the section ends."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self._stack = stack
        self._made: dict[str, object] = {}

    def get(self, key: str, make: Callable[[], T], close: Callable[[T], object]) -> T:
        if key not in self._made:
            made = make()
            self._made[key] = made
            self._stack.callback(close, made)
        return self._made[key]  # type: ignore[return-value]


@dataclasses.dataclass
class Section:
    key: str
    title: str
    build: Callable[[Config, Resources], list[Case]]
    rounds: int = 1  # timed rounds: this many times the run's --repeat


def close_mp_pool(pool: MpPool) -> None:
    pool.close()
    pool.join()


def close_pk_pool(pool: parallelkit.Pool) -> None:
    pool.close()
    pool.join()


def shutdown(executor: concurrent.futures.Executor) -> None:
    executor.shutdown(wait=True)


def equals(expected: object) -> Callable[[Any], bool]:
    return lambda result: result == expected


def same_items(expected: list[int]) -> Callable[[Any], bool]:
    return lambda result: sorted(result) == expected


def compile_parallelkit() -> None:
    """Write parallelkit's bytecode where it is missing or stale, as an installer does.

    Otherwise, with ``PYTHONDONTWRITEBYTECODE`` set or a source tree edited
    since its last import, every fresh interpreter of the start + stop rows
    compiles the package from source, and a process that compiled is about
    2 MB bigger to fork: a cost charged to parallelkit's rows alone, as the
    standard library ships compiled.
    """
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("parallelkit")
    if spec is not None and spec.origin is not None:
        compileall.compile_dir(os.path.dirname(spec.origin), quiet=1)


def import_joblib() -> Any:
    """joblib, or None when it is not installed (it is optional)."""
    try:
        return importlib.import_module("joblib")
    except ImportError:
        return None


def joblib_version() -> str | None:
    joblib = import_joblib()
    return None if joblib is None else str(joblib.__version__)


def joblib_parallel(res: Resources, backend: str) -> Any:
    """A ``joblib.Parallel`` kept open across calls (its workers are reused)."""
    joblib = import_joblib()

    def make() -> Any:
        parallel = joblib.Parallel(n_jobs=WORKERS, backend=backend)
        parallel.__enter__()
        return parallel

    def close(parallel: Any) -> None:
        parallel.__exit__(None, None, None)
        if backend == "loky":
            loky = importlib.import_module("joblib.externals.loky")
            loky.get_reusable_executor(max_workers=WORKERS).shutdown(wait=True)

    return res.get(f"joblib-{backend}", make, close)


def joblib_case(res: Resources, backend: str, data: list[int], anchor: str, label: str) -> Case:
    expected = [x + 1 for x in data]
    joblib = import_joblib()
    if joblib is None:
        return Case(label, lambda: None, len(data), anchor, missing=NOT_INSTALLED)

    def body() -> list[int]:
        result: list[int] = joblib_parallel(res, backend)(joblib.delayed(inc)(x) for x in data)
        return result

    return Case(label, body, len(data), anchor, check=equals(expected))


def submit_all(executor: concurrent.futures.Executor, n: int) -> int:
    futures = [executor.submit(inc, i) for i in range(n)]
    return sum(f.result() for f in futures)


def submit_sum(n: int) -> int:
    return n * (n + 1) // 2


# -- tiny tasks -------------------------------------------------------------------------

MP_MAP = "multiprocessing.Pool.map"


#: The tiny-task rows' rounds, in multiples of --repeat: a map of 100,000 tiny
#: tasks takes 10-20 ms, and one pause of the machine moves such a figure by a
#: fifth.
TINY_ROUNDS = 3


def tiny_process(cfg: Config, res: Resources) -> list[Case]:
    import parallelkit

    method = cfg.start_method
    ctx = multiprocessing.get_context(method)
    data = list(range(cfg.tiny))
    slow = data[: cfg.slow]
    expected = [x + 1 for x in data]
    chunk = math.ceil(len(data) / (4 * WORKERS))

    def mp_pool() -> MpPool:
        return res.get("mp", lambda: ctx.Pool(WORKERS), close_mp_pool)

    def ppe() -> concurrent.futures.ProcessPoolExecutor:
        return res.get(
            "ppe",
            lambda: concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx),
            shutdown,
        )

    def pool() -> parallelkit.Pool:
        return res.get(
            "pk-pool",
            lambda: parallelkit.Pool(WORKERS, backend="process", start_method=method),
            close_pk_pool,
        )

    def executor() -> parallelkit.Executor:
        return res.get(
            "pk-executor",
            lambda: parallelkit.Executor("process", WORKERS, start_method=method),
            shutdown,
        )

    same = equals(expected)
    return [
        Case(MP_MAP, lambda: mp_pool().map(inc, data), len(data), check=same),
        Case(
            "multiprocessing.Pool.imap, chunksize 1 (its default)",
            lambda: list(mp_pool().imap(inc, slow)),
            len(slow),
            MP_MAP,
            check=equals(expected[: len(slow)]),
        ),
        Case(
            f"multiprocessing.Pool.imap, chunksize {chunk:,}",
            lambda: list(mp_pool().imap(inc, data, chunk)),
            len(data),
            MP_MAP,
            check=same,
        ),
        Case(
            "ProcessPoolExecutor.map, chunksize 1 (its default)",
            lambda: list(ppe().map(inc, slow)),
            len(slow),
            MP_MAP,
            check=equals(expected[: len(slow)]),
        ),
        Case(
            f"ProcessPoolExecutor.map, chunksize {chunk:,}",
            lambda: list(ppe().map(inc, data, chunksize=chunk)),
            len(data),
            MP_MAP,
            check=same,
        ),
        joblib_case(res, "loky", data, MP_MAP, "joblib.Parallel, loky, batch_size auto"),
        Case("parallelkit Pool.map", lambda: pool().map(inc, data), len(data), MP_MAP, 1.0, same),
        Case(
            "parallelkit list(Executor.map)",
            lambda: list(executor().map(inc, data)),
            len(data),
            MP_MAP,
            1.0,
            same,
        ),
        Case(
            "parallelkit Pool.imap",
            lambda: list(pool().imap(inc, data)),
            len(data),
            MP_MAP,
            0.8,
            same,
        ),
        Case(
            "parallelkit Pool.imap_unordered",
            lambda: list(pool().imap_unordered(inc, data)),
            len(data),
            MP_MAP,
            0.8,
            same_items(expected),
        ),
        Case(
            "parallelkit Executor.imap",
            lambda: list(executor().imap(inc, data)),
            len(data),
            MP_MAP,
            0.8,
            same,
        ),
        Case(
            "parallelkit Executor.imap_unordered",
            lambda: list(executor().imap_unordered(inc, data)),
            len(data),
            MP_MAP,
            0.8,
            same_items(expected),
        ),
        Case(
            "parallelkit Pool.imap, input of unknown length",
            lambda: list(pool().imap(inc, iter(data))),
            len(data),
            MP_MAP,
            0.8,
            same,
        ),
    ]


PPE_SUBMIT = "ProcessPoolExecutor.submit"


def submit_process(cfg: Config, res: Resources) -> list[Case]:
    import parallelkit

    method = cfg.start_method
    ctx = multiprocessing.get_context(method)
    n = cfg.submits
    warm = min(n, 500)

    def ppe() -> concurrent.futures.ProcessPoolExecutor:
        return res.get(
            "ppe",
            lambda: concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx),
            shutdown,
        )

    def executor() -> parallelkit.Executor:
        return res.get(
            "pk-executor",
            lambda: parallelkit.Executor("process", WORKERS, start_method=method),
            shutdown,
        )

    def mp_pool() -> MpPool:
        return res.get("mp", lambda: ctx.Pool(WORKERS), close_mp_pool)

    def apply_all() -> int:
        pool = mp_pool()
        results = [pool.apply_async(inc, (i,)) for i in range(n)]
        return sum(r.get() for r in results)

    total = equals(submit_sum(n))
    return [
        Case(
            PPE_SUBMIT,
            lambda: submit_all(ppe(), n),
            n,
            check=total,
            warmup=lambda: submit_all(ppe(), warm),
        ),
        Case(
            "multiprocessing.Pool.apply_async",
            apply_all,
            n,
            PPE_SUBMIT,
            check=total,
            warmup=lambda: mp_pool().map(inc, range(4)),
        ),
        Case(
            "parallelkit Executor.submit",
            lambda: submit_all(executor(), n),
            n,
            PPE_SUBMIT,
            1.0,
            total,
            warmup=lambda: submit_all(executor(), warm),
        ),
    ]


DUMMY_MAP = "multiprocessing.dummy.Pool.map"
TPE_SUBMIT = "ThreadPoolExecutor.submit"


def tiny_thread(cfg: Config, res: Resources) -> list[Case]:
    import parallelkit

    data = list(range(cfg.tiny))
    slow = data[: cfg.slow]
    expected = [x + 1 for x in data]
    n = cfg.submits

    def dummy() -> MpPool:
        return res.get("dummy", new_dummy_pool, close_mp_pool)

    def tpe() -> concurrent.futures.ThreadPoolExecutor:
        return res.get("tpe", lambda: concurrent.futures.ThreadPoolExecutor(WORKERS), shutdown)

    def pool() -> parallelkit.Pool:
        return res.get(
            "pk-pool", lambda: parallelkit.Pool(WORKERS, backend="thread"), close_pk_pool
        )

    def executor() -> parallelkit.Executor:
        return res.get("pk-executor", lambda: parallelkit.Executor("thread", WORKERS), shutdown)

    same = equals(expected)
    total = equals(submit_sum(n))
    return [
        Case(DUMMY_MAP, lambda: dummy().map(inc, data), len(data), check=same),
        Case(
            "multiprocessing.dummy.Pool.imap, chunksize 1 (its default)",
            lambda: list(dummy().imap(inc, slow)),
            len(slow),
            DUMMY_MAP,
            check=equals(expected[: len(slow)]),
        ),
        Case(
            "ThreadPoolExecutor.map",
            lambda: list(tpe().map(inc, slow)),
            len(slow),
            DUMMY_MAP,
            check=equals(expected[: len(slow)]),
        ),
        joblib_case(res, "threading", slow, DUMMY_MAP, "joblib.Parallel, threading"),
        Case(
            "parallelkit Pool.map", lambda: pool().map(inc, data), len(data), DUMMY_MAP, 0.9, same
        ),
        Case(
            "parallelkit list(Executor.map)",
            lambda: list(executor().map(inc, data)),
            len(data),
            DUMMY_MAP,
            0.9,
            same,
        ),
        Case(
            "parallelkit Pool.imap",
            lambda: list(pool().imap(inc, data)),
            len(data),
            DUMMY_MAP,
            check=same,
        ),
        Case(
            "parallelkit Pool.imap_unordered",
            lambda: list(pool().imap_unordered(inc, data)),
            len(data),
            DUMMY_MAP,
            check=same_items(expected),
        ),
        Case(
            TPE_SUBMIT,
            lambda: submit_all(tpe(), n),
            n,
            check=total,
        ),
        Case(
            "parallelkit Executor.submit",
            lambda: submit_all(executor(), n),
            n,
            TPE_SUBMIT,
            check=total,
        ),
    ]


LIST_COMP = "list comprehension"


def tiny_serial(cfg: Config, res: Resources) -> list[Case]:
    import parallelkit

    data = list(range(cfg.tiny))
    expected = [x + 1 for x in data]

    def pool() -> parallelkit.Pool:
        return res.get(
            "pk-pool", lambda: parallelkit.Pool(WORKERS, backend="serial"), close_pk_pool
        )

    def executor() -> parallelkit.Executor:
        return res.get("pk-executor", lambda: parallelkit.Executor("serial", WORKERS), shutdown)

    same = equals(expected)
    return [
        Case(LIST_COMP, lambda: [inc(x) for x in data], len(data), check=same),
        Case(
            "parallelkit Pool.map", lambda: pool().map(inc, data), len(data), LIST_COMP, check=same
        ),
        Case(
            "parallelkit list(Executor.map)",
            lambda: list(executor().map(inc, data)),
            len(data),
            LIST_COMP,
            check=same,
        ),
    ]


# -- start + stop -----------------------------------------------------------------------

#: A start + stop row's rounds, in multiples of --repeat: each round is one fresh
#: interpreter, and its figure swings with the machine's state more than a
#: throughput row's does (a spread of 15-35% across interpreters). With 15 a
#: row's median still moved by about 8% from one run to the next, more than the
#: gap it is there to measure; 30 halve the variance.
START_ROUNDS = 6

FIRST = list(range(2 * WORKERS))
FIRST_RESULT = [x + 1 for x in FIRST]

# Start + stop of a process pool is timed in a fresh interpreter running a small script
# that imports only its own library, at the top, as a program using it would. Under
# spawn every worker imports the main script, and under forkserver the server imports
# it once: in one shared process each library would be charged with the other's imports.
CYCLE_SCRIPT = """\
import json
import sys
import time

{imports}


def inc(x):
    return x + 1


def cycle(method):
{body}


if __name__ == "__main__":
    method, count = sys.argv[1], int(sys.argv[2])
    times = []
    for _ in range(count):
        start = time.perf_counter()
        result = cycle(method)
        times.append(time.perf_counter() - start)
        assert result == {expected!r}, result
    print(json.dumps(times))
"""

CYCLE_RUNNERS: dict[str, tuple[str, str]] = {
    "mp-pool": (
        "import multiprocessing\nimport multiprocessing.pool",
        "    pool = multiprocessing.get_context(method).Pool({workers})\n"
        "    try:\n"
        "        return pool.map(inc, range({n}))\n"
        "    finally:\n"
        "        pool.close()\n"
        "        pool.join()",
    ),
    "ppe": (
        "import concurrent.futures\nimport multiprocessing",
        "    ctx = multiprocessing.get_context(method)\n"
        "    with concurrent.futures.ProcessPoolExecutor({workers}, mp_context=ctx) as ex:\n"
        "        return list(ex.map(inc, range({n})))",
    ),
    "pk-pool": (
        "import parallelkit",
        "    pool = parallelkit.Pool({workers}, start_method=method)\n"
        "    try:\n"
        "        return pool.map(inc, range({n}))\n"
        "    finally:\n"
        "        pool.close()\n"
        "        pool.join()",
    ),
    "pk-pool-preload": (
        "import multiprocessing\n\nimport parallelkit\n\n"
        "multiprocessing.set_forkserver_preload(['__main__', 'parallelkit'])",
        "    pool = parallelkit.Pool({workers}, start_method=method)\n"
        "    try:\n"
        "        return pool.map(inc, range({n}))\n"
        "    finally:\n"
        "        pool.close()\n"
        "        pool.join()",
    ),
    "pk-executor": (
        "import parallelkit",
        "    with parallelkit.Executor('process', {workers}, start_method=method) as ex:\n"
        "        return list(ex.map(inc, range({n})))",
    ),
}


class CycleRuns:
    """Fresh interpreters that each time ``1 + warm`` start + stop cycles of one runner.

    Each run yields two figures: the first cycle ("first pool in a fresh process",
    which under forkserver also starts the server) and the median of the others.
    """

    def __init__(self, script: str, method: str, warm: int) -> None:
        self._command = [sys.executable, script, method, str(1 + warm)]
        self._left: dict[str, list[float]] = {"first": [], "warm": []}

    def take(self, kind: str) -> float:
        if not self._left[kind]:
            out = subprocess.run(
                self._command, capture_output=True, text=True, check=True, timeout=300
            )
            times: list[float] = json.loads(out.stdout.splitlines()[-1])
            self._left["first"].append(times[0])
            self._left["warm"].append(statistics.median(times[1:]))
        return self._left[kind].pop()


def cycle_scripts(res: Resources) -> dict[str, str]:
    """Write the start + stop scripts into a temporary directory (once per run)."""

    def make() -> dict[str, str]:
        folder = tempfile.mkdtemp(prefix="parallelkit-bench-")
        paths: dict[str, str] = {}
        for runner, (imports, body) in CYCLE_RUNNERS.items():
            path = os.path.join(folder, f"cycle_{runner.replace('-', '_')}.py")
            with open(path, "w", encoding="utf-8") as f:
                f.write(
                    CYCLE_SCRIPT.format(
                        imports=imports,
                        body=body.format(workers=WORKERS, n=len(FIRST)),
                        expected=FIRST_RESULT,
                    )
                )
            paths[runner] = path
        paths[""] = folder
        return paths

    return res.get("cycle-scripts", make, lambda paths: shutil.rmtree(paths[""]))


def start_stop(method: str) -> Callable[[Config, Resources], list[Case]]:
    def build(cfg: Config, res: Resources) -> list[Case]:
        scripts = cycle_scripts(res)
        runs = {runner: CycleRuns(scripts[runner], method, cfg.cycles) for runner in CYCLE_RUNNERS}
        preload = f"parallelkit Pool({WORKERS}), parallelkit preloaded by the forkserver"

        def case(runner: str, kind: str, label: str, **kw: Any) -> Case:
            return Case(
                label,
                lambda: runs[runner].take(kind),
                warmup=lambda: None,
                reports_time=True,
                **kw,
            )

        anchor = f"multiprocessing.Pool({WORKERS})"
        first = f"multiprocessing.Pool({WORKERS}), first in a fresh process"
        cases = [
            case("mp-pool", "warm", anchor),
            case("ppe", "warm", f"ProcessPoolExecutor({WORKERS})", anchor=anchor),
            case("pk-pool", "warm", f"parallelkit Pool({WORKERS})", anchor=anchor, target=1.1),
            case(
                "pk-executor",
                "warm",
                f"parallelkit Executor('process', {WORKERS})",
                anchor=anchor,
                target=1.1,
            ),
            case("mp-pool", "first", first),
            case(
                "pk-pool",
                "first",
                f"parallelkit Pool({WORKERS}), first in a fresh process",
                anchor=first,
                target=1.1,
            ),
        ]
        if method == "forkserver":
            # The main script imports parallelkit; a forkserver that does not preload
            # the main module (CPython gh-126631) makes every worker import it again.
            cases += [
                case("pk-pool-preload", "warm", preload, anchor=anchor),
                case("pk-pool-preload", "first", f"{preload}, first", anchor=first),
            ]
        return cases

    return build


def new_dummy_pool() -> MpPool:
    return cast("MpPool", multiprocessing.dummy.Pool(WORKERS))


def cycle_dummy() -> list[int]:
    pool = new_dummy_pool()
    try:
        return pool.map(inc, FIRST)
    finally:
        pool.close()
        pool.join()


def cycle_pk_pool(backend: str) -> list[int]:
    import parallelkit

    pool = parallelkit.Pool(WORKERS, backend=backend)
    try:
        return pool.map(inc, FIRST)
    finally:
        pool.close()
        pool.join()


def cycle_pk_executor(backend: str) -> list[int]:
    import parallelkit

    with parallelkit.Executor(backend, WORKERS) as ex:
        return list(ex.map(inc, FIRST))


def start_stop_thread(cfg: Config, res: Resources) -> list[Case]:
    anchor = f"multiprocessing.dummy.Pool({WORKERS})"
    check = equals(FIRST_RESULT)
    return [
        Case(anchor, cycle_dummy, check=check),
        Case(
            f"parallelkit Pool({WORKERS}, backend='thread')",
            lambda: cycle_pk_pool("thread"),
            anchor=anchor,
            check=check,
        ),
        Case(
            f"parallelkit Executor('thread', {WORKERS})",
            lambda: cycle_pk_executor("thread"),
            anchor=anchor,
            check=check,
        ),
    ]


# -- CPU-bound --------------------------------------------------------------------------


#: The CPU-bound rows' rounds, in multiples of --repeat: a 2-versus-1 ratio is a
#: quotient of two medians of half-second runs that move by 10-20% with the load.
CPU_ROUNDS = 2


class BareInterpreters:
    """Plain interpreters that run :func:`run` on request, with no pool in between.

    Two of them running one task each, against one running both, show how
    far this machine lets two processes scale at this moment: the ceiling
    for the pools' 2-versus-1 ratios.
    """

    def __init__(self, count: int) -> None:
        import inspect

        code = inspect.getsource(run) + (
            "import sys\nfor line in sys.stdin:\n    print(run(int(line)), flush=True)\n"
        )
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-c", code],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]

    def map(self, tasks: list[int]) -> list[int]:
        """Run ``tasks`` spread over the interpreters, each taking its next in turn."""
        results: list[int] = []
        for start in range(0, len(tasks), len(self.procs)):
            batch = list(zip(self.procs, tasks[start : start + len(self.procs)], strict=False))
            for proc, task in batch:
                assert proc.stdin is not None
                proc.stdin.write(f"{task}\n")
                proc.stdin.flush()
            for proc, _ in batch:
                assert proc.stdout is not None
                results.append(int(proc.stdout.readline()))
        return results

    def close(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs:
            proc.wait(timeout=10)


def cpu_bound(cfg: Config, res: Resources) -> list[Case]:
    import parallelkit

    method = cfg.start_method
    ctx = multiprocessing.get_context(method)
    total = calibrate(cfg.cpu_seconds)
    tasks = [total, total]
    expected = [run(total)] * 2
    small = [1000, 1000]
    check = equals(expected)

    def executor(backend: str, workers: int) -> parallelkit.Executor:
        return res.get(
            f"pk-{backend}-{workers}",
            lambda: parallelkit.Executor(backend, workers, start_method=method),
            shutdown,
        )

    def mp_pool(workers: int) -> MpPool:
        return res.get(f"mp-{workers}", lambda: ctx.Pool(workers), close_mp_pool)

    def case(label: str, run_all: Callable[[list[int]], object], **kw: Any) -> Case:
        """A row that runs ``tasks`` (``small`` to warm up) through ``run_all``."""
        return Case(
            label,
            lambda: run_all(tasks),
            len(tasks),
            check=check,
            warmup=lambda: run_all(small),
            **kw,
        )

    def pk_case(backend: str, workers: int, label: str, **kw: Any) -> Case:
        return case(label, lambda xs: list(executor(backend, workers).map(run, xs)), **kw)

    def mp_case(workers: int, label: str, **kw: Any) -> Case:
        return case(label, lambda xs: mp_pool(workers).map(run, xs), **kw)

    def bare_case(count: int, label: str, **kw: Any) -> Case:
        def bare() -> BareInterpreters:
            return res.get(f"bare-{count}", lambda: BareInterpreters(count), BareInterpreters.close)

        return case(label, lambda xs: bare().map(xs), **kw)

    serial = "parallelkit Executor('serial')"
    pk1 = "parallelkit Executor('process', 1)"
    mp1 = "multiprocessing.Pool(1)"
    bare1 = "1 bare interpreter, no pool"
    return [
        bare_case(1, bare1),
        bare_case(2, "2 bare interpreters, no pool: this machine's ceiling", anchor=bare1),
        pk_case("serial", 1, serial),
        pk_case("thread", 2, "parallelkit Executor('thread', 2)", anchor=serial),
        mp_case(1, mp1),
        mp_case(2, "multiprocessing.Pool(2)", anchor=mp1),
        pk_case("process", 1, pk1),
        pk_case("process", 2, "parallelkit Executor('process', 2)", anchor=pk1, target=1.9),
    ]


def sections(cfg: Config) -> list[Section]:
    n = f"{cfg.tiny:,}"
    tiny = TINY_ROUNDS * cfg.repeat
    return [
        Section(
            "process",
            f"Tiny tasks on processes: {n} x (x + 1), {WORKERS} workers, {cfg.start_method}; "
            f"{tiny} rounds",
            tiny_process,
            TINY_ROUNDS,
        ),
        Section(
            "submit",
            f"Submit on processes: {cfg.submits:,} tasks, {WORKERS} workers, {cfg.start_method}",
            submit_process,
        ),
        Section(
            "thread",
            f"Tiny tasks on threads: {n} x (x + 1), {WORKERS} threads; {tiny} rounds",
            tiny_thread,
            TINY_ROUNDS,
        ),
        Section(
            "serial", f"Tiny tasks inline: {n} x (x + 1); {tiny} rounds", tiny_serial, TINY_ROUNDS
        ),
        *(
            Section(
                f"start-{method}",
                f"Start + stop, {method}: {WORKERS} workers, map {len(FIRST)} items, close, join; "
                f"{START_ROUNDS * cfg.repeat} fresh interpreters a row, later pools = median of "
                f"the {cfg.cycles} after the first",
                start_stop(method),
                START_ROUNDS,
            )
            for method in START_METHODS
        ),
        Section(
            "start-thread",
            f"Start + stop, threads: {WORKERS} threads, map {len(FIRST)} items, close, join",
            start_stop_thread,
        ),
        Section(
            "cpu",
            f"CPU-bound: 2 x run(total), run(total) ~ {cfg.cpu_seconds:g} s, {cfg.start_method}; "
            f"{CPU_ROUNDS * cfg.repeat} rounds",
            cpu_bound,
            CPU_ROUNDS,
        ),
    ]


# -- measuring --------------------------------------------------------------------------


def matches(key: str, patterns: Sequence[str]) -> bool:
    key = key.lower()
    for raw in patterns:
        pattern = raw.lower()
        if any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(key, pattern):
            return True
        if pattern in key:
            return True
    return False


def select(section: Section, cases: list[Case], only: Sequence[str]) -> list[Case]:
    """The rows matching ``only`` plus the anchors they are compared with."""
    if not only:
        return cases
    chosen = {c.label for c in cases if matches(f"{section.key}/{c.label}", only)}
    chosen |= {c.anchor for c in cases if c.label in chosen and c.anchor is not None}
    return [c for c in cases if c.label in chosen]


def timed(case: Case) -> float:
    gc.collect()
    start = time.perf_counter()
    result = case.body()
    took = time.perf_counter() - start
    if case.reports_time:
        assert isinstance(result, float)
        return result
    if case.check is not None and not case.check(result):
        raise AssertionError(f"{case.label}: wrong result")
    return took


def measure(section: Section, cases: list[Case], repeat: int) -> None:
    """Warm every row up, then time the rows in ``repeat`` interleaved rounds.

    A row that raises is reported as failed (with the error) and left out of
    the following rounds; the other rows go on.
    """

    def attempt(case: Case, call: Callable[[], object]) -> None:
        try:
            call()
        except Exception as exc:  # shown in the table; the run goes on
            case.missing = f"failed: {type(exc).__name__}: {exc}".replace("|", "/")[:160]
            case.times.clear()
            progress(f"  {case.label}: {case.missing}")

    def record(case: Case) -> None:
        case.times.append(timed(case))

    for case in cases:
        if case.missing is None:
            progress(f"  warm-up  {case.label}")
            attempt(case, case.warmup or functools.partial(timed, case))
    for round_ in range(repeat):
        progress(f"  round {round_ + 1}/{repeat}")
        live = [c for c in cases if c.missing is None]
        shift = round_ % len(live) if live else 0
        for case in live[shift:] + live[:shift]:
            attempt(case, functools.partial(record, case))


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the table --------------------------------------------------------------------------


def seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 0.01:
        return f"{value * 1000:.0f} ms"
    return f"{value * 1000:.1f} ms"


def rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 1e3:
        return f"{value / 1e3:.1f} k"
    return f"{value:.2f}"


@dataclasses.dataclass
class Verdict:
    section: str
    label: str
    anchor: str
    ratio: float | None  # None: the row (or its anchor) failed
    target: float
    rate_row: bool

    @property
    def met(self) -> bool:
        if self.ratio is None:
            return False
        return self.ratio >= self.target if self.rate_row else self.ratio <= self.target

    @property
    def shown_ratio(self) -> str:
        return "failed" if self.ratio is None else fmt_ratio(self.ratio)

    @property
    def wanted(self) -> str:
        return f"{'>=' if self.rate_row else '<='} {self.target:g}x"


def fmt_ratio(value: float) -> str:
    return f"{value:.3f}x" if value < 0.1 else f"{value:.2f}x"


def ratio_of(case: Case, anchor: Case) -> float:
    if case.items:
        return case.rate / anchor.rate
    return case.median / anchor.median


def table(section: Section, cases: list[Case], verdicts: list[Verdict]) -> list[str]:
    by_label = {c.label: c for c in cases}
    lines = [
        f"### {section.title}",
        "",
        "| runner | tasks | median | spread | tasks/s | ratio | vs | target | met |",
        "|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for case in cases:
        if case.missing is not None:
            wanted = met = ""
            if case.target is not None and case.anchor is not None:
                verdict = Verdict(
                    section.key, case.label, case.anchor, None, case.target, bool(case.items)
                )
                verdicts.append(verdict)
                wanted, met = verdict.wanted, "**no**"
            lines.append(f"| {case.label} | | {case.missing} | | | | | {wanted} | {met} |")
            continue
        med = case.median
        spread = (max(case.times) - min(case.times)) / 2 / med if med > 0 else 0.0
        ratio = vs = target = met = ""
        anchor = by_label.get(case.anchor) if case.anchor else None
        if anchor is not None and anchor.missing is None:
            value = ratio_of(case, anchor)
            ratio = fmt_ratio(value)
            vs = anchor.label
            if case.target is not None:
                verdict = Verdict(
                    section.key, case.label, anchor.label, value, case.target, bool(case.items)
                )
                verdicts.append(verdict)
                target = verdict.wanted
                met = "yes" if verdict.met else "**no**"
        elif anchor is not None and case.target is not None:  # the anchor failed
            verdict = Verdict(
                section.key, case.label, anchor.label, None, case.target, bool(case.items)
            )
            verdicts.append(verdict)
            vs, target, met = anchor.label, verdict.wanted, "**no**"
        elif case.anchor is None and any(c.anchor == case.label for c in cases):
            vs = "(anchor)"
        lines.append(
            f"| {case.label} | {f'{case.items:,}' if case.items else ''} | {seconds(med)} "
            f"| ±{spread:.0%} | {rate(case.rate) if case.items else ''} | {ratio} | {vs} "
            f"| {target} | {met} |"
        )
    return [*lines, ""]


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - platforms without getloadavg
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=None, help="timed rounds (default 5)")
    parser.add_argument("--quick", action="store_true", help="small inputs: a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run the rows whose 'section/runner' contains PATTERN (or matches it as a glob); "
        "may be repeated",
    )
    parser.add_argument(
        "--start-method",
        choices=START_METHODS,
        default="forkserver",
        help="start method of the throughput and CPU-bound rows (default: forkserver, "
        "parallelkit's default)",
    )
    args = parser.parse_args(argv)

    if args.quick:
        cfg = Config(args.repeat or 2, 20_000, 2_000, 2_000, 0.1, args.start_method, 2)
    else:
        cfg = Config(args.repeat or 5, 100_000, 5_000, 10_000, 0.5, args.start_method, 9)
    if cfg.repeat < 1:
        parser.error("--repeat must be >= 1")

    compile_parallelkit()
    import parallelkit

    command = " ".join(["python", "benchmarks/bench_executor.py", *(argv or sys.argv[1:])])
    began = time.perf_counter()
    out = [
        "```",
        f"$ {command}",
        f"parallelkit {parallelkit.__version__}, Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs",
        f"joblib {joblib_version() or NOT_INSTALLED}; --repeat {cfg.repeat} (a section's "
        "title gives its rounds); median shown; spread = (max - min) / 2 / median",
        f"load average at start: {load()}",
    ]
    verdicts: list[Verdict] = []
    tables: list[str] = []
    for section in sections(cfg):
        with contextlib.ExitStack() as stack:
            cases = select(section, section.build(cfg, Resources(stack)), args.only)
            if not cases:
                continue
            progress(f"{section.title}")
            measure(section, cases, section.rounds * cfg.repeat)
        tables += table(section, cases, verdicts)
    out += [f"load average at end: {load()}; {time.perf_counter() - began:.0f} s in all", "```", ""]
    out += tables
    if verdicts:
        out += [
            "### Targets",
            "",
            "| section | runner | ratio | target | met |",
            "|---|---|---:|---|---|",
        ]
        out += [
            f"| {v.section} | {v.label} (vs {v.anchor}) | {v.shown_ratio} | {v.wanted} "
            f"| {'yes' if v.met else '**no**'} |"
            for v in verdicts
        ]
        met = sum(v.met for v in verdicts)
        out += ["", f"{met} of {len(verdicts)} targets met."]
    print("\n".join(out))
    leftovers = multiprocessing.active_children()
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if leftovers or threads:
        progress(f"warning: still running at exit: {leftovers} {threads}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
