"""Module-level task functions for tests (importable by worker processes)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: Every start method this platform has (fork, spawn, forkserver on Linux).
START_METHODS = multiprocessing.get_all_start_methods()
#: For a test under fork: Python 3.12+ warns about forking a process with threads.
FORK_WARNING = "ignore:.*fork.*:DeprecationWarning"


def loop_size(backend: str, n: int) -> int:
    """``n``, or a tenth of it where each channel operation is a round trip to a scheduler."""
    from parallelkit._backends._registry import runs_on_cluster

    return max(1, n // 10) if runs_on_cluster(backend) else n


def inc(x: int) -> int:
    return x + 1


def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b


def pid_of(_: object = None) -> int:
    return os.getpid()


def sleep_then(seconds: float, value: int = 0) -> int:
    time.sleep(seconds)
    return value


def fail_on(x: int, bad: int = 3) -> int:
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


class CustomError(Exception):
    """A picklable exception with extra state."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message, code)
        self.code = code


def raise_custom(code: int) -> None:
    raise CustomError("custom failure", code)


def raise_base(kind: str) -> None:
    if kind == "exit":
        raise SystemExit(3)
    raise KeyboardInterrupt


def set_env(key: str, value: str) -> None:
    os.environ[key] = value


def get_env(key: str) -> str | None:
    return os.environ.get(key)


def seed_run(total: int) -> None:
    """The seed tutorial's CPU-bound job, printing its result."""
    acc = 0
    for i in range(total):
        acc += i
    print(acc, flush=True)


def crash_on(x: int, bad: int = 3) -> int:
    """Kill the worker on item ``bad``; return the others."""
    if x == bad:
        from parallelkit.testing import crash_worker

        crash_worker()
    return x


def segfault() -> None:
    import ctypes

    ctypes.string_at(0)


def exit_now(code: int = 1) -> None:
    os._exit(code)


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def failing_init() -> None:
    raise RuntimeError("initializer broke")


def die_after_result_header() -> bytes:
    """Return 100 kB, and die once the length of that result is written, before its body.

    A profile hook (this thread only) kills the worker when multiprocessing's
    ``Connection._send`` returns for the first time: for a large message that
    first write is the length, so the result queue is left with a message
    that never ends.
    """

    def hook(frame: Any, event: str, arg: object) -> None:
        code = frame.f_code
        if event == "return" and code.co_name == "_send" and "connection" in code.co_filename:
            os.kill(os.getpid(), signal.SIGKILL)

    sys.setprofile(hook)
    return b"x" * 100_000


def pause_in_result_write() -> int:
    """Return 1, then stop for 30 s inside the write of that result, holding its lock.

    A profile hook (this thread only) sleeps when multiprocessing's
    ``Connection._send`` is called: the result queue's lock is held by then,
    and no byte of the result is written.
    """

    def hook(frame: Any, event: str, arg: object) -> None:
        code = frame.f_code
        if event == "call" and code.co_name == "_send" and "connection" in code.co_filename:
            sys.setprofile(None)
            time.sleep(30)

    sys.setprofile(hook)
    return 1


def parallelkit_modules() -> list[str]:
    """The parallelkit and cloudpickle modules loaded in this process."""
    return sorted(m for m in sys.modules if m.split(".")[0] in ("parallelkit", "cloudpickle"))


def run_with_tests_importable(script: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a Python script in a new interpreter that can import ``tests.helpers``.

    The script runs from the project's root, with the root on ``PYTHONPATH``
    (its workers, under any start method, import what it imports). Output is captured.
    """
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )


def run_user_script(
    source: str,
    tmp_path: Path,
    *,
    backend: str,
    start_method: str | None = None,
    name: str = "program",
) -> subprocess.CompletedProcess[str]:
    """Run ``source`` as a user's script ``<name>.py`` in ``tmp_path``, on ``backend``.

    The backend (and, if given, the start method) come from the environment,
    as an operator would set them; output is unbuffered, as on a terminal,
    and captured.
    """
    script = tmp_path / f"{name}.py"
    script.write_text(source, encoding="utf-8")
    env = {
        **os.environ,
        "PARALLELKIT_BACKEND": backend,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    env.pop("PARALLELKIT_START_METHOD", None)
    if start_method is not None:
        env["PARALLELKIT_START_METHOD"] = start_method
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=tmp_path,
        env=env,
        check=False,
    )
