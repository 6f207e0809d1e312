"""The dask backend: each chunk is one dask task on a ``dask.distributed`` cluster.

::

    engine ── send(chunk) ──▶ client.submit(run_task, ChunkTask(id, key, fn, items,
              (caller's thread)       mode, topic), key="parallelkit-<token>-<id>",
                                      pure=False, retries=0)
                                      │
                                      ▼ scheduler: in this process for a cluster of our own
                                        (LocalCluster on 127.0.0.1), else at ``address``
                                      │
                                      ▼ a dask worker: run_task()
                                          worker.log_event(topic, (key, pid, worker address))
                                          then run_blob(): the outcome, pickled, as bytes
                                      │
    engine ◀── hooks.started ──────── client.subscribe_topic(topic) (the client's event loop)
    engine ◀── hooks.complete / fail ─ collector thread ("parallelkit-dask-results"):
                                       _dask.as_completed(with_results=True), which
                                       send() feeds with .add(future); outcome bytes
                                       → values and errors; KilledWorker → WorkerCrashedError
    abort(chunk) ──▶ stopper thread ("parallelkit-dask-stop"), on the worker that runs it:
                     client.run(hold_chunks), cancel the future, then
                     client.run(end_worker_process): its nanny starts a new one

Chunking, windows, retries and errors are the engine's, as on every backend:
dask only runs chunks. The chunk travels as one :class:`ChunkTask` (its items
pickled once, in the caller's thread), never as a list, which dask would walk
item by item; the outcome comes back as bytes made by the worker, so a result
that cannot be pickled becomes a :class:`~parallelkit.RemoteError` there.

A dask task that is running cannot be stopped: a ``task_timeout`` or
``cancel(kill=True)`` kills the worker process that runs it (SIGKILL, as on
the process backend), and its nanny starts a new one (a second or more). From
the moment the stopper decides until the kill, the worker holds every chunk it
is given instead of starting it (:func:`hold_chunks`), so no other chunk dies
with it: those held, never started, come back as lost with their worker and are
sent again here once, under a new key (the scheduler keeps the old key's
error). A worker that dies is not replaced by a retry of its chunk: the cluster
of our own runs with ``distributed.scheduler.allowed-failures`` at 0, so the
chunk fails at once with ``KilledWorker``, read here as
:class:`~parallelkit.WorkerCrashedError`.

This module is imported only when the dask backend is chosen; workers import
it to unpickle :class:`ChunkTask`, so parallelkit must be installed on them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, cast, final

import dask.config
import dask.utils
import distributed

from .. import _worker
from .._errors import ConfigError, RemoteError, WorkerCrashedError
from .._serialize import dumps, dumps_function, loads
from ._base import BackendOptions, Chunk, Hooks

if TYPE_CHECKING:
    from .._config import Settings

__all__ = (
    "Backend",
    "ChunkTask",
    "Initializer",
    "end_worker_process",
    "hold_chunks",
    "loopback_cluster",
    "run_task",
)

_log = logging.getLogger("parallelkit")

#: distributed and dask, where their functions are not typed: the one untyped boundary.
_dask: Any = distributed
_dask_config: Any = dask.config
_dask_utils: Any = dask.utils


def loopback_cluster(workers: int, *, silence_logs: int) -> Any:
    """A ``LocalCluster`` as parallelkit starts one: loopback only, no retries, no dashboard.

    Worker processes (``processes=True``) of one thread each listen on
    127.0.0.1; the scheduler fails a task whose worker died at once
    (``allowed_failures=0``) instead of running it again; the dashboard is off
    and its health routes take a free port of 127.0.0.1, not 8787.

    Args:
        workers: How many workers.
        silence_logs: The level below which distributed's own log records are dropped.

    Returns:
        The running ``distributed.LocalCluster``.
    """
    return _dask.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={
            "allowed_failures": 0,
            "dashboard": False,
            "dashboard_address": "127.0.0.1:0",
        },
        silence_logs=silence_logs,
    )


#: How long closing waits for the cluster of our own, and for a worker restart.
CLOSE_TIMEOUT: Final = 30.0
#: The longest a worker about to be restarted holds the chunks it is given.
RESTART_HOLD: Final = CLOSE_TIMEOUT + 10.0
#: Chunks handed to the cluster per worker thread: one running, the next ones
#: already at the worker or the scheduler, so no worker waits for a round trip.
WINDOW_PER_WORKER: Final = 4


@final
class ChunkTask:
    """One chunk as a dask task's only argument: an object, which dask does not walk.

    Attributes:
        chunk_id: The engine's id of the chunk.
        key: The dask key it runs under (a chunk sent again has a new one).
        fn: The task function, serialized.
        items: The chunk's items, serialized (one list).
        mode: How an item becomes a call (see :mod:`parallelkit._backends._modes`).
        topic: The event topic where the worker tells that it started the chunk.
    """

    __slots__ = ("chunk_id", "fn", "items", "key", "mode", "topic")

    def __init__(
        self, chunk_id: int, key: str, fn: bytes, items: bytes, mode: int, topic: str
    ) -> None:
        self.chunk_id = chunk_id
        self.key = key
        self.fn = fn
        self.items = items
        self.mode = mode
        self.topic = topic

    def __reduce__(self) -> tuple[object, ...]:
        return (
            ChunkTask,
            (self.chunk_id, self.key, self.fn, self.items, self.mode, self.topic),
        )


#: In a dask worker: until when (``time.monotonic()``) chunks wait instead of
#: starting, because the worker is about to be restarted (see :func:`hold_chunks`).
_hold_until = 0.0


def hold_chunks(seconds: float) -> None:
    """In a dask worker: make chunks that arrive wait, for at most ``seconds``.

    Called (through ``client.run``) on a worker just before it is restarted to
    stop a chunk: between the chunk's cancellation and the restart, the
    scheduler may hand that worker another chunk, which would start and then
    die with the worker. Held, it never starts: the restart ends it unstarted,
    and it is sent again. ``hold_chunks(0)`` lifts the hold (a worker that
    could not be restarted goes on).
    """
    global _hold_until
    _hold_until = time.monotonic() + seconds


def end_worker_process(dask_worker: Any) -> bool:
    """In a dask worker: kill its own process, for its nanny to start a new one.

    A worker without a nanny would not come back: it is left running (its
    chunk runs on to its end, its result discarded) and its hold is lifted.

    Args:
        dask_worker: The worker (``client.run`` passes it by this name).

    Returns:
        False when the worker has no nanny; a killed worker returns nothing.
    """
    if dask_worker.nanny is None:
        hold_chunks(0.0)
        return False
    os.kill(os.getpid(), signal.SIGKILL)
    return True  # pragma: no cover - the process is gone


def run_task(task: ChunkTask) -> bytes:
    """Run one chunk on a dask worker (the function every dask task of ours calls).

    Args:
        task: The chunk.

    Returns:
        Its outcome, pickled (see :func:`parallelkit._worker.pack_outcome`).
    """
    held = _hold_until - time.monotonic()
    if held > 0:  # this worker is about to be restarted: wait for it, do not start
        time.sleep(held)
    worker: Any = _dask.get_worker()
    worker.log_event(task.topic, (task.key, os.getpid(), str(worker.address)))
    return _worker.run_blob(task.chunk_id, task.fn, task.items, task.mode)


@final
class Initializer(distributed.WorkerPlugin):
    """A worker plugin that runs the user's initializer once in each dask worker.

    Workers that join the cluster later, or are restarted, run it too.

    Args:
        fn: The initializer, serialized.
        args: Its arguments, serialized.
    """

    def __init__(self, fn: bytes, args: bytes) -> None:
        self.fn = fn
        self.args = args

    def setup(self, worker: Any) -> None:
        """Run the initializer (called by the worker, once)."""
        loads(self.fn)(*loads(self.args))


@final
class Backend:
    """Runs chunks as dask tasks on a cluster: its own, one at an address, or a client's."""

    start_method: str | None = None
    can_kill = True
    timeout_note = ""

    def __init__(self, hooks: Hooks, settings: Settings, options: BackendOptions) -> None:
        if options.max_tasks_per_worker is not None:
            raise ConfigError(
                "max_tasks_per_worker is not supported on the dask backend: dask workers "
                "are recycled by the cluster itself; start them with "
                "'dask worker --lifetime 1h --lifetime-restart' (the "
                "distributed.worker.lifetime settings)"
            )
        self._hooks: Hooks = weakref.proxy(hooks)  # the engine owns this backend: no cycle
        self._token = uuid.uuid4().hex[:12]
        self._topic = f"parallelkit-{self._token}"
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        #: Chunks sent and not yet reported, by dask key.
        self._chunks: dict[str, Chunk] = {}
        #: The worker address each running chunk was started on, by chunk id.
        self._where: dict[int, str] = {}
        #: Chunks sent again because their worker went away before they started.
        self._resent: set[int] = set()
        self._pending = 0  # futures given to the collector and not yet read back
        self._stopping = False
        self._shut = False
        self._stoppers: list[threading.Thread] = []
        self._plugin: str | None = None
        self._cluster: Any = None
        self._own_client = options.client is None
        client: Any = options.client
        if client is None and settings.address is not None:
            try:
                client = _dask.Client(settings.address, set_as_default=False)
            except OSError as exc:
                raise OSError(
                    f"cannot reach the dask scheduler at {settings.address!r}: {exc}; "
                    "check the address and that the scheduler is running"
                ) from exc
        elif client is None:
            # logging.ERROR: a killed worker is our error to report.
            self._cluster = loopback_cluster(settings.workers, silence_logs=40)
            try:
                client = _dask.Client(self._cluster, set_as_default=False)
            except BaseException:
                self._cluster.close(timeout=CLOSE_TIMEOUT)
                raise
        self._client: Any = client
        #: Channels that ex.Queue() & co. make live on this cluster.
        self.channel_address: str | None = str(client.scheduler.address)
        if self._cluster is not None:
            self.workers = settings.workers
        else:
            threads: dict[str, int] = client.nthreads()
            self.workers = max(1, sum(threads.values()))
        self.window = WINDOW_PER_WORKER * self.workers
        self._check_pickle = settings.check_pickle
        client.subscribe_topic(self._topic, self._on_started)
        self._results: Any = _dask.as_completed(
            loop=client.loop, with_results=True, raise_errors=False
        )
        self._collector = threading.Thread(
            target=self._collect, name="parallelkit-dask-results", daemon=True
        )
        self._collector.start()
        if options.initializer is not None:
            self._plugin = f"parallelkit-init-{self._token}"
            plugin = Initializer(
                dumps_function(options.initializer), dumps(tuple(options.initargs))
            )
            try:
                client.register_plugin(plugin, name=self._plugin)
            except Exception as exc:  # the initializer raised in a worker
                # Take it off the scheduler at once: left there, it would run
                # (and fail) in every worker that starts later, and a nanny
                # whose new worker fails to start closes for good.
                with contextlib.suppress(Exception):
                    client.unregister_worker_plugin(self._plugin)
                self._plugin = None
                hooks.broken(exc)

    # -- the protocol -----------------------------------------------------------------

    def prepare_fn(self, fn: Callable[..., Any]) -> object:
        return dumps_function(fn)

    def pack_items(self, items: list[Any]) -> object:
        return dumps(items)

    def send(self, chunk: Chunk) -> None:
        assert isinstance(chunk.fn, bytes) and isinstance(chunk.payload, bytes)
        # A chunk sent again takes a new key: the scheduler keeps the old one's error.
        key = f"{self._topic}-{chunk.id}" + ("-again" if chunk.id in self._resent else "")
        task = ChunkTask(chunk.id, key, chunk.fn, chunk.payload, chunk.mode, self._topic)
        with self._lock:
            self._chunks[key] = chunk
            self._pending += 1
        future: Any = self._client.submit(run_task, task, key=key, pure=False, retries=0)
        chunk.handle = future
        self._results.add(future)
        with self._lock:
            self._wake.notify()

    def keep_time(self, chunk: Chunk, deadline: float) -> bool:
        """No clock of its own: the engine keeps the time from the worker's start event."""
        return False

    def abort(self, chunk: Chunk) -> None:
        """Stop a chunk the engine gave up on: restart the worker that runs it."""
        with self._lock:
            self._chunks.pop(getattr(chunk.handle, "key", ""), None)
            where = self._where.pop(chunk.id, None)
            if self._shut:
                return
            stopper = threading.Thread(
                target=self._stop_chunk,
                args=(chunk.handle, where),
                name="parallelkit-dask-stop",
                daemon=True,
            )
            self._stoppers = [t for t in self._stoppers if t.is_alive()]
            self._stoppers.append(stopper)
        stopper.start()

    def close(self) -> None:
        """Accept no more chunks: the collector lets go of the cluster once the last ends."""
        with self._lock:
            self._stopping = True
            self._wake.notify_all()

    def join(self) -> None:
        """Wait until the cluster is let go of (after :meth:`close`)."""
        self.close()
        if self._collector is not threading.current_thread():
            self._collector.join()

    def terminate(self) -> None:
        """Drop every chunk; restart the workers running ours on a shared cluster."""
        self._shut_down(cancel=True)

    # -- inside --------------------------------------------------------------------------

    def _on_started(self, event: tuple[float, Any]) -> None:
        """A worker took a chunk (the client's event loop calls this)."""
        key, pid, address = event[1]
        with self._lock:
            chunk = self._chunks.get(key)
            if chunk is None:
                return  # it ended before the event came
            self._where[chunk.id] = address
        with contextlib.suppress(ReferenceError):
            self._hooks.started(chunk.id, pid)

    def _collect(self) -> None:
        """Read outcomes as their futures finish, until the backend shuts down."""
        results = self._results
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._wake.wait()
                if self._stopping and not self._pending:
                    break
            try:
                future, result = next(results)
            except StopIteration:  # the futures given so far are read: wait for more
                continue
            with self._lock:
                self._pending -= 1
                chunk = self._chunks.pop(future.key, None)
                if chunk is not None:
                    self._where.pop(chunk.id, None)
            if chunk is None:  # aborted, or dropped by terminate()
                continue
            try:
                self._report(chunk, future.status, result)
            except ReferenceError:  # the engine is gone: nobody to tell
                pass
            finally:
                del chunk, future, result
        self._shut_down(cancel=False)

    def _report(self, chunk: Chunk, status: str, result: object) -> None:
        if status == "error" and isinstance(result, tuple):
            # as_completed(raise_errors=False) gives an error as (type, exception, traceback)
            result = cast("tuple[object, ...]", result)[1]
        if status == "lost":
            # Its worker died holding the outcome before it was fetched; the
            # scheduler would run the chunk again, which is not ours to allow.
            future: Any = chunk.handle
            with contextlib.suppress(Exception):
                future.cancel()
            crashed = self._crashed(chunk, None)
            if self._hooks.fail(chunk, crashed):
                _log.warning("%s", crashed)
        elif status == "finished" and isinstance(result, bytes):
            self._hooks.complete(chunk, *_worker.unpack_outcome(result, chunk.count))
        elif isinstance(result, BaseException) and isinstance(result, _dask.KilledWorker):
            if chunk.started is None and chunk.id not in self._resent and not self._stopping:
                # It waited on a worker that died or was restarted (to stop another
                # chunk) and never started: it has not run, so it runs now, once.
                self._resent.add(chunk.id)
                self.send(chunk)
                return
            crashed = self._crashed(chunk, result)
            if self._hooks.fail(chunk, crashed):
                _log.warning("%s", crashed)
        elif isinstance(result, BaseException):
            self._hooks.fail(
                chunk,
                RemoteError(
                    f"{type(result).__module__}.{type(result).__qualname__}",
                    f"the dask cluster could not run {chunk.label}: {result}",
                    "",
                ),
            )
        else:
            self._hooks.fail(
                chunk,
                RemoteError(
                    "distributed.Future",
                    f"the dask cluster gave no result for {chunk.label} (status {status!r})",
                    "",
                ),
            )

    def _crashed(self, chunk: Chunk, error: BaseException | None) -> WorkerCrashedError:
        """The error for a chunk whose worker died.

        ``error`` is dask's ``KilledWorker``, or None when the worker died
        holding the chunk's outcome.
        """
        pid = chunk.pid if chunk.pid is not None else -1
        worker: Any = getattr(error, "last_worker", None)
        address = getattr(worker, "address", None)
        who = (f"dask worker {address}" if address else "a dask worker") + (
            f" (pid {pid})" if pid >= 0 else ""
        )
        what = (
            f"died while running {chunk.label}"
            if error is not None
            else f"died holding the outcome of {chunk.label} before it was fetched"
        )
        crashed = WorkerCrashedError(
            f"{who} {what}; it is not run again (allowed-failures 0)",
            pid=pid,
            exitcode=None,
            task=chunk.label,
        )
        crashed.__cause__ = error
        return crashed

    def _stop_chunk(self, future: Any, where: str | None) -> None:
        """Cancel a chunk's future and restart the worker running it (a stopper thread)."""
        client = self._client
        if where is None:
            with contextlib.suppress(Exception):
                processing: dict[str, Any] = client.processing()
                where = next((w for w, keys in processing.items() if future.key in keys), None)
        if where is None:  # not started anywhere: cancelling is enough
            with contextlib.suppress(Exception):
                future.cancel()
            return
        self._restart([where], [future])
        if self._cluster is not None:
            self._heal_later()

    def _heal_later(self) -> None:
        """Have the cluster of our own start again a worker its nanny lost.

        ``LocalCluster`` closes the nanny of a worker that has not come back
        ``distributed.deploy.lost-worker-timeout`` after it left (15 s by
        default). A killed worker that restarts slowly on a loaded machine,
        or a kill that falls in that window of an earlier one, would then be
        gone for good, and with the last one every chunk would wait for
        ever. Just after that window, ``scale`` to the executor's size starts
        what is missing (it does nothing when every worker is there).
        """
        cluster = self._cluster
        workers = self.workers
        delay = _dask_utils.parse_timedelta(
            _dask_config.get("distributed.deploy.lost-worker-timeout")
        )

        def heal() -> None:
            if cluster.status.name == "running":
                cluster.scale(workers)

        with contextlib.suppress(Exception):  # the cluster is closing
            cluster.loop.add_callback(cluster.loop.call_later, delay + 0.5, heal)

    def _restart(self, workers: list[str], futures: list[Any]) -> None:
        """Restart ``workers`` to stop ``futures`` running there, starting no other chunk.

        Three steps, in this order: the workers hold any chunk they are given
        from now on; the futures are cancelled (so that no scheduler runs them
        again elsewhere); the workers' processes are killed, and their nannies
        start new ones. The kill is ours, not ``client.restart_workers``: that
        one waits for the scheduler's worker count to come back to what it was,
        which a worker still leaving from an earlier restart can keep from
        happening for its whole timeout.
        """
        client = self._client
        with contextlib.suppress(Exception):
            client.run(hold_chunks, RESTART_HOLD, workers=workers, on_error="ignore")
        with contextlib.suppress(Exception):
            client.cancel(futures, force=True)
        kept: dict[str, object] = {}
        with contextlib.suppress(Exception):
            # A killed worker answers nothing; one without a nanny answers False.
            kept = client.run(end_worker_process, workers=workers, on_error="ignore")
        killed = set(workers).difference(kept)
        deadline = time.monotonic() + CLOSE_TIMEOUT
        while killed and time.monotonic() < deadline:
            # Return once the scheduler has let the killed workers go: a chunk
            # sent from now on goes to a live worker, or waits for the new one.
            try:
                killed.intersection_update(client.nthreads())
            except Exception:  # the scheduler cannot be asked: nothing to wait for
                break
            if killed:
                time.sleep(0.02)

    def _shut_down(self, *, cancel: bool) -> None:
        with self._lock:
            if self._shut:
                return
            self._shut = True
            self._stopping = True
            left = list(self._chunks.values())
            busy = set(self._where.values())
            self._chunks.clear()
            self._where.clear()
            self._wake.notify_all()
            stoppers = list(self._stoppers)
        client = self._client
        if cancel and left:
            futures = [c.handle for c in left]
            if self._cluster is None and busy:  # a shared cluster: stop our running tasks
                self._restart(sorted(busy), futures)
            else:
                with contextlib.suppress(Exception):
                    client.cancel(futures, force=True)
        for stopper in stoppers:
            stopper.join(CLOSE_TIMEOUT)
        self._results.clear()
        with self._lock:
            self._pending = 0
            self._wake.notify_all()
        if self._collector is not threading.current_thread():
            self._collector.join(CLOSE_TIMEOUT)
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(self._topic)
        if self._plugin is not None and self._cluster is None:  # not ours to close
            with contextlib.suppress(Exception):
                client.unregister_worker_plugin(self._plugin)
        if self._own_client:
            client.close(timeout=CLOSE_TIMEOUT)
        if self._cluster is not None:
            # The channels made on this cluster (ex.Queue() & co.) end with it.
            from .._channels._cluster import disconnect

            if self.channel_address is not None:
                disconnect(self.channel_address)
            self._cluster.close(timeout=CLOSE_TIMEOUT)
