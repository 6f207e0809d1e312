"""``python -m parallelkit demo``: a row per backend, the lambda the process backend takes."""

from __future__ import annotations

import re

import pytest

from parallelkit import _demo
from parallelkit._backends._registry import available_backends


def test_demo_times_every_backend_and_maps_a_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    def small(seconds: float) -> int:
        return 20_000

    monkeypatch.setattr(_demo, "_calibrate", small)
    lines: list[str] = []
    _demo.main(write=lines.append)
    text = "\n".join(lines)
    for backend in ("serial", "thread", "process", "dask"):
        (row,) = [line for line in lines if f"Executor(backend={backend!r}" in line]
        if backend in available_backends():
            assert re.search(r"\)\s+\d+\.\d\d s", row), row
        else:
            assert "not installed" in row and "pip install" in row
    if "dask" in available_backends():
        assert "to start a loopback cluster of 2 workers" in text
    assert "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]" in text
