"""The process backend: ``multiprocessing.Pool`` plus a watcher that sees deaths.

::

    engine ──apply_async(run_blob, (id, fn bytes, items bytes, mode))──▶ mp.Pool
                                                                          │ task queue
        ┌─────────────────────────────────────────────────────────────────┘
        ▼
    worker processes (started by mp.Pool with the configured start method)
        │  ack pipe: b"S"(pid, chunk id) when a chunk is taken,
        │            b"I"(error) when the initializer failed
        │  result queue: outcome bytes ──▶ mp.Pool result thread ──▶ engine.complete
        ▼
    watcher thread: waits on the ack pipe and on every worker's sentinel.
        - remembers which pid holds which chunk;
        - a worker that exits while holding a chunk: after a short grace (its
          result may still be in the result queue) the chunk fails with
          WorkerCrashedError; mp.Pool starts a replacement worker itself;
        - an initializer failure: the engine is marked broken.

``multiprocessing.Pool`` replaces dead workers but never fails the task they
held; the watcher is what turns that hang into an error. Private attributes of
the pool are read only through :mod:`._mp_private`.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.pool import Pool
from multiprocessing.process import BaseProcess
from typing import Any, Final, final

from .. import _worker
from .._config import Settings
from .._errors import WorkerCrashedError
from .._serialize import dumps, dumps_function, exception_from_envelope, loads
from . import _mp_private
from ._base import BackendOptions, Chunk, Hooks

__all__ = ("Backend",)

#: How long a dead worker's chunk waits for a result already in the result queue.
CRASH_GRACE: Final = 0.25
#: Longest sleep of the watcher between looks at the pool's worker list.
POLL: Final = 0.05
#: After a worker died while idle: how long queued chunks may wait for an idle
#: worker to take one before the task-queue lock is considered orphaned.
STALL: Final = 0.5
#: After such a death: how long a chunk may stay untaken once a chunk queued
#: after it has started, before it is considered lost with the dead worker.
LOST_GRACE: Final = 1.0
#: How long after such a death the watcher looks for a lost chunk.
DEATH_WINDOW: Final = 10.0
#: How long the watcher lets multiprocessing.Pool read a dead worker's status first.
REAP_WAIT: Final = 0.3


def describe_exit(exitcode: int | None) -> str:
    """Return ``"signal SIGKILL"`` / ``"exit code 3"`` / ``"an unknown status"``."""
    if exitcode is None:
        return "an unknown status"
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


@final
class Backend:
    """Runs chunks in worker processes of a ``multiprocessing.Pool``."""

    def __init__(self, hooks: Hooks, settings: Settings, options: BackendOptions) -> None:
        self._hooks = hooks
        self.workers = settings.workers
        self.window = 4 * settings.workers
        self.start_method: str | None = settings.start_method
        context = multiprocessing.get_context(settings.start_method)
        if settings.start_method == "forkserver":
            _mp_private.preload_in_forkserver("parallelkit")
        self._ack_reader, self._ack_writer = context.Pipe(duplex=False)
        self._ending = threading.Lock()
        self._ended = False
        init_blob = dumps_function(options.initializer) if options.initializer else None
        args_blob = dumps(tuple(options.initargs)) if options.initializer else None
        self._pool: Pool = context.Pool(
            settings.workers,
            _worker.init_process_worker,
            (self._ack_writer, os.getpid(), init_blob, args_blob),
            options.max_tasks_per_worker,
        )
        self.can_kill = True
        self._holding: dict[int, int] = {}  # pid -> id of the chunk it took last
        self._procs: dict[int, BaseProcess] = {}
        self._suspects: list[tuple[float, int, int | None, int]] = []
        # Chunks handed to the pool that no worker has acknowledged yet, in send order.
        self._track = threading.Lock()
        self._seq = itertools.count()
        self._unstarted: dict[int, tuple[int, Chunk]] = {}
        self._doomed: set[int] = set()  # chunks to stop as soon as a worker takes them
        self._killed: set[int] = set()  # pids this backend killed on purpose
        self._last_ack = time.monotonic()
        # A worker that died while idle (it may have held the task-queue lock).
        self._idle_death: tuple[float, int, int | None] | None = None
        self._acked_seq = -1  # highest send number a worker has acknowledged
        self._dying: dict[int, float] = {}  # pid -> when its sentinel fired
        self._ready: set[int] = set()  # pids that finished start-up
        self._startup_failures = 0  # workers in a row that died before they were ready
        self._deaths = 0  # unexpected worker deaths so far
        self._closing = False
        self._result_lock_held_since: float | None = None
        self._overtaken: dict[int, float] = {}  # chunk id -> when a later chunk started
        self._stop = threading.Event()
        self._watcher = threading.Thread(
            target=self._watch, name="parallelkit-process-watcher", daemon=True
        )
        self._watcher.start()

    # -- the protocol -------------------------------------------------------------------

    def prepare_fn(self, fn: Callable[..., Any]) -> object:
        return dumps_function(fn)

    def pack_items(self, items: list[Any]) -> object:
        return dumps(items)

    def send(self, chunk: Chunk) -> None:
        assert isinstance(chunk.fn, bytes) and isinstance(chunk.payload, bytes)
        hooks = self._hooks

        unstarted = self._unstarted

        def done(blob: bytes) -> None:
            unstarted.pop(chunk.id, None)
            values, errors, elapsed = _worker.unpack_outcome(blob, chunk.count)
            hooks.complete(chunk, values, errors, elapsed)

        def failed(exc: BaseException) -> None:
            unstarted.pop(chunk.id, None)
            hooks.fail(chunk, exc)

        with self._track:
            unstarted[chunk.id] = (next(self._seq), chunk)
        chunk.handle = self._pool.apply_async(
            _worker.run_blob,
            (chunk.id, chunk.fn, chunk.payload, chunk.mode),
            callback=done,
            error_callback=failed,
        )

    def abort(self, chunk: Chunk) -> None:
        pid = chunk.pid
        if pid is not None and self._holding.get(pid) == chunk.id:
            self._kill(pid)
        else:
            with self._track:
                if chunk.id in self._unstarted:
                    self._doomed.add(chunk.id)  # stopped when a worker takes it
        self._forget(chunk)

    def _kill(self, pid: int) -> None:
        self._killed.add(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        self._closing = True  # from now on the pool's threads end on their own
        self._pool.close()

    def join(self) -> None:
        self._pool.join()
        self.terminate()  # runs the pool's finalizer now; the workers have exited

    def terminate(self) -> None:
        self._stop.set()
        # One caller at a time: the pool's finalizer must not run twice at once
        # (it takes the task queue's lock and never gives it back).
        with self._ending:
            if self._ended:
                return
            if self._deaths:
                # A dead worker may hold the result queue's lock, which the pool's
                # own shutdown needs: stop every worker, then no holder is alive.
                for proc in _mp_private.workers(self._pool):
                    if proc.pid is not None and proc.exitcode is None:
                        self._kill(proc.pid)
                        proc.join(1.0)
                _mp_private.release_orphaned_lock(_mp_private.outqueue_lock(self._pool))
            self._pool.terminate()
            self._shutdown_watcher()
            _mp_private.close_pipes(self._pool)
            self._ended = True

    # -- the watcher --------------------------------------------------------------------

    def _forget(self, chunk: Chunk) -> None:
        handle = chunk.handle
        if handle is not None:
            _mp_private.forget(self._pool, handle)  # type: ignore[arg-type]

    def _shutdown_watcher(self) -> None:
        self._stop.set()
        # At interpreter exit daemon threads no longer run: joining would hang.
        if self._watcher is not threading.current_thread() and not sys.is_finalizing():
            self._watcher.join(5.0)
        for conn in (self._ack_reader, self._ack_writer):
            conn.close()

    def _watch(self) -> None:
        reader = self._ack_reader
        while not self._stop.is_set():
            for proc in _mp_private.workers(self._pool):
                if proc.pid is not None and proc.pid not in self._procs:
                    self._procs[proc.pid] = proc
            waitables: list[Any] = [reader, *(p.sentinel for p in self._procs.values())]
            try:
                ready = set(wait(waitables, timeout=POLL))
                while reader.poll():
                    self._on_ack(reader.recv_bytes())
            except (OSError, EOFError, ValueError):
                if self._stop.is_set():
                    return
                raise
            self._reap(ready)
            self._judge_suspects()
            if self._deaths:
                self._check_result_channel()
            if self._idle_death is not None:
                self._recover_after_idle_death()

    def _on_ack(self, message: bytes) -> None:
        kind, body = message[:1], message[1:]
        if kind == _worker.ACK_STARTED:
            pid, chunk_id = _worker.ACK_FORMAT.unpack(body)
            self._holding[pid] = chunk_id
            self._last_ack = now = time.monotonic()
            with self._track:
                entry = self._unstarted.pop(chunk_id, None)
                doomed = chunk_id in self._doomed
                self._doomed.discard(chunk_id)
                if entry is not None and entry[0] > self._acked_seq:
                    self._acked_seq = entry[0]
                    if self._idle_death is not None:
                        for other, (seq, _) in self._unstarted.items():
                            if seq < entry[0]:
                                self._overtaken.setdefault(other, now)
            if doomed:
                self._kill(pid)
                return
            self._hooks.started(chunk_id, pid)
        elif kind == _worker.ACK_READY:
            pid, _ = _worker.ACK_FORMAT.unpack(body)
            self._ready.add(pid)
            self._startup_failures = 0
        elif kind == _worker.ACK_INIT_FAILED:
            _, envelope = loads(body)
            error = exception_from_envelope(envelope)
            self._hooks.broken(error)
            self._stop.set()

    def _exitcode(self, pid: int, proc: BaseProcess, ready: set[Any], now: float) -> int | None:
        """The exit code of a worker that ended, or None while it runs.

        ``multiprocessing.Pool`` reaps its workers itself every 0.1 s; reading
        the status here as well would race with it (under forkserver the loser
        reads 255), so the pool's reading is used, and this thread reads the
        status itself only if the pool has not within :data:`REAP_WAIT`.
        """
        code = _mp_private.reaped_exitcode(proc)
        if code is not None:
            return code
        if proc.sentinel not in ready and pid not in self._dying:
            return None
        first = self._dying.setdefault(pid, now)
        if now - first < REAP_WAIT:
            return None
        return proc.exitcode

    def _reap(self, ready: set[Any]) -> None:
        now = time.monotonic()
        for pid, proc in list(self._procs.items()):
            exitcode = self._exitcode(pid, proc, ready, now)
            if exitcode is None:
                continue
            del self._procs[pid]
            self._dying.pop(pid, None)
            if exitcode != 0 and pid not in self._killed:
                self._deaths += 1
            chunk_id = self._holding.pop(pid, None)
            on_purpose = pid in self._killed or self._stop.is_set()
            if chunk_id is not None and self._hooks.running(chunk_id) is not None:
                self._suspects.append((now + CRASH_GRACE, pid, exitcode, chunk_id))
            elif pid not in self._ready and exitcode > 0 and not on_purpose:
                # Exited on its own before it was ready (a signal is someone's kill).
                self._startup_failed(pid, exitcode)
            elif exitcode != 0 and not on_purpose:
                # Died between tasks: it may have held the task queue's read lock,
                # or taken a chunk without acknowledging it yet.
                self._idle_death = (now, pid, exitcode)
                with self._track:
                    self._overtaken = {
                        cid: now
                        for cid, (seq, _) in self._unstarted.items()
                        if seq < self._acked_seq
                    }
            self._killed.discard(pid)
            self._ready.discard(pid)
        # A worker that took a chunk but was reaped before it was ever seen here.
        known = set(self._procs)
        for pid, chunk_id in list(self._holding.items()):
            if pid not in known and not _alive(pid):
                del self._holding[pid]
                if self._hooks.running(chunk_id) is not None:
                    self._suspects.append((now + CRASH_GRACE, pid, None, chunk_id))

    def _check_result_channel(self) -> None:
        """After a worker died: free the result queue if the dead worker held it.

        A worker killed while writing a result keeps the result queue's lock:
        every other worker, and the pool's own shutdown, would wait for it
        forever. Live writers hold it for a moment; held for :data:`STALL`
        seconds after a death, it is released on the dead worker's behalf. If
        the dead worker got part of a result out, the pool's result reader
        reads garbage and stops: then nothing can arrive any more, and the
        executor is marked broken instead of waiting forever.
        """
        if not self._closing and not _mp_private.result_reader_alive(self._pool):
            self._hooks.broken(
                RuntimeError(
                    "a worker died while writing a result and left the pool's result channel "
                    "unreadable"
                )
            )
            self._stop.set()
            return
        now = time.monotonic()
        lock = _mp_private.outqueue_lock(self._pool)
        if not _mp_private.lock_held(lock):
            self._result_lock_held_since = None
        elif self._result_lock_held_since is None:
            self._result_lock_held_since = now
        elif now - self._result_lock_held_since > STALL:
            _mp_private.release_orphaned_lock(lock)
            self._result_lock_held_since = None

    def _startup_failed(self, pid: int, exitcode: int) -> None:
        """A worker died before it was ready: after a few in a row, give up."""
        self._startup_failures += 1
        if self._startup_failures < max(3, self.workers):
            return
        self._hooks.broken(
            RuntimeError(
                f"worker processes keep exiting during start-up (the last, pid {pid}, with "
                f"{describe_exit(exitcode)}) before they can run a task; under the "
                f"{self.start_method} start method a common cause is a main module without an "
                "'if __name__ == \"__main__\":' guard, or one that fails to import"
            )
        )
        self._stop.set()

    def _judge_suspects(self) -> None:
        now = time.monotonic()
        keep: list[tuple[float, int, int | None, int]] = []
        for suspect in self._suspects:
            when, pid, exitcode, chunk_id = suspect
            if when > now:
                keep.append(suspect)
                continue
            chunk = self._hooks.running(chunk_id)
            if chunk is not None:
                self._fail_crashed(chunk, pid, exitcode, "while running {}")
        self._suspects = keep

    def _fail_crashed(self, chunk: Chunk, pid: int, exitcode: int | None, when: str) -> None:
        """Fail ``chunk`` because worker ``pid`` died ``when`` (a format with its label)."""
        error = WorkerCrashedError(
            f"worker pid {pid} died with {describe_exit(exitcode)} {when.format(chunk.label)}; "
            "the worker was replaced and the executor is still usable",
            pid=pid,
            exitcode=exitcode,
            task=chunk.label,
        )
        if self._hooks.fail(chunk, error):
            self._forget(chunk)

    def _recover_after_idle_death(self) -> None:
        """Undo what a worker that died between tasks may have left behind.

        Such a worker either held the pool's task-queue lock (idle workers wait
        for a task under it; killed there, it leaves the lock held and no worker
        ever gets a task again: CPython gh-96062), or had just taken a chunk
        and died before acknowledging it, taking the chunk with it.

        - Workers take chunks in the order they were sent: a chunk still
          untaken :data:`LOST_GRACE` seconds after a later one started was lost.
        - If chunks wait, a ready idle worker exists and nothing has started
          for :data:`STALL` seconds: a held lock is released on the dead
          worker's behalf; a free lock means the oldest waiting chunk was lost
          (after :data:`LOST_GRACE`).

        A lost chunk fails with WorkerCrashedError. One death costs at most
        one lock or one chunk, so the first repair ends the recovery.
        """
        assert self._idle_death is not None
        died_at, pid, exitcode = self._idle_death
        now = time.monotonic()
        quiet = now - max(died_at, self._last_ack)
        lost: Chunk | None = None
        with self._track:
            for cid, when in list(self._overtaken.items()):
                if cid not in self._unstarted:
                    del self._overtaken[cid]
                elif now - when > LOST_GRACE:
                    lost = self._unstarted.pop(cid)[1]
                    break
            oldest = min(self._unstarted.values(), key=lambda entry: entry[0], default=None)
        if lost is None and oldest is not None and quiet > STALL and self._ready_idle_worker():
            lock = _mp_private.inqueue_lock(self._pool)
            if _mp_private.release_orphaned_lock(lock):
                self._idle_death = None
                return
            if quiet > LOST_GRACE:
                with self._track:
                    if self._unstarted.pop(oldest[1].id, None) is not None:
                        lost = oldest[1]
        if lost is not None:
            self._idle_death = None
            self._fail_crashed(
                lost, pid, exitcode, "after taking {} from the queue, before it started"
            )
        elif oldest is None and now - died_at > DEATH_WINDOW:
            self._idle_death = None  # nothing was waiting: nothing was lost

    def _ready_idle_worker(self) -> bool:
        """Whether a live worker is idle and past its start-up."""
        busy = {p for p, cid in self._holding.items() if self._hooks.running(cid) is not None}
        return any(p not in busy and p in self._ready for p in self._procs)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - pid reused by another user
        return False
    return True
