"""Where the backend flag comes from, in which order, and what bad values say."""

from __future__ import annotations

import asyncio
import functools
import re
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import parallelkit
from parallelkit import ConfigError, Executor, config, current_settings
from parallelkit._config import _KEYS  # pyright: ignore[reportPrivateUsage]
from parallelkit._config_file import parse_toml_subset, table_header

ENV = (
    "PARALLELKIT_BACKEND",
    "PARALLELKIT_WORKERS",
    "PARALLELKIT_START_METHOD",
    "PARALLELKIT_CHECK_PICKLE",
    "PARALLELKIT_FORWARD_LOGGING",
    "PARALLELKIT_CONFIG",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no pyproject.toml above a fresh tmp dir


def write_pyproject(path: Path, body: str) -> Path:
    target = path / "pyproject.toml"
    target.write_text(body, encoding="utf-8")
    return target


def test_defaults_are_process_affinity_and_forkserver() -> None:
    s = current_settings()
    assert (s.backend, s.workers, s.start_method, s.check_pickle) == (
        "process",
        parallelkit.default_workers(),
        "forkserver",
        False,
    )


def test_config_file_beats_default(tmp_path: Path) -> None:
    write_pyproject(tmp_path, '[tool.parallelkit]\nbackend = "thread"\nworkers = 3\n')
    s = current_settings()
    assert (s.backend, s.workers) == ("thread", 3)


def test_config_file_found_in_parent_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_pyproject(tmp_path, '[tool.parallelkit]\nbackend = "serial"\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert current_settings().backend == "serial"


def test_parallelkit_config_variable_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_pyproject(tmp_path, '[tool.parallelkit]\nbackend = "thread"\n')
    other = tmp_path / "settings.toml"
    other.write_text('backend = "serial"\ncheck_pickle = true\n', encoding="utf-8")
    monkeypatch.setenv("PARALLELKIT_CONFIG", str(other))
    s = current_settings()
    assert (s.backend, s.check_pickle) == ("serial", True)


def test_environment_beats_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_pyproject(tmp_path, '[tool.parallelkit]\nbackend = "thread"\nworkers = 3\n')
    monkeypatch.setenv("PARALLELKIT_BACKEND", "serial")
    monkeypatch.setenv("PARALLELKIT_WORKERS", "5")
    s = current_settings()
    assert (s.backend, s.workers) == ("serial", 5)


def test_context_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLELKIT_BACKEND", "serial")
    with config(backend="thread"):
        assert current_settings().backend == "thread"
    assert current_settings().backend == "serial"


def test_argument_beats_context() -> None:
    with config(backend="thread"), Executor("serial") as ex:
        assert ex.backend == "serial"


def test_nested_contexts_inner_wins_and_unwinds() -> None:
    with config(backend="thread", workers=2):
        with config(workers=4):
            s = current_settings()
            assert (s.backend, s.workers) == ("thread", 4)
        assert current_settings().workers == 2


def test_context_is_private_to_its_thread() -> None:
    seen: list[str] = []
    entered = threading.Event()
    release = threading.Event()

    def other() -> None:
        entered.wait(5)
        seen.append(current_settings().backend)
        release.set()

    t = threading.Thread(target=other)
    t.start()
    with config(backend="serial"):
        entered.set()
        release.wait(5)
    t.join(5)
    assert seen == ["process"]


def test_context_is_private_to_its_asyncio_task() -> None:
    async def task(name: str, hold: asyncio.Event, go: asyncio.Event) -> str:
        with config(backend=name):
            hold.set()
            await go.wait()
            return current_settings().backend

    async def main() -> list[str]:
        h1, h2, go = asyncio.Event(), asyncio.Event(), asyncio.Event()
        t1 = asyncio.create_task(task("thread", h1, go))
        t2 = asyncio.create_task(task("serial", h2, go))
        await h1.wait()
        await h2.wait()
        go.set()
        return [await t1, await t2]

    assert asyncio.run(main()) == ["thread", "serial"]


def test_executor_uses_configured_backend_and_workers() -> None:
    with config(backend="thread", workers=3), Executor() as ex:
        assert (ex.backend, ex.workers) == ("thread", 3)


# -- bad values: each names the value, the source and the choices --------------------------


def test_bad_backend_argument_names_value_and_choices() -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown backend 'proces' from argument backend=; "
        r"expected one of 'dask', 'process', 'serial', 'thread'",
    ):
        Executor("proces")


def test_bad_backend_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        parallelkit.Pool(backend="nope")


def test_bad_backend_in_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLELKIT_BACKEND", "thraed")
    with pytest.raises(
        ConfigError, match=r"'thraed' from environment variable PARALLELKIT_BACKEND"
    ):
        current_settings()


def test_bad_workers_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLELKIT_WORKERS", "two")
    with pytest.raises(
        ConfigError,
        match=r"workers must be a whole number >= 1, got 'two' from "
        r"environment variable PARALLELKIT_WORKERS",
    ):
        current_settings()


def test_zero_workers_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLELKIT_WORKERS", "0")
    with pytest.raises(ConfigError, match="got 0 from environment variable"):
        current_settings()


def test_bad_start_method_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLELKIT_START_METHOD", "forks")
    with pytest.raises(
        ConfigError,
        match=r"unknown start_method 'forks' from environment variable "
        r"PARALLELKIT_START_METHOD; expected one of 'fork', 'forkserver', 'spawn'",
    ):
        current_settings()


def test_bad_check_pickle_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLELKIT_CHECK_PICKLE", "maybe")
    with pytest.raises(
        ConfigError,
        match=r"check_pickle must be 1/0, true/false, yes/no or on/off, got .maybe. from "
        r"environment variable PARALLELKIT_CHECK_PICKLE",
    ):
        current_settings()


def test_bad_backend_in_config_file_names_the_file(tmp_path: Path) -> None:
    path = write_pyproject(tmp_path, '[tool.parallelkit]\nbackend = "gpu"\n')
    with pytest.raises(ConfigError, match=rf"'gpu' from config file {path}"):
        current_settings()


def test_unknown_key_in_config_file(tmp_path: Path) -> None:
    write_pyproject(tmp_path, '[tool.parallelkit]\nbakend = "thread"\n')
    with pytest.raises(ConfigError, match=r"unknown setting 'bakend' in config file"):
        current_settings()


def test_bad_workers_in_config_file(tmp_path: Path) -> None:
    write_pyproject(tmp_path, "[tool.parallelkit]\nworkers = -1\n")
    with pytest.raises(ConfigError, match=r"got -1 from config file"):
        current_settings()


def test_missing_config_file_named_by_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLELKIT_CONFIG", "no/such/file.toml")
    with pytest.raises(ConfigError, match=r"PARALLELKIT_CONFIG names 'no/such/file\.toml'"):
        current_settings()


def test_unparsable_config_file(tmp_path: Path) -> None:
    write_pyproject(tmp_path, "[tool.parallelkit]\nbackend = = thread\n")
    with pytest.raises(ConfigError, match="config file"):
        current_settings()


def test_a_project_file_that_does_not_mention_parallelkit_is_not_parsed(tmp_path: Path) -> None:
    # Not ours to judge (and parsing it cost the first executor of a program
    # a few milliseconds): a pyproject.toml without [tool.parallelkit] is skipped.
    write_pyproject(tmp_path, '[project]\nname = = "broken"\n')
    assert current_settings().backend == "process"


@pytest.mark.parametrize(
    "text",
    [
        "[project]\ndependencies = [\"parallelkit>=0.1\", 'parallelkit[numpy]']\n",
        '[tool.poetry.dependencies]\nparallelkit = "^0.1"\n',
        '[project.entry-points.pytest11]\nparallelkit = "parallelkit.testing._plugin"\n',
        '[tool.setuptools.package-data]\nparallelkit = ["py.typed"]\n',
    ],
)
def test_a_project_that_only_names_parallelkit_elsewhere_is_not_parsed(
    tmp_path: Path, text: str
) -> None:
    write_pyproject(tmp_path, 'name = = "broken, so a parse would fail"\n' + text)
    assert current_settings().backend == "process"


def test_a_project_file_with_multiline_strings_is_parsed_to_be_sure(tmp_path: Path) -> None:
    # A multi-line string can hold a line that looks like a table header.
    text = '[tool]\nnote = """\n[other]\n"""\nparallelkit.backend = "thread"\n'
    write_pyproject(tmp_path, text)
    if sys.version_info >= (3, 11):
        assert current_settings().backend == "thread"
    else:
        with pytest.raises(ConfigError, match="3\\.10 cannot read"):
            current_settings()


@pytest.mark.parametrize(
    ("text", "a_table_header"),
    [
        ('[tool.parallelkit]\nbackend = "thread"\n', True),
        ('[ tool . "parallelkit" ]\nbackend = "thread"\n', True),
        ("[tool.'parallelkit']\nbackend = 'thread'\n", True),
        ('[tool]\nparallelkit.backend = "thread"\n', False),
        ('[tool]\nparallelkit = { backend = "thread" }\n', False),
        ('[tool]\n"parallelkit" = { backend = "thread" }\n', False),
        ('tool.parallelkit.backend = "thread"\n', False),
        ('tool = { parallelkit = { backend = "thread" } }\n', False),
    ],
)
def test_every_way_of_writing_the_table_is_read(
    tmp_path: Path, text: str, a_table_header: bool
) -> None:
    write_pyproject(tmp_path, text)
    if a_table_header or sys.version_info >= (3, 11):
        assert current_settings().backend == "thread"
    else:
        # Python 3.10 has no TOML parser: what it cannot read is refused, never skipped.
        with pytest.raises(ConfigError, match=r"line \d+ of config file .* 3\.10 cannot read"):
            current_settings()


def test_bad_value_in_context_names_the_context() -> None:
    with (
        pytest.raises(ConfigError, match=r"'x' from parallelkit.config\(backend=...\)"),
        config(backend="x"),
    ):
        pass  # pragma: no cover


def test_explicit_config_file_root_keys_are_read_by_the_subset_reader(tmp_path: Path) -> None:
    parsed = parse_toml_subset('backend = "serial"\n', str(tmp_path / "x.toml"), read_root=True)
    assert parsed == {"backend": "serial"}


def test_strings_are_not_numbers_or_booleans_in_code() -> None:
    with (
        pytest.raises(ConfigError, match="workers must be a whole number >= 1, got '2'"),
        config(workers="2"),  # type: ignore[arg-type]
    ):
        pass  # pragma: no cover
    with (
        pytest.raises(ConfigError, match="check_pickle must be True or False, got 'yes'"),
        config(check_pickle="yes"),  # type: ignore[arg-type]
    ):
        pass  # pragma: no cover


@pytest.mark.parametrize("workers", [0, -2, 1.5, "3", True])
def test_bad_workers_argument_raises_value_error(workers: object) -> None:
    with pytest.raises(ValueError, match="workers must be a whole number >= 1"):
        Executor("serial", workers)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -1, 2.5])
