"""Never hang, never leak: workers that die, stall or misbehave."""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import multiprocessing.connection
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import cast

import pytest

import parallelkit
from parallelkit import (
    BrokenExecutorError,
    Executor,
    Pool,
    TaskTimeoutError,
    Timed,
    WorkerCrashedError,
)
from parallelkit._backends._pipes import TaskChannel
from parallelkit._backends._process import Backend as ProcessBackend
from parallelkit.testing import crash_worker, exit_worker, hang

from .helpers import (
    crash_on,
    die_after_result_header,
    exit_now,
    failing_init,
    inc,
    pause_in_result_write,
    pid_after,
    pid_of,
    raise_base,
    run_with_tests_importable,
    segfault,
    sleep_then,
)

pytestmark = pytest.mark.timeout(60)


# -- a worker dies while running a task ----------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status"),
    [(crash_worker, "signal SIGKILL"), (segfault, "signal SIGSEGV"), (exit_now, "exit code 1")],
    ids=["sigkill", "segfault", "os-exit"],
)
def test_worker_death_mid_task_raises_worker_crashed_within_a_second(
    fault: object, status: str
) -> None:
    with Executor("process", 2) as ex:
        assert ex.submit(inc, 1).result(20) == 2  # the workers are up
        start = time.monotonic()
        fut: concurrent.futures.Future[None] = ex.submit(fault)  # type: ignore[arg-type]
        with pytest.raises(WorkerCrashedError) as info:
            fut.result(10)
        elapsed = time.monotonic() - start
        err = info.value
        assert elapsed < 1.5, elapsed
        assert err.pid != os.getpid()
        assert not _alive(err.pid)
        assert f"worker pid {err.pid} died with {status}" in str(err)
        assert "fn=" in str(err) and err.task.startswith("task ")
        assert ex.submit(inc, 1).result(10) == 2


def test_other_tasks_complete_when_one_worker_dies() -> None:
    with Executor("process", 2) as ex:
        slow = [ex.submit(sleep_then, 0.3, i) for i in range(4)]
        doomed = ex.submit(crash_worker)
        with pytest.raises(WorkerCrashedError):
            doomed.result(10)
        assert [f.result(10) for f in slow] == [0, 1, 2, 3]


