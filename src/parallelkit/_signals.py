"""SIGTERM during a wait for results: raise KeyboardInterrupt, so cleanup runs.

A process manager asks a program to stop with SIGTERM, whose default action
ends the process at once: ``with`` blocks do not exit and an executor's
workers are stopped only by their orphan watch. While the main thread waits
for results inside parallelkit, and only if the program left SIGTERM at its
default, SIGTERM raises ``KeyboardInterrupt`` instead, exactly like Ctrl-C: the
map's running tasks are stopped, ``with`` blocks terminate their executors,
and the program ends with the usual traceback. A handler the program set
itself is never replaced.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Final, final

__all__ = ("SigtermInterrupts",)

_SIGTERM: Final = signal.SIGTERM
_SIG_DFL: Final = signal.SIG_DFL


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name} while waiting for results")


@final
class SigtermInterrupts:
    """Within the block, SIGTERM raises KeyboardInterrupt (main thread, default handler only)."""

    __slots__ = ("_installed",)

    def __enter__(self) -> None:
        self._installed = False
        if threading.get_ident() != threading.main_thread().ident:
            return
        try:
            if signal.getsignal(_SIGTERM) is _SIG_DFL:
                signal.signal(_SIGTERM, _interrupt)
                self._installed = True
        except ValueError:  # pragma: no cover - not the main interpreter
            pass

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._installed:
            signal.signal(_SIGTERM, _SIG_DFL)