def test_bad_max_tasks_per_worker(value: object) -> None:
    with pytest.raises(ValueError, match="max_tasks_per_worker must be a whole number"):
        Executor("serial", max_tasks_per_worker=value)  # type: ignore[arg-type]


def test_toml_subset_reader_reads_the_parallelkit_table(tmp_path: Path) -> None:
    text = (
        '[project]\nname = "app"\ndependencies = ["a", "b"]\n\n'
        "[tool.parallelkit]  # ours\n"
        'backend = "thread"  # a comment\nworkers = 4\ncheck_pickle = true\n'
        "start_method = 'spawn'\n\n[tool.other]\nx = [1, 2]\n"
    )
    parsed = parse_toml_subset(
        'requires = ["setuptools"]\n' + text, str(tmp_path / "pyproject.toml"), read_root=False
    )
    assert parsed == {
        "tool": {
            "parallelkit": {
                "backend": "thread",
                "workers": 4,
                "check_pickle": True,
                "start_method": "spawn",
            }
        }
    }


def test_toml_subset_reader_rejects_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line 2"):
        parse_toml_subset(
            "[tool.parallelkit]\nworkers = [1]\n", str(tmp_path / "x.toml"), read_root=True
        )


def _subset_reader(data: bytes, path: str, explicit: bool) -> dict[str, object]:
    return parse_toml_subset(data.decode("utf-8"), path, read_root=explicit)


