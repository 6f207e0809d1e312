"""Every use of ``multiprocessing.Pool``'s private attributes, and nothing else.

The process backend stands on ``multiprocessing.Pool`` but must know these
things the public API does not tell:

- ``pool._pool``: the worker ``Process`` objects, whose sentinels reveal a
  worker that died (the pool replaces it but never fails the task it held);
- ``pool._taskqueue`` / ``pool._cache`` / ``pool._state``: :func:`submit`
  puts a task on the queue and its job in the table itself, as
  ``apply_async`` does, with a job that only calls back (see :class:`_Job`);
- ``pool._cache``: the pending results by job id; a job whose worker died
  stays there forever and would make ``close()`` + ``join()`` wait forever,
  so it is removed once the engine has failed it. The table itself is
  replaced (in ``_repopulate_pool``, before the pool's threads take it) by one
  that writes to ``pool._change_notifier`` when it empties only once
  ``pool._state`` is no longer ``RUN``: the pool's own wakes the
  maintenance thread each time, for nothing while the pool runs;
- ``Pool._get_sentinels``: overridden so that the pool's worker-maintenance
  thread no longer wakes for every result (it waits on worker exits and the
  pool's change notifier only);
- ``Pool._setup_queues`` / ``Pool._help_stuff_finish``: overridden by
  :func:`pool_with_task_channel` so that tasks travel through
  :class:`~._pipes.TaskChannel` (which survives a reader's death)
  instead of the pool's own pipe, and results are read by
  :class:`~._result_reader.ResultReader` (which gives up on a result cut
  short by a writer's death, and lets the process backend look after the
  workers whenever the result thread would wait);
- ``pool._inqueue._rlock``: the lock an idle worker holds while it waits for
  a task; a worker killed while idle leaves it held (CPython gh-96062), and
  the pool's other workers then never get a task;
- ``pool._outqueue._wlock``: the lock a worker holds while it writes a
  result; a worker killed there leaves it held, every other worker blocks on
  its next result, and so does the pool's own shutdown;
- ``pool._worker_handler``: the thread that replaces workers and reaps
  them; once it has ended (after ``close()``, when no job is left) no new
  worker can appear and nobody else reads a worker's exit status;
- ``pool._ctx`` / ``pool._change_notifier``: between ``_setup_queues`` and
  ``_repopulate_pool`` the pool's context is one whose ``SimpleQueue()``
  makes :class:`_Notifier`, so the pool's change notifier needs no named
  semaphores; the result queue has no read lock either
  (:class:`~._pipes.ResultQueue`);
- ``Pool.close`` / ``pool._quick_put`` / ``pool._task_handler``: ``close()``
  with no job left puts the task thread's end marker on ``pool._taskqueue``
  itself, so the workers get their word to exit without waiting for the
  maintenance thread, which the first worker to exit wakes;
  :func:`join_maintainer` sends one more for each worker that thread
  started meanwhile;
- ``Pool.Process``: overridden so that under ``spawn`` the workers are
  :class:`~parallelkit._worker.SpawnedWorker`, whose ``_bootstrap`` ends the
  process as ``fork`` and the forkserver end theirs (exit functions, then
  ``os._exit()``) instead of returning to ``spawn_main()``'s ``sys.exit()``.

- ``process._popen.returncode``: a worker's exit status once the pool's own
  handler thread has read it (reading it a second time races with the pool);
- ``multiprocessing.forkserver._forkserver._preload_modules``: the modules
  the forkserver imports before it forks; parallelkit is added so workers do
  not each import it again;
- ``pool._inqueue`` / ``_outqueue`` / ``_change_notifier``: their pipes are
  closed once the pool has been joined, instead of when the garbage collector
  gets to the pool.

These attributes have the same names and meaning on CPython 3.10 to 3.13;
``tests/test_mp_private.py`` checks them on each version the suite runs on.
"""

from __future__ import annotations

import contextlib
import pickle
import threading
import time
import weakref
from collections.abc import Callable
from multiprocessing.pool import CLOSE, RUN, TERMINATE, Pool
from multiprocessing.process import BaseProcess
from typing import Any

from .._worker import SpawnedWorker
from ._pipes import ResultQueue

__all__ = (
    "drop_jobs",
    "forget",
    "inqueue_lock",
    "join_maintainer",
    "lock_held",
    "maintainer_alive",
    "outqueue_lock",
    "pool_with_task_channel",
    "preload_in_forkserver",
    "reaped_exitcode",
    "release_orphaned_lock",
    "release_terminated",
    "stop_replacing",
    "submit",
    "workers",
)


