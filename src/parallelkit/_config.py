"""Where the backend flag (and its companions) come from.

Every setting is resolved field by field, first match wins::

    1. the argument          Executor(backend="thread")
    2. the context           with parallelkit.config(backend="thread"): ...
                             (a ContextVar: private to the thread / asyncio task
                             that entered it, inherited by tasks it creates)
    3. the environment       PARALLELKIT_BACKEND, PARALLELKIT_WORKERS,
                             PARALLELKIT_START_METHOD, PARALLELKIT_CHECK_PICKLE,
                             PARALLELKIT_ADDRESS
    4. a config file         the file named by PARALLELKIT_CONFIG, else the
                             [tool.parallelkit] table of the nearest
                             pyproject.toml at or above the working directory
    5. the default           process / CPUs this process may use / forkserver / False /
                             no address

A bad value from any source raises :class:`~parallelkit.ConfigError` (a
``ValueError``) naming the value, its source and the valid choices.
"""

from __future__ import annotations

import contextlib
import contextvars
import multiprocessing
import os
import re
import stat
import sys
from collections.abc import Generator, Mapping
from types import MappingProxyType
from typing import Final, NamedTuple, cast, final

from ._backends._registry import backend_names, missing_requirement
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

_KEYS: Final = ("backend", "workers", "start_method", "check_pickle", "address")
_ENV: Final = {
    "backend": "PARALLELKIT_BACKEND",
    "workers": "PARALLELKIT_WORKERS",
    "start_method": "PARALLELKIT_START_METHOD",
    "check_pickle": "PARALLELKIT_CHECK_PICKLE",
    "address": "PARALLELKIT_ADDRESS",
}
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
    """

    backend: str
    workers: int
    start_method: str
    check_pickle: bool
    address: str | None = None


def default_workers() -> int:
    """Return the number of CPUs this process may run on (its affinity mask).

    Returns:
        At least 1.
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
    if key == "check_pickle":
        if text and isinstance(value, str):
            low = value.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
        elif isinstance(value, bool):
            return value
        expected = "1/0, true/false, yes/no or on/off" if text else "True or False"
        raise ConfigError(f"check_pickle must be {expected}, got {value!r} from {source}")
    if key == "address":
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(
                f"address must be a scheduler address such as 'tcp://10.0.0.5:8786', "
                f"got {value!r} from {source}"
            )
        return value.strip()
    raise ConfigError(f"unknown setting {key!r} from {source}; expected one of {_choices(_KEYS)}")


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

    Yields:
        The settings in force inside the block.

    Raises:
        ConfigError: A value is invalid.

    Example:
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
    }
    layer = dict(_context.get(_NOTHING))
    for key, value in given.items():
        if value is not None:
            layer[key] = _check(key, value, f"parallelkit.config({key}=...)")
    token = _context.set(layer)
    try:
        yield current_settings()
    finally:
        _context.reset(token)


# -- the file layer -----------------------------------------------------------------------

_file_cache: dict[tuple[str, float], dict[str, object]] = {}


def _find_config_file() -> tuple[str, bool, float] | None:
    """Return (path, explicit, modification time) of the config file in force, or None.

    One ``stat`` per folder from the working directory up: this runs for
    every executor and pool created.
    """
    named = os.environ.get("PARALLELKIT_CONFIG")
    if named:
        found = _file_mtime(named)
        if found is None:
            raise ConfigError(
                f"PARALLELKIT_CONFIG names {named!r}, which is not a file; "
                "point it at a TOML file or unset it"
            )
        return named, True, found
    folder = os.getcwd()
    while True:
        candidate = os.path.join(folder, "pyproject.toml")
        found = _file_mtime(candidate)
        if found is not None:
            return candidate, False, found
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _file_mtime(path: str) -> float | None:
    """The modification time of a regular file, or None if ``path`` is not one."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_mtime if stat.S_ISREG(info.st_mode) else None


def _file_values() -> tuple[dict[str, object], str]:
    """The settings of the config file in force, and its path ("" when there is none)."""
    found = _find_config_file()
    if found is None:
        return {}, ""
    path, explicit, mtime = found
    key = (path, mtime)
    cached = _file_cache.get(key)
    if cached is None:
        cached = _read_settings(path, explicit)
        _file_cache.clear()
        _file_cache[key] = cached
    return cached, path


def _read_settings(path: str, explicit: bool) -> dict[str, object]:
    """Read the settings of a config file, checked against the known keys.

    They are its ``[tool.parallelkit]`` table, or its top level when
    PARALLELKIT_CONFIG names the file.
    """
    with open(path, "rb") as file:
        data = file.read()
    if not explicit and not _may_hold_our_table(data):
        return {}  # a project file with no [tool.parallelkit]: no need to parse it
    document = _parse_toml(data, path, explicit)
    tool = document.get("tool")
    table: object = None
    if isinstance(tool, dict) and "parallelkit" in tool:
        table = tool["parallelkit"]  # pyright: ignore[reportUnknownVariableType]
    elif explicit:
        table = document
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise ConfigError(f"[tool.parallelkit] in {path} must be a table")
    entries = cast("Mapping[object, object]", table)
    settings = {str(k): v for k, v in entries.items()}
    for name in settings:
        if name not in _KEYS:
            raise ConfigError(
                f"unknown setting {name!r} in config file {path}; expected one of {_choices(_KEYS)}"
            )
    return settings


def _parse_toml(data: bytes, path: str, explicit: bool) -> dict[str, object]:
    if sys.version_info >= (3, 11):
        import tomllib

        try:
            return tomllib.loads(data.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot parse config file {path}: {exc}") from None
    return _parse_toml_subset(data.decode("utf-8"), path, read_root=explicit)  # pragma: no cover


#: Key lines that set tool.parallelkit in a form the subset reader does not read:
#: under [tool], and at the top level. Compiled on first use (``re`` keeps them),
#: which few files ever need: importing parallelkit, as every spawn and forkserver
#: worker does, need not pay for compiling them.
_OUR_KEY_IN_TOOL: Final = r"""["']?parallelkit["']?\s*[.=]"""
_OUR_KEY_AT_TOP: Final = r"""tool\s*\.\s*["']?parallelkit|tool\s*=\s*\{.*parallelkit"""
#: What a table name may hold: bare keys, dots, quotes and spaces.
_NAME_CHARS: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-\"' "
)
_QUOTES_AND_SPACES = str.maketrans("", "", "\"' ")


