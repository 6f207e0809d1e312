"""parallelkit's pytest plugin (registered through the ``pytest11`` entry point).

Fixtures:

- ``backend``: parametrizes a test over every backend whose dependencies are
  installed; the test body runs inside ``parallelkit.config(backend=...)``, so
  code that creates executors, pools or channels without naming a backend
  uses it. For ``"dask"`` it also sets ``address`` to the session's cluster.
- ``parallelkit_dask_address``: the address of a dask cluster on 127.0.0.1
  (two workers of one thread, in a process of its own) started once for the
  session, on first use, and stopped at its end. Each test gets it with all
  its workers there (it waits for workers a test before killed to be back).
- ``no_leaks``: fails the test if it leaves child processes, threads or file
  descriptors behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from .._backends._registry import available_backends
from .._config import config
from ._leaks import Snapshot
from ._leaks import no_leaks as _no_leaks

if TYPE_CHECKING:
    from ._cluster import SessionCluster

__all__ = ("backend", "no_leaks", "parallelkit_dask_address")


@pytest.fixture(scope="session")
def _parallelkit_dask_cluster() -> Iterator[SessionCluster]:
    """A loopback dask cluster shared by the session, started on first use."""
    from ._cluster import start_cluster

    cluster = start_cluster(workers=2)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def parallelkit_dask_address(_parallelkit_dask_cluster: SessionCluster) -> str:
    """The scheduler address of the session's dask cluster, its workers all there."""
    _parallelkit_dask_cluster.wait_ready()
    return _parallelkit_dask_cluster.address


@pytest.fixture(params=available_backends())
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each backend's name in turn, configured as the default for the test."""
    name: str = request.param
    if name == "dask":
        address: str = request.getfixturevalue("parallelkit_dask_address")
        with config(backend=name, address=address):
            yield name
        return
    with config(backend=name):
        yield name


@pytest.fixture
def no_leaks() -> Iterator[Snapshot]:
    """Fail the test if it leaves child processes, threads or descriptors behind."""
    with _no_leaks() as before:
        yield before
