"""Issue 17: a node started by ``a2al-mcp node run`` (what ``serve --stdio`` starts) publishes
its own endpoint record once it knows an address, as a2ald's ``auto_publish``;
``--no-auto-publish`` keeps it unlisted, and the proxy passes the flag on to the node it
starts."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from a2al_mcp import Aid
from a2al_mcp.cli.serve import add_node_options, config_from_args, node_args
from a2al_mcp.errors import NotFound
from a2al_mcp.node import Node
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio


def _status(home: Path) -> dict[str, object] | None:
    cmd = [sys.executable, "-m", "a2al_mcp", "node", "status", "--data-dir", str(home)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


async def _run_node(home: Path, seed: Node, *extra: str) -> tuple[anyio.abc.Process, Aid]:
    host, port = seed.local_addr
    proc = await anyio.open_process(
        [sys.executable, "-m", "a2al_mcp", "node", "run", "--listen", "127.0.0.1:0",
         "--bootstrap", f"{host}:{port}", "--data-dir", str(home), "--stay", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    with anyio.fail_after(30):
        for _ in range(300):  # node status is a poll: the node offers no event to wait on
            st = await anyio.to_thread.run_sync(_status, home)
            if st is not None:
                return proc, Aid.from_str(str(st["aid"]))
            await anyio.sleep(0.1)
    raise AssertionError("the node never answered node status")


async def _stop(proc: anyio.abc.Process, home: Path) -> None:
    await anyio.run_process(
        [sys.executable, "-m", "a2al_mcp", "node", "stop", "--data-dir", str(home)], check=False
    )
    with anyio.move_on_after(15):
        await proc.wait()
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_node_run_publishes_itself_and_the_flag_keeps_it_unlisted(tmp_path: Path) -> None:
    async with network(2) as (seed, other):
        proc, aid = await _run_node(tmp_path / "on", seed)
        try:
            found = None
            with anyio.fail_after(20):  # published by itself: no publish call was made
                for _ in range(100):
                    try:
                        found = await other.resolve(aid)
                        break
                    except NotFound:
                        await anyio.sleep(0.2)
            assert found is not None
            assert found.endpoints[0].startswith("quic://127.0.0.1:")
        finally:
            await _stop(proc, tmp_path / "on")

        proc, aid = await _run_node(tmp_path / "off", seed, "--no-auto-publish")
        try:
            await anyio.sleep(3)  # the node above was found within ~1 s of its start
            with pytest.raises(NotFound):
                await other.resolve(aid)
        finally:
            await _stop(proc, tmp_path / "off")


def test_the_flag_reaches_the_config_and_the_node_the_proxy_starts() -> None:
    p = argparse.ArgumentParser()
    add_node_options(p)
    args = p.parse_args(["--no-auto-publish", "--listen", "127.0.0.1:0", "--data-dir", "/x"])
    assert config_from_args(args).auto_publish is False
    assert "--no-auto-publish" in node_args(args)
    args = p.parse_args(["--listen", "127.0.0.1:0", "--data-dir", "/x"])
    assert config_from_args(args).auto_publish is True
    assert "--no-auto-publish" not in node_args(args)
