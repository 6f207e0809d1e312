"""Shared test set-up.

Every test runs under the leak checker of parallelkit.testing. The ``backend``
fixture (parallelkit's pytest plugin) runs the backend-generic tests on the
dask backend too when dask is installed, against one loopback cluster for the
session; the tests that cannot run there are listed in :data:`NOT_ON_DASK`,
the one place that says why.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator

import pytest

from parallelkit.testing import Snapshot
from parallelkit.testing import no_leaks as _no_leaks

#: Backend-generic tests that do not run on the dask backend: node id pattern -> why.
NOT_ON_DASK: dict[str, str] = {
    "tests/test_channels_*": "parallelkit's channels are not built for dask yet (ConfigError)",
    "tests/test_*.py::*channel*": "parallelkit's channels are not built for dask yet",
    "tests/test_*.py::*queue*": "parallelkit's channels are not built for dask yet",
    "tests/test_process.py::*": (
        "a Process talks to its parent through parallelkit's channels, which are not built "
        "for dask yet"
    ),
    "tests/test_logging.py::test_a_record_logged_in_a_task_reaches_the_parents_handler": (
        "records logged on dask workers stay in the cluster's processes, under the "
        "cluster's logging configuration (distributed's Client.forward_logging() brings "
        "them over, on the user's request)"
    ),
    "tests/test_executor.py::test_check_pickle_on_threads_catches_what_processes_refuse": (
        "dask always serializes, as processes do"
    ),
    "tests/test_executor.py::test_an_executor_whose_task_failed_is_freed_without_the_garbage_"
    "collector": (
        "distributed's Client keeps its futures and event handlers in reference cycles: "
        "the garbage collector frees them"
    ),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip, on dask, the tests listed in :data:`NOT_ON_DASK`, with their reason."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or callspec.params.get("backend") != "dask":
            continue
        name = item.nodeid.split("[", 1)[0]
        for pattern, why in NOT_ON_DASK.items():
            if fnmatch.fnmatch(name, pattern):
                item.add_marker(pytest.mark.skip(reason=f"not on dask: {why}"))
                break


@pytest.fixture(autouse=True)
def _no_leaks_after_each_test() -> Iterator[Snapshot]:
    """Fail any test that leaves child processes, threads or descriptors behind."""
    with _no_leaks() as before:
        yield before