def test_map_raises_worker_crashed_at_the_dead_item_and_executor_lives() -> None:
    with Executor("process", 2) as ex:
        results = ex.map(crash_on, range(6), chunksize=1)
        assert [next(results) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(WorkerCrashedError, match="items 3-3 of map"):
            next(results)
        assert list(ex.map(inc, range(3))) == [1, 2, 3]


def test_imap_continues_after_a_dead_worker() -> None:
    with Executor("process", 2) as ex:
        it = ex.imap(crash_on, range(6), chunksize=1)
        assert [next(it) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(WorkerCrashedError):
            next(it)
        assert list(it) == [4, 5]


def test_pool_map_and_apply_raise_worker_crashed_instead_of_hanging() -> None:
    pool = Pool(2, backend="process")
    with pytest.raises(WorkerCrashedError):
        pool.map(crash_on, range(8), chunksize=2)
    with pytest.raises(WorkerCrashedError):
        pool.apply(crash_worker)
    with pytest.raises(WorkerCrashedError):
        list(pool.imap_unordered(crash_on, range(4), 1))
    assert pool.apply(inc, (1,)) == 2
    pool.close()
    pool.join()  # the dead jobs were dropped: join does not hang


def test_worker_killed_while_idle_does_not_block_the_pool() -> None:
    with Executor("process", 1) as ex:
        assert ex.submit(inc, 1).result(10) == 2
        time.sleep(0.3)  # the worker now waits for a task, holding the queue's lock
        procs = _processes(ex)
        for proc in procs:
            assert proc.pid is not None
            os.kill(proc.pid, signal.SIGKILL)
        # Dead before the next task is written: a worker that the signal has
        # not stopped yet may still take that task's header from the pipe, and
        # the task then fails as taken by a dead worker (the test below).
        for proc in procs:
            assert multiprocessing.connection.wait([proc.sentinel], timeout=10)
        start = time.monotonic()
        assert ex.submit(inc, 2).result(10) == 3
        assert list(ex.map(inc, range(5))) == [1, 2, 3, 4, 5]
        assert time.monotonic() - start < 5


def test_every_worker_killed_at_once_while_taking_tasks_never_blocks_the_pool() -> None:
    # A task submitted as its worker dies may have been half read from the task
    # pipe: it fails with WorkerCrashedError, or runs on a replacement; either
    # way within a second or so, and the executor keeps working.
    outcomes: list[str] = []
    with Executor("process", 2) as ex:
        assert ex.submit(inc, 0).result(10) == 1
        for round_ in range(6):
            time.sleep(0.2)  # both workers idle: one holds the queue's lock
            for proc in _processes(ex):
                assert proc.pid is not None
                os.kill(proc.pid, signal.SIGKILL)
            start = time.monotonic()
            try:
                assert ex.submit(inc, round_).result(10) == round_ + 1
                outcomes.append("ran")
            except WorkerCrashedError as exc:
                assert "while taking task" in str(exc), exc
                outcomes.append("crashed")
            assert time.monotonic() - start < 3, outcomes
            assert list(ex.map(inc, range(4))) == [1, 2, 3, 4]


def test_a_worker_killed_as_the_pool_shuts_down_does_not_hang_join() -> None:
    # close() writes each worker the word to exit; a worker killed while it
    # holds the task channel's lock keeps the other from ever reading its
    # word. join() looks after the workers until all have ended.
    pool = Pool(2, backend="process")
    assert pool.map(inc, range(4)) == [1, 2, 3, 4]
    backend = pool._engine.backend  # pyright: ignore[reportPrivateUsage]
    channel = cast("TaskChannel", backend._channel)  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
    deadline = time.monotonic() + 10
    holder: int = 0
    while not holder:  # an idle worker takes the lock and waits in the pipe
        assert time.monotonic() < deadline, "no worker took the task channel's lock"
        time.sleep(0.02)
        holder = channel.holder()[0]
    os.kill(holder, signal.SIGSTOP)  # it cannot take its word: it still holds the lock
    try:
        pool.close()
        time.sleep(0.2)  # the words are in the pipe; the pool's threads have ended
    finally:
        os.kill(holder, signal.SIGKILL)
    start = time.monotonic()
    pool.join()
    assert time.monotonic() - start < 5


def test_a_worker_killed_by_its_time_limit_while_writing_its_result_frees_the_queue() -> None:
    # The time limit kills the worker in the moment it holds the result queue's
    # lock: the lock is released for it, and the executor goes on.
    with Executor("process", 1) as ex:
        with pytest.raises(TaskTimeoutError):
            ex.submit(Timed(pause_in_result_write, 0.5)).result(10)
        assert ex.submit(inc, 1).result(10) == 2
        assert ex.submit(inc, 2).result(10) == 3


def test_a_result_cut_short_by_a_worker_death_never_blocks_shutdown() -> None:
    ex = Executor("process", 1)
    try:
        with pytest.raises(WorkerCrashedError):
            ex.submit(die_after_result_header).result(10)
        # The cut result was in the dead worker's own pipe: the others are
        # untouched, and the executor goes on...
        assert ex.submit(inc, 1).result(10) == 2
    finally:
        # ...and shutting down does not wait for the rest of the cut result.
        start = time.monotonic()
        ex.shutdown()
        assert time.monotonic() - start < 5


def _kill_a_worker_in_its_result_write(owner: Executor | Pool) -> None:
    """Have a worker die half-way through writing a result, and wait for its end.

    Returns before the looks at the workers can have seen the death.
    """
    procs = _processes(owner)
    if isinstance(owner, Executor):
        owner.submit(die_after_result_header)
    else:
        owner.apply_async(die_after_result_header)
    assert multiprocessing.connection.wait([p.sentinel for p in procs], 10)


@pytest.mark.parametrize("face", [Executor, Pool], ids=["Executor", "Pool"])
def test_terminate_right_after_a_worker_died_holding_the_result_lock_returns(
    face: type[Executor] | type[Pool],
) -> None:
    # The pool's own shutdown takes the result queue's lock. Held by a worker
    # that died a moment ago, before the looks saw it, it made terminate()
    # (and so leaving a Pool's with block) wait for ever.
    owner = Executor("process", 2) if face is Executor else Pool(2)
    _kill_a_worker_in_its_result_write(owner)
    start = time.monotonic()
    ender = threading.Thread(target=owner.terminate, daemon=True)
    ender.start()
    ender.join(20)
    assert not ender.is_alive(), "terminate() waited for a dead worker's lock"
    assert time.monotonic() - start < 5


def test_interpreter_exit_right_after_a_worker_died_holding_the_result_lock_does_not_hang(
    tmp_path: Path,
) -> None:
    # multiprocessing's exit hook terminates the pools of executors never shut
    # down, and waited for ever on the lock; parallelkit terminates them first.
    script = tmp_path / "main.py"
    script.write_text(
        textwrap.dedent(
            """\
            import multiprocessing.connection
            import parallelkit
            from tests.helpers import die_after_result_header

            if __name__ == "__main__":
                ex = parallelkit.Executor("process", 2)
                print(ex.submit(abs, -1).result(20))
                procs = ex._engine.backend.processes()
                ex.submit(die_after_result_header)
                assert multiprocessing.connection.wait([p.sentinel for p in procs], 10)
            """
        ),
        encoding="utf-8",
    )
    proc = run_with_tests_importable(script, 40)
    assert (proc.returncode, proc.stdout) == (0, "1\n"), proc.stderr


def test_crash_error_pickles_with_its_attributes() -> None:
    import pickle

    err = WorkerCrashedError("boom", pid=1, exitcode=-9, task="task 1")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.pid, copy.exitcode, copy.task, str(copy)) == (1, -9, "task 1", "boom")


# -- per-task time limits ------------------------------------------------------------------


def test_task_timeout_kills_and_replaces_only_that_worker() -> None:
    with Executor("process", 2) as ex:
        steady = ex.submit(pid_after, 1.5)
        start = time.monotonic()
        with pytest.raises(
            TaskTimeoutError, match=r"ran longer than task_timeout=0.3s on worker pid"
        ):
            ex.submit(Timed(hang, 0.3)).result(10)
        assert time.monotonic() - start < 1.5
        survivor = steady.result(10)
        assert survivor != os.getpid()
        assert ex.submit(inc, 1).result(10) == 2


def test_time_limits_on_processes_are_kept_by_the_manager_thread() -> None:
    # The manager thread keeps the time: no thread of its own for deadlines.
    before = {t.ident for t in threading.enumerate()}
    with Executor("process", 2, task_timeout=5) as ex:
        start = time.monotonic()
        with pytest.raises(TaskTimeoutError):
            ex.submit(Timed(hang, 0.3)).result(10)
        assert time.monotonic() - start < 1.5
        assert [f.result(10) for f in [ex.submit(inc, i) for i in range(20)]] == list(range(1, 21))
        new = [t.name for t in threading.enumerate() if t.ident not in before]
        assert new == ["parallelkit-manager"]


def test_task_timeout_is_a_builtin_timeout_error() -> None:
    assert issubclass(TaskTimeoutError, TimeoutError)
    assert issubclass(TaskTimeoutError, parallelkit.ParallelkitError)


def test_executor_wide_task_timeout(backend: str) -> None:
    if backend == "serial":
        pytest.skip("covered by test_serial_checks_the_limit_after_the_task")
    with Executor(backend, 2, task_timeout=0.3) as ex:
        fut = ex.submit(sleep_then, 2.0)
        start = time.monotonic()
        with pytest.raises(TaskTimeoutError):
            fut.result(10)
        assert time.monotonic() - start < 1.5
        assert ex.submit(sleep_then, 0.0, 5).result(10) == 5


def test_thread_timeout_reports_on_time_and_says_the_thread_runs_on() -> None:
    with Executor("thread", 2) as ex:
        start = time.monotonic()
        with pytest.raises(TaskTimeoutError, match="its thread cannot be stopped and runs on"):
            ex.submit(Timed(sleep_then, 0.2), 1.0).result(10)
        assert time.monotonic() - start < 0.9


def test_serial_checks_the_limit_after_the_task() -> None:
    with Executor("serial") as ex:
        fut = ex.submit(Timed(sleep_then, 0.05), 0.2)
        assert fut.done()
        with pytest.raises(TaskTimeoutError):
            fut.result()


@pytest.mark.parametrize("face", ["map", "imap", "imap_unordered", "starmap"])
def test_task_timeout_keyword_on_every_map_of_the_executor(face: str, backend: str) -> None:
    if backend == "serial":
        pytest.skip("serial cannot interrupt; see test_serial_checks_the_limit_after_the_task")
    with Executor(backend, 2) as ex:
        if face == "starmap":
            results = ex.starmap(sleep_then, [(0.0, 1), (3.0, 2)], task_timeout=0.3)
        else:
            fn = getattr(ex, face)
            results = fn(sleep_then, [0.0, 3.0], task_timeout=0.3)
        start = time.monotonic()
        with pytest.raises(TaskTimeoutError):
            list(results)
        assert time.monotonic() - start < 2


@pytest.mark.parametrize("face", ["map", "imap", "imap_unordered", "starmap", "apply"])
def test_task_timeout_keyword_on_the_pool(face: str) -> None:
    with Pool(2, backend="process") as pool:
        start = time.monotonic()
        with pytest.raises(TaskTimeoutError):
            if face == "apply":
                pool.apply(sleep_then, (3.0,), task_timeout=0.3)
            elif face == "starmap":
                pool.starmap(sleep_then, [(0.0, 1), (3.0, 2)], task_timeout=0.3)
            else:
                list(getattr(pool, face)(sleep_then, [0.0, 3.0], task_timeout=0.3))
        assert time.monotonic() - start < 2
        late = pool.apply_async(sleep_then, (3.0,), task_timeout=0.2)
        late.wait(5)
        assert late.ready() and not late.successful()


def test_bad_task_timeout_raises_value_error() -> None:
    with pytest.raises(ValueError, match="task_timeout must be a number of seconds > 0"):
        Executor("serial", task_timeout=0)
    with pytest.raises(ValueError, match="Timed seconds must be a number of seconds > 0"):
        Timed(inc, -1)


# -- cancellation --------------------------------------------------------------------------


def test_cancel_with_kill_stops_a_running_task_on_the_process_backend() -> None:
    with Executor("process", 1) as ex:
        fut = ex.submit(hang)
        deadline = time.monotonic() + 10
        while not fut.running() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # let the worker take it
        assert not fut.cancel()
        assert ex.cancel(fut, kill=True)
        with pytest.raises(concurrent.futures.CancelledError, match="cancelled while running"):
            fut.result(5)
        assert ex.submit(inc, 1).result(10) == 2


def test_cancel_with_kill_before_the_worker_takes_it() -> None:
    with Executor("process", 1) as ex:
        blocker = ex.submit(sleep_then, 0.5, 1)
        queued = ex.submit(hang)  # handed to the pool but not taken yet
        time.sleep(0.1)
        assert ex.cancel(queued, kill=True)
        assert blocker.result(10) == 1
        assert ex.submit(inc, 1).result(10) == 2


def test_cancel_with_kill_on_threads_cannot_stop_a_running_task() -> None:
    with Executor("thread", 1) as ex:
        fut = ex.submit(sleep_then, 0.5, 1)
        time.sleep(0.1)
        assert not ex.cancel(fut, kill=True)
        assert fut.result(5) == 1


def test_async_result_cancel_kill() -> None:
    with Pool(1, backend="process") as pool:
        res = pool.apply_async(hang)
        time.sleep(0.5)
        assert res.cancel(kill=True)
        with pytest.raises(concurrent.futures.CancelledError):
            res.get(5)


# -- BaseException raised by a task -------------------------------------------------------


@pytest.mark.parametrize(("kind", "exc"), [("exit", SystemExit), ("interrupt", KeyboardInterrupt)])
def test_base_exception_in_a_task_reaches_the_caller(
    backend: str, kind: str, exc: type[BaseException]
) -> None:
    with Executor(backend, 2) as ex:
        if backend == "serial" and exc is KeyboardInterrupt:
            with pytest.raises(KeyboardInterrupt):
                ex.submit(raise_base, kind)  # inline: Ctrl-C semantics
        else:
            with pytest.raises(exc):
                ex.submit(raise_base, kind).result(10)
        assert ex.submit(inc, 1).result(10) == 2


# -- initializer ---------------------------------------------------------------------------


def test_failing_initializer_breaks_the_executor_instead_of_looping(backend: str) -> None:
    ex = Executor(backend, 2, initializer=failing_init)
    with pytest.raises(BrokenExecutorError, match="initializer broke") as info:
        ex.submit(inc, 1).result(10)
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(BrokenExecutorError):
        ex.submit(inc, 1)
    ex.terminate()


def test_main_module_without_guard_breaks_the_executor_instead_of_looping(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import parallelkit\n"
        "ex = parallelkit.Executor('process', 2)\n"
        "try:\n"
        "    ex.submit(abs, -1).result(30)\n"
        "except parallelkit.BrokenExecutorError as exc:\n"
        "    print('BROKEN', exc)\n"
        "ex.terminate()\n",
        encoding="utf-8",
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=50, check=False
    )
    assert "BROKEN" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert "__main__" in proc.stdout


# -- the caller is interrupted -------------------------------------------------------------

SCRIPT = """
import os, signal, sys, threading, time
import parallelkit
from parallelkit.testing import hang

def main():
    ex = parallelkit.Executor("process", 2)
    pids = set(ex.map(lambda _: os.getpid(), range(8), chunksize=1))
    print("PIDS", *sorted(pids), flush=True)
    sent = {}
    def later():
        time.sleep(0.5)
        sent["at"] = time.monotonic()
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    threading.Thread(target=later, daemon=True).start()
    try:
        with ex:
            list(ex.map(lambda _: hang(60), range(4), chunksize=1))
    except KeyboardInterrupt:
        print("INTERRUPTED", round(time.monotonic() - sent["at"], 3), flush=True)

if __name__ == "__main__":
    main()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_during_map_interrupts_within_a_second_and_stops_workers(
    signame: str, tmp_path: Path
) -> None:
    script = tmp_path / "interrupt.py"
    script.write_text(textwrap.dedent(SCRIPT), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script), signame],
        capture_output=True,
        text=True,
        timeout=40,
        check=False,
    )
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert "INTERRUPTED" in lines, proc.stdout + proc.stderr
    assert float(lines["INTERRUPTED"]) < 1.0
    pids = [int(p) for p in lines["PIDS"].split()]
    deadline = time.monotonic() + 3
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), "orphan workers"


@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
def test_workers_exit_when_their_owner_is_killed(start_method: str, tmp_path: Path) -> None:
    # Two executors (the second's workers are forked while the first's lifeline
    # is open), a child of the owner that outlives it, and workers busy in a
    # long task: none of them keeps a worker alive once the owner is gone.
    script = tmp_path / "owner.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys, time, parallelkit
            if __name__ == "__main__":
                first = parallelkit.Executor("process", 2, start_method={start_method!r})
                second = parallelkit.Executor("process", 1, start_method={start_method!r})
                slow_pid = lambda _: (time.sleep(0.1), os.getpid())[1]
                pids = set(first.map(slow_pid, range(6), chunksize=1))
                pids |= set(second.map(slow_pid, range(2), chunksize=1))
                child = os.fork()
                if child == 0:
                    time.sleep(20)
                    os._exit(0)
                first.submit(time.sleep, 30)
                second.submit(time.sleep, 30)
                time.sleep(0.3)
                print(child, flush=True)
                print(*sorted(pids), flush=True)
                os.kill(os.getpid(), 9)
            """
        ),
        encoding="utf-8",
    )
    # Output to files: the child that outlives the owner keeps any pipe open.
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("w") as stdout, err.open("w") as stderr:
        subprocess.run(
            [sys.executable, str(script)], stdout=stdout, stderr=stderr, timeout=40, check=False
        )
    killed = time.monotonic()
    lines = out.read_text().splitlines()
    assert len(lines) == 2, err.read_text()
    child, pids = int(lines[0]), [int(p) for p in lines[1].split()]
    try:
        assert len(pids) == 3, err.read_text()
        deadline = killed + 3
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not any(_alive(p) for p in pids), "workers outlived their owner"
        if sys.platform == "linux":  # the kernel kills them (elsewhere a thread looks every 0.25 s)
            assert time.monotonic() - killed < 1
        assert _alive(child)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


