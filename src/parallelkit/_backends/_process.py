"""The process backend: worker processes of its own, looked after by one manager thread.

::

    engine ── send(chunk) ──▶ frame ──▶ task channel: one pipe, one read lock (see ._pipes)
              (caller's thread, or      │ written without blocking; what the pipe
               the manager's)           │ cannot take yet waits in the outbox,
                                        │ which the manager writes when it can
                                        ▼
    worker processes: worker_main() in multiprocessing.get_context(m).Process
        │  each worker's own pipe (its outbox), in order:
        │  b"R" ready, b"I" initializer failed, b"S" (pid, chunk id, t) chunk taken,
        │  b"D" chunk id + outcome, b"L" a log record (forward_logging)
        ▼
    manager thread ("parallelkit-manager", one per executor) waits on all of:
        each worker's pipe      → remembers who holds which chunk; engine.started(),
                                  engine.complete(); log records to the LogListener
                                  (see ._logs), whose own thread, started on the
                                  first record, runs the parent's handlers; while
                                  it is behind, the pipes that fed it are not read
        each worker's sentinel  → the worker ended: reads the rest of its pipe, then
                                  fails the chunk it still held (WorkerCrashedError),
                                  frees the task channel if it died holding it, and
                                  starts a worker in its place
        the task pipe, writable → writes what send() could not (only while some waits)
        a wake-up pipe          → send() left something to write, close(), terminate(),
                                  a new earliest time limit
        its poll's timeout      → the earliest time limit: engine.expired(chunk)

    abort(chunk) (a time limit, from the manager; a cancel, from any thread): SIGKILL to the worker
    that holds the chunk; one not taken yet is doomed, and the worker that takes
    it is killed when its ack is read. The manager sees the death like any other;
    the engine has already failed the chunk.

    close(): each worker is sent the word to end (a None task) behind the chunks
    already written; the manager ends once every worker has ended (a worker
    dying before that is replaced only while chunks wait in the pipe).
    terminate() (also at interpreter exit): every worker is killed; the manager
    reaps them, closes every pipe, and ends; terminate() waits for it.

All the process bookkeeping lives in the manager thread, which alone starts,
reaps and replaces workers: no other thread reads an exit status, so nothing
races for it. ``max_tasks_per_worker`` is counted by the worker itself, which
ends after that many chunks; the manager replaces it like any worker that ends.
"""

from __future__ import annotations

import atexit
import contextlib
import heapq
import logging
import math
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable
from multiprocessing import resource_tracker
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any, Final, final

from .. import _bulk, _logs, _worker
from .._channels._sharing import new_token
from .._errors import WorkerCrashedError, describe_exit
from .._lifeline import Lifeline
from .._serialize import by_value, dumps, dumps_function, exception_from_envelope, loads
from . import _mp_private
from ._base import BackendOptions, Chunk, Hooks
from ._pipes import Inbox, TaskChannel

if TYPE_CHECKING:
    from .._config import Settings

__all__ = ("Backend",)

#: How often a worker whose sentinel fired but whose status cannot be read
#: yet is looked at again.
DYING_POLL: Final = 0.01
#: How often its status is read again at once, while it finishes exiting.
EXIT_WAIT: Final = 0.0002
#: After a worker ended: how long the task channel's lock may stay held with
#: no holder recorded before it is released on the dead worker's behalf.
STALL: Final = 0.5
#: How often that lock is looked at meanwhile.
STALL_POLL: Final = 0.05
#: How long terminate() waits for a killed worker to end.
KILL_WAIT: Final = 5.0
#: The kinds of message a worker writes (see :mod:`parallelkit._worker`), as their first byte.
_RESULT: Final = _worker.RESULT[0]
_STARTED: Final = _worker.ACK_STARTED[0]
_READY: Final = _worker.ACK_READY[0]
_INIT_FAILED: Final = _worker.ACK_INIT_FAILED[0]
_LOG_RECORD: Final = _logs.LOG_RECORD[0]
_IN: Final = select.POLLIN | select.POLLHUP | select.POLLERR
_OUT: Final = select.POLLOUT | select.POLLERR

