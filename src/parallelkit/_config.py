"""Where the backend flag (and its companions) come from.

Every setting is resolved field by field, first match wins::

    1. the argument          Executor(backend="thread")
    2. the context           with parallelkit.config(backend="thread"): ...
                             (a ContextVar: private to the thread / asyncio task
                             that entered it, inherited by tasks it creates)
    3. the environment       PARALLELKIT_BACKEND, PARALLELKIT_WORKERS,
                             PARALLELKIT_START_METHOD, PARALLELKIT_CHECK_PICKLE,
                             PARALLELKIT_ADDRESS, PARALLELKIT_FORWARD_LOGGING
    4. a config file         the file named by PARALLELKIT_CONFIG, else the
                             [tool.parallelkit] table of the nearest
                             pyproject.toml at or above the working directory
    5. the default           process / CPUs this process may use / forkserver / False /
                             no address / True

A bad value from any source raises :class:`~parallelkit.ConfigError` (a
``ValueError``) naming the value, its source and the valid choices.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import multiprocessing
import os
import re
from collections.abc import Generator, Mapping
from types import MappingProxyType
from typing import Final, NamedTuple, final

from ._backends._registry import backend_names, missing_requirement
from ._config_file import file_values, find_config_file
from ._errors import ConfigError

__all__ = (
    "Settings",
    "Source",
    "config",
    "config_file",
    "current_settings",
    "default_workers",
    "resolve_settings",
    "resolve_with_sources",
    "workers_source",
)

#: The start method used when none is configured, on every Python version.
DEFAULT_START_METHOD: Final = "forkserver"
DEFAULT_BACKEND: Final = "process"

_KEYS: Final = (
    "backend",
    "workers",
    "start_method",
    "check_pickle",
    "address",
    "forward_logging",
    "shared_threshold",
)
_ENV: Final = {
    "backend": "PARALLELKIT_BACKEND",
    "workers": "PARALLELKIT_WORKERS",
    "start_method": "PARALLELKIT_START_METHOD",
    "check_pickle": "PARALLELKIT_CHECK_PICKLE",
    "address": "PARALLELKIT_ADDRESS",
    "forward_logging": "PARALLELKIT_FORWARD_LOGGING",
    "shared_threshold": "PARALLELKIT_SHARED_THRESHOLD",
}
#: Buffers of at least this many bytes cross to process workers and process
#: channels through shared memory (see docs/channels.md; measured in
#: benchmarks/bench_bulk.py).
DEFAULT_SHARED_THRESHOLD: Final = 256 * 1024
_OFF: Final = frozenset({"off", "none", "false", "no", "0"})
_SIZE: Final = re.compile(r"(\d+)\s*([kmg]i?b?|b)?", re.IGNORECASE)
_UNITS: Final = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


class _Unset(enum.Enum):
    UNSET = enum.auto()


#: "Not given" for a setting whose value may itself be None (``shared_threshold``).
UNSET: Final = _Unset.UNSET
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


@final
class Settings(NamedTuple):
    """The resolved configuration an Executor, Pool or channel is built with.

    An immutable named tuple.

    Attributes:
        backend: ``"process"``, ``"thread"``, ``"serial"`` (or another
            registered backend).
        workers: Number of workers (at least 1).
        start_method: The ``multiprocessing`` start method of the process backend.
        check_pickle: Round-trip tasks and results through the serializer on
            the thread and serial backends, to catch what processes would refuse.
        address: The dask scheduler to run on (``"tcp://10.0.0.5:8786"``), or
            None: the dask backend then starts a cluster on this machine.
            Other backends ignore it.
        forward_logging: Hand the log records of process workers to this
            process's logging handlers (see the Logging section of the
            reliability docs).
        shared_threshold: Buffers (numpy arrays, bytes, bytearrays,
            memoryviews) of at least this many bytes cross to and from
            process workers and process channels through shared memory
            instead of a pipe; None: never.
    """

    backend: str
    workers: int
    start_method: str
    check_pickle: bool
    address: str | None = None
    forward_logging: bool = True
    shared_threshold: int | None = DEFAULT_SHARED_THRESHOLD


def default_workers() -> int:
    """Return the number of CPUs this process may run on (its affinity mask).

    Returns:
        At least 1.

    Examples:
        >>> import os
        >>> import parallelkit
        >>> parallelkit.default_workers() == len(os.sched_getaffinity(0))
        True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without affinity
        return max(1, os.cpu_count() or 1)


# -- validation ---------------------------------------------------------------------------


def _choices(values: list[str] | tuple[str, ...]) -> str:
    return ", ".join(repr(v) for v in sorted(values))