class _ChannelPool(Pool):
    """A ``multiprocessing.Pool`` whose task queue is a given channel."""

    # Pool's own attributes that this class uses (typeshed declares none).
    _ctx: Any
    _state: Any
    _cache: Any
    _pool: list[Any]
    _taskqueue: Any
    _change_notifier: Any
    _worker_handler: Any
    _task_handler: Any
    #: The workers when close() told the task thread to end, or None.
    _parallelkit_told: list[Any] | None = None

    def __init__(self, channel: Any, results: Any, *args: Any, **kwargs: Any) -> None:
        self._parallelkit_channel = channel
        self._parallelkit_results = results
        super().__init__(*args, **kwargs)

    def _setup_queues(self) -> None:
        ctx = self._ctx
        self._inqueue = self._parallelkit_channel
        self._outqueue = ResultQueue(ctx=ctx)
        self._quick_put = self._inqueue.put
        self._parallelkit_results.attach(self._outqueue.reader)
        self._quick_get = self._parallelkit_results.get
        # Pool.__init__ makes its change notifier next, with this context's
        # SimpleQueue(); the context is given back in _repopulate_pool.
        self._ctx = _NotifierContext(ctx)

    @staticmethod
    def Process(ctx: Any, *args: Any, **kwds: Any) -> Any:
        # Spawned workers skip the interpreter's teardown at their end, as
        # forked ones do (see SpawnedWorker).
        if ctx.get_start_method() == "spawn":
            return SpawnedWorker(*args, **kwds)
        return ctx.Process(*args, **kwds)

    @staticmethod
    def _help_stuff_finish(inqueue: Any, task_handler: Any, size: int) -> None:
        inqueue.drain_while(task_handler.is_alive)

    def _repopulate_pool(self) -> Any:
        # Pool.__init__ calls this once, to start the workers, after it made the
        # job table and before it starts the threads that take it: the table is
        # swapped here (before the fork: under fork, whatever the parent writes
        # after it is a page to copy while the workers share it).
        if isinstance(self._ctx, _NotifierContext):
            self._ctx = self._ctx.ctx  # before the workers and threads are made with it
        notifier = self._change_notifier
        cache = self._cache
        if not cache and getattr(cache, "notifier", None) is notifier:
            self._cache = _QuietCache(self, notifier)
        return super()._repopulate_pool()  # type: ignore[misc]  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType, reportAttributeAccessIssue]

    def _get_sentinels(self) -> list[Any]:
        # The pool's worker-maintenance thread also waits on the result pipe,
        # so it wakes (and polls every worker) for each result that arrives,
        # and again while the result thread has not read it yet: busy work
        # that competes with the result thread for the GIL. Worker exits wake
        # it through their own sentinels, an emptied job table (after close())
        # and shutdown through the change notifier.
        return [self._change_notifier._reader]

    def close(self) -> None:
        # As Pool.close(), but with no job left the task thread is told to end
        # now (it then sends every worker its word to exit), not by the
        # maintenance thread once that has woken, and that thread is not woken
        # now: the first worker to exit wakes it (it waits on their sentinels).
        # In a pool started by fork its first run since the fork is slow (every
        # page it touches is copied), and woken at close() it held the task
        # thread up. No job can come any more; end_maintainer() tells workers
        # that thread started in the meantime (a replacement) to exit as well.
        if self._state != RUN:
            return
        self._state = CLOSE
        self._worker_handler._state = CLOSE
        if self._cache:
            self._change_notifier.put(None)  # it ends once the last job is done
            return
        self._parallelkit_told = list(self._pool)
        self._taskqueue.put(None)

    def end_maintainer(self) -> None:
        """Wait for the maintenance thread to end, after close(); see join_maintainer()."""
        told = self._parallelkit_told
        if told is not None:
            self._task_handler.join()
            self._change_notifier.put(None)  # in case no worker was left to wake it
        self._worker_handler.join()
        if told is not None:
            # A worker it started after close() (replacing one that ended) may
            # have missed the end markers: one more for each (a spare is never read).
            for proc in self._pool:
                if all(proc is not earlier for earlier in told):
                    self._parallelkit_channel.put(None)


