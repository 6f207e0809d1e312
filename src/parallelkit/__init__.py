"""parallelkit: parallel work made boring and safe.

One engine, two faces (:class:`Executor`, the ``concurrent.futures`` contract,
and :class:`Pool`, a drop-in for ``multiprocessing.Pool``), and one flag to
choose where the work runs: ``"process"``, ``"thread"`` or ``"serial"``.
"""

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
from ._timed import Timed as Timed

__version__ = "0.1.0"

__all__ = (
    "AsyncResult",
    "BrokenExecutorError",
    "ClosedChannelError",
    "ClosedError",
    "ConfigError",
    "Executor",
    "ParallelkitError",
    "Pool",
    "RemoteError",
    "RemoteTraceback",
    "ResultIterator",
    "Settings",
    "TaskTimeoutError",
    "Timed",
    "WorkerCrashedError",
    "config",
    "current_settings",
    "default_workers",
)
