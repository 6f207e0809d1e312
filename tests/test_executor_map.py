"""``Executor.map`` as ``concurrent.futures`` returns it: close(), no kept results, max_workers."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import parallelkit
from parallelkit import Executor, MapIterator, Pool, ResultIterator

#: How many chunks 2 workers hold (handed over, so no longer cancellable).
HELD = 4 * 2
#: One more is sent when the first result is taken: a stopped map of one-item
#: chunks runs at most this many of its items.
MOST_RUN_AFTER_STOP = HELD + 1
ITEMS = 200


def touch(directory: str, x: int) -> int:
    """Record that item ``x`` ran, then take a little while."""
    Path(directory, f"ran-{x}").touch()
    time.sleep(0.005)
    return x


def touch_around(directory: str, x: int) -> int:
    """Record that item ``x`` started, and later that it ended."""
    Path(directory, f"start-{x}").touch()
    time.sleep(0.05)
    Path(directory, f"end-{x}").touch()
    return x


def wait_for_file(path: str) -> int:
    """Return once ``path`` exists (at most 30 s)."""
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.005)
    return 0


class Box:
    """A result that a weak reference can watch."""

    def __init__(self, value: int) -> None:
        self.value = value


def box(x: int) -> Box:
    return Box(x)


def box_or_fail(x: int) -> Box:
    if x == 9:
        raise ValueError("bad item 9")
    return Box(x)


def ran(directory: Path, prefix: str = "ran-") -> set[str]:
    return {p.name[len(prefix) :] for p in directory.iterdir() if p.name.startswith(prefix)}


def start_map(ex: Executor, directory: Path) -> MapIterator[int]:
    """A map of ITEMS slow one-item tasks whose first result was taken."""
    results = ex.map(functools.partial(touch, str(directory)), range(ITEMS), chunksize=1)
    assert next(results) == 0
    return results


# -- the object -----------------------------------------------------------------------------


def test_map_returns_an_iterator_that_is_its_own_iterator(backend: str) -> None:
    with Executor(backend, 2) as ex:
        results = ex.map(abs, range(-5, 0))
        assert isinstance(results, MapIterator)
        assert iter(results) is results
        assert next(results) == 5
        assert list(results) == [4, 3, 2, 1]


# -- close ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "contextlib.closing", "drop"])
def test_stopping_a_map_lets_shutdown_skip_the_work_not_started(
    backend: str, tmp_path: Path, how: str
) -> None:
    ex = Executor(backend, 2)
    with ex:
        if how == "contextlib.closing":
            with contextlib.closing(start_map(ex, tmp_path)):
                pass
        else:
            results = start_map(ex, tmp_path)
            if how == "close":
                results.close()
            else:
                del results
    # shutdown(wait=True) has returned: all that will ever run has run
    assert 1 <= len(ran(tmp_path)) <= MOST_RUN_AFTER_STOP


def test_a_map_not_stopped_runs_everything_before_shutdown_returns(
    backend: str, tmp_path: Path
) -> None:
    # The counterpart of the test above: what close() saves.
    with Executor(backend, 2) as ex:
        results = start_map(ex, tmp_path)
    assert len(ran(tmp_path)) == ITEMS
    assert len(list(results)) == ITEMS - 1


def test_close_cancels_the_chunks_still_queued(backend: str, tmp_path: Path) -> None:
    if backend == "serial":
        pytest.skip("the serial backend runs each chunk as it is queued: none waits")
    release = str(tmp_path / "release")
    with Executor(backend, 2) as ex:
        blockers = [ex.submit(wait_for_file, release) for _ in range(HELD)]
        # The workers hold as many chunks as they take: the map's wait in the queue.
        results = ex.map(functools.partial(touch, str(tmp_path)), range(ITEMS), chunksize=1)
        results.close()
        Path(release).touch()
        assert [f.result(30) for f in blockers] == [0] * HELD
    assert ran(tmp_path) == set()


def test_input_is_not_read_after_close(backend: str) -> None:
    taken: list[int] = []

    def numbers() -> Iterator[int]:
        for x in range(10_000):
            taken.append(x)
            yield x

    with Executor(backend, 2) as ex:
        results = ex.map(abs, numbers())
        assert next(results) == 0
        results.close()
        read = len(taken)
    assert len(taken) == read < 10_000


def test_iterating_after_close_ends_at_once(backend: str) -> None:
    with Executor(backend, 2) as ex:
        results = ex.map(abs, range(100), chunksize=50)
        assert next(results) == 0
        assert next(results) == 1  # from the middle of a chunk
        results.close()
        assert list(results) == []


def test_next_after_close_raises_stop_iteration(backend: str) -> None:
    with Executor(backend, 2) as ex:
        results = ex.map(abs, range(100))
        results.close()
        with pytest.raises(StopIteration):
            next(results)


def test_close_inside_a_loop_ends_the_loop(backend: str) -> None:
    seen: list[int] = []
    with Executor(backend, 2) as ex:
        results = ex.map(int, range(1000), chunksize=100)
        for value in results:
            seen.append(value)
            if value == 5:
                results.close()  # the rest of the chunk under way is not handed out
    assert seen == list(range(6))


def test_close_lets_running_tasks_finish_before_shutdown_returns(
    backend: str, tmp_path: Path
) -> None:
    with Executor(backend, 2) as ex:
        results = ex.map(functools.partial(touch_around, str(tmp_path)), range(50), chunksize=1)
        next(results)
        results.close()
    started = ran(tmp_path, "start-")
    assert started
    assert ran(tmp_path, "end-") == started


def test_close_from_another_thread_ends_a_waiting_loop(backend: str, tmp_path: Path) -> None:
    if backend == "serial":
        pytest.skip("the serial backend runs the task inside next(): nothing waits")
    release = str(tmp_path / "release")
    got: list[list[int]] = []
    with Executor(backend, 2) as ex:
        results = ex.map(wait_for_file, [release] * 4)
        consumer = threading.Thread(target=lambda: got.append(list(results)))
        consumer.start()
        time.sleep(0.1)  # let the consumer start waiting (the test holds either way)
        results.close()
        consumer.join(20)
        ended = not consumer.is_alive()
        Path(release).touch()  # let the tasks end
        consumer.join(20)
    assert ended
    assert got == [[]]


def test_closing_twice_is_harmless(backend: str) -> None:
    with Executor(backend, 2) as ex:
        results = ex.map(abs, range(10))
        results.close()
        results.close()
        assert list(results) == []


# -- results are not kept -------------------------------------------------------------------


def _maps(
    ex: Executor, pool: Pool
) -> dict[str, Callable[[], MapIterator[Box] | ResultIterator[Box]]]:
    return {
        "Executor.map": lambda: ex.map(box, range(30), chunksize=10),
        "Executor.imap": lambda: ex.imap(box, range(30), chunksize=10),
        "Executor.imap_unordered": lambda: ex.imap_unordered(box, range(30), chunksize=10),
        "Pool.imap": lambda: pool.imap(box, range(30), chunksize=10),
        "Pool.imap_unordered": lambda: pool.imap_unordered(box, range(30), chunksize=10),
    }


def _take_and_watch(results: Iterator[Box], how: str) -> weakref.ref[Box]:
    """Take one result (by next() or as a loop does) and return a weak reference to it."""
    value = next(results) if how == "next" else next(iter(results))
    return weakref.ref(value)


@pytest.mark.parametrize(
    "face",
    [
        "Executor.map",
        "Executor.imap",
        "Executor.imap_unordered",
        "Pool.imap",
        "Pool.imap_unordered",
    ],
)
def test_a_result_handed_out_is_not_kept(backend: str, face: str) -> None:
    with Executor(backend, 2) as ex, Pool(2, backend=backend) as pool:
        results = _maps(ex, pool)[face]()
        refs: list[weakref.ref[Box]] = []
        # The first of a chunk, two from its middle, by next() and by loops.
        for how in ("next", "next", "loop", "next", "loop"):
            refs.append(_take_and_watch(results, how))
            gc.collect()
            assert refs[-1]() is None, f"result {len(refs)} (taken by {how}) is kept"
        results.close()


@pytest.mark.parametrize("face", ["Executor.imap", "Pool.imap"])
def test_next_after_a_list_that_raised_lets_go_of_each_result(backend: str, face: str) -> None:
    # list() takes whole chunks as they are (it keeps every result anyway);
    # taking results one by one afterwards must let go of each again.
    with Executor(backend, 2) as ex, Pool(2, backend=backend) as pool:
        maker = ex.imap if face == "Executor.imap" else pool.imap
        results = maker(box_or_fail, range(30), chunksize=10)
        with pytest.raises(ValueError, match="bad item 9"):
            list(results)
        ref = _take_and_watch(results, "next")  # item 10, the first of its chunk
        assert _take_and_watch(results, "next")() is None
        gc.collect()
        assert ref() is None
        results.close()


def test_a_result_before_a_failed_item_of_its_chunk_is_not_kept(backend: str) -> None:
    with Executor(backend, 2) as ex:
        results = ex.map(box_or_fail, range(10), chunksize=10)
        ref = _take_and_watch(results, "next")
        gc.collect()
        assert ref() is None
        results.close()


# -- max_workers and the first argument -----------------------------------------------------


def test_max_workers_means_workers(backend: str) -> None:
    with Executor(backend, max_workers=3) as ex, Executor(backend, workers=3) as same:
        assert ex.workers == same.workers


def test_workers_and_max_workers_together_raise_type_error_naming_both(backend: str) -> None:
    with pytest.raises(TypeError, match=r"both workers=2 and max_workers=3"):
        Executor(backend, 2, max_workers=3)


@pytest.mark.parametrize("value", [0, -1])
def test_max_workers_below_one_raises_the_message_of_concurrent_futures(
    backend: str, value: int
) -> None:
    with pytest.raises(ValueError, match=r"^max_workers must be greater than 0$"):
        Executor(backend, max_workers=value)


@pytest.mark.parametrize("value", [2.5, True, "4"])
def test_max_workers_that_is_not_a_whole_number_raises_value_error(
    backend: str, value: Any
) -> None:
    with pytest.raises(ValueError, match=r"max_workers must be a whole number greater than 0"):
        Executor(backend, max_workers=value)


def test_workers_keeps_its_own_message() -> None:
    with pytest.raises(ValueError, match=r"workers must be a whole number >= 1 or None, got 0"):
        Executor("serial", 0)


def test_a_worker_count_where_the_backend_goes_is_max_workers() -> None:
    # ProcessPoolExecutor(4) ported as Executor(4): the first argument of
    # concurrent.futures' executors is max_workers.
    with parallelkit.config(backend="thread"), Executor(3) as ex:
        assert ex.workers == 3
        assert ex.backend == "thread"


def test_a_worker_count_given_twice_raises_type_error() -> None:
    with pytest.raises(TypeError, match=r"got a number of workers twice"):
        Executor(4, max_workers=2)
    with pytest.raises(TypeError, match=r"both workers=2 and max_workers=4"):
        Executor(4, 2)


def test_a_worker_count_below_one_where_the_backend_goes_says_max_workers() -> None:
    with pytest.raises(ValueError, match=r"^max_workers must be greater than 0$"):
        Executor(0)


def test_an_unknown_backend_name_still_raises_config_error() -> None:
    with pytest.raises(parallelkit.ConfigError, match="unknown backend"):
        Executor("4")
