"""The fault table: what each process pool does when a task or a worker misbehaves.

Usage::

    python benchmarks/fault_table.py                     # every fault, every library (4-5 min)
    python benchmarks/fault_table.py --timeout 5         # kill a hung scenario after 5 s
    python benchmarks/fault_table.py --only sigkill      # rows/columns whose "fault/library"
    python benchmarks/fault_table.py --only 'parallelkit*' --only mp.Pool   # contains PATTERN

Every (fault, library) pair runs in a fresh interpreter, in a process group of
its own, so that a hang or a crash cannot touch this script or the next scenario.
The scenario reports what happens as it goes (``begin``, ``end``, ...); when
the faulty call has not returned ``--timeout`` seconds after it began, the
whole process group is killed and the cell says ``hangs (killed after 10 s)``.
After each scenario the group is killed as well, and every process that
carries the run's environment marker (also one that left the group) with it,
so nothing a scenario started survives it.

Each scenario uses 2 workers (1 for the time-limit and cancel rows) and the
forkserver start method for every library, except the three lambda rows (one
per start method). The faulty call is made the way user code makes it
(``apply_async().get()``, ``submit().result()``, ``imap`` / ``map``), with no
time limit of its own. After it, the scenario checks whether the pool still
runs a task (``pow(2, 10)`` within 3 s: *pool usable*; *pool dead* when
submitting or the result raises; *pool blocked* when nothing comes) and shuts
it down gracefully (``close()`` + ``join()`` or ``shutdown(wait=True)``); the
cell mentions the shutdown only when it took longer than 2 s. The owner rows
instead signal the process that created the pool 1 s into its wait for
results, and tell which of its processes are still alive 2 s after it died.

Libraries: ``multiprocessing.Pool``, ``concurrent.futures.ProcessPoolExecutor``,
``parallelkit.Executor`` and ``parallelkit.Pool`` on the process backend;
loky (the package, or the copy inside joblib) and pebble when importable.
The table goes to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import importlib
import json
import os
import platform
import selectors
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib.metadata import version
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
MARKER = "FAULT_TABLE_RUN"
PREFIX = "@@fault-table "
WORKERS = 2
METHOD = "forkserver"
#: Seconds the probe task (and the graceful shutdown) may take after the fault.
PROBE_LIMIT = 3.0
SHUTDOWN_LIMIT = 2.0
#: How long the owner rows watch for workers that outlive their owner.
ORPHAN_WAIT = 2.0
#: How long a pool may take to start before the scenario counts as hung.
START_LIMIT = 30.0
#: The sleep of the tasks the owner rows interrupt (a task that "runs").
LONG_TASK = 30.0

# Booted with ``python -c`` so that this file is imported as the module
# ``fault_table``: task functions then travel by reference to every library's
# workers, under every start method (the forkserver and spawned workers get
# this folder on ``sys.path`` from multiprocessing's preparation data).
BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); import fault_table; "
    "sys.exit(fault_table.child_main(sys.argv[2:]))"
)


# -- tasks (run in the workers) -----------------------------------------------------------


def power(base: int = 2, exponent: int = 10) -> int:
    return int(base**exponent)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)


def exit_self() -> None:
    os._exit(1)


def segfault() -> None:
    import ctypes

    ctypes.string_at(0)


class TwoArgError(Exception):
    """Its constructor needs 2 arguments, ``args`` holds 1: unpickling it fails."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code


def raise_two_arg_error() -> None:
    raise TwoArgError("boom", 7)


class Unpicklable:
    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("cannot pickle 'Unpicklable' object")


def return_unpicklable() -> Unpicklable:
    return Unpicklable()


def raise_system_exit() -> None:
    raise SystemExit(3)


def raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


def die_while_sending_result() -> int:
    """Return 1, and die inside the worker's write of that result to the result queue.

    A profile hook (this thread only) kills the process when multiprocessing's
    ``Connection._send`` is entered: the worker holds the result queue's write
    lock at that moment, as it would if it were killed halfway through a large
    result.
    """

    def hook(frame: Any, event: str, arg: object) -> None:
        code = frame.f_code
        if event == "call" and code.co_name == "_send" and "connection" in code.co_filename:
            os.kill(os.getpid(), signal.SIGKILL)

    sys.setprofile(hook)
    return 1


def hang() -> None:
    time.sleep(3600)


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def square(x: int) -> int:
    return x * x


def square_or_die(x: int) -> int:
    if x == 3:
        kill_self()
    time.sleep(0.05)
    return x * x


def failing_initializer() -> None:
    raise RuntimeError("the initializer failed")