def _check(key: str, value: object, source: str, *, text: bool = False) -> object:
    """Validate one raw value from ``source``; return it in its canonical type.

    ``text`` values (environment variables) are parsed from strings; values
    from code and from TOML must already have the right type.
    """
    if key == "backend":
        names = backend_names()
        if not isinstance(value, str) or value not in names:
            raise ConfigError(
                f"unknown backend {value!r} from {source}; expected one of {_choices(names)}"
            )
        missing = missing_requirement(value)
        if missing is not None:
            raise ConfigError(f"backend {value!r} from {source}: {missing}")
        return value
    if key == "workers":
        if text and isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ConfigError(
                    f"workers must be a whole number >= 1, got {value!r} from {source}"
                ) from None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"workers must be a whole number >= 1, got {value!r} from {source}")
        return value
    if key == "start_method":
        methods = multiprocessing.get_all_start_methods()
        if not isinstance(value, str) or value not in methods:
            raise ConfigError(
                f"unknown start_method {value!r} from {source}; expected one of {_choices(methods)}"
            )
        return value
    if key in ("check_pickle", "forward_logging"):
        if text and isinstance(value, str):
            low = value.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
        elif isinstance(value, bool):
            return value
        expected = "1/0, true/false, yes/no or on/off" if text else "True or False"
        raise ConfigError(f"{key} must be {expected}, got {value!r} from {source}")
    if key == "shared_threshold":
        return _check_threshold(value, source, text=text)
    if key == "address":
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(
                f"address must be a scheduler address such as 'tcp://10.0.0.5:8786', "
                f"got {value!r} from {source}"
            )
        return value.strip()
    raise ConfigError(f"unknown setting {key!r} from {source}; expected one of {_choices(_KEYS)}")


def _check_threshold(value: object, source: str, *, text: bool) -> int | None:
    problem = (
        "shared_threshold must be a size in bytes >= 1 (such as 1048576, or '1MiB' in "
        "text), or None (in text: 'off') to send every buffer through the pipe"
    )
    if value is None or value is False:
        return None
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _OFF:
            return None
        match = _SIZE.fullmatch(low)
        if match is None:
            raise ConfigError(f"{problem}; got {value!r} from {source}")
        value = int(match.group(1)) * _UNITS[(match.group(2) or "")[:1]]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{problem}; got {value!r} from {source}")
    return value


# -- the context layer --------------------------------------------------------------------

_NOTHING: Final[Mapping[str, object]] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "parallelkit_config"
)


@contextlib.contextmanager
def config(
    *,
    backend: str | None = None,
    workers: int | None = None,
    start_method: str | None = None,
    check_pickle: bool | None = None,
    address: str | None = None,
    forward_logging: bool | None = None,
    shared_threshold: int | _Unset | None = UNSET,
) -> Generator[Settings, None, None]:
    """Set defaults for Executors, Pools and channels created inside the block.

    The setting is local to the current thread or asyncio task (it is a
    context variable) and is undone on exit. An explicit argument to a
    constructor still wins. Blocks nest; inner values win.

    Args:
        backend: The backend flag (``"process"``, ``"thread"``, ``"serial"``).
        workers: Default number of workers.
        start_method: Default start method for the process backend.
        check_pickle: Default for ``check_pickle``.
        address: Default dask scheduler address for the dask backend.
        forward_logging: Whether process workers' log records reach this
            process's handlers.
        shared_threshold: Smallest buffer, in bytes, that crosses between
            processes through shared memory; None sends every buffer through
            the pipe. Left as it is when not given.

    Yields:
        The settings in force inside the block.

    Raises:
        ConfigError: A value is invalid.

    Examples:
        >>> import parallelkit
        >>> with parallelkit.config(backend="serial"):
        ...     with parallelkit.Executor() as ex:
        ...         list(ex.map(abs, [-1, -2]))
        [1, 2]
    """
    given = {
        "backend": backend,
        "workers": workers,
        "start_method": start_method,
        "check_pickle": check_pickle,
        "address": address,
        "forward_logging": forward_logging,
    }
    layer = dict(_context.get(_NOTHING))
    for key, value in given.items():
        if value is not None:
            layer[key] = _check(key, value, f"parallelkit.config({key}=...)")
    if shared_threshold is not UNSET:
        layer["shared_threshold"] = _check(
            "shared_threshold", shared_threshold, "parallelkit.config(shared_threshold=...)"
        )
    token = _context.set(layer)
    try:
        yield current_settings()
    finally:
        _context.reset(token)


# -- resolution ---------------------------------------------------------------------------


def _default(key: str) -> object:
    if key == "backend":
        return DEFAULT_BACKEND
    if key == "workers":
        return default_workers()
    if key == "start_method":
        # forkserver everywhere it exists (POSIX); spawn where it does not (Windows).
        if DEFAULT_START_METHOD in multiprocessing.get_all_start_methods():
            return DEFAULT_START_METHOD
        return "spawn"  # pragma: no cover - Windows
    if key == "address":
        return None
    if key == "shared_threshold":
        return DEFAULT_SHARED_THRESHOLD
    return key == "forward_logging"  # on by default; check_pickle off


