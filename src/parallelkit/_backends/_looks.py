"""How the process backend looks after its workers: acks, deaths, locks left held.

::

    worker processes
        │  ack pipe: b"S"(pid, chunk id, time) when a chunk is taken (by the channel),
        │            b"R"(pid, 0, time) when start-up is over,
        │            b"I"(error) when the initializer failed
        ▼
    the pool's result thread, whenever the result pipe is empty
    (_wait_for_result, holding the looks weakly while it waits): polls the
    result pipe and every worker's sentinel, at most POLL seconds, and looks:
        - reads the acks that came meanwhile, and remembers which pid holds
          which chunk; the ack's time starts the chunk's clock, so reading it
          late costs nothing. The acks wake it themselves only while they
          come fast (the pipe must not fill) or a chunk waits to be stopped
          as soon as a worker takes it;
        - a worker that exits while holding a chunk: after a short grace (its
          result may still be in the result queue) the chunk fails with
          WorkerCrashedError; mp.Pool starts a replacement worker itself;
        - a worker that died while reading the task channel: its lock is
          released and the chunk it was taking, if any, fails;
        - a worker that died while writing a result: the result queue's lock
          is released; a result it cut short is given up on, and the engine
          marked broken;
        - an initializer failure: the engine is marked broken.
    It looks before a result too when a look is due, so a steady stream of
    results does not hold the looks up.

    join(), in the joining thread, after close() with no job left (the
    result thread ends then): polls the sentinels and looks the same way
    until every worker has ended, so a worker killed while it waits for the
    word to exit cannot leave the others waiting for theirs.

One look at a time (``looking``); after ``stop`` is set none acts any more.
The backend shares ``track`` (which guards ``unstarted`` and ``doomed``) and
``holding`` with these looks: it records there what it sends and stops.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
import sys
import threading
import time
import weakref
from multiprocessing.connection import Connection
from multiprocessing.pool import Pool
from multiprocessing.process import BaseProcess
from typing import Any, Final, final

from .. import _worker
from .._errors import WorkerCrashedError
from .._serialize import exception_from_envelope, loads
from . import _mp_private
from ._base import Chunk, Hooks
from ._pipes import TaskChannel
from ._result_reader import ResultReader, readable

__all__ = ("POLL", "WorkerLooks", "describe_exit")

#: How long a dead worker's chunk waits for a result already in the result queue.
CRASH_GRACE: Final = 0.25
#: Longest wait between looks at the pool's worker list and acks.
POLL: Final = 0.05
#: Bytes of acks found at one look above which acks wake a waiter themselves
#: (at most POLL seconds of them must fit in the pipe, 64 KiB on Linux, 16 KiB
#: at first on macOS; an ack is 29 bytes).
ACK_BUSY: Final = 4096
#: How often a worker that ended but is not reaped yet is looked at.
DYING_POLL: Final = 0.01
#: How often an ended worker's status is read again while it finishes exiting.
EXIT_WAIT: Final = 0.0002
#: Most bytes of acks taken from the pipe at once.
ACK_READ: Final = 1 << 16
#: After a worker died: how long a queue lock may stay held with no live holder
#: recorded before it is released on the dead worker's behalf.
STALL: Final = 0.5
#: How many ended workers' exit codes are remembered (a dead lock holder is
#: looked up here moments after it ended).
_GONE_KEPT: Final = 256
#: How long multiprocessing.Pool is let read a dead worker's status first.
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
class WorkerLooks:
    """The process backend's view of its workers, and what it does when one dies.

    Args:
        hooks: The engine's hooks (held weakly by the backend).
        workers: Number of workers.
        start_method: Their start method (named in start-up failures).
        ack_reader: Read end of the ack pipe.
        channel: The pool's task channel.
    """

    def __init__(
        self,
        hooks: Hooks,
        workers: int,
        start_method: str | None,
        ack_reader: Connection,
        channel: TaskChannel,
    ) -> None:
        self._hooks = hooks
        self.workers = workers
        self.start_method = start_method
        self._ack_reader = ack_reader
        self._ack_rest = b""  # the start of an ack whose rest has not come yet
        self._channel = channel
        self._pool: Pool  # set by attach(), once the pool is made

        self.holding: dict[int, int] = {}  # pid -> id of the chunk it took last
        self._procs: dict[int, BaseProcess] = {}
        self._suspects: list[tuple[float, int, int | None, int]] = []
        # Chunks handed to the pool that no worker has acknowledged yet.
        self.track = threading.Lock()
        self.unstarted: dict[int, Chunk] = {}
        self.doomed: set[int] = set()  # chunks to stop as soon as a worker takes them
        self._killed: set[int] = set()  # pids killed on purpose
        self._gone: dict[int, int | None] = {}  # pid -> exit code, of workers that ended
        self._unrecorded_since: float | None = None  # task lock held, no holder recorded
        self._dying: dict[int, float] = {}  # pid -> when its sentinel fired
        self._ready: set[int] = set()  # pids that finished start-up
        self._startup_failures = 0  # workers in a row that died before they were ready
        # Workers seen to end other than on the word to exit: crashed, or killed
        # on purpose (a time limit, a cancel). Any of them may have left a
        # queue's lock held: from the first one on, the locks are looked at.
        self.deaths = 0
        self.closing = False
        self._result_lock_held_since: float | None = None
        self.stop = threading.Event()
        self._looking = threading.Lock()  # held while looking at the workers
        self._looker: int | None = None  # the thread that holds _looking, while it looks
        self._watched: dict[int, int] = {}  # sentinel -> pid, of workers not seen ending yet
        self._acks_busy = False  # the last look found many acks
        self._to_kill: list[tuple[int, int]] = []  # (pid, chunk id) of doomed chunks taken
        # When the next look is due, even if nothing wakes a waiter: a pool
        # that starts, runs a little and stops within POLL needs none.
        self.due = time.monotonic() + POLL
        self._pool_made = False  # the result thread may wait before the pool is made
        # The pool's result thread looks after the workers whenever it waits
        # for a result. It holds these looks weakly while it waits: looks whose
        # backend was terminated (or closed and never joined) are freed, with
        # the pool and its named semaphores, as soon as the executor is.
        ref: weakref.ref[WorkerLooks] = weakref.ref(self)
        self.results = ResultReader(
            functools.partial(_wait_for_result, ref), functools.partial(_tick, ref)
        )

    def attach(self, pool: Pool) -> None:
        """The pool is made: from now on its workers are looked after."""
        self._pool = pool
        self._pool_made = True

    def kill(self, pid: int) -> None:
        """Kill worker ``pid`` on purpose (its death is no crash)."""
        self._killed.add(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def kill_workers(self, wait: float = 0.0) -> None:
        """Kill every live worker; wait up to ``wait`` seconds for each to end."""
        for proc in _mp_private.workers(self._pool):
            if proc.pid is not None and proc.exitcode is None:
                self.kill(proc.pid)
                if wait:
                    proc.join(wait)

    def forget(self, chunk: Chunk) -> None:
        """Drop the chunk's job from the pool's table: ``join()`` must not wait for its result."""
        handle = chunk.handle
        if handle is not None:
            _mp_private.forget(self._pool, handle)

    def held(self) -> contextlib.AbstractContextManager[object]:
        """Hold :attr:`_looking`, which every look holds.

        Not from the thread that is looking (a callback it ran may terminate),
        nor at interpreter exit, where a thread may be frozen holding the lock.
        """
        if threading.get_ident() == self._looker or sys.is_finalizing():
            return contextlib.nullcontext()
        return self._looking

    def plan(self, fd: int | None) -> tuple[select.poll, float] | None:
        """What to wait for: ``fd`` (if given), workers' exits, maybe acks; None once stopped.

        Returns:
            A poll object and its timeout in seconds.
        """
        with self._looking:
            if self.stop.is_set():
                return None
            poller = select.poll()
            if fd is not None:
                poller.register(fd, select.POLLIN)
            if not self._pool_made:
                return poller, POLL
            for proc in _mp_private.workers(self._pool):
                # A reaped worker stays in the pool's list until the pool's
                # maintenance thread (which stops at close()) removes it.
                pid = proc.pid
                if pid is not None and pid not in self._procs and pid not in self._gone:
                    self._procs[pid] = proc
                    self._watched[proc.sentinel] = pid
            # An ended worker's sentinel stays ready until the worker is reaped:
            # waited on again, it would spin. It is looked at every DYING_POLL
            # once it fired (see _exitcode).
            for sentinel in self._watched:
                poller.register(sentinel, select.POLLIN)
            # Acks are read at every look; they wake a waiter themselves only
            # when they come fast or a chunk must be stopped once taken.
            if self._acks_busy or self.doomed:
                poller.register(self._ack_reader.fileno(), select.POLLIN)
            return poller, max(0.0, self.due - time.monotonic())

    def look(self, events: list[tuple[int, int]], fd: int | None) -> None:
        """Act on what a poll saw besides ``fd``, and on what is due by now."""
        with self._looking:
            if self.stop.is_set() or not self._pool_made:
                return
            self._looker = threading.get_ident()
            try:
                self._look_held(events, fd)
            finally:
                self._looker = None
                self.due = time.monotonic() + (DYING_POLL if self._dying else POLL)

    def _look_held(self, events: list[tuple[int, int]], fd: int | None) -> None:
        reader = self._ack_reader.fileno()
        ready: set[int] = set()
        acks = False
        for event_fd, _ in events:
            if event_fd == fd:
                continue
            if event_fd == reader:
                acks = True
            elif self._watched.pop(event_fd, None) is not None:
                ready.add(event_fd)
        # Every ack written before a death is read before the death is judged.
        if acks or self._ack_reader.poll():
            self._acks_busy = self._read_acks() >= ACK_BUSY
        else:
            self._acks_busy = False
        self._reap(ready)
        for sentinel in [s for s, pid in self._watched.items() if pid not in self._procs]:
            del self._watched[sentinel]  # reaped by the pool before its sentinel was seen
        self._judge_suspects()
        if self._gone:
            self._check_task_channel()
        if self.deaths:
            self._check_result_channel()

    def watch_until_ended(self) -> None:
        """In ``join()``: look after the workers until every one has ended.

        The pool is closed and no job is left; the pool's result thread has
        ended or is about to. A worker killed now while it waits for the word
        to exit keeps the task channel's lock, and the others would never get
        theirs (and ``join()`` would wait for ever): the looks release it.
        Workers that all exit within POLL, as they do on the word, need none.
        """
        if _all_exit_within(_mp_private.workers(self._pool), POLL):
            return
        while not self._all_ended():
            plan = self.plan(None)
            if plan is None:
                return
            poller, timeout = plan
            self.look(poller.poll(1000 * timeout), None)

    def _all_ended(self) -> bool:
        """Closed, and every worker has ended: nothing is left to watch."""
        if not self.closing or self._suspects or _mp_private.maintainer_alive(self._pool):
            return False
        return all(
            proc.pid is None or proc.pid in self._gone for proc in _mp_private.workers(self._pool)
        )

    def give_up_on_cut_result(self) -> None:
        """The result thread stops reading: a dead worker cut a result short."""
        self._hooks.broken(
            RuntimeError(
                "a worker died while writing a result and left the pool's result channel unreadable"
            )
        )
        self.stop.set()

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
                if self.holding.get(pid) == chunk_id:
                    self.kill(pid)

    def _split_acks(self, data: bytes) -> None:
        """Act on each whole ack in ``data``; keep an unfinished last one for later."""
        buffer = self._ack_rest + data
        frame = _worker.FRAME_LENGTH
        start = 0
        while len(buffer) - start >= frame.size:
            (size,) = frame.unpack_from(buffer, start)
            end = start + frame.size + size
            if size < 0 or end > len(buffer):
                break
            self._on_ack(buffer[start + frame.size : end])
            start = end
        self._ack_rest = buffer[start:]

    def _on_ack(self, message: bytes) -> None:
        kind, body = message[:1], message[1:]
        if kind == _worker.ACK_STARTED:
            pid, chunk_id, when = _worker.ACK_FORMAT.unpack(body)
            self.holding[pid] = chunk_id
            with self.track:
                self.unstarted.pop(chunk_id, None)
                doomed = chunk_id in self.doomed
                self.doomed.discard(chunk_id)
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
            self.stop.set()

    def _exitcode(self, pid: int, proc: BaseProcess, ready: set[Any], now: float) -> int | None:
        """The exit code of a worker that ended, or None while it runs.

        ``multiprocessing.Pool`` reaps its workers itself every 0.1 s; reading
        the status here as well would race with it (under forkserver the loser
        reads 255), so the pool's reading is used, and this thread reads the
        status itself only if the pool has not within :data:`REAP_WAIT`, or
        once the pool's maintenance thread has ended (after ``close()``).
        """
        code = _mp_private.reaped_exitcode(proc)
        if code is not None:
            return code
        if proc.sentinel not in ready and pid not in self._dying:
            return None
        first = self._dying.setdefault(pid, now)
        if _mp_private.maintainer_alive(self._pool):
            return proc.exitcode if now - first >= REAP_WAIT else None
        # Nobody else reads it now. The sentinel fires as the worker's files
        # close, a moment before its status can be read: wait that moment
        # here rather than a DYING_POLL.
        deadline = now + DYING_POLL
        code = proc.exitcode
        while code is None and time.monotonic() < deadline:
            time.sleep(EXIT_WAIT)
            code = proc.exitcode
        return code

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
            if exitcode != 0 or pid in self._killed:
                self.deaths += 1
            chunk_id = self.holding.pop(pid, None)
            on_purpose = pid in self._killed or self.stop.is_set()
            if chunk_id is not None and self._hooks.running(chunk_id) is not None:
                self._suspects.append((now + CRASH_GRACE, pid, exitcode, chunk_id))
            elif pid not in self._ready and exitcode > 0 and not on_purpose:
                # Exited on its own before it was ready (a signal is someone's kill).
                self._startup_failed(pid, exitcode)
            self._killed.discard(pid)
            self._ready.discard(pid)
        # A worker that took a chunk but was reaped before it was ever seen here.
        known = set(self._procs)
        for pid, chunk_id in list(self.holding.items()):
            if pid not in known and not _worker.pid_exists(pid):
                del self.holding[pid]
                if self._hooks.running(chunk_id) is not None:
                    self._suspects.append((now + CRASH_GRACE, pid, None, chunk_id))

    def _check_task_channel(self) -> None:
        """After a worker ended: free the task channel if it died reading it.

        The channel records who holds its lock and which chunk they are
        taking (see :mod:`._pipes`). A holder that has died leaves the
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
        with self.track:
            lost = self.unstarted.pop(chunk_id, None) if chunk_id else None
        self._channel.release_for_dead_reader()
        if lost is not None:
            self._fail_crashed(
                lost, pid, self._gone[pid], "while taking {} from the queue, before it started"
            )

    def _check_result_channel(self) -> None:
        """After a worker died or was killed: free the result queue if it held it.

        A worker killed while writing a result keeps the result queue's lock
        (also one killed on purpose, by a time limit or a cancel, in the
        moment between its task's end and its result's):
        every other worker, and the pool's own shutdown, would wait for it
        forever. Live writers hold it for a moment; held for :data:`STALL`
        seconds after a death, it is released on the dead worker's behalf. If
        the dead worker got part of a result out, the pool's result reader
        reads garbage and stops: then nothing can arrive any more, and the
        executor is marked broken instead of waiting forever.
        """
        now = time.monotonic()
        lock = _mp_private.outqueue_lock(self._pool)
        if not _mp_private.lock_held(lock):
            self._result_lock_held_since = None
        elif self._result_lock_held_since is None:
            self._result_lock_held_since = now
        elif now - self._result_lock_held_since > STALL:
            # The dead writer may have cut a result short: the result thread
            # must not wait for the rest of it for ever.
            self.results.suspect = True
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
        self.stop.set()

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
            self.forget(chunk)


