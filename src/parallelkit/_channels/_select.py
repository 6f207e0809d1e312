"""Which implementation a channel gets: the backend flag, resolved like the Executor's.

The process backend gets channels made of named OS objects (see
:mod:`._sharing`); every other backend runs in one process and gets the
thread implementations (the serial backend has no concurrency of its own, but
a spawned function or a second thread may still be on the other end).
"""

from __future__ import annotations

from .._backends._registry import crosses_processes, has_channels
from .._config import Settings, resolve_settings
from .._errors import ConfigError

__all__ = ("is_process", "resolve")


def resolve(backend: str | None) -> Settings:
    """Resolve the settings for a channel: argument > context > env > file > default.

    Args:
        backend: The ``backend=`` argument, or None.

    Returns:
        The settings.

    Raises:
        ConfigError: The backend (from any source) is unknown, or has no
            channels (dask: use ``distributed.Queue``, ``Lock``, ``Event``,
            ``Variable``, or task arguments and results).
    """
    settings = resolve_settings(backend)
    if not has_channels(settings.backend):
        raise ConfigError(
            f"parallelkit's channels are not available on the {settings.backend} backend yet: "
            "on a cluster, use distributed.Queue, Lock, Event, Semaphore or Variable for "
            "coordination, and task arguments and results (or client.scatter) for data"
        )
    return settings


def is_process(settings: Settings) -> bool:
    """Whether channels for ``settings`` must cross processes."""
    return crosses_processes(settings.backend)
