"""Helpers for testing code that uses parallelkit.

- Fault injection, to call inside a task: :func:`crash_worker`,
  :func:`exit_worker`, :func:`hang`, :func:`return_unpicklable`,
  :func:`raise_unpicklable`.
- :func:`no_leaks`: a context manager that fails when child processes,
  threads or file descriptors outlive a block.
- The pytest plugin (active once parallelkit is installed) adds the
  ``backend`` fixture (a test runs once per backend) and the ``no_leaks``
  fixture.
"""

from ._faults import Unpicklable as Unpicklable
from ._faults import UnpicklableError as UnpicklableError
from ._faults import crash_worker as crash_worker
from ._faults import exit_worker as exit_worker
from ._faults import hang as hang
from ._faults import raise_unpicklable as raise_unpicklable
from ._faults import return_unpicklable as return_unpicklable
from ._leaks import LeakError as LeakError
from ._leaks import Snapshot as Snapshot
from ._leaks import no_leaks as no_leaks
from ._leaks import snapshot as snapshot

__all__ = (
    "LeakError",
    "Snapshot",
    "Unpicklable",
    "UnpicklableError",
    "crash_worker",
    "exit_worker",
    "hang",
    "no_leaks",
    "raise_unpicklable",
    "return_unpicklable",
    "snapshot",
)
