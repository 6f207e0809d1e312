"""``python -m parallelkit info``: what parallelkit would do here, and why.

The version, Python, every setting resolved for the current directory and
environment with the source it came from, the CPUs this process may use,
the start methods, and which optional extras are installed (looked up, not
imported: importing numpy or dask only to report it would be slow).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import multiprocessing
import os
import platform
import sys
from collections.abc import Callable
from typing import Any, Final

from ._config import DEFAULT_START_METHOD, config_file, default_workers, resolve_with_sources

__all__ = ("EXTRAS", "gather", "main")

#: Optional packages parallelkit makes use of: (import name, distribution, what for).
EXTRAS: Final = (
    ("numpy", "numpy", "Array.numpy() views"),
    ("tqdm", "tqdm", "progress=True bars (parallelkit[progress])"),
    ("dask", "dask", "a dask backend"),
)


def _installed(module: str, distribution: str) -> str | None:
    """The installed version of an extra ("unknown" if it has no metadata), or None."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken entry in sys.modules
        found = False
    if not found:
        return None
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def gather() -> dict[str, Any]:
    """Collect what ``info`` reports, as plain data (what ``--json`` prints).

    Returns:
        A dict of JSON-ready values.

    Raises:
        ConfigError: A setting from any source is invalid.

    Examples:
        >>> from parallelkit._info import gather
        >>> print(*sorted(gather()["settings"]))
        address backend check_pickle forward_logging shared_threshold start_method workers
    """
    from . import __version__

    settings, sources = resolve_with_sources()
    methods = multiprocessing.get_all_start_methods()
    return {
        "parallelkit": __version__,
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "cwd": os.getcwd(),
        "config_file": config_file(),
        "settings": {
            name: {
                "value": getattr(settings, name),
                "source": sources[name].kind,
                "where": sources[name].where,
            }
            for name in settings._fields
        },
        "cpus": {"usable": default_workers(), "machine": os.cpu_count()},
        "start_methods": {
            "available": methods,
            "default": DEFAULT_START_METHOD if DEFAULT_START_METHOD in methods else "spawn",
        },
        "extras": {module: _installed(module, dist) for module, dist, _ in EXTRAS},
    }


def _text(data: dict[str, Any]) -> str:
    """The report for people."""
    python = data["python"]
    lines = [
        f"parallelkit {data['parallelkit']}",
        f"Python {python['version']} ({python['implementation']}) {python['executable']}",
        f"directory {data['cwd']}",
        f"config file {data['config_file'] or '(none)'}",
        "",
        "settings (argument > parallelkit.config(...) > environment > config file > default):",
    ]
    for name, setting in data["settings"].items():
        source = setting["source"]
        if setting["where"] is not None:
            source += f" {setting['where']}"
        lines.append(f"  {name:<16} {setting['value']!s:<12} from {source}")
    cpus = data["cpus"]
    methods = data["start_methods"]
    lines += [
        "",
        f"CPUs this process may use: {cpus['usable']} (of {cpus['machine']} on the machine)",
        f"start methods: {', '.join(methods['available'])} (default {methods['default']})",
        "",
        "extras:",
    ]
    for module, _, what in EXTRAS:
        version = data["extras"][module]
        state = f"{version}" if version is not None else "not installed"
        lines.append(f"  {module:<16} {state:<14} for {what}")
    return "\n".join(lines)


def main(as_json: bool, write: Callable[[str], object] = print) -> None:
    """Print the report, as text or as JSON.

    Raises:
        ConfigError: A setting from any source is invalid.
    """
    data = gather()
    write(json.dumps(data, indent=2) if as_json else _text(data))
