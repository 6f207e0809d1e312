"""mypy and pyright over ``tests/type_tests``: misuse is an error, correct use is not.

- Every ``type_tests/bad*.py`` file opens with set-up lines that end in
  ``# ok``; every other line that is not blank or a comment is one
  statement that both checkers must report. No error may fall on any other line.
- Every other file there (``api_ok.py``...) must pass both checkers cleanly.

The checkers run with the project's settings from ``pyproject.toml``, minus
the exclusion that keeps the bad files out of the ordinary type check (mypy
checks files named on its command line even when excluded; pyright gets a
copy of its settings without ``include``/``exclude``). They run once per
checker for the whole module and are skipped where they are not installed
(the oldest-Python environment has only the test dependencies).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(300)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TYPE_TESTS = HERE / "type_tests"
BAD_FILES = sorted(TYPE_TESTS.glob("bad*.py"))
GOOD_FILES = sorted(path for path in TYPE_TESTS.glob("*.py") if path not in BAD_FILES)

OK_MARK = re.compile(r"#\s*ok\s*$")
MYPY_ERROR = re.compile(r"^(?P<path>.+?):(?P<line>\d+): error: (?P<message>.*)$")

PROJECT = ROOT / "pyproject.toml"


@dataclasses.dataclass(frozen=True)
class Report:
    """The errors one checker found, by file and line (1-based)."""

    checker: str
    errors: dict[Path, dict[int, list[str]]]

    def lines(self, path: Path) -> dict[int, list[str]]:
        return self.errors.get(path.resolve(), {})


def must_fail(path: Path) -> dict[int, str]:
    """The lines of a bad file that both checkers must report, by number."""
    lines: dict[int, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#") and not OK_MARK.search(line):
            lines[number] = line
    return lines


def add_error(errors: dict[Path, dict[int, list[str]]], file: str, line: int, message: str) -> None:
    errors.setdefault(Path(file).resolve(), {}).setdefault(line, []).append(message)


def run(command: list[str], checker: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, encoding="utf-8", check=False
    )
    if result.returncode not in (0, 1):  # 0: clean, 1: errors found, else: it failed to run
        pytest.fail(
            f"{checker} failed to run (exit code {result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


def run_mypy(files: Iterable[Path], workdir: Path) -> Report:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed in this environment (it comes with the dev extra)")
    result = run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(PROJECT),
            "--cache-dir",
            str(workdir / "cache"),
            "--show-absolute-path",
            "--no-error-summary",
            "--no-pretty",
            "--no-color-output",
            *map(str, files),
        ],
        "mypy",
    )
    errors: dict[Path, dict[int, list[str]]] = {}
    for output in result.stdout.splitlines():
        match = MYPY_ERROR.match(output)
        if match:
            add_error(errors, match["path"], int(match["line"]), match["message"])
    if result.returncode == 1 and not errors:
        pytest.fail(f"mypy reported errors that could not be read:\n{result.stdout}")
    return Report("mypy", errors)


def pyright_settings() -> dict[str, Any]:
    """The project's pyright settings, for any file named on the command line."""
    if sys.version_info < (3, 11):
        pytest.skip("reading the project's pyright settings needs tomllib (Python 3.11+)")
    else:
        import tomllib

        table: dict[str, Any] = tomllib.loads(PROJECT.read_text(encoding="utf-8"))["tool"][
            "pyright"
        ]
        settings = {k: v for k, v in table.items() if k not in ("include", "exclude")}
        # The settings file lives in a temporary folder: resolve imports from the project.
        settings["extraPaths"] = [str(ROOT), *settings.get("extraPaths", [])]
        return settings


