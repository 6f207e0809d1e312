"""Every ``>>>`` example in parallelkit's docstrings runs, and prints what it shows.

pytest's ``--doctest-modules`` cannot be used alone here: the public classes
and functions live in private modules and are renamed to ``parallelkit.X``,
so the standard doctest finder, which keeps only the objects it believes a
module defines, skips their methods. This module walks every module of the
package itself, collects each docstring once (module, class, function,
method, property), and runs its examples with :mod:`doctest` under the
leak checker of ``tests/conftest.py``, so an example that leaves workers
behind fails too.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import inspect
import io
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import pytest

import parallelkit
import parallelkit.testing

PACKAGE_DIR = Path(parallelkit.__file__).resolve().parent
OPTIONFLAGS = doctest.ELLIPSIS
#: What the optional extras install: a module that imports one may be left out.
OPTIONAL_PACKAGES: frozenset[str] = frozenset({"distributed", "dask", "numpy", "tqdm"})


def package_modules() -> Iterator[ModuleType]:
    """parallelkit and each of its submodules, private ones included."""
    yield parallelkit
    for info in pkgutil.walk_packages(parallelkit.__path__, "parallelkit."):
        try:
            module = importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            # Modules of an optional extra (the dask backend and its channels)
            # need it; the oldest environment goes without the extras.
            missing = exc.name or ""
            if missing in OPTIONAL_PACKAGES and importlib.util.find_spec(missing) is None:
                continue
            raise
        yield module


def defined_here(obj: object) -> bool:
    """Whether parallelkit's own source defines the object (not an import from elsewhere)."""
    target: Any = inspect.unwrap(obj) if callable(obj) else obj
    if isinstance(target, property):
        target = target.fget
    try:
        source = inspect.getsourcefile(target)
    except TypeError:
        return False
    if source is None:
        return False
    return Path(source).resolve().is_relative_to(PACKAGE_DIR)


def members(cls: type) -> Iterator[tuple[str, object]]:
    """The functions, properties, class and static methods a class itself defines."""
    for name, raw in vars(cls).items():
        if isinstance(raw, (staticmethod, classmethod)):
            func: object = cast("Any", raw).__func__
            yield name, func
        elif inspect.isfunction(raw) or isinstance(raw, property):
            yield name, raw


def where(obj: object, module: ModuleType) -> tuple[str | None, int]:
    """The file and the 0-based line where an object's source starts, for the failure report."""
    target: Any = obj.fget if isinstance(obj, property) else obj
    try:
        _, line = inspect.getsourcelines(target)
        return inspect.getsourcefile(target), line
    except (TypeError, OSError):
        return module.__file__, 0


def public_names() -> dict[int, str]:
    """The public name of each object exported by parallelkit or parallelkit.testing."""
    names: dict[int, str] = {}
    for module in (parallelkit, parallelkit.testing):
        for attr in vars(module)["__all__"]:
            names[id(getattr(module, attr))] = f"{module.__name__}.{attr}"
    return names


def collect() -> list[doctest.DocTest]:
    """Each docstring with examples, once, named by its public name where it has one."""
    parser = doctest.DocTestParser()
    public = public_names()
    seen: set[int] = set()
    found: list[doctest.DocTest] = []

    def add(obj: object, name: str, module: ModuleType) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        text = obj.__doc__ if not isinstance(obj, ModuleType) else module.__doc__
        if not isinstance(text, str) or ">>>" not in text:
            return
        globs = {"__name__": module.__name__}
        file, line = where(obj, module)
        found.append(parser.get_doctest(text, globs, name, file, line))

    for module in package_modules():
        add(module, module.__name__, module)
        for attr in list(vars(module)):
            obj = getattr(module, attr)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or not defined_here(obj):
                continue
            name = public.get(id(obj), f"{obj.__module__}.{obj.__qualname__}")
            add(obj, name, module)
            if inspect.isclass(obj):
                for member_name, member in members(obj):
                    add(member, f"{name}.{member_name}", module)
    return sorted(found, key=lambda test: test.name)


EXAMPLES = collect()


def test_the_examples_are_found() -> None:
    # The walk above must see the methods' examples that --doctest-modules misses.
    names = {test.name for test in EXAMPLES}
    assert "parallelkit.Executor" in names
    assert "parallelkit.Array.locked" in names
    assert len(EXAMPLES) >= 30


@pytest.mark.parametrize("test", EXAMPLES, ids=[test.name for test in EXAMPLES])
def test_docstring_example(test: doctest.DocTest) -> None:
    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS)
    result = runner.run(test, out=report.write, clear_globs=True)
    assert result.attempted > 0
    if result.failed:
        pytest.fail(f"the example in {test.name}'s docstring fails:\n{report.getvalue()}")
