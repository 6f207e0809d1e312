"""SIGTERM during a wait for results: raise KeyboardInterrupt, so cleanup runs.

A process manager asks a program to stop with SIGTERM, whose default action
ends the process at once: ``with`` blocks do not exit and an executor's
workers are stopped only by their orphan watch. While the main thread waits
for results inside parallelkit, and only if the program left SIGTERM at its
default, SIGTERM raises ``KeyboardInterrupt`` instead, exactly like Ctrl-C: the
map's running tasks are stopped, ``with`` blocks terminate their executors,
and the program ends with the usual traceback. A handler the program set
itself is never replaced.

The handler is read and set through ``_signal``, the C module under
:mod:`signal`: the wrappers of :mod:`signal` turn every number into an enum
member, which costs more than the wait itself for a quick result, and in a
process that has just forked, every page of the enum machinery it touches
is copied.
"""

from __future__ import annotations

import importlib
import signal
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, Final, final

__all__ = ("SigtermInterrupts",)

_raw: Any = importlib.import_module("_signal")
_getsignal: Final[Callable[[int], object]] = _raw.getsignal
_setsignal: Final[Callable[[int, object], object]] = _raw.signal
_SIGTERM: Final = int(signal.SIGTERM)
_SIG_DFL: Final = int(signal.SIG_DFL)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name} while waiting for results")


@final
class SigtermInterrupts:
    """Within the block, SIGTERM raises KeyboardInterrupt (main thread, default handler only)."""

    __slots__ = ("_installed",)

    def __enter__(self) -> None:
        self._installed = False
        try:
            if _getsignal(_SIGTERM) == _SIG_DFL:
                _setsignal(_SIGTERM, _interrupt)
                self._installed = True
        except ValueError:  # not the main thread (of the main interpreter)
            pass

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._installed:
            _setsignal(_SIGTERM, _SIG_DFL)
