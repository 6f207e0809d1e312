"""Counting what a block of code leaves behind: child processes, threads, fds.

Linux-first: children and descriptors are read from ``/proc``. The
multiprocessing helper processes that live for the whole session (the
forkserver and the resource tracker) and their descriptors are not leaks, nor
is the dask cluster that the pytest plugin starts once for the session, nor
dask.distributed's offload thread, which lives as long as the process.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import threading
import time
from collections.abc import Generator
from contextlib import contextmanager
from typing import final

from .. import _bulk
from .._backends._mp_private import helper_fds

__all__ = ("LeakError", "Snapshot", "no_leaks", "snapshot")

_SESSION_HELPERS = (
    b"multiprocessing.forkserver",
    b"multiprocessing.resource_tracker",
    b"parallelkit.testing._cluster",  # the plugin's dask cluster for the session
)
#: Threads a library starts once and keeps for the life of the process:
#: dask.distributed's offload thread, started on first use.
_SESSION_THREADS = ("Dask-Offload",)


@final
class LeakError(AssertionError):
    """Something started inside the checked block was still there after it."""


@final
@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Child processes, threads and open file descriptors at one moment."""

    children: frozenset[int]
    threads: frozenset[int]
    fds: frozenset[int]


def _children() -> frozenset[int]:
    me = os.getpid()
    found: set[int] = set()
    try:
        entries = os.listdir("/proc")
    except OSError:  # pragma: no cover - no /proc
        return frozenset()
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
            if int(fields[1]) != me or fields[0] == b"Z":
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmd:
                cmdline = cmd.read()
        except (OSError, IndexError, ValueError):
            continue
        if any(helper in cmdline for helper in _SESSION_HELPERS):
            continue
        found.add(int(entry))
    return frozenset(found)


def _fds() -> frozenset[int]:
    try:
        return frozenset(int(fd) for fd in os.listdir("/proc/self/fd"))
    except OSError:  # pragma: no cover
        return frozenset()


def snapshot() -> Snapshot:
    """Take a :class:`Snapshot` now.

    Returns:
        The child processes, threads and file descriptors of this process.

    Examples:
        >>> import threading
        >>> from parallelkit.testing import snapshot
        >>> threading.get_ident() in snapshot().threads
        True
    """
    return Snapshot(
        children=_children(),
        threads=frozenset(t.ident for t in threading.enumerate() if t.ident is not None),
        fds=_fds(),
    )


def _new_since(before: Snapshot) -> list[str]:
    now = snapshot()
    problems: list[str] = []
    children = now.children - before.children
    if children:
        problems.append(f"child processes {sorted(children)}")
    threads = [
        t
        for t in threading.enumerate()
        if t.ident in now.threads - before.threads
        and t.is_alive()
        and not t.name.startswith(_SESSION_THREADS)
    ]
    if threads:
        problems.append("threads " + ", ".join(sorted(repr(t.name) for t in threads)))
    fds = now.fds - before.fds - helper_fds()
    if fds:
        targets: list[str] = []
        for fd in sorted(fds):
            try:
                targets.append(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
            except OSError:
                continue
        if targets:
            problems.append("file descriptors " + ", ".join(targets))
    return problems


@contextmanager
def no_leaks(grace: float = 5.0) -> Generator[Snapshot, None, None]:
    """Fail if the block leaves child processes, threads or file descriptors behind.

    Things get ``grace`` seconds to go away after the block ends (workers
    take a moment to exit).

    Args:
        grace: Seconds to wait for stragglers.

    Yields:
        The snapshot taken before the block.

    Raises:
        LeakError: Something new was still there after ``grace`` seconds.

    Examples:
        >>> import parallelkit
        >>> from parallelkit.testing import no_leaks
        >>> with no_leaks():
        ...     with parallelkit.Executor("thread", 2) as ex:
        ...         ex.submit(abs, -1).result()
        1
    """
    before = snapshot()
    yield before
    deadline = time.monotonic() + grace
    while True:
        gc.collect()  # pipes and sockets of finished pools close when they are collected
        _bulk.sweep()  # and the mappings of shared-memory segments their senders let go
        problems = _new_since(before)
        if not problems or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if problems:
        raise LeakError("left behind: " + "; ".join(problems))
