"""parallelkit: parallel work made boring and safe.

One engine, two faces (:class:`Executor`, the ``concurrent.futures`` contract,
and :class:`Pool`, a drop-in for ``multiprocessing.Pool``), and one flag to
choose where the work runs: ``"process"``, ``"thread"`` or ``"serial"``.
"""

from ._channels._pipe import Connection as Connection
from ._channels._pipe import Pipe as Pipe
from ._channels._pipe import Receiver as Receiver
from ._channels._pipe import Sender as Sender
from ._channels._queue import Queue as Queue
from ._channels._shared import Array as Array
from ._channels._shared import LockedArray as LockedArray
from ._channels._shared import LockedValue as LockedValue
from ._channels._shared import Value as Value
from ._channels._sync import Barrier as Barrier
from ._channels._sync import BoundedSemaphore as BoundedSemaphore
from ._channels._sync import Condition as Condition
from ._channels._sync import Event as Event
from ._channels._sync import Lock as Lock
from ._channels._sync import RLock as RLock
from ._channels._sync import Semaphore as Semaphore
from ._config import Settings as Settings
from ._config import config as config
from ._config import current_settings as current_settings
from ._config import default_workers as default_workers
from ._engine import ResultIterator as ResultIterator
from ._errors import BrokenExecutorError as BrokenExecutorError
from ._errors import ClosedChannelError as ClosedChannelError
from ._errors import ClosedError as ClosedError
from ._errors import ConfigError as ConfigError
from ._errors import ParallelkitError as ParallelkitError
from ._errors import RemoteError as RemoteError
from ._errors import RemoteTraceback as RemoteTraceback
from ._errors import TaskTimeoutError as TaskTimeoutError
from ._errors import WorkerCrashedError as WorkerCrashedError
from ._executor import Executor as Executor
from ._pool import AsyncResult as AsyncResult
from ._pool import Pool as Pool
from ._spawn import Spawned as Spawned
from ._spawn import spawn as spawn
from ._timed import Timed as Timed

__version__ = "0.1.0"

__all__ = (
    "Array",
    "AsyncResult",
    "Barrier",
    "BoundedSemaphore",
    "BrokenExecutorError",
    "ClosedChannelError",
    "ClosedError",
    "Condition",
    "ConfigError",
    "Connection",
    "Event",
    "Executor",
    "Lock",
    "LockedArray",
    "LockedValue",
    "ParallelkitError",
    "Pipe",
    "Pool",
    "Queue",
    "RLock",
    "Receiver",
    "RemoteError",
    "RemoteTraceback",
    "ResultIterator",
    "Semaphore",
    "Sender",
    "Settings",
    "Spawned",
    "TaskTimeoutError",
    "Timed",
    "Value",
    "WorkerCrashedError",
    "config",
    "current_settings",
    "default_workers",
    "spawn",
)


def _present_as_public() -> None:
    """Show public names as ``parallelkit.X`` in tracebacks, not ``parallelkit._mod.X``."""
    namespace = globals()
    for name in __all__:
        obj = namespace[name]
        if getattr(obj, "__qualname__", None) == name and getattr(obj, "__module__", "").startswith(
            "parallelkit._"
        ):
            obj.__module__ = __name__


_present_as_public()
