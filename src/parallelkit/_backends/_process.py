"""The process backend: ``multiprocessing.Pool`` plus a watcher that sees deaths.

::

    engine ──apply_async(run_blob, (id, fn bytes, items bytes, mode))──▶ mp.Pool
                                                                          │ task channel
        ┌─────────────────────────────────────────────────────────────────┘ (TaskChannel)
        ▼
    worker processes (started by mp.Pool with the configured start method)
        │  ack pipe: b"S"(pid, chunk id, time) when a chunk is taken (by the channel),
        │            b"R"(pid, 0, time) when start-up is over,
        │            b"I"(error) when the initializer failed
        │  result queue: outcome bytes ──▶ mp.Pool result thread (reads with
        │                ResultReader) ──▶ engine.complete
        ▼
    watcher thread (a plain _thread, holding the backend weakly while it waits):
    polls every worker's sentinel and a wake pipe (closed by terminate()), at
    most POLL seconds; from its first wake after the pool is closed with no
    job left, it looks at the sentinels every QUIET_POLL instead of waking as
    each worker exits, and it ends by itself once every worker has.
        - reads the acks that came meanwhile at each wake, and remembers
          which pid holds which chunk; the ack's time starts the chunk's
          clock, so reading it late costs nothing. It is woken by the acks
          themselves only while they come fast (the pipe must not fill) or a
          chunk waits to be stopped as soon as a worker takes it;
        - a worker that exits while holding a chunk: after a short grace (its
          result may still be in the result queue) the chunk fails with
          WorkerCrashedError; mp.Pool starts a replacement worker itself;
        - a worker that died while reading the task channel: its lock is
          released and the chunk it was taking, if any, fails;
        - a worker that died while writing a result: the result queue's lock
          is released, and the reader told to give up on a cut result;
        - an initializer failure: the engine is marked broken.

``multiprocessing.Pool`` replaces dead workers but never fails the task they
held; the watcher is what turns that hang into an error. Private attributes of
the pool are read only through :mod:`._mp_private`.
"""

from __future__ import annotations

import _thread
import atexit
import contextlib
import multiprocessing
import os
import select
import signal
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from multiprocessing.pool import Pool
from multiprocessing.process import BaseProcess
from typing import Any, Final, cast, final

from .. import _worker
from .._config import Settings
from .._errors import WorkerCrashedError
from .._serialize import dumps, dumps_function, exception_from_envelope, loads
from . import _mp_private
from ._base import BackendOptions, Chunk, Hooks
from ._result_reader import ResultReader
from ._task_channel import TaskChannel

__all__ = ("Backend",)

