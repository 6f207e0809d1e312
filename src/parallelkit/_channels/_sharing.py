"""How a channel reaches another process: by the names of the things it is made of.

::

    creating process (the owner)                          any other process
    ─────────────────────────────                         ─────────────────
    Queue() / Value() / Lock() ──creates──▶ named POSIX semaphores     ◀── sem_open(name)
                                            named FIFOs (/dev/shm)     ◀── open(path)
                                            named shared memory        ◀── shm_open(name), mmap
         │ registers every name ──▶ multiprocessing's resource tracker
         │                          (unlinks them if the owner dies)
         │
    pickle.dumps(channel) ──▶ a few hundred bytes of names ──(task arguments,
                                                              a Queue, a Pipe…)──▶ pickle.loads
                                                                                   opens the names
    the owner's object is garbage-collected (or the owner exits) ──▶ unlink + unregister

Nothing here depends on *how* the other process was started (fork, spawn,
forkserver) or on whether it is already running: a name can be opened by any
process of the same user at any time while the owner keeps the object alive.
That is what lets a channel travel as an ordinary task argument to workers of
a running pool, which ``multiprocessing``'s own objects refuse ("should only
be shared between processes through inheritance").

Within one process the same channel always unpickles to the same object (a
registry keyed by process id and token), so a lock keeps its identity (and
its recursion count) and no descriptor is opened twice. Channels of the
thread backend pickle the same way but only resolve in the process that made
them; anywhere else they raise a clear error.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import itertools
import os
import secrets
import stat
import sys
import tempfile
import weakref
from multiprocessing import resource_tracker, util
from typing import TYPE_CHECKING, Any, Concatenate, Final, ParamSpec, Protocol, TypeVar, cast

from .._bulk import unlink_prefix
from .._errors import ClosedChannelError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = (
    "RECURSIVE_MUTEX",
    "SEMAPHORE",
    "SEM_VALUE_MAX",
    "RawSemLock",
    "at_exit",
    "create_fifo",
    "create_semlock",
    "local_reduce",
    "new_token",
    "open_semlock",
    "own",
    "recall",
    "remember",
    "reopens",
    "shm_open",
    "shm_unlink",
)


class RawSemLock(Protocol):
    """The parts of ``_multiprocessing.SemLock`` that the channels use."""

    @property
    def name(self) -> str | None: ...
    @property
    def kind(self) -> int: ...
    @property
    def maxvalue(self) -> int: ...
    def acquire(self, block: bool = True, timeout: float | None = None) -> bool: ...
    def release(self) -> None: ...
    def __enter__(self) -> bool: ...
    def __exit__(self, *args: object) -> None: ...
    def _count(self) -> int: ...
    def _is_mine(self) -> bool: ...
    def _get_value(self) -> int: ...
    def _is_zero(self) -> bool: ...
    def _after_fork(self) -> None: ...


# ``_multiprocessing`` and ``_posixshmem`` are C modules without type stubs; every
# use goes through the typed helpers below.
_mp: Any = importlib.import_module("_multiprocessing")
_shm: Any = importlib.import_module("_posixshmem") if os.name == "posix" else None

RECURSIVE_MUTEX: Final = 0
SEMAPHORE: Final = 1
SEM_VALUE_MAX: Final[int] = _mp.SemLock.SEM_VALUE_MAX

#: Where FIFOs live: tmpfs on Linux (the resource tracker can unlink them there).
_SHM_DIR: Final = "/dev/shm"


def new_token() -> str:
    """Return a fresh random name stem (short enough for macOS semaphore names)."""
    return "pk" + secrets.token_hex(6)


# -- identity within one process ----------------------------------------------------------

_live: weakref.WeakValueDictionary[tuple[int, str], Any] = weakref.WeakValueDictionary()


def remember(token: str, obj: object) -> None:
    """Make ``obj`` the object that ``token`` unpickles to in this process."""
    _live[(os.getpid(), token)] = obj


def recall(token: str) -> Any:
    """Return this process's object for ``token``, or None."""
    return _live.get((os.getpid(), token))


_K = TypeVar("_K", bound="str | tuple[Any, ...]")
_P = ParamSpec("_P")
_C = TypeVar("_C")


