"""Human commands: ``status``, ``resolve``, ``discover``, ``send``, ``inbox``.

Each starts the node of the data directory (its key, peers, inbox), joins, does one thing,
prints JSON and exits. They need the data directory to themselves: while ``a2al-mcp serve``
runs on it they stop with a message naming that process (use the MCP tools then).
"""

from __future__ import annotations

import argparse
from typing import Any

from .serve import add_node_options, config_from_args

__all__ = ["add_human_parsers"]


def add_human_parsers(sub: Any) -> None:
    p = sub.add_parser("status", help="join the network and show this node's status")
    add_node_options(p)
    p.set_defaults(func=_run, tool="status", build=lambda a: {})
    p = sub.add_parser("resolve", help="look an AID up: its live endpoints")
    p.add_argument("aid")
    add_node_options(p)
    p.set_defaults(func=_run, tool="resolve", build=lambda a: {"aid": a.aid})
    p = sub.add_parser("discover", help="find agents offering a capability")
    p.add_argument("service")
    p.add_argument("--tag", action="append", default=[], dest="tags")
    p.add_argument("--protocol", action="append", default=[], dest="protocols")
    add_node_options(p)
    p.set_defaults(func=_run, tool="discover", build=lambda a: {
        "service": a.service, "tags": a.tags, "protocols": a.protocols})  # fmt: skip
    p = sub.add_parser("send", help="leave an encrypted mailbox note for an AID")
    p.add_argument("to")
    p.add_argument("text")
    add_node_options(p)
    p.set_defaults(func=_run, tool="send_mailbox", build=lambda a: {"to": a.to, "text": a.text})
    p = sub.add_parser("inbox", help="collect and show notes left for this node")
    p.add_argument("--peek", action="store_true", help="leave them unread")
    add_node_options(p)
    p.set_defaults(func=_run, tool="read_mailbox", build=lambda a: {"peek": a.peek})


def _run(args: argparse.Namespace) -> dict[str, Any]:
    import anyio

    from .._random import SystemRng
    from ..node.home import DataHome
    from ..node.node import Node
    from ..toolspec import call_tool

    cfg = config_from_args(args)
    result: dict[str, Any] = {}

    async def main() -> None:
        assert cfg.data_dir is not None
        with DataHome(cfg.data_dir) as home:
            async with Node(cfg, home.identity(SystemRng())) as node:
                if args.tool == "read_mailbox":
                    await node.check_mailbox()
                result.update(await call_tool(node, args.tool, args.build(args)))

    anyio.run(main)
    return result