def _header(line: str) -> str | None:
    """The table a (stripped) line opens, as ``a.b`` (quotes and spaces removed), or None.

    The line is ``[a.b]`` or ``[[a.b]]``, maybe with spaces inside the brackets
    and a comment after them. (String operations, not a pattern: every line of
    a project's pyproject.toml that starts with a bracket comes here.)
    """
    if line[:1] != "[":
        return None
    array = line[:2] == "[["
    start, close = (2, "]]") if array else (1, "]")
    end = line.find(close, start)
    if end < 0:
        return None
    name = line[start:end].strip()
    after = line[end + len(close) :].lstrip()
    if not name or (after and after[0] != "#") or not _NAME_CHARS.issuperset(name):
        return None
    return name.translate(_QUOTES_AND_SPACES)


def _is_ours(table: str) -> bool:
    """Whether a table's dotted name is ``tool.parallelkit`` or lies within it."""
    return table == "tool.parallelkit" or table.startswith("tool.parallelkit.")


def _sets_our_table_otherwise(line: str, table: str) -> bool:
    """Whether a key line of ``table`` ("" at the top) sets tool.parallelkit after all."""
    if table == "tool":
        return re.match(_OUR_KEY_IN_TOOL, line) is not None
    return table == "" and re.match(_OUR_KEY_AT_TOP, line) is not None


def _may_hold_our_table(data: bytes) -> bool:
    """Whether a project's pyproject.toml may set tool.parallelkit (then it is parsed).

    A look at its lines, table by table: a ``tool.parallelkit`` header, or a
    key that sets the table under ``[tool]`` or at the top level. So a file
    that only names parallelkit as a dependency (``"parallelkit>=0.1"``, or
    ``parallelkit = "^0.1"`` in a Poetry table) or an entry point is not
    parsed. A file with multi-line strings, which could hide a header, is
    parsed whenever it names parallelkit: a wrong guess only costs a parse.
    """
    if b"parallelkit" not in data:
        return False
    text = data.decode("utf-8", "replace")
    if '"""' in text or "'''" in text:
        return True
    table = ""
    for raw in text.splitlines():
        line = raw.strip()
        header = _header(line)
        if header is not None:
            table = header
            if _is_ours(table):
                return True
        elif "parallelkit" in line and _sets_our_table_otherwise(line, table):
            return True  # (a key line that does not name parallelkit cannot set its table)
    return False


_PAIR: Final = r"^([A-Za-z0-9_\-]+)\s*=\s*(.+?)\s*$"  # (compiled on first use)


def _parse_toml_subset(text: str, path: str, *, read_root: bool) -> dict[str, object]:
    """Read the ``[tool.parallelkit]`` table without tomllib.

    Python 3.10 has no TOML parser in its standard library and parallelkit
    depends on nothing but cloudpickle, so on 3.10 only simple
    ``key = "string" | integer | true | false`` lines are understood, which is
    all parallelkit's settings need. The tables are laid out as tomllib lays
    them out, so that the checks that follow treat both alike (a
    ``[tool.parallelkit.x]`` sub-table is an unknown setting ``x``,
    ``[[tool.parallelkit]]`` is not a table); the lines of other tables (and,
    in a pyproject.toml, the top-level keys) are skipped unread.
    """
    result: dict[str, object] = {}
    table: dict[str, object] | None = result if read_root else None
    current = ""  # the table the lines are in ("" before any header)
    declared: set[str] = set()
    open_string = ""  # the quotes of a multi-line string the lines are in
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if open_string:
            if line.count(open_string) % 2:
                open_string = ""
            continue
        open_string = next((q for q in ('"""', "'''") if line.count(q) % 2), "")
        if not line or line.startswith("#"):
            continue
        header = _header(line)
        if header is not None:
            current = header
            ours = _is_ours(current)
            table = None
            if ours or read_root:  # (in a pyproject.toml, other tables do not matter)
                array = line.startswith("[[")
                if not array and current in declared:
                    raise ConfigError(
                        f"line {number} of config file {path} declares [{current}] a second "
                        "time: give each table one header"
                    )
                declared.add(current)
                made = _open_table(result, current, array, number, path)
                table = made if ours else None
            continue
        if line.startswith("["):
            table = None
            current = "?"
            continue
        if table is None:
            if _sets_our_table_otherwise(line, current):
                raise ConfigError(
                    f"line {number} of config file {path} sets parallelkit's settings in a "
                    "form that Python 3.10 cannot read without a TOML library: write them "
                    "as a [tool.parallelkit] table of 'key = value' lines"
                )
            continue
        pair = re.match(_PAIR, line)
        if not pair:
            raise ConfigError(f"cannot parse line {number} of config file {path}: {raw!r}")
        table[pair.group(1)] = _toml_scalar(pair.group(2), number, path)
    return result


