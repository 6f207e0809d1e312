"""Lazy maps: the results of ``imap``, ``imap_unordered``, ``starmap`` and ``Executor.map``.

::

    caller's thread (iterating)                       engine / backend threads
    ───────────────────────────                       ────────────────────────
    next(it) ─▶ _refill(): read the input, at most ──▶ Engine.enqueue(chunk)
                ``window`` chunks in flight                  │ runs on a worker
                                                             ▼
    _wait() ◀── _done queue ◀── _on_done(chunk, outcome) ◀── Engine._finish
       │
       └─▶ results handed out in input order (or as they finish),
           a chunk without errors as one run at C speed

    Engine.join(), from any thread ─▶ finish_input(): read the rest of an input
                                      of known length now, or cut one of unknown
                                      length (ClosedError after the results so far)

The input is read only in the caller's thread while the engine runs, and by
:meth:`ResultIterator.finish_input` when the engine is joined; a lock keeps
the two apart.
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, Generic, TypeVar, final

from ._backends._base import Chunk, OnDone
from ._chunking import ChunkSizer
from ._engine import Engine, describe
from ._errors import BrokenExecutorError, ClosedError
from ._signals import SigtermInterrupts

__all__ = ("ResultIterator",)

T = TypeVar("T")


_Outcome = tuple[list[Any] | None, dict[int, BaseException], BaseException | None]


@final
class ResultIterator(Generic[T]):
    """Results of a lazy map, in order or as they finish.

    Reads its input only as chunks are needed (at most ``window`` chunks are
    outstanding), so endless inputs work and memory stays flat. Unlike a
    generator it may be advanced again after it raised a task's exception,
    as ``multiprocessing.Pool.imap``'s iterator can.
    """

    def __init__(
        self,
        engine: Engine,
        fn: Callable[..., Any],
        iterable: Iterable[Any],
        mode: int,
        *,
        chunksize: int | None,
        ordered: bool,
        timeout: float | None,
        kind: str,
        timeout_error: type[BaseException] = TimeoutError,
    ) -> None:
        """Start a lazy map on ``engine``: its first window is queued now.

        Raises:
            ClosedError: The engine no longer accepts work.
            BrokenExecutorError: Its workers cannot run.
        """
        engine.check_open()
        timeout = engine.resolve_timeout(timeout)
        length: int | None
        try:
            length = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            length = None
        if timeout is not None and chunksize is None:
            chunksize = 1  # a time limit is per task: keep tasks apart
        self._sizer = ChunkSizer(chunksize, length, engine.backend.workers)
        self._engine = engine
        self._fn = engine.backend.prepare_fn(fn)
        self._name = f"{kind}(fn={describe(fn)})"
        self._it = iter(iterable)
        #: A plain list or tuple is read by slicing, not item by item: the same
        #: items, read at the same moments, in a fraction of the time.
        self._seq: list[Any] | tuple[Any, ...] | None = (
            iterable if type(iterable) in (list, tuple) else None  # type: ignore[assignment]
        )
        self._mode = mode
        self._ordered = ordered
        self._timeout = timeout
        self._done: queue.SimpleQueue[tuple[Chunk, _Outcome]] = queue.SimpleQueue()
        self._outstanding: dict[int, Chunk] = {}
        self._arrived: dict[int, _Outcome] = {}
        self._buffer: deque[tuple[bool, Any]] = deque()
        #: What is left of a chunk that ran without errors, handed out as it is.
        self._fast: Iterator[Any] = iter(())
        self._position = 0
        self._exhausted = False
        self._input_error: BaseException | None = None
        self._closed = False
        self._timeout_error = timeout_error
        self._known_length = length is not None
        #: Guards the input and the chunks in flight: join() may finish the
        #: input from another thread while the consumer iterates.
        self._lock = threading.RLock()
        #: What the chunks call with their outcome. It holds this map weakly:
        #: a map its caller dropped half-way is freed at once (and closed),
        #: not kept by its chunks still running until the garbage collector runs.
        self._deliver = _deliver_to(weakref.ref(self))
        engine.map_started(self)
        with self._lock:
            self._refill()  # the first window starts now, as with concurrent.futures

    def __iter__(self) -> Iterator[T]:
        """Iterate at C speed: whole runs of results go out without a Python call each.

        ``next(it)`` and ``it.next(timeout)`` keep working between loops, and a
        loop may be started again after it raised a task's exception.
        """
        return itertools.chain.from_iterable(self._runs(None))

    def __next__(self) -> T:
        for value in self._fast:  # the common case: no further Python call
            return value  # type: ignore[no-any-return]
        return self.next()

    def next(self, timeout: float | None = None) -> T:
        """Return the next result, waiting at most ``timeout`` seconds.

        Args:
            timeout: Seconds to wait; None waits as long as it takes.

        Returns:
            The next result.

        Raises:
            TimeoutError: ``timeout`` passed first (the iterator stays usable);
                ``multiprocessing.TimeoutError`` for iterators of :class:`Pool`.
            StopIteration: No results are left.
            Exception: The task's own exception, when its result is reached.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._next(deadline)

    def _next(self, deadline: float | None) -> T:
        while True:
            for value in self._fast:
                return value  # type: ignore[no-any-return]
            if self._buffer:
                ok, value = self._buffer.popleft()
                if ok:
                    return value  # type: ignore[no-any-return]
                try:
                    raise value
                finally:
                    del value  # else this frame and the error's traceback hold each other
            with self._lock:
                if self._closed:
                    raise StopIteration
                self._refill()
                if not self._outstanding:
                    self._closed = True
                    if self._input_error is not None:
                        error, self._input_error = self._input_error, None
                        try:
                            raise error
                        finally:
                            del error  # as above: no cycle through this frame
                    raise StopIteration
                taken = self._take_next()
            if taken is None:
                self._wait(deadline)
            else:
                self._expand(*taken)
                del taken  # the errors it holds are raised from this frame next

    def _take_next(self) -> tuple[Chunk, _Outcome] | None:
        """The next chunk's outcome if it has arrived (under the lock)."""
        if self._ordered:
            key = next(iter(self._outstanding))
            if key not in self._arrived:
                return None
        elif self._arrived:
            key = next(iter(self._arrived))
        else:
            return None
        return self._outstanding.pop(key), self._arrived.pop(key)

    def runs(self, deadline: float | None) -> Iterator[Iterable[T]]:
        """Runs of consecutive results, for ``itertools.chain.from_iterable``.

        What is left of a chunk without errors goes out as one iterator, so
        the chain reads each result at C speed; other results go out one by
        one, and the first error is raised, which ends the runs. The iterator
        is closed when this generator ends or is discarded.

        Args:
            deadline: ``time.monotonic()`` by which every result must be there.

        Yields:
            Iterables of results, in order.
        """
        try:
            yield from self._runs(deadline)
        finally:
            self.close()

    def _runs(self, deadline: float | None) -> Iterator[Iterable[T]]:
        while True:
            yield self._fast
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                value = self.next(remaining)
            except StopIteration:
                return
            yield (value,)

    def _expand(self, chunk: Chunk, outcome: _Outcome) -> None:
        values, errors, failure = outcome
        if failure is not None:
            self._buffer.extend((False, failure) for _ in range(chunk.count))
        elif not errors:
            assert values is not None
            self._fast = iter(values)
        else:
            assert values is not None
            self._buffer.extend(
                (False, errors[i]) if i in errors else (True, v) for i, v in enumerate(values)
            )

    def _wait(self, deadline: float | None) -> None:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            with SigtermInterrupts():
                chunk, outcome = self._done.get(timeout=remaining)
        except KeyboardInterrupt:  # Ctrl-C (or SIGTERM) while waiting: stop this map
            self._engine.stop(list(self._outstanding.values()), "interrupted")
            self.close()
            raise
        except queue.Empty:
            raise self._timeout_error("the next result did not arrive in time") from None
        with self._lock:
            self._arrive(chunk, outcome)
            while True:
                try:
                    chunk, outcome = self._done.get_nowait()
                except queue.Empty:
                    break
                self._arrive(chunk, outcome)
            self._refill()

    def _arrive(self, chunk: Chunk, outcome: _Outcome) -> None:
        if chunk.id in self._outstanding:
            self._arrived[chunk.id] = outcome
            if outcome[2] is None:
                self._sizer.observe(chunk.count, chunk.elapsed)

    def _on_done(
        self,
        chunk: Chunk,
        values: list[Any] | None,
        errors: dict[int, BaseException],
        failure: BaseException | None,
    ) -> None:
        self._done.put((chunk, (values, errors, failure)))
        if self._closed:  # nobody takes it: the chunk in the queue would hold this map
            self._drain()

    def _drain(self) -> None:
        """Drop the outcomes that arrived and were not taken."""
        while True:
            try:
                self._done.get_nowait()
            except queue.Empty:
                return

    def _refill(self, limit: float | None = None) -> None:
        """Queue chunks while fewer than ``limit`` (the window) are in flight (under the lock)."""
        engine = self._engine
        window = engine.window if limit is None else limit
        exhausted = self._exhausted
        while not self._exhausted and not self._closed and len(self._outstanding) < window:
            batch: list[Any] = []
            seq = self._seq
            if seq is not None:
                part = seq[self._position : self._position + self._sizer.size]
                batch = part if type(part) is list else list(part)
            else:
                try:
                    batch.extend(itertools.islice(self._it, self._sizer.size))
                except Exception as exc:  # raised once the results before it are out
                    self._input_error = exc
                    self._exhausted = True
            if not batch:
                self._exhausted = True
                break
            first = self._position
            self._position += len(batch)
            label = f"items {first}-{self._position - 1} of {self._name}"
            try:
                chunk = engine.chunk(
                    self._fn, label, batch, self._mode, self._timeout, self._deliver
                )
            except Exception as exc:
                chunk = Chunk(
                    0, None, label, None, len(batch), self._mode, None, Future(), self._deliver
                )
                chunk.id = -first - 1
                self._outstanding[chunk.id] = chunk
                self._arrived[chunk.id] = (None, {}, exc)
                continue
            self._outstanding[chunk.id] = chunk
            engine.enqueue((chunk,), admitted=True)
        if self._exhausted and not exhausted:  # tell the engine once, as it happens
            engine.map_ended(self)

    def finish_input(self) -> None:
        """The engine is being joined: queue the rest of the input, or cut it.

        An input of known length is read to its end and all of it queued
        (its results wait here, as ``multiprocessing.Pool`` keeps them). One of
        unknown length may be endless: it is cut here, and the map raises
        :class:`ClosedError` once the results before the cut are out.
        """
        with self._lock:
            if self._known_length:
                try:
                    self._refill(limit=math.inf)
                except (ClosedError, BrokenExecutorError) as exc:  # stopped meanwhile
                    self._exhausted = True
                    self._input_error = exc
            elif not (self._exhausted or self._closed):
                self._exhausted = True
                self._input_error = ClosedError(
                    f"the {self._engine.owner} was joined (or shut down) before {self._name} "
                    "had read all of its input, whose length is unknown; it stops after item "
                    f"{self._position - 1}: use the results before join()/shutdown(), or "
                    "pass a list"
                )
        self._engine.map_ended(self)  # whatever happened, it queues nothing more

    def close(self) -> None:
        """Stop: drop the chunks that have not started; ignore the rest."""
        self._close()
        self._engine.map_ended(self)

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._fast = iter(())
            self._buffer.clear()
            for chunk in self._outstanding.values():
                chunk.future.cancel()
            self._outstanding.clear()
            self._arrived.clear()
        self._drain()

    def __del__(self) -> None:
        if hasattr(self, "_lock"):  # __init__ may have failed half-way
            # Not close(): the collector may run while this thread holds the
            # engine's lock; the engine's (weak) set of maps forgets it by itself.
            self._close()


def _deliver_to(ref: weakref.ref[ResultIterator[Any]]) -> OnDone:
    """A chunk's ``on_done`` that hands the outcome to the map if it still exists."""

    def deliver(
        chunk: Chunk,
        values: list[Any] | None,
        errors: dict[int, BaseException],
        failure: BaseException | None,
    ) -> None:
        it = ref()
        if it is not None:
            it._on_done(chunk, values, errors, failure)  # pyright: ignore[reportPrivateUsage]

    return deliver
