"""imap reads its input lazily: memory stays flat over a 10-million-item generator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from parallelkit import Executor, Pool

from .helpers import inc

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
