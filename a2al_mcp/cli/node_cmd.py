"""``a2al-mcp node run|start|stop|status``: the data directory's shared node.

``node run`` is the node process itself (what ``serve --stdio`` starts when no node runs, and
what a service manager may run): the node plus the hub that serves MCP to every local client.
``node start`` starts one in the background that stays up until ``node stop``; ``node status``
asks the running node (its AID, process, attached clients).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .._clock import SystemClock
from ..errors import UsageError
from .serve import add_node_options, config_from_args, node_args

__all__ = ["add_node_parser"]

STOP_WAIT_S = 15.0
"""How long ``node stop`` waits for the node to close its channel."""


def add_node_parser(sub: Any) -> None:
    node = sub.add_parser("node", help="the shared node of a data directory (run, start, stop, "
                          "status)").add_subparsers(dest="node_command", required=True)  # fmt: skip
    run = node.add_parser("run", help="run the node and its MCP hub in the foreground")
    run.add_argument("--stay", action="store_true", help="do not stop when idle")
    run.add_argument("--grace", type=float, metavar="SECONDS",
                     help="stop this long after the last client left (hub.grace_s)")  # fmt: skip
    add_node_options(run)
    run.set_defaults(func=_cmd_run, long_running=True)
    start = node.add_parser("start", help="start the node in the background (stays up)")
    add_node_options(start)
    start.set_defaults(func=_cmd_start)
    for name, helptext, fn in (("stop", "stop the running node", _cmd_stop),
                               ("status", "show the running node", _cmd_status)):  # fmt: skip
        p = node.add_parser(name, help=helptext)
        add_node_options(p)
        p.set_defaults(func=fn)


def _cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    import dataclasses

    import anyio

    from .serve import run_node

    cfg = config_from_args(args)
    if args.grace is not None:
        cfg = dataclasses.replace(cfg, hub=dataclasses.replace(cfg.hub, grace_s=args.grace))
    anyio.run(lambda: run_node(cfg, stay=args.stay))
    return {}


def _cmd_start(args: argparse.Namespace) -> dict[str, Any]:
    from ..hub.channel import ChannelError
    from ..hub.launcher import attach, node_command

    cfg = config_from_args(args)
    assert cfg.data_dir is not None
    data_dir = cfg.data_dir.expanduser().resolve()
    command = [*node_command(data_dir, node_args(args), grace_s=None), "--stay"]
    try:
        sock, hello, child = attach(data_dir, "status", command=command,
                                    start_timeout_s=cfg.hub.start_timeout_s)  # fmt: skip
    except ChannelError as exc:
        raise UsageError(f"the node did not start: {exc.reason}") from exc
    sock.close()
    return {"started": child is not None, **hello}


def _ask(args: argparse.Namespace, verb: Any) -> dict[str, Any]:
    from ..hub.channel import ChannelError
    from ..hub.launcher import attach

    cfg = config_from_args(args)
    assert cfg.data_dir is not None
    data_dir = cfg.data_dir.expanduser().resolve()
    try:
        sock, hello, _ = attach(data_dir, verb, command=None, start_timeout_s=0)
    except ChannelError as exc:
        raise UsageError(f"no node is running on {data_dir} ({exc.reason})") from exc
    sock.close()
    return hello


def _cmd_status(args: argparse.Namespace) -> dict[str, Any]:
    return _ask(args, "status")


def _cmd_stop(args: argparse.Namespace) -> dict[str, Any]:
    from ..hub.channel import read_info

    cfg = config_from_args(args)
    assert cfg.data_dir is not None
    data_dir = cfg.data_dir.expanduser().resolve()
    before = read_info(data_dir)
    _ask(args, "stop")
    clock = SystemClock()
    deadline = clock.monotonic() + STOP_WAIT_S
    while clock.monotonic() < deadline:
        now = read_info(data_dir)
        if now is None or before is None or now.token != before.token:
            return {"stopped": True, "pid": before.pid if before else None}
        time.sleep(0.05)
    print(f"warning: the node did not close within {STOP_WAIT_S:g} s", file=sys.stderr)
    return {"stopped": False, "pid": before.pid if before else None}
