"""``progress=``: a tqdm bar or a callable ``fn(done, total)``, per chunk, on every backend."""

from __future__ import annotations

import functools
import importlib
import io
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any

import pytest

import parallelkit
from parallelkit import ConfigError, Executor, Pool
from tests.helpers import add, fail_on, square

N = 100
CHUNK = 7
CHUNKS = math.ceil(N / CHUNK)
#: More items than a map holds in flight: a map that stops early has not run them all.
MANY = 1_000  # far more than the chunks in flight (4 per worker), so a stop shows

#: Every way to map with progress, on an Executor or a Pool as its name says.
Run = Callable[[Any, Iterable[int], Any], list[int]]


def _starred(items: Iterable[int]) -> Iterable[tuple[int, int]]:
    """``(x, x)`` for each item: a list for a sized input, else read as it is read."""
    pairs = ((x, x) for x in items)
    return list(pairs) if isinstance(items, Sized) else pairs


RUNS: dict[str, Run] = {
    "Executor.map": lambda ex, xs, p: list(ex.map(square, xs, chunksize=CHUNK, progress=p)),
    "Executor.imap": lambda ex, xs, p: list(ex.imap(square, xs, CHUNK, progress=p)),
    "Executor.imap_unordered": lambda ex, xs, p: sorted(
        ex.imap_unordered(square, xs, CHUNK, progress=p)
    ),
    "Executor.starmap": lambda ex, xs, p: list(ex.starmap(add, _starred(xs), CHUNK, progress=p)),
    "Pool.map": lambda pool, xs, p: pool.map(square, xs, CHUNK, progress=p),
    "Pool.map_async": lambda pool, xs, p: pool.map_async(square, xs, CHUNK, progress=p).get(),
    "Pool.starmap": lambda pool, xs, p: pool.starmap(add, _starred(xs), CHUNK, progress=p),
    "Pool.starmap_async": lambda pool, xs, p: pool.starmap_async(
        add, _starred(xs), CHUNK, progress=p
    ).get(),
    "Pool.imap": lambda pool, xs, p: list(pool.imap(square, xs, CHUNK, progress=p)),
    "Pool.imap_unordered": lambda pool, xs, p: sorted(
        pool.imap_unordered(square, xs, CHUNK, progress=p)
    ),
}


def owner(name: str) -> Executor | Pool:
    """An Executor or a Pool of 2 workers on the configured backend, for ``RUNS[name]``."""
    return Executor(workers=2) if name.startswith("Executor") else Pool(2)


def run(name: str, items: Iterable[int], progress: Any) -> list[int]:
    with owner(name) as face:
        return RUNS[name](face, items, progress)


def expected(name: str) -> list[int]:
    return [x + x if "starmap" in name else x * x for x in range(N)]


