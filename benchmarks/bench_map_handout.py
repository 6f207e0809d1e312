"""``list(Executor.map)`` of tiny tasks with two copies of parallelkit, side by side.

Usage::

    python benchmarks/bench_map_handout.py BEFORE AFTER [--rounds 9] [--runs 15]

``BEFORE`` and ``AFTER`` are directories that each hold a ``parallelkit``
package (``src`` for the working tree). Each round starts one interpreter per
copy, alternately, with the copy first on ``sys.path``; it starts an executor
per backend (2 workers; ``fork`` for processes), warms it up, and times
``--runs`` rounds of ``list(ex.map(inc, range(100_000)))``, keeping the
median. The table shows, per backend, the median of the rounds' medians and
the ratio AFTER / BEFORE in time (below 1: AFTER is faster). Interleaving the
two copies spreads the machine's load over both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ITEMS = 100_000
BACKENDS = ("process", "thread", "serial")


def inc(x: int) -> int:
    return x + 1


def child(runs: int) -> None:
    """Time the maps with the parallelkit first on ``sys.path``; print JSON medians."""
    import parallelkit

    data = range(ITEMS)
    expected = [x + 1 for x in data]
    medians: dict[str, float] = {}
    for backend in BACKENDS:
        method = "fork" if backend == "process" else None
        with parallelkit.Executor(backend, 2, start_method=method) as ex:
            assert list(ex.map(inc, data)) == expected  # warm-up, and the answer is right
            times: list[float] = []
            for _ in range(runs):
                start = time.perf_counter()
                list(ex.map(inc, data))
                times.append(time.perf_counter() - start)
            medians[backend] = statistics.median(times)
    print(json.dumps({"file": parallelkit.__file__, "medians": medians}))


def main() -> None:
    parser = argparse.ArgumentParser(description="list(Executor.map), two copies")
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.runs)
        return
    copies = {"before": args.before.resolve(), "after": args.after.resolve()}
    figures: dict[str, dict[str, list[float]]] = {
        name: {b: [] for b in BACKENDS} for name in copies
    }
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {ITEMS:,} items, 2 workers")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for round_ in range(args.rounds):
        order = list(copies.items())
        if round_ % 2:
            order.reverse()
        for name, path in order:
            env = dict(os.environ, PYTHONPATH=str(path))
            out = subprocess.run(
                [sys.executable, __file__, "x", "x", "--child", "--runs", str(args.runs)],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            report = json.loads(out.strip().splitlines()[-1])
            assert report["file"].startswith(str(path)), report["file"]
            for backend, value in report["medians"].items():
                figures[name][backend].append(value)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print("| list(Executor.map), backend | before | after | after / before |")
    print("|---|---:|---:|---:|")
    for backend in BACKENDS:
        before = statistics.median(figures["before"][backend])
        after = statistics.median(figures["after"][backend])
        label = "process (fork)" if backend == "process" else backend
        print(f"| {label} | {before * 1e3:.1f} ms | {after * 1e3:.1f} ms | {after / before:.2f} |")


if __name__ == "__main__":
    main()
