"""The dask backend against the ways of using dask.distributed directly (issue 16).

Run: ``.venv/bin/python benchmarks/bench_dask.py`` (joblib is used when installed).
Everything runs on one loopback cluster of 2 workers with one thread each, in
the same run, so the ratios compare like with like.
"""

from __future__ import annotations

import itertools
import logging
import resource
import statistics
import time
from typing import Any

import distributed

import parallelkit

N = 100_000
PER_ITEM_N = 2_000


def inc(x: int) -> int:
    return x + 1


class Wrapped:
    """A chunk wrapped in an object, as a careful dask user would send it."""

    def __init__(self, items: list[int]) -> None:
        self.items = items


def run_wrapped(chunk: Wrapped) -> list[int]:
    return [inc(x) for x in chunk.items]


def current_rss_mb() -> float:
    """This process's resident memory now (Linux: /proc/self/statm), in MB."""
    with open("/proc/self/statm", encoding="ascii") as file:
        pages = int(file.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def timed(fn: Any, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def cluster() -> Any:
    dask: Any = distributed
    return dask.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        silence_logs=logging.ERROR,
    )


def main() -> None:
    dask: Any = distributed
    lc = cluster()
    client = dask.Client(lc, set_as_default=False)
    address = lc.scheduler_address
    with parallelkit.Executor("dask", address=address) as ex:
        ours = timed(lambda: sum(ex.map(inc, range(N))))

        def hand_batched() -> None:
            chunks = [Wrapped(list(range(i, min(i + 1000, N)))) for i in range(0, N, 1000)]
            futures = client.map(run_wrapped, chunks, pure=False)
            sum(sum(r) for r in client.gather(futures))

        batched = timed(hand_batched)
        per_item = timed(
            lambda: client.gather(client.map(inc, range(PER_ITEM_N), pure=False)), 1
        ) * (N / PER_ITEM_N)
        print(f"100k tiny tasks: Executor('dask').map {ours * 1e3:.0f} ms")
        print(
            f"  hand-batched client.map, wrapped chunks of 1,000: {batched * 1e3:.0f} ms"
            f" -> ours {batched / ours:.2f}x"
        )
        print(
            f"  per-item client.map (from {PER_ITEM_N:,} items): {per_item * 1e3:.0f} ms"
            f" -> ours {per_item / ours:.0f}x"
        )
        try:
            import joblib

            def with_joblib() -> None:
                with joblib.parallel_config(backend="dask", client=client):  # type: ignore[no-untyped-call]
                    joblib.Parallel()(joblib.delayed(inc)(i) for i in range(N))

            jl = timed(with_joblib, 1)
            print(f"  joblib's dask backend: {jl * 1e3:.0f} ms -> ours {jl / ours:.0f}x")
        except ImportError:
            print("  joblib's dask backend: joblib not installed, skipped")

        lat_ours = [timed(lambda: ex.submit(inc, 1).result(), 1) for _ in range(200)]
        lat_raw = [timed(lambda: client.submit(inc, 1, pure=False).result(), 1) for _ in range(200)]
        mo, mr = statistics.median(lat_ours), statistics.median(lat_raw)
        print(
            f"submit latency (median of 200): ours {mo * 1e3:.2f} ms, raw "
            f"client.submit().result() {mr * 1e3:.2f} ms -> {mo / mr:.2f}x of raw"
        )

        backend: Any = ex._engine.backend  # pyright: ignore[reportPrivateUsage]
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_pending = 0
        samples: list[float] = []  # the caller's RSS (MB) after each million items
        start = time.perf_counter()
        total = 0
        for i, value in enumerate(ex.map(inc, itertools.count())):
            total += value
            if i % 10_000 == 0:
                peak_pending = max(peak_pending, len(backend._chunks))
            if i % 1_000_000 == 999_999:
                samples.append(current_rss_mb())
            if i == 10_000_000 - 1:
                break
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(
            f"imap over a 10,000,000-item generator: {time.perf_counter() - start:.1f} s, "
            f"peak pending futures {peak_pending} (window {backend.window}), "
            f"peak RSS {rss0 / 1024:.0f} -> {rss1 / 1024:.0f} MB"
        )
        print(
            "  RSS after each million items (MB): "
            + " ".join(f"{mb:.0f}" for mb in samples)
            + f"; growth from the 2nd to the 10th: {samples[-1] - samples[1]:+.1f} MB"
        )
    client.close()
    lc.close()

    def ours_start_stop() -> None:
        with parallelkit.Executor("dask", 2) as e:
            e.submit(inc, 1).result()

    def raw_start_stop() -> None:
        c = cluster()
        cl = dask.Client(c, set_as_default=False)
        cl.submit(inc, 1).result()
        cl.close()
        c.close()

    a, b = timed(ours_start_stop, 2), timed(raw_start_stop, 2)
    print(
        f"start + first task + stop: Executor('dask', 2) {a:.2f} s, LocalCluster + "
        f"Client {b:.2f} s -> {a / b:.2f}x"
    )


if __name__ == "__main__":
    main()
