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
           a chunk without errors as one run at C speed, each result
           let go of as it goes out (see _hand_out)

    Engine.join(), from any thread ─▶ finish_input(): read the rest of an input
                                      of known length now, or cut one of unknown
                                      length (ClosedError after the results so far)

The input is read only in the caller's thread while the engine runs, and by
:meth:`ResultIterator.finish_input` when the engine is joined; a lock keeps
the two apart. :class:`MapIterator`, what ``Executor.map`` returns, is an
``itertools.chain`` over :meth:`ResultIterator.runs`, with ``close()``.
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
from typing import Any, Generic, TypeVar, cast, final

from ._backends._base import Chunk, OnDone
from ._chunking import ChunkSizer
from ._engine import Engine, describe
from ._errors import BrokenExecutorError, ClosedError
from ._progress import Progress, ProgressSpec, start_progress
from ._signals import SigtermInterrupts

__all__ = ("MapIterator", "ResultIterator")

T = TypeVar("T")


_Outcome = tuple[list[Any] | None, dict[int, BaseException], BaseException | None]


def _hand_out(values: list[Any]) -> tuple[Iterator[Any], list[tuple[()]]]:
    """Hand ``values`` out in order at C speed, letting go of each one as it goes out.

    A list iterator would keep the whole list, and with it every result
    already handed out, until the last one is taken: a caller that drops each
    result as it goes would still hold a chunk's worth (CPython's bpo-14406,
    fixed in ``concurrent.futures.Executor.map`` the same way). Here the list
    is reversed and ``itertools.starmap`` calls its ``pop()`` once per item.

    Args:
        values: The results, in order; emptied as they are handed out.

    Returns:
        The iterator, and the list of its calls: clearing that list (before
        ``values``) ends the iterator at once.
    """
    values.reverse()
    calls: list[tuple[()]] = [()] * len(values)
    return itertools.starmap(values.pop, calls), calls


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
        progress: ProgressSpec | None = None,
        total: int | None = None,
    ) -> None:
        """Start a lazy map on ``engine``: its first window is queued now.

        ``progress`` (checked by the caller) is shown for ``len(iterable)``
        items, or ``total`` when the iterable has no length.

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
        #: Outcomes of chunks, as they end; None once closed (it wakes a waiting consumer).
        self._done: queue.SimpleQueue[tuple[Chunk, _Outcome] | None] = queue.SimpleQueue()
        self._outstanding: dict[int, Chunk] = {}
        self._arrived: dict[int, _Outcome] = {}
        self._buffer: deque[tuple[bool, Any]] = deque()
        #: What is left of a chunk that ran without errors, handed out as it is
        #: (see _hand_out), with the two lists close() clears to end it.
        self._fast: Iterator[Any] = iter(())
        self._fast_values: list[Any] = []
        self._fast_calls: list[tuple[()]] = []
        #: Set while a caller that keeps every result (list(), tuple()...) reads:
        #: the chunks then go out as they are (see __length_hint__).
        self._keeps_all = False
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
        #: Items of the chunks that arrived and are not yet counted by the progress.
        self._unreported = 0
        #: Set when next(timeout) raises because the time passed (the map goes on).
        self._waited_out = False
        self._progress: Progress | None = start_progress(
            progress, length if length is not None else total, self._name
        )
        engine.map_started(self)
        try:
            with self._lock:
                self._refill()  # the first window starts now, as with concurrent.futures
        except BaseException:
            self._end_progress()
            raise

    def __iter__(self) -> Iterator[T]:
        """Iterate at C speed: whole runs of results go out without a Python call each.

        ``next(it)`` and ``it.next(timeout)`` keep working between loops, and a
        loop may be started again after it raised a task's exception.
        """
        self._keeps_all = False  # a loop; list() and the like say otherwise next
        return itertools.chain.from_iterable(self._runs(None))

    def __length_hint__(self) -> int:
        """No estimate; being asked tells that the caller keeps every result.

        ``list()``, ``tuple()``, ``sorted()`` and ``str.join`` ask what they
        read for its length (PEP 424), a ``for`` loop and ``next()`` never do.
        Such a caller keeps every result anyway: from then on a chunk goes out
        as it is, through a list's own iterator, not one ``pop()`` per result
        (see _hand_out), which would slow ``list(ex.map(...))`` of tiny tasks
        by a fifth. ``__iter__`` and ``next()`` go back to letting go of each.
        """
        self._keeps_all = True
        return NotImplemented  # type: ignore[no-any-return]  # "no estimate" (PEP 424)

    def __next__(self) -> T:
        self._keeps_all = False
        for value in self._fast:  # the common case: no further Python call
            return value  # type: ignore[no-any-return]
        return self._next(None)

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
        self._keeps_all = False
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._next(deadline)

    def _next(self, deadline: float | None) -> T:
        if self._progress is None:
            return self._next_result(deadline)
        self._waited_out = False
        try:
            return self._next_result(deadline)
        except StopIteration:
            raise
        except (KeyboardInterrupt, Exception):
            if not self._waited_out:  # (a waiting time that passed ends nothing)
                self._end_progress()  # a task's error, Ctrl-C: the bar closes before the traceback
            raise

    def _next_result(self, deadline: float | None) -> T:
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
                    self._end_progress()
                    self._closed = True
                    if self._input_error is not None:
                        error, self._input_error = self._input_error, None
                        try:
                            raise error
                        finally:
                            del error  # as above: no cycle through this frame
                    raise StopIteration
                taken = self._take_next()
                unreported, self._unreported = self._unreported, 0
            if unreported and self._progress is not None:
                self._progress.advance(unreported)
            if taken is None:
                self._wait(deadline)
            else:
                self._expand(*taken)
                del taken  # the errors it holds are raised from this frame next

    def _end_progress(self) -> None:
        """Count what arrived, then close the progress: the map has ended or raised."""
        progress = self._progress
        if progress is not None:
            with self._lock:
                unreported, self._unreported = self._unreported, 0
            try:
                if unreported:
                    progress.advance(unreported)
            finally:
                progress.close()

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
            try:
                last = [self._next(deadline)]
            except StopIteration:
                return
            # Not a tuple: the chain would keep it, and the result, until the next one.
            yield _hand_out(last)[0]

    def _expand(self, chunk: Chunk, outcome: _Outcome) -> None:
        values, errors, failure = outcome
        if failure is not None:
            self._buffer.extend((False, failure) for _ in range(chunk.count))
        elif not errors:
            assert values is not None
            if self._keeps_all:
                self._fast, self._fast_calls = iter(values), []
            else:
                self._fast, self._fast_calls = _hand_out(values)
            self._fast_values = values
        else:
            assert values is not None
            self._buffer.extend(
                (False, errors[i]) if i in errors else (True, v) for i, v in enumerate(values)
            )
            # On threads and inline, a task's exception keeps the frame that ran
            # the chunk, and that frame this list: it must not keep the results.
            values.clear()

    def _wait(self, deadline: float | None) -> None:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            with SigtermInterrupts():
                arrived = self._done.get(timeout=remaining)
        except KeyboardInterrupt:  # Ctrl-C (or SIGTERM) while waiting: stop this map
            self._engine.stop(list(self._outstanding.values()), "interrupted")
            self.close()
            raise
        except queue.Empty:
            self._waited_out = True
            raise self._timeout_error("the next result did not arrive in time") from None
        with self._lock:
            while arrived is not None:  # None: closed from another thread
                self._arrive(*arrived)
                try:
                    arrived = self._done.get_nowait()
                except queue.Empty:
                    break
            del arrived
            self._refill()

    def _arrive(self, chunk: Chunk, outcome: _Outcome) -> None:
        if chunk.id in self._outstanding:
            self._arrived[chunk.id] = outcome
            self._unreported += chunk.count
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
        """Drop the outcomes that arrived and were not taken; wake a waiting consumer."""
        while True:
            try:
                self._done.get_nowait()
            except queue.Empty:
                break
        self._done.put(None)

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
                self._unreported += chunk.count
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
        """Stop: the input is no longer read, chunks not started are cancelled.

        Chunks already handed to the workers run to their end and their
        results are dropped; results not yet taken are dropped too, and the
        iterator ends. Closing again does nothing; dropping the iterator closes it.

        Examples:
            >>> import itertools, parallelkit
            >>> with parallelkit.Executor("thread", 2) as ex:
            ...     results = ex.imap(abs, itertools.count())
            ...     first = next(results)
            ...     results.close()
            ...     print(first, list(results))
            0 []
        """
        self._close()
        self._engine.map_ended(self)

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._fast_calls.clear()  # ends the chain's hand-out too, if it is under way
            self._fast_values.clear()
            self._fast = iter(())
            self._buffer.clear()
            for chunk in self._outstanding.values():
                chunk.future.cancel()
            self._outstanding.clear()
            self._arrived.clear()
        if self._progress is not None:
            self._progress.close()
        self._drain()

    def __del__(self) -> None:
        if hasattr(self, "_lock"):  # __init__ may have failed half-way
            # Not close(): the collector may run while this thread holds the
            # engine's lock; the engine's (weak) set of maps forgets it by itself.
            self._close()


@final
class MapIterator(itertools.chain[T]):
    """What :meth:`Executor.map <parallelkit.Executor.map>` returns: its results, in input order.

    An iterator, as the generator of ``concurrent.futures.Executor.map`` is,
    with the same :meth:`close`: closing it (or leaving a
    ``with contextlib.closing(ex.map(...))`` block, or dropping it) cancels the
    work not yet started, so ``shutdown()`` does not wait for it. A task's
    exception is raised when its result is reached, and then the iterator
    ends; so does a ``timeout`` of the map. A result once handed out is not
    kept here. It is an ``itertools.chain`` underneath, so ``list()`` and
    ``for`` loops take whole chunks of results at C speed.

    Examples:
        >>> import contextlib, parallelkit
        >>> with parallelkit.Executor("thread", 2) as ex:
        ...     with contextlib.closing(ex.map(abs, range(-1000, 0))) as results:
        ...         print(next(results), next(results))
        1000 999
    """

    __slots__ = ("__weakref__", "_results")

    _results: ResultIterator[T]

    def __new__(cls, results: ResultIterator[T], deadline: float | None) -> MapIterator[T]:
        """Chain the runs of ``results``, which must all be there by ``deadline``."""
        self = cast("MapIterator[T]", cls.from_iterable(results.runs(deadline)))
        self._results = results
        return self

    def __length_hint__(self) -> int:
        """No estimate; see :meth:`ResultIterator.__length_hint__`."""
        return self._results.__length_hint__()

    def close(self) -> None:
        """Stop, as ``close()`` of the generator of ``concurrent.futures`` does.

        Chunks not yet handed to the workers are cancelled and never run, and
        the input is no longer read. Chunks the workers already hold (up to
        4 x ``workers``; ``ProcessPoolExecutor`` likewise runs the calls it has
        moved to its call queue) run to their end; their results are dropped.
        After it, iterating ends at once. Closing again does nothing.
        """
        self._results.close()


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