def _all_exit_within(procs: list[BaseProcess], timeout: float) -> bool:
    """Whether every one of ``procs`` ends (its sentinel fires) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    waiting: set[int] = set()
    for proc in procs:
        if proc.pid is not None:
            waiting.add(proc.sentinel)
            poller.register(proc.sentinel, select.POLLIN)
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        for fd, _ in poller.poll(1000 * left):
            waiting.discard(fd)
            poller.unregister(fd)
    return True


def _wait_for_result(ref: weakref.ref[WorkerLooks], fd: int, started: bool) -> None:
    """Wait until the result pipe ``fd`` can be read, looking after the workers meanwhile.

    Called by :class:`ResultReader` in the pool's result thread whenever the
    pipe is empty. The looks object is held only while it looks, never while
    the thread waits. Once it is stopped or gone, only the pipe is waited for.

    Raises:
        EOFError: ``started`` (part of a message came) and the rest will not
            come: a worker died while writing it.
    """
    while True:
        looks = ref()
        plan = None if looks is None else looks.plan(fd)
        if looks is None or plan is None:
            if looks is not None:
                looks.results.wait_alone(fd, started)
            else:
                readable(fd, None)
            return
        results = looks.results
        poller, timeout = plan
        del looks
        events = poller.poll(1000 * timeout)
        looks = ref()
        if looks is None:
            continue
        got = any(event_fd == fd for event_fd, _ in events)
        if len(events) > got or time.monotonic() >= looks.due:
            _look_from_result_thread(looks, events, fd)
        if started and results.suspect:
            looks.give_up_on_cut_result()
            raise EOFError("a worker died while writing a result; the rest never came")
        if got:
            return
        del looks


def _tick(ref: weakref.ref[WorkerLooks]) -> None:
    """Before each result: look after the workers if a look is due."""
    looks = ref()
    if looks is not None and time.monotonic() >= looks.due:
        plan = looks.plan(None)
        if plan is not None:
            _look_from_result_thread(looks, plan[0].poll(0), None)


def _look_from_result_thread(
    looks: WorkerLooks, events: list[tuple[int, int]], fd: int | None
) -> None:
    try:
        looks.look(events, fd)
    except ReferenceError:  # the engine is gone: nobody is left to tell
        looks.stop.set()
    except (OSError, EOFError, ValueError):
        if not looks.stop.is_set():
            raise  # else: stopped from a callback the look ran; its pipes were closed