def run_pyright(files: Iterable[Path], workdir: Path) -> Report:
    executable = shutil.which("pyright", path=str(Path(sys.executable).parent))
    if executable is None:
        pytest.skip("pyright is not installed in this environment (it comes with the dev extra)")
    config = workdir / "pyrightconfig.json"
    config.write_text(json.dumps(pyright_settings()), encoding="utf-8")
    result = run(
        [
            executable,
            "--outputjson",
            "--project",
            str(config),
            "--pythonpath",
            sys.executable,
            *map(str, files),
        ],
        "pyright",
    )
    try:
        document = json.loads(result.stdout[result.stdout.index("{") :])
    except ValueError:
        pytest.fail(f"pyright's output is not JSON:\n{result.stdout}\n{result.stderr}")
    errors: dict[Path, dict[int, list[str]]] = {}
    for diagnostic in document.get("generalDiagnostics", []):
        if diagnostic.get("severity") == "error":
            line = int(diagnostic["range"]["start"]["line"]) + 1
            add_error(errors, diagnostic["file"], line, diagnostic["message"])
    return Report("pyright", errors)


@pytest.fixture(scope="module", params=["mypy", "pyright"])
def checker(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def check(checker: str, files: Iterable[Path], workdir: Path) -> Report:
    return run_mypy(files, workdir) if checker == "mypy" else run_pyright(files, workdir)


@pytest.fixture(scope="module")
def workdir(checker: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checker's settings and cache, shared by its runs."""
    return tmp_path_factory.mktemp(checker)


@pytest.fixture(scope="module")
def report(checker: str, workdir: Path) -> Report:
    """What one checker says about every file of ``type_tests``."""
    return check(checker, [*BAD_FILES, *GOOD_FILES], workdir)


def show(lines: dict[int, str], path: Path) -> str:
    return "\n".join(f"  {path.name}:{number}: {text}" for number, text in sorted(lines.items()))


def test_type_tests_hold_a_bad_file_and_an_api_file() -> None:
    assert TYPE_TESTS / "bad.py" in BAD_FILES
    assert TYPE_TESTS / "api_ok.py" in GOOD_FILES


@pytest.mark.parametrize("bad_file", BAD_FILES, ids=lambda path: path.name)
def test_checker_reports_every_line_of_bad_file(report: Report, bad_file: Path) -> None:
    expected = must_fail(bad_file)
    assert expected, f"{bad_file.name} has no line that must fail"
    found = report.lines(bad_file)
    missed = {n: text for n, text in expected.items() if n not in found}
    assert not missed, f"{report.checker} accepts these lines:\n{show(missed, bad_file)}"


@pytest.mark.parametrize("bad_file", BAD_FILES, ids=lambda path: path.name)
def test_checker_reports_nothing_else_in_bad_file(report: Report, bad_file: Path) -> None:
    unexpected = dict(report.lines(bad_file))
    for number in must_fail(bad_file):
        unexpected.pop(number, None)
    assert not unexpected, f"{report.checker} reports errors outside the must-fail lines:\n" + (
        "\n".join(
            f"  {bad_file.name}:{number}: {message}"
            for number, messages in sorted(unexpected.items())
            for message in messages
        )
    )


def test_checker_accepts_api_files(report: Report) -> None:
    problems = [
        f"  {path.name}:{number}: {message}"
        for path in GOOD_FILES
        for number, messages in sorted(report.lines(path).items())
        for message in messages
    ]
    assert not problems, f"{report.checker} reports errors in correct code:\n" + "\n".join(problems)


ELEMENT_TYPE_MISMATCHES = """\
import parallelkit  # ok


def to_int(x: int) -> int:  # ok
    return x  # ok


ex = parallelkit.Executor("serial")  # ok
pool = parallelkit.Pool(backend="serial")  # ok
pool.map(to_int, ["x"])
pool.map_async(to_int, ["x"])
pool.imap(to_int, ["x"])
pool.imap_unordered(to_int, ["x"])
ex.imap(to_int, ["x"])
ex.imap_unordered(to_int, ["x"])
"""


def test_checker_reports_items_the_function_does_not_accept(
    checker: str, workdir: Path, tmp_path: Path
) -> None:
    snippet = tmp_path / "bad_element_types.py"
    snippet.write_text(ELEMENT_TYPE_MISMATCHES, encoding="utf-8")
    found = check(checker, [snippet], workdir).lines(snippet)
    missed = {n: text for n, text in must_fail(snippet).items() if n not in found}
    assert not missed, f"{checker} accepts these lines:\n{show(missed, snippet)}"