_log = logging.getLogger("parallelkit")


@final
class _Worker:
    """One worker process, as the manager sees it."""

    __slots__ = ("chunk", "inbox", "pid", "proc", "ready", "sentinel")

    def __init__(self, proc: BaseProcess, inbox: Inbox) -> None:
        self.proc = proc
        self.pid: int = proc.pid or 0
        self.inbox = inbox
        self.sentinel: int = proc.sentinel
        self.ready = False  # its start-up is over
        self.chunk = 0  # the chunk it took last and has not finished, or 0


@final
class Backend:
    """Runs chunks in worker processes started and looked after by this backend."""

    def __init__(self, hooks: Hooks, settings: Settings, options: BackendOptions) -> None:
        # Weakly: the engine owns this backend, and the manager thread holds
        # the backend; the engine must be freed as soon as its owner is.
        self._hooks: Hooks = weakref.proxy(hooks)
        self.workers = settings.workers
        self.window = 4 * settings.workers
        self.start_method: str | None = settings.start_method
        self.can_kill = True
        self.timeout_note = ""
        self.channel_address: str | None = None
        context: Any = multiprocessing.get_context(settings.start_method)
        if settings.start_method == "forkserver":
            # What a worker runs: the task channel, which loads the worker module.
            _mp_private.preload_in_forkserver(TaskChannel.__module__)
            if settings.forward_logging:
                # And the logging module, which takes a worker longer to load than
                # the rest of what it runs.
                _mp_private.preload_in_forkserver(_logs.__name__)
        self._context = context
        self._new_process: Callable[..., BaseProcess] = (
            _mp_private.SpawnedWorker if settings.start_method == "spawn" else context.Process
        )
        self._lifeline = Lifeline()
        self._channel = TaskChannel(context, _chunk_id_of)
        self._task_fd = self._channel.write_fd
        os.set_blocking(self._task_fd, False)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # Big buffers (see .._bulk): the tasks' own segments are unlinked when
        # their chunk is spent; what every worker reads (a function's blob, the
        # initializer's arguments, read-only arguments cached by identity) is
        # mapped read-only. Every name starts with the prefix, followed by the
        # pid of the process that made it: what a dead worker left is found by name.
        self._threshold = settings.shared_threshold
        self._prefix = new_token() + "x"
        self._task_outbox = _bulk.Outbox(self._prefix, _bulk.ONCE)
        self._shared_outbox = _bulk.Outbox(self._prefix, _bulk.SHARED)
        self._cache = _bulk.Cache(self._shared_outbox, self._threshold) if self._threshold else None
        self._init_parcels: list[object] = []  # live as long as this backend
        if self._threshold is not None:
            # Started here, before any worker: the workers share it, so a segment one
            # process made and another unlinked is accounted for in one place.
            resource_tracker.ensure_running()
        self._worker_args = (
            os.getpid(),
            self._lifeline,
            self._shared_blob(options.initializer, function=True) if options.initializer else None,
            self._shared_blob(tuple(options.initargs)) if options.initializer else None,
            options.max_tasks_per_worker,
            _logs.level_snapshot() if settings.forward_logging else None,
            (self._threshold, self._prefix),
        )
        self._logs = _logs.LogListener(self._wake)
        self._paused: set[int] = set()  # inbox fds not read while the log listener catches up

        # Shared with the threads that call send() and abort(); held briefly.
        self._lock = threading.Lock()
        self._procs: dict[int, _Worker] = {}  # pid -> live worker
        self._unstarted: set[int] = set()  # chunks written (or to write) that no worker took
        self._doomed: set[int] = set()  # of those, the ones to stop once taken
        self._taken: dict[int, int] = {}  # chunk id -> pid of the worker that holds it
        self._killed: set[int] = set()  # pids killed on purpose
        self._deadlines: list[tuple[float, int]] = []  # heap of (when, chunk id): time limits
        self._closing = False
        self._stopping = False
        # What send() could not write yet, in order; guarded by _out_lock.
        self._out_lock = threading.Lock()
        self._outbox: list[memoryview] = []

        # The manager thread's own.
        self._poller = select.poll()
        self._by_fd: dict[int, tuple[bool, _Worker]] = {}  # fd -> (is sentinel, worker)
        self._dying: list[_Worker] = []  # sentinel fired, status not readable yet
        self._told: set[int] = set()  # pids sent the word to end
        self._writing = False  # the task pipe is polled for room
        self._startup_failures = 0  # workers in a row that ended before they were ready
        self._given_up = False  # the workers cannot start: no more are started
        self._stall_since: float | None = None

        self._ending = threading.Lock()
        self._ended = False
        try:
            for _ in range(self.workers):
                self._start_worker()
        except BaseException:
            self._shut_down()
            raise
        self._manager = threading.Thread(target=self._run, name="parallelkit-manager", daemon=True)
        self._manager.start()
        _live.add(self)

    # -- the protocol -------------------------------------------------------------------

    def prepare_fn(self, fn: Callable[..., Any]) -> object:
        return self._pack(fn, self._shared_outbox, function=True)

    def pack_items(self, items: list[Any]) -> object:
        return self._pack(items, self._task_outbox)

    def _shared_blob(self, obj: object, *, function: bool = False) -> bytes:
        """``obj`` serialized for every worker, its big buffers placed for this backend's life."""
        parcel = self._pack(obj, self._shared_outbox, function=function, cached=False)
        self._init_parcels.append(parcel)
        return _bulk.message_of(parcel)

    def _pack(
        self, obj: object, outbox: _bulk.Outbox, *, function: bool = False, cached: bool = True
    ) -> object:
        """Serialize ``obj`` (a function: as :func:`dumps_function` would), big buffers placed.

        Returns:
            The message, or a :class:`~parallelkit._bulk.Parcel` holding it and
            the segments it refers to until it is spent.
        """
        placed: list[_bulk.Placement] = []
        blob = _bulk.dumps(
            obj,
            self._threshold,
            outbox,
            plain=dumps_function if function else dumps,
            cache=self._cache.lookup if self._cache and cached else None,
            placed=placed,
            by_value=function and by_value(obj),
        )
        return _bulk.parcel(blob, placed)

    def send(self, chunk: Chunk) -> None:
        frame = self._channel.frame(
            (chunk.id, _bulk.message_of(chunk.fn), _bulk.message_of(chunk.payload), chunk.mode)
        )
        with self._lock:
            if self._closing or self._stopping:
                raise RuntimeError("the process pool was closed")
            self._unstarted.add(chunk.id)
        self._write(frame)

    def keep_time(self, chunk: Chunk, deadline: float) -> bool:
        # The manager keeps the time: no thread of its own for time limits.
        with self._lock:
            heapq.heappush(self._deadlines, (deadline, chunk.id))
            first = self._deadlines[0][1] == chunk.id
        if first and threading.current_thread() is not self._manager:
            self._wake()  # it waits with a longer timeout, or none
        return True

    def abort(self, chunk: Chunk) -> None:
        with self._lock:
            pid = self._taken.get(chunk.id)
            if pid is not None:
                self._kill(pid)
            elif chunk.id in self._unstarted:
                self._doomed.add(chunk.id)  # stopped when a worker takes it

    def close(self) -> None:
        with self._lock:
            self._closing = True
        self._wake()

    def join(self) -> None:
        # After close(): the manager ends once every worker has ended.
        if threading.current_thread() is not self._manager:
            self._manager.join()
        self.terminate()  # nothing is left to stop; marks the backend ended

    def terminate(self) -> None:
        # While the interpreter finalizes, a thread frozen mid-terminate may
        # hold the lock for ever: then only the workers are stopped.
        if not self._ending.acquire(blocking=not sys.is_finalizing()):
            self._kill_all()
            return
        try:
            if self._ended:
                return
            self._kill_all()
            self._wake()
            if threading.current_thread() is not self._manager and not sys.is_finalizing():
                self._manager.join()  # it reaps the workers and closes every pipe
            self._ended = True
            _live.discard(self)
        finally:
            self._ending.release()

    def processes(self) -> list[BaseProcess]:
        """Return the live worker processes (for tests and diagnostics)."""
        with self._lock:
            return [worker.proc for worker in self._procs.values()]

    # -- any thread ---------------------------------------------------------------------

    def _wake(self) -> None:
        with self._out_lock:
            self._wake_held()

    def _wake_held(self) -> None:
        """Wake the manager (hold ``_out_lock``: the pipe is closed under it)."""
        if self._wake_w >= 0:
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_w, b"\0")  # a full pipe wakes the manager as well

    def _kill(self, pid: int) -> None:
        """Kill worker ``pid`` on purpose (its death is no crash); hold ``_lock``."""
        self._killed.add(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def _kill_all(self) -> None:
        """Stop the pool: kill every worker; no new one is started."""
        with self._lock:
            self._stopping = True
            for pid in self._procs:
                self._kill(pid)  # not reaped yet (only the manager reaps): still ours

    def _write(self, frame: bytes) -> None:
        """Write a frame to the task pipe without blocking; the manager writes the rest."""
        with self._out_lock:
            if not self._outbox:
                try:
                    written = os.write(self._task_fd, frame)
                except BlockingIOError:
                    written = 0
                if written == len(frame):
                    return
                self._outbox.append(memoryview(frame)[written:])
                self._wake_held()
            else:
                self._outbox.append(memoryview(frame))

    # -- the manager thread -------------------------------------------------------------

    def _run(self) -> None:
        poller = self._poller
        poller.register(self._wake_r, select.POLLIN)
        try:
            while not self._stopping:
                if self._closing and self._close_step():
                    return
                self._want_to_write()
                self._resume_reading()
                events = poller.poll(self._timeout())
                for fd, event in events:
                    if fd == self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_r, 4096)
                    elif fd == self._task_fd:
                        self._flush(event)
                    else:
                        found = self._by_fd.get(fd)
                        if found is None:
                            continue
                        is_sentinel, worker = found
                        if is_sentinel:
                            self._ending_worker(worker)
                        else:
                            self._read(worker)
                self._reap_dying()
                self._watch_stall()
                self._expire_due()
        except ReferenceError:  # the engine is gone: nobody is left to tell
            pass
        except BaseException as exc:  # a bug, or no process can start: never a hang
            with contextlib.suppress(ReferenceError):
                self._hooks.broken(exc)
            raise
        finally:
            self._shut_down()

    def _timeout(self) -> int | None:
        """How long the next wait may last, in milliseconds (None: until something comes)."""
        seconds: float | None = None
        if self._dying:
            seconds = DYING_POLL
        elif self._stall_since is not None:
            seconds = STALL_POLL
        with self._lock:
            if self._deadlines:
                left = self._deadlines[0][0] - time.monotonic()
                seconds = left if seconds is None else min(seconds, left)
        return None if seconds is None else max(0, math.ceil(seconds * 1000))

    def _expire_due(self) -> None:
        """Chunks past their time limit: the engine fails them and has their workers killed."""
        now = time.monotonic()
        due: list[int] = []
        with self._lock:
            while self._deadlines and self._deadlines[0][0] <= now:
                due.append(heapq.heappop(self._deadlines)[1])
        for chunk_id in due:
            chunk = self._hooks.running(chunk_id)
            if chunk is not None:
                self._hooks.expired(chunk)

    def _want_to_write(self) -> None:
        with self._out_lock:
            waiting = bool(self._outbox)
        if waiting != self._writing:
            if waiting:
                self._poller.register(self._task_fd, select.POLLOUT)
            else:
                self._poller.unregister(self._task_fd)
            self._writing = waiting

    def _flush(self, event: int) -> None:
        with self._out_lock:
            if event & select.POLLERR:
                self._outbox.clear()  # no reader is left
                return
            while self._outbox:
                data = self._outbox[0]
                try:
                    written = os.write(self._task_fd, data)
                except BlockingIOError:
                    return
                if written < len(data):
                    self._outbox[0] = data[written:]
                    return
                del self._outbox[0]

    def _close_step(self) -> bool:
        """After close(): tell each worker to end; True once every one has ended."""
        with self._lock:
            untold = [pid for pid in self._procs if pid not in self._told]
            done = not self._procs and not self._dying and not self._replacing()
        for pid in untold:
            self._told.add(pid)
            self._write(self._channel.frame(None))
        return done

    def _replacing(self) -> bool:
        """Whether a worker that ended is replaced (hold ``_lock``)."""
        if self._stopping or self._given_up:
            return False
        return not self._closing or bool(self._unstarted)

    def _start_worker(self) -> int:
        """Start one worker; return its pid."""
        reader, writer = self._context.Pipe(duplex=False)
        proc = self._new_process(
            target=_worker.worker_main,
            args=(self._channel, writer, *self._worker_args),
            daemon=True,
        )
        try:
            proc.start()
        finally:
            writer.close()  # the worker's now: the pipe ends with it
        worker = _Worker(proc, Inbox(reader))
        _log.debug("started worker pid %d (%s)", worker.pid, self.start_method)
        with self._lock:
            self._procs[worker.pid] = worker
            if self._stopping:
                self._kill(worker.pid)
        self._by_fd[worker.inbox.fd] = (False, worker)
        self._by_fd[worker.sentinel] = (True, worker)
        self._poller.register(worker.inbox.fd, _IN)
        self._poller.register(worker.sentinel, _IN)
        return worker.pid

    def _read(self, worker: _Worker) -> None:
        messages, still_open = worker.inbox.read()
        if not still_open:
            self._unwatch(worker.inbox.fd)
        full = False
        for message in messages:
            if message[0] == _LOG_RECORD:
                full = self._logs.put(bytes(message[1:])) or full
            else:
                self._on_message(worker, message)
        fd = worker.inbox.fd
        if full and fd in self._by_fd and fd not in self._paused:
            # The parent's handlers are behind: this worker waits in its
            # logging calls (its pipe fills) until they catch up.
            self._paused.add(fd)
            self._poller.unregister(fd)

    def _last_records(self, worker: _Worker) -> None:
        """Hand over the log records a worker stopped by terminate() wrote before it ended."""
        with contextlib.suppress(OSError):
            messages, _ = worker.inbox.read()
            for message in messages:
                if message[0] == _LOG_RECORD:
                    self._logs.put(bytes(message[1:]))

    def _resume_reading(self) -> None:
        """Read the paused pipes again once the log listener has room."""
        if self._paused and not self._logs.behind:
            for fd in self._paused:
                self._poller.register(fd, _IN)
            self._paused.clear()

    def _on_message(self, worker: _Worker, message: memoryview) -> None:
        kind = message[0]
        if kind == _RESULT:
            (chunk_id,) = _worker.CHUNK_ID.unpack_from(message, 1)
            with self._lock:
                self._taken.pop(chunk_id, None)
                if worker.chunk == chunk_id:
                    worker.chunk = 0
            chunk = self._hooks.running(chunk_id)
            if chunk is not None:
                values, errors, elapsed = _worker.unpack_outcome(
                    message[1 + _worker.CHUNK_ID.size :], chunk.count
                )
                self._hooks.complete(chunk, values, errors, elapsed)
        elif kind == _STARTED:
            _, chunk_id, when = _worker.ACK_FORMAT.unpack_from(message, 1)
            with self._lock:
                self._unstarted.discard(chunk_id)
                worker.chunk = chunk_id
                self._taken[chunk_id] = worker.pid
                doomed = chunk_id in self._doomed
                if doomed:
                    self._doomed.discard(chunk_id)
                    self._kill(worker.pid)
            if not doomed:
                self._hooks.started(chunk_id, worker.pid, when)
        elif kind == _READY:
            worker.ready = True
            self._startup_failures = 0
        elif kind == _INIT_FAILED:
            _, envelope = loads(message[1:])
            self._give_up(exception_from_envelope(envelope))

    def _unwatch(self, fd: int) -> None:
        if self._by_fd.pop(fd, None) is not None:
            if fd in self._paused:
                self._paused.discard(fd)
            else:
                self._poller.unregister(fd)

    def _ending_worker(self, worker: _Worker) -> None:
        """A worker's sentinel fired: read what it wrote, then its status."""
        self._unwatch(worker.sentinel)
        if worker.inbox.fd in self._by_fd:
            self._read(worker)  # every message it wrote came before its end
        code = worker.proc.exitcode
        deadline = time.monotonic() + DYING_POLL
        # The sentinel fires as the worker's files close, a moment before its
        # status can be read: wait that moment here rather than a DYING_POLL.
        while code is None and time.monotonic() < deadline:
            time.sleep(EXIT_WAIT)
            code = worker.proc.exitcode
        if code is None:
            self._dying.append(worker)
        else:
            self._worker_gone(worker, code)

    def _reap_dying(self) -> None:
        if not self._dying:
            return
        dying, self._dying = self._dying, []
        for worker in dying:
            code = worker.proc.exitcode
            if code is None:
                self._dying.append(worker)
            else:
                self._worker_gone(worker, code)

    def _worker_gone(self, worker: _Worker, code: int) -> None:
        """Worker ended with exit code ``code``: fail what it held, replace it."""
        pid = worker.pid
        with self._lock:
            del self._procs[pid]
            chunk_id = worker.chunk
            self._taken.pop(chunk_id, None)
            on_purpose = pid in self._killed or self._stopping
            self._killed.discard(pid)
        self._unwatch(worker.inbox.fd)
        worker.inbox.close()
        # Every message it wrote has been read: any segment of its that is
        # still named was never sent (it died writing a result).
        _bulk.unlink_prefix(f"{self._prefix}{pid}-")
        # Ended: join() returns at once, and lets multiprocessing forget the
        # process (not close(): a caller may hold it; its descriptors close as
        # it is freed).
        worker.proc.join(0)
        running = self._hooks.running(chunk_id) if chunk_id else None
        crashed = not on_purpose and (code != 0 or running is not None)
        if running is not None:
            self._fail_crashed(chunk_id, pid, code, "while running {}")
        elif not worker.ready and code > 0 and not on_purpose:
            self._startup_failed(pid, code)
        self._check_task_channel()
        with self._lock:
            replace = self._replacing()
        new_pid = self._start_worker() if replace else None
        what = f"worker pid {pid} {'died' if crashed else 'ended'} with {describe_exit(code)}"
        if running is not None:
            what += f" while running {running.label}"
        instead = f"; started worker pid {new_pid} in its place" if new_pid else ""
        if crashed:
            _log.warning("%s%s", what, instead)
        else:
            _log.debug("%s%s", what, instead)

    def _check_task_channel(self) -> None:
        """After a worker ended: free the task channel if it died reading it.

        The channel records who holds its lock and which chunk they are
        taking (see :mod:`._pipes`). A holder that has died leaves the lock
        held (CPython gh-96062): it is released for it, and a chunk it had
        taken but not acknowledged fails. A lock held with no holder recorded
        for :data:`STALL` seconds lost its holder in the instant between
        taking the lock and saying so: it is released too (see _watch_stall).
        """
        if not _mp_private.lock_held(self._channel.lock):
            return
        pid, chunk_id = self._channel.holder()
        if pid == 0:
            if self._stall_since is None:
                self._stall_since = time.monotonic()
            return
        with self._lock:
            if pid in self._procs:
                return  # a live reader
            lost = chunk_id in self._unstarted
            self._unstarted.discard(chunk_id)
            self._doomed.discard(chunk_id)
        self._channel.release_for_dead_reader()
        if lost and self._hooks.running(chunk_id) is not None:
            self._fail_crashed(
                chunk_id, pid, None, "while taking {} from the queue, before it started"
            )

    def _watch_stall(self) -> None:
        since = self._stall_since
        if since is None:
            return
        if not _mp_private.lock_held(self._channel.lock) or self._channel.holder()[0] != 0:
            self._stall_since = None
        elif time.monotonic() - since > STALL:
            self._stall_since = None
            self._channel.release_for_dead_reader()

    def _fail_crashed(self, chunk_id: int, pid: int, code: int | None, when: str) -> None:
        chunk = self._hooks.running(chunk_id)
        if chunk is None:
            return
        self._hooks.fail(
            chunk,
            WorkerCrashedError(
                f"worker pid {pid} died with {describe_exit(code)} {when.format(chunk.label)}; "
                "the worker was replaced and the executor is still usable",
                pid=pid,
                exitcode=code,
                task=chunk.label,
            ),
        )

    def _startup_failed(self, pid: int, code: int) -> None:
        """A worker died before it was ready: after a few in a row, give up."""
        self._startup_failures += 1
        if self._startup_failures < max(3, self.workers):
            return
        self._give_up(
            RuntimeError(
                f"worker processes keep exiting during start-up (the last, pid {pid}, with "
                f"{describe_exit(code)}) before they can run a task; under the "
                f"{self.start_method} start method a common cause is a main module without an "
                "'if __name__ == \"__main__\":' guard, or one that fails to import"
            )
        )

    def _give_up(self, failure: BaseException) -> None:
        """The workers cannot run anything: the engine is broken (it then terminates)."""
        self._given_up = True
        self._hooks.broken(failure)

    def _shut_down(self) -> None:
        """On the manager's way out: every worker ends, every pipe closes."""
        self._kill_all()
        for worker in list(self._procs.values()):
            worker.proc.join(KILL_WAIT)
            with self._lock:
                del self._procs[worker.pid]
            self._last_records(worker)
            worker.inbox.close()
        for worker in self._dying:
            self._last_records(worker)
            worker.inbox.close()
        self._dying = []
        self._by_fd.clear()
        self._paused.clear()
        self._logs.close()  # every worker's pipe has been read: hand the rest over
        with self._lock:
            self._unstarted.clear()
            self._doomed.clear()
            self._taken.clear()
            self._deadlines.clear()
        with self._out_lock:
            self._outbox.clear()
            self._channel.close()
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._wake_w = -1
            self._wake_r = -1
        self._lifeline.close()  # the workers have ended; any left would be killed
        # The segments of chunks that never ran, cached arguments, the
        # initializer's: results already received keep their mappings.
        if self._cache is not None:
            self._cache.close()
        self._init_parcels.clear()
        _bulk.unlink_prefix(self._prefix)


#: Process backends not yet terminated.
_live: weakref.WeakSet[Backend] = weakref.WeakSet()


@atexit.register
def _terminate_at_exit() -> None:
    """At interpreter exit, terminate every backend still running.

    Its manager is a daemon thread (a pool never shut down must not keep the
    interpreter from exiting), which stops running as the interpreter
    finalizes: the workers are stopped and reaped before that.
    """
    for backend in list(_live):
        backend.terminate()


def _chunk_id_of(task: tuple[int, bytes, bytes, int]) -> int:
    """The chunk id of a task (see ``send``)."""
    return task[0]
