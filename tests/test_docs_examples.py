"""Every code example in docs/*.md and README.md runs, and prints what the page shows.

How a page's fenced blocks are read:

- A ```python block directly followed (blank lines and an ``Output ...:`` line
  aside) by a ```text or
  ```console block is a program. It is written to a fresh directory, as the
  file its first line names (``# app.py``), else as the file the console
  block runs (``$ python which.py``), else as ``example.py``, and run in a
  subprocess with a timeout (programs start workers, which import a real
  ``__main__`` file). A ```text block is the output of ``python FILE``; a
  ```console block is replayed command by command (``$ ...`` lines, through
  the shell, with this Python as ``python``), each command's output checked
  against the lines below it. ``$ cat FILE`` with the file's contents below
  it creates the file, as the page shows it.
- A ```python block whose first line names a file (``# tasks.py``) and that
  no output follows is a module: it is written beside every later program
  of the same page.
- ```pycon blocks (``>>>`` sessions) run with :mod:`doctest`, in this
  process and under the leak checker, a page's sessions in one namespace.
- Output is compared as doctest compares it, with ``...`` matching anything.
  A traceback is compared by its unindented lines (the exception chain):
  the frames change with the Python version and the library's line numbers.
- An HTML comment on the line before a block marks an exception, visible in
  the page's source: ``<!-- test: skip, WHY -->`` (not run: a fragment, a
  signature, a program whose output is not shown) and
  ``<!-- test: numbers vary -->`` (every number, such as a pid or a time,
  matches any number), ``<!-- test: needs MODULE -->`` (run only where
  that optional dependency is installed) and ``<!-- test: runs -->`` (a
  complete program that prints nothing: it must run without output).
  Every other ```python block must be a program or a module: a new example
  without output fails here until it shows its output or says why it cannot.
- ```console blocks that do not follow a program (installs, ``make``
  targets, benchmark runs) are not run.

The programs run with the CPU affinity set to two CPUs, because pages show
the default worker count of a two-CPU machine.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
TIMEOUT = 40.0
CPUS = 2

FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*test:\s*(?P<what>.*?)\s*-->\s*$")
OUTPUT_LINE = re.compile(r"^\s*Output\b.*:\s*$")  # "Output:" between a program and its output
FILE_HEADER = re.compile(r"^#\s*(?P<name>[\w.-]+\.py)\s*$")
RUNS_FILE = re.compile(r"\bpython\b[^\n]*?\s(?P<name>[\w.-]+\.py)\b")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    marker: str | None
    output: Block | None = None  # the text/console block that follows

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def file_name(self) -> str | None:
        first = self.text.split("\n", 1)[0]
        match = FILE_HEADER.match(first)
        return match["name"] if match else None


def read_blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, each with the block that directly follows its output."""
    lines = page.read_text(encoding="utf-8").split("\n")
    blocks: list[Block] = []
    follows: list[bool] = []  # whether only blank lines separate a block from the previous
    i = 0
    last_end = -10
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            i += 1
        body = textwrap.dedent("\n".join(lines[start + 1 : i]))
        before = start - 1
        marker = MARKER.match(lines[before]) if before >= 0 else None
        between = lines[last_end + 1 : start] if last_end >= 0 else ["x"]
        follows.append(
            all(
                not line.strip() or OUTPUT_LINE.match(line) or MARKER.match(line)
                for line in between
            )
        )
        blocks.append(
            Block(page, start + 1, opening["lang"], body, marker["what"] if marker else None)
        )
        last_end = i
        i += 1
    for n, block in enumerate(blocks[:-1]):
        after = blocks[n + 1]
        if block.lang == "python" and after.lang in ("text", "console") and follows[n + 1]:
            block.output = after
    return blocks


def is_skipped(block: Block) -> bool:
    """Marked ``skip``, or ``needs MODULE`` where that module is not installed."""
    if block.marker is None:
        return False
    if block.marker.startswith("needs "):
        return importlib.util.find_spec(block.marker.split()[1]) is None
    return block.marker.startswith("skip")


ALL_BLOCKS = {page: read_blocks(page) for page in PAGES}
PROGRAMS = [
    block
    for blocks in ALL_BLOCKS.values()
    for block in blocks
    if block.lang == "python"
    and (block.output is not None or block.marker == "runs")
    and not is_skipped(block)
]


def modules_before(block: Block) -> list[Block]:
    """The module blocks (``# name.py``, no output) of the page above this program."""
    return [
        other
        for other in ALL_BLOCKS[block.page]
        if other.line < block.line
        and other.lang == "python"
        and other.output is None
        and other.file_name is not None
        and not is_skipped(other)
    ]


def normalize(text: str, numbers_vary: bool) -> str:
    lines = [line.rstrip() for line in text.strip("\n").split("\n")]
    if any(line.startswith("Traceback (most recent call last):") for line in lines):
        lines = [line for line in lines if line and not line[0].isspace()]
    out = "\n".join(lines) + "\n"
    if numbers_vary:
        out = re.sub(r"0x[0-9a-f]+|\d+(\.\d+)?", "N", out)
    return out


