"""Shared test set-up.

Every test runs under the leak checker of parallelkit.testing. The ``backend``
fixture (parallelkit's pytest plugin) runs the backend-generic tests on the
dask backend too when dask is installed, against one loopback cluster for the
session; the tests that cannot run there are listed in :data:`NOT_ON_DASK`,
the one place that says why.
"""

from __future__ import annotations

import fnmatch
import gc
from collections.abc import Iterator

import pytest

from parallelkit.testing import Snapshot
from parallelkit.testing import no_leaks as _no_leaks

#: Backend-generic tests that do not run on the dask backend: node id pattern -> why.
NOT_ON_DASK: dict[str, str] = {
    "tests/test_channels_joinable.py::*": (
        "JoinableQueue is refused on dask (distributed has no task counter to join on); "
        "test_dask_channels.py checks the error"
    ),
    # Refused by design on dask (each refusal is checked in tests/test_dask_channels.py):
    "tests/test_channels_shared*.py::*array*": "Array: a cluster has no shared memory",
    "tests/test_channels_shared*.py::*structure_element*": "Array: a cluster has no shared memory",
    "tests/test_channels_shared*.py::*char_array*": "Array: a cluster has no shared memory",
    "tests/test_channels_shared.py::test_a_shared_lock_guards_several_objects": (
        "it guards an Array: a cluster has no shared memory"
    ),
    "tests/test_channels_shared.py::test_indexing_and_slicing_like_multiprocessing": (
        "Array: a cluster has no shared memory"
    ),
    "tests/test_channels_shared.py::test_iteration_is_a_snapshot_under_one_lock": (
        "Array: a cluster has no shared memory"
    ),
    "tests/test_channels_shared.py::test_copy_from_*": "Array: a cluster has no shared memory",
    "tests/test_channels_shared.py::test_numpy_*": "Array: a cluster has no shared memory",
    "tests/test_channels_shared.py::test_repr_shows_type_contents_and_backend": (
        "it makes an Array: a cluster has no shared memory"
    ),
    "tests/test_channels_shared.py::test_shared_memory_objects_unpickle_over_the_same_memory": (
        "shared memory (an Array): a cluster has none"
    ),
    "tests/test_channels_shared_compat.py::test_assignment_waits_for_the_lock_held_elsewhere": (
        "its cases make Arrays: a cluster has no shared memory"
    ),
    "tests/test_channels_shared_compat.py::test_setting_while_holding_the_default_lock_"
    "completes": "it makes a char Array: a cluster has no shared memory",
    "tests/test_channels_shared_compat.py::test_only_char_arrays_take_value_assignment": (
        "Array: a cluster has no shared memory"
    ),
    "tests/test_channels_shared_compat.py::test_lock_none_gives_each_object_an_rlock_of_its_"
    "own": "it makes an Array: a cluster has no shared memory",
    "tests/test_channels_shared_compat.py::*make_array]": "Array: a cluster has no shared memory",
    "tests/test_channels_shared*.py::*lock_false*": (
        "lock=False: a Value on dask is loaded from the scheduler under its lock"
    ),
    "tests/test_channels_sharing.py::test_executors_and_pools_hand_out_channels_of_their_own_"
    "backend": "it makes an Array, a Condition and a Barrier, which dask refuses",
    "tests/test_channels_sync.py::test_condition_*": "Condition: distributed has none",
    "tests/test_channels_sync.py::test_barrier_*": "Barrier: distributed has none",
    "tests/test_channels_sync.py::test_primitives_unpickle_to_the_same_objects_in_their_process": (
        "it makes a Condition and a Barrier, which distributed has not"
    ),
    "tests/test_channels_sync.py::test_semaphore_counts_and_reports_its_value": (
        "it releases a Semaphore above its start: on dask a Semaphore is a set of leases"
    ),
    # A Pipe end on dask is a pair of queues on the scheduler, not a descriptor:
    "tests/test_channels_pipe_ownership.py::test_fileno_*": "no descriptor on dask",
    "tests/test_channels_pipe_ownership.py::test_multiprocessing_wait_*": "no descriptor on dask",
    "tests/test_channels_pipe_ownership.py::test_asyncio_add_reader_*": "no descriptor on dask",
    "tests/test_channels_pipe.py::test_a_spawned_peer_echoes_until_closed": (
        "it asserts which backends close the parent's object when the child closes its end; "
        "on dask the child's close() ends the end for all, but `closed` stays per object"
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
            if fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(item.nodeid, pattern):
                item.add_marker(pytest.mark.skip(reason=f"not on dask: {why}"))
                break


@pytest.fixture(autouse=True)
def _no_leaks_after_each_test() -> Iterator[Snapshot]:
    """Fail any test that leaves child processes, threads or descriptors behind."""
    with _no_leaks() as before:
        yield before


@pytest.fixture
def collect_channels() -> Iterator[None]:
    """Release channels caught in reference cycles before the leak check runs.

    Channel test modules use it for every test (``pytestmark``): its teardown
    comes before the leak check's.
    """
    yield
    gc.collect(0)