#: How long a dead worker's chunk waits for a result already in the result queue.
CRASH_GRACE: Final = 0.25
#: Longest sleep of the watcher between looks at the pool's worker list and acks.
POLL: Final = 0.05
#: Bytes of acks found at one wake above which acks wake the watcher themselves
#: (at most POLL seconds of them must fit in the pipe, 64 KiB on Linux, 16 KiB
#: at first on macOS; an ack is 29 bytes).
ACK_BUSY: Final = 4096
#: How often the watcher looks at a worker that ended but is not reaped yet.
DYING_POLL: Final = 0.01
#: How often the watcher looks at the workers once the pool is closed and no
#: job is left (they are about to exit).
QUIET_POLL: Final = 0.1
#: Most bytes of acks the watcher takes from the pipe at once.
ACK_READ: Final = 1 << 16
_ACK_LENGTH: Final = struct.Struct("!i")
#: After a worker died: how long a queue lock may stay held with no live holder
#: recorded before it is released on the dead worker's behalf.
STALL: Final = 0.5
#: How many ended workers' exit codes are remembered (a dead lock holder is
#: looked up here moments after it ended).
_GONE_KEPT: Final = 256
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
        self._ack_rest = b""  # the start of an ack whose rest has not come yet
        self._ending = threading.Lock()
        self._ended = False
        init_blob = dumps_function(options.initializer) if options.initializer else None
        args_blob = dumps(tuple(options.initargs)) if options.initializer else None
        self._channel = TaskChannel(context, _chunk_id_of)
        self._results = ResultReader()
        self._pool: Pool = _mp_private.pool_with_task_channel(
            self._channel,
            self._results,
            settings.workers,
            _worker.init_process_worker,
            (self._ack_writer, os.getpid(), init_blob, args_blob),
            options.max_tasks_per_worker,
            context,
        )
        self.can_kill = True
        self._holding: dict[int, int] = {}  # pid -> id of the chunk it took last
        self._procs: dict[int, BaseProcess] = {}
        self._suspects: list[tuple[float, int, int | None, int]] = []
        # Chunks handed to the pool that no worker has acknowledged yet.
        self._track = threading.Lock()
        self._unstarted: dict[int, Chunk] = {}
        self._doomed: set[int] = set()  # chunks to stop as soon as a worker takes them
        self._killed: set[int] = set()  # pids this backend killed on purpose
        self._gone: dict[int, int | None] = {}  # pid -> exit code, of workers that ended
        self._unrecorded_since: float | None = None  # task lock held, no holder recorded
        self._dying: dict[int, float] = {}  # pid -> when its sentinel fired
        self._ready: set[int] = set()  # pids that finished start-up
        self._startup_failures = 0  # workers in a row that died before they were ready
        self._deaths = 0  # unexpected worker deaths so far
        self._closing = False
        self._result_lock_held_since: float | None = None
        self._stop = threading.Event()
        self._looking = threading.Lock()  # held by the watcher while it acts on what it saw
        self._watched: dict[int, int] = {}  # sentinel -> pid, of workers not seen ending yet
        self._acks_polled = False  # whether acks wake the watcher (see _look_before)
        self._acks_busy = False  # the last wake found many acks
        self._to_kill: list[tuple[int, int]] = []  # (pid, chunk id) of doomed chunks taken
        self._quiet = False  # closed with no job left: sentinels are looked at, not polled
        # Closed at terminate(): wakes the watcher, to end.
        wake_r, self._wake_fd = os.pipe()
        self._close_wake = weakref.finalize(self, os.close, self._wake_fd)
        # The watcher holds the backend weakly while it waits: a backend that
        # was terminated (or closed and never joined) is freed, with its pool
        # and named semaphores, as soon as its executor is. Nobody joins it:
        # it ends on its own, closing its pipes' read ends.
        self._watcher_ended = threading.Event()
        args = (weakref.ref(self), self._ack_reader, wake_r, self._watcher_ended)
        if sys.version_info >= (3, 13):
            # A plain thread: threading.Thread.start() waits until the new
            # thread has run, a hand-off that cost a pool's start 0.4-0.6 ms.
            self._watcher_ident = _thread.start_new_thread(_watch, args)
        else:
            # Before 3.13, a plain thread that runs callbacks calling
            # threading.current_thread() (logging does) leaves a dummy Thread
            # in threading's table for good.
            watcher = threading.Thread(
                target=_watch, args=args, name="parallelkit-process-watcher", daemon=True
            )
            watcher.start()
            self._watcher_ident = watcher.ident
        _live.add(self)

    # -- the protocol -------------------------------------------------------------------

    def prepare_fn(self, fn: Callable[..., Any]) -> object:
        return dumps_function(fn)

    def pack_items(self, items: list[Any]) -> object:
        return dumps(items)

    def send(self, chunk: Chunk) -> None:
        assert isinstance(chunk.fn, bytes) and isinstance(chunk.payload, bytes)
        hooks = self._hooks

        unstarted = self._unstarted
        doomed = self._doomed

        def settled() -> None:
            unstarted.pop(chunk.id, None)
            doomed.discard(chunk.id)  # its ack, if read late, must not stop the worker
            chunk.handle = None  # the pool's result holds these closures: no cycle

        def done(blob: bytes) -> None:
            settled()
            values, errors, elapsed = _worker.unpack_outcome(blob, chunk.count)
            hooks.complete(chunk, values, errors, elapsed)

        def failed(exc: BaseException) -> None:
            settled()
            hooks.fail(chunk, exc)

        with self._track:
            unstarted[chunk.id] = chunk
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
        # From now on the pool's threads end on their own. The watcher is not
        # woken: waking it would take the GIL from this thread; it goes quiet
        # the next time it wakes (see _look_after).
        self._closing = True
        self._pool.close()

    def join(self) -> None:
        self._pool.join()
        self.terminate()  # runs the pool's finalizer now; the workers have exited

    def terminate(self) -> None:
        self._stop.set()  # the watcher acts no more: it looks at this under _looking
        # One caller at a time: the pool's finalizer must not run twice at once
        # (it takes the task queue's lock and never gives it back). While the
        # interpreter finalizes, a thread frozen mid-terminate may hold the lock
        # for ever: then only the workers are stopped, without waiting.
        if not self._ending.acquire(blocking=not sys.is_finalizing()):
            self._kill_workers()
            return
        try:
            if self._ended:
                return
            # While the pool's parts are closed, the watcher is held between two
            # looks; it is woken to end only then, so that it does not take the
            # GIL from this thread meanwhile.
            with self._watcher_held():
                if self._deaths:
                    # A dead worker may hold a queue's lock, which the pool's own
                    # shutdown needs: stop every worker, then no holder is alive.
                    self._kill_workers(wait=1.0)
                    _mp_private.release_orphaned_lock(_mp_private.outqueue_lock(self._pool))
                    _mp_private.release_orphaned_lock(_mp_private.inqueue_lock(self._pool))
                self._pool.terminate()
                _mp_private.close_pipes(self._pool)
                self._channel.close()
            self._close_wake()  # the watcher wakes: its end of the pipe reads as closed
            with contextlib.suppress(OSError):
                self._ack_writer.close()
            self._ended = True
        finally:
            self._ending.release()

    def _kill_workers(self, wait: float = 0.0) -> None:
        for proc in _mp_private.workers(self._pool):
            if proc.pid is not None and proc.exitcode is None:
                self._kill(proc.pid)
                if wait:
                    proc.join(wait)

    # -- the watcher --------------------------------------------------------------------

    def _forget(self, chunk: Chunk) -> None:
        handle = chunk.handle
        if handle is not None:
            _mp_private.forget(self._pool, handle)  # type: ignore[arg-type]

    def _watcher_held(self) -> contextlib.AbstractContextManager[object]:
        """Hold the watcher between two looks (it looks only while holding :attr:`_looking`).

        Not from the watcher itself (a callback it ran may terminate), nor at
        interpreter exit, where a daemon thread may be frozen holding the lock.
        """
        if threading.get_ident() == self._watcher_ident or sys.is_finalizing():
            return contextlib.nullcontext()
        return self._looking

    def _look_before(self, poller: select.poll) -> float | None:
        """Start polling new workers' sentinels; return the poll timeout, None to stop."""
        with self._looking:
            if self._stop.is_set():
                return None
            for proc in _mp_private.workers(self._pool):
                # A reaped worker stays in the pool's list until the pool's
                # maintenance thread (which stops at close()) removes it.
                pid = proc.pid
                if pid is not None and pid not in self._procs and pid not in self._gone:
                    self._procs[pid] = proc
                    self._watched[proc.sentinel] = pid
                    if not self._quiet:
                        poller.register(proc.sentinel, select.POLLIN)
            # Acks are read at every wake; they wake the watcher themselves
            # only when they come fast or a chunk must be stopped once taken.
            prompt = self._acks_busy or bool(self._doomed)
            if prompt != self._acks_polled:
                if prompt:
                    poller.register(self._ack_reader.fileno(), select.POLLIN)
                else:
                    poller.unregister(self._ack_reader.fileno())
                self._acks_polled = prompt
            if self._going_quiet():
                # Closed with nothing left to run: the workers are about to
                # exit, and waking as each one does would take the GIL from
                # the join. Their sentinels are looked at every QUIET_POLL
                # instead, so a death that leaves a queue's lock held is
                # still repaired (see _check_task_channel).
                self._quiet = True
                for fd in self._watched:
                    poller.unregister(fd)
            if self._dying:
                return DYING_POLL
            return QUIET_POLL if self._quiet else POLL

    def _look_after(self, poller: select.poll, events: list[tuple[int, int]], wake: int) -> bool:
        """Act on what the poll saw; return False once there is nothing left to watch."""
        with self._looking:
            if self._stop.is_set():
                return False
            if self._going_quiet() and not self._dying:
                # The first wake after close() with no job left, most likely by
                # the first worker to exit: the workers are looked at quietly
                # from the next look on (see _look_before), and this wake takes
                # the GIL from the threads that join the pool no longer than
                # it must. What woke it is seen by that next look.
                return True
            reader = self._ack_reader.fileno()
            ready: set[int] = set()
            acks = False
            if self._quiet and self._watched:
                events = events + _ready_now(self._watched)
            for fd, _ in events:
                if fd == reader:
                    acks = True
                    continue
                if fd == wake:  # its write end was closed: the backend is being stopped
                    poller.unregister(fd)
                    continue
                # An ended worker's sentinel stays ready until the pool reaps
                # it: polled again, it would spin, taking the GIL from the
                # threads that reap. It is looked at every DYING_POLL from now on.
                with contextlib.suppress(KeyError):
                    poller.unregister(fd)
                if self._watched.pop(fd, None) is not None:
                    ready.add(fd)
            # Every ack written before a death is read before the death is judged.
            if acks or self._ack_reader.poll():
                self._acks_busy = self._read_acks() >= ACK_BUSY
            else:
                self._acks_busy = False
            self._reap(ready)
            for fd in [fd for fd, pid in self._watched.items() if pid not in self._procs]:
                del self._watched[fd]  # reaped by the pool before its sentinel was seen
                if not self._quiet:
                    poller.unregister(fd)
            self._judge_suspects()
            if self._gone:
                self._check_task_channel()
            if self._deaths:
                self._check_result_channel()
            return not self._all_ended()

    def _going_quiet(self) -> bool:
        """Closed with no job left, and not quiet yet."""
        return not self._quiet and self._closing and not _mp_private.pending_jobs(self._pool)

    def _all_ended(self) -> bool:
        """Closed, and every worker has ended: nothing is left to watch.

        A pool closed with no job left lets its workers go; nobody may ever
        join it, so the watcher ends here rather than at ``terminate()``.
        """
        if not self._closing or self._suspects or _mp_private.maintainer_alive(self._pool):
            return False
        return all(
            proc.pid is None or proc.pid in self._gone for proc in _mp_private.workers(self._pool)
        )

    def _read_acks(self) -> int:
        """Take every ack waiting in the pipe, in large reads, and act on each.

        Acks are ``Connection.send_bytes`` messages (a 4-byte length, then the
        body) written in one system call each, below the pipe's atomic size,
        so what one read returns is whole messages, save maybe the last.

        A worker that took a chunk to be stopped is killed only if its last
        ack read says it still holds that chunk (acks may be read late).

        Returns:
            How many bytes were read.
        """
        total = 0
        try:
            while True:
                data = os.read(self._ack_reader.fileno(), ACK_READ)
                if not data:
                    raise EOFError("the ack pipe was closed")
                total += len(data)
                self._split_acks(data)
                # A full read may have left more behind: every ack must be
                # seen before the deaths of this round are judged.
                if len(data) < ACK_READ or not self._ack_reader.poll():
                    return total
        finally:
            to_kill, self._to_kill = self._to_kill, []
            for pid, chunk_id in to_kill:
                if self._holding.get(pid) == chunk_id:
                    self._kill(pid)

    def _split_acks(self, data: bytes) -> None:
        """Act on each whole ack in ``data``; keep an unfinished last one for later."""
        buffer = self._ack_rest + data
        start = 0
        while len(buffer) - start >= _ACK_LENGTH.size:
            (size,) = _ACK_LENGTH.unpack_from(buffer, start)
            end = start + _ACK_LENGTH.size + size
            if size < 0 or end > len(buffer):
                break
            self._on_ack(buffer[start + _ACK_LENGTH.size : end])
            start = end
        self._ack_rest = buffer[start:]

    def _on_ack(self, message: bytes) -> None:
        kind, body = message[:1], message[1:]
        if kind == _worker.ACK_STARTED:
            pid, chunk_id, when = _worker.ACK_FORMAT.unpack(body)
            self._holding[pid] = chunk_id
            with self._track:
                self._unstarted.pop(chunk_id, None)
                doomed = chunk_id in self._doomed
                self._doomed.discard(chunk_id)
            if doomed:
                self._to_kill.append((pid, chunk_id))  # once the whole read is seen
                return
            self._hooks.started(chunk_id, pid, when)
        elif kind == _worker.ACK_READY:
            pid, _, _ = _worker.ACK_FORMAT.unpack(body)
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
            self._gone[pid] = exitcode
            if len(self._gone) > _GONE_KEPT:
                del self._gone[next(iter(self._gone))]
            if exitcode != 0 and pid not in self._killed:
                self._deaths += 1
            chunk_id = self._holding.pop(pid, None)
            on_purpose = pid in self._killed or self._stop.is_set()
            if chunk_id is not None and self._hooks.running(chunk_id) is not None:
                self._suspects.append((now + CRASH_GRACE, pid, exitcode, chunk_id))
            elif pid not in self._ready and exitcode > 0 and not on_purpose:
                # Exited on its own before it was ready (a signal is someone's kill).
                self._startup_failed(pid, exitcode)
            self._killed.discard(pid)
            self._ready.discard(pid)
        # A worker that took a chunk but was reaped before it was ever seen here.
        known = set(self._procs)
        for pid, chunk_id in list(self._holding.items()):
            if pid not in known and not _alive(pid):
                del self._holding[pid]
                if self._hooks.running(chunk_id) is not None:
                    self._suspects.append((now + CRASH_GRACE, pid, None, chunk_id))

    def _check_task_channel(self) -> None:
        """After a worker ended: free the task channel if it died reading it.

        The channel records who holds its lock and which chunk they are
        taking (see :mod:`._task_channel`). A holder that has died leaves the
        lock held (CPython gh-96062): it is released for it, and a chunk it
        had taken but not acknowledged fails. A lock held with no holder
        recorded for :data:`STALL` seconds lost its holder in the instant
        between taking the lock and saying so: it is released too.
        """
        if not _mp_private.lock_held(_mp_private.inqueue_lock(self._pool)):
            self._unrecorded_since = None
            return
        pid, chunk_id = self._channel.holder()
        if pid == 0:
            now = time.monotonic()
            if self._unrecorded_since is None:
                self._unrecorded_since = now
            elif now - self._unrecorded_since > STALL:
                self._unrecorded_since = None
                self._channel.release_for_dead_reader()
            return
        self._unrecorded_since = None
        if pid not in self._gone:
            return
        with self._track:
            lost = self._unstarted.pop(chunk_id, None) if chunk_id else None
        self._channel.release_for_dead_reader()
        if lost is not None:
            self._fail_crashed(
                lost, pid, self._gone[pid], "while taking {} from the queue, before it started"
            )

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
            # The dead writer may have cut a result short: the result thread
            # must not wait for the rest of it for ever.
            self._results.suspect = True
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


