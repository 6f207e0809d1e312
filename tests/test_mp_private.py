"""The private names of multiprocessing that parallelkit still uses, one test each.

They all live in ``parallelkit._backends._mp_private``. If a Python version
renames one, its test here fails and says which, before anything hangs.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.synchronize
from multiprocessing import forkserver, resource_tracker
from multiprocessing.process import BaseProcess

from parallelkit import Pool
from parallelkit._backends import _mp_private
from parallelkit._backends._process import Backend as ProcessBackend


def test_semlock_get_value_tells_whether_a_lock_is_held() -> None:
    lock = multiprocessing.get_context("spawn").Lock()
    semlock = getattr(lock, "_semlock", None)
    assert semlock is not None, "multiprocessing.synchronize.Lock._semlock is gone"
    assert hasattr(semlock, "_get_value"), "SemLock._get_value is gone"
    assert not _mp_private.lock_held(lock)
    with lock:
        assert _mp_private.lock_held(lock)
    assert not _mp_private.lock_held(lock)


def test_the_forkserver_keeps_its_preload_modules() -> None:
    server = getattr(forkserver, "_forkserver", None)
    assert server is not None, "multiprocessing.forkserver._forkserver is gone"
    assert hasattr(server, "_preload_modules"), "ForkServer._preload_modules is gone"
    before = list(getattr(server, "_preload_modules", None) or ["__main__"])
    try:
        _mp_private.preload_in_forkserver("parallelkit._backends._pipes")
        modules = server._preload_modules  # pyright: ignore[reportUnknownMemberType, reportAttributeAccessIssue, reportUnknownVariableType]
        assert "parallelkit._backends._pipes" in modules
        assert all(module in modules for module in before)
    finally:
        forkserver.set_forkserver_preload(before)


def test_atexit_runs_its_functions_on_request() -> None:
    run = getattr(atexit, "_run_exitfuncs", None)
    assert callable(run), "atexit._run_exitfuncs is gone"


def test_base_process_bootstraps_through_a_method_a_subclass_can_wrap() -> None:
    assert callable(getattr(BaseProcess, "_bootstrap", None)), "BaseProcess._bootstrap is gone"
    with Pool(1, start_method="spawn") as pool:
        assert pool.apply(abs, (-1,)) == 1
        backend = pool._engine.backend  # pyright: ignore[reportPrivateUsage]
        assert isinstance(backend, ProcessBackend)
        assert [type(proc) for proc in backend.processes()] == [_mp_private.SpawnedWorker]


def test_the_resource_tracker_keeps_its_descriptor() -> None:
    tracker = getattr(resource_tracker, "_resource_tracker", None)
    assert tracker is not None, "multiprocessing.resource_tracker._resource_tracker is gone"
    assert hasattr(tracker, "_fd"), "ResourceTracker._fd is gone"
    resource_tracker.ensure_running()
    fd = getattr(tracker, "_fd", None)
    assert isinstance(fd, int) and fd in _mp_private.helper_fds()


def test_the_forkserver_s_descriptor_is_found() -> None:
    server = getattr(forkserver, "_forkserver", None)
    assert hasattr(server, "_forkserver_alive_fd"), "ForkServer._forkserver_alive_fd is gone"
    with Pool(1, start_method="forkserver") as pool:
        assert pool.apply(abs, (-1,)) == 1
    alive = getattr(server, "_forkserver_alive_fd", None)
    assert alive in _mp_private.helper_fds()


def test_a_lock_not_of_multiprocessing_is_never_taken_for_held() -> None:
    assert not _mp_private.lock_held(object())
    assert isinstance(multiprocessing.get_context("spawn").Lock(), multiprocessing.synchronize.Lock)
