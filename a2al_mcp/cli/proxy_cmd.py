"""``a2al-mcp proxy AID``: a stdio MCP server mirroring one remote agent's MCP tools
(:mod:`a2al_mcp.remote_mcp.mirror`), through this data directory's node (``serve --stdio``:
the shared node, started if needed; ``--standalone`` runs a node of its own instead)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import UsageError
from .serve import add_node_options, node_args

__all__ = ["add_proxy_parser"]


def add_proxy_parser(sub: Any) -> None:
    p = sub.add_parser("proxy", help="a stdio MCP server mirroring one agent's MCP tools")
    p.add_argument("aid", help="the agent serving MCP tools over A2AL (its AID)")
    p.add_argument("--standalone", action="store_true",
                   help="run a node of its own (in the node process this starts) instead of "
                   "sharing the data directory's node")  # fmt: skip
    add_node_options(p)
    p.set_defaults(func=_cmd_proxy, long_running=True)


def _cmd_proxy(args: argparse.Namespace) -> dict[str, Any]:
    import anyio

    from ..identity.aid import Aid

    try:
        aid = str(Aid.from_str(args.aid))
    except Exception as exc:
        raise UsageError(f"not an AID: {args.aid[:64]!r}") from exc
    command = [sys.executable, "-m", "a2al_mcp", "serve", "--stdio", *node_args(args)]
    if args.standalone:
        command.append("--standalone")
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    from ..remote_mcp.mirror import run_stdio_mirror

    anyio.run(run_stdio_mirror, aid, command)
    return {}
