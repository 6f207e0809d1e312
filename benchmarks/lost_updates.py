"""How many increments ``v.value += 1`` loses when two processes count at once, vs ``v.add(1)``.

Usage::

    python benchmarks/lost_updates.py             # 2 processes x 100,000 increments, 5 runs
    python benchmarks/lost_updates.py --quick     # 2 x 10,000, 3 runs
    python benchmarks/lost_updates.py --count 1000000 --repeat 3 --start-method fork

Each run starts two child processes (``--start-method``, forkserver by
default) on one shared ``Value("i", 0)``; once both are ready, each does
``--count`` increments, and the parent compares the final value with the
``2 * count`` it should be. ``v.value += 1`` is a read under the lock and
then a write under the lock: an increment made by the other process in
between is overwritten. ``v.add(1)`` holds the lock for both, as ``with
v.get_lock(): v.value += 1`` does. ``multiprocessing.Value`` is measured
too, for reference: it behaves like parallelkit's ``v.value += 1``.

The table shows, per way of counting, the median over ``--repeat`` runs of
the fraction of increments lost. The figure moves with the machine and its
load (more cores, more overlap, more loss); that it is not zero is what counts.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import statistics
import sys
from typing import Any, cast

import parallelkit


def count_by_assignment(v: Any, ready: Any, go: Any, count: int) -> None:
    ready.release()
    go.wait()
    for _ in range(count):
        v.value += 1


def count_by_add(v: parallelkit.Value[int], ready: Any, go: Any, count: int) -> None:
    ready.release()
    go.wait()
    for _ in range(count):
        v.add(1)


def lost_fraction(context: Any, make: Any, work: Any, count: int) -> float:
    """Run two counting children once; return the fraction of increments lost."""
    v = make()
    ready = context.Semaphore(0)
    go = context.Event()
    children = [context.Process(target=work, args=(v, ready, go, count)) for _ in range(2)]
    for child in children:
        child.start()
    for _ in children:
        ready.acquire()
    go.set()
    for child in children:
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"a counting process failed with exit code {child.exitcode}")
    expected = 2 * count
    final: int = v.value
    return (expected - final) / expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 x 10,000 increments, 3 runs")
    parser.add_argument("--count", type=int, default=None, help="increments per process")
    parser.add_argument("--repeat", type=int, default=None, help="runs per way of counting")
    parser.add_argument("--start-method", default="forkserver", help="of the child processes")
    args = parser.parse_args(argv)
    count = args.count or (10_000 if args.quick else 100_000)
    repeat = args.repeat or (3 if args.quick else 5)
    # typeshed's BaseContext lacks Process; every concrete context has it.
    context = cast("Any", multiprocessing.get_context(args.start_method))

    ways = [
        (
            "parallelkit  v.value += 1",
            lambda: parallelkit.Value("i", 0, backend="process"),
            count_by_assignment,
        ),
        (
            "parallelkit  v.add(1)",
            lambda: parallelkit.Value("i", 0, backend="process"),
            count_by_add,
        ),
        (
            "multiprocessing  v.value += 1",
            lambda: context.Value("i", 0),
            count_by_assignment,
        ),
    ]
    print(
        f"# Python {platform.python_version()} on {platform.system()}, "
        f"{multiprocessing.cpu_count()} CPUs; 2 processes x {count:,} increments; "
        f"start method {args.start_method}; median of {repeat} runs"
    )
    print(f"{'way of counting':<32} {'lost (median)':>14} {'lost (min - max)':>20}")
    for name, make, work in ways:
        runs = [lost_fraction(context, make, work, count) for _ in range(repeat)]
        spread = f"{min(runs):.1%} - {max(runs):.1%}"
        print(f"{name:<32} {statistics.median(runs):>14.1%} {spread:>20}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
