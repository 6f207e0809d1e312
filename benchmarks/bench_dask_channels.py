"""parallelkit's channels on the dask backend beside distributed's own primitives.

Usage::

    python benchmarks/bench_dask_channels.py            # 300 operations per row, 5 repeats
    python benchmarks/bench_dask_channels.py --ops 100 --repeat 3

It starts a loopback cluster (a scheduler and one worker process, on
127.0.0.1) and times, from this process, the same operation made through
parallelkit's channel and through the distributed primitive it is built on,
alternating, ``--repeat`` times; the table shows the median time of one
operation and their ratio (parallelkit over distributed; 1.0 is no overhead).
Every operation is a round trip to the scheduler, so absolute figures are the
machine's network stack and the scheduler's event loop; the ratios are what
count.

Rows:

- Event.is_set: one round trip (the anchor of the anchors);
- Queue put + get: an item there and back (parallelkit pickles it into bytes);
- Lock acquire + release;
- Value.add(1): under its lock, the value loaded from and stored to a
  Variable (4 round trips), against the same by hand with distributed.Lock
  and distributed.Variable.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import distributed

import parallelkit


def per_op(fn: Callable[[], object], ops: int) -> float:
    """Seconds per call of ``fn``, over ``ops`` calls."""
    start = time.perf_counter()
    for _ in range(ops):
        fn()
    return (time.perf_counter() - start) / ops


def rows(client: Any, address: str) -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    """(name, parallelkit's operation, distributed's operation) for each row."""
    with parallelkit.config(backend="dask", address=address):
        ev, q, lock, value = (
            parallelkit.Event(),
            parallelkit.Queue[int](),
            parallelkit.Lock(),
            (parallelkit.Value("i", 0)),
        )
    d_ev = distributed.Event("bench-ev", client=client)
    d_q = distributed.Queue("bench-q", client=client)
    d_lock = distributed.Lock("bench-lock", scheduler_rpc=client.scheduler, loop=client.loop)
    d_var = distributed.Variable("bench-var", client=client)
    d_var.set(0)
    d_var_lock = distributed.Lock(
        "bench-var-lock", scheduler_rpc=client.scheduler, loop=client.loop
    )

    def q_roundtrip() -> None:
        q.put(1)
        q.get()

    def d_q_roundtrip() -> None:
        d_q.put(1)
        d_q.get()

    def lock_roundtrip() -> None:
        lock.acquire()
        lock.release()

    def d_lock_roundtrip() -> None:
        d_lock.acquire()
        d_lock.release()

    def d_add() -> None:
        with d_var_lock:
            d_var.set(d_var.get() + 1)

    return [
        ("Event.is_set", ev.is_set, d_ev.is_set),
        ("Queue put + get", q_roundtrip, d_q_roundtrip),
        ("Lock acquire + release", lock_roundtrip, d_lock_roundtrip),
        ("Value.add(1)", lambda: value.add(1), d_add),
    ]


def main() -> None:
    """Run the rows and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ops", type=int, default=300, help="operations per timing")
    parser.add_argument("--repeat", type=int, default=5, help="timings per row and side")
    args = parser.parse_args()
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        print(f"{'operation':<24} {'parallelkit':>12} {'distributed':>12} {'ratio':>6}")
        table = rows(client, cluster.scheduler_address)
        for name, ours, theirs in table:
            per_op(ours, 20)  # warm-up
            per_op(theirs, 20)
            a, b = [], []
            for _ in range(args.repeat):
                a.append(per_op(ours, args.ops))
                b.append(per_op(theirs, args.ops))
            pa, pb = statistics.median(a), statistics.median(b)
            print(f"{name:<24} {pa * 1e3:>9.3f} ms {pb * 1e3:>9.3f} ms {pa / pb:>6.2f}")
        del table, ours, theirs  # the channels let go of the cluster before it stops
        gc.collect()


if __name__ == "__main__":
    main()
