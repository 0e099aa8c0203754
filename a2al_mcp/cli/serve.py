"""``a2al-mcp serve``: a node plus the MCP server, over stdio (default) or streamable HTTP.

In stdio mode stdout carries only JSON-RPC; logs go to stderr. HTTP listens on loopback by
default; any other address requires ``--token`` (clients send ``Authorization: Bearer …``),
and Host/Origin headers are checked either way.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
from pathlib import Path
from typing import Any

import anyio

from .._random import SystemRng
from ..config import NodeConfig, load_config, parse_host_port
from ..errors import UsageError
from ..node.home import DataHome, default_home
from ..node.node import Node

__all__ = ["add_serve_parser", "config_from_args"]

logger = logging.getLogger(__name__)


def add_node_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", help="state directory (default: A2AL_MCP_HOME or the user data dir)"
    )
    p.add_argument("--listen", help="UDP HOST:PORT for DHT and QUIC (default 127.0.0.1:0)")
    p.add_argument("--bootstrap", help="HOST:PORT[,HOST:PORT…] seeds to join through")
    p.add_argument("--advertise", help="host to publish when no public address is known")
    p.add_argument("--config", help="TOML config file")


def config_from_args(args: argparse.Namespace) -> NodeConfig:
    overrides: dict[str, Any] = {}
    if args.listen:
        overrides["listen_addr"] = args.listen
    if args.bootstrap:
        overrides["bootstrap"] = tuple(s.strip() for s in args.bootstrap.split(",") if s.strip())
    if args.advertise:
        overrides["advertise_host"] = args.advertise
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    cfg = load_config(args.config, **overrides)
    if cfg.data_dir is None:
        cfg = load_config(args.config, **{**overrides, "data_dir": default_home()})
    return cfg


def add_serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run a node and the MCP server (stdio by default)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--stdio", action="store_true", help="MCP over stdin/stdout (default)")
    mode.add_argument("--http", metavar="HOST:PORT", help="MCP over streamable HTTP at /mcp")
    p.add_argument("--token", help="bearer token HTTP clients must send (required off loopback)")
    add_node_options(p)
    p.set_defaults(func=_cmd_serve, long_running=True)


def _cmd_serve(args: argparse.Namespace) -> dict[str, Any]:
    cfg = config_from_args(args)
    http: tuple[str, int] | None = None
    if args.http:
        http = parse_host_port(args.http, what="--http")
        if not _loopback(http[0]) and not args.token:
            raise UsageError(
                f"--http on {http[0]} (not loopback) needs --token: clients then send "
                "'Authorization: Bearer <token>'"
            )
    anyio.run(_serve, cfg, http, args.token)
    return {}


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def _serve(cfg: NodeConfig, http: tuple[str, int] | None, token: str | None) -> None:
    assert cfg.data_dir is not None
    with DataHome(cfg.data_dir) as home:
        identity = home.identity(SystemRng())
        async with Node(cfg, identity) as node:
            logger.info("serve.node_ready aid=%s listen=%s peers=%d", node.aid, node.local_addr,
                        node.status().peers)  # fmt: skip
            # The mcp SDK takes most of a second to import: the node joins first.
            from ..mcp_server import FrontStats, build_server
            from ..mcp_server._compat import run_http, run_stdio

            stats = FrontStats()  # what the front refused: in the status tool
            server = build_server(node, front_stats=stats)
            if http is None:
                await run_stdio(server, limits=cfg.limits, stats=stats)
            else:
                await run_http(server, http[0], http[1], token=token, limits=cfg.limits,
                               stats=stats)  # fmt: skip
