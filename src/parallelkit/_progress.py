"""Progress of a map: a tqdm bar, or a callable ``fn(done, total)``, fed as chunks finish.

::

    the map's caller (lazy maps: imap, Executor.map...)    a result thread (Pool.map_async)
    ───────────────────────────────────────────────        ───────────────────────────────
    chunks arrive in ResultIterator._wait ─┐                ┌─ a chunk lands in map_all's list
                                           ▼                ▼
                                    Progress.advance(items of the chunk)
                                           │
                          bar.update(n) or fn(done, total); closes itself at done == total
                                           │
    the map ends, raises, is closed or dropped ─▶ Progress.close() (once, from any thread)

Progress is counted where the results arrive, in the caller's process, so it
is the same on every backend and the backends know nothing of it. It costs
one call per finished chunk, never one per item.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias, cast, final

from ._errors import ConfigError

__all__ = ("BarSpec", "Progress", "ProgressArg", "ProgressSpec", "check_progress", "start_progress")

#: What ``progress=`` accepts: False (none), True (a tqdm bar), a dict of tqdm
#: options (a bar made with them), or a callable ``fn(done, total)``.
ProgressArg: TypeAlias = "bool | Callable[[int, int | None], object] | Mapping[str, Any]"


@final
class BarSpec:
    """A checked ``progress=`` that asks for a bar: the tqdm class and its options."""

    __slots__ = ("cls", "options")

    def __init__(self, cls: Any, options: dict[str, Any]) -> None:
        self.cls: Any = cls
        self.options: dict[str, Any] = options


#: A checked ``progress=``: a bar, or the callable.
ProgressSpec: TypeAlias = "BarSpec | Callable[[int, int | None], object]"


def check_progress(progress: object) -> ProgressSpec | None:
    """Check a ``progress=`` argument, before the map starts any work.

    Args:
        progress: What the caller passed.

    Returns:
        None for no progress, else what :class:`Progress` is built from.

    Raises:
        ConfigError: A bar was asked for and tqdm is not installed.
        TypeError: ``progress`` is none of the accepted kinds.
    """
    if progress is False:
        return None
    if progress is True:
        return BarSpec(_tqdm_class(), {})
    if isinstance(progress, Mapping):
        options = dict(cast("Mapping[object, Any]", progress))
        if not all(isinstance(key, str) for key in options):
            raise TypeError(f"progress= options must have str keys (tqdm's), got {progress!r}")
        return BarSpec(_tqdm_class(), cast("dict[str, Any]", options))
    if callable(progress):
        return progress  # pyright: ignore[reportUnknownVariableType]
    raise TypeError(
        "progress must be True, False, a dict of tqdm options or a callable "
        f"fn(done, total), got {progress!r}"
    )


def _tqdm_class() -> Any:
    """``tqdm.auto.tqdm`` (a notebook widget in Jupyter, else a text bar)."""
    try:
        module = importlib.import_module("tqdm.auto")
    except ImportError:
        raise ConfigError(
            "progress=True needs tqdm, which is not installed: "
            "pip install 'parallelkit[progress]' (a callable progress=fn(done, total) "
            "needs nothing)"
        ) from None
    return module.tqdm


@final
class Progress:
    """The progress of one map: started at once, advanced per finished chunk, closed once.

    Args:
        spec: What :func:`check_progress` returned.
        total: The number of items, or None when the input has no length.
        desc: What the bar is labelled with, unless the options say otherwise.
    """

    __slots__ = ("_bar", "_callback", "_closed", "_done", "_lock", "total")

    def __init__(self, spec: ProgressSpec, total: int | None, desc: str) -> None:
        self.total = total
        self._done = 0
        self._closed = False
        self._lock = threading.RLock()
        self._bar: Any = None
        self._callback: Callable[[int, int | None], object] | None = None
        if isinstance(spec, BarSpec):
            self._bar = spec.cls(**{"total": total, "desc": desc, "unit": "task", **spec.options})
        else:
            self._callback = spec
            spec(0, total)
        if total == 0:
            self.close()

    def advance(self, count: int) -> None:
        """``count`` more items finished; the bar closes itself once all have.

        Raises:
            Exception: What the callable raised; progress then stops.
        """
        with self._lock:
            if self._closed:
                return
            self._done += count
            try:
                if self._callback is not None:
                    self._callback(self._done, self.total)
                else:
                    self._bar.update(count)
            except BaseException:
                self.close()
                raise
            if self.total is not None and self._done >= self.total:
                self.close()

    def close(self) -> None:
        """End the progress (the bar is closed); later calls do nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()


def start_progress(spec: ProgressSpec | None, total: int | None, desc: str) -> Progress | None:
    """A :class:`Progress` for ``spec``, or None when there is none to show."""
    return None if spec is None else Progress(spec, total, desc)