def reopens(open_: Callable[Concatenate[_K, _P], _C]) -> Callable[Concatenate[_K, _P], _C]:
    """Make ``open_`` the unpickler of a process-backend channel, keeping identity.

    The first argument of ``open_`` names the object: its token, or a tuple
    of names whose first is the token. The decorated function returns this
    process's object for that token if there is one; otherwise it calls
    ``open_`` to open the names, and remembers what it returns.

    Args:
        open_: Builds the object from the arguments its ``__reduce__`` wrote.

    Returns:
        The function to name in ``__reduce__`` (it keeps ``open_``'s name,
        so pickles find it in its module).
    """

    @functools.wraps(open_)
    def reopen(key: _K, /, *args: _P.args, **kwargs: _P.kwargs) -> _C:
        token: str = key if isinstance(key, str) else key[0]
        known = recall(token)
        if known is not None:
            found: _C = known
            return found
        obj = open_(key, *args, **kwargs)
        remember(token, obj)
        return obj

    return reopen


def local_reduce(
    obj: object, token: str, what: str
) -> tuple[Callable[..., object], tuple[object, ...]]:
    """``__reduce__`` of a thread-backend channel: resolvable in this process only.

    Args:
        obj: The channel (kept alive by the caller while it is in flight).
        token: Its registry token.
        what: ``"Queue"``, ``"Lock"``... for the error message.

    Returns:
        A reduce tuple.
    """
    remember(token, obj)
    return (_recall_local, (os.getpid(), token, what))


def _recall_local(pid: int, token: str, what: str) -> object:
    obj = recall(token) if pid == os.getpid() else None
    if obj is None:
        where = "was garbage-collected" if pid == os.getpid() else f"lives in process {pid}"
        raise RuntimeError(
            f"a {what} of the thread backend cannot be used in process {os.getpid()}: it {where}. "
            f"Create it with backend='process' (or from the executor: ex.{what}(...)) "
            "to share it between processes"
        )
    return obj


# -- owning names -------------------------------------------------------------------------


def own(
    anchor: object,
    *,
    semaphores: tuple[str, ...] = (),
    segments: tuple[str, ...] = (),
    fifos: tuple[str, ...] = (),
    prefixes: tuple[str, ...] = (),
) -> weakref.finalize[Any, Any]:
    """Register names created here; unlink them when ``anchor`` is collected or at exit.

    The resource tracker learns every name, so that they are removed even if
    this process is killed. Only the creating process unlinks (a forked child
    that inherited ``anchor`` does not). At exit, names go after the queues'
    feeder threads have written what they hold (see :func:`_release_at_exit`).

    Args:
        anchor: The object whose lifetime the names follow.
        semaphores: Names of POSIX semaphores.
        segments: Names of POSIX shared-memory segments.
        fifos: Paths of FIFOs.
        prefixes: Name prefixes of shared-memory segments that any process may
            have made for the channel (its big items, see :mod:`._big`): every
            segment whose name starts with one is unlinked on release. The
            resource tracker is started now, so that processes started from
            here on share it with this one.

    Returns:
        The finalizer; calling it releases the names now.
    """
    for name in semaphores:
        resource_tracker.register(name, "semaphore")
    for name in segments:
        resource_tracker.register(name, "shared_memory")
    for path in fifos:
        tracked = _tracked_fifo_name(path)
        if tracked is not None:
            resource_tracker.register(tracked, "shared_memory")
    if prefixes:
        resource_tracker.ensure_running()
    key = next(_keys)
    names = (os.getpid(), semaphores, segments, fifos, prefixes)
    _pending[key] = names
    # weakref's own exit hook runs before multiprocessing's (it is registered later)
    # and disables every finalizer: the names are released at exit by _release_at_exit.
    finalizer = weakref.finalize(anchor, _release, key, *names)
    finalizer.atexit = False
    at_exit(_release_at_exit, -10)
    return finalizer


_keys = itertools.count()
_pending: dict[
    int, tuple[int, tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]
] = {}
#: Each exit hook: its priority, and the process in which it is registered.
_exit_hooks: dict[Callable[[], None], tuple[int, int]] = {}


class _HookHolder:
    """What the after-fork callback hangs on (``register_after_fork`` keeps a weak reference)."""


_HOOK_HOLDER: Final = _HookHolder()


def at_exit(hook: Callable[[], None], priority: int) -> None:
    """Run ``hook`` when this process exits, once, in ``multiprocessing``'s exit order.

    ``multiprocessing`` runs these finalizers at the exit of the main process
    and of every process it started (whatever the start method); higher
    priorities run first. A process started by ``multiprocessing`` clears the
    finalizers it holds just before it runs its target, after a spawn or
    forkserver child has imported the main module: the hooks registered by
    that import (a module-level ``Lock()`` or ``Queue()``) are registered again
    then, so the names they release are not left to the resource tracker.
    """
    if not _exit_hooks:
        util.register_after_fork(_HOOK_HOLDER, _register_again)
    if _exit_hooks.get(hook, (0, 0))[1] != os.getpid():
        _exit_hooks[hook] = (priority, os.getpid())
        util.Finalize(None, hook, exitpriority=priority)


