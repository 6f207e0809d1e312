"""Which implementation a channel gets: the backend flag, resolved like the Executor's.

Three kinds, and the registry (:mod:`.._backends._registry`) says which a
backend gets:

- on a cluster (:func:`on_cluster`; dask): named objects on the cluster's
  scheduler, reached over the network (see :mod:`._cluster`);
- across processes (:func:`is_process`; process): named OS objects (see
  :mod:`._sharing`);
- otherwise, one process: the thread implementations (the serial backend has
  no concurrency of its own, but a spawned function or a second thread may
  still be on the other end).
"""

from __future__ import annotations

from .._backends._registry import crosses_processes, runs_on_cluster
from .._config import Settings, resolve_settings
from .._errors import ConfigError

__all__ = ("family", "is_process", "not_on_cluster", "on_cluster", "resolve")


def resolve(backend: str | None) -> Settings:
    """Resolve the settings for a channel: argument > context > env > file > default.

    Args:
        backend: The ``backend=`` argument, or None.

    Returns:
        The settings.

    Raises:
        ConfigError: The backend (from any source) is unknown.
    """
    return resolve_settings(backend)


def on_cluster(settings: Settings) -> bool:
    """Whether channels for ``settings`` live on a cluster's scheduler."""
    return runs_on_cluster(settings.backend)


def is_process(settings: Settings) -> bool:
    """Whether channels for ``settings`` are named OS objects shared by processes."""
    return crosses_processes(settings.backend) and not runs_on_cluster(settings.backend)


def family(settings: Settings) -> str:
    """Which implementation channels for ``settings`` get: "cluster", "process" or "thread".

    Channels of one family can be used together (a Value with a Lock);
    channels of different families cannot.
    """
    if on_cluster(settings):
        return "cluster"
    return "process" if is_process(settings) else "thread"


def not_on_cluster(settings: Settings, what: str, instead: str) -> ConfigError:
    """The error for a channel that has no implementation on a cluster.

    Args:
        settings: The resolved settings (their backend is named).
        what: The channel refused (``"Condition"``).
        instead: What to use instead, and why it is refused.

    Returns:
        The error, to raise.
    """
    return ConfigError(f"{what} is not available on the {settings.backend} backend: {instead}")