# What a config file holds, as the settings it gives or the error it raises: the
# same under Python 3.10's subset reader and under tomllib (3.11+).
TABLE_LAYOUTS = [
    ('[project]\nname = "x"\n[tool.parallelkit]\nworkers = 3\n', False, {"workers": 3}),
    ("[tool.parallelkit]\nworkers = 3\n[tool.parallelkit.extra]\nx = 1\n", False, "'extra'"),
    ("[[tool.parallelkit.extra]]\nx = 1\n", False, "'extra'"),
    ('[[tool.parallelkit]]\nbackend = "thread"\n', False, "must be a table"),
    ("[tool.parallelkit]\nworkers = 2\n[tool.parallelkit]\nworkers = 3\n", False, "config file"),
    ("[tool.parallelkit.backend]\nx = 1\n", False, {"backend": {"x": 1}}),
    ('backend = "serial"\n[other]\nx = 1\n', True, "'other'"),
    ('[tool.parallelkit]\nbackend = "serial"\n[other]\nx = [1, 2]\n', True, {"backend": "serial"}),
]


@pytest.mark.parametrize(("text", "explicit", "expected"), TABLE_LAYOUTS)
def test_both_toml_readers_lay_tables_out_alike(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    text: str,
    explicit: bool,
    expected: dict[str, object] | str,
) -> None:
    from parallelkit import _config_file

    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    readers = [_subset_reader]
    if sys.version_info >= (3, 11):
        readers.append(_config_file.parse_toml)
    for reader in readers:
        monkeypatch.setattr(_config_file, "parse_toml", reader)
        read = functools.partial(_config_file.read_settings, known=_KEYS)
        if isinstance(expected, dict):
            assert read(str(path), explicit) == expected, reader
        else:
            with pytest.raises(ConfigError, match=expected):
                read(str(path), explicit)


