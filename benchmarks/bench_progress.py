"""What ``progress=`` costs: a 100,000-item map of tiny tasks with and without it.

Usage::

    python benchmarks/bench_progress.py [--runs 21] [--backend process]

On one executor per backend (2 workers; ``forkserver`` for processes) it
times ``list(ex.map(inc, range(100_000)))`` and ``pool.map`` alike, without
progress, with a progress callable, and with a tqdm bar (written to
``os.devnull``; skipped without tqdm), in turn within each run (each
going first in turn) so that the machine's load falls on all three alike;
it prints the median of each and
the ratio to the run without progress (the target: under 1.02). Progress is
counted once per finished chunk, so its cost does not grow with the number
of items.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import parallelkit

ITEMS = 100_000


def inc(x: int) -> int:
    return x + 1


def nothing(done: int, total: int | None) -> None:
    """A progress callable that does nothing: what is measured is parallelkit's part."""


def main() -> None:
    parser = argparse.ArgumentParser(description="the cost of progress= on a map of tiny tasks")
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--backend", action="append", choices=("process", "thread", "serial"))
    args = parser.parse_args()
    backends: list[str] = args.backend or ["process", "thread", "serial"]
    data = range(ITEMS)
    expected = [x + 1 for x in data]
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        variants: dict[str, Any] = {"none": False, "callable": nothing}
        if importlib.util.find_spec("tqdm") is not None:
            variants["tqdm"] = {"file": devnull}
        print(f"{ITEMS:_} x inc(x), 2 workers, median of {args.runs} runs; ratio to no progress")
        print(f"{'backend':<8} {'face':<13} " + " ".join(f"{v:>18}" for v in variants))
        for backend in backends:
            method = "forkserver" if backend == "process" else None
            with (
                parallelkit.Executor(backend, 2, start_method=method) as ex,
                parallelkit.Pool(2, backend=backend, start_method=method) as pool,
            ):
                faces: dict[str, Callable[[Any], list[int]]] = {
                    "Executor.map": lambda p: list(ex.map(inc, data, progress=p)),
                    "Pool.map": lambda p: pool.map(inc, data, progress=p),
                }
                for face, run in faces.items():
                    for progress in variants.values():
                        assert run(progress) == expected  # warm-up, and the answer is right
                    times: dict[str, list[float]] = {name: [] for name in variants}
                    order = list(variants.items())
                    for _ in range(args.runs):
                        order.append(order.pop(0))  # each goes first in turn
                        for name, progress in order:
                            start = time.perf_counter()
                            run(progress)
                            times[name].append(time.perf_counter() - start)
                    base = statistics.median(times["none"])
                    cells = []
                    for name in variants:
                        median = statistics.median(times[name])
                        cells.append(f"{median * 1000:8.1f} ms {median / base:6.3f}x")
                    print(f"{backend:<8} {face:<13} " + " ".join(f"{c:>18}" for c in cells))


if __name__ == "__main__":
    main()
