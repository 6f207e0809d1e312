"""How a process worker ends: the same way whichever start method made it.

A worker's output and exit functions are not lost, and no worker tears the
interpreter down on its way out (``multiprocessing``'s spawned workers do,
which ``join()`` then waits for).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .helpers import run_with_tests_importable

SCRIPT = """\
import atexit
import multiprocessing
import os
import sys

import parallelkit


class TornDown:
    def __del__(self, write=os.write):
        write(1, b"torn down\\n")  # unbuffered: works while the interpreter is torn down


def setup():
    global kept
    kept = TornDown()
    atexit.register(sys.stdout.write, "exit functions ran\\n")


def task(x):
    # Buffered (stdout is a pipe): it must be flushed when the worker ends.
    sys.stdout.write(f"task {{x}} ran in {{type(multiprocessing.current_process()).__name__}}\\n")
    return x


if __name__ == "__main__":
    pool = parallelkit.Pool(1, initializer=setup, start_method={method!r})
    assert pool.map(task, [1]) == [1]
    pool.close()
    pool.join()
    print("joined")
"""


def _run(method: str, tmp_path: Path) -> list[str]:
    script = tmp_path / "main.py"
    script.write_text(SCRIPT.format(method=method), encoding="utf-8")
    proc = run_with_tests_importable(script, 60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


#: The process class a worker runs in, by start method: parallelkit's own under spawn.
WORKER_CLASS = {"fork": "ForkProcess", "spawn": "SpawnedWorker", "forkserver": "ForkServerProcess"}

#: Where a worker runs its exit functions: spawned ones on every version.
EXIT_FUNCTIONS_RUN = [
    "spawn",
    *(
        pytest.param(
            method,
            marks=pytest.mark.skipif(
                sys.version_info < (3, 13),
                reason="fork and forkserver workers run exit functions from Python 3.13 on",
            ),
        )
        for method in ("fork", "forkserver")
    ),
]


@pytest.mark.parametrize("method", list(WORKER_CLASS))
def test_a_worker_flushes_its_output_and_skips_the_teardown(method: str, tmp_path: Path) -> None:
    lines = _run(method, tmp_path)
    assert f"task 1 ran in {WORKER_CLASS[method]}" in lines, lines
    assert "torn down" not in lines, lines
    assert lines[-1] == "joined", lines


@pytest.mark.parametrize("method", EXIT_FUNCTIONS_RUN)
def test_a_worker_runs_its_exit_functions_before_join_returns(method: str, tmp_path: Path) -> None:
    lines = _run(method, tmp_path)
    assert lines.index("exit functions ran") < lines.index("joined"), lines
