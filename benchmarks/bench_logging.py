"""What forwarding a worker's log records costs, and what the default costs a task.

Usage::

    python benchmarks/bench_logging.py [--runs 9] [--records 20000]

On a forkserver process executor of 1 worker, one task logs ``--records``
records at WARNING and reports how long its logging calls took, per record:
forwarded to the parent (which keeps them in a handler that only counts),
and with the parent's logger at ERROR (the worker takes the parent's levels,
so it drops them: the price of a record nobody wants). The anchor, in the
same run, is the same loop in this process to a ``NullHandler``. Then a
10,000-item map of tiny tasks that log nothing, with ``forward_logging`` on
and off: what the default costs work that does not log. Medians of
``--runs`` runs, taken in turn so the machine's load falls on each alike.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import parallelkit

LOGGER = "bench.worker"


def log_many(count: int) -> float:
    """Log ``count`` WARNING records; return the seconds the logging calls took."""
    log = logging.getLogger(LOGGER)
    start = time.perf_counter()
    for i in range(count):
        log.warning("record %d of the benchmark", i)
    return time.perf_counter() - start


def inc(x: int) -> int:
    return x + 1


class Counter(logging.Handler):
    """A handler that only counts what reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def per_record(forward: bool, records: int) -> float:
    """Microseconds per logging call in a worker, forwarding on or off."""
    with (
        parallelkit.config(forward_logging=forward),
        parallelkit.Executor("process", 1, start_method="forkserver") as ex,
    ):
        seconds = ex.submit(log_many, records).result()
    return seconds / records * 1e6


def map_seconds(forward: bool) -> float:
    """Seconds for a 10,000-item map of tasks that log nothing (start and stop included)."""
    start = time.perf_counter()
    with (
        parallelkit.config(forward_logging=forward),
        parallelkit.Executor("process", 2, start_method="forkserver") as ex,
    ):
        assert sum(ex.map(inc, range(10_000))) == 50_005_000
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()

    counter = Counter()
    target = logging.getLogger(LOGGER)
    target.addHandler(counter)
    target.propagate = False

    on: list[float] = []
    off: list[float] = []
    local: list[float] = []
    map_on: list[float] = []
    map_off: list[float] = []
    for run in range(args.runs):
        target.setLevel(logging.WARNING)
        counter.count = 0
        on.append(per_record(True, args.records))
        assert counter.count == args.records, counter.count
        target.setLevel(logging.ERROR)  # the worker takes the parent's levels: records dropped
        off.append(per_record(True, args.records))
        target.setLevel(logging.WARNING)
        null = logging.getLogger(LOGGER)
        null.removeHandler(counter)
        null.addHandler(logging.NullHandler())
        local.append(log_many(args.records) / args.records * 1e6)
        null.handlers.clear()
        null.addHandler(counter)
        first, second = (True, False) if run % 2 == 0 else (False, True)
        timings = {first: map_seconds(first), second: map_seconds(second)}
        map_on.append(timings[True])
        map_off.append(timings[False])

    med = statistics.median
    print(f"{args.records:,} WARNING records logged in a forkserver worker, median of {args.runs}:")
    print(f"  forwarded to the parent's handler: {med(on):6.1f} us per record")
    print(f"  below the worker's level (dropped): {med(off):6.1f} us per record")
    print(f"  anchor, this process to a NullHandler: {med(local):6.1f} us per record")
    print(f"  forwarded / anchor: {med(on) / med(local):.1f}x")
    print("10,000 tiny tasks that log nothing, start + map + stop:")
    print(f"  forward_logging on {med(map_on) * 1e3:.0f} ms, off {med(map_off) * 1e3:.0f} ms")
    print(f"  on / off: {med(map_on) / med(map_off):.3f}")


if __name__ == "__main__":
    main()