class _NotifierContext:
    """The pool's context while ``Pool.__init__`` makes its change notifier."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ctx, name)

    def SimpleQueue(self) -> _Notifier:
        return _Notifier(self.ctx)


class _Notifier:
    """The pool's change notifier, which wakes its maintenance thread.

    ``multiprocessing.Pool`` makes it a ``SimpleQueue``: two named semaphores
    (made, inherited by every forked worker, and freed again for each pool)
    and a ``ForkingPickler`` per message. It never leaves this process: the
    pool's threads and its owner write None to it, each message in one write
    below the pipe's atomic size (writers cannot interleave), and only the
    maintenance thread reads it.
    """

    def __init__(self, ctx: Any) -> None:
        self._reader: Any
        self._writer: Any
        self._reader, self._writer = ctx.Pipe(duplex=False)
        self._rlock = threading.Lock()

    def put(self, obj: object) -> None:
        self._writer.send_bytes(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))

    def empty(self) -> bool:
        return not self._reader.poll()

    def get(self) -> object:
        with self._rlock:
            return pickle.loads(self._reader.recv_bytes())

    def close(self) -> None:
        self._reader.close()
        self._writer.close()


class _QuietCache(dict[int, Any]):
    """The pool's job table, which wakes the maintenance thread only when it must.

    ``multiprocessing.Pool``'s table writes to the change notifier each time
    it empties, so that after ``close()`` the maintenance thread learns that
    the last job is done and ends. While the pool runs, that thread goes on
    anyway: each write only woke it to poll every worker and wait again, up
    to once per chunk (the process backend sends each chunk as a job).
    """

    def __init__(self, pool: Pool, notifier: Any) -> None:
        super().__init__()
        self.notifier = notifier
        self._pool = weakref.ref(pool)

    def __delitem__(self, job: int) -> None:
        super().__delitem__(job)
        if not self:
            pool = self._pool()
            # close() sets the state before it writes to the notifier itself.
            if pool is None or pool._state != RUN:  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
                self.notifier.put(None)


def pool_with_task_channel(
    channel: Any,
    results: Any,
    processes: int,
    initializer: Any,
    initargs: tuple[Any, ...],
    maxtasksperchild: int | None,
    context: Any,
) -> Pool:
    """Start a ``multiprocessing.Pool`` that sends its tasks through ``channel``.

    ``channel`` offers ``put`` / ``get``, the ``_reader`` / ``_writer`` /
    ``_rlock`` attributes the pool's worker loop and shutdown touch, and
    ``drain_while(running)`` for the shutdown. ``results`` reads the result
    queue in the pool's result thread: ``attach(connection)`` and ``get()``.
    """
    return _ChannelPool(
        channel, results, processes, initializer, initargs, maxtasksperchild, context=context
    )


class _Job:
    """A job in the pool's table: what ``apply_async`` makes, less what only waiters need.

    The pool's result thread calls :meth:`_set` with the outcome, as it does
    for an ``ApplyResult``; a job has no event to wait on (its callbacks are
    the only way its outcome goes out), so each costs one small object.
    """

    __slots__ = ("_cache", "_done", "_failed", "_job")

    def __init__(
        self,
        job: int,
        cache: dict[int, Any],
        done: Callable[[Any], None],
        failed: Callable[[BaseException], None],
    ) -> None:
        self._job = job
        self._cache = cache
        self._done = done
        self._failed = failed

    def _set(self, index: int, outcome: tuple[bool, Any]) -> None:
        success, value = outcome
        try:
            if success:
                self._done(value)
            else:
                self._failed(value)
        finally:
            # Not pop(): the quiet table acts on del. A job forgotten (its
            # worker died) is gone already.
            if self._cache.get(self._job) is self:
                del self._cache[self._job]


def submit(
    pool: Pool,
    job: int,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    done: Callable[[Any], None],
    failed: Callable[[BaseException], None],
) -> object:
    """Run ``func(*args)`` in the pool as job ``job``; what ``apply_async`` does, lighter.

    ``job`` must be unique among the pool's pending jobs; the task the
    workers read is ``(job, 0, func, args, {})``. ``done(result)`` or
    ``failed(exception)`` is called in the pool's result thread.

    Returns:
        The job's handle, for :func:`forget`.

    Raises:
        ValueError: The pool no longer runs (as ``apply_async`` raises).
    """
    if pool._state != RUN:  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
        raise ValueError("Pool not running")
    jobs = _jobs(pool)
    handle = jobs[job] = _Job(job, jobs, done, failed)
    pool._taskqueue.put(([(job, 0, func, args, {})], None))  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
    return handle


def workers(pool: Pool) -> list[BaseProcess]:
    """Return a snapshot of the pool's current worker processes."""
    procs: list[BaseProcess] = list(pool._pool)  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownArgumentType]
    return procs


def _jobs(pool: Pool) -> dict[int, Any]:
    """The pool's pending results by job id."""
    cache: dict[int, Any] = pool._cache  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
    return cache  # pyright: ignore[reportUnknownVariableType]


def forget(pool: Pool, result: object) -> None:
    """Drop a job whose worker died from the pool's cache, so ``join()`` can end.

    ``result`` is a handle from :func:`submit` or an ``apply_async`` result.
    """
    job = result._job  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
    with contextlib.suppress(KeyError):
        del _jobs(pool)[job]