def _open_table(
    document: dict[str, object], name: str, array: bool, number: int, path: str
) -> dict[str, object]:
    """Make the table a header names in ``document``, as tomllib would; return it."""
    node = document
    *parents, last = name.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if isinstance(child, list) and child:
            child = cast("list[object]", child)[-1]  # [[a]] then [a.b]: b is in the last a
        if not isinstance(child, dict):
            break
        node = cast("dict[str, object]", child)
    else:
        made: dict[str, object] = {}
        if not array:
            found = node.setdefault(last, made)
            if isinstance(found, dict):
                return cast("dict[str, object]", found)
        else:
            found = node.setdefault(last, [])
            if isinstance(found, list):
                cast("list[object]", found).append(made)
                return made
    raise ConfigError(
        f"line {number} of config file {path} declares [{name}] where a value or another "
        "kind of table already is: give each table one header"
    )


def _toml_scalar(text: str, number: int, path: str) -> object:
    if text[:1] in ("'", '"'):
        end = text.find(text[0], 1)
        rest = text[end + 1 :].strip() if end > 0 else "?"
        if not rest or rest.startswith("#"):
            return text[1:end]
    else:
        value = text.split("#", 1)[0].strip()
        if value in ("true", "false"):
            return value == "true"
        try:
            return int(value.replace("_", ""))
        except ValueError:
            pass
    raise ConfigError(
        f"cannot read the value on line {number} of config file {path}: {text!r}; "
        "use a quoted string, a whole number, true or false"
    )


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
    return False


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
    key: str, argument: object, file_values: dict[str, object], path: str
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
    if key in file_values:
        return _check(key, file_values[key], f"config file {path}"), Source("file", path)
    return _default(key), Source("default")


def resolve_settings(
    backend: str | None = None,
    workers: int | None = None,
    start_method: str | None = None,
    check_pickle: bool | None = None,
    address: str | None = None,
) -> Settings:
    """Resolve every setting through argument > context > environment > file > default.

    Args:
        backend: Explicit backend, or None to look it up.
        workers: Explicit worker count, or None.
        start_method: Explicit start method, or None.
        check_pickle: Explicit check_pickle, or None.
        address: Explicit dask scheduler address, or None.

    Returns:
        The resolved settings.

    Raises:
        ConfigError: A value from any source is invalid.
    """
    return resolve_with_sources(backend, workers, start_method, check_pickle, address)[0]


def resolve_with_sources(
    backend: str | None = None,
    workers: int | None = None,
    start_method: str | None = None,
    check_pickle: bool | None = None,
    address: str | None = None,
) -> tuple[Settings, dict[str, Source]]:
    """Like :func:`resolve_settings`, also telling where each value came from.

    Returns:
        The settings, and the :class:`Source` of each by its name.

    Raises:
        ConfigError: A value from any source is invalid.
    """
    file_values, path = _file_values()
    args = {
        "backend": backend,
        "workers": workers,
        "start_method": start_method,
        "check_pickle": check_pickle,
        "address": address,
    }
    resolved = {key: _resolve_one(key, args[key], file_values, path) for key in _KEYS}
    b, w, s, c, a = (resolved[key][0] for key in _KEYS)
    assert isinstance(b, str) and isinstance(w, int) and isinstance(s, str) and isinstance(c, bool)
    assert a is None or isinstance(a, str)
    settings = Settings(backend=b, workers=w, start_method=s, check_pickle=c, address=a)
    return settings, {key: source for key, (_, source) in resolved.items()}


def config_file() -> str | None:
    """The path of the config file in force (named or found), or None.

    Raises:
        ConfigError: ``PARALLELKIT_CONFIG`` names something that is not a file.
    """
    found = _find_config_file()
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

    Example:
        >>> import parallelkit
        >>> with parallelkit.config(backend="thread", workers=3):
        ...     s = parallelkit.current_settings()
        >>> (s.backend, s.workers)
        ('thread', 3)
    """
    return resolve_settings()