#: Process backends not yet terminated.
_live: weakref.WeakSet[Backend] = weakref.WeakSet()


@atexit.register
def _quiet_at_exit() -> None:
    """At interpreter exit, stop every watcher before multiprocessing's own exit hook.

    That hook (registered earlier, so run later) terminates the pools of
    executors still open; their watchers must not take it for a failure.
    """
    for backend in list(_live):
        backend._stop.set()  # pyright: ignore[reportPrivateUsage]


def _watch(
    ref: weakref.ref[Backend], reader: Connection, wake: int, ended: threading.Event
) -> None:
    """The watcher thread: poll the workers' sentinels and the wake pipe, then look.

    The backend is held only while the watcher acts on what it saw, never
    while it waits; the read ends of the ack and wake pipes are closed here,
    as the thread ends.
    """
    poller = select.poll()
    poller.register(wake, select.POLLIN)
    try:
        while True:
            backend = ref()
            timeout = None if backend is None else backend._look_before(poller)  # pyright: ignore[reportPrivateUsage]
            if timeout is None:
                return
            del backend
            events = poller.poll(1000 * timeout)
            backend = ref()
            if backend is None or not backend._look_after(poller, events, wake):  # pyright: ignore[reportPrivateUsage]
                return
            del backend
    except ReferenceError:  # the engine is gone: nobody is left to tell
        pass
    except (OSError, EOFError, ValueError):
        backend = ref()
        if backend is not None and not backend._stop.is_set():  # pyright: ignore[reportPrivateUsage]
            raise  # else: stopped from a callback it was running
    finally:
        reader.close()
        os.close(wake)
        ended.set()


def _ready_now(fds: Iterable[int]) -> list[tuple[int, int]]:
    """Poll ``fds`` without waiting (select() cannot take descriptors above 1023)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return poller.poll(0)


def _chunk_id_of(task: object) -> int:
    """The chunk id in a task that ``multiprocessing.Pool`` writes, or 0."""
    if not isinstance(task, tuple):
        return 0
    parts = cast("tuple[object, ...]", task)
    if len(parts) == 5 and parts[2] is _worker.run_blob:
        args = cast("tuple[int, ...]", parts[3])
        return args[0]
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - pid reused by another user
        return False
    return True
