"""Big items of process-backend channels: their buffers go through shared memory.

A Queue or Pipe of the process backend pickles each item with
:func:`parallelkit._bulk.dumps`: buffers of at least the channel's threshold
(numpy arrays, bytes, bytearrays, memoryviews) are written into shared-memory
segments and only a small message goes through the FIFO. Each channel object
holds one :class:`Items` per process::

    channel created ──▶ threshold (from its Settings), prefix "<token>s"
         │                 travel with the channel when it is pickled
         ▼
    first big item put here ──▶ an Outbox of this process (segments
                                "/<token>s<pid>-…", reused once received)
    the channel object goes away here, or this process exits
         (after the queue feeders wrote what they hold) ──▶ Outbox.close()
    the owner releases the channel's names ──▶ unlink_prefix("<token>s"):
         what was never received, or what a killed sender left

Thread, serial and dask channels do not use this: their items pass as they
are, or through distributed's own serialization.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, Final

from .. import _bulk, _serialize
from ._sharing import at_exit

if TYPE_CHECKING:
    from .._bulk import Outbox, Placement

__all__ = ("Items", "prefix_of")

#: Exit order: after the queue feeders have written what they hold (-5), before the
#: owner releases the channels' names (-10).
_EXIT_PRIORITY: Final = -7


def prefix_of(token: str) -> str:
    """The name prefix of the segments of the channel with ``token``."""
    return f"{token}s"


class Items:
    """How one channel object pickles and unpickles its items in this process.

    Args:
        token: The channel's token (its segments' names start with it).
        threshold: The channel's ``shared_threshold``, fixed when it was created.
    """

    __slots__ = ("__weakref__", "_lock", "_outbox", "_pid", "_watched", "prefix", "threshold")

    def __init__(self, token: str, threshold: int | None) -> None:
        self.prefix = prefix_of(token)
        self.threshold = threshold
        self._outbox: Outbox | None = None
        self._pid = 0
        #: The process in which the outbox is watched (closed on collection and at exit).
        self._watched = 0
        self._lock = threading.Lock()

    def dumps(self, obj: object, placed: list[Placement]) -> bytes:
        """Pickle ``obj`` for the channel.

        Args:
            obj: The item.
            placed: Receives the segment the message uses, if any: hand it to
                :meth:`give_back` if the message is not sent after all.

        Returns:
            The message: a plain pickle, or one that refers to shared memory.
        """
        threshold = self.threshold
        if threshold is None:
            return _serialize.dumps(obj)
        outbox = self._outbox if self._pid == os.getpid() else None
        if outbox is None:
            outbox = self._outbox_here()
        mine: list[Placement] = []
        message = _bulk.dumps(obj, threshold, outbox, plain=_serialize.dumps, placed=mine)
        if mine:
            placed += mine
            if self._watched != os.getpid():
                self._watch(outbox)
        return message

    def _outbox_here(self) -> Outbox:
        """This process's outbox, made now (the first item put here, or after a fork).

        It is only an object until the first big item: that one makes a segment.
        """
        with self._lock:
            if self._outbox is None or self._pid != os.getpid():
                self._outbox = _bulk.Outbox(self.prefix, _bulk.RECYCLE)
                self._pid = os.getpid()
            return self._outbox

    def _watch(self, outbox: Outbox) -> None:
        """Close ``outbox`` when this object goes away here, or when this process exits."""
        with self._lock:
            if self._watched == os.getpid():
                return
            self._watched = os.getpid()
            weakref.finalize(self, outbox.close).atexit = False
            _open_outboxes.add(self)
        at_exit(_close_outboxes, _EXIT_PRIORITY)

    @staticmethod
    def give_back(placed: list[Placement]) -> None:
        """The messages that used these segments were not sent: they are free again."""
        for placement in placed:
            placement.give_back()
        placed.clear()

    @staticmethod
    def loads(message: bytes | bytearray | memoryview) -> Any:
        """Unpickle a message made by :meth:`dumps` (or a plain pickle)."""
        return _bulk.loads(message)

    def close(self) -> None:
        """Let go of this process's segments (those not yet received stay for their receiver)."""
        outbox = self._outbox
        if outbox is not None and self._pid == os.getpid():
            outbox.close()


#: The Items of this process that made an outbox.
_open_outboxes: weakref.WeakSet[Items] = weakref.WeakSet()


def _close_outboxes() -> None:
    for items in list(_open_outboxes):
        items.close()
