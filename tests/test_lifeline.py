"""The lifeline: a worker is killed by the kernel once the process that owns it is gone."""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time

import pytest

import parallelkit
from parallelkit._lifeline import Lifeline

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="the lifeline is Linux's")


def _wait_status(pid: int, timeout: float) -> int | None:
    """The wait status of child ``pid`` once it ends within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    return None


def _armed_child(lifeline: Lifeline, then: float) -> int:
    """Fork a child that arms ``lifeline`` and then sleeps ``then`` seconds and exits 0."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 2
        try:
            if lifeline.arm():
                code = 0
                time.sleep(then)
        finally:
            os._exit(code)
    return pid


@linux_only
def test_an_armed_child_is_killed_when_the_lifeline_closes() -> None:
    lifeline = Lifeline()
    pid = _armed_child(lifeline, 30)
    time.sleep(0.2)  # armed by now
    assert _wait_status(pid, 0) is None, "killed while the owner holds the lifeline"
    started = time.monotonic()
    lifeline.close()
    status = _wait_status(pid, 5)
    assert status is not None, "not killed"
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert time.monotonic() - started < 1


@linux_only
def test_a_forked_child_does_not_hold_the_write_end() -> None:
    # Every process forked from the owner (workers of later pools, the user's own
    # children) closes its copy of the write end at once: otherwise the workers
    # would live on after the owner, for as long as that child does.
    lifeline = Lifeline()
    write_end = lifeline._write  # pyright: ignore[reportPrivateUsage]
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            try:
                os.fstat(write_end)
                answer = b"open"
            except OSError:
                answer = b"closed"
            os.write(writer, answer)
        finally:
            os._exit(0)
    os.close(writer)
    try:
        assert os.read(reader, 10) == b"closed"
    finally:
        os.close(reader)
        assert _wait_status(pid, 5) == 0
        lifeline.close()


def test_it_travels_only_to_a_process_being_started() -> None:
    lifeline = Lifeline()
    try:
        with pytest.raises(RuntimeError, match="inheritance"):
            pickle.dumps(lifeline)
    finally:
        lifeline.close()


def test_closing_twice_is_harmless() -> None:
    lifeline = Lifeline()
    lifeline.close()
    lifeline.close()


@linux_only
@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
def test_process_workers_run_no_watch_thread(start_method: str) -> None:
    with parallelkit.Pool(2, start_method=start_method) as pool:
        counts = pool.map(_threads_here, range(4), chunksize=1)
    assert counts == [1, 1, 1, 1]


def _threads_here(_: int) -> int:
    return threading.active_count() + len(os.listdir("/proc/self/task")) - 1
