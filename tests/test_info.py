"""``python -m parallelkit info``: settings with their sources, as text and JSON; exit codes."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import parallelkit
from parallelkit._config import Source, resolve_with_sources

pytestmark = pytest.mark.timeout(120)


def info(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m parallelkit info`` in ``cwd`` with only the given PARALLELKIT_ variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PARALLELKIT_")}
    return subprocess.run(
        [sys.executable, "-m", "parallelkit", "info", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder whose pyproject.toml sets the backend and the workers."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.parallelkit]\nbackend = "thread"\nworkers = 3\n',
        encoding="utf-8",
    )
    return tmp_path


def as_json(cwd: Path, **env: str) -> dict[str, Any]:
    done = info(cwd, "--json", **env)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def test_info_json_gives_each_setting_with_its_source(project: Path) -> None:
    data = as_json(project, PARALLELKIT_WORKERS="5")
    settings = data["settings"]
    file = str(project / "pyproject.toml")
    assert settings["backend"] == {"value": "thread", "source": "file", "where": file}
    assert settings["workers"] == {"value": 5, "source": "env", "where": "PARALLELKIT_WORKERS"}
    assert settings["start_method"] == {"value": "forkserver", "source": "default", "where": None}
    assert settings["check_pickle"] == {"value": False, "source": "default", "where": None}
    assert settings["forward_logging"] == {"value": True, "source": "default", "where": None}
    assert data["config_file"] == file


def test_info_json_reports_forward_logging_from_the_environment(project: Path) -> None:
    data = as_json(project, PARALLELKIT_FORWARD_LOGGING="off")
    assert data["settings"]["forward_logging"] == {
        "value": False,
        "source": "env",
        "where": "PARALLELKIT_FORWARD_LOGGING",
    }


def test_info_json_reports_version_python_cpus_start_methods_and_extras(tmp_path: Path) -> None:
    data = as_json(tmp_path)
    assert data["parallelkit"] == parallelkit.__version__
    assert data["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert data["cpus"]["usable"] == len(os.sched_getaffinity(0))
    assert data["start_methods"]["default"] == "forkserver"
    assert "spawn" in data["start_methods"]["available"]
    assert set(data["extras"]) == {"numpy", "tqdm", "dask"}
    for module, version in data["extras"].items():
        try:
            expected: str | None = importlib.metadata.version(module)
        except importlib.metadata.PackageNotFoundError:
            expected = None
        assert version == expected, module


def test_info_names_the_config_file_given_by_parallelkit_config(tmp_path: Path) -> None:
    named = tmp_path / "settings.toml"
    named.write_text('start_method = "spawn"\ncheck_pickle = true\n', encoding="utf-8")
    data = as_json(tmp_path, PARALLELKIT_CONFIG=str(named))
    assert data["config_file"] == str(named)
    assert data["settings"]["start_method"]["source"] == "file"
    assert data["settings"]["check_pickle"] == {
        "value": True,
        "source": "file",
        "where": str(named),
    }


def test_info_text_shows_each_value_and_where_it_came_from(project: Path) -> None:
    done = info(project, PARALLELKIT_START_METHOD="spawn")
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("  ")}
    assert lines["backend"].split()[1] == "thread"
    assert lines["backend"].endswith(f"from file {project / 'pyproject.toml'}")
    assert lines["start_method"].split()[1] == "spawn"
    assert lines["start_method"].endswith("from env PARALLELKIT_START_METHOD")
    assert lines["check_pickle"].endswith("from default")
    assert lines["forward_logging"].split()[1] == "True"
    assert lines["forward_logging"].endswith("from default")
    assert lines["shared_threshold"].split()[1] == "262144"
    assert lines["shared_threshold"].endswith("from default")
    assert f"parallelkit {parallelkit.__version__}" in done.stdout
    assert "CPUs this process may use:" in done.stdout
    assert "start methods:" in done.stdout


@pytest.mark.parametrize("as_json_flag", [False, True], ids=["text", "json"])
def test_info_with_a_bad_setting_exits_2_with_the_config_error_on_stderr(
    project: Path, as_json_flag: bool
) -> None:
    args = ("--json",) if as_json_flag else ()
    done = info(project, *args, PARALLELKIT_WORKERS="many")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "workers must be a whole number >= 1, got 'many'" in done.stderr
    assert "PARALLELKIT_WORKERS" in done.stderr
    assert "Traceback" not in done.stderr


def test_info_with_a_bad_config_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.parallelkit]\nbackend = "gpu"\n', encoding="utf-8"
    )
    done = info(tmp_path)
    assert done.returncode == 2
    assert "unknown backend 'gpu'" in done.stderr


def test_help_lists_demo_and_info(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "parallelkit", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert "demo" in done.stdout
    assert "info" in done.stdout


def test_an_unknown_command_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "parallelkit", "frobnicate"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "invalid choice" in done.stderr


# -- the sources, in process ---------------------------------------------------------------


def test_sources_name_the_argument_and_the_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("BACKEND", "WORKERS", "START_METHOD", "CHECK_PICKLE", "FORWARD_LOGGING", "CONFIG"):
        monkeypatch.delenv(f"PARALLELKIT_{name}", raising=False)
    with parallelkit.config(workers=4):
        settings, sources = resolve_with_sources(backend="serial")
    assert (settings.backend, settings.workers) == ("serial", 4)
    assert sources["backend"] == Source("argument")
    assert sources["workers"] == Source("context")
    assert str(sources["workers"]) == "parallelkit.config(...)"
    assert sources["check_pickle"] == Source("default")
    assert sources["forward_logging"] == Source("default")
