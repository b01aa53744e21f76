"""The guides run as written: every ``sh`` and ``python`` block of README.md and docs/*.md, in
document order, in a fresh directory as a new user would run them, and every ``cryptota`` flag
a synopsis (``text`` block) names is one the command has.

A fenced block names its language so the rule is explicit: ``sh`` blocks are commands a reader
runs here and now (they run below), ``text`` blocks are synopses, output, or commands that need a
running deployment (those are run by the tests named in their guides: test_stack, test_adhoc,
test_deployment). Commands that only the CI or the demo's own test may run (``make run``, ``make
test``) are listed in :data:`RUN_ELSEWHERE` with the file that runs them, so nothing is skipped
without a name.

The directory gets what a machine without internet needs to run the guides exactly: the store
and Dagster home in it, Binance unreachable, data.binance.vision replaced by a local copy
(``CRYPTOTA_ARCHIVE_URL``, as the quickstart documents) and the entry-point declaration of
docs/custom-strategy.md installed as the guide's ``toml`` block spells it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pandas as pd
import pytest

import cryptota_pipelines.cli  # noqa: F401  (registers demo and stack on the command group)
from cryptota_core.cli import cli
from cryptota_core.market.sources.synthetic import SyntheticSource
from tests.core.market.archive_fixture import write_archive
from tests.services import free_port

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN = {"sh", "python"}
LANGUAGES = RUN | {"text", "toml", "yaml", "mermaid"}

RUN_ELSEWHERE = {
    "make run": "tests/pipelines/test_demo.py",  # `make run` is `cryptota demo`
    "make test": ".ci/run",
}
"""Documented commands this test does not run, and the file that does."""

ARCHIVE_MONTHS = ("2024-01", "2024-02")
"""The months the local archive holds: the window the quickstart ingests from it."""


@dataclass(frozen=True)
class Block:
    """One fenced block of a guide."""

    doc: Path
    line: int
    language: str
    text: str

    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def fenced_blocks(doc: Path) -> list[Block]:
    """The fenced blocks of ``doc`` in order (indented fences too, as in list items)."""
    blocks: list[Block] = []
    opened: tuple[int, str, str] | None = None
    body: list[str] = []
    for number, line in enumerate(doc.read_text().splitlines(), start=1):
        fence = re.match(r"^(\s*)```(.*)$", line)
        if opened is None:
            if fence:
                opened, body = (number, fence.group(2).strip(), fence.group(1)), []
            continue
        if fence and fence.group(2).strip() == "":
            blocks.append(Block(doc, opened[0], opened[1], "\n".join(body)))
            opened = None
            continue
        body.append(line.removeprefix(opened[2]))
    assert opened is None, f"{doc.name}:{opened[0]}: a fenced block is never closed"
    return blocks


def commands(block: Block) -> list[str]:
    """The shell commands of a block: ``\\`` continuations joined, blank and comment lines
    dropped."""
    joined = re.sub(r"\\\n\s*", " ", block.text)
    return [line for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def run_elsewhere(command: str) -> str | None:
    for prefix, runner in RUN_ELSEWHERE.items():
        if command == prefix or command.startswith(prefix + " "):
            return runner
    return None


# --- every block says what it is -------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_every_fenced_block_names_its_language(doc: Path) -> None:
    unnamed = [b.where() for b in fenced_blocks(doc) if b.language not in LANGUAGES]
    assert not unnamed, f"fenced blocks without one of {sorted(LANGUAGES)}: {unnamed}"


def test_what_runs_elsewhere_is_run_there() -> None:
    for runner in RUN_ELSEWHERE.values():
        assert (REPO / runner).is_file(), runner
    assert "cryptota demo" in (REPO / "Makefile").read_text()
    assert "make test" in (REPO / ".ci" / "run").read_text()


# --- synopses name real flags ----------------------------------------------------------------


def _invocations(block: Block) -> Iterator[tuple[str, str]]:
    """``(subcommand, its arguments)`` for each ``cryptota`` invocation of a block: a line's
    indented continuation lines belong to it, and ``a | b`` lists alternatives when ``b`` is a
    subcommand (``price SYMBOL | depth SYMBOL``)."""
    names = "|".join(sorted(map(re.escape, _commands()), key=len, reverse=True))
    logical: list[str] = []
    for line in re.sub(r"\\\n", "\n", block.text).splitlines():
        if logical and line.startswith((" ", "\t")) and "cryptota" not in line:
            logical[-1] += " " + line.strip()
        elif re.search(r"(^|\s)(\.venv/bin/)?cryptota\s", line):
            logical.append(line.strip())
    for line in logical:
        line = line.split("  # ", 1)[0]
        for part in re.split(rf"\s\|\s+(?=(?:cryptota\s+)?(?:{names})\b)", line):
            found = re.search(rf"(?:^|\s)(?:(?:\.venv/bin/)?cryptota\s+)?({names})\b(.*)", part)
            if found and re.match(rf"^\s*((\.venv/bin/)?cryptota\s+)?({names})\b", part):
                yield found.group(1), found.group(2)


def _commands() -> list[str]:
    """Every command of the group, the lazily imported ones too (``cli.commands`` holds only
    those some earlier import registered, so a test run of this file alone missed some)."""
    return cli.list_commands(click.Context(cli))


def _options(name: str) -> set[str]:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None, f"no command {name}"
    return {opt for p in command.params if isinstance(p, click.Option) for opt in p.opts}


DOCUMENTED = [
    pytest.param(block, id=block.where())
    for doc in DOCS
    for block in fenced_blocks(doc)
    if block.language in {"sh", "text"}
    and re.search(r"(?m)^\s*(\.venv/bin/)?cryptota\s+[a-z]", block.text)
]


@pytest.mark.parametrize("block", DOCUMENTED)
def test_documented_cryptota_flags_exist(block: Block) -> None:
    invocations = list(_invocations(block))
    assert invocations, f"{block.where()}: no cryptota command recognised"
    for name, arguments in invocations:
        unknown = sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", arguments)) - _options(name))
        assert not unknown, f"{block.where()}: cryptota {name} has no {', '.join(unknown)}"


# --- the guides run as written ---------------------------------------------------------------


@pytest.fixture
def reader(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A directory a new user runs the guides in, and the environment they run with."""
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)
    archive = tmp_path / "archive"
    frame = SyntheticSource().fetch(
        "BTCUSDT", "1m", pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-03-01", tz="UTC")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYPTOTA_", "DAGSTER_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        CRYPTOTA_HOME=str(tmp_path / "home"),
        BINANCE_BASE_URL=f"http://127.0.0.1:{free_port()}",  # Binance does not answer here
        CRYPTOTA_ARCHIVE_URL=write_archive(archive, frame, "BTCUSDT", "1m", monthly=ARCHIVE_MONTHS),
    )
    return work, env


