"""The process backend: ``multiprocessing.Pool``, whose result thread also sees deaths.

::

    engine ──submit(run_blob, (id, fn bytes, items bytes, mode))──▶ mp.Pool
                                                                     │ task channel
        ┌────────────────────────────────────────────────────────────┘ (TaskChannel)
        ▼
    worker processes (started by mp.Pool with the configured start method)
        │  ack pipe ──▶ the looks (see :mod:`._looks`)
        │  result queue: outcome bytes ──▶ mp.Pool result thread ──▶ engine.complete
        ▼                                  (reads with ResultReader; while it waits
                                            it looks after the workers)
    join(): close() first, then the joining thread looks after the workers
    until every one has ended, then the pool's parts are closed.
    terminate() (also at interpreter exit): the looks stop; if a queue's lock
    is held, every worker is stopped and the locks freed; then the pool's own
    terminate(), which takes those locks.

``multiprocessing.Pool`` replaces dead workers but never fails the task they
held; the looks (:mod:`._looks`) are what turn that hang into an error. No
thread of its own: a pool's start and stop cost what
``multiprocessing.Pool``'s do, plus the workers' orphan guards. Private
attributes of the pool are read only through :mod:`._mp_private`.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import sys
import threading
import weakref
from collections.abc import Callable
from multiprocessing.pool import Pool
from typing import Any, Final, final

from .. import _worker
from .._config import Settings
from .._lifeline import Lifeline
from .._serialize import dumps, dumps_function
from . import _mp_private
from ._base import BackendOptions, Chunk, Hooks
from ._looks import WorkerLooks
from ._pipes import TaskChannel

__all__ = ("Backend",)

#: At terminate(), once every worker is stopped: how long the result queue's
#: lock must stay held before it is taken for a dead worker's.
RESULT_LOCK_GRACE: Final = 0.1


@final
class Backend:
    """Runs chunks in worker processes of a ``multiprocessing.Pool``."""

    def __init__(self, hooks: Hooks, settings: Settings, options: BackendOptions) -> None:
        # Weakly: the engine owns this backend, and a cycle would leave the pool
        # (and its named semaphores) to the garbage collector instead of being
        # freed as soon as the executor is.
        self._hooks: Hooks = weakref.proxy(hooks)
        self.workers = settings.workers
        self.window = 4 * settings.workers
        self.start_method: str | None = settings.start_method
        context = multiprocessing.get_context(settings.start_method)
        if settings.start_method == "forkserver":
            # What a worker runs: the task channel, which loads the worker module.
            _mp_private.preload_in_forkserver(TaskChannel.__module__)
        self._ack_reader, self._ack_writer = context.Pipe(duplex=False)
        self._lifeline = Lifeline()
        self._ending = threading.Lock()
        self._ended = False
        init_blob = dumps_function(options.initializer) if options.initializer else None
        args_blob = dumps(tuple(options.initargs)) if options.initializer else None
        self.can_kill = True
        self._channel = TaskChannel(context, _chunk_id_of)
        self._looks = WorkerLooks(
            self._hooks, self.workers, self.start_method, self._ack_reader, self._channel
        )
        self._pool: Pool = _mp_private.pool_with_task_channel(
            self._channel,
            self._looks.results,
            settings.workers,
            _worker.init_process_worker,
            (self._ack_writer, os.getpid(), self._lifeline, init_blob, args_blob),
            options.max_tasks_per_worker,
            context,
        )
        self._looks.attach(self._pool)
        _live.add(self)

    # -- the protocol -------------------------------------------------------------------

    def prepare_fn(self, fn: Callable[..., Any]) -> object:
        return dumps_function(fn)

    def pack_items(self, items: list[Any]) -> object:
        return dumps(items)

    def send(self, chunk: Chunk) -> None:
        assert isinstance(chunk.fn, bytes) and isinstance(chunk.payload, bytes)
        hooks = self._hooks
        looks = self._looks
        unstarted = looks.unstarted
        doomed = looks.doomed
        # The pool's job holds these callbacks, and the chunk holds the job (its
        # handle): the callbacks hold the chunk weakly, or a job the pool never
        # finishes (terminated, forgotten) would keep the chunk, its map and the
        # executor alive until the garbage collector runs. The engine holds a
        # chunk as long as it runs; one it has let go needs no result.
        chunk_id = chunk.id
        count = chunk.count
        ref = weakref.ref(chunk)

        def settled() -> Chunk | None:
            unstarted.pop(chunk_id, None)
            doomed.discard(chunk_id)  # its ack, if read late, must not stop the worker
            current = ref()
            if current is not None:
                current.handle = None
            return current

        def done(blob: bytes) -> None:
            current = settled()
            if current is not None:
                values, errors, elapsed = _worker.unpack_outcome(blob, count)
                hooks.complete(current, values, errors, elapsed)

        def failed(exc: BaseException) -> None:
            current = settled()
            if current is not None:
                hooks.fail(current, exc)

        with looks.track:
            unstarted[chunk_id] = chunk
        # The chunk id is the job's id: the task channel reads it back from the task.
        chunk.handle = _mp_private.submit(
            self._pool,
            chunk_id,
            _worker.run_blob,
            (chunk_id, chunk.fn, chunk.payload, chunk.mode),
            done,
            failed,
        )

    def abort(self, chunk: Chunk) -> None:
        looks = self._looks
        pid = chunk.pid
        if pid is not None and looks.holding.get(pid) == chunk.id:
            looks.kill(pid)
        else:
            with looks.track:
                if chunk.id in looks.unstarted:
                    looks.doomed.add(chunk.id)  # stopped when a worker takes it
        looks.forget(chunk)

    def close(self) -> None:
        self._looks.closing = True  # from now on the pool's threads end on their own
        self._pool.close()

    def join(self) -> None:
        # No job is left: the pool's maintenance thread ends at once, and from
        # then on the workers' exit statuses are read here, without waiting.
        _mp_private.join_maintainer(self._pool)
        self._looks.watch_until_ended()
        self._pool.join()
        self.terminate()  # runs the pool's finalizer now; the workers have exited

    def terminate(self) -> None:
        looks = self._looks
        looks.stop.set()  # no look acts any more: each checks this while it holds the looks
        # One caller at a time: the pool's finalizer must not run twice at once
        # (it takes the task queue's lock and never gives it back). While the
        # interpreter finalizes, a thread frozen mid-terminate may hold the lock
        # for ever: then only the workers are stopped, without waiting.
        if not self._ending.acquire(blocking=not sys.is_finalizing()):
            looks.kill_workers()
            return
        try:
            if self._ended:
                return
            with looks.held():
                pass  # a look under way ends first; none begins after stop was set
            task_lock = _mp_private.inqueue_lock(self._pool)
            result_lock = _mp_private.outqueue_lock(self._pool)
            if (
                looks.deaths
                or _mp_private.lock_held(task_lock)
                or _mp_private.lock_held(result_lock)
            ):
                # The pool's own shutdown takes both queues' locks. A holder may
                # be a worker that died (also one the looks have not seen yet,
                # which would leave the shutdown waiting for ever) or a live one
                # (an idle worker holds the task queue's): stop every worker
                # first, then no holder is alive, and free the locks.
                _mp_private.stop_replacing(self._pool)
                looks.kill_workers(wait=1.0)
                _mp_private.release_orphaned_lock(task_lock)
                # The pool's task thread also takes the result queue's lock, for
                # a moment, to write its end marker: held on, it is a dead worker's.
                _mp_private.release_orphaned_lock(result_lock, held_for=RESULT_LOCK_GRACE)
            looks.results.ending = True  # a result cut short by a kill is not waited for
            # The engine has failed the chunks still running: their jobs will never
            # finish. Dropped now, as the pool's shutdown refuses to run with jobs
            # left once its result thread has ended (it ends on a result cut short).
            _mp_private.drop_jobs(self._pool)
            self._pool.terminate()  # joins the result thread (unless it is this one)
            _mp_private.release_terminated(self._pool)
            with looks.track:  # chunks that never started hold their maps: let go
                looks.unstarted.clear()
                looks.doomed.clear()
            self._channel.close()
            for conn in (self._ack_writer, self._ack_reader):
                with contextlib.suppress(OSError):
                    conn.close()
            self._lifeline.close()  # the workers have ended; any left would be killed
            self._ended = True
        finally:
            self._ending.release()


#: Process backends not yet terminated.
_live: weakref.WeakSet[Backend] = weakref.WeakSet()


@atexit.register
def _terminate_at_exit() -> None:
    """At interpreter exit, terminate every backend still running.

    ``multiprocessing``'s own exit hook (registered earlier, so run later)
    would terminate their pools with ``Pool.terminate()`` alone, which waits
    for ever on a queue's lock held by a worker that died; :meth:`Backend.terminate`
    frees such locks first, and stops the looks so that they do not take the
    workers' end for a failure.
    """
    for backend in list(_live):
        backend.terminate()


def _chunk_id_of(task: tuple[int, int, object, object, object] | None) -> int:
    """The chunk id of a task that the pool writes (its job id, see ``send``), or 0."""
    return 0 if task is None else task[0]
