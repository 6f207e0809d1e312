"""Shared test set-up: every test runs under the leak checker of parallelkit.testing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from parallelkit.testing import Snapshot
from parallelkit.testing import no_leaks as _no_leaks


@pytest.fixture(autouse=True)
def _no_leaks_after_each_test() -> Iterator[Snapshot]:
    """Fail any test that leaves child processes, threads or descriptors behind."""
    with _no_leaks() as before:
        yield before
