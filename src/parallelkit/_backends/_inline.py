"""Running a chunk in this process: shared by the thread and serial backends.

With ``check_pickle`` the chunk takes the process backend's path (function,
items and outcome all serialized), so a test on threads or inline fails where
processes would; without it, objects pass as they are.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, cast

from .. import _worker
from .._serialize import dumps, dumps_function
from ._base import Chunk, Hooks

__all__ = ("pack_items", "prepare_fn", "run_chunk")


def prepare_fn(fn: Callable[..., Any], check_pickle: bool) -> object:
    """The function as it will be shipped (bytes when checking pickling)."""
    return dumps_function(fn) if check_pickle else fn


def pack_items(items: list[Any], check_pickle: bool) -> object:
    """The items as they will be shipped (bytes when checking pickling)."""
    return dumps(items) if check_pickle else items


def run_chunk(
    hooks: Hooks, chunk: Chunk, *, catch_interrupt: bool, busy: set[int] | None = None
) -> None:
    """Run ``chunk`` in the current thread and report its outcome.

    ``busy``, if given, holds this thread's id while the task's code runs.

    A task's exception keeps the frames it was raised in, and each of those
    its caller's: so no frame here may keep, once it returns, the chunk (whose
    future gets the exception) or the errors. Else the exception and these
    frames would hold each other, and with them the executor, until the
    garbage collector runs.
    """
    hooks.started(chunk.id, None)
    if busy is None:
        outcome = _run(chunk, catch_interrupt)
    else:
        me = threading.get_ident()
        busy.add(me)
        try:
            outcome = _run(chunk, catch_interrupt)
        finally:
            busy.discard(me)
    try:
        hooks.complete(chunk, *outcome)
    finally:
        del chunk, outcome


def _run(chunk: Chunk, catch_interrupt: bool) -> tuple[list[Any], dict[int, BaseException], float]:
    fn = chunk.fn
    mode = chunk.mode
    if isinstance(fn, bytes):
        assert isinstance(chunk.payload, bytes)
        blob = _worker.run_blob(chunk.id, fn, chunk.payload, mode)
        count = chunk.count
        del chunk
        return _worker.unpack_outcome(blob, count)
    items: list[Any] = chunk.payload  # type: ignore[assignment]
    del chunk
    started = time.perf_counter()
    task = cast("Callable[..., Any]", fn)
    values, errors = _worker.run_items(task, items, mode, catch_interrupt=catch_interrupt)
    try:
        return values, errors, time.perf_counter() - started
    finally:
        del values, errors
