"""What runs inside a worker: one chunk of calls in, one outcome out.

::

    caller ──(chunk id, fn blob, items blob, mode)──▶ task channel ──▶ worker_main()
                                                                          │
        own pipe ◀── b"R" (pid, 0, t)       once start-up is over ────────┤
        own pipe ◀── b"I" error             if the initializer failed ────┤
        own pipe ◀── b"S" (pid, chunk id, t) as soon as a chunk is taken ─┤
                                                                          ▼
        own pipe ◀── b"D" chunk id + outcome bytes (values, {index: error}, seconds)
        own pipe ◀── b"L" a log record, from any thread, whenever it is logged
                     (with log forwarding on; see :mod:`._logs`)

Each worker writes to a pipe of its own (its *outbox*), in order: the parent
reads there which chunk the worker holds, then that chunk's outcome. Nobody
else writes to it, and a worker that dies half-way through a message damages
no other worker's. Within the worker, every message is written whole under
one lock (:func:`write_message`): log records may come from threads of the
task's own.

The outcome is pickled *here*, in the worker, so that a result or exception
that cannot be pickled (or unpickled) is turned into a
:class:`~parallelkit.RemoteError` on this side and never reaches (and kills)
the process backend's manager thread. The ack lets the parent tell which task a
dead or timed-out worker was holding.

The same :func:`run_items` executes chunks in threads and inline for the
thread and serial backends, with live objects instead of bytes.

Under ``spawn`` a pool's workers are
:class:`~parallelkit._backends._mp_private.SpawnedWorker` processes, which end
as the workers of ``fork`` and the forkserver do: without tearing the
interpreter down. Every worker loads this module at start-up, so it and the
modules it imports leave out ``from __future__ import annotations``.
"""

import _thread
import importlib
import os
import struct
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from itertools import starmap
from multiprocessing.connection import Connection
from typing import Any, Final

from . import _bulk
from ._backends import _modes
from ._lifeline import Lifeline
from ._serialize import (
    ErrorEnvelope,
    dumps,
    envelope_from_exception,
    exception_from_envelope,
)

__all__ = (
    "ACK_INIT_FAILED",
    "ACK_READY",
    "ACK_STARTED",
    "CALL",
    "FRAME_LENGTH",
    "MAP",
    "RESULT",
    "STAR",
    "acknowledge_start",
    "init_process_worker",
    "pack_outcome",
    "pid_exists",
    "run_blob",
    "run_items",
    "unpack_outcome",
    "worker_main",
    "write_message",
)

#: Modes: how one item becomes one call (re-exported from their home, :mod:`._backends._modes`).
MAP: Final = _modes.MAP
STAR: Final = _modes.STAR
CALL: Final = _modes.CALL

ACK_STARTED: Final = b"S"
ACK_READY: Final = b"R"
ACK_INIT_FAILED: Final = b"I"
#: A chunk's outcome: b"D", the chunk id (:data:`CHUNK_ID`), the outcome bytes.
RESULT: Final = b"D"
CHUNK_ID: Final = struct.Struct("!q")
ACK_FORMAT: Final = struct.Struct("!qqd")  # pid, chunk id, time.monotonic()
#: The length ``multiprocessing.connection`` writes before each message
#: (``Connection.send_bytes``): the framing of a worker's outbox.
FRAME_LENGTH: Final = struct.Struct("!i")
#: Acks must stay below PIPE_BUF (4096 on Linux) so concurrent writers never interleave.
_ACK_TEXT_LIMIT: Final = 1200

_ack: Connection | None = None
#: The outbox's descriptor in this worker (-1: not a process worker).
_ack_fd = -1
#: Held while a message is written to the outbox; the thread that holds it.
_out_lock = _thread.allocate_lock()
_out_holder = 0
#: An ack as it travels: the pipe's ``Connection.send_bytes`` framing (length,
#: then the message), built in one piece and written with one ``os.write``.
_ACK_WIRE: Final = struct.Struct(FRAME_LENGTH.format + "c" + ACK_FORMAT.format.lstrip("!"))
_ACK_MESSAGE_SIZE: Final = _ACK_WIRE.size - FRAME_LENGTH.size
#: ``_signal``, the C module under :mod:`signal`, whose wrappers cost more (see
#: :mod:`._signals`, which the workers do not import).
_signal: Any = importlib.import_module("_signal")
_fn_cache: dict[bytes, Callable[..., Any]] = {}
#: Where this process worker places the big buffers of its results, with the
#: threshold (see :mod:`._bulk`); None in threads and on dask.
_results_outbox: "_bulk.Outbox | None" = None
_threshold: "int | None" = None
_FN_CACHE_SIZE: Final = 32