def _register_again(_: object) -> None:
    """In a process ``multiprocessing`` starts: register every known exit hook again."""
    for hook, (priority, _pid) in list(_exit_hooks.items()):
        _exit_hooks[hook] = (priority, os.getpid())
        util.Finalize(None, hook, exitpriority=priority)


def _release_at_exit() -> None:
    for key, names in list(_pending.items()):
        _release(key, *names)


def _release(
    key: int,
    pid: int,
    semaphores: tuple[str, ...],
    segments: tuple[str, ...],
    fifos: tuple[str, ...],
    prefixes: tuple[str, ...] = (),
) -> None:
    if _pending.pop(key, None) is None or os.getpid() != pid:
        return  # released already, or inherited from the process that made them
    for prefix in prefixes:
        unlink_prefix(prefix)
    for name in semaphores:
        with contextlib.suppress(FileNotFoundError):
            _mp.sem_unlink(name)
        resource_tracker.unregister(name, "semaphore")
    for name in segments:
        with contextlib.suppress(FileNotFoundError):
            shm_unlink(name)
        resource_tracker.unregister(name, "shared_memory")
    for path in fifos:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        tracked = _tracked_fifo_name(path)
        if tracked is not None:
            resource_tracker.unregister(tracked, "shared_memory")


def _tracked_fifo_name(path: str) -> str | None:
    """The name under which the resource tracker can remove a FIFO, if any.

    The tracker's shared-memory cleanup unlinks ``/dev/shm/<name>`` whatever
    the file is, so a FIFO there is removed like a segment if its owner dies.
    """
    folder, base = os.path.split(path)
    return "/" + base if folder == _SHM_DIR and sys.platform.startswith("linux") else None


def gone(what: str, exc: OSError) -> ClosedChannelError:
    """The error for a name that no longer exists when another process opens it."""
    return ClosedChannelError(
        f"cannot open the {what} in process {os.getpid()}: its creating process already "
        f"released it ({exc.strerror or exc}). A channel lives as long as the object that "
        "created it: keep that object referenced until every process that receives it has "
        "opened it"
    )


# -- semaphores ---------------------------------------------------------------------------


def create_semlock(kind: int, value: int, maxvalue: int) -> tuple[RawSemLock, str]:
    """Create a named semaphore that other processes can open by name.

    Args:
        kind: :data:`SEMAPHORE` or :data:`RECURSIVE_MUTEX`.
        value: Initial value.
        maxvalue: Largest value.

    Returns:
        ``(semlock, name)``; the caller passes the name to :func:`own`.
    """
    for _ in range(100):
        name = "/" + new_token()
        try:
            semlock = _mp.SemLock(kind, value, maxvalue, name, False)
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
        return cast("RawSemLock", semlock), name
    raise FileExistsError("cannot find a free semaphore name")  # pragma: no cover


def open_semlock(kind: int, maxvalue: int, name: str, what: str) -> RawSemLock:
    """Open, in this process, a semaphore made by :func:`create_semlock`.

    Args:
        kind: As given at creation.
        maxvalue: As given at creation.
        name: Its name.
        what: What it belongs to, for the error message.

    Returns:
        The semaphore.

    Raises:
        ClosedChannelError: Its creator already released it.
    """
    try:
        return cast("RawSemLock", _mp.SemLock._rebuild(0, kind, maxvalue, name))
    except (FileNotFoundError, OSError) as exc:
        raise gone(what, exc) from None


# -- shared memory and FIFOs --------------------------------------------------------------


def shm_open(name: str, flags: int, mode: int = 0o600) -> int:
    """``shm_open(3)``: return a descriptor of the named segment."""
    fd: int = _shm.shm_open(name, flags, mode)
    return fd


def shm_unlink(name: str) -> None:
    """``shm_unlink(3)``."""
    _shm.shm_unlink(name)


def _fifo_dir() -> str:
    if os.path.isdir(_SHM_DIR) and os.access(_SHM_DIR, os.W_OK | os.X_OK):
        return _SHM_DIR
    return tempfile.gettempdir()  # pragma: no cover - no tmpfs


def create_fifo(token: str, suffix: str) -> str:
    """Create a FIFO readable and writable by this user only; return its path.

    Raises:
        NotImplementedError: The platform has no FIFOs (Windows).
    """
    if not hasattr(os, "mkfifo"):  # pragma: no cover - Windows
        raise NotImplementedError(
            "Queues and Pipes of the process backend need POSIX FIFOs, which this platform "
            "lacks; use backend='thread'"
        )
    path = os.path.join(_fifo_dir(), f"{token}{suffix}")
    os.mkfifo(path, stat.S_IRUSR | stat.S_IWUSR)
    return path
