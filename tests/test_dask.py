"""The dask backend's own behaviour (the generic tests run on it through ``backend``)."""

from __future__ import annotations

import importlib.util
import itertools
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from parallelkit import (
    BrokenExecutorError,
    ConfigError,
    Executor,
    Pool,
    TaskTimeoutError,
    WorkerCrashedError,
)
from parallelkit._backends import _registry

distributed = pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")
dask = pytest.importorskip("dask")


def listening(pids: list[int]) -> list[str]:
    """The addresses the processes (and their children) listen on."""
    found: list[str] = []
    for pid in pids:
        proc = psutil.Process(pid)
        for p in [proc, *proc.children(recursive=True)]:
            for conn in p.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.append(conn.laddr.ip)
    return found


def pid_of_task(_: object = None) -> int:
    return os.getpid()


def sleep_then(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


_initialized: list[str] = []


def remember(tag: str) -> None:
    _initialized.append(tag)


def initialized(_: object = None) -> list[str]:
    return list(_initialized)


def fail_init() -> None:
    raise RuntimeError("no database")


def test_import_parallelkit_does_not_import_dask() -> None:
    code = "import parallelkit, sys; print('distributed' in sys.modules or 'dask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_dask_the_flag_raises_config_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name == "distributed" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigError, match=r"pip install parallelkit\[dask\]"):
        Executor("dask")
    assert "dask" not in _registry.available_backends()


def test_workers_with_an_address_is_a_config_error(parallelkit_dask_address: str) -> None:
    with pytest.raises(ConfigError, match="the cluster decides"):
        Executor("dask", 2, address=parallelkit_dask_address)


def test_client_with_another_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="backend='dask'"):
        Executor("thread", client=object())


def test_max_tasks_per_worker_is_refused_with_the_dask_alternative(
    parallelkit_dask_address: str,
) -> None:
    with pytest.raises(ConfigError, match="lifetime"):
        Executor("dask", address=parallelkit_dask_address, max_tasks_per_worker=3)


