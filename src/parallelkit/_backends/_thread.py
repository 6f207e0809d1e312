"""The thread backend: plain threads in this process.

::

    engine ── send(chunk) ──▶ chunk queue (queue.SimpleQueue) ──▶ worker threads
                                                                  ("parallelkit-thread-N"):
    engine ◀── hooks.started / hooks.complete ─────────────────── the initializer first, then
                 (called from those threads)                       take a chunk, run it
                                                                   (None: the thread ends)

A chunk costs one queue hand-over, as a task of ``ThreadPoolExecutor`` does.
``terminate()`` waits for the threads that are not running a task's code
(they end at once); those that are run on until it returns.
A thread cannot be killed: a chunk that passes its ``task_timeout`` fails on
time for the caller, but its thread runs on until the function returns.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, final

from . import _inline
from ._base import BackendOptions, Chunk, Hooks

if TYPE_CHECKING:
    from .._config import Settings

__all__ = ("Backend",)

#: How long terminate() waits for a thread that was not running a task's code
#: when it looked (one may have just taken a chunk).
JOIN_WAIT: Final = 1.0


@final
class Backend:
    """Runs chunks in threads of its own."""

    start_method: str | None = None
    can_kill = False
    timeout_note = "; its thread cannot be stopped and runs on, its result is discarded"
    channel_address: str | None = None

    def __init__(self, hooks: Hooks, settings: Settings, options: BackendOptions) -> None:
        # Weakly, and nothing the threads hold refers to this backend: a dropped
        # executor is freed by reference counting, not by the garbage collector.
        self._hooks: Hooks = weakref.proxy(hooks)
        self._check_pickle = settings.check_pickle
        self._ending = threading.Lock()
        self._ended = False
        self.workers = settings.workers
        self.window = 4 * settings.workers
        # max_tasks_per_worker recycles processes (leaks, fragmentation); threads
        # share one process, so there is nothing to recycle.
        self._chunks: queue.SimpleQueue[Chunk | None] = queue.SimpleQueue()
        failed = threading.Event()
        # Threads running the user's code (a task, the initializer).
        self._busy: set[int] = set()
        self._threads = [
            threading.Thread(
                target=_thread_main,
                args=(options.initializer, tuple(options.initargs), self._chunks, self._hooks),
                kwargs={"failed": failed, "busy": self._busy},
                name=f"parallelkit-thread-{i}",
                daemon=True,
            )
            for i in range(settings.workers)
        ]
        for thread in self._threads:
            thread.start()

    def prepare_fn(self, fn: Callable[..., Any]) -> object:
        return _inline.prepare_fn(fn, self._check_pickle)

    def pack_items(self, items: list[Any]) -> object:
        return _inline.pack_items(items, self._check_pickle)

    def send(self, chunk: Chunk) -> None:
        self._chunks.put(chunk)

    def keep_time(self, chunk: Chunk, deadline: float) -> bool:
        """No clock of its own: the engine keeps the time."""
        return False

    def abort(self, chunk: Chunk) -> None:
        """Threads cannot be stopped; the engine has already failed the chunk."""

    def close(self) -> None:
        # Behind the chunks already queued: each thread ends once they have run.
        with self._ending:
            self._end_threads()

    def join(self) -> None:
        me = threading.current_thread()
        for thread in self._threads:
            if thread is not me:
                thread.join()
        self.terminate()

    def terminate(self) -> None:
        # A running task cannot be stopped: its thread ends once it returns
        # (not waited for, as with multiprocessing.dummy.Pool). The others end
        # at once and are waited for: a thread still reporting a chunk holds
        # the chunk, and through its callbacks the executor.
        with self._ending:
            # Chunks still queued do not run: the engine has failed them. The
            # words to end are taken too (by an earlier close() or terminate()):
            # each thread gets one again.
            with contextlib.suppress(queue.Empty):
                while True:
                    self._chunks.get_nowait()
            self._ended = False
            self._end_threads()
        me = threading.current_thread()
        for thread in self._threads:
            if thread is not me and thread.ident not in self._busy:
                thread.join(JOIN_WAIT)

    def _end_threads(self) -> None:
        """Queue each thread's word to end, once (hold ``_ending``)."""
        if not self._ended:
            self._ended = True
            for _ in range(self.workers):
                self._chunks.put(None)


def _thread_main(
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
    chunks: queue.SimpleQueue[Chunk | None],
    hooks: Hooks,
    *,
    failed: threading.Event,
    busy: set[int],
) -> None:
    """What each worker thread runs: the initializer, then chunks until None comes.

    Holds no reference to the backend or the engine (``hooks`` is a weak
    proxy): a dropped executor is freed by reference counting.
    """
    me = threading.get_ident()
    busy.add(me)
    try:
        _init_thread(initializer, initargs, failed, hooks)
    finally:
        busy.discard(me)
    while True:
        chunk = chunks.get()
        if chunk is None:
            return
        try:
            if not failed.is_set():  # else the engine is broken: its chunks fail there
                _inline.run_chunk(hooks, chunk, catch_interrupt=True, busy=busy)
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
        # Reported once; the backend is terminated and no task runs after this.
        failed.set()
        with contextlib.suppress(ReferenceError):  # the executor is gone: nobody to tell
            hooks.broken(exc)
