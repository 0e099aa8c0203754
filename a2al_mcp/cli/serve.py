"""``a2al-mcp serve``: MCP over stdio (default) or streamable HTTP.

``serve --stdio`` is what assistant apps start. It is a small proxy: it attaches to the node
already running on its data directory, or starts one (``a2al-mcp node run``, see
:mod:`a2al_mcp.hub`), so every assistant on the machine shares one identity and one inbox.
``--standalone`` runs the node in this process instead (the data directory is then this
process's alone). In stdio mode stdout carries only JSON-RPC; logs go to stderr.

``serve --http`` runs the node in this process. HTTP listens on loopback by default; any other
address requires ``--token`` (clients send ``Authorization: Bearer …``), and Host/Origin
headers are checked either way.

This module imports no networking at load time: the proxy path must stay small and fast.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ExposeConfig, NodeConfig, load_config, parse_host_port
from ..errors import ConfigError, UsageError

if TYPE_CHECKING:
    from ..hub.server import NodeHub

__all__ = ["add_node_options", "add_serve_parser", "config_from_args", "node_args", "run_node"]

logger = logging.getLogger(__name__)

TOKEN_ENV = "A2AL_MCP_TOKEN"
"""Where ``serve --http`` finds its bearer token when ``--token`` is not given (containers:
a secret belongs in the environment, not in the command line every process can read)."""


def add_node_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", help="state directory (default: A2AL_MCP_HOME or the user data dir)"
    )
    p.add_argument("--listen", help="UDP HOST:PORT for DHT and QUIC (default 127.0.0.1:0)")
    p.add_argument("--bootstrap", help="HOST:PORT[,HOST:PORT…] seeds to join through")
    p.add_argument("--advertise", help="host to publish when no public address is known")
    p.add_argument("--network", choices=("private", "public"),
                   help="private (default): only the peers given or learnt from them; "
                   "public: also the public A2AL seeds (an explicit opt-in)")  # fmt: skip
    p.add_argument("--no-auto-publish", action="store_true",
                   help="do not publish this node's endpoint record by itself once it knows "
                   "its address (stay unlisted until publish)")  # fmt: skip
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--expose", action="append", metavar="mcp=URL|mcp=COMMAND|a2a=URL",
                   help="serve an MCP server to other agents over A2AL on this node's AID: "
                   "a streamable-HTTP one already running (mcp=http://127.0.0.1:PORT/mcp) "
                   "or a stdio one this node starts and owns (mcp='python srv.py'); or an "
                   "A2A agent already running on plain HTTP (a2a=http://127.0.0.1:PORT), "
                   "published with its card's skills as topics; more in [[expose]] "
                   "tables")  # fmt: skip
    p.add_argument("--expose-topic", action="append", metavar="TOPIC",
                   help="a capability topic the --expose server is registered under "
                   "(protocol mcp or a2a), so discover finds it; repeatable (for a2a: "
                   "instead of its card's skills)")  # fmt: skip


def node_args(args: argparse.Namespace) -> list[str]:
    """The node options of ``args`` as arguments for a node process (not ``--data-dir``)."""
    out: list[str] = []
    for name in ("listen", "bootstrap", "advertise", "network"):
        value = getattr(args, name, None)
        if value:
            out += [f"--{name}", value]
    if getattr(args, "config", None):
        out += ["--config", str(Path(args.config).expanduser().resolve())]
    if getattr(args, "no_auto_publish", False):
        out.append("--no-auto-publish")
    for flag in ("expose", "expose_topic"):
        for value in getattr(args, flag, None) or ():
            out += [f"--{flag.replace('_', '-')}", value]
    if getattr(args, "verbose", False):
        out.insert(0, "-v")
    return out


def config_from_args(args: argparse.Namespace) -> NodeConfig:
    overrides: dict[str, Any] = {}
    if args.listen:
        overrides["listen_addr"] = args.listen
    if args.bootstrap:
        overrides["bootstrap"] = tuple(s.strip() for s in args.bootstrap.split(",") if s.strip())
    if args.advertise:
        overrides["advertise_host"] = args.advertise
    if getattr(args, "network", None):
        overrides["network"] = args.network
    if getattr(args, "no_auto_publish", False):
        overrides["auto_publish"] = False
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    if getattr(args, "expose", None) or getattr(args, "expose_topic", None):
        overrides["expose"] = _exposed(args)
    cfg = load_config(args.config, **overrides)
    if cfg.data_dir is None:
        from ..node.home import default_home

        cfg = load_config(args.config, **{**overrides, "data_dir": default_home()})
    return cfg


def _exposed(args: argparse.Namespace) -> tuple[Any, ...]:
    """The config file's ``[[expose]]`` tables and those ``--expose`` gives."""
    from ..remote_mcp.spec import parse_expose

    if args.expose_topic and not args.expose:
        raise UsageError("--expose-topic names the topics of an --expose server: give one")
    if args.expose and len(args.expose) > 1:
        raise UsageError("one --expose per node (it is served on the node's AID); more, each "
                         "on its own identity, go in [[expose]] tables")  # fmt: skip
    earlier = load_config(args.config).expose if args.config else ()
    topics = tuple(args.expose_topic or ())
    given = []
    for text in args.expose:
        kind, _, target = text.partition("=")
        if kind.strip() == "a2a":  # an A2A agent on plain HTTP, by its URL
            if not target.strip().startswith(("http://", "https://")):
                raise ConfigError(f"--expose a2a= takes the agent's URL (http://host:port), "
                                  f"got {text!r}")  # fmt: skip
            given.append(ExposeConfig(protocol="a2a", url=target.strip(), topics=topics))
        else:
            given.append(parse_expose(text, topics=topics))
    return (*earlier, *given)


