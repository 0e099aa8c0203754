"""The status tables tell the truth about the code, where a test can tell.

- docs/index.md's status table: every name a row in code font gives (a module, a ``Node``
  verb, an MCP tool, an adapter's export, an ``a2al-mcp`` command) exists; a row marked done
  names at least one; a row marked upcoming is a part whose settings the configuration
  documents as doing nothing yet (no row claims what the code does not do, and none hides
  what it does).
- README's tool table lists exactly the MCP server's tools, and its error codes and
  resources are the server's.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

from a2al_mcp import errors
from a2al_mcp.cli import build_parser
from a2al_mcp.mcp_server import app
from a2al_mcp.node import Node
from a2al_mcp.toolspec import TOOLS

ROOT = Path(__file__).resolve().parents[2]
TOOL_NAMES = {t.name for t in TOOLS}


def _table(text: str, header: str) -> list[list[str]]:
    """The rows (cells stripped) of the Markdown table whose header row starts ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
        rows.append([c.strip() for c in cells])
    return rows


def _code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _commands(parser: argparse.ArgumentParser) -> set[tuple[str, ...]]:
    """Every command path the CLI accepts, e.g. ('id', 'new')."""
    found: set[tuple[str, ...]] = set()

    def walk(p: argparse.ArgumentParser, prefix: tuple[str, ...]) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found.add((*prefix, name))
                    walk(sub, (*prefix, name))

    walk(parser, ())
    return found


def _adapter_exports() -> set[str]:
    """The top-level functions and classes of adapters/ (read from the source: the LangChain
    and CrewAI modules need extras this environment may not have)."""
    names: set[str] = set()
    for path in (ROOT / "adapters").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        names.update(re.findall(r"^(?:async def|def|class) ([A-Za-z]\w*)", text, flags=re.M))
    return names


def _resolves(span: str, commands: set[tuple[str, ...]], adapters: set[str]) -> bool:
    """Whether one code-font name of the status table names something that exists."""
    if span.startswith("a2al-mcp "):
        words = tuple(w for w in span.split()[1:] if not w.startswith("-"))
        return words in commands
    if span.startswith("a2al_mcp."):
        if importlib.util.find_spec(span) is not None:  # a module
            return True
        module, _, attr = span.rpartition(".")
        return hasattr(importlib.import_module(module), attr)
    if span.startswith("Node."):
        return callable(getattr(Node, span.removeprefix("Node."), None))
    return span in TOOL_NAMES or span in adapters or callable(getattr(Node, span, None))


ROWS = _table((ROOT / "docs" / "index.md").read_text(encoding="utf-8"), "| Part | State |")


@pytest.mark.parametrize("row", ROWS, ids=[r[0][:40] for r in ROWS])
def test_index_status_row_names_what_exists(row: list[str]) -> None:
    part, state = row
    commands, adapters = _commands(build_parser()), _adapter_exports()
    spans = _code_spans(part)
    missing = [s for s in spans if not _resolves(s, commands, adapters)]
    assert not missing, f"docs/index.md names what the code does not have: {missing}"
    assert state.startswith(("done", "upcoming")), f"unknown state {state!r}"


def test_index_upcoming_rows_are_documented_as_not_there() -> None:
    upcoming = [part for part, state in ROWS if state.startswith("upcoming")]
    # none today: ICE and TURN in the node (the last one) landed with issue 18's node
    # sides; a new upcoming row must say here how the test can check it is not there
    assert upcoming == [], "a new upcoming row: say here how to check it"


def test_readme_tool_table_is_the_servers_tools() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed: set[str] = set()
    for row in _table(readme, "| tool | what it does |"):
        for span in _code_spans(row[0]):
            listed.add(re.match(r"[a-z_]+", span).group(0))  # type: ignore[union-attr]
    assert listed == TOOL_NAMES


def test_readme_resources_and_error_codes_are_the_servers() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert set(re.findall(r"`(a2al://[a-z]+)`", readme)) == {app.INBOX_URI, app.STATUS_URI}
    tree = {cls.code for cls in vars(errors).values()
            if isinstance(cls, type) and issubclass(cls, errors.A2ALError)}  # fmt: skip
    sentence = next(line for line in readme.splitlines() if "stable code" in line)
    sentence += readme.split(sentence, 1)[1].split("\n\n", 1)[0]
    codes = set(re.findall(r"`([A-Z_]+)`", sentence))
    assert codes and codes <= tree, f"README names codes no error has: {codes - tree}"
