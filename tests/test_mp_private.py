"""The private attributes of multiprocessing.Pool that the process backend reads.

If a Python version renames them, these tests fail before anything hangs.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.process import BaseProcess

from parallelkit._backends import _mp_private


def test_workers_lists_the_pool_processes() -> None:
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        procs = _mp_private.workers(pool)
        assert len(procs) == 2
        assert all(isinstance(p, BaseProcess) and p.sentinel for p in procs)
        pool.close()
        pool.join()


def test_forget_removes_a_job_from_the_cache() -> None:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        res = pool.apply_async(abs, (-1,))
        assert res.get(20) == 1
        held = pool.apply_async(abs, (-2,))
        held.wait(20)
        _mp_private.forget(pool, held)  # already gone: no error
        pool.close()
        pool.join()


def test_inqueue_lock_is_a_lock() -> None:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        lock = _mp_private.inqueue_lock(pool)
        assert hasattr(lock, "acquire") and hasattr(lock, "release")
        pool.close()
        pool.join()
