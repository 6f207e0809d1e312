"""The one place that knows backend names: the flag -> the module implementing it.

Adding a backend is writing one module with a ``Backend`` class that follows
:class:`parallelkit._backends._base.Backend`, and one line here. Modules are
imported on first use, so an optional backend costs nothing until chosen.

This module imports nothing of parallelkit at run time: the configuration
(:mod:`parallelkit._config`) validates the flag against it, below every backend.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from ._base import BackendFactory

__all__ = ("backend_names", "crosses_processes", "load_backend")


class _Entry(NamedTuple):
    module: str
    #: Its workers run in other processes: what they share must cross processes.
    crosses_processes: bool


_BACKENDS: Final[dict[str, _Entry]] = {
    "process": _Entry("parallelkit._backends._process", crosses_processes=True),
    "thread": _Entry("parallelkit._backends._thread", crosses_processes=False),
    "serial": _Entry("parallelkit._backends._serial", crosses_processes=False),
}


def backend_names() -> tuple[str, ...]:
    """Return the names the backend flag accepts, sorted."""
    return tuple(sorted(_BACKENDS))


def crosses_processes(name: str) -> bool:
    """Whether the workers of backend ``name`` run in other processes.

    Channels made for it, and :func:`parallelkit.spawn` under it, must then
    cross processes.

    Args:
        name: A name from :func:`backend_names`.
    """
    return _BACKENDS[name].crosses_processes


def load_backend(name: str) -> BackendFactory:
    """Return the backend class registered under ``name``.

    Args:
        name: A name from :func:`backend_names` (already validated by the config).

    Returns:
        The class; calling it with the engine's arguments starts the backend.
    """
    module = importlib.import_module(_BACKENDS[name].module)
    factory: BackendFactory = module.Backend
    return factory