_TABLE = re.compile(r"^\[\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\s*(#.*)?$")
_ARRAY = re.compile(r"^\[\[\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]\s*(#.*)?$")


_PIECE = st.text(alphabet="[]#. \t\"'-_aZ9", max_size=6)


@given(
    st.tuples(
        st.sampled_from(["[", "[[", " [", "[ [", "a"]),
        _PIECE,
        st.sampled_from(["]", "]]", "] ]", ""]),
        _PIECE,
    ).map("".join)
)
def test_a_header_line_is_read_as_the_pattern_of_toml_headers_reads_it(text: str) -> None:
    # The reader of headers uses string operations; this pattern is what it implements
    # (a table name of spaces alone, which neither TOML reader takes, aside).
    line = text.strip()
    match = _TABLE.match(line) or _ARRAY.match(line)
    if match is not None and not match.group(1).strip():
        return
    expected = None if match is None else re.sub("[\"' ]", "", match.group(1))
    assert table_header(line) == expected


# -- forward_logging ------------------------------------------------------------------------


def test_forward_logging_is_on_by_default() -> None:
    assert current_settings().forward_logging is True


@pytest.mark.parametrize(("text", "expected"), [("off", False), ("0", False), ("yes", True)])
def test_forward_logging_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, text: str, expected: bool
) -> None:
    monkeypatch.setenv("PARALLELKIT_FORWARD_LOGGING", text)
    assert current_settings().forward_logging is expected


