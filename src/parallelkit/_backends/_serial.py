"""The serial backend: every chunk runs inline, in the caller's thread, in order.

Deterministic and debuggable: breakpoints, ``pdb`` and coverage see the task
as ordinary code. ``submit`` returns an already finished Future; maps run one
chunk at a time as results are consumed. Errors are the same as on the other
backends (a ``task_timeout`` can only be checked after the task returns).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, final

from .._config import Settings
from . import _inline
from ._base import BackendOptions, Chunk, Hooks

__all__ = ("Backend",)


@final
class Backend:
    """Runs chunks inline."""

    start_method: str | None = None
    can_kill = False
    timeout_note = ""
    channel_address: str | None = None
    window = 1
    workers = 1

    def __init__(self, hooks: Hooks, settings: Settings, options: BackendOptions) -> None:
        self._hooks: Hooks = weakref.proxy(hooks)  # the engine owns this backend: no cycle
        self._check_pickle = settings.check_pickle
        self._init_error: BaseException | None = None
        if options.initializer is not None:
            try:
                options.initializer(*options.initargs)
            except Exception as exc:  # reported like the other backends: on first use
                self._init_error = exc

    def prepare_fn(self, fn: Callable[..., Any]) -> object:
        return _inline.prepare_fn(fn, self._check_pickle)

    def pack_items(self, items: list[Any]) -> object:
        return _inline.pack_items(items, self._check_pickle)

    def send(self, chunk: Chunk) -> None:
        if self._init_error is not None:
            self._hooks.broken(self._init_error)
            return
        _inline.run_chunk(self._hooks, chunk, catch_interrupt=False)

    def keep_time(self, chunk: Chunk, deadline: float) -> bool:
        """No clock of its own: the engine keeps the time."""
        return False

    def abort(self, chunk: Chunk) -> None:
        """Nothing runs in the background."""

    def close(self) -> None:
        """Nothing to close."""

    def join(self) -> None:
        """Nothing to wait for."""

    def terminate(self) -> None:
        """Nothing to stop."""
