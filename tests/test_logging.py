"""Log records of the workers reach the parent's handlers; parallelkit's own logger."""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import parallelkit
from parallelkit import Executor, TaskTimeoutError, WorkerCrashedError, _logs, _worker
from parallelkit._backends._process import Backend as ProcessBackend

APP = "tests.logging.app"


class Collect(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.delay = delay

    def emit(self, record: logging.LogRecord) -> None:
        if self.delay:
            time.sleep(self.delay)
        self.records.append(record)

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture
def app_log() -> Iterator[Collect]:
    """A handler on the APP logger (level INFO, not propagating) of this process."""
    logger = logging.getLogger(APP)
    handler = Collect()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


def log_and_tell(text: str) -> tuple[int, str]:
    """Log ``text`` at INFO on APP; return this process's pid and name."""
    logging.getLogger(APP).info("%s from the task", text)
    return os.getpid(), multiprocessing.current_process().name


def log_failure() -> None:
    """Log an exception with its traceback."""
    try:
        raise ValueError("bad value")
    except ValueError:
        logging.getLogger(APP).exception("it failed")


def log_then_die(text: str) -> None:
    """Log ``text``, then SIGKILL this worker."""
    logging.getLogger(APP).warning("%s", text)
    os.kill(os.getpid(), signal.SIGKILL)


def log_many(count: int) -> int:
    """Log ``count`` records from the task."""
    logger = logging.getLogger(APP)
    for i in range(count):
        logger.info("record %d", i)
    return count


def log_error(text: str) -> None:
    """Log ``text`` at ERROR on APP."""
    logging.getLogger(APP).error("%s", text)


def log_from_a_thread(text: str) -> None:
    """Log ``text`` from a thread of the task's own while the task logs too."""
    thread = threading.Thread(target=log_many, args=(50,))
    thread.start()
    log_many(50)
    thread.join()
    logging.getLogger(APP).info("%s", text)


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def log_then_sleep(seconds: float) -> None:
    logging.getLogger(APP).info("sleeping")
    time.sleep(seconds)


def log_many_then_sleep(count: int, seconds: float) -> None:
    log_many(count)
    log_then_sleep(seconds)


def own_pid() -> int:
    return os.getpid()


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


# -- records of the workers ------------------------------------------------------------


def test_a_record_logged_in_a_task_reaches_the_parents_handler(
    backend: str, app_log: Collect
) -> None:
    with Executor(workers=2) as ex:
        pid, name = ex.submit(log_and_tell, "hello").result(30)
    assert app_log.messages() == ["hello from the task"]
    (record,) = app_log.records
    assert (record.process, record.processName) == (pid, name)
    assert record.levelno == logging.INFO
    if backend == "process":
        assert pid != os.getpid()


@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
def test_process_worker_records_carry_the_workers_pid_and_name(
    start_method: str, app_log: Collect
) -> None:
    with Executor("process", 2, start_method=start_method) as ex:
        told = [ex.submit(log_and_tell, f"task {i}").result(30) for i in range(3)]
    assert sorted(app_log.messages()) == [f"task {i} from the task" for i in range(3)]
    got = sorted((r.getMessage(), r.process, r.processName) for r in app_log.records)
    assert got == [(f"task {i} from the task", *told[i]) for i in range(3)]


@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
def test_a_record_logged_just_before_a_sigkill_still_arrives(
    start_method: str, app_log: Collect
) -> None:
    with Executor("process", 1, start_method=start_method) as ex:
        future = ex.submit(log_then_die, "last words")
        with pytest.raises(WorkerCrashedError):
            future.result(30)
    assert app_log.messages() == ["last words"]


def test_an_exception_logged_in_a_worker_arrives_with_its_traceback(app_log: Collect) -> None:
    with Executor("process", 1, start_method="spawn") as ex:
        ex.submit(log_failure).result(30)
    (record,) = app_log.records
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("it failed\nTraceback")
    assert "ValueError: bad value" in record.getMessage()


def test_records_from_a_tasks_own_threads_arrive_whole(app_log: Collect) -> None:
    # Two threads of one worker write to its one pipe: no record is cut or mixed.
    with Executor("process", 1, start_method="forkserver") as ex:
        ex.submit(log_from_a_thread, "done").result(30)
    messages = app_log.messages()
    assert messages[-1] == "done"
    assert sorted(messages[:-1]) == sorted([f"record {i}" for i in range(50)] * 2)


def test_with_forwarding_off_records_stay_in_the_worker(
    app_log: Collect, capfd: pytest.CaptureFixture[str]
) -> None:
    with (
        parallelkit.config(forward_logging=False),
        Executor("process", 1, start_method="spawn") as ex,
    ):
        ex.submit(log_error, "kept in the worker").result(30)
    assert app_log.records == []
    assert "kept in the worker" in capfd.readouterr().err  # logging's last resort, there


def test_a_worker_does_not_print_a_record_it_forwards(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # Under fork the worker inherits the parent's handlers: it must not use them.
    logger = logging.getLogger(APP)
    file_handler = logging.FileHandler(tmp_path / "log.txt", encoding="utf-8")
    logger.addHandler(file_handler)
    try:
        with Executor("process", 1, start_method="fork") as ex:
            ex.submit(log_error, "once only").result(30)
    finally:
        logger.removeHandler(file_handler)
        file_handler.close()
    assert (tmp_path / "log.txt").read_text(encoding="utf-8") == "once only\n"
    assert "once only" not in capfd.readouterr().err


def test_records_wait_in_the_workers_while_a_slow_handler_catches_up(
    app_log: Collect, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past LIMIT waiting records the manager stops reading the pipe: nothing is
    # lost, every record arrives in order, and the task still ends.
    monkeypatch.setattr(_logs, "LIMIT", 4)
    app_log.delay = 0.002
    with Executor("process", 1, start_method="fork") as ex:
        assert ex.submit(log_many, 300).result(30) == 300
    assert app_log.messages() == [f"record {i}" for i in range(300)]


def test_the_log_listener_starts_on_the_first_record_and_stops_with_the_executor(
    app_log: Collect,
) -> None:
    def listeners() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "parallelkit-logging"]

    with Executor("process", 1, start_method="fork") as ex:
        assert ex.submit(own_pid).result(30) != os.getpid()
        assert listeners() == []
        ex.submit(log_and_tell, "start it").result(30)
        assert len(listeners()) == 1
    assert listeners() == []
    assert app_log.messages() == ["start it from the task"]


def test_a_record_of_a_level_the_parent_ignores_is_not_handed_over(app_log: Collect) -> None:
    logging.getLogger(APP).setLevel(logging.WARNING)
    with Executor("process", 1, start_method="spawn") as ex:
        ex.submit(log_and_tell, "too low").result(30)
        ex.submit(log_error, "high enough").result(30)
    assert app_log.messages() == ["high enough"]


# -- parallelkit's own logger --------------------------------------------------------------


def own_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "parallelkit" and r.levelno == level]


def test_a_normal_run_logs_nothing_at_info_or_above(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="parallelkit")
    with Executor(workers=2) as ex:
        assert list(ex.map(abs, range(-20, 0))) == list(range(20, 0, -1))
        assert ex.submit(abs, -3).result(30) == 3
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []
    debug = [r.getMessage() for r in own_records(caplog, logging.DEBUG)]
    assert any(m.startswith("Executor started") for m in debug)
    assert any(m.endswith("stopped") for m in debug)


def test_process_workers_starting_and_ending_are_logged_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="parallelkit")
    with Executor("process", 2, start_method="fork") as ex:
        backend = ex._engine.backend  # pyright: ignore[reportPrivateUsage]
        assert isinstance(backend, ProcessBackend)
        pids = {proc.pid for proc in backend.processes()}
    debug = [r.getMessage() for r in own_records(caplog, logging.DEBUG)]
    for pid in pids:
        assert f"started worker pid {pid} (fork)" in debug
        assert f"worker pid {pid} ended with exit code 0" in debug
    assert own_records(caplog, logging.WARNING) == []