def run_items(
    fn: Callable[..., Any], items: Sequence[Any], mode: int, *, catch_interrupt: bool = True
) -> tuple[list[Any], dict[int, BaseException]]:
    """Call ``fn`` on every item; collect results and per-item exceptions.

    A failing item does not stop the chunk: the items after it still run,
    exactly once each. The fast path is a C-level ``map``; after an exception
    the loop resumes from the next item.

    Args:
        fn: The task function.
        items: The chunk.
        mode: :data:`MAP`, :data:`STAR` or :data:`CALL`.
        catch_interrupt: When False, ``KeyboardInterrupt`` propagates (the
            serial backend runs in the caller's thread, where Ctrl-C must work).

    Returns:
        ``(values, errors)``: ``values[i]`` is the i-th result (None where it
        failed) and ``errors`` maps failed positions to their exception.
    """
    values: list[Any] = []
    errors: dict[int, BaseException] = {}
    n = len(items)
    start = 0
    while start < n:
        rest = items[start:] if start else items
        try:
            if mode == MAP:
                values.extend(map(fn, rest))
            elif mode == STAR:
                values.extend(starmap(fn, rest))
            else:
                values.extend(fn(*args, **kwargs) for args, kwargs in rest)
        except BaseException as exc:
            if not catch_interrupt and isinstance(exc, KeyboardInterrupt):
                raise
            errors[len(values)] = _from_the_task(exc)
            values.append(None)
        start = len(values)
    try:
        return values, errors
    finally:
        del errors  # the task's frames keep this one (see _from_the_task)


