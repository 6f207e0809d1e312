"""Log records of process workers, carried to the parent's handlers.

::

    worker process                                    parent (the process backend)
    logger.warning("...") in a task
        │ root's only handler: PipeHandler, a QueueHandler whose prepare() formats
        │ the message (and any traceback) into the record and drops what may not
        │ pickle; enqueue() writes it to the worker's own pipe, under the lock
        │ every outbox write takes, before logger.warning() returns
        ▼
    the worker's outbox ── b"L" + pickled record attributes ──▶ manager thread
                                                                  │ put(): no unpickling,
                                                                  │ no handler runs here
                                                                  ▼
                                           LogListener: a deque, and a thread
                                           ("parallelkit-logging") started on the
                                           first record, which hands each one to
                                           logging.getLogger(record.name).handle()

The record is in the pipe before the logging call returns, so a worker
killed the moment after it logged loses nothing. The parent's handlers run
in the listener's thread: a slow one never holds up the manager, which
detects crashes and time limits. Once :data:`LIMIT` records wait, the
manager stops reading the pipes of the workers that sent them until the
listener has caught up: those workers then wait in their logging calls (the
pipe is full), so memory stays bounded.

A worker's loggers are set, at start-up, to the levels the parent's loggers
had when the pool started, and lose the handlers they inherited (under
fork): each record is printed once, by the parent. Workers load this module
only when forwarding is on; it leaves out ``from __future__ import
annotations`` as every module a worker loads does.
"""

import logging
import logging.handlers
import pickle
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Final

__all__ = ("LIMIT", "LOG_RECORD", "LogListener", "forward_to", "level_snapshot")

#: The first byte of a forwarded record in a worker's outbox.
LOG_RECORD: Final = b"L"
#: Records waiting for the parent's handlers before the manager stops reading
#: the pipes that bring more.
LIMIT: Final = 1000
#: How long stopping the listener waits for the parent's handlers to take the
#: records still waiting.
DRAIN_WAIT: Final = 5.0

_log = logging.getLogger("parallelkit")


def level_snapshot() -> dict[str, int]:
    """The levels set on this process's loggers ("" is the root), for the workers.

    Returns:
        Logger name -> level, for the root and every logger whose level is set.
    """
    levels = {"": logging.getLogger().level}
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    return levels


class PipeHandler(logging.handlers.QueueHandler):
    """A worker's handler: each record goes up the worker's own pipe, synchronously.

    Args:
        write: Writes one whole message to the worker's outbox (returns
            False when it cannot, from inside another write of this thread).
    """

    def __init__(self, write: Callable[[bytes], bool]) -> None:
        super().__init__(queue.SimpleQueue())  # unused: enqueue() writes to the pipe
        self._write = write

    def enqueue(self, record: logging.LogRecord) -> None:
        """Write the prepared record to the pipe (its message already formatted).

        Args:
            record: The record :meth:`prepare` made.
        """
        state = dict(record.__dict__)
        try:
            blob = pickle.dumps(state, pickle.HIGHEST_PROTOCOL)
        except Exception:  # an extra= attribute that does not pickle: send its repr
            for key, value in list(state.items()):
                try:
                    pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
                except Exception:
                    state[key] = repr(value)
            blob = pickle.dumps(state, pickle.HIGHEST_PROTOCOL)
        if not self._write(LOG_RECORD + blob):
            # Logged from a signal handler that interrupted this thread's own
            # write to the pipe: printed here rather than lost or interleaved.
            last = logging.lastResort
            if last is not None:
                last.handle(record)


def forward_to(write: Callable[[bytes], bool], levels: dict[str, int]) -> None:
    """In a worker: send every log record to the parent, and print none here.

    Args:
        write: Writes one message to the worker's outbox (see :class:`PipeHandler`).
        levels: The parent's logger levels (:func:`level_snapshot`).
    """
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True  # the parent applies its own propagation
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
    logging.getLogger().addHandler(PipeHandler(write))


class LogListener:
    """The parent's end: records from the workers, handed to the parent's loggers.

    Args:
        room: Called (from the listener's thread) once the records waiting
            fall back to half of :data:`LIMIT` after reaching it.
    """

    def __init__(self, room: Callable[[], None]) -> None:
        self._room = room
        self._cond = threading.Condition(threading.Lock())
        self._records: deque[bytes] = deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._was_full = False

    def put(self, blob: bytes) -> bool:
        """Queue one record as it came from a worker (not unpickled: cheap).

        Args:
            blob: The pickled record attributes.

        Returns:
            True when :data:`LIMIT` records or more now wait: read no more
            until ``room`` is called.
        """
        with self._cond:
            if not self._closed and self._start():
                self._records.append(blob)
                self._cond.notify()
                full = len(self._records) >= LIMIT
                self._was_full = self._was_full or full
                return full
        # After the pool's end, or while the interpreter exits (no thread can
        # start then): handed over at once, in this thread.
        _dispatch(blob)
        return False

    def _start(self) -> bool:
        """Start the thread if it has not started (hold the lock); False if it cannot."""
        if self._thread is None:
            thread = threading.Thread(target=self._run, name="parallelkit-logging", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # the interpreter is finalizing
                return False
            self._thread = thread
        return True

    @property
    def behind(self) -> bool:
        """Whether the records reached :data:`LIMIT` and have not fallen to half of it yet."""
        return self._was_full

    def close(self) -> None:
        """Hand the waiting records over, then stop the thread (waits a bounded time)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(DRAIN_WAIT)
            if thread.is_alive():
                _log.warning(
                    "the logging handlers did not take %d records from the workers within "
                    "%gs of the pool's end; they are handed over as they do",
                    len(self._records),
                    DRAIN_WAIT,
                )

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._records and not self._closed:
                    self._cond.wait()
                if not self._records:
                    return
                blob = self._records.popleft()
                room = self._was_full and len(self._records) <= LIMIT // 2
                if room:
                    self._was_full = False
            if room:
                self._room()
            _dispatch(blob)


def _dispatch(blob: bytes) -> None:
    """Hand one record to the parent's logger of its name, as if logged here."""
    try:
        state: Any = pickle.loads(blob)
        record = logging.makeLogRecord(state)
    except Exception as exc:
        _log.warning("a log record from a worker could not be read: %r", exc)
        return
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)
