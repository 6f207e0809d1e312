"""What the two faces share: building the engine, ``repr``, and the leak warning."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

from ._backends._base import BackendOptions
from ._config import resolve_settings
from ._engine import BROKEN, RUNNING, Engine

__all__ = ("EngineOwner",)


class EngineOwner:
    """Base of :class:`~parallelkit.Executor` and :class:`~parallelkit.Pool`."""

    _engine: Engine

    def _start_engine(
        self,
        backend: str | None,
        workers: int | None,
        start_method: str | None,
        initializer: Callable[..., object] | None,
        initargs: Iterable[Any],
        max_tasks_per_worker: int | None,
        task_timeout: float | None,
        check_pickle: bool | None,
        *,
        workers_name: str = "workers",
        max_tasks_name: str = "max_tasks_per_worker",
    ) -> None:
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
        ):
            raise ValueError(f"{workers_name} must be a whole number >= 1 or None, got {workers!r}")
        if max_tasks_per_worker is not None and (
            isinstance(max_tasks_per_worker, bool)
            or not isinstance(max_tasks_per_worker, int)
            or max_tasks_per_worker < 1
        ):
            raise ValueError(
                f"{max_tasks_name} must be a whole number >= 1 or None, "
                f"got {max_tasks_per_worker!r}"
            )
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable or None, got {initializer!r}")
        settings = resolve_settings(backend, workers, start_method, check_pickle)
        options = BackendOptions(initializer, tuple(initargs), max_tasks_per_worker)
        self._engine = Engine(settings, options, task_timeout)

    @property
    def backend(self) -> str:
        """The backend in use: ``"process"``, ``"thread"``, ``"serial"``."""
        return self._engine.settings.backend

    @property
    def workers(self) -> int:
        """The number of workers (1 for the serial backend)."""
        return self._engine.backend.workers

    @property
    def start_method(self) -> str | None:
        """The start method of the process backend; None for the others."""
        return self._engine.backend.start_method

    def __repr__(self) -> str:
        engine = getattr(self, "_engine", None)
        if engine is None:
            return f"<parallelkit.{type(self).__name__} (not started)>"
        method = f" start_method={self.start_method!r}" if self.start_method else ""
        return (
            f"<parallelkit.{type(self).__name__} backend={self.backend!r} "
            f"workers={self.workers}{method} state={engine.state!r}>"
        )

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is None or engine.state not in (RUNNING, BROKEN):
            return
        warnings.warn(
            f"{self!r} was garbage-collected without being shut down; its workers were "
            "stopped. Use it in a 'with' block or call shutdown()/close()+join().",
            ResourceWarning,
            stacklevel=2,
        )
        engine.terminate()
