"""imap reads its input lazily: memory stays flat over a 10-million-item generator."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest

from parallelkit import Executor, Pool

from .helpers import add, inc

ITEMS = 10_000_000
LIMIT_MB = 50


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")  # pragma: no cover


def numbers() -> Iterator[int]:
    yield from range(ITEMS)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_executor_imap_over_ten_million_items_runs_in_flat_memory() -> None:
    with Executor("process", 2) as ex:
        results = ex.imap(inc, numbers())
        total = 0
        baseline = 0.0
        peak = 0.0
        for i, value in enumerate(results):
            total += value
            if i == 200_000:
                baseline = rss_mb()
            elif i % 500_000 == 0 and i > 200_000:
                peak = max(peak, rss_mb())
    assert total == ITEMS * (ITEMS + 1) // 2
    assert peak - baseline < LIMIT_MB, f"RSS grew by {peak - baseline:.1f} MB"


@pytest.mark.timeout(120)
def test_pool_imap_unordered_does_not_read_ahead_of_its_window() -> None:
    read = 0

    def source() -> Iterator[int]:
        nonlocal read
        for i in range(ITEMS):
            read += 1
            yield i

    with Pool(2, backend="thread") as pool:
        it = pool.imap_unordered(inc, source())
        for _ in range(1000):
            next(it)
        assert read < 200_000  # far below the 10 million that Pool.imap would read first
        it.close()


def _garbage_after(call: Callable[[], object]) -> list[str]:
    """Names of parallelkit's own objects that ``call`` left in reference cycles."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        call()
        gc.collect()
        return sorted(
            {
                type(obj).__qualname__
                for obj in gc.garbage
                if type(obj).__module__.startswith("parallelkit")
            }
        )
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
        gc.enable()


def test_results_are_freed_without_the_garbage_collector(backend: str) -> None:
    # A cycle through a map's chunks kept every result list alive until the
    # collector's next pass, which then had to walk all of them (it cost a
    # process Pool.map of 100,000 items about 2 ms on average).
    with Pool(2, backend=backend) as pool, Executor(backend, 2) as ex:
        pool.map(inc, range(10))  # start-up objects are not the calls' garbage
        calls: dict[str, Callable[[], object]] = {
            "Pool.map": lambda: pool.map(inc, range(1000)),
            "Pool.starmap": lambda: pool.starmap(add, [(1, 2)] * 100),
            "Pool.map_async": lambda: pool.map_async(inc, range(100)).get(20),
            "Pool.imap": lambda: list(pool.imap(inc, range(1000))),
            "Pool.apply_async": lambda: pool.apply_async(inc, (1,)).get(20),
            "Executor.map": lambda: list(ex.map(inc, range(1000))),
            "Executor.submit": lambda: ex.submit(inc, 1).result(20),
        }
        for name, call in calls.items():
            assert _garbage_after(call) == [], name
