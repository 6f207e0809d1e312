"""The one engine under both faces: chunks, dispatch, timeouts, errors, shutdown.

::

    Executor / Pool (caller's thread)
        │ submit / lazy maps / map_all: build Chunks (items pickled here, so a bad
        │ item fails in the caller), enqueue
        ▼
    Engine._queue ──_pump()──▶ backend.send(chunk)   at most ``window`` running
        ▲                              │             (8 x that for one-call chunks
        │                              │             that take under a millisecond);
        │                              │             the rest wait here, where
        │                              │             cancel() can still drop them
        │    backend threads ◀─────────┘
        │    hooks.started(id, pid) ──▶ the backend's clock (processes: its manager
        │                               thread), else a Deadlines thread ──▶ fail + abort
        └─── hooks.complete / fail ──▶ _finish(): first outcome wins, chunk.on_done()
                                            │
              Future.set_result / a lazy map's queue / map_all's list ◀┘

Every behaviour the two faces share lives here once: dispatch within a
window, automatic chunk size, per-task timeouts, cancellation, shutdown.
Lazy maps (reading the input as results are consumed, ordering them) are
built on it in :mod:`._results`.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError, Future
from typing import Any, Final, Protocol, TypeVar, final

from ._backends._base import Backend, BackendOptions, Chunk, OnDone
from ._backends._modes import CALL
from ._backends._registry import load_backend
from ._chunking import ChunkSizer
from ._config import Settings
from ._errors import BrokenExecutorError, ClosedError, TaskTimeoutError

__all__ = ("Engine", "LazyMap", "check_timeout", "describe")

T = TypeVar("T")

RUNNING: Final = "running"
CLOSING: Final = "closing"
CLOSED: Final = "closed"
TERMINATED: Final = "terminated"
BROKEN: Final = "broken"

#: parallelkit's own logger: WARNING for what went wrong (a time limit passed, a
#: task killed, a worker crashed), DEBUG for starts and stops; nothing at INFO.
log: Final = logging.getLogger("parallelkit")
# A library's logger: silent (no last-resort printing on stderr) until the
# program configures logging; the callers get the errors themselves anyway.
log.addHandler(logging.NullHandler())

#: How often a join waiting for lazy maps looks whether they were dropped.
MAP_LOOK: Final = 0.25

#: One-call chunks (submit, apply_async) that run shorter than this, on average...
QUICK_CALL: Final = 0.001
#: ...may be handed to the backend this many times the window ahead: each one
#: costs a round trip through the pool's threads, and a short window would
#: leave the workers waiting between them. Cancelling such a task late costs
#: little (it ends within a millisecond anyway).
QUICK_BOOST: Final = 8


def describe(fn: object) -> str:
    """Return a short name for a task function, for error messages."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return str(name) if name else type(fn).__name__