def test_forward_logging_from_the_config_file_and_the_context(tmp_path: Path) -> None:
    write_pyproject(tmp_path, "[tool.parallelkit]\nforward_logging = false\n")
    assert current_settings().forward_logging is False
    with config(forward_logging=True):
        assert current_settings().forward_logging is True


def test_bad_forward_logging_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLELKIT_FORWARD_LOGGING", "sometimes")
    with pytest.raises(
        ConfigError,
        match=r"forward_logging must be 1/0, true/false, yes/no or on/off, got .sometimes. "
        r"from environment variable PARALLELKIT_FORWARD_LOGGING",
    ):
        current_settings()


def test_bad_forward_logging_in_code() -> None:
    with (
        pytest.raises(ConfigError, match="forward_logging must be True or False, got 'no'"),
        config(forward_logging="no"),  # type: ignore[arg-type]
    ):
        pass  # pragma: no cover


# -- shared_threshold -----------------------------------------------------------------------


def test_shared_threshold_defaults_to_256_kib() -> None:
    assert current_settings().shared_threshold == 256 * 1024


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1048576", 1 << 20),
        ("1MiB", 1 << 20),
        ("512k", 512 << 10),
        ("2 MB", 2 << 20),
        ("off", None),
        ("none", None),
        ("0", None),
    ],
)
def test_shared_threshold_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, text: str, expected: int | None
) -> None:
    monkeypatch.setenv("PARALLELKIT_SHARED_THRESHOLD", text)
    assert current_settings().shared_threshold == expected


@pytest.mark.parametrize(
    ("toml", "expected"), [("65536", 65536), ("false", None), ('"off"', None), ('"4MiB"', 4 << 20)]
)
def test_shared_threshold_from_the_config_file(
    tmp_path: Path, toml: str, expected: int | None
) -> None:
    write_pyproject(tmp_path, f"[tool.parallelkit]\nshared_threshold = {toml}\n")
    assert current_settings().shared_threshold == expected


def test_shared_threshold_none_in_the_context_turns_it_off_and_leaving_it_out_keeps_it() -> None:
    with config(shared_threshold=None):
        assert current_settings().shared_threshold is None
        with config(workers=3):
            assert current_settings().shared_threshold is None
        with config(shared_threshold=1 << 20):
            assert current_settings().shared_threshold == 1 << 20
    assert current_settings().shared_threshold == 256 * 1024


@pytest.mark.parametrize("bad", [-1, 0, 1.5, True, "lots"])
def test_bad_shared_threshold_in_code_names_the_setting_and_the_fix(bad: object) -> None:
    with (
        pytest.raises(ConfigError, match=r"shared_threshold must be a size in bytes >= 1 .* got "),
        config(shared_threshold=bad),  # type: ignore[arg-type]
    ):
        pass  # pragma: no cover


def test_bad_shared_threshold_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLELKIT_SHARED_THRESHOLD", "12 parsecs")
    with pytest.raises(
        ConfigError,
        match=r"got '12 parsecs' from environment variable PARALLELKIT_SHARED_THRESHOLD",
    ):
        current_settings()


@pytest.mark.parametrize("name", ["address", "client"])
@pytest.mark.parametrize("face", ["Executor", "Pool"])
def test_address_or_client_with_a_local_backend_names_the_cluster_backend(
    name: str, face: str
) -> None:
    kwargs: dict[str, object] = {"backend": "thread", name: "tcp://127.0.0.1:8786"}
    make = parallelkit.Executor if face == "Executor" else parallelkit.Pool
    with pytest.raises(
        ConfigError,
        match=rf"{name}= runs work on a cluster, but the backend "
        r"is 'thread'; pass backend='dask' too",
    ):
        make(**kwargs)  # type: ignore[arg-type]
