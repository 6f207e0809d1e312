"""The config file layer: which file is in force, and the settings it holds.

The fourth source of :mod:`parallelkit._config`'s precedence. Every executor,
pool and channel created asks for it, so the answer is cached by the file's
path and modification time::

    PARALLELKIT_CONFIG ──► that file, whole (or its [tool.parallelkit] table)
            │ unset
            ▼
    cwd, its parent, ... ──► the nearest pyproject.toml ──► [tool.parallelkit]
            │                     │
            ▼                     ▼ may it set our table? (a look at its lines)
          none                 tomllib (3.11+) or the subset reader (3.10)
                                  │
                                  ▼
                   {setting: raw value}, cached by (path, mtime)

The values are returned raw; :mod:`parallelkit._config` checks them.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from typing import TYPE_CHECKING, Final, cast

from ._errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = (
    "file_values",
    "find_config_file",
    "parse_toml",
    "parse_toml_subset",
    "read_settings",
    "table_header",
)

_file_cache: dict[tuple[str, float], dict[str, object]] = {}


def find_config_file() -> tuple[str, bool, float] | None:
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


def file_values(known: tuple[str, ...]) -> tuple[dict[str, object], str]:
    """The settings of the config file in force, and its path ("" when there is none).

    Args:
        known: The names a setting may have; any other name is an error.
    """
    found = find_config_file()
    if found is None:
        return {}, ""
    path, explicit, mtime = found
    key = (path, mtime)
    cached = _file_cache.get(key)
    if cached is None:
        cached = read_settings(path, explicit, known)
        _file_cache.clear()
        _file_cache[key] = cached
    return cached, path


def read_settings(path: str, explicit: bool, known: tuple[str, ...]) -> dict[str, object]:
    """Read the settings of a config file, checked against the ``known`` names.

    They are its ``[tool.parallelkit]`` table, or its top level when
    PARALLELKIT_CONFIG names the file.
    """
    with open(path, "rb") as file:
        data = file.read()
    if not explicit and not _may_hold_our_table(data):
        return {}  # a project file with no [tool.parallelkit]: no need to parse it
    document = parse_toml(data, path, explicit)
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
        if name not in known:
            choices = ", ".join(repr(k) for k in sorted(known))
            raise ConfigError(
                f"unknown setting {name!r} in config file {path}; expected one of {choices}"
            )
    return settings


def parse_toml(data: bytes, path: str, explicit: bool) -> dict[str, object]:
    """Parse a config file: with tomllib, or on Python 3.10 with the subset reader."""
    if sys.version_info >= (3, 11):
        import tomllib

        try:
            return tomllib.loads(data.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot parse config file {path}: {exc}") from None
    return parse_toml_subset(data.decode("utf-8"), path, read_root=explicit)  # pragma: no cover


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


def table_header(line: str) -> str | None:
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
        header = table_header(line)
        if header is not None:
            table = header
            if _is_ours(table):
                return True
        elif "parallelkit" in line and _sets_our_table_otherwise(line, table):
            return True  # (a key line that does not name parallelkit cannot set its table)
    return False


_PAIR: Final = r"^([A-Za-z0-9_\-]+)\s*=\s*(.+?)\s*$"  # (compiled on first use)


def parse_toml_subset(text: str, path: str, *, read_root: bool) -> dict[str, object]:
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
        header = table_header(line)
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
