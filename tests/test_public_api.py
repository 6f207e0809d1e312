"""The public namespaces: what they export, and how the exported names are made."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import parallelkit
import parallelkit.testing

from .helpers import run_with_tests_importable

MODULES = [parallelkit, parallelkit.testing]


def all_names(module: ModuleType) -> list[str]:
    names: list[str] = list(vars(module)["__all__"])
    return names


def exported(module: ModuleType) -> list[tuple[str, object]]:
    return [(name, getattr(module, name)) for name in all_names(module)]


def public_classes() -> list[type]:
    return [obj for module in MODULES for _, obj in exported(module) if inspect.isclass(obj)]


def extended_by_parallelkit(cls: type) -> bool:
    """Whether the library builds on the class (an error base, a channel end's role)."""
    subclasses: list[type] = cls.__subclasses__()
    return any(sub.__module__.split(".")[0] == "parallelkit" for sub in subclasses)


def public_members(cls: type) -> list[tuple[str, object]]:
    """The public methods and properties a class defines or inherits from parallelkit."""
    found: dict[str, object] = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("parallelkit"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            member: object = getattr(value, "__func__", value)  # unwrap static/class methods
            if inspect.isfunction(member) or isinstance(member, property):
                found[name] = member
    return sorted(found.items())


def module_id(module: ModuleType) -> str:
    return module.__name__


@pytest.mark.parametrize("module", MODULES, ids=module_id)
def test_all_is_a_sorted_tuple_of_unique_names(module: ModuleType) -> None:
    assert type(vars(module)["__all__"]) is tuple
    names = all_names(module)
    assert names == sorted(names)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("module", MODULES, ids=module_id)
def test_every_name_in_all_resolves(module: ModuleType) -> None:
    missing = [name for name in all_names(module) if not hasattr(module, name)]
    assert not missing


def test_the_three_lists_of_public_names_agree() -> None:
    # parallelkit/__init__.py names each public name three times, because each reader
    # needs its own list: the type checkers read the TYPE_CHECKING imports and the
    # literal __all__, and the lazy loader reads _HOME. They must say the same.
    tree = ast.parse(Path(inspect.getfile(parallelkit)).read_text(encoding="utf-8"))
    guarded = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    imported = {
        alias.asname or alias.name: f".{node.module}"
        for node in guarded.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert sorted(imported) == all_names(parallelkit)
    assert vars(parallelkit)["_HOME"] == imported


@pytest.mark.parametrize("module", MODULES, ids=module_id)
def test_every_public_function_and_class_has_a_docstring(module: ModuleType) -> None:
    undocumented = [
        name
        for name, obj in exported(module)
        if (inspect.isclass(obj) or callable(obj)) and not (obj.__doc__ or "").strip()
    ]
    assert not undocumented


@pytest.mark.parametrize("cls", public_classes(), ids=lambda cls: cls.__name__)
def test_every_public_method_has_a_docstring(cls: type) -> None:
    undocumented = [
        name for name, member in public_members(cls) if not (member.__doc__ or "").strip()
    ]
    assert not undocumented


#: Public classes that nothing extends but that are not @final yet, with the reason.
NOT_YET_FINAL: dict[type, str] = {}

#: Public classes that users are meant to subclass, with the reason.
MEANT_TO_BE_SUBCLASSED: dict[type, str] = {
    parallelkit.Process: "override run(), as with multiprocessing.Process",
}


def classes_that_must_be_final() -> list[Any]:
    """Every public class that parallelkit does not extend itself, xfailed where known to lag."""
    return [
        pytest.param(cls, marks=pytest.mark.xfail(strict=True, reason=NOT_YET_FINAL[cls]))
        if cls in NOT_YET_FINAL
        else cls
        for cls in public_classes()
        if not extended_by_parallelkit(cls) and cls not in MEANT_TO_BE_SUBCLASSED
    ]


def test_a_class_meant_to_be_subclassed_is_not_final() -> None:
    for cls in MEANT_TO_BE_SUBCLASSED:
        assert not getattr(cls, "__final__", False), cls


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="typing.final records __final__ only from Python 3.11"
)
@pytest.mark.parametrize("cls", classes_that_must_be_final(), ids=lambda cls: cls.__name__)
def test_public_class_is_final(cls: type) -> None:
    assert getattr(cls, "__final__", False) is True


def test_version_matches_the_installed_distribution() -> None:
    assert parallelkit.__version__ == importlib.metadata.version("parallelkit")


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_a_worker_loads_only_what_it_runs(start_method: str, tmp_path: Path) -> None:
    # Under spawn a worker imports the main script again, and with it
    # parallelkit; under forkserver the server does. Neither should load the
    # channels, the configuration, the exception classes (only the caller
    # rebuilds exceptions), the manager thread's module, the SIGTERM handler or
    # cloudpickle, which a worker never uses.
    script = tmp_path / "main.py"
    script.write_text(
        "import parallelkit\n"
        "from tests.helpers import parallelkit_modules\n"
        "if __name__ == '__main__':\n"
        f"    with parallelkit.Pool(1, start_method={start_method!r}) as pool:\n"
        "        print(' '.join(pool.apply(parallelkit_modules)))\n",
        encoding="utf-8",
    )
    proc = run_with_tests_importable(script, 60)
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.split())
    assert "parallelkit._worker" in loaded
    assert not loaded & {
        "parallelkit._backends._process",
        "parallelkit._signals",
        "parallelkit._channels",
        "parallelkit._config",
        "parallelkit._config_file",
        "parallelkit._engine",
        "parallelkit._errors",
        "parallelkit._results",
        "cloudpickle",
    }, sorted(loaded)