def check(want: str, got: str, numbers_vary: bool, what: str) -> None:
    want_n, got_n = normalize(want, numbers_vary), normalize(got, numbers_vary)
    checker = doctest.OutputChecker()
    if not checker.check_output(want_n, got_n, doctest.ELLIPSIS):
        pytest.fail(f"{what}: the output differs from the page's\n--- page\n{want}\n--- got\n{got}")


def run(command: str, cwd: Path, timeout: float = TIMEOUT) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARALLELKIT_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"  # the pages show a terminal's output, in the order printed
    env.pop("PYTHONPATH", None)
    cpus = sorted(os.sched_getaffinity(0))[:CPUS]
    completed = subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )
    return completed.stdout


def console_steps(text: str) -> list[tuple[str, str]]:
    """``(command, expected output)`` pairs of a console transcript."""
    steps: list[tuple[str, list[str]]] = []
    for line in text.split("\n"):
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    return [(command, "\n".join(out)) for command, out in steps]


@pytest.fixture(scope="module", autouse=True)
def _tqdm_monitor_started() -> None:
    """Start tqdm's monitor thread before the leak checker looks at the threads.

    tqdm starts one daemon ``tqdm_monitor`` thread with its first bar (the
    pages' ``progress=True``) and keeps it for the life of the process.
    """
    try:
        tqdm: Any = importlib.import_module("tqdm.auto").tqdm
    except ImportError:
        return
    tqdm(total=1, file=io.StringIO()).close()


@pytest.fixture(scope="module", autouse=True)
def _two_cpus() -> None:
    if len(os.sched_getaffinity(0)) < CPUS:
        pytest.skip(f"the pages show the output of a {CPUS}-CPU machine")


@pytest.mark.slow
@pytest.mark.parametrize("block", PROGRAMS, ids=[block.id for block in PROGRAMS])
def test_program_prints_what_the_page_shows(block: Block, tmp_path: Path) -> None:
    for module in modules_before(block):
        assert module.file_name is not None
        (tmp_path / module.file_name).write_text(module.text + "\n", encoding="utf-8")
    output = block.output
    if output is None:  # <!-- test: runs -->: it prints nothing, and must not fail
        (tmp_path / "example.py").write_text(block.text + "\n", encoding="utf-8")
        check("", run("python example.py", tmp_path), False, "python example.py")
        return
    numbers_vary = block.marker == "numbers vary" or output.marker == "numbers vary"
    name = block.file_name
    if name is None and output.lang == "console":
        found = RUNS_FILE.search(output.text)
        name = found["name"] if found else None
    name = name or "example.py"
    (tmp_path / name).write_text(block.text + "\n", encoding="utf-8")
    if output.lang == "text":
        check(output.text, run(f"python {name}", tmp_path), numbers_vary, f"python {name}")
        return
    steps = console_steps(output.text)
    assert steps, f"{output.id}: a console block with no $ command"
    for command, want in steps:
        words = shlex.split(command, comments=True)
        if words[:1] == ["cat"] and len(words) == 2 and not (tmp_path / words[1]).exists():
            (tmp_path / words[1]).write_text(want + "\n", encoding="utf-8")
            continue
        check(want, run(command, tmp_path), numbers_vary, f"$ {command}")


def test_every_python_block_is_run_or_says_why_not() -> None:
    unexplained = [
        block.id
        for blocks in ALL_BLOCKS.values()
        for block in blocks
        if block.lang == "python"
        and block.output is None
        and block.file_name is None
        and block.marker != "runs"
        and not is_skipped(block)
    ]
    assert not unexplained, (
        "these python blocks show no output to check: follow each with a ```text block of "
        "what it prints, or mark it <!-- test: skip, WHY --> on the line before: "
        + ", ".join(unexplained)
    )


def test_the_pages_programs_are_found() -> None:
    assert len(PROGRAMS) >= 30


SESSION_PAGES = [
    page for page, blocks in ALL_BLOCKS.items() if any(b.lang == "pycon" for b in blocks)
]


@pytest.mark.parametrize("page", SESSION_PAGES, ids=[p.name for p in SESSION_PAGES])
def test_sessions_print_what_the_page_shows(page: Path) -> None:
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    globs: dict[str, object] = {"__name__": "__main__"}
    report: list[str] = []
    for block in ALL_BLOCKS[page]:
        if block.lang != "pycon" or is_skipped(block):
            continue
        test = parser.get_doctest(block.text, globs, block.id, str(page), block.line)
        runner.run(test, out=report.append, clear_globs=False)
        globs = test.globs  # the next session of the page goes on from this one
    result = runner.summarize(verbose=False)
    assert result.attempted > 0
    if result.failed:
        pytest.fail("".join(report))
