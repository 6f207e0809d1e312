"""parallelkit: parallel work made boring and safe.

One engine, two faces (:class:`Executor`, the ``concurrent.futures`` contract,
and :class:`Pool`, a drop-in for ``multiprocessing.Pool``), and one flag to
choose where the work runs: ``"process"``, ``"thread"`` or ``"serial"``.
"""

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._channels._array import Array as Array
    from ._channels._array import LockedArray as LockedArray
    from ._channels._joinable import JoinableQueue as JoinableQueue
    from ._channels._pipe import Connection as Connection
    from ._channels._pipe import Pipe as Pipe
    from ._channels._pipe import Receiver as Receiver
    from ._channels._pipe import Sender as Sender
    from ._channels._queue import Queue as Queue
    from ._channels._sync import Barrier as Barrier
    from ._channels._sync import BoundedSemaphore as BoundedSemaphore
    from ._channels._sync import Condition as Condition
    from ._channels._sync import Event as Event
    from ._channels._sync import Lock as Lock
    from ._channels._sync import RLock as RLock
    from ._channels._sync import Semaphore as Semaphore
    from ._channels._value import LockedValue as LockedValue
    from ._channels._value import Value as Value
    from ._config import Settings as Settings
    from ._config import config as config
    from ._config import current_settings as current_settings
    from ._config import default_workers as default_workers
    from ._errors import BrokenExecutorError as BrokenExecutorError
    from ._errors import ClosedChannelError as ClosedChannelError
    from ._errors import ClosedError as ClosedError
    from ._errors import ConfigError as ConfigError
    from ._errors import NotALockError as NotALockError
    from ._errors import ParallelkitError as ParallelkitError
    from ._errors import RemoteError as RemoteError
    from ._errors import RemoteTraceback as RemoteTraceback
    from ._errors import TaskTimeoutError as TaskTimeoutError
    from ._errors import WorkerCrashedError as WorkerCrashedError
    from ._executor import Executor as Executor
    from ._pool import AsyncResult as AsyncResult
    from ._pool import Pool as Pool
    from ._results import MapIterator as MapIterator
    from ._results import ResultIterator as ResultIterator
    from ._spawn import Process as Process
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
    "JoinableQueue",
    "Lock",
    "LockedArray",
    "LockedValue",
    "MapIterator",
    "NotALockError",
    "ParallelkitError",
    "Pipe",
    "Pool",
    "Process",
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


#: Where each public name lives (loaded on first use, see ``__getattr__``).
_HOME: dict[str, str] = {
    "Connection": "._channels._pipe",
    "Pipe": "._channels._pipe",
    "Receiver": "._channels._pipe",
    "Sender": "._channels._pipe",
    "Queue": "._channels._queue",
    "JoinableQueue": "._channels._joinable",
    "Array": "._channels._array",
    "LockedArray": "._channels._array",
    "LockedValue": "._channels._value",
    "Value": "._channels._value",
    "Barrier": "._channels._sync",
    "BoundedSemaphore": "._channels._sync",
    "Condition": "._channels._sync",
    "Event": "._channels._sync",
    "Lock": "._channels._sync",
    "RLock": "._channels._sync",
    "Semaphore": "._channels._sync",
    "Settings": "._config",
    "config": "._config",
    "current_settings": "._config",
    "default_workers": "._config",
    "MapIterator": "._results",
    "ResultIterator": "._results",
    "BrokenExecutorError": "._errors",
    "ClosedChannelError": "._errors",
    "ClosedError": "._errors",
    "ConfigError": "._errors",
    "NotALockError": "._errors",
    "ParallelkitError": "._errors",
    "RemoteError": "._errors",
    "RemoteTraceback": "._errors",
    "TaskTimeoutError": "._errors",
    "WorkerCrashedError": "._errors",
    "Executor": "._executor",
    "AsyncResult": "._pool",
    "Pool": "._pool",
    "Process": "._spawn",
    "Spawned": "._spawn",
    "spawn": "._spawn",
    "Timed": "._timed",
}


def _load(name: str) -> object:
    """Import the module where public ``name`` lives, and remember the name here."""
    import importlib

    obj: object = getattr(importlib.import_module(_HOME[name], __name__), name)
    if getattr(obj, "__qualname__", None) == name and getattr(obj, "__module__", "").startswith(
        "parallelkit._"
    ):
        obj.__module__ = __name__  # tracebacks and reprs show parallelkit.X
    globals()[name] = obj
    return obj


if not TYPE_CHECKING:  # type checkers read the imports above; this hook would hide typos

    def __getattr__(name):
        """Load a public name on first use (PEP 562).

        Worker processes import this package (under spawn they re-import the
        main script, which imports it): loading names lazily keeps a worker's
        start-up to the modules it runs.
        """
        if name not in _HOME:
            raise AttributeError(f"module 'parallelkit' has no attribute {name!r}")
        return _load(name)


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})


def _in_spawned_child() -> bool:
    """Whether this import happens in a worker or a forkserver, not in the program.

    A spawned worker re-imports the program's main script as ``__mp_main__``;
    the forkserver runs as ``python -c "from multiprocessing.forkserver import
    main; ..."`` and imports the modules it is asked to preload.
    """
    main = sys.modules.get("__mp_main__")
    if getattr(main, "__name__", None) == "__mp_main__":
        return True
    return sys.argv[:1] == ["-c"] and "multiprocessing.forkserver" in sys.modules


if not _in_spawned_child():
    # In the program itself, load the core now, so creating the first executor
    # does not pay for the imports.
    import importlib as _importlib

    for _home in ("._executor", "._pool", "._errors", "._timed", "._backends._process"):
        _importlib.import_module(_home, __name__)
    for _name, _home in _HOME.items():
        if f"{__name__}{_home}" in sys.modules:
            _load(_name)
    del _importlib