def drop_jobs(pool: Pool) -> None:
    """Drop every job from the pool's table: none of them will be finished.

    Their callbacks are not called; their late results, if any, find no job.
    """
    _jobs(pool).clear()


def inqueue_lock(pool: Pool) -> Any:
    """Return the lock idle workers hold while waiting for a task."""
    return pool._inqueue._rlock  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]


def release_orphaned_lock(lock: Any, held_for: float = 0.0) -> bool:
    """Release ``lock`` if it is held (for ``held_for`` seconds); return whether it was.

    Only for a lock whose holder is known to be dead, or, with ``held_for``,
    one that only a dead process or, for a moment, a thread of this one may
    hold: the lock is looked at every millisecond, and released only if it
    never was free. ``multiprocessing``'s non-recursive ``Lock`` may be
    released by any process.
    """
    deadline = time.monotonic() + held_for
    while lock_held(lock):
        if time.monotonic() >= deadline:
            break
        time.sleep(0.001)
    else:
        return False
    try:
        lock.release()
    except (ValueError, OSError):
        return False
    return True


def reaped_exitcode(process: BaseProcess) -> int | None:
    """Return the exit code already read by the pool, without reading it again."""
    popen = process._popen  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
    code = getattr(popen, "returncode", None)  # pyright: ignore[reportUnknownArgumentType]
    return code if isinstance(code, int) else None


def release_terminated(pool: Pool) -> None:
    """Free what a pool whose ``terminate()`` has returned still holds.

    Its finalizer has run by then, and nothing of the pool reads its pipes
    again: they are closed. The jobs it will never finish are dropped: their
    callbacks hold the executor's chunks, and through them the executor and
    this pool, which would otherwise wait for the garbage collector.
    """
    drop_jobs(pool)
    for name in ("_inqueue", "_outqueue", "_change_notifier"):
        channel = getattr(pool, name, None)
        for end in ("_reader", "_writer"):
            conn = getattr(channel, end, None)
            close = getattr(conn, "close", None)
            if callable(close):
                with contextlib.suppress(OSError):
                    close()


def outqueue_lock(pool: Pool) -> Any:
    """Return the lock a worker holds while it writes a result."""
    return pool._outqueue._wlock  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]


def lock_held(lock: Any) -> bool:
    """Whether a ``multiprocessing`` lock is held by someone now."""
    try:
        return bool(lock._semlock._get_value() == 0)  # pyright: ignore[reportUnknownMemberType]
    except (AttributeError, OSError, NotImplementedError):
        return False


def maintainer_alive(pool: Pool) -> bool:
    """Whether the pool's worker-maintenance thread still runs (may start workers)."""
    thread = getattr(pool, "_worker_handler", None)
    return thread is not None and bool(thread.is_alive())  # pyright: ignore[reportUnknownMemberType]


def stop_replacing(pool: Pool) -> None:
    """Have the pool's maintenance thread end without replacing workers that end.

    What ``Pool.terminate()`` does first; done before its workers are stopped,
    so that the thread does not start new ones in their place meanwhile.
    """
    thread = getattr(pool, "_worker_handler", None)
    if thread is not None:
        thread._state = TERMINATE  # pyright: ignore[reportAttributeAccessIssue]
    notifier = getattr(pool, "_change_notifier", None)
    if notifier is not None:
        with contextlib.suppress(OSError):
            notifier.put(None)  # pyright: ignore[reportUnknownMemberType]


def join_maintainer(pool: Pool) -> None:
    """Wait for the pool's worker-maintenance thread to end (after ``close()``).

    It ends once no job is left, as ``Pool.join()`` expects before it waits
    for the workers.

    Raises:
        TypeError: ``pool`` was not made by :func:`pool_with_task_channel`.
    """
    if not isinstance(pool, _ChannelPool):
        raise TypeError("join_maintainer() takes a pool made by pool_with_task_channel()")
    pool.end_maintainer()


def preload_in_forkserver(module: str) -> None:
    """Have the forkserver import ``module`` before it forks any worker.

    Takes effect only if the server has not started yet; keeps the modules
    already asked for (``__main__`` by default). Without it every worker
    imports parallelkit anew, which dominates a pool's start-up.
    """
    from multiprocessing import forkserver

    server = forkserver._forkserver  # pyright: ignore[reportPrivateUsage, reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
    modules: list[str] = list(getattr(server, "_preload_modules", None) or ["__main__"])  # pyright: ignore[reportUnknownArgumentType]
    if module not in modules:
        forkserver.set_forkserver_preload([*modules, module])
