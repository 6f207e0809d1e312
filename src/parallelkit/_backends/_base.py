"""The small protocol between the engine and a backend.

::

    engine ── send(chunk) ──────────────▶ backend ──▶ its workers
    engine ◀── hooks.started(id, pid) ─── backend      (a worker took the chunk)
    engine ◀── hooks.complete(chunk, …) ─ backend      (values and per-item errors)
    engine ◀── hooks.fail(chunk, exc) ─── backend      (the worker died, …)
    engine ── keep_time(chunk, t) ──────▶ backend      (a time limit: the backend's clock, or False)
    engine ◀── hooks.expired(chunk) ───── backend      (it ran past its limit)
    engine ── abort(chunk) ─────────────▶ backend      (timed out: stop it if you can)

A backend never decides what a result means, how chunks are sized, what is
retried or how errors are raised: the engine does, once for every backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from .._config import Settings

__all__ = ("Backend", "BackendFactory", "BackendOptions", "Chunk", "Hooks", "OnDone")

#: Called once when a chunk ends: (chunk, values, errors by position, failure of the whole chunk).
OnDone = Callable[
    ["Chunk", "list[Any] | None", "dict[int, BaseException]", "BaseException | None"], None
]


class Chunk:
    """A batch of calls of one function, the unit a backend schedules.

    Attributes:
        id: Unique within the engine.
        fn: The function as the backend wants it (bytes for processes).
        label: ``"task 17 (fn=resize)"`` or ``"items 0-99 of map(fn=resize)"``.
        payload: The items as the backend wants them (bytes for processes).
        count: Number of items.
        mode: How an item becomes a call (see :mod:`parallelkit._worker`).
        timeout: Per-item time limit in seconds, or None.
        future: Controls cancel/running state (the user's Future for submit).
        on_done: Called once with the outcome.
        pid: The worker process running it, once known.
        started: ``time.monotonic()`` when a worker took it.
        handle: Backend-private, free for a backend to use.
        elapsed: Seconds the worker spent on it (for chunk sizing).
    """

    __slots__ = (
        "__weakref__",
        "count",
        "elapsed",
        "fn",
        "future",
        "handle",
        "id",
        "label",
        "mode",
        "on_done",
        "payload",
        "pid",
        "started",
        "timeout",
    )

    def __init__(
        self,
        id: int,
        fn: object,
        label: str,
        payload: object,
        count: int,
        mode: int,
        timeout: float | None,
        future: Future[Any],
        on_done: OnDone,
    ) -> None:
        self.id: int = id
        self.fn: object = fn
        self.label: str = label
        self.payload: object = payload
        self.count: int = count
        self.mode: int = mode
        self.timeout: float | None = timeout
        self.future: Future[Any] = future
        self.on_done: OnDone = on_done
        self.pid: int | None = None
        self.started: float | None = None
        self.handle: object = None
        self.elapsed: float = 0.0

    def mark_started(self, pid: int | None, when: float | None = None) -> None:
        """Record that a worker (``pid`` for processes) took the chunk at ``when``.

        ``when`` is a ``time.monotonic()`` reading (the clock is the same in
        every process of the machine); None means now.
        """
        self.pid = pid
        self.started = time.monotonic() if when is None else when


class Hooks(Protocol):
    """What a backend may call on the engine, from any thread."""

    def started(self, chunk_id: int, pid: int | None, when: float | None = None) -> None:
        """A worker took chunk ``chunk_id`` at ``time.monotonic()`` ``when`` (None: now)."""

    def complete(
        self, chunk: Chunk, values: list[Any], errors: dict[int, BaseException], elapsed: float
    ) -> None:
        """The chunk ran in ``elapsed`` seconds.

        ``values`` holds the results by position, ``errors`` the exceptions of
        the items that raised.
        """

    def fail(self, chunk: Chunk, failure: BaseException) -> bool:
        """The chunk as a whole failed; returns False when it had already ended."""
        ...

    def running(self, chunk_id: int) -> Chunk | None:
        """The running chunk with that id, or None when it has ended."""
        ...

    def broken(self, failure: BaseException) -> None:
        """The workers cannot run anything (for example the initializer failed)."""

    def expired(self, chunk: Chunk) -> None:
        """The chunk ran past its time limit (for a backend that keeps the time itself)."""


class BackendOptions(NamedTuple):
    """Executor options a backend honours (an immutable named tuple)."""

    initializer: Callable[..., object] | None = None
    initargs: Sequence[Any] = ()
    max_tasks_per_worker: int | None = None
    #: A ``distributed.Client`` to run on (dask backend), or None.
    client: Any = None


class Backend(Protocol):
    """One way of running chunks: processes, threads, inline, a cluster..."""

    #: How many chunks the engine hands over before waiting for one to end.
    window: int
    #: Number of workers, as shown in ``repr``.
    workers: int
    #: Start method for ``repr`` (None where it does not apply).
    start_method: str | None
    #: Whether :meth:`abort` can stop a running chunk (processes can, threads cannot).
    can_kill: bool
    #: What a TaskTimeoutError adds about a chunk that ran on no worker process
    #: (``"; its thread cannot be stopped and runs on, …"``), or ``""``.
    timeout_note: str
    #: The scheduler address that channels made by the executor or pool use,
    #: where it is not the ``address`` setting (a dask cluster of its own); else None.
    channel_address: str | None

    def prepare_fn(self, fn: Callable[..., Any]) -> object:
        """Turn the user's function into what :meth:`send` ships (once per map)."""
        ...

    def pack_items(self, items: list[Any]) -> object:
        """Turn a chunk's items into what :meth:`send` ships (in the caller's thread)."""
        ...

    def send(self, chunk: Chunk) -> None:
        """Start running the chunk; report through the hooks. Must not block long."""

    def abort(self, chunk: Chunk) -> None:
        """The engine gave up on a running chunk: stop its worker if possible."""

    def keep_time(self, chunk: Chunk, deadline: float) -> bool:
        """Call ``hooks.expired(chunk)`` at ``time.monotonic()`` ``deadline`` if still running.

        Returns:
            False when the backend keeps no time: the engine then does.
        """
        ...

    def close(self) -> None:
        """Accept no more chunks; let workers exit once idle."""

    def join(self) -> None:
        """Wait until every worker has exited (after :meth:`close`)."""

    def terminate(self) -> None:
        """Stop every worker now."""


class BackendFactory(Protocol):
    """The class a backend module exports as ``Backend``."""

    def __call__(self, hooks: Hooks, settings: Settings, options: BackendOptions) -> Backend:
        """Start the backend's workers."""
        ...
