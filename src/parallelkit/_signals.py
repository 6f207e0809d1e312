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
from collections.abc import Generator
from contextlib import contextmanager
from types import FrameType

__all__ = ("sigterm_interrupts",)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name} while waiting for results")


@contextmanager
def sigterm_interrupts() -> Generator[None, None, None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (main thread, default handler only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        installed = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        if installed:
            signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # pragma: no cover - not the main interpreter
        installed = False
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