def check_timeout(value: float | None, name: str = "task_timeout") -> float | None:
    """Validate a timeout in seconds (None means no limit).

    Raises:
        ValueError: The value is not a positive number.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        hint = "" if name.startswith("Timed") else " or None"
        raise ValueError(f"{name} must be a number of seconds > 0{hint}, got {value!r}")
    return float(value)


@final
class _Deadlines:
    """A thread that fails chunks that ran past their ``task_timeout``."""

    def __init__(self, on_expire: Callable[[Chunk], None]) -> None:
        self._on_expire = on_expire
        self._heap: list[tuple[float, int, Chunk]] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="parallelkit-deadlines", daemon=True)
        self._thread.start()

    def add(self, when: float, chunk: Chunk) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, chunk.id, chunk))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        # At interpreter exit daemon threads no longer run: joining would hang.
        if self._thread is not threading.current_thread() and not sys.is_finalizing():
            self._thread.join(5.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    self._cond.wait(None if not self._heap else self._heap[0][0] - now)
                if self._stopped:
                    return
                _, _, chunk = heapq.heappop(self._heap)
            self._on_expire(chunk)


class LazyMap(Protocol):
    """What the engine needs of a lazy map (:class:`~._results.ResultIterator`)."""

    def finish_input(self) -> None:
        """Queue the rest of the input now, or cut it (the engine is being joined)."""


@final
class Engine:
    """Runs chunks on one backend; shared by :class:`Executor` and :class:`Pool`.

    Args:
        settings: The resolved settings (backend, workers, ...).
        options: Initializer and worker recycling options.
        task_timeout: Default per-task time limit, or None.
    """

    def __init__(
        self,
        settings: Settings,
        options: BackendOptions,
        task_timeout: float | None,
        owner: str = "Executor",
    ) -> None:
        self.owner: str = owner
        self.settings: Settings = settings
        self.task_timeout: float | None = check_timeout(task_timeout)
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._queue: deque[Chunk] = deque()
        self._running: dict[int, Chunk] = {}
        self._ids = itertools.count(1)
        self._state = RUNNING
        self._broken: BaseException | None = None
        self._deadlines: _Deadlines | None = None
        self._pumping = threading.local()
        self._joined = False
        self._stopped = threading.Event()
        self._stoppers: dict[Future[Any], list[Chunk]] = {}
        #: Lazy maps made while the engine was open whose input is not used up:
        #: they may still queue chunks after close() (see _results.ResultIterator).
        self._maps: weakref.WeakSet[LazyMap] = weakref.WeakSet()
        self._cut_maps = False  # an explicit join() asked to finish them now
        self._backend_closed = False
        #: Chunks taken from the queue whose hand-over to the backend is under
        #: way: the backend must not be closed before they reach it.
        self._handing = 0
        #: Whether the owner called close/shutdown/terminate (no leak warning then).
        self.released: bool = False
        self.backend: Backend = load_backend(settings.backend)(self, settings, options)
        self.window: int = self.backend.window
        #: The settings of channels made by the owner (ex.Queue()): on the backend's
        #: cluster, when it has one of its own.
        self.channel_settings: Settings = settings
        if self.backend.channel_address not in (None, settings.address):
            self.channel_settings = settings._replace(address=self.backend.channel_address)
        self._call_time: float = QUICK_CALL  # running mean of one-call chunks' run time
        log.debug(
            "%s started: %s backend, %d workers", owner, settings.backend, self.backend.workers
        )
        if self.state == BROKEN:  # a worker failed while the backend was starting
            threading.Thread(target=self.backend.terminate, name="parallelkit-terminate").start()

    # -- state --------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``running``, ``closing``, ``closed``, ``terminated`` or ``broken``."""
        return self._state

    def check_open(self) -> None:
        """Raise unless new work is accepted (see :meth:`_check_open`)."""
        with self._lock:
            self._check_open()

    def _check_open(self) -> None:
        if self._broken is not None:
            raise BrokenExecutorError(
                f"the {self.settings.backend} workers cannot run tasks: {self._broken}; "
                f"create a new {self.owner} once the cause is fixed"
            ) from self._broken
        if self._state != RUNNING:
            raise ClosedError(
                f"cannot schedule new tasks: this {self.owner} ({self.settings.backend} backend) "
                f"is {self._state}; create a new one"
            )

    # -- building and queueing chunks ---------------------------------------------------

    def chunk(
        self,
        fn: object,
        label: str,
        items: list[Any],
        mode: int,
        timeout: float | None,
        on_done: OnDone,
        future: Future[Any] | None = None,
    ) -> Chunk:
        """Build a chunk; its items are serialized now, in the caller's thread."""
        payload = self.backend.pack_items(items)
        return Chunk(
            next(self._ids),
            fn,
            label,
            payload,
            len(items),
            mode,
            timeout,
            future if future is not None else Future(),
            on_done,
        )

    def enqueue(self, chunks: Iterable[Chunk], *, admitted: bool = False) -> None:
        """Queue chunks for dispatch.

        Args:
            chunks: The chunks.
            admitted: They belong to a map made while the engine was open,
                which may go on after ``close()`` until ``join()`` finishes it.

        Raises:
            ClosedError: The executor no longer accepts work.
            BrokenExecutorError: The workers cannot start.
        """
        with self._lock:
            if not (admitted and self._state == CLOSING and not self._backend_closed):
                self._check_open()
            self._queue.extend(chunks)
        self._pump()

    def _pump(self) -> None:
        """Hand queued chunks to the backend while fewer than ``window`` run."""
        if getattr(self._pumping, "active", False):
            return  # re-entered from an inline completion: the outer loop goes on
        self._pumping.active = True
        try:
            while True:
                with self._lock:
                    if (
                        not self._queue
                        or len(self._running) >= self._window_for(self._queue[0])
                        or self._state in (TERMINATED, BROKEN)
                    ):
                        return
                    chunk = self._queue.popleft()
                    if not chunk.future.set_running_or_notify_cancel():
                        dropped = True
                    else:
                        dropped = False
                        self._running[chunk.id] = chunk
                        self._handing += 1
                if dropped:
                    self._notify(chunk, None, {}, CancelledError())
                    self._signal_if_drained()
                    continue
                try:
                    self.backend.send(chunk)
                except BaseException as exc:
                    self.fail(chunk, exc)
                    if isinstance(exc, KeyboardInterrupt):
                        raise  # Ctrl-C during an inline (serial) task
                finally:
                    with self._lock:
                        self._handing -= 1
        finally:
            self._pumping.active = False

    def _window_for(self, chunk: Chunk) -> int:
        """How many chunks may run before ``chunk`` is handed over (see QUICK_BOOST)."""
        if chunk.count == 1 and self._call_time < QUICK_CALL:
            return self.window * QUICK_BOOST
        return self.window

    def _signal_if_drained(self) -> None:
        with self._lock:
            if not self._running and not self._queue:
                self._drained.notify_all()

    # -- hooks (called by backends, from any thread) ------------------------------------

    def running(self, chunk_id: int) -> Chunk | None:
        """Return the running chunk with that id, or None if it has ended."""
        return self._running.get(chunk_id)

    def started(self, chunk_id: int, pid: int | None, when: float | None = None) -> None:
        """A worker took the chunk at ``when`` (None: now): start its clock."""
        chunk = self._running.get(chunk_id)
        if chunk is None:
            return
        chunk.mark_started(pid, when)
        if chunk.timeout is not None and chunk.started is not None:
            deadline = chunk.started + chunk.timeout * chunk.count
            if self.backend.keep_time(chunk, deadline):
                return
            with self._lock:
                if self._deadlines is None:
                    self._deadlines = _Deadlines(self.expired)
                deadlines = self._deadlines
            deadlines.add(deadline, chunk)

    def complete(
        self, chunk: Chunk, values: list[Any], errors: dict[int, BaseException], elapsed: float
    ) -> None:
        """The chunk ran to its end."""
        chunk.elapsed = elapsed
        if chunk.count == 1:
            self._call_time += (elapsed - self._call_time) * 0.2
        failure: BaseException | None = None
        if chunk.timeout is not None:
            # The worker's own measure counts, as its start may be told late.
            limit = chunk.timeout * chunk.count
            if elapsed > limit or (
                chunk.started is not None and time.monotonic() - chunk.started > limit
            ):
                failure = self._timeout_error(chunk)
        if self._finish(chunk, values, errors, failure) and failure is not None:
            log.warning("%s", failure)

    def fail(self, chunk: Chunk, failure: BaseException) -> bool:
        """The chunk failed as a whole; False if it had already ended."""
        return self._finish(chunk, None, {}, failure)

    def broken(self, failure: BaseException) -> None:
        """The workers cannot run: fail everything and refuse new work."""
        with self._lock:
            if self._broken is not None or self._state == TERMINATED:
                return
            self._broken = failure
            self._state = BROKEN
            victims = list(self._queue) + list(self._running.values())
            self._queue.clear()
        error = BrokenExecutorError(
            f"the {self.settings.backend} workers cannot run tasks: {failure}; "
            f"create a new {self.owner} once the cause is fixed"
        )
        error.__cause__ = failure
        for chunk in victims:
            self.fail(chunk, error)
        backend = getattr(self, "backend", None)
        if backend is not None:  # else __init__ terminates it once it exists
            threading.Thread(target=backend.terminate, name="parallelkit-terminate").start()

    def _finish(
        self,
        chunk: Chunk,
        values: list[Any] | None,
        errors: dict[int, BaseException],
        failure: BaseException | None,
    ) -> bool:
        with self._lock:
            if self._running.pop(chunk.id, None) is None:
                return False
            if not self._running and not self._queue:
                self._drained.notify_all()
        self._notify(chunk, values, errors, failure)
        self._pump()
        return True

    @staticmethod
    def _notify(
        chunk: Chunk,
        values: list[Any] | None,
        errors: dict[int, BaseException],
        failure: BaseException | None,
    ) -> None:
        chunk.on_done(chunk, values, errors, failure)

    def _timeout_error(self, chunk: Chunk) -> TaskTimeoutError:
        where = f" on worker pid {chunk.pid}" if chunk.pid is not None else ""
        limit = f"task_timeout={chunk.timeout:g}s"
        if chunk.count > 1:
            limit += f" x {chunk.count} tasks in its chunk"
        return TaskTimeoutError(
            f"{chunk.label} ran longer than {limit}{where}"
            + ("; the worker was stopped and replaced" if chunk.pid is not None else "")
            + self.backend.timeout_note
        )

    def expired(self, chunk: Chunk) -> None:
        """The chunk ran past its time limit: fail it and stop its worker."""
        error = self._timeout_error(chunk)
        if self.fail(chunk, error):
            log.warning("%s", error)
            self.backend.abort(chunk)

    # -- the three ways in --------------------------------------------------------------

    def submit(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Future[T]:
        """Run ``fn(*args, **kwargs)``; return its Future."""
        with self._lock:
            self._check_open()
        future: Future[T] = Future()
        label = f"task {{}} (fn={describe(fn)})"
        chunk = self.chunk(
            self.backend.prepare_fn(fn),
            label,
            [(args, kwargs)],
            CALL,
            self.resolve_timeout(timeout),
            _resolve_single,
            future,
        )
        chunk.label = label.format(chunk.id)
        self.enqueue((chunk,))
        return future

    def resolve_timeout(self, timeout: float | None) -> float | None:
        """A call's own ``task_timeout``, or the engine's when it gave none."""
        return self.task_timeout if timeout is None else check_timeout(timeout)

    def map_all(
        self,
        fn: Callable[..., Any],
        items: list[Any],
        mode: int,
        *,
        chunksize: int | None,
        timeout: float | None,
        kind: str,
        on_chunk: Callable[[int], None] | None = None,
    ) -> Future[list[Any]]:
        """Map a materialized list; the Future resolves to every result, or the first error.

        ``on_chunk(count)`` is called as each chunk's results land (from the
        thread that delivers them, before the Future resolves); if it raises,
        the map fails with its exception. It is how progress is shown.
        """
        with self._lock:
            self._check_open()
        limit = self.resolve_timeout(timeout)
        if limit is not None and chunksize is None:
            chunksize = 1  # a time limit is per task: keep tasks apart
        sizer = ChunkSizer(chunksize, len(items), self.backend.workers)
        result: Future[list[Any]] = Future()
        result.set_running_or_notify_cancel()
        if not items:
            result.set_result([])
            return result
        fn_payload = self.backend.prepare_fn(fn)
        name = describe(fn)
        gather = _Gather(result, len(items), on_chunk)
        size = sizer.size
        chunks = gather.chunks
        self._stoppers[result] = chunks
        result.add_done_callback(self._stoppers.pop)
        # Queue each chunk as soon as its items are pickled: the first worker
        # starts while the rest are being pickled, as with Pool.map's task thread.
        try:
            for start in range(0, len(items), size):
                if result.done():  # a chunk failed already (inline backends run as queued)
                    break
                chunk = self.chunk(
                    fn_payload,
                    f"items {start}-{min(start + size, len(items)) - 1} of {kind}(fn={name})",
                    items[start : start + size],
                    mode,
                    limit,
                    functools.partial(gather.done, start),
                )
                chunks.append(chunk)
                self.enqueue((chunk,))
        except BaseException as exc:
            gather.fail(exc)
            for chunk in chunks:
                chunk.future.cancel()
            raise
        return result

    # -- stopping work ------------------------------------------------------------------

    def cancel(self, future: Future[Any], kill: bool) -> bool:
        """Cancel a task; with ``kill``, also one that is running (process backend).

        Returns:
            True if the task will not deliver a result.
        """
        if not kill:
            return future.cancel()
        return self.stop_future(future, "cancelled")  # which first tries future.cancel()

    def stop_future(self, future: Future[Any], reason: str) -> bool:
        """Stop the work behind a Future of :meth:`submit` or :meth:`map_all`.

        Returns:
            True if the Future will not deliver a result.
        """
        if future.cancel():
            return True
        if future.done() or not self.backend.can_kill:
            return False
        chunks = self._stoppers.get(future)
        if chunks is not None:
            self.stop(chunks, reason)
            return True
        with self._lock:
            chunk = next((c for c in self._running.values() if c.future is future), None)
        return chunk is not None and self._stop_running(chunk, reason)

    def stop(self, chunks: Iterable[Chunk], reason: str) -> None:
        """Stop chunks: drop the queued ones, kill the running ones where possible."""
        for chunk in chunks:
            if not chunk.future.cancel() and self.backend.can_kill:
                self._stop_running(chunk, reason)

    def _stop_running(self, chunk: Chunk, reason: str) -> bool:
        error = CancelledError(f"{chunk.label} was {reason} while running; its worker was stopped")
        if self.fail(chunk, error):
            where = f"worker pid {chunk.pid}" if chunk.pid is not None else "its worker"
            log.warning("%s was %s while running; %s is killed", chunk.label, reason, where)
            self.backend.abort(chunk)
            return True
        return False

    # -- shutting down ------------------------------------------------------------------

    def close(self, cancel_pending: bool = False, *, background: bool = True) -> None:
        """Accept no new work; queued work still runs unless ``cancel_pending``.

        Lazy maps made before keep reading their input as they are consumed.

        Args:
            cancel_pending: Cancel the queued work instead.
            background: Start a thread that waits for the work and then lets
                the workers exit (False when the caller joins right away).
        """
        with self._lock:
            self.released = True
            first = self._state == RUNNING
            if first:
                self._state = CLOSING
            dropped: list[Chunk] = []
            if cancel_pending:
                dropped = list(self._queue)
                self._queue.clear()
            # A chunk being handed over keeps the backend open: it is closed
            # once that chunk is done (by join(), or the closer thread).
            idle = first and not self._queue and not self._maps and not self._handing
            done = first and not self._busy()
        for chunk in dropped:
            chunk.future.cancel()
            self._notify(chunk, None, {}, CancelledError())
        self._signal_if_drained()
        if idle:  # nothing more can reach the backend: let its workers go now
            self._close_backend()
        if done:
            # Nothing is left to wait for: the backend's workers and threads end
            # on their own, and join() (if it comes) only collects them.
            self._stop_deadlines()
        elif first and background:
            threading.Thread(
                target=self.join, kwargs={"finish_maps": False}, name="parallelkit-closer"
            ).start()

    def _close_backend(self) -> None:
        with self._lock:
            if self._backend_closed:
                return
            self._backend_closed = True
        self.backend.close()

    def map_started(self, it: LazyMap) -> None:
        """Remember a lazy map, which may queue chunks until its input is used up."""
        with self._lock:
            self._maps.add(it)

    def map_ended(self, it: LazyMap) -> None:
        """A lazy map has used up its input, or was closed: stop waiting for it."""
        with self._lock:
            self._maps.discard(it)
            if not self._maps:
                self._drained.notify_all()

    def _waiting_maps(self) -> bool:
        """Whether lazy maps may still queue work (only while closing, not once stopped)."""
        return bool(self._maps) and self._state == CLOSING

    def _busy(self) -> bool:
        """Work left to wait for."""
        return bool(self._running or self._queue) or self._waiting_maps()

    def join(self, timeout: float | None = None, *, finish_maps: bool = True) -> bool:
        """Wait for queued and running work, then for the workers to exit.

        Lazy maps whose input is not used up are finished first: an input of
        known length is read to its end now (its results wait in the map, as
        with ``multiprocessing.Pool``), one of unknown length is cut where it
        is (the map raises :class:`ClosedError` after the results it has).

        Args:
            timeout: Seconds to wait at most; None waits as long as it takes.
            finish_maps: False for the closer thread, which waits for lazy
                maps to be used up by their consumer instead.

        Returns:
            False if ``timeout`` passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if finish_maps:
            with self._lock:
                self._cut_maps = True
                self._drained.notify_all()  # a closer thread may be waiting for the maps
        while True:
            with self._lock:
                maps = list(self._maps) if self._cut_maps and self._waiting_maps() else []
                if not maps:
                    if not self._busy():
                        first = not self._joined
                        self._joined = True
                        break
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    if self._waiting_maps():  # a dropped map ends silently
                        remaining = MAP_LOOK if remaining is None else min(remaining, MAP_LOOK)
                    self._drained.wait(remaining)
                    continue
            for it in maps:
                it.finish_input()
        if not first:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            return self._stopped.wait(remaining)
        try:
            if self._state != TERMINATED:
                self._close_backend()
                self.backend.join()
        finally:
            self._stop_deadlines()
            with self._lock:
                if self._state in (RUNNING, CLOSING):
                    self._state = CLOSED
            self._stopped.set()
            log.debug("%s (%s backend) stopped", self.owner, self.settings.backend)
        return True

    def terminate(self) -> None:
        """Stop now: queued work is cancelled, running work fails, workers are stopped."""
        with self._lock:
            self.released = True
            if self._state == TERMINATED:
                return
            self._state = TERMINATED
            self._joined = True
            queued = list(self._queue)
            self._queue.clear()
            running = list(self._running.values())
        for chunk in queued:
            chunk.future.cancel()
            self._notify(chunk, None, {}, CancelledError())
        stopped = ClosedError(
            f"the {self.owner} ({self.settings.backend} backend) was terminated "
            "before the task ended"
        )
        for chunk in running:
            self.fail(chunk, stopped)
        if not self._stopped.is_set():
            self.backend.terminate()
        self._stop_deadlines()
        self._signal_if_drained()
        self._stopped.set()
        log.debug("%s (%s backend) terminated", self.owner, self.settings.backend)

    def _stop_deadlines(self) -> None:
        with self._lock:
            deadlines, self._deadlines = self._deadlines, None
        if deadlines is not None:
            deadlines.stop()


def _resolve_single(
    chunk: Chunk,
    values: list[Any] | None,
    errors: dict[int, BaseException],
    failure: BaseException | None,
) -> None:
    future = chunk.future
    if future.done():
        return
    if failure is not None:
        future.set_exception(failure)
    elif errors:
        future.set_exception(errors[0])
    else:
        assert values is not None
        future.set_result(values[0])


@final
class _Gather:
    """Collects the chunks of a ``map_all`` into one list.

    Each chunk refers to its gather (through its ``on_done``) and the gather
    to its chunks (to cancel the rest on a failure): the gather lets go of
    them once the result is settled, so the results are freed as soon as the
    caller drops them, not at the garbage collector's next pass.
    """

    def __init__(
        self,
        result: Future[list[Any]],
        count: int,
        on_chunk: Callable[[int], None] | None = None,
    ) -> None:
        self.result = result
        self.on_chunk = on_chunk
        self.values: list[Any] = [None] * count
        self.remaining = count
        self.lock = threading.Lock()
        self.chunks: list[Chunk] = []

    def done(
        self,
        start: int,
        chunk: Chunk,
        values: list[Any] | None,
        errors: dict[int, BaseException],
        failure: BaseException | None,
    ) -> None:
        with self.lock:
            if self.result.done():
                return
            if failure is None and errors:
                failure = errors[min(errors)]
            if failure is not None:
                self._fail(failure)
                return
            assert values is not None
            self.values[start : start + chunk.count] = values
            self.remaining -= chunk.count
            if self.on_chunk is not None:
                try:
                    self.on_chunk(chunk.count)
                except BaseException as exc:
                    self._fail(exc)
                    return
            if self.remaining == 0:
                self.chunks = []
                self.result.set_result(self.values)

    def fail(self, failure: BaseException) -> None:
        """Settle the result with ``failure`` unless it is settled already."""
        with self.lock:
            if not self.result.done():
                self._fail(failure)

    def _fail(self, failure: BaseException) -> None:
        chunks, self.chunks = self.chunks, []
        self.result.set_exception(failure)
        for other in chunks:
            other.future.cancel()