@pytest.mark.parametrize("backend_name", ["process", "thread"])
def test_interpreter_exit_with_an_executor_never_shut_down_does_not_hang(
    backend_name: str, tmp_path: Path
) -> None:
    script = tmp_path / "forgot.py"
    script.write_text(
        "import parallelkit\n"
        "if __name__ == '__main__':\n"
        f"    ex = parallelkit.Executor({backend_name!r}, 2)\n"
        "    print(ex.submit(abs, -1).result())\n",
        encoding="utf-8",
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30, check=False
    )
    assert (proc.returncode, proc.stdout) == (0, "1\n"), proc.stderr


# -- hygiene --------------------------------------------------------------------------------


def _semaphore_names(ex: Executor) -> set[str]:
    """Names of the named semaphores behind an executor's process pool (its task channel's lock)."""
    channel = getattr(ex._engine.backend, "_channel", None)  # pyright: ignore[reportPrivateUsage]
    semlock = getattr(getattr(channel, "lock", None), "_semlock", None)
    name = getattr(semlock, "name", None)
    return {name.lstrip("/")} if isinstance(name, str) else set()


def _prefix(owner: Executor | Pool) -> str:
    """The name prefix of a process executor's shared-memory segments."""
    backend = owner._engine.backend  # pyright: ignore[reportPrivateUsage]
    assert isinstance(backend, ProcessBackend)
    return backend._prefix  # pyright: ignore[reportPrivateUsage]


