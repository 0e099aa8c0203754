"""Human commands: ``status``, ``resolve``, ``discover``, ``send``, ``inbox``.

Each does one thing as the node of the data directory and prints JSON. When that node runs
(the shared node of ``serve --stdio`` or ``node start``), the command asks it, as one more MCP
client on its channel; otherwise it starts the node in this process (its key, peers, inbox),
joins, does the thing and exits. Only ``serve --http`` or ``--standalone``, which do not share
their node, make it stop with a message naming that process.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import UsageError
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


def add_export_parser(ident: Any) -> None:
    p = ident.add_parser("export", help="seal an identity of the data directory with a "
                         "passphrase typed at the terminal (never through the model)")  # fmt: skip
    p.add_argument("aid", nargs="?", default="", help="the agent (default: the node's own)")
    add_node_options(p)
    p.set_defaults(func=_run, tool="identity_export",
                   build=lambda a: {"aid": a.aid} if a.aid else {}, secret=True)  # fmt: skip


def _read_passphrase() -> str:
    """The export passphrase, typed twice at the terminal (not echoed)."""
    import getpass

    first = getpass.getpass("Passphrase to seal the export (at least 8 characters): ")
    if len(first) < 8:
        raise UsageError("the passphrase must have at least 8 characters")
    if getpass.getpass("Again: ") != first:
        raise UsageError("the two passphrases differ")
    return first


def _run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = config_from_args(args)
    assert cfg.data_dir is not None
    passphrase = _read_passphrase() if getattr(args, "secret", False) else None
    shared = _ask_shared_node(cfg.data_dir.expanduser().resolve(), args.tool, args.build(args),
                              passphrase=passphrase)  # fmt: skip
    if shared is not None:
        return shared
    import anyio

    from .._random import SystemRng
    from ..node.home import DataHome
    from ..node.node import Node
    from ..toolspec import call_tool

    result: dict[str, Any] = {}

    async def main() -> None:
        assert cfg.data_dir is not None
        with DataHome(cfg.data_dir) as home:
            async with Node(cfg, home.identity(SystemRng())) as node:
                if args.tool == "read_mailbox":
                    await node.check_mailbox()

                async def ask(prompt: str) -> str | None:
                    return passphrase

                result.update(await call_tool(node, args.tool, args.build(args),
                                              ask_secret=ask if passphrase else None))  # fmt: skip

    anyio.run(main)
    return result


def _ask_shared_node(
    data_dir: Path, tool: str, arguments: dict[str, Any], *, passphrase: str | None = None
) -> dict[str, Any] | None:
    """Call ``tool`` on the node running on ``data_dir`` (None when none runs): initialize,
    then ``tools/call``, as newline-delimited JSON-RPC on its channel. With ``passphrase``
    this client declares elicitation and answers the node's request for it.

    Raises:
        UsageError: the node answered with a tool error (its ``CODE: sentence``).
    """
    from ..hub.channel import ChannelError
    from ..hub.launcher import CONNECT_TIMEOUT_S, attach

    try:
        sock, _hello, _ = attach(data_dir, "mcp", command=None, start_timeout_s=0)
    except ChannelError:
        return None
    with sock, sock.makefile("rwb") as wire:

        def rpc(msg_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
            wire.write(json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method,
                                   "params": params}).encode() + b"\n")  # fmt: skip
            wire.flush()
            while True:
                line = wire.readline()
                if not line:
                    raise UsageError(f"the node on {data_dir} closed the connection")
                got: dict[str, Any] = json.loads(line)
                if got.get("method") == "elicitation/create" and "id" in got:
                    answer = ({"action": "accept", "content": {"passphrase": passphrase}}
                              if passphrase else {"action": "decline"})  # fmt: skip
                    wire.write(json.dumps({"jsonrpc": "2.0", "id": got["id"],
                                           "result": answer}).encode() + b"\n")  # fmt: skip
                    wire.flush()
                elif got.get("id") == msg_id and "method" not in got:
                    return got

        sock.settimeout(CONNECT_TIMEOUT_S)
        caps: dict[str, Any] = {"elicitation": {}} if passphrase else {}
        rpc(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": caps,
                              "clientInfo": {"name": "a2al-mcp-cli", "version": "1"}})  # fmt: skip
        wire.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        sock.settimeout(None)  # a tool may take as long as its lookup
        got = rpc(2, "tools/call", {"name": tool, "arguments": arguments})
    if "error" in got:
        raise UsageError(f"the node on {data_dir} refused: {got['error'].get('message')}")
    result = got["result"]
    text = result["content"][0]["text"] if result.get("content") else "{}"
    if result.get("isError"):
        raise UsageError(text)
    shown: dict[str, Any] = result.get("structuredContent") or json.loads(text)
    return shown
