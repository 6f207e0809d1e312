"""The one place that knows backend names: the flag -> the module implementing it.

Adding a backend is writing one module with a ``Backend`` class that follows
:class:`parallelkit._backends._base.Backend`, and one line here. Modules are
imported on first use, so an optional backend costs nothing until chosen.

This module imports nothing of parallelkit at run time: the configuration
(:mod:`parallelkit._config`) validates the flag against it, below every backend.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from ._base import BackendFactory

__all__ = (
    "available_backends",
    "backend_names",
    "crosses_processes",
    "load_backend",
    "missing_requirement",
    "runs_on_cluster",
)


class _Entry(NamedTuple):
    module: str
    #: Its workers run in other processes: what they share must cross processes.
    crosses_processes: bool
    #: The top-level module it needs beyond parallelkit's own dependencies, or "".
    requires: str = ""
    #: The extra that installs it (``pip install parallelkit[extra]``).
    extra: str = ""
    #: It runs work on a cluster, reached by ``address`` or ``client=``; its
    #: channels live on the cluster's scheduler (named objects reached over
    #: the network), not in this machine's memory or OS objects.
    cluster: bool = False


_BACKENDS: Final[dict[str, _Entry]] = {
    "process": _Entry("parallelkit._backends._process", crosses_processes=True),
    "thread": _Entry("parallelkit._backends._thread", crosses_processes=False),
    "serial": _Entry("parallelkit._backends._serial", crosses_processes=False),
    "dask": _Entry(
        "parallelkit._backends._dask",
        crosses_processes=True,
        requires="distributed",
        extra="dask",
        cluster=True,
    ),
}


def backend_names() -> tuple[str, ...]:
    """Return the names the backend flag accepts, sorted."""
    return tuple(sorted(_BACKENDS))


def missing_requirement(name: str) -> str | None:
    """Why backend ``name`` cannot be used here, or None when it can.

    Looks for its optional dependency without importing it.

    Args:
        name: A name from :func:`backend_names`.

    Returns:
        A message naming the extra to install, or None.
    """
    entry = _BACKENDS[name]
    if not entry.requires or importlib.util.find_spec(entry.requires) is not None:
        return None
    return (
        f"the {name} backend needs the {entry.requires!r} package, which is not installed; "
        f"install it with: pip install parallelkit[{entry.extra}]"
    )


def available_backends() -> tuple[str, ...]:
    """Return the names of the backends whose dependencies are installed, sorted."""
    return tuple(name for name in backend_names() if missing_requirement(name) is None)


def runs_on_cluster(name: str) -> bool:
    """Whether backend ``name`` runs work on a cluster (reached by address or client).

    Only such a backend takes ``address=`` and ``client=``; channels made for
    it live on the cluster's scheduler, so they reach other machines and
    cannot share memory or file descriptors: each operation is a round trip
    to the scheduler.

    Args:
        name: A name from :func:`backend_names`.
    """
    return _BACKENDS[name].cluster


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
