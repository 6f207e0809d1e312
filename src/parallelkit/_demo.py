"""``python -m parallelkit demo``: the point of the library in a few seconds.

1. The seed tutorial's CPU-bound job (sum a range in a Python loop), sized to
   about one second, run twice under each backend by changing only the flag,
   with the wall time of each: threads share the GIL, processes do not; with
   dask installed, on a loopback cluster of its own too (its start timed apart).
2. A map with a lambda on the process backend, which ``multiprocessing.Pool``
   refuses.
"""

from __future__ import annotations

import multiprocessing
import pickle
import time
from collections.abc import Callable

from ._backends._registry import available_backends, missing_requirement
from ._config import default_workers
from ._executor import Executor

__all__ = ("main",)


def run(total: int) -> int:
    """The seed's job: sum ``range(total)`` in a Python loop."""
    acc = 0
    for i in range(total):
        acc += i
    return acc


def _calibrate(seconds: float) -> int:
    """Return a ``total`` for which :func:`run` takes about ``seconds``."""
    n = 200_000
    while True:
        start = time.perf_counter()
        run(n)
        took = time.perf_counter() - start
        if took > 0.05:
            return int(n * seconds / took)
        n *= 4


def main(write: Callable[[str], object] = print) -> None:
    """Run the demo, writing lines with ``write``."""
    workers = 2
    total = _calibrate(1.0)
    write(f"parallelkit demo: {workers} workers, this process may use {default_workers()} CPUs")
    write(f"The seed's CPU-bound job: sum(range({total:_})) in a Python loop (~1 s), twice.")
    write("Only the backend flag changes between the runs:\n")
    timings: dict[str, float] = {}
    expected = total * (total - 1) // 2
    for backend in ("serial", "thread", "process", "dask"):
        if backend not in available_backends():
            write(
                f"  Executor(backend={backend!r:<10}) not installed: {missing_requirement(backend)}"
            )
            continue
        start = time.perf_counter()
        with Executor(backend, workers) as ex:
            ready = time.perf_counter()
            results = list(ex.map(run, [total, total]))
            timings[backend] = time.perf_counter() - ready
        assert results == [expected, expected]
        note = (
            f"  (+ {ready - start:.2f} s to start a loopback cluster of {workers} workers)"
            if backend == "dask"
            else ""
        )
        write(f"  Executor(backend={backend!r:<10}) {timings[backend]:6.2f} s{note}")
    write(
        f"\n  threads vs serial: {timings['serial'] / timings['thread']:.2f}x "
        "(the GIL lets one thread run Python at a time)"
    )
    write(
        f"  processes vs serial: {timings['serial'] / timings['process']:.2f}x "
        f"(up to {workers}x on {workers} idle cores)\n"
    )

    write("A lambda on the process backend:")
    try:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            pool.map(lambda x: x * x, range(3))
        write("  multiprocessing.Pool: accepted it")
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        write(f"  multiprocessing.Pool.map(lambda x: x * x, ...) -> {type(exc).__name__}: {exc}")
    with Executor("process", workers) as ex:
        squares = list(ex.imap(lambda x: x * x, range(10)))
    write(f"  parallelkit Executor('process').map(lambda x: x * x, range(10)) -> {squares}")
