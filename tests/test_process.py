"""parallelkit.Process: multiprocessing.Process's API, a process or a thread by the backend flag."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import wait
from pathlib import Path

import pytest

import parallelkit
from parallelkit import Event, Process, Queue
from tests.helpers import run_user_script

METHODS = [
    m for m in ("fork", "spawn", "forkserver") if m in multiprocessing.get_all_start_methods()
]


@pytest.fixture(params=METHODS)
def method(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each start method in turn, configured for the process backend."""
    name: str = request.param
    with parallelkit.config(backend="process", start_method=name):
        yield name


def put_sum(q: Queue[int], a: int, b: int = 0) -> None:
    q.put(a + b)


def fail() -> None:
    raise ValueError("boom in the child")


def exit_with(code: str | int | None) -> None:
    sys.exit(code)


def put_thread_ident(q: Queue[int]) -> None:
    q.put(threading.get_ident())


def put_same_object(q: Queue[bool], x: object, original: int) -> None:
    q.put(id(x) == original)


def wait_for(event: Event) -> None:
    event.wait(30)


class Doubler(Process):
    """A subclass that overrides run, with state of its own."""

    def __init__(self, q: Queue[int], n: int) -> None:
        super().__init__()
        self.q = q
        self.n = n
        self.shift: Callable[[int], int] = lambda x: x * 2  # travels by value

    def run(self) -> None:
        self.q.put(self.shift(self.n))


def test_the_target_runs_with_args_and_kwargs_and_exitcode_is_zero(backend: str) -> None:
    q = Queue[int]()
    p = Process(target=put_sum, args=(q, 40), kwargs={"b": 2})
    p.start()
    p.join(30)
    assert q.get(timeout=10) == 42
    assert p.exitcode == 0


def test_a_closure_target_runs_under_every_start_method(method: str) -> None:
    q = Queue[str]()
    word = "closure"
    p = Process(target=lambda: q.put(word))
    p.start()
    p.join(30)
    assert q.get(timeout=10) == "closure"


def test_a_subclass_overriding_run_travels_with_its_state(method: str) -> None:
    q = Queue[int]()
    p = Doubler(q, 21)
    p.start()
    p.join(30)
    assert q.get(timeout=10) == 42


def test_a_subclass_overriding_run_runs_in_a_thread(backend: str) -> None:
    q = Queue[int]()
    p = Doubler(q, 5)
    p.start()
    p.join(30)
    assert q.get(timeout=10) == 10


def test_it_is_a_thread_on_the_thread_and_serial_backends() -> None:
    for name in ("thread", "serial"):
        q = Queue[int](backend=name)
        p = Process(target=put_thread_ident, args=(q,), backend=name)
        p.start()
        p.join()
        assert q.get() != threading.get_ident()
        assert p.pid is None and p.ident is None


def test_the_child_has_its_own_pid(method: str) -> None:
    q = Queue[int]()
    p = Process(target=lambda: q.put(os.getpid()))
    p.start()
    p.join(30)
    assert p.pid == p.ident == q.get(timeout=10) != os.getpid()