def _processes(owner: Executor | Pool) -> list[BaseProcess]:
    """The live worker processes of a process executor or pool."""
    backend = owner._engine.backend  # pyright: ignore[reportPrivateUsage]
    assert isinstance(backend, ProcessBackend)
    return backend.processes()


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend_name", ["process", "thread", "serial"])
def test_two_hundred_cycles_leak_nothing(backend_name: str) -> None:
    semaphores: set[str] = set()
    segments: set[str] = set()  # name prefixes of the process backend's shared memory
    big = b"x" * (1 << 20)  # above shared_threshold: through shared memory, both ways
    for i in range(200):
        with Executor(backend_name, 2) as ex:
            semaphores |= _semaphore_names(ex)
            if backend_name == "process":
                segments.add(_prefix(ex))
            assert ex.submit(inc, i).result(20) == i + 1
            assert list(ex.map(inc, range(3))) == [1, 2, 3]
            assert ex.submit(len, big).result(20) == len(big)
            assert len(ex.submit(bytes, len(big) + i).result(20)) == len(big) + i
        del ex  # the pool's semaphores are unlinked when it is collected
    if backend_name == "process":
        assert semaphores, "expected named semaphores under forkserver"
    gc.collect()
    left = {name for name in semaphores if os.path.exists(f"/dev/shm/sem.{name}")}
    assert not left, f"semaphores left in /dev/shm: {sorted(left)}"
    shared = [name for name in os.listdir("/dev/shm") if name.startswith(tuple(segments))]
    assert not shared, f"shared-memory segments left in /dev/shm: {sorted(shared)}"
    # processes, threads and descriptors are checked by the autouse leak fixture


def test_exit_worker_helper_refuses_to_kill_the_test_process() -> None:
    with pytest.raises(RuntimeError, match="only in a task on the process backend"):
        exit_worker()
    with pytest.raises(RuntimeError, match="only in a task on the process backend"):
        crash_worker()


def test_pid_helper_runs_in_a_worker() -> None:
    with Executor("process", 1) as ex:
        assert ex.submit(pid_of).result(10) != os.getpid()
