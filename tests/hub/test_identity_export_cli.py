"""Issue 16 item 12: an identity's export is sealed with a passphrase the user types at the
terminal, never one that passes through the model. ``a2al-mcp identity export`` asks for it
twice (getpass) and works with no node running (it opens the data directory itself) and with
the shared node running (it answers the node's elicitation on the channel)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest

from a2al_mcp import NodeConfig
from a2al_mcp.cli import main
from a2al_mcp.node import Node

pytestmark = pytest.mark.anyio

SECRET = "correct horse battery"


def _export(home: Path, aid: str, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    argv = ["identity", "export", aid, "--data-dir", str(home), "--listen", "127.0.0.1:0"]
    assert main(argv) == 0
    shown: dict[str, str] = json.loads(capsys.readouterr().out)
    return shown


async def _imports_as(blob: str, tmp: Path) -> str:
    async with Node(NodeConfig(listen_addr="127.0.0.1:0", data_dir=tmp)) as other:
        return str((await other.import_identity(blob, SECRET)).aid)


async def test_export_with_and_without_the_shared_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    typed = iter([SECRET, SECRET, SECRET, SECRET, "short", "short"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(typed))
    home = tmp_path / "home"
    async with Node(NodeConfig(listen_addr="127.0.0.1:0", data_dir=home)) as node:
        aid = str(node.create_agent().identity.aid)  # delegated, kept in the data dir
    alone = await anyio.to_thread.run_sync(_export, home, aid, capsys)  # no node runs
    assert SECRET not in alone["export"]
    assert await _imports_as(alone["export"], tmp_path / "b") == aid
    node = [sys.executable, "-m", "a2al_mcp", "node"]
    await anyio.run_process([*node, "start", "--data-dir", str(home), "--listen", "127.0.0.1:0"])
    try:
        shared = await anyio.to_thread.run_sync(_export, home, aid, capsys)  # via the node
        assert await _imports_as(shared["export"], tmp_path / "c") == aid
        argv = ["identity", "export", aid, "--data-dir", str(home)]
        assert await anyio.to_thread.run_sync(main, argv) == 2  # refused before anything ran
        assert "at least 8 characters" in capsys.readouterr().err
    finally:
        await anyio.run_process([*node, "stop", "--data-dir", str(home)], check=False)
