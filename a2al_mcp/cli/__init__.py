"""The ``a2al-mcp`` command line.

Logging goes to stderr only: in stdio MCP mode stdout is the protocol channel.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from .._version import __version__
from ..errors import A2ALError

__all__ = ["main"]

EXAMPLES = """\
examples:
  a2al-mcp demo                                  a small network on this machine, walked through
  a2al-mcp install claude --write                add the MCP server to Claude Desktop (also cursor,
                                                 windsurf; --bootstrap HOST:PORT, --public)
  a2al-mcp serve --stdio --bootstrap HOST:PORT   what an assistant app runs: attaches to this data
                                                 directory's node, starting it if needed
  a2al-mcp node status                           the shared node: AID, process, attached assistants
  a2al-mcp node start | node stop                keep it up by hand / stop it
  A2AL_MCP_TOKEN=... a2al-mcp serve --http 0.0.0.0:8080 --listen 0.0.0.0:4121 --advertise HOST
                                                 MCP over HTTP for remote clients (bearer token)
  a2al-mcp resolve AID                           look an agent up (while no node runs here)
  a2al-mcp aid AID                               parse an AID in any text form

The node is private unless told otherwise: it talks only to the peers you give it
(--bootstrap) and those they tell it about. --network public (or network = "public" in
--config) also asks the public A2AL seeds. Docs: https://github.com/a2al-mcp/a2al-mcp
"""

EXIT_CODES = {"USAGE": 2, "CONFIG": 3, "DECODE": 4, "VERIFY": 5, "EXTRA_MISSING": 5}


def _cmd_identity_new(args: argparse.Namespace) -> dict[str, Any]:
    from .._clock import SystemClock
    from .._random import SystemRng
    from ..identity import DelegatedIdentity, Identity

    rng = SystemRng()
    if args.delegated:
        created = DelegatedIdentity.generate(rng, issued_at=int(SystemClock().wall()))
        ident = created.identity
        proof = created.identity.delegation
        if proof is None:  # pragma: no cover - generate() always delegates
            raise RuntimeError("delegated identity without proof")
        return {
            "aid": str(ident.aid),
            "operational_private_key_hex": ident.key.go_bytes().hex(),
            "delegation_proof_hex": proof.to_bytes().hex(),
            "master_private_key_hex": created.master.go_bytes().hex(),
            "warning": "the master key is shown once and not kept: store it offline",
        }
    ident = Identity.generate(rng)
    return {"aid": str(ident.aid), "private_key_hex": ident.key.go_bytes().hex()}


def _cmd_aid(args: argparse.Namespace) -> dict[str, Any]:
    from ..identity import Aid

    aid = Aid.from_str(args.text)
    return {"aid": str(aid), "hex": bytes(aid).hex(), "version": f"0x{aid.version:02x}",
            "node_id": str(aid.node_id)}  # fmt: skip


def _describe(value: Any) -> Any:
    from ..identity import Aid

    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Aid):
        return str(value)
    if isinstance(value, tuple | list):
        return [_describe(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _describe(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value if isinstance(value, int | str | bool | float | type(None)) else str(value)


def _cmd_decode(args: argparse.Namespace) -> dict[str, Any]:
    from ..protocol.dht_messages import decode_message
    from ..protocol.records import SignedRecord

    try:
        data = bytes.fromhex(args.hex.strip())
    except ValueError:
        raise SystemExit("decode: argument is not hex") from None
    if args.record:
        rec = SignedRecord.from_bytes(data)
        rec.verify(rec.timestamp)  # the signature and payload rules, as of its own timestamp
        return {"record": _describe(rec), "signature": "valid"}
    msg = decode_message(data)
    msg.verify()
    return {"type": msg.msg_type.name, "sender": str(msg.sender), "tx_id": msg.tx_id.hex(),
            "body": _describe(msg.body), "signature": "valid"}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (kept separate for tests and docs)."""
    p = argparse.ArgumentParser(
        prog="a2al-mcp",
        description="A2AL agent-network node with an MCP server.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"a2al-mcp {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = p.add_subparsers(dest="command", required=True)
    ident = sub.add_parser("id", aliases=["identity"], help="identities").add_subparsers(
        dest="id_command", required=True
    )
    new = ident.add_parser("new", help="generate a new identity and print it as JSON")
    new.add_argument(
        "--delegated",
        action="store_true",
        help="owner key + operational key + delegation proof (like a2ald agents)",
    )
    new.set_defaults(func=_cmd_identity_new)
    from .human import add_export_parser

    add_export_parser(ident)
    aid = sub.add_parser("aid", help="parse an AID in any text form and show its forms")
    aid.add_argument("text")
    aid.set_defaults(func=_cmd_aid)
    dec = sub.add_parser("decode", help="decode and verify a DHT datagram (or --record) from hex")
    dec.add_argument("hex")
    dec.add_argument("--record", action="store_true", help="the hex is a SignedRecord")
    dec.set_defaults(func=_cmd_decode)
    from .demo import add_demo_parser
    from .human import add_human_parsers
    from .install import add_install_parser
    from .node_cmd import add_node_parser
    from .proxy_cmd import add_proxy_parser
    from .serve import add_serve_parser

    add_serve_parser(sub)
    add_node_parser(sub)
    add_proxy_parser(sub)
    add_demo_parser(sub)
    add_install_parser(sub)
    add_human_parsers(sub)
    return p


def _safe_console() -> None:
    """Text the console's encoding cannot show (a check mark on a Windows cp1252 console, a
    peer's note) is escaped instead of ending the command with UnicodeEncodeError. Only the
    text layers change: the MCP stdio channel writes UTF-8 bytes to ``sys.stdout.buffer``."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    _safe_console()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result = args.func(args)
    except A2ALError as exc:
        print(f"error: {exc.code}: {exc}", file=sys.stderr)
        return EXIT_CODES.get(exc.code, 1)
    except Exception as exc:
        failure = sys.modules.get("a2al_mcp.toolspec")  # loaded only by commands that call tools
        if failure is None or not isinstance(exc, failure.ToolFailure):
            raise
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_CODES.get(exc.code, 1)
    except KeyboardInterrupt:
        return 130
    if result:
        print(json.dumps(result, indent=2))
    return 0