class Recorder:
    """A progress callable that records its calls (and from which threads)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None]] = []
        self.lock = threading.Lock()

    def __call__(self, done: int, total: int | None) -> None:
        with self.lock:
            self.calls.append((done, total))


def bar_of(output: io.StringIO) -> str:
    """The last state tqdm drew (it redraws the line after a carriage return)."""
    return output.getvalue().rsplit("\r", 1)[-1]


# -- the callable --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RUNS))
def test_progress_callable_counts_up_to_the_total_once_per_chunk_at_most(
    backend: str, name: str
) -> None:
    record = Recorder()
    assert run(name, range(N), record) == expected(name)
    calls = record.calls
    assert calls[0] == (0, N)
    assert calls[-1] == (N, N)
    assert all(total == N for _, total in calls)
    dones = [done for done, _ in calls]
    assert dones == sorted(set(dones)), "done must grow with every call"
    assert len(calls) <= CHUNKS + 1


@pytest.mark.parametrize("name", ["Executor.imap", "Executor.imap_unordered", "Pool.imap"])
def test_progress_total_is_none_for_a_generator_and_done_ends_at_its_length(
    backend: str, name: str
) -> None:
    record = Recorder()
    assert run(name, (x for x in range(N)), record) == expected(name)
    assert record.calls[0] == (0, None)
    assert record.calls[-1] == (N, None)
    assert {total for _, total in record.calls} == {None}


def test_executor_map_of_several_iterables_counts_to_the_shortest(
    backend: str,
) -> None:
    record = Recorder()
    with Executor(workers=2) as ex:
        results = list(ex.map(add, range(N), range(N + 5), chunksize=CHUNK, progress=record))
    assert results == [2 * x for x in range(N)]
    assert record.calls[-1] == (N, N)


@pytest.mark.parametrize("name", ["Executor.map", "Pool.map", "Pool.imap"])
def test_progress_of_an_empty_input_is_zero_of_zero(backend: str, name: str) -> None:
    record = Recorder()
    assert run(name, [], record) == []
    assert record.calls == [(0, 0)]


class ProgressBroke(Exception):
    pass


def broken_progress(done: int, total: int | None) -> None:
    if done > 0:
        raise ProgressBroke(f"at {done} of {total}")


@pytest.mark.parametrize("name", ["Executor.map", "Executor.imap", "Pool.map", "Pool.map_async"])
def test_an_exception_of_the_progress_callable_fails_the_map(backend: str, name: str) -> None:
    with pytest.raises(ProgressBroke):
        run(name, range(N), broken_progress)


# -- the tqdm bar --------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _tqdm_monitor_started() -> None:
    """Start tqdm's monitor thread before the leak checker looks at the threads.

    tqdm starts one daemon ``tqdm_monitor`` thread with its first bar and
    keeps it for the life of the process; it is not a bar left open.
    """
    try:
        tqdm: Any = importlib.import_module("tqdm.auto").tqdm
    except ImportError:
        return
    tqdm(total=1, file=io.StringIO()).close()


@pytest.fixture
def tqdm_installed() -> None:
    pytest.importorskip("tqdm")


@pytest.mark.parametrize("name", sorted(RUNS))
@pytest.mark.usefixtures("tqdm_installed")
def test_progress_dict_draws_a_tqdm_bar_with_those_options_and_closes_it(
    backend: str, name: str
) -> None:
    output = io.StringIO()
    options = {"file": output, "desc": "squaring", "ascii": True}
    assert run(name, range(N), options) == expected(name)
    last = bar_of(output)
    assert last.startswith("squaring: 100%|##########| 100/100 ")
    assert last.endswith("\n"), "a closed bar ends its line"


@pytest.mark.usefixtures("tqdm_installed")
def test_progress_true_draws_the_bar_on_stderr(
    backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("Executor.map", range(N), True) == expected("map")
    err = capsys.readouterr().err
    assert "100/100" in err.rsplit("\r", 1)[-1]
    assert err.endswith("\n")


@pytest.mark.usefixtures("tqdm_installed")
def test_the_bar_of_a_generator_counts_without_a_total(backend: str) -> None:
    output = io.StringIO()
    run("Executor.imap", (x for x in range(N)), {"file": output})
    last = bar_of(output)
    assert f"{N}task " in last
    assert "%" not in last
    assert last.endswith("\n")


@pytest.mark.parametrize("name", ["Executor.map", "Executor.imap", "Pool.map", "Pool.imap"])
@pytest.mark.usefixtures("tqdm_installed")
def test_the_bar_closes_when_a_task_raises(backend: str, name: str) -> None:
    output = io.StringIO()
    fail = functools.partial(fail_on, bad=50)
    options = {"file": output}
    with owner(name) as face:
        with pytest.raises(ValueError, match="bad item 50") as caught:
            if name == "Executor.map":
                list(face.map(fail, range(MANY), chunksize=CHUNK, progress=options))
            elif isinstance(face, Pool):
                if name == "Pool.map":
                    face.map(fail, range(MANY), CHUNK, progress=options)
                else:
                    list(face.imap(fail, range(MANY), CHUNK, progress=options))
            else:
                list(face.imap(fail, range(MANY), CHUNK, progress=options))
        # Closed as the error left the map, not when the map is collected: the
        # error's traceback, alive here, still holds the map.
        closed = output.getvalue().endswith("\n")
        assert caught.traceback
    assert closed
    assert f"{MANY}/{MANY}" not in bar_of(output)


@pytest.mark.parametrize("name", ["Executor.imap", "Pool.imap"])
@pytest.mark.usefixtures("tqdm_installed")
def test_the_bar_closes_on_break_out_of_an_imap(backend: str, name: str) -> None:
    output = io.StringIO()
    with owner(name) as face:
        for x in face.imap(square, range(MANY), CHUNK, progress={"file": output}):
            if x >= 4:
                break
        closed = output.getvalue().endswith("\n")  # at once, with the pool still open
    assert closed
    assert output.getvalue().endswith("\n")
    assert f"{MANY}/{MANY}" not in bar_of(output)


@pytest.mark.usefixtures("tqdm_installed")
def test_the_bar_closes_when_the_map_is_closed(backend: str) -> None:
    output = io.StringIO()
    with Executor(workers=2) as ex:
        results = ex.map(square, range(MANY), chunksize=CHUNK, progress={"file": output})
        assert next(results) == 0
        assert not output.getvalue().endswith("\n")
        results.close()
        assert output.getvalue().endswith("\n")


def interrupt_soon(delay: float = 0.3) -> threading.Timer:
    """Send SIGINT to this process after ``delay`` seconds (Ctrl-C while a map waits)."""
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


def slow_square(x: int) -> int:
    if x == 3:
        time.sleep(1.5)
    return x * x


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.usefixtures("tqdm_installed")
def test_the_bar_closes_on_ctrl_c_while_an_imap_waits(backend: str) -> None:
    output = io.StringIO()
    with Executor(workers=2) as ex:
        timer = interrupt_soon()
        try:
            with pytest.raises(KeyboardInterrupt):
                list(ex.imap(slow_square, range(8), 1, progress={"file": output}))
        finally:
            timer.join()
    assert output.getvalue().endswith("\n")
    assert "8/8" not in bar_of(output)


# -- without tqdm --------------------------------------------------------------------------


@pytest.fixture
def no_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import tqdm`` fail, as where it is not installed."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)


@pytest.mark.parametrize("name", sorted(RUNS))
@pytest.mark.parametrize("progress", [True, {"desc": "x"}], ids=["True", "dict"])
@pytest.mark.usefixtures("no_tqdm")
def test_a_bar_without_tqdm_raises_config_error_naming_the_extra_before_any_work(
    backend: str, name: str, progress: object
) -> None:
    read: list[int] = []

    def source() -> Iterator[int]:
        for x in range(N):
            read.append(x)
            yield x

    with pytest.raises(ConfigError, match=r"parallelkit\[progress\]"):
        run(name, source(), progress)
    assert read == [], "the input was read before the error"


@pytest.mark.usefixtures("no_tqdm")
def test_a_progress_callable_needs_no_tqdm(backend: str) -> None:
    record = Recorder()
    assert run("Executor.map", range(N), record) == expected("map")
    assert record.calls[-1] == (N, N)


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_progress_of_another_kind_is_a_type_error(backend: str, bad: Any) -> None:
    with Executor(workers=2) as ex, pytest.raises(TypeError, match="progress must be"):
        ex.map(square, range(3), progress=bad)
    with Pool(2) as pool, pytest.raises(TypeError, match="progress must be"):
        pool.map(square, range(3), progress=bad)


def test_progress_is_in_the_public_signatures() -> None:
    import inspect

    for method in (
        parallelkit.Executor.map,
        parallelkit.Executor.imap,
        parallelkit.Executor.imap_unordered,
        parallelkit.Executor.starmap,
        parallelkit.Pool.map,
        parallelkit.Pool.map_async,
        parallelkit.Pool.starmap,
        parallelkit.Pool.starmap_async,
        parallelkit.Pool.imap,
        parallelkit.Pool.imap_unordered,
    ):
        parameter = inspect.signature(method).parameters["progress"]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, method
        assert parameter.default is False, method
