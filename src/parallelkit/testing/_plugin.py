"""parallelkit's pytest plugin (registered through the ``pytest11`` entry point).

Fixtures:

- ``backend``: parametrizes a test over every backend; the test body runs
  inside ``parallelkit.config(backend=...)``, so code that creates executors,
  pools or channels without naming a backend uses it.
- ``no_leaks``: fails the test if it leaves child processes, threads or file
  descriptors behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .._backends._registry import backend_names
from .._config import config
from ._leaks import Snapshot
from ._leaks import no_leaks as _no_leaks

__all__ = ("backend", "no_leaks")


@pytest.fixture(params=backend_names())
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each backend's name in turn, configured as the default for the test."""
    name: str = request.param
    with config(backend=name):
        yield name


@pytest.fixture
def no_leaks() -> Iterator[Snapshot]:
    """Fail the test if it leaves child processes, threads or descriptors behind."""
    with _no_leaks() as before:
        yield before