def test_address_comes_from_the_environment(
    parallelkit_dask_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARALLELKIT_BACKEND", "dask")
    monkeypatch.setenv("PARALLELKIT_ADDRESS", parallelkit_dask_address)
    with Executor(workers=4) as ex:  # code written for any backend: the cluster decides
        assert ex.backend == "dask"
        assert ex.workers == 2
        assert list(ex.map(abs, [-1, -2])) == [1, 2]


def test_own_cluster_listens_on_loopback_only_and_leaves_no_process() -> None:
    me = os.getpid()
    before = set(psutil.Process(me).children(recursive=True))
    with Executor("dask", 2) as ex:
        assert ex.submit(sum, [1, 2]).result(30) == 3
        addresses = listening([me])
        assert addresses and set(addresses) == {"127.0.0.1"}
        workers = {
            p
            for p in set(psutil.Process(me).children(recursive=True)) - before
            if "multiprocessing.resource_tracker" not in " ".join(p.cmdline())
            and "multiprocessing.forkserver" not in " ".join(p.cmdline())
        }
        assert len(workers) >= 2
    _, alive = psutil.wait_procs(list(workers), timeout=10)
    assert not alive


@pytest.fixture
def separate_cluster() -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """``dask scheduler`` and ``dask worker`` as processes of their own, on 127.0.0.1."""
    folder = tempfile.mkdtemp()
    file = os.path.join(folder, "scheduler.json")
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    procs = [
        subprocess.Popen(
            [
                dask,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--dashboard-address",
                "127.0.0.1:0",
                "--scheduler-file",
                file,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    ]
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(file):
            assert time.monotonic() < deadline, "dask scheduler did not start"
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written whole, but give it a moment
        procs.append(
            subprocess.Popen(
                [
                    dask,
                    "worker",
                    "--scheduler-file",
                    file,
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--dashboard-address",
                    "127.0.0.1:0",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        )
        import json

        with open(file, encoding="utf-8") as f:
            address = json.load(f)["address"]
        yield address, procs
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if os.path.exists(file):
            os.unlink(file)
        os.rmdir(folder)


def test_a_cluster_of_separate_processes_is_reached_by_address(
    separate_cluster: tuple[str, list[subprocess.Popen[bytes]]],
) -> None:
    address, procs = separate_cluster
    with distributed.Client(address, set_as_default=False) as client:
        client.wait_for_workers(1, timeout=30)
    with Executor("dask", address=address) as ex:
        assert list(ex.map(abs, range(-1000, 0), chunksize=100)) == list(range(1000, 0, -1))
        assert ex.submit(os.getpid).result(30) not in {os.getpid(), *(p.pid for p in procs)}
    addresses = listening([p.pid for p in procs])
    assert addresses and set(addresses) == {"127.0.0.1"}


def test_session_cluster_listens_on_loopback_only(parallelkit_dask_address: str) -> None:
    assert parallelkit_dask_address.startswith("tcp://127.0.0.1:")
    me = psutil.Process(os.getpid())
    clusters = [p.pid for p in me.children() if "parallelkit.testing._cluster" in p.cmdline()]
    assert len(clusters) == 1
    addresses = listening(clusters)
    assert addresses and set(addresses) == {"127.0.0.1"}


def test_worker_killed_mid_task_raises_worker_crashed(
    parallelkit_dask_address: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Executor("dask", address=parallelkit_dask_address) as ex:
        future = ex.submit(sleep_then, 30)
        deadline = time.monotonic() + 20
        victim = None
        while victim is None:  # the worker tells which process took the task
            assert time.monotonic() < deadline
            victim = _running_pid(ex)
            time.sleep(0.05)
        os.kill(victim, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(WorkerCrashedError, match="died while running"):
            future.result(10)
        assert time.monotonic() - start < 5
        assert ex.submit(abs, -3).result(60) == 3
    (warning,) = [r for r in caplog.records if r.name == "parallelkit"]
    assert warning.levelno == logging.WARNING
    assert f"(pid {victim}) died while running task " in warning.getMessage()


def _running_pid(ex: Executor) -> int | None:
    engine = ex._engine  # pyright: ignore[reportPrivateUsage]
    for chunk in list(engine._running.values()):  # pyright: ignore[reportPrivateUsage]
        if chunk.pid is not None:
            return chunk.pid
    return None


def test_task_timeout_restarts_the_worker_and_the_executor_goes_on(
    parallelkit_dask_address: str,
) -> None:
    with Executor("dask", address=parallelkit_dask_address, task_timeout=1.0) as ex:
        start = time.monotonic()
        with pytest.raises(TaskTimeoutError, match="task_timeout=1s"):
            ex.submit(sleep_then, 60).result(30)
        assert time.monotonic() - start < 10
        assert ex.submit(sleep_then, 0.01).result(60) == "done"


def test_cancel_kill_stops_a_running_task(
    parallelkit_dask_address: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Pool(backend="dask", address=parallelkit_dask_address) as pool:
        _kill_a_running_task_then_apply(pool)
    (warning,) = [r for r in caplog.records if r.name == "parallelkit"]
    assert warning.levelno == logging.WARNING
    assert "(fn=sleep_then) was cancelled while running; worker pid " in warning.getMessage()


def test_kills_in_a_row_never_take_a_later_task_with_them(parallelkit_dask_address: str) -> None:
    # Each kill comes while the other worker may still be coming back, so the
    # next task is often handed to the very worker being killed: it must be
    # held there and sent again (under a new key), never fail as crashed.
    for _ in range(4):
        with Pool(backend="dask", address=parallelkit_dask_address) as pool:
            _kill_a_running_task_then_apply(pool)


def _kill_a_running_task_then_apply(pool: Pool) -> None:
    """Start a long task, cancel it with kill once it runs, and run one more task at once."""
    result = pool.apply_async(sleep_then, (60,))
    deadline = time.monotonic() + 20
    while _running_pid_pool(pool) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert result.cancel(kill=True)
    assert pool.apply(abs, (-4,)) == 4


def _running_pid_pool(pool: Pool) -> int | None:
    engine = pool._engine  # pyright: ignore[reportPrivateUsage]
    for chunk in list(engine._running.values()):  # pyright: ignore[reportPrivateUsage]
        if chunk.pid is not None:
            return chunk.pid
    return None


def test_initializer_runs_once_in_each_worker(parallelkit_dask_address: str) -> None:
    with Executor(
        "dask", address=parallelkit_dask_address, initializer=remember, initargs=("ready",)
    ) as ex:
        seen = list(ex.map(initialized, range(8), chunksize=1))
        assert all(s.count("ready") == 1 for s in seen)


def test_failing_initializer_breaks_the_executor(parallelkit_dask_address: str) -> None:
    with (
        Executor("dask", address=parallelkit_dask_address, initializer=fail_init) as ex,
        pytest.raises(BrokenExecutorError, match="no database"),
    ):
        ex.submit(abs, 1).result(30)
    # No plugin of ours is left on the shared cluster (neither this failed one,
    # nor those of executors closed before): left there, a failed one would fail
    # every worker started later, and their nannies would close for good.
    with distributed.Client(parallelkit_dask_address, set_as_default=False) as client:
        names = client.run_on_scheduler(_worker_plugin_names)
    assert not [name for name in names if name.startswith("parallelkit-init")]


def _worker_plugin_names(dask_scheduler: Any) -> list[str]:
    return list(dask_scheduler.worker_plugins)


def test_own_cluster_starts_again_a_worker_whose_nanny_it_closed() -> None:
    # With a lost-worker timeout shorter than a worker's restart, LocalCluster
    # closes the nanny of the worker a task_timeout killed: the executor must
    # start it again, or with its last worker gone every chunk would wait.
    with (
        dask.config.set({"distributed.deploy.lost-worker-timeout": "0.1s"}),
        Executor("dask", 2, task_timeout=0.5) as ex,
    ):
        with pytest.raises(TaskTimeoutError):
            ex.submit(sleep_then, 30).result(30)
        backend: Any = ex._engine.backend  # pyright: ignore[reportPrivateUsage]
        deadline = time.monotonic() + 30
        time.sleep(1.0)  # past the timeout and the heal that follows it
        while len(backend._client.nthreads()) < 2:
            assert time.monotonic() < deadline, "the killed worker never came back"
            time.sleep(0.1)
        assert ex.submit(abs, -3).result(30) == 3


def test_a_given_client_stays_open(parallelkit_dask_address: str) -> None:
    with distributed.Client(parallelkit_dask_address, set_as_default=False) as client:
        with Executor("dask", client=client) as ex:
            assert ex.submit(abs, -5).result(30) == 5
        assert client.status == "running"
        assert client.submit(abs, -6).result(30) == 6


def test_imap_over_an_endless_generator_keeps_a_bounded_window(
    parallelkit_dask_address: str,
) -> None:
    with Executor("dask", address=parallelkit_dask_address) as ex:
        backend: Any = ex._engine.backend  # pyright: ignore[reportPrivateUsage]
        peak = 0
        for i, value in enumerate(ex.map(abs, itertools.count())):
            assert value == i
            peak = max(peak, len(backend._chunks))
            if i == 200_000:
                break
        assert 0 < peak <= backend.window
