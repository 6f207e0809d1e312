"""spawn(): one function in its own process or thread, with a handle like multiprocessing's."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import parallelkit
from parallelkit import RemoteTraceback, Spawned, WorkerCrashedError


def divide(a: int, b: int) -> float:
    return a / b


def sleep_for(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def unpicklable_result() -> object:
    return threading.Lock()


def test_result_returns_the_value_and_exitcode_is_zero(backend: str) -> None:
    job = parallelkit.spawn(divide, 6, b=3)
    assert isinstance(job, Spawned)
    assert job.result(timeout=30) == 2.0
    assert job.exitcode == 0
    assert not job.is_alive()
    assert job.backend == backend


def test_lambdas_and_closures_run(backend: str) -> None:
    offset = 5

    def shifted(x: int) -> int:
        return x + offset

    assert parallelkit.spawn(shifted, 1).result(timeout=30) == 6
    assert parallelkit.spawn(lambda: offset * 2).result(timeout=30) == 10


def test_the_functions_exception_is_raised_with_the_remote_traceback(backend: str) -> None:
    job = parallelkit.spawn(divide, 1, 0)
    with pytest.raises(ZeroDivisionError) as caught:
        job.result(timeout=30)
    assert job.exitcode == 1
    if backend == "process":
        assert isinstance(caught.value.__cause__, RemoteTraceback)
        assert "divide" in caught.value.__cause__.traceback_text


def test_join_with_a_timeout_returns_while_running(backend: str) -> None:
    job = parallelkit.spawn(sleep_for, 0.3)
    job.join(0.05)
    assert job.is_alive()
    assert job.exitcode is None
    with pytest.raises(TimeoutError, match="still running"):
        job.result(timeout=0.01)
    with job:
        pass  # joins on exit
    assert job.result() == "slept"


def test_terminate_stops_a_process() -> None:
    job = parallelkit.spawn(sleep_for, 30, backend="process")
    job.terminate()
    job.join(10)
    assert job.exitcode == -signal.SIGTERM
    with pytest.raises(WorkerCrashedError, match="signal SIGTERM"):
        job.result()


def test_terminate_explains_why_a_thread_cannot_be_stopped() -> None:
    job = parallelkit.spawn(sleep_for, 0.01, backend="thread")
    with pytest.raises(NotImplementedError, match="cannot be terminated"):
        job.terminate()
    job.join()


def test_a_process_killed_before_returning_raises_worker_crashed() -> None:
    job = parallelkit.spawn(die, backend="process")
    with pytest.raises(WorkerCrashedError, match="SIGKILL") as caught:
        job.result(timeout=30)
    assert caught.value.exitcode == -signal.SIGKILL
    assert caught.value.pid == job.pid


def test_a_result_that_cannot_be_pickled_is_reported() -> None:
    job = parallelkit.spawn(unpicklable_result, backend="process")
    with pytest.raises(TypeError, match="cannot be pickled"):
        job.result(timeout=30)


def test_pid_name_and_repr_describe_the_run() -> None:
    job = parallelkit.spawn(divide, 1, 1, backend="process")
    job.join()
    assert isinstance(job.pid, int) and job.pid != os.getpid()
    assert "divide" in job.name
    assert repr(job) == (
        f"<parallelkit.Spawned spawn(fn=divide) backend='process' pid={job.pid} exitcode=0>"
    )
    thread_job = parallelkit.spawn(divide, 1, 1, backend="thread")
    thread_job.join()
    assert thread_job.pid is None
    assert repr(thread_job) == "<parallelkit.Spawned spawn(fn=divide) backend='thread' exitcode=0>"


def test_the_handle_is_not_made_directly() -> None:
    with pytest.raises(TypeError, match=r"parallelkit\.spawn"):
        Spawned()


def test_check_pickle_copies_arguments_and_result_on_threads() -> None:
    item = [1]

    def same(x: list[int]) -> tuple[list[int], bool]:
        return x, x is item

    with parallelkit.config(check_pickle=True):
        job = parallelkit.spawn(same, item, backend="thread")
    value, identical = job.result(timeout=10)
    assert value == [1] and not identical
