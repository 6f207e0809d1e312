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
        self._ack_reader, self._ack_writer = context.Pipe(duplex=False)
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
        self._acked_by: set[int] = set()  # pids that took at least one chunk
        self._seen_at: dict[int, float] = {}  # pid -> when the watcher first saw it
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
        self._pool.close()

    def join(self) -> None:
        self._pool.join()
        self._shutdown_watcher()

    def terminate(self) -> None:
        self._stop.set()
        self._pool.terminate()
        self._shutdown_watcher()

    # -- the watcher --------------------------------------------------------------------

    def _forget(self, chunk: Chunk) -> None:
        handle = chunk.handle
        if handle is not None:
            _mp_private.forget(self._pool, handle)  # type: ignore[arg-type]

    def _shutdown_watcher(self) -> None:
        self._stop.set()
        if self._watcher is not threading.current_thread():
            self._watcher.join()
        for conn in (self._ack_reader, self._ack_writer):
            conn.close()

    def _watch(self) -> None:
        reader = self._ack_reader
        while not self._stop.is_set():
            for proc in _mp_private.workers(self._pool):
                if proc.pid is not None and proc.pid not in self._procs:
                    self._procs[proc.pid] = proc
                    self._seen_at[proc.pid] = time.monotonic()
            waitables: list[Any] = [reader, *(p.sentinel for p in self._procs.values())]
            try:
                wait(waitables, timeout=POLL)
                while reader.poll():
                    self._on_ack(reader.recv_bytes())
            except (OSError, EOFError, ValueError):
                if self._stop.is_set():
                    return
                raise
            self._reap()
            self._judge_suspects()
            if self._idle_death is not None:
                self._recover_after_idle_death()

    def _on_ack(self, message: bytes) -> None:
        kind, body = message[:1], message[1:]
        if kind == _worker.ACK_STARTED:
            pid, chunk_id = _worker.ACK_FORMAT.unpack(body)
            self._holding[pid] = chunk_id
            self._last_ack = now = time.monotonic()
            self._acked_by.add(pid)
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
        elif kind == _worker.ACK_INIT_FAILED:
            _, envelope = loads(body)
            error = exception_from_envelope(envelope)
            self._hooks.broken(error)
            self._stop.set()

    def _reap(self) -> None:
        for pid, proc in list(self._procs.items()):
            exitcode = proc.exitcode
            if exitcode is None:
                continue
            del self._procs[pid]
            chunk_id = self._holding.pop(pid, None)
            if chunk_id is not None and self._hooks.running(chunk_id) is not None:
                self._suspects.append((time.monotonic() + CRASH_GRACE, pid, exitcode, chunk_id))
            elif exitcode != 0 and pid not in self._killed and not self._stop.is_set():
                # Died between tasks: it may have held the task queue's read lock,
                # or taken a chunk without acknowledging it yet.
                now = time.monotonic()
                self._idle_death = (now, pid, exitcode)
                with self._track:
                    self._overtaken = {
                        cid: now
                        for cid, (seq, _) in self._unstarted.items()
                        if seq < self._acked_seq
                    }
            self._killed.discard(pid)
            self._acked_by.discard(pid)
            self._seen_at.pop(pid, None)
        # A worker that took a chunk but was reaped before it was ever seen here.
        known = set(self._procs)
        for pid, chunk_id in list(self._holding.items()):
            if pid not in known and not _alive(pid):
                del self._holding[pid]
                if self._hooks.running(chunk_id) is not None:
                    self._suspects.append((time.monotonic() + CRASH_GRACE, pid, None, chunk_id))

    def _judge_suspects(self) -> None:
        now = time.monotonic()
        keep: list[tuple[float, int, int | None, int]] = []
        for suspect in self._suspects:
            when, pid, exitcode, chunk_id = suspect
            if when > now:
                keep.append(suspect)
                continue
            chunk = self._hooks.running(chunk_id)
            if chunk is None:
                continue
            error = WorkerCrashedError(
                f"worker pid {pid} died with {describe_exit(exitcode)} while running "
                f"{chunk.label}; the worker was replaced and the executor is still usable",
                pid=pid,
                exitcode=exitcode,
                task=chunk.label,
            )
            if self._hooks.fail(chunk, error):
                self._forget(chunk)
        self._suspects = keep

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
        if lost is None and oldest is not None and quiet > STALL and self._ready_idle_worker(now):
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
            error = WorkerCrashedError(
                f"worker pid {pid} died with {describe_exit(exitcode)} after taking "
                f"{lost.label} from the queue, before it started; the worker was replaced",
                pid=pid,
                exitcode=exitcode,
                task=lost.label,
            )
            if self._hooks.fail(lost, error):
                self._forget(lost)
        elif oldest is None and now - died_at > DEATH_WINDOW:
            self._idle_death = None  # nothing was waiting: nothing was lost

    def _ready_idle_worker(self, now: float) -> bool:
        """Whether a live worker is idle and past its start-up."""
        busy = {p for p, cid in self._holding.items() if self._hooks.running(cid) is not None}
        return any(
            p not in busy
            and proc.exitcode is None
            and (p in self._acked_by or now - self._seen_at.get(p, now) > 2 * LOST_GRACE)
            for p, proc in self._procs.items()
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - pid reused by another user
        return False
    return True