def _install_entry_points(toml_block: Block, site: Path) -> None:
    """Make the guide's ``[project.entry-points]`` table real: the package it names, holding
    the example module, and a ``.dist-info`` declaring exactly those entry points (what ``pip
    install`` of that package would leave)."""
    declared = tomllib.loads(toml_block.text)["project"]["entry-points"]
    lines = []
    for group, entries in declared.items():
        lines.append(f"[{group}]")
        for name, target in entries.items():
            package, module = target.rsplit(".", 1)
            (site / package).mkdir(parents=True, exist_ok=True)
            (site / package / "__init__.py").touch()
            source = REPO / "docs" / "examples" / f"{module}.py"
            (site / package / f"{module}.py").write_text(source.read_text())
            lines.append(f"{name} = {target}")
    info = site / "my_strategies-0.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-strategies\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def _check_effects(command: str, output: str, work: Path, where: str) -> None:
    """What the text says a command does, beyond exiting 0: files it names are written,
    ``--json`` prints JSON."""
    words = shlex.split(command)
    for flag in ("--plot", "--heatmap", "--csv"):
        if flag in words and (flag != "--csv" or "export" in words):
            written = work / words[words.index(flag) + 1]
            assert written.is_file() and written.stat().st_size > 0, f"{where}: no {written}"
    if "--json" in words:
        json.loads(output)


RUNNABLE_DOCS = [
    pytest.param(doc, id=doc.name)
    for doc in DOCS
    if any(block.language in RUN for block in fenced_blocks(doc))
]


@pytest.mark.parametrize("doc", RUNNABLE_DOCS)
def test_the_guide_runs_as_written(doc: Path, reader: tuple[Path, dict[str, str]]) -> None:
    work, env = reader
    blocks = fenced_blocks(doc)
    site = work.parent / "site"
    for block in blocks:
        if block.language == "toml" and "entry-points" in block.text:
            _install_entry_points(block, site)
    shell_env = {**env, "PYTHONPATH": str(site)}
    python_env = {**env, "PYTHONPATH": str(REPO / "docs" / "examples")}
    ran = 0
    for block in blocks:
        if block.language == "python":
            done = subprocess.run(
                [sys.executable, "-c", block.text],
                cwd=work,
                env=python_env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, f"{block.where()}:\n{done.stderr[-3000:]}"
            ran += 1
        elif block.language == "sh":
            for command in commands(block):
                if run_elsewhere(command):
                    continue
                done = subprocess.run(
                    ["bash", "-c", command],
                    cwd=work,
                    env=shell_env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                assert done.returncode == 0, (
                    f"{block.where()}: `{command}` exited {done.returncode}:\n"
                    f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
                )
                _check_effects(command, done.stdout, work, block.where())
                ran += 1
    assert ran or all(
        run_elsewhere(c) for b in blocks if b.language == "sh" for c in commands(b)
    ), f"{doc.name}: nothing ran"
