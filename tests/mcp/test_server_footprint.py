"""What building the MCP server loads and changes in the node process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """
import logging, sys
import anyio
from tests.node.loopnet import network
from a2al_mcp.mcp_server import build_server

async def main():
    async with network(1) as (node,):
        build_server(node)
        print("rich" in sys.modules, len(logging.getLogger().handlers))

anyio.run(main)
"""


def test_building_the_server_leaves_logging_alone() -> None:
    """The SDK's server constructor would import rich and put a RichHandler on the root
    logger; logging is the application's to configure (the CLI does)."""
    out = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=_ROOT, capture_output=True,
                         text=True, timeout=120, check=True)  # fmt: skip
    assert out.stdout.split() == ["False", "0"], out.stdout + out.stderr


_SDK_FREE = """
import sys
import a2al_mcp.cli.serve, a2al_mcp.cli.node_cmd, a2al_mcp.hub.server
from a2al_mcp.mcp_server import FrontStats, ServerCore
from a2al_mcp.mcp_server.line_front import serve_stream
from a2al_mcp.mcp_server.stdio_front import serve_stdio
from a2al_mcp.mcp_server.session import LineSession
print(sorted(m for m in ("mcp", "mcp_types", "starlette", "uvicorn", "httpx") if m in sys.modules))
"""


def test_the_line_sessions_import_no_sdk() -> None:
    """What the node needs to serve its line sessions (the hub, ServerCore, the stdio and
    stream fronts, LineSession) loads neither the mcp SDK nor its web stack."""
    out = subprocess.run([sys.executable, "-c", _SDK_FREE], cwd=_ROOT, capture_output=True,
                         text=True, timeout=120, check=True)  # fmt: skip
    assert out.stdout.split() == ["[]"], out.stdout + out.stderr