def test_an_uncaught_exception_gives_exitcode_one_and_prints_the_traceback(
    backend: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with parallelkit.config(start_method="spawn"):  # a child whose stderr is the test's
        p = Process(target=fail, name="failing")
    p.start()
    p.join(30)
    assert p.exitcode == 1
    err = capfd.readouterr().err
    assert err.startswith("Process failing:\nTraceback (most recent call last):")
    assert "ValueError: boom in the child" in err


@pytest.mark.parametrize(("code", "expected"), [(None, 0), (0, 0), (3, 3), ("bye", 1)])
def test_sys_exit_sets_the_exitcode(
    backend: str, code: str | int | None, expected: int, capfd: pytest.CaptureFixture[str]
) -> None:
    with parallelkit.config(start_method="spawn"):  # a child whose stderr is the test's
        p = Process(target=exit_with, args=(code,))
    p.start()
    p.join(30)
    assert p.exitcode == expected
    assert capfd.readouterr().err == ("bye\n" if code == "bye" else "")


@pytest.mark.parametrize(("stop", "sig"), [("terminate", signal.SIGTERM), ("kill", signal.SIGKILL)])
def test_a_stopped_process_has_minus_the_signal_as_exitcode(stop: str, sig: int) -> None:
    event = Event(backend="process")
    p = Process(target=wait_for, args=(event,), backend="process")
    p.start()
    getattr(p, stop)()
    p.join(30)
    assert p.exitcode == -sig


@pytest.mark.parametrize("stop", ["terminate", "kill"])
def test_stopping_a_thread_raises_not_implemented(stop: str) -> None:
    event = Event(backend="thread")
    p = Process(target=wait_for, args=(event,), backend="thread")
    p.start()
    with pytest.raises(NotImplementedError, match="cannot be terminated"):
        getattr(p, stop)()
    event.set()
    p.join()


def test_the_sentinel_is_ready_when_the_process_ends() -> None:
    p = Process(target=time.sleep, args=(0.1,), backend="process")
    p.start()
    assert wait([p.sentinel], 30) == [p.sentinel]
    p.join()


def test_a_thread_has_no_sentinel() -> None:
    p = Process(target=time.sleep, args=(0,), backend="thread")
    with pytest.raises(NotImplementedError, match="no sentinel"):
        _ = p.sentinel


def test_starting_twice_raises(backend: str) -> None:
    p = Process(target=time.sleep, args=(0,))
    p.start()
    with pytest.raises(AssertionError, match="cannot start a process twice"):
        p.start()
    p.join()


def test_joining_before_start_raises(backend: str) -> None:
    p = Process(target=time.sleep, args=(0,))
    with pytest.raises(AssertionError, match="can only join a started process"):
        p.join()


def test_state_before_start_is_initial(backend: str) -> None:
    p = Process(target=time.sleep, args=(0,))
    assert not p.is_alive()
    assert p.exitcode is None
    assert p.pid is None


def test_closing_a_running_process_raises_value_error(backend: str) -> None:
    event = Event()
    p = Process(target=wait_for, args=(event,))
    p.start()
    with pytest.raises(ValueError, match="still running"):
        p.close()
    event.set()
    p.join(30)


def test_a_closed_process_refuses_to_be_used(backend: str) -> None:
    p = Process(target=time.sleep, args=(0,))
    p.start()
    p.join(30)
    p.close()
    with pytest.raises(ValueError, match="closed"):
        p.is_alive()


def test_daemon_cannot_change_after_start(backend: str) -> None:
    p = Process(target=time.sleep, args=(0,), daemon=True)
    assert p.daemon
    p.start()
    with pytest.raises(AssertionError, match="already started"):
        p.daemon = False
    p.join(30)


def test_the_default_name_is_process_n_on_the_process_backend() -> None:
    p = Process(target=time.sleep, args=(0,), backend="process")
    assert p.name.startswith("Process-")
    p.name = "renamed"
    assert p.name == "renamed"


def test_the_name_is_the_childs_current_process_name(method: str) -> None:
    q = Queue[str]()
    p = Process(target=lambda: q.put(multiprocessing.current_process().name), name="worker-7")
    p.start()
    p.join(30)
    assert q.get(timeout=10) == "worker-7"


def test_repr_says_backend_and_state() -> None:
    p = Process(target=time.sleep, args=(0,), name="r", backend="thread")
    assert repr(p) == "<parallelkit.Process name='r' backend='thread' initial>"
    p.start()
    p.join()
    assert repr(p) == "<parallelkit.Process name='r' backend='thread' stopped exitcode=0>"


def test_group_must_be_none() -> None:
    with pytest.raises(AssertionError, match="group"):
        Process(group=object(), backend="thread")  # type: ignore[arg-type]


def test_an_argument_that_cannot_be_pickled_is_refused_at_start() -> None:
    with parallelkit.config(backend="process", start_method="spawn"):
        p = Process(target=print, args=(threading.Lock(),), name="unpicklable")
    with pytest.raises(pickle.PicklingError, match=r"cannot send process 'unpicklable'.*lock"):
        p.start()


def test_check_pickle_gives_the_thread_a_copy_of_the_arguments() -> None:
    item = [1]
    with parallelkit.config(backend="thread", check_pickle=True):
        q = Queue[bool]()
        p = Process(target=put_same_object, args=(q, item, id(item)))
    p.start()
    p.join()
    assert q.get(timeout=10) is False


# -- at exit ---------------------------------------------------------------------------------

NOT_JOINED = """\
import time
import parallelkit


def late() -> None:
    time.sleep(0.5)
    print("finished", flush=True)


if __name__ == "__main__":
    parallelkit.Process(target=late).start()
"""

DAEMON = """\
import time
import parallelkit


def forever() -> None:
    time.sleep(60)


if __name__ == "__main__":
    p = parallelkit.Process(target=forever, daemon=True)
    p.start()
    print(p.pid, flush=True)
"""


def run_script(source: str, backend: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return run_user_script(source, tmp_path, backend=backend)


@pytest.mark.parametrize("backend_name", ["process", "thread"])
def test_a_non_daemon_process_is_joined_when_the_program_ends(
    backend_name: str, tmp_path: Path
) -> None:
    result = run_script(NOT_JOINED, backend_name, tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "finished\n", "")


def test_a_daemon_process_is_terminated_when_the_program_ends(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_script(DAEMON, "process", tmp_path)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30
    with pytest.raises(ProcessLookupError):
        os.kill(int(result.stdout), 0)
