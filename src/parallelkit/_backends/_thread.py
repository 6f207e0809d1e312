"""The thread backend: ``multiprocessing.dummy.Pool`` (threads, one process).

::

    engine ── send(chunk) ──▶ chunk queue (queue.SimpleQueue) ──▶ each thread of a
                                                                  multiprocessing.dummy.Pool
                                                                  runs one long job:
    engine ◀── hooks.started / hooks.complete ────────────────── take a chunk, run it
                 (called from those threads)                       (None: the job ends)

Each of the pool's threads runs one job for the life of the pool, which takes
chunks from the queue: a chunk costs one queue hand-over, as a task of
``ThreadPoolExecutor`` does, instead of ``apply_async``'s three (the pool's
task thread, a worker, the pool's result thread).

A thread cannot be killed: a chunk that passes its ``task_timeout`` fails on
time for the caller, but its thread runs on until the function returns.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
import weakref
from collections.abc import Callable
from multiprocessing.dummy import Pool as ThreadPool
from typing import Any, final

from .._config import Settings
from . import _inline, _mp_private
from ._base import BackendOptions, Chunk, Hooks

__all__ = ("Backend",)


@final
class Backend:
    """Runs chunks in the threads of a ``multiprocessing.dummy.Pool``."""

    start_method: str | None = None
    can_kill = False

    def __init__(self, hooks: Hooks, settings: Settings, options: BackendOptions) -> None:
        # Weakly, and nothing the pool holds refers to this backend: with a
        # cycle, the pool (and the named semaphores of its change notifier)
        # would be freed by the garbage collector, not as soon as the executor is.
        self._hooks: Hooks = weakref.proxy(hooks)
        self._check_pickle = settings.check_pickle
        self._ending = threading.Lock()
        self._ended = False
        self._init_failed = threading.Event()
        self.workers = settings.workers
        self.window = 4 * settings.workers
        # max_tasks_per_worker recycles processes (leaks, fragmentation); threads
        # share one process, so there is nothing to recycle.
        self._pool = ThreadPool(
            settings.workers,
            functools.partial(
                _init_thread,
                options.initializer,
                tuple(options.initargs),
                self._init_failed,
                self._hooks,
            ),
        )
        self._chunks: queue.SimpleQueue[Chunk | None] = queue.SimpleQueue()
        for _ in range(self.workers):
            self._pool.apply_async(_take_chunks, (self._chunks, self._hooks, self._init_failed))

    def prepare_fn(self, fn: Callable[..., Any]) -> object:
        return _inline.prepare_fn(fn, self._check_pickle)

    def pack_items(self, items: list[Any]) -> object:
        return _inline.pack_items(items, self._check_pickle)

    def send(self, chunk: Chunk) -> None:
        self._chunks.put(chunk)

    def abort(self, chunk: Chunk) -> None:
        """Threads cannot be stopped; the engine has already failed the chunk."""

    def close(self) -> None:
        # The engine closes its backend once nothing is queued or running.
        self._end_jobs()
        self._pool.close()

    def join(self) -> None:
        self._pool.join()
        self.terminate()  # runs the pool's finalizer now; the threads have ended

    def terminate(self) -> None:
        # One caller at a time: the pool's finalizer must not run twice at once.
        with self._ending:
            if not self._ended:
                # Chunks still queued do not run: the engine has failed them.
                with contextlib.suppress(queue.Empty):
                    while True:
                        self._chunks.get_nowait()
                self._end_jobs()
                self._pool.terminate()
                _mp_private.release_terminated(self._pool)
                self._ended = True

    def _end_jobs(self) -> None:
        for _ in range(self.workers):
            self._chunks.put(None)


def _take_chunks(
    chunks: queue.SimpleQueue[Chunk | None], hooks: Hooks, failed: threading.Event
) -> None:
    """The job each thread of the pool runs: take chunks and run them until None comes.

    Holds no reference to the backend or the engine (``hooks`` is a weak
    proxy): a dropped executor is freed by reference counting.
    """
    while True:
        chunk = chunks.get()
        if chunk is None:
            return
        try:
            if not failed.is_set():  # else the engine is broken: its chunks fail there
                _inline.run_chunk(hooks, chunk, catch_interrupt=True)
        except ReferenceError:  # the engine is gone: nobody to tell
            return
        except BaseException as exc:  # not the task's: run_chunk reports those
            with contextlib.suppress(ReferenceError):
                hooks.fail(chunk, exc)
        finally:
            del chunk  # a task's frames keep this one: see _inline.run_chunk


def _init_thread(
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
    failed: threading.Event,
    hooks: Hooks,
) -> None:
    """Initializer of every worker thread: the user's, whose failure breaks the engine."""
    if initializer is None:
        return
    try:
        initializer(*initargs)
    except BaseException as exc:
        # Reported once; the pool is terminated and no task runs after this.
        failed.set()
        with contextlib.suppress(ReferenceError):  # the executor is gone: nobody to tell
            hooks.broken(exc)