async def _expose(node: Any, cfg: NodeConfig) -> None:
    """Serve what ``cfg.expose`` lists (imports the mcp SDK: only when something is)."""
    if not cfg.expose:
        return
    from ..remote_mcp.expose import expose_configs

    await expose_configs(node, cfg.expose)


def add_serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="the MCP server (stdio by default)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--stdio", action="store_true", help="MCP over stdin/stdout (default)")
    mode.add_argument("--http", metavar="HOST:PORT", help="MCP over streamable HTTP at /mcp")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV) or None,
                   help=f"bearer token HTTP clients must send (required off loopback; "
                   f"default: ${TOKEN_ENV})")  # fmt: skip
    p.add_argument("--standalone", action="store_true",
                   help="stdio: run the node in this process instead of sharing the data "
                   "directory's node with other assistants")  # fmt: skip
    p.add_argument("--grace", type=float, metavar="SECONDS",
                   help="stdio: a node this starts stops this long after its last client "
                   "(default hub.grace_s, 60)")  # fmt: skip
    add_node_options(p)
    p.set_defaults(func=_cmd_serve, long_running=True)


def _cmd_serve(args: argparse.Namespace) -> dict[str, Any]:
    cfg = config_from_args(args)
    if args.http:
        http = parse_host_port(args.http, what="--http")
        if not _loopback(http[0]) and not args.token:
            raise UsageError(
                f"--http on {http[0]} (not loopback) needs --token: clients then send "
                "'Authorization: Bearer <token>'"
            )
        _run(_serve_inline, cfg, http, args.token)
    elif args.standalone:
        _run(_serve_inline, cfg, None, None)
    else:
        raise SystemExit(_proxy(args, cfg))
    return {}


def _run(fn: Any, *args: Any) -> None:
    import anyio

    anyio.run(fn, *args)


def _proxy(args: argparse.Namespace, cfg: NodeConfig) -> int:
    """Relay this process's stdio to the data directory's node (start it if needed)."""
    from ..hub.launcher import node_command
    from ..hub.proxy import StdioProxy

    assert cfg.data_dir is not None
    data_dir = cfg.data_dir.expanduser().resolve()
    grace = args.grace if args.grace is not None else cfg.hub.grace_s
    proxy = StdioProxy(
        data_dir,
        command=node_command(data_dir, node_args(args), grace_s=grace),
        stdin=sys.stdin.buffer,
        stdout=sys.stdout.buffer,
        start_timeout_s=cfg.hub.start_timeout_s,
        max_message_bytes=cfg.limits.mcp_message_max_bytes,
    )
    return proxy.run()


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def _serve_inline(cfg: NodeConfig, http: tuple[str, int] | None, token: str | None) -> None:
    from .._random import SystemRng
    from ..node.home import DataHome
    from ..node.node import Node

    assert cfg.data_dir is not None
    with DataHome(cfg.data_dir) as home:
        identity = home.identity(SystemRng())
        async with Node(cfg, identity, join_in_background=True, auto_publish=True) as node:
            logger.info("serve.node_ready aid=%s listen=%s peers=%d", node.aid, node.local_addr,
                        node.status().peers)  # fmt: skip
            await _expose(node, cfg)
            from ..mcp_server import FrontStats

            stats = FrontStats()  # what the front refused: in the status tool
            if http is None:  # no SDK unless a session needs it (mcp_server.line_front)
                from ..mcp_server import ServerCore
                from ..mcp_server.stdio_front import serve_stdio

                core = ServerCore(node, front_stats=stats)
                await serve_stdio(core, limits=cfg.limits, stats=stats)
                return
            # The mcp SDK takes most of a second to import: the node joins first.
            from ..mcp_server import build_server
            from ..mcp_server._compat import run_http

            server = build_server(node, front_stats=stats)
            await run_http(server, http[0], http[1], token=token, limits=cfg.limits,
                           stats=stats)  # fmt: skip


async def run_node(cfg: NodeConfig, *, stay: bool) -> None:
    """The shared node: this data directory's node, serving MCP to every local client on
    its channel until stopped or idle past ``hub.grace_s`` (never, with ``stay``)."""
    import anyio

    from .._random import SystemRng
    from ..hub.server import NodeHub
    from ..node.home import DataHome
    from ..node.node import Node

    assert cfg.data_dir is not None
    with DataHome(cfg.data_dir) as home:
        identity = home.identity(SystemRng())
        async with Node(cfg, identity, join_in_background=True, auto_publish=True) as node:
            await _expose(node, cfg)
            # No mcp SDK here: a desktop client's session is answered without it, and the
            # SDK's server is built only when a session needs it (mcp_server.line_front).
            from ..mcp_server import FrontStats, ServerCore
            from ..mcp_server.line_front import serve_stream

            stats = FrontStats()
            core = ServerCore(node, front_stats=stats)

            async def session(stream: Any) -> None:
                await serve_stream(core, stream, limits=cfg.limits, stats=stats)

            hub = NodeHub(
                cfg.data_dir,
                session=session,
                describe=lambda: {
                    "aid": str(node.aid),
                    "data_dir": str(cfg.data_dir),
                    "joining": node.joining,
                },
                config=cfg.hub,
                max_clients=cfg.limits.mcp_local_clients,
                stay=stay,
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(_stop_on_signal, hub)
                await hub.serve()
                tg.cancel_scope.cancel()


async def _stop_on_signal(hub: NodeHub) -> None:
    """SIGTERM/SIGINT stop the hub cleanly (its channel file goes). A loop without signal
    handlers (Windows' Proactor loop) has none: Ctrl+C ends the process as KeyboardInterrupt
    there, and the next node removes what this one left."""
    import signal

    import anyio

    try:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                hub.stop()
                return
    except NotImplementedError:
        return