def make_adder(offset: int) -> Callable[[int], int]:
    return lambda x: x + offset  # a closure and a lambda: plain pickle refuses both


def input_that_raises() -> Iterator[int]:
    yield from range(3)
    raise ValueError("the input broke after 3 items")


# -- the libraries, behind one small interface (used in the child) ------------------------


class Lib:
    """One library's pool: submit, wait, map, cancel, shut down."""

    #: Whether the library limits a task's time itself (and stops the task).
    native_limit = False

    def __init__(
        self,
        workers: int,
        method: str,
        initializer: Callable[[], None] | None,
        task_timeout: float | None,
    ) -> None:
        self.pool: Any = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    def wait(self, handle: Any, timeout: float | None = None) -> Any:
        return handle.result(timeout)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.wait(self.submit(fn, *args))

    def cancel(self, handle: Any) -> tuple[str, Any]:
        return "future.cancel()", handle.cancel()

    def lazy_map(self, fn: Callable[[Any], Any], items: Iterable[Any], chunksize: int) -> Any:
        return self.pool.map(fn, items, chunksize=chunksize)

    def map_list(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        return list(self.pool.map(fn, items))

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True)


class MpPool(Lib):
    label = "multiprocessing.Pool"
    calls = "apply_async().get(), imap"

    def __init__(
        self,
        workers: int,
        method: str,
        initializer: Callable[[], None] | None,
        task_timeout: float | None,
    ) -> None:
        import multiprocessing

        self.pool = multiprocessing.get_context(method).Pool(workers, initializer)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.apply_async(fn, args)

    def wait(self, handle: Any, timeout: float | None = None) -> Any:
        return handle.get(timeout)

    def cancel(self, handle: Any) -> tuple[str, Any]:
        return "(no cancel API)", None

    def lazy_map(self, fn: Callable[[Any], Any], items: Iterable[Any], chunksize: int) -> Any:
        return self.pool.imap(fn, items, chunksize)

    def map_list(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        return list(self.pool.map(fn, items))

    def shutdown(self) -> None:
        self.pool.close()
        self.pool.join()


class Ppe(Lib):
    label = "ProcessPoolExecutor"
    calls = "submit().result(), map"

    def __init__(
        self,
        workers: int,
        method: str,
        initializer: Callable[[], None] | None,
        task_timeout: float | None,
    ) -> None:
        import concurrent.futures
        import multiprocessing

        self.pool = concurrent.futures.ProcessPoolExecutor(
            workers, multiprocessing.get_context(method), initializer
        )

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.submit(fn, *args)


class PkExecutor(Lib):
    label = "parallelkit.Executor"
    calls = "submit().result(), map"
    native_limit = True

    def __init__(
        self,
        workers: int,
        method: str,
        initializer: Callable[[], None] | None,
        task_timeout: float | None,
    ) -> None:
        import parallelkit

        self.pool = parallelkit.Executor(
            "process",
            workers,
            start_method=method,
            initializer=initializer,
            task_timeout=task_timeout,
        )

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.submit(fn, *args)

    def cancel(self, handle: Any) -> tuple[str, Any]:
        cancel = getattr(self.pool, "cancel", None)
        if cancel is None:
            return "future.cancel() (no Executor.cancel)", handle.cancel()
        return "Executor.cancel(future, kill=True)", cancel(handle, kill=True)


class PkPool(Lib):
    label = "parallelkit.Pool"
    calls = "apply_async().get(), imap"
    native_limit = True

    def __init__(
        self,
        workers: int,
        method: str,
        initializer: Callable[[], None] | None,
        task_timeout: float | None,
    ) -> None:
        import parallelkit

        self.pool = parallelkit.Pool(
            workers,
            initializer,
            backend="process",
            start_method=method,
            task_timeout=task_timeout,
        )

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.apply_async(fn, args)

    def wait(self, handle: Any, timeout: float | None = None) -> Any:
        return handle.get(timeout)

    def cancel(self, handle: Any) -> tuple[str, Any]:
        cancel = getattr(handle, "cancel", None)
        if cancel is None:
            return "AsyncResult.future.cancel() (no AsyncResult.cancel)", handle.future.cancel()
        return "AsyncResult.cancel(kill=True)", cancel(kill=True)

    def lazy_map(self, fn: Callable[[Any], Any], items: Iterable[Any], chunksize: int) -> Any:
        return self.pool.imap(fn, items, chunksize)

    def map_list(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        return list(self.pool.map(fn, items))

    def shutdown(self) -> None:
        self.pool.close()
        self.pool.join()


def import_loky() -> tuple[Any, str] | None:
    """Return (module, label): the loky package, else the copy inside joblib."""
    try:
        module: Any = importlib.import_module("loky")
    except ImportError:
        pass
    else:
        return module, f"loky {module.__version__}"
    try:
        copy: Any = importlib.import_module("joblib.externals.loky")
    except ImportError:
        return None
    return copy, f"loky {copy.__version__} (joblib {version('joblib')})"


class Loky(Lib):
    label = "loky"
    calls = "submit().result(), map"

    def __init__(
        self,
        workers: int,
        method: str,
        initializer: Callable[[], None] | None,
        task_timeout: float | None,
    ) -> None:
        found = import_loky()
        assert found is not None
        loky = found[0]
        self.pool = loky.ProcessPoolExecutor(
            workers, context=loky.backend.context.get_context(method), initializer=initializer
        )

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.submit(fn, *args)


class Pebble(Lib):
    label = "pebble"
    calls = "schedule().result(), map().result()"
    native_limit = True

    def __init__(
        self,
        workers: int,
        method: str,
        initializer: Callable[[], None] | None,
        task_timeout: float | None,
    ) -> None:
        import multiprocessing

        module: Any = importlib.import_module("pebble")
        self.timeout = task_timeout
        self.pool = module.ProcessPool(
            workers, initializer=initializer, context=multiprocessing.get_context(method)
        )

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.schedule(fn, args, timeout=self.timeout)

    def lazy_map(self, fn: Callable[[Any], Any], items: Iterable[Any], chunksize: int) -> Any:
        return self.pool.map(fn, items, chunksize=chunksize).result()

    def map_list(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        return list(self.pool.map(fn, items).result())

    def shutdown(self) -> None:
        self.pool.close()
        self.pool.join()


def pebble_label() -> str | None:
    try:
        importlib.import_module("pebble")
    except ImportError:
        return None
    return f"pebble {version('pebble')}"


@dataclasses.dataclass(frozen=True)
class Library:
    key: str
    factory: type[Lib]
    #: The column header, or None when the library is not installed.
    found: Callable[[], str | None]


LIBRARIES: tuple[Library, ...] = (
    Library("mp.Pool", MpPool, lambda: "multiprocessing.Pool"),
    Library("ProcessPoolExecutor", Ppe, lambda: "ProcessPoolExecutor"),
    Library("parallelkit.Executor", PkExecutor, lambda: "parallelkit.Executor"),
    Library("parallelkit.Pool", PkPool, lambda: "parallelkit.Pool"),
    Library("loky", Loky, lambda: (found := import_loky()) and found[1]),
    Library("pebble", Pebble, pebble_label),
)


# -- what a scenario reports, and how (in the child) --------------------------------------


def emit(**event: Any) -> None:
    sys.stdout.write(PREFIX + json.dumps(event) + "\n")
    sys.stdout.flush()


def type_name(exc: BaseException) -> str:
    return type(exc).__name__


def describe(exc: BaseException) -> str:
    tp = type(exc)
    module = "" if tp.__module__ == "builtins" else tp.__module__ + "."
    text = " ".join(str(exc).split())
    return f"{module}{tp.__qualname__}: {text}" if text else f"{module}{tp.__qualname__}"


def short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Step:
    """Times one faulty call between ``begin`` and ``end`` events."""

    def __init__(self) -> None:
        emit(ev="begin")
        self.began = time.perf_counter()

    def end(self, saw: str, detail: str, *, tail: str = "", timed: bool = True) -> None:
        seconds = time.perf_counter() - self.began
        emit(ev="end", saw=saw, detail=detail, seconds=seconds, tail=tail, timed=timed)


def faulty_call(lib: Lib, fn: Callable[..., Any], *args: Any) -> None:
    """Run one call the way user code does (blocking, no time limit) and report it."""
    step = Step()
    try:
        value = lib.call(fn, *args)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: report, go on
        step.end(type_name(exc), describe(exc))
    else:
        step.end(f"returns {short(value)}", f"returned {short(value, 200)}")


def runs(outcomes: Sequence[str]) -> str:
    """``["ok", "ok", "E", "ok"]`` -> ``"2 ok, `E`, 1 ok"``."""
    parts: list[str] = []
    i = 0
    while i < len(outcomes):
        j = i
        while j < len(outcomes) and outcomes[j] == outcomes[i]:
            j += 1
        what = outcomes[i] if outcomes[i] == "ok" else f"`{outcomes[i]}`"
        parts.append(f"{j - i} {what}" if j - i > 1 or what == "ok" else what)
        i = j
    return ", ".join(parts) if parts else "no result"


def drain(iterator_factory: Callable[[], Any], limit: int) -> tuple[str, str]:
    """Iterate lazily, going on after an error where the iterator allows it."""
    outcomes: list[str] = []
    details: list[str] = []
    try:
        iterator = iter(iterator_factory())
    except BaseException as exc:
        return f"`{type_name(exc)}` from the map call itself", describe(exc)
    while len(outcomes) < limit:
        try:
            value = next(iterator)
        except StopIteration:
            break
        except BaseException as exc:
            outcomes.append(type_name(exc))
            if describe(exc) not in details:
                details.append(describe(exc))
        else:
            outcomes.append("ok")
            del value
    return runs(outcomes), "; ".join(details) or "no error"


def probe(lib: Lib) -> str:
    """Does the pool still run a task? ``usable`` / ``dead (...)`` / ``blocked``."""
    try:
        handle = lib.submit(power, 2, 10)
    except BaseException as exc:
        return f"dead ({type_name(exc)} on submit)"
    try:
        value = lib.wait(handle, PROBE_LIMIT)
    except TimeoutError:
        return "blocked"
    except BaseException as exc:
        # multiprocessing.TimeoutError is no subclass of TimeoutError before 3.13's
        # wrapper; parallelkit's Pool raises it too.
        if type_name(exc) == "TimeoutError":
            return "blocked"
        return f"dead ({type_name(exc)})"
    return "usable" if value == 1024 else f"wrong result {short(value)}"


def shutdown(lib: Lib) -> str:
    """Shut down gracefully, within :data:`SHUTDOWN_LIMIT`."""
    outcome: list[str] = []

    def run() -> None:
        began = time.perf_counter()
        try:
            lib.shutdown()
        except BaseException as exc:
            outcome.append(f"raises {type_name(exc)}")
        else:
            outcome.append(f"clean in {time.perf_counter() - began:.1f} s")

    worker = threading.Thread(target=run, name="fault-table-shutdown", daemon=True)
    worker.start()
    worker.join(SHUTDOWN_LIMIT)
    return outcome[0] if outcome else f"blocked (> {SHUTDOWN_LIMIT:g} s)"


def after(lib: Lib) -> None:
    emit(ev="probe", value=probe(lib))
    emit(ev="shutdown", value=shutdown(lib))


# -- the scenarios (run in the child) -----------------------------------------------------


def simple(fn: Callable[..., Any]) -> Callable[[Lib], None]:
    def scenario(lib: Lib) -> None:
        faulty_call(lib, fn)
        after(lib)

    return scenario


def lambda_task(lib: Lib) -> None:
    faulty_call(lib, make_adder(10), 1)
    after(lib)


def hang_with_limit(lib: Lib) -> None:
    step = Step()
    try:
        if lib.native_limit:
            lib.call(hang)  # the pool was made with a 1 s task time limit
        else:
            lib.wait(lib.submit(hang), 1.0)
    except BaseException as exc:
        step.end(type_name(exc), describe(exc))
    else:  # pragma: no cover - the task sleeps for an hour
        step.end("returns", "returned")
    after(lib)


def initializer_raises(lib: Lib) -> None:
    faulty_call(lib, power, 2, 10)
    after(lib)


def input_raises(lib: Lib) -> None:
    step = Step()
    saw, detail = drain(lambda: lib.lazy_map(square, input_that_raises(), 1), 10)
    step.end(saw, detail)
    after(lib)


def crash_in_chunk(lib: Lib) -> None:
    step = Step()
    saw, detail = drain(lambda: lib.lazy_map(square_or_die, range(8), 2), 12)
    step.end(saw, detail)
    after(lib)


def worker_pids(lib: Lib) -> set[int]:
    pids: set[int] = set()
    for _ in range(5):
        handles = [lib.submit(pid_after, 0.3) for _ in range(WORKERS)]
        pids = {lib.wait(h, 10.0) for h in handles}
        if len(pids) == WORKERS:
            return pids
    return pids


def idle_kill(lib: Lib) -> None:
    pids = worker_pids(lib)
    time.sleep(0.2)  # every worker is idle now: one of them holds the task queue's lock
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)  # "between tasks"
    emit(ev="note", value=f"killed idle workers {sorted(pids)}")
    faulty_call(lib, power, 2, 10)
    after(lib)


def cancel_running(lib: Lib) -> None:
    handle = lib.submit(hang)
    time.sleep(1.0)  # it runs now, on the only worker
    step = Step()
    try:
        how, returned = lib.cancel(handle)
    except BaseException as exc:
        step.end(f"cancel raises {type_name(exc)}", describe(exc))
        after(lib)
        return
    took = time.perf_counter() - step.began
    try:
        lib.wait(handle, 0.5)
    except BaseException as exc:
        name = type_name(exc)
        then = "task runs on" if name == "TimeoutError" else f"result raises `{name}`"
        after_cancel = "times out" if name == "TimeoutError" else f"raises {describe(exc)}"
    else:
        then = after_cancel = "result arrives"
    detail = f"{how} returned {returned!r}; then waiting 0.5 s for the result {after_cancel}"
    if how.startswith("("):
        step.end("no cancel API", detail, tail="task runs on", timed=False)
    else:
        call = how.split(" (")[0].split("(")[0].rsplit(".", 1)[-1]
        kill = "kill=True" if "kill=True" in how else ""
        emit(
            ev="end",
            saw=f"`{call}({kill})` → {returned!r}",
            detail=detail,
            seconds=took,
            tail=then,
            timed=True,
        )
    after(lib)


def owner_killed(sig: str, single: bool = False) -> Callable[[Lib], None]:
    """The owner gets ``sig`` 1 s into a map (or into the wait for one result)."""

    def scenario(lib: Lib) -> None:
        began = time.perf_counter()
        try:
            with lib.pool:
                emit(ev="signal", sig=sig, after=1.0)
                if single:
                    lib.call(sleep_for, LONG_TASK)
                else:
                    lib.map_list(sleep_for, [LONG_TASK] * WORKERS)
        except BaseException as exc:
            seconds = time.perf_counter() - began
            emit(ev="end", saw=type_name(exc), detail=describe(exc), seconds=seconds)
            raise SystemExit(130) from None
        emit(ev="end", saw="returns", detail="", seconds=time.perf_counter() - began)

    return scenario


@dataclasses.dataclass(frozen=True)
class Fault:
    key: str
    title: str
    run: Callable[[Lib], None]
    workers: int = WORKERS
    method: str = METHOD
    initializer: Callable[[], None] | None = None
    task_timeout: float | None = None
    #: Owner rows: the caller is signalled; the cell tells what outlived it.
    owner: bool = False


FAULTS: tuple[Fault, ...] = (
    Fault("sigkill", "worker SIGKILLed mid-task", simple(kill_self)),
    Fault("exit", "worker calls `os._exit(1)` mid-task", simple(exit_self)),
    Fault("segfault", "worker segfaults mid-task (`ctypes.string_at(0)`)", simple(segfault)),
    Fault(
        "chunk-crash",
        "worker SIGKILLed at item 3 of a lazy map over 8 items, chunksize 2",
        crash_in_chunk,
    ),
    Fault(
        "result-write-kill",
        "worker SIGKILLed while writing its result (holding the result queue's lock)",
        simple(die_while_sending_result),
    ),
    Fault(
        "unpicklable-exception",
        "task raises an exception that cannot be unpickled",
        simple(raise_two_arg_error),
    ),
    Fault(
        "unpicklable-result",
        "task returns a result that cannot be pickled",
        simple(return_unpicklable),
    ),
    Fault("system-exit", "task raises `SystemExit(3)`", simple(raise_system_exit)),
    Fault(
        "keyboard-interrupt", "task raises `KeyboardInterrupt`", simple(raise_keyboard_interrupt)
    ),
    Fault(
        "hang-timeout",
        "task hangs, 1 s time limit, 1 worker (anchors: `result(timeout=1)`)",
        hang_with_limit,
        workers=1,
        task_timeout=1.0,
    ),
    Fault("lambda-fork", "a closure (lambda) as the task, fork", lambda_task, method="fork"),
    Fault("lambda-spawn", "a closure (lambda) as the task, spawn", lambda_task, method="spawn"),
    Fault(
        "lambda-forkserver",
        "a closure (lambda) as the task, forkserver",
        lambda_task,
        method="forkserver",
    ),
    Fault(
        "initializer",
        "initializer raises",
        initializer_raises,
        initializer=failing_initializer,
    ),
    Fault("input-raises", "input iterable raises after 3 items (lazy map)", input_raises),
    Fault(
        "idle-kill",
        "both workers SIGKILLed while idle, then a task (gh-96062)",
        idle_kill,
    ),
    Fault("cancel-running", "cancel a running task, 1 worker", cancel_running, workers=1),
    Fault(
        "owner-sigkill",
        "the owner process is SIGKILLed while waiting in `map`",
        owner_killed("SIGKILL"),
        owner=True,
    ),
    Fault(
        "owner-sigterm-map",
        "the owner process gets SIGTERM while waiting in `map`",
        owner_killed("SIGTERM"),
        owner=True,
    ),
    Fault(
        "owner-sigterm-result",
        "the owner process gets SIGTERM while waiting for one task's result",
        owner_killed("SIGTERM", single=True),
        owner=True,
    ),
)


def child_main(argv: Sequence[str]) -> int:
    """In a fresh interpreter: run one scenario, report it on stdout, exit."""
    fault_key, library_key = argv
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a segfaulting worker leaves no core
    fault = next(f for f in FAULTS if f.key == fault_key)
    library = next(lib for lib in LIBRARIES if lib.key == library_key)
    began = time.perf_counter()
    try:
        lib = library.factory(fault.workers, fault.method, fault.initializer, fault.task_timeout)
    except BaseException as exc:
        emit(ev="error", saw=f"pool start raises {type_name(exc)}", detail=describe(exc))
        os._exit(0)
    emit(ev="ready", seconds=time.perf_counter() - began)
    fault.run(lib)
    emit(ev="done")
    sys.stdout.flush()
    if fault.owner:
        return 0  # an ordinary exit, atexit handlers and all
    os._exit(0)  # the pool may be stuck: leave its fate to the parent's kill


# -- the parent: run each scenario in its own process group, watch, kill, clean up --------


def proc_stat(pid: int | str) -> tuple[str, int] | None:
    """Return (state, parent pid) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0].decode(), int(fields[1])


def roles(token: str, owner: int) -> dict[int, str]:
    """Name the processes of a scenario: owner, forkserver, resource tracker, worker."""
    named: dict[int, str] = {}
    for pid in marked(token):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmd:
                cmdline = cmd.read()
        except OSError:
            continue
        stat = proc_stat(pid)
        if pid == owner:
            named[pid] = "owner"
        elif b"resource_tracker" in cmdline:
            named[pid] = "resource tracker"
        elif b"forkserver" in cmdline and stat is not None and stat[1] == owner:
            named[pid] = "forkserver"
        else:
            named[pid] = "worker"
    return named


def marked(token: str) -> list[int]:
    """Live processes (no zombies) whose environment carries this run's marker."""
    needle = f"{MARKER}={token}".encode()
    found: list[int] = []
    me = os.getpid()
    try:
        entries = os.listdir("/proc")
    except OSError:  # no /proc: only the process group is cleaned up
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as env:
                if needle not in env.read().split(b"\0"):
                    continue
        except OSError:
            continue
        stat = proc_stat(entry)
        if stat is not None and stat[0] not in ("Z", "X"):
            found.append(int(entry))
    return found


def kill_all(pgid: int, token: str) -> None:
    """SIGKILL the scenario's process group and every process that carries its marker."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    for pid in marked(token):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@dataclasses.dataclass
class Result:
    fault: Fault
    library: Library
    saw: str = ""
    detail: str = ""
    seconds: float | None = None
    tail: str = ""
    timed: bool = True
    hung: float | None = None
    hung_stage: str = ""
    probe: str = ""
    shutdown: str = ""
    notes: list[str] = dataclasses.field(default_factory=list[str])
    outlived: str = ""
    roles: dict[int, str] = dataclasses.field(default_factory=dict[int, str])
    wall: float = 0.0

    def cell(self) -> str:
        if self.fault.owner:
            return self.owner_cell()
        if self.hung is not None and self.hung_stage in ("start", "call"):
            what = "pool start hangs" if self.hung_stage == "start" else "**hangs**"
            return f"{what} (killed after {self.hung:g} s)"
        if self.seconds is None:
            return f"{self.saw or 'no report'}"
        parts = [code(self.saw) + (f" in {self.seconds:.1f} s" if self.timed else "")]
        if self.tail:
            parts.append(self.tail)
        if self.probe:
            parts.append(f"pool {self.probe}")
        elif self.hung_stage == "probe":
            parts.append("probe hangs")
        if self.shutdown and not self.shutdown.startswith("clean"):
            parts.append(f"shutdown {self.shutdown}")
        elif self.hung_stage == "shutdown":
            parts.append("shutdown hangs")
        return "; ".join(parts)

    def owner_cell(self) -> str:
        saw = code(self.saw) if self.saw else "owner dies"
        return f"{saw}; {self.outlived}" if self.outlived else saw


def code(saw: str) -> str:
    """Set an exception name in code font, leave prose alone."""
    if saw and saw.replace("_", "").replace(".", "").isalnum() and saw[0].isupper():
        return f"`{saw}`"
    return saw


class Child:
    """One scenario's interpreter and what it reported."""

    def __init__(self, fault: Fault, library: Library, verbose: bool) -> None:
        self.token = uuid.uuid4().hex
        env = dict(os.environ, **{MARKER: self.token})
        env.pop("PYTHONSTARTUP", None)
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in cleanup()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", BOOT, HERE, fault.key, library.key],
            stdout=subprocess.PIPE,
            stderr=self.stderr if not verbose else None,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.fd, selectors.EVENT_READ)
        self.buffer = b""
        self.eof = False

    def events(self, wait: float) -> list[dict[str, Any]]:
        """Events that arrive within ``wait`` seconds (maybe none)."""
        if not self.eof and self.selector.select(max(0.0, wait)):
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                data = b""
            else:
                if not data:
                    self.eof = True
            self.buffer += data
        elif self.eof:
            time.sleep(max(0.0, min(wait, 0.05)))
        found: list[dict[str, Any]] = []
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            text = line.decode(errors="replace")
            if text.startswith(PREFIX):
                found.append(json.loads(text[len(PREFIX) :]))
        return found

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def cleanup(self) -> None:
        kill_all(self.proc.pid, self.token)
        self.proc.wait()
        deadline = time.monotonic() + 5.0
        while (left := marked(self.token)) and time.monotonic() < deadline:
            kill_all(self.proc.pid, self.token)
            time.sleep(0.05)
        if left:
            progress(f"    warning: could not kill {left}")
        self.selector.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.stderr.close()


def run_one(fault: Fault, library: Library, timeout: float, verbose: bool) -> Result:
    result = Result(fault, library)
    began = time.monotonic()
    child = Child(fault, library, verbose)
    try:
        watch(child, result, timeout)
    finally:
        child.cleanup()
    result.wall = time.monotonic() - began
    return result


def watch(child: Child, result: Result, timeout: float) -> None:
    """Follow the scenario's events; kill it when a stage overruns its limit."""
    Watch(child, result, timeout).run()


class Watch:
    """The state of one scenario as the parent sees it."""

    def __init__(self, child: Child, result: Result, timeout: float) -> None:
        self.child = child
        self.result = result
        self.timeout = timeout
        self.stage = "start"
        self.deadline = time.monotonic() + START_LIMIT
        self.signal_at: float | None = None
        self.signalled: float | None = None

    def handle(self, event: dict[str, Any]) -> bool:
        """Take one event; True when the scenario is over."""
        result = self.result
        kind = event["ev"]
        now = time.monotonic()
        if kind == "begin":
            self.stage, self.deadline = "call", now + self.timeout
        elif kind == "end":
            result.saw, result.detail = event["saw"], event["detail"]
            result.seconds = event["seconds"]
            result.tail, result.timed = event.get("tail", ""), event.get("timed", True)
            self.stage, self.deadline = "probe", now + PROBE_LIMIT + 5.0
        elif kind == "probe":
            result.probe = event["value"]
            self.stage, self.deadline = "shutdown", now + SHUTDOWN_LIMIT + 5.0
        elif kind == "shutdown":
            result.shutdown = event["value"]
            self.stage = "exit"
        elif kind == "note":
            result.notes.append(event["value"])
        elif kind == "error":
            result.saw, result.detail = event["saw"], event["detail"]
            self.stage = "exit"
            return True
        elif kind == "signal":
            self.stage = event["sig"]
            self.signal_at = now + float(event["after"])
            self.deadline = self.signal_at + 5.0
        elif kind == "done":
            self.stage = "exit"
            return not result.fault.owner
        return False

    def run(self) -> None:
        child, result = self.child, self.result
        while True:
            now = time.monotonic()
            if self.signal_at is not None and now >= self.signal_at:
                result.roles = roles(child.token, child.proc.pid)
                os.kill(child.proc.pid, getattr(signal, self.stage))
                self.signalled, self.signal_at = now, None
                self.deadline = now + 5.0
            if now >= self.deadline:
                self.overrun()
                return
            if any(self.handle(event) for event in child.events(min(0.05, self.deadline - now))):
                return
            if child.exited():
                self.ended()
                return

    def overrun(self) -> None:
        """The current stage took too long: the caller kills the scenario."""
        if self.signalled is not None:
            self.result.outlived = "**owner still running 5 s after the signal**"
            return
        self.result.hung_stage = self.stage
        self.result.hung = {
            "call": self.timeout,
            "start": START_LIMIT,
            "probe": PROBE_LIMIT + 5.0,
        }.get(self.stage, SHUTDOWN_LIMIT + 5.0)

    def ended(self) -> None:
        """The scenario's interpreter exited: read what is left, judge the owner rows."""
        child, result = self.child, self.result
        while not child.eof:
            events = child.events(0.0)
            if not events:
                break
            for event in events:
                self.handle(event)
        if result.fault.owner:
            returncode = child.proc.returncode
            if not result.saw:
                result.saw = (
                    f"owner killed by {signal.Signals(-returncode).name}"
                    if returncode < 0
                    else f"owner exits {returncode}"
                )
            result.outlived = outlived(child, result.roles, self.signalled or time.monotonic())
        elif self.stage != "exit":
            result.hung_stage = self.stage
            result.saw = result.saw or f"the scenario died (exit {child.proc.returncode})"


def outlived(child: Child, named: dict[int, str], since: float) -> str:
    """Wait up to :data:`ORPHAN_WAIT` for the owner's processes to go; say how it went."""
    deadline = time.monotonic() + ORPHAN_WAIT
    left = marked(child.token)
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = marked(child.token)
    if not left:
        took = time.monotonic() - since
        return f"all gone {took:.1f} s after the signal"
    counts: dict[str, int] = {}
    for pid in left:
        role = named.get(pid, "other")
        counts[role] = counts.get(role, 0) + 1
    who = ", ".join(
        f"{n} {role}s" if n > 1 else f"{n} {role}" for role, n in sorted(counts.items())
    )
    return f"**{who} outlive it** (alive {ORPHAN_WAIT:g} s after)"


# -- selection, table -------------------------------------------------------------------


def matches(key: str, patterns: Sequence[str]) -> bool:
    key = key.lower()
    for raw in patterns:
        pattern = raw.lower()
        if any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(key, pattern):
            return True
        if pattern in key:
            return True
    return False


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def table(results: list[Result], libraries: list[tuple[Library, str]]) -> list[str]:
    faults = list(dict.fromkeys(r.fault for r in results))
    used = [(lib, label) for lib, label in libraries if any(r.library is lib for r in results)]
    by_pair = {(r.fault.key, r.library.key): r for r in results}
    lines = [
        "| fault | " + " | ".join(label for _, label in used) + " |",
        "|---|" + "---|" * len(used),
    ]
    for fault in faults:
        cells = [
            by_pair[(fault.key, lib.key)].cell() if (fault.key, lib.key) in by_pair else ""
            for lib, _ in used
        ]
        lines.append(f"| {fault.title} | " + " | ".join(cells) + " |")
    return lines


def details(results: list[Result]) -> list[str]:
    lines: list[str] = []
    for fault in dict.fromkeys(r.fault for r in results):
        lines.append(f"- **{fault.title}** (`{fault.key}`)")
        for r in results:
            if r.fault is not fault:
                continue
            text = r.detail if len(r.detail) <= 300 else r.detail[:297] + "..."
            bits = [text or r.saw or "no report"]
            if r.hung is not None:
                bits = [f"killed at stage '{r.hung_stage}' after {r.hung:g} s"]
            if r.probe:
                bits.append(f"probe: {r.probe}")
            if r.shutdown:
                bits.append(f"shutdown: {r.shutdown}")
            if r.outlived:
                bits.append(r.outlived.replace("**", ""))
            bits += r.notes
            lines.append(f"  - {r.library.key}: " + " | ".join(bits))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="kill a scenario whose faulty call has not returned after this long (default 10)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run the pairs whose 'fault/library' contains PATTERN (or matches it as a glob); "
        "may be repeated",
    )
    parser.add_argument("--verbose", action="store_true", help="show the scenarios' stderr")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be > 0")

    libraries: list[tuple[Library, str]] = []
    missing: list[str] = []
    for library in LIBRARIES:
        label = library.found()
        if label:
            libraries.append((library, label))
        else:
            missing.append(library.key)
    pairs = [
        (fault, library)
        for fault in FAULTS
        for library, _ in libraries
        if not args.only or matches(f"{fault.key}/{library.key}", args.only)
    ]
    command = shlex.join(["python", "benchmarks/fault_table.py", *(argv or sys.argv[1:])])
    began = time.monotonic()
    results: list[Result] = []
    try:
        for fault, library in pairs:
            result = run_one(fault, library, args.timeout, args.verbose)
            results.append(result)
            progress(f"{fault.key:<22} {library.key:<21} {result.cell()}  [{result.wall:.1f} s]")
    except KeyboardInterrupt:
        progress("interrupted: the table below is partial")
    out = [
        "```",
        f"$ {command}",
        f"parallelkit {version('parallelkit')}, Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs; {len(results)} scenarios in "
        f"{time.monotonic() - began:.0f} s, each killed {args.timeout:g} s after its "
        "faulty call began if it had not returned",
    ]
    if missing:
        out.append("not installed: " + ", ".join(missing))
    out += ["```", "", *table(results, libraries), "", "### Details", "", *details(results)]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