@final
class Source(NamedTuple):
    """Where a setting's value came from (for ``python -m parallelkit info``).

    Attributes:
        kind: ``"argument"``, ``"context"``, ``"env"``, ``"file"`` or ``"default"``.
        where: The environment variable or the config file's path, else None.
    """

    kind: str
    where: str | None = None

    def __str__(self) -> str:
        if self.kind == "context":
            return "parallelkit.config(...)"
        if self.kind == "env":
            return f"environment variable {self.where}"
        if self.kind == "file":
            return f"config file {self.where}"
        return self.kind


def _resolve_one(
    key: str, argument: object, from_file: dict[str, object], path: str
) -> tuple[object, Source]:
    if argument is not None:
        return _check(key, argument, f"argument {key}="), Source("argument")
    layer = _context.get(_NOTHING)
    if key in layer:
        return layer[key], Source("context")
    env = os.environ.get(_ENV[key])
    if env is not None and env.strip() != "":
        value = _check(key, env.strip(), f"environment variable {_ENV[key]}", text=True)
        return value, Source("env", _ENV[key])
    if key in from_file:
        return _check(key, from_file[key], f"config file {path}"), Source("file", path)
    return _default(key), Source("default")


def resolve_settings(
    backend: str | None = None,
    workers: int | None = None,
    start_method: str | None = None,
    check_pickle: bool | None = None,
    address: str | None = None,
    forward_logging: bool | None = None,
) -> Settings:
    """Resolve every setting through argument > context > environment > file > default.

    Args:
        backend: Explicit backend, or None to look it up.
        workers: Explicit worker count, or None.
        start_method: Explicit start method, or None.
        check_pickle: Explicit check_pickle, or None.
        address: Explicit dask scheduler address, or None.
        forward_logging: Explicit forward_logging, or None.

    Returns:
        The resolved settings.

    Raises:
        ConfigError: A value from any source is invalid.
    """
    return resolve_with_sources(
        backend, workers, start_method, check_pickle, address, forward_logging
    )[0]


def resolve_with_sources(
    backend: str | None = None,
    workers: int | None = None,
    start_method: str | None = None,
    check_pickle: bool | None = None,
    address: str | None = None,
    forward_logging: bool | None = None,
) -> tuple[Settings, dict[str, Source]]:
    """Like :func:`resolve_settings`, also telling where each value came from.

    Returns:
        The settings, and the :class:`Source` of each by its name.

    Raises:
        ConfigError: A value from any source is invalid.
    """
    values, path = file_values(_KEYS)
    args = {
        "backend": backend,
        "workers": workers,
        "start_method": start_method,
        "check_pickle": check_pickle,
        "address": address,
        "forward_logging": forward_logging,
    }
    # shared_threshold is not an argument: it comes from the context, env or file.
    resolved = {key: _resolve_one(key, args.get(key), values, path) for key in _KEYS}
    b, w, s, c, a, f, t = (resolved[key][0] for key in _KEYS)
    assert isinstance(b, str) and isinstance(w, int) and isinstance(s, str) and isinstance(c, bool)
    assert (a is None or isinstance(a, str)) and isinstance(f, bool)
    assert t is None or isinstance(t, int)
    settings = Settings(
        backend=b,
        workers=w,
        start_method=s,
        check_pickle=c,
        address=a,
        forward_logging=f,
        shared_threshold=t,
    )
    return settings, {key: source for key, (_, source) in resolved.items()}


def config_file() -> str | None:
    """The path of the config file in force (named or found), or None.

    Raises:
        ConfigError: ``PARALLELKIT_CONFIG`` names something that is not a file.
    """
    found = find_config_file()
    return None if found is None else found[0]


def workers_source(workers: int | None) -> str | None:
    """Where the ``workers`` setting comes from, or None when it is the default.

    Args:
        workers: The ``workers=`` argument, or None.

    Returns:
        ``"argument workers="``, ``"parallelkit.config(workers=...)"``, the
        environment variable or the config file; None for the default.
    """
    source = resolve_with_sources(workers=workers)[1]["workers"]
    if source.kind == "default":
        return None
    if source.kind == "argument":
        return "argument workers="
    if source.kind == "context":
        return "parallelkit.config(workers=...)"
    return str(source)


def current_settings() -> Settings:
    """Return the settings an Executor created here with no arguments would use.

    Returns:
        The resolved :class:`Settings`.

    Examples:
        >>> import parallelkit
        >>> with parallelkit.config(backend="thread", workers=3):
        ...     s = parallelkit.current_settings()
        >>> (s.backend, s.workers)
        ('thread', 3)
    """
    return resolve_settings()
