"""Channels: Queue, Pipe, Value, Array and the sync primitives, for either backend.

::

    parallelkit.Queue() / Pipe() / Value() / Array() / Lock() / ...
        │ backend=  (argument > parallelkit.config > env > config file > default,
        │            as for the Executor; ex.Queue() uses the executor's own)
        ├─ "process" ─▶ named OS objects that any process can open by name:
        │                 POSIX semaphores (locks, counters, flags)   ._sync, ._sharing
        │                 FIFOs carrying framed pickles (Queue, Pipe) ._stream
        │                 shared-memory arenas (Value, Array)         ._memory
        │               pickling a channel writes those names, so it can be a task
        │               argument of a running pool under fork, spawn and forkserver
        └─ otherwise ──▶ threading objects in this process, same methods, same errors

    ._queue     Queue            ._pipe    Pipe, Connection, Sender, Receiver
    ._joinable  JoinableQueue    ._sync    Lock, RLock, Semaphore, BoundedSemaphore,
    ._value     Value                      Condition, Event, Barrier
    ._array     Array       ._shared  what Value and Array share
    ._layout    the C types
"""

from ._array import Array as Array
from ._array import LockedArray as LockedArray
from ._joinable import JoinableQueue as JoinableQueue
from ._joinable import make_joinable_queue as make_joinable_queue
from ._pipe import Connection as Connection
from ._pipe import Pipe as Pipe
from ._pipe import Receiver as Receiver
from ._pipe import Sender as Sender
from ._pipe import make_pipe as make_pipe
from ._queue import Queue as Queue
from ._queue import make_queue as make_queue
from ._sync import Barrier as Barrier
from ._sync import BoundedSemaphore as BoundedSemaphore
from ._sync import Condition as Condition
from ._sync import Event as Event
from ._sync import Lock as Lock
from ._sync import RLock as RLock
from ._sync import Semaphore as Semaphore
from ._types import FloatCode as FloatCode
from ._types import IntCode as IntCode
from ._value import LockedValue as LockedValue
from ._value import Value as Value

__all__ = (
    "Array",
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Connection",
    "Event",
    "FloatCode",
    "IntCode",
    "JoinableQueue",
    "Lock",
    "LockedArray",
    "LockedValue",
    "Pipe",
    "Queue",
    "RLock",
    "Receiver",
    "Semaphore",
    "Sender",
    "Value",
    "make_joinable_queue",
    "make_pipe",
    "make_queue",
)
