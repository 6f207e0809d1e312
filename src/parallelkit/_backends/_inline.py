"""Running a chunk in this process: shared by the thread and serial backends.

With ``check_pickle`` the chunk takes the process backend's path (function,
items and outcome all serialized), so a test on threads or inline fails where
processes would; without it, objects pass as they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

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


def run_chunk(hooks: Hooks, chunk: Chunk, *, catch_interrupt: bool) -> None:
    """Run ``chunk`` in the current thread and report its outcome."""
    hooks.started(chunk.id, None)
    if isinstance(chunk.fn, bytes):
        assert isinstance(chunk.payload, bytes)
        blob = _worker.run_blob(chunk.id, chunk.fn, chunk.payload, chunk.mode)
        values, errors, elapsed = _worker.unpack_outcome(blob, chunk.count)
        hooks.complete(chunk, values, errors, elapsed)
        return
    fn: Callable[..., Any] = chunk.fn  # type: ignore[assignment]
    items: list[Any] = chunk.payload  # type: ignore[assignment]
    started = time.perf_counter()
    values, errors = _worker.run_items(fn, items, chunk.mode, catch_interrupt=catch_interrupt)
    hooks.complete(chunk, values, errors, time.perf_counter() - started)