def _from_the_task(exc: BaseException) -> BaseException:
    """Start ``exc``'s traceback at the task, past this module's frames.

    Its first frame would be :func:`run_items`, whose ``errors`` holds the
    exception, which in the thread and serial backends makes a cycle that
    keeps every frame the exception is raised through later (the caller's
    executor, its pool and semaphores among them) alive until the garbage
    collector runs. The task's own frames stay; they keep :func:`run_items`'
    frame as their caller's, which therefore drops ``errors`` as it returns.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return exc.with_traceback(tb)


# -- process workers ----------------------------------------------------------------------


def _watch_parent(owner: int) -> None:
    """End this worker soon after its owner dies, where no lifeline can (not Linux).

    The owner is the process that created the executor; the worker's own
    parent may be a forkserver, which exits when the owner does.
    """
    parent = os.getppid()
    while True:
        time.sleep(0.25)
        if os.getppid() != parent or not pid_exists(owner):
            os._exit(1)


def pid_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - pid reused by another user
        return False
    return True


def init_process_worker(
    ack: Connection,
    owner: int,
    lifeline: Lifeline,
    initializer: bytes | None,
    initargs: bytes | None,
    log_levels: dict[str, int] | None = None,
    bulk: tuple[int | None, str] | None = None,
) -> None:
    """Initializer of every process worker (runs before its first task).

    Args:
        ack: Write end of this worker's outbox, where acks go.
        owner: The pid of the process that owns the executor; when it is
            gone, the worker exits.
        lifeline: The owner's lifeline (see :mod:`parallelkit._lifeline`).
        initializer: The user's initializer, serialized, or None.
        initargs: Its arguments, serialized, or None.
        log_levels: The parent's logger levels when log records go to the
            parent (see :mod:`parallelkit._logs`), else None.
        bulk: The ``shared_threshold`` and the name prefix of this
            executor's shared-memory segments (see :mod:`parallelkit._bulk`).
    """
    global _ack, _ack_fd, _out_lock, _out_holder, _results_outbox, _threshold
    _ack = ack
    _ack_fd = ack.fileno()
    _out_lock = _thread.allocate_lock()  # not one a thread of the parent held at a fork
    _out_holder = 0
    if bulk is not None and bulk[0] is not None:
        _threshold = bulk[0]
        _results_outbox = _bulk.Outbox(bulk[1], _bulk.ONCE)
    if log_levels is not None:
        from . import _logs

        _logs.forward_to(write_message, log_levels)
    # The parent owns Ctrl-C: it stops the workers itself.
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    if not lifeline.arm():
        # A plain thread: threading.Thread.start() would wait for it to run
        # before this worker may take its first task.
        _thread.start_new_thread(_watch_parent, (owner,))
    try:
        if initializer is not None:
            fn = _bulk.loads(initializer)
            args = _bulk.loads(initargs) if initargs is not None else ()
            fn(*args)
    except BaseException as exc:  # reported, then this worker ends
        envelope = envelope_from_exception(exc, limit=_ACK_TEXT_LIMIT)
        try:
            write_message(ACK_INIT_FAILED + dumps((os.getpid(), envelope)))
        finally:
            sys.stderr.flush()
            os._exit(3)
    _send_ack(ACK_READY, 0)


def worker_main(
    channel: Any,
    outbox: Connection,
    owner: int,
    lifeline: Lifeline,
    initializer: bytes | None,
    initargs: bytes | None,
    max_tasks: int | None,
    log_levels: dict[str, int] | None = None,
    bulk: tuple[int | None, str] | None = None,
) -> None:
    """The life of a process worker: start up, then take chunks until told to end.

    Args:
        channel: The task channel (:class:`~parallelkit._backends._pipes.TaskChannel`);
            its ``get()`` acks each chunk it hands out.
        outbox: Write end of this worker's own pipe to the parent.
        owner: The pid of the process that owns the executor.
        lifeline: The owner's lifeline.
        initializer: The user's initializer, serialized, or None.
        initargs: Its arguments, serialized, or None.
        max_tasks: End after this many chunks (the parent starts a new
            worker in its place), or None.
        log_levels: The parent's logger levels when log records go to the
            parent, else None.
        bulk: The shared-memory threshold and segment prefix (see
            :func:`init_process_worker`).

    A None task is the word to end; so is the end of the task pipe (its
    writer is gone).
    """
    init_process_worker(outbox, owner, lifeline, initializer, initargs, log_levels, bulk)
    get = channel.get
    send = outbox.send_bytes
    left = -1 if max_tasks is None else max_tasks
    while left:
        try:
            task = get()
        except (EOFError, OSError):
            return
        if task is None:
            return
        chunk_id, fn_blob, items_blob, mode = task
        del task
        outcome = run_blob(chunk_id, fn_blob, items_blob, mode)
        # Connection.send_bytes, which a long message leaves in two writes:
        # the parent reads a message cut short by a death as such.
        _with_outbox(send, RESULT + CHUNK_ID.pack(chunk_id) + outcome)
        del outcome, fn_blob, items_blob
        left -= 1


def acknowledge_start(chunk_id: int) -> None:
    """Tell the parent that this worker has taken chunk ``chunk_id``."""
    if _ack_fd >= 0:
        _send_ack(ACK_STARTED, chunk_id)


def _send_ack(kind: bytes, chunk_id: int) -> None:
    # One write below the pipe's atomic size, built in one piece.
    # (Not Connection.send_bytes: its Python layers cost more than the write, and
    # in a freshly forked worker each of them is a page to copy.)
    _with_outbox(
        os.write,
        _ack_fd,
        _ACK_WIRE.pack(_ACK_MESSAGE_SIZE, kind, os.getpid(), chunk_id, time.monotonic()),
    )


def write_message(message: bytes) -> bool:
    """Write one message to this worker's outbox (``Connection.send_bytes`` framing).

    The write is over when this returns: the message is in the pipe, and
    survives the worker being killed the moment after.

    Args:
        message: The message (its first byte says what it is).

    Returns:
        False, writing nothing, when this thread is already writing to the
        outbox (a log record from a signal handler that interrupted it).
    """
    assert _ack is not None
    return _with_outbox(_ack.send_bytes, message)


def _with_outbox(write: Callable[..., object], *args: Any) -> bool:
    """Call ``write(*args)``, which writes one message to the outbox, under its lock."""
    global _out_holder
    me = _thread.get_ident()
    if _out_holder == me:
        return False
    with _out_lock:
        _out_holder = me
        try:
            write(*args)
        finally:
            _out_holder = 0
    return True


def _load_fn(blob: bytes) -> Callable[..., Any]:
    fn = _fn_cache.get(blob)
    if fn is None:
        fn = _bulk.loads(blob)
        if len(_fn_cache) >= _FN_CACHE_SIZE:
            _fn_cache.clear()
        _fn_cache[blob] = fn
    return fn  # pyright: ignore[reportUnknownVariableType]


def pack_outcome(values: list[Any], errors: dict[int, BaseException], elapsed: float) -> bytes:
    """Serialize a chunk's outcome; anything that cannot cross becomes an error.

    Args:
        values: Results (None at failed positions).
        errors: Exceptions by position.
        elapsed: Seconds the chunk took.

    Returns:
        ``dumps((values, {index: ErrorEnvelope}, elapsed))``.
    """
    envelopes: dict[int, ErrorEnvelope] = {i: envelope_from_exception(e) for i, e in errors.items()}
    try:
        return _bulk.dumps((values, envelopes, elapsed), _threshold, _results_outbox, plain=dumps)
    except BaseException:
        pass
    for i, value in enumerate(values):
        if i in envelopes:
            continue
        try:
            dumps(value)
        except BaseException as exc:
            problem = (
                f"the task's result of type {type(value).__qualname__} cannot be pickled: {exc}"
            )
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            envelopes[i] = (None, "parallelkit.UnpicklableResult", problem, text)
            values[i] = None
    return _bulk.dumps((values, envelopes, elapsed), _threshold, _results_outbox, plain=dumps)


def run_blob(chunk_id: int, fn_blob: bytes, items_blob: bytes, mode: int) -> bytes:
    """Run one chunk from serialized parts; return its serialized outcome.

    This is what a process worker runs for each chunk it takes
    (and that the thread backend runs when ``check_pickle`` is on).

    Args:
        chunk_id: The engine's id of the chunk (the task channel reads it
            from the task and acks it; unused here).
        fn_blob: The serialized function.
        items_blob: The serialized list of items.
        mode: :data:`MAP`, :data:`STAR` or :data:`CALL`.

    Returns:
        The outcome, as produced by :func:`pack_outcome`.
    """
    started = time.perf_counter()
    try:
        fn = _load_fn(fn_blob)
        items: list[Any] = _bulk.loads(items_blob)
    except BaseException as exc:
        envelope = envelope_from_exception(exc)
        count = _count_items(items_blob)
        return dumps(([None] * count, dict.fromkeys(range(count), envelope), 0.0))
    values, errors = run_items(fn, items, mode)
    return pack_outcome(values, errors, time.perf_counter() - started)


def _count_items(items_blob: bytes) -> int:
    try:
        return len(_bulk.loads(items_blob))
    except BaseException:
        return 1


def unpack_outcome(
    blob: bytes | memoryview, count: int
) -> tuple[list[Any], dict[int, BaseException], float]:
    """Read an outcome made by :func:`pack_outcome` (in the parent).

    Args:
        blob: The outcome bytes.
        count: Number of items in the chunk (used if the outcome cannot be read).

    Returns:
        ``(values, errors, elapsed)`` with errors rebuilt as exceptions.
    """
    try:
        values, envelopes, elapsed = _bulk.loads(blob)
    except BaseException as exc:
        envelope = envelope_from_exception(exc)
        failure = exception_from_envelope((None, envelope[1], envelope[2], envelope[3]))
        return [None] * count, dict.fromkeys(range(count), failure), 0.0
    errors = {i: exception_from_envelope(env) for i, env in envelopes.items()}
    return values, errors, elapsed