def test_a_crash_logs_one_warning_naming_the_worker_and_the_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="parallelkit")
    with Executor("process", 1, start_method="fork") as ex:
        pid = ex.submit(own_pid).result(30)
        with pytest.raises(WorkerCrashedError):
            ex.submit(die).result(30)
        assert ex.submit(own_pid).result(30) != pid  # replaced
    (warning,) = own_records(caplog, logging.WARNING)
    text = warning.getMessage()
    assert text.startswith(f"worker pid {pid} died with signal SIGKILL while running task ")
    assert "(fn=die)" in text
    assert "; started worker pid " in text


def test_a_task_past_its_time_limit_logs_a_warning(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Executor(workers=1, task_timeout=0.2) as ex, pytest.raises(TaskTimeoutError):
        ex.submit(sleep_for, 1.0).result(30)
    (warning,) = own_records(caplog, logging.WARNING)
    assert "(fn=sleep_for) ran longer than task_timeout=0.2s" in warning.getMessage()


def test_cancel_with_kill_logs_a_warning(
    caplog: pytest.LogCaptureFixture, app_log: Collect
) -> None:
    with Executor("process", 1, start_method="fork") as ex:
        pid = ex.submit(own_pid).result(30)
        future = ex.submit(log_then_sleep, 20.0)
        deadline = time.monotonic() + 10
        # The record comes after the worker's word that it took the task.
        while not app_log.records and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ex.cancel(future, kill=True)
    (warning,) = own_records(caplog, logging.WARNING)
    assert warning.getMessage().startswith("task ")
    assert f"(fn=log_then_sleep) was cancelled while running; worker pid {pid} is killed" in (
        warning.getMessage()
    )


def test_records_left_in_the_pipe_of_a_worker_stopped_by_terminate_still_arrive(
    app_log: Collect, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slow handler: the manager stops reading the worker's pipe, where the
    # records wait when terminate() kills the worker; they are read after.
    monkeypatch.setattr(_logs, "LIMIT", 4)
    app_log.delay = 0.005
    ex = Executor("process", 1, start_method="forkserver")
    try:
        ex.submit(log_many_then_sleep, 50, 20.0)
        deadline = time.monotonic() + 10
        while not app_log.records and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        ex.terminate()
    assert app_log.messages() == [f"record {i}" for i in range(50)] + ["sleeping"]


# -- the worker's end, in this process -------------------------------------------------------


def test_a_record_with_an_extra_that_does_not_pickle_is_sent_with_its_repr() -> None:
    sent: list[bytes] = []

    def write(blob: bytes) -> bool:
        sent.append(blob)
        return True

    handler = _logs.PipeHandler(write)
    lock = threading.Lock()
    record = logging.LogRecord(APP, logging.INFO, __file__, 1, "got %s", ("it",), None)
    record.lock = lock
    handler.handle(record)
    (blob,) = sent
    assert blob[:1] == _logs.LOG_RECORD
    state = pickle.loads(blob[1:])
    assert (state["msg"], state["args"], state["lock"]) == ("got it", None, repr(lock))


def test_a_record_that_cannot_be_written_goes_to_the_last_resort(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    last = logging.StreamHandler(sys.stderr)
    monkeypatch.setattr(logging, "lastResort", last)
    handler = _logs.PipeHandler(lambda blob: False)
    handler.handle(logging.LogRecord(APP, logging.WARNING, __file__, 1, "kept", None, None))
    assert capsys.readouterr().err == "kept\n"


def test_a_message_written_while_this_thread_writes_one_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As from a signal handler that interrupts the worker's own write: no
    # second message may start in the middle of the first.
    reader, writer = multiprocessing.Pipe(duplex=False)
    with reader, writer:
        monkeypatch.setattr(_worker, "_ack", writer)
        inner: list[bool] = []
        assert _worker.write_message(b"Lfirst")
        assert _worker._with_outbox(lambda: inner.append(_worker.write_message(b"Lsecond")))  # pyright: ignore[reportPrivateUsage]
        assert inner == [False]
        assert reader.recv_bytes() == b"Lfirst"
        assert not reader.poll()
