"""The one place that knows backend names: the flag -> the module implementing it.

Adding a backend is writing one module with a ``Backend`` class that follows
:class:`parallelkit._backends._base.Backend`, and one line here. Modules are
imported on first use, so an optional backend costs nothing until chosen.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._base import BackendFactory

__all__ = ("backend_names", "load_backend")

_MODULES: Final[dict[str, str]] = {
    "process": "parallelkit._backends._process",
    "thread": "parallelkit._backends._thread",
    "serial": "parallelkit._backends._serial",
}


def backend_names() -> tuple[str, ...]:
    """Return the names the backend flag accepts, sorted."""
    return tuple(sorted(_MODULES))


def load_backend(name: str) -> BackendFactory:
    """Return the backend class registered under ``name``.

    Args:
        name: A name from :func:`backend_names` (already validated by the config).

    Returns:
        The class; calling it with the engine's arguments starts the backend.
    """
    module = importlib.import_module(_MODULES[name])
    factory: BackendFactory = module.Backend
    return factory
