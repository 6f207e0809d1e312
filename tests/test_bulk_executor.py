"""Big buffers to and from workers: the same results on every backend, shared memory on processes.

On the process backend, a buffer of ``shared_threshold`` bytes or more (a
numpy array, bytes, bytearray, memoryview) crosses through a shared-memory
segment; these tests check the values, the copies the caller gets, the
per-executor cache of read-only arguments, and that no segment outlives its
use, a worker's death or the executor.
"""

from __future__ import annotations

import functools
import gc
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import pytest

from parallelkit import Executor, Pool, WorkerCrashedError, config
from parallelkit._backends._process import Backend as ProcessBackend

from .helpers import START_METHODS

np = pytest.importorskip("numpy")

MB = 1 << 20


def _prefix(ex: Executor | Pool) -> str:
    backend = ex._engine.backend  # pyright: ignore[reportPrivateUsage]
    assert isinstance(backend, ProcessBackend)
    return backend._prefix  # pyright: ignore[reportPrivateUsage]


def _segments(prefix: str) -> list[str]:
    return sorted(name for name in os.listdir("/dev/shm") if name.startswith(prefix))


def _eventually_no_segments(prefix: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        gc.collect()
        left = _segments(prefix)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not left, f"segments left in /dev/shm: {left}"


def total(array: Any) -> float:
    return float(array.sum())


def identity(x: object) -> object:
    return x


def first_byte(big: Any, i: int) -> int:
    return int(big[i % len(big)])


def make_array(n: int, value: int) -> Any:
    return np.full(n, value, dtype=np.int64)


def is_writeable(array: Any) -> bool:
    return bool(array.flags.writeable)


def kill_self_holding(array: Any) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return int(array[0])  # pragma: no cover - never reached


def die_while_writing_a_result(_: object) -> None:
    """Make a result segment, as a worker does, then die before it is sent."""
    from parallelkit import _worker

    outbox = _worker._results_outbox  # pyright: ignore[reportPrivateUsage]
    assert outbox is not None
    outbox.place(4 * MB)
    os.kill(os.getpid(), signal.SIGKILL)


def arrays(count: int = 8, size: int = MB) -> list[Any]:
    return [np.full(size, i, dtype=np.float64) for i in range(count)]


# -- the same values on every backend ------------------------------------------------------


def test_map_of_big_arrays_gives_the_same_sums_on_every_backend(backend: str) -> None:
    data = arrays()
    with Executor(backend, 2) as ex:
        assert list(ex.map(total, data)) == [float(a.sum()) for a in data]


def test_big_arrays_come_back_equal_and_writable_on_every_backend(backend: str) -> None:
    data = arrays(4)
    with Executor(backend, 2) as ex:
        back = list(ex.map(identity, data))
        writable = list(ex.map(is_writeable, data))
    for sent, got in zip(data, back, strict=True):
        assert np.array_equal(sent, got)
    assert all(writable)
    back[0][:] = -1  # type: ignore[index]  # the caller's copy is its own
    assert np.array_equal(back[1], data[1])


@pytest.mark.parametrize(
    "value",
    [b"b" * (3 * MB), bytearray(b"a" * (3 * MB)), memoryview(b"m" * (3 * MB)).cast("B")],
    ids=["bytes", "bytearray", "memoryview"],
)
def test_big_bytes_like_arguments_and_results_keep_their_type(value: object) -> None:
    with Executor("process", 1) as ex:
        got = ex.submit(identity, value).result(30)
        if isinstance(value, memoryview):
            assert isinstance(got, memoryview)
            assert got.tobytes() == value.tobytes()
        else:
            assert type(got) is type(value)
            assert got == value


def test_pool_map_and_apply_carry_big_arrays() -> None:
    data = arrays(4)
    with Pool(2) as pool:
        assert pool.map(total, data) == [float(a.sum()) for a in data]
        back = pool.apply(identity, (data[3],))
    assert np.array_equal(back, data[3])


@pytest.mark.parametrize("method", START_METHODS)
def test_big_arrays_cross_under_every_start_method(method: str) -> None:
    data = arrays(4, 2 * MB)
    with Executor("process", 2, start_method=method) as ex:
        prefix = _prefix(ex)
        assert list(ex.map(total, data)) == [float(a.sum()) for a in data]
        back = ex.submit(make_array, 2 * MB, 7).result(30)
        lam = functools.partial(first_byte, data[2])
        assert list(ex.map(lam, range(3))) == [2, 2, 2]
    assert int(back.sum()) == 7 * 2 * MB
    del back
    _eventually_no_segments(prefix)


def test_initializer_arguments_cross_through_shared_memory() -> None:
    big = np.arange(MB, dtype=np.int64)
    with Executor("process", 2, initializer=_remember, initargs=(big,)) as ex:
        assert set(ex.map(_remembered_sum, range(4))) == {int(big.sum())}


_kept: list[Any] = []


def _remember(array: Any) -> None:
    _kept.append(array)


def _remembered_sum(_: int) -> int:
    return int(_kept[0].sum())


# -- shared memory is used, and only above the threshold -------------------------------------


def _placed_segments(ex: Executor, fn: Callable[..., Any], *args: Any) -> int:
    """How many segments the executor had while the task ran (seen from inside the task)."""
    prefix = _prefix(ex)
    return int(ex.submit(fn, prefix, *args).result(30))


def count_segments(prefix: str, *_: object) -> int:
    return len([n for n in os.listdir("/dev/shm") if n.startswith(prefix)])


def test_a_big_argument_travels_in_a_segment_and_a_small_one_does_not() -> None:
    with Executor("process", 1) as ex:
        assert _placed_segments(ex, count_segments, np.zeros(1024)) == 0
        # The worker unlinks a task's segment as it maps it: what it sees is the
        # cached read-only array's segment only.
        frozen = np.zeros(MB)
        frozen.setflags(write=False)
        assert _placed_segments(ex, count_segments, frozen) == 1


def test_shared_threshold_none_sends_everything_through_the_pipe() -> None:
    frozen = np.zeros(MB)
    frozen.setflags(write=False)
    with config(shared_threshold=None), Executor("process", 1) as ex:
        assert _placed_segments(ex, count_segments, frozen) == 0
        assert ex.submit(total, np.ones(MB)).result(30) == MB


# -- the cache of read-only arguments ------------------------------------------------------------


def test_a_read_only_argument_is_placed_once_for_many_maps() -> None:
    big = np.arange(8 * MB, dtype=np.uint8)
    big.setflags(write=False)
    with Executor("process", 2) as ex:
        prefix = _prefix(ex)
        seen: set[str] = set()
        for _ in range(3):
            assert sum(ex.map(functools.partial(first_byte, big), range(100))) == sum(range(100))
            seen |= set(_segments(prefix))
        assert len(seen) == 1, seen
    _eventually_no_segments(prefix)


def test_a_writable_argument_changed_between_maps_is_sent_again() -> None:
    big = np.zeros(MB, dtype=np.int64)
    with Executor("process", 2) as ex:
        assert set(ex.map(functools.partial(first_byte, big), range(4))) == {0}
        big[:] = 5
        assert set(ex.map(functools.partial(first_byte, big), range(4))) == {5}


def test_a_collected_read_only_argument_leaves_the_cache() -> None:
    with Executor("process", 1) as ex:
        prefix = _prefix(ex)
        big = np.ones(2 * MB, dtype=np.uint8)
        big.setflags(write=False)
        assert ex.submit(total, big).result(30) == 2 * MB
        assert len(_segments(prefix)) == 1
        del big
        _eventually_no_segments(prefix)


# -- nothing is left behind ----------------------------------------------------------------------


def test_results_segments_go_when_the_caller_drops_them() -> None:
    with Executor("process", 2) as ex:
        prefix = _prefix(ex)
        results = list(ex.map(make_array, [MB] * 6, range(6)))
        # Each was unlinked as it was read: only the caller's mappings hold the memory.
        assert _segments(prefix) == []
        assert [int(r[0]) for r in results] == list(range(6))


def test_a_worker_killed_holding_a_mapped_task_leaves_no_segment() -> None:
    with Executor("process", 1) as ex:
        prefix = _prefix(ex)
        with pytest.raises(WorkerCrashedError):
            ex.submit(kill_self_holding, np.ones(2 * MB)).result(30)
        assert ex.submit(total, np.ones(2 * MB)).result(30) == 2 * MB
        _eventually_no_segments(prefix)


def test_a_worker_killed_while_writing_a_result_leaves_no_segment() -> None:
    with Executor("process", 1) as ex:
        prefix = _prefix(ex)
        with pytest.raises(WorkerCrashedError):
            ex.submit(die_while_writing_a_result, None).result(30)
        _eventually_no_segments(prefix)
        assert ex.submit(total, np.ones(MB)).result(30) == MB


def test_a_result_stays_readable_after_the_worker_that_made_it_is_killed() -> None:
    with Executor("process", 1) as ex:
        prefix = _prefix(ex)
        result = ex.submit(make_array, 2 * MB, 3).result(30)
        with pytest.raises(WorkerCrashedError):
            ex.submit(kill_self_holding, np.ones(2 * MB)).result(30)
        assert int(result.sum()) == 3 * 2 * MB
        _eventually_no_segments(prefix)


@pytest.mark.parametrize("method", START_METHODS)
def test_a_program_that_never_shuts_its_executor_down_leaves_no_segment(
    method: str, tmp_path: Any
) -> None:
    program = textwrap.dedent(
        f"""
        import numpy as np
        import parallelkit

        def make(n):
            return np.ones(n)

        if __name__ == "__main__":
            ex = parallelkit.Executor("process", 2, start_method={method!r})
            frozen = np.ones(1 << 20)
            frozen.setflags(write=False)
            made = sum(a.sum() for a in ex.map(make, [1 << 20] * 4))
            print(made, ex.submit(sum, frozen).result())
            print(ex._engine.backend._prefix)
        """
    )
    script = tmp_path / "main.py"
    script.write_text(program)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.split()
    assert lines[:2] == ["4194304.0", "1048576.0"]
    _eventually_no_segments(lines[2])


def test_a_killed_program_leaves_no_segment(tmp_path: Any) -> None:
    program = textwrap.dedent(
        """
        import os, signal, sys, time
        import numpy as np
        import parallelkit

        def hold(a):
            time.sleep(60)

        if __name__ == "__main__":
            ex = parallelkit.Executor("process", 2)
            frozen = np.ones(1 << 20)
            frozen.setflags(write=False)
            ex.submit(sum, frozen).result()
            ex.submit(hold, np.ones(1 << 20))
            print(ex._engine.backend._prefix, flush=True)
            time.sleep(1)
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    script = tmp_path / "main.py"
    script.write_text(program)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == -signal.SIGKILL
    prefix = done.stdout.split()[0]
    # The resource tracker removes what the program registered once the last
    # process of the program has gone.
    _eventually_no_segments(prefix, seconds=15)


def add_one_in_place(array: Any) -> float:
    array += 1
    return float(array.sum())


@pytest.mark.parametrize("method", START_METHODS)
def test_a_task_writing_to_its_argument_changes_only_its_own_copy(method: str) -> None:
    shared = np.zeros(MB)
    with Executor("process", 2, start_method=method) as ex:
        assert list(ex.map(add_one_in_place, [shared] * 6)) == [float(MB)] * 6
        assert list(ex.map(add_one_in_place, [shared] * 2)) == [float(MB)] * 2
    assert float(shared.sum()) == 0.0
