"""``python -m a2al_mcp.testing.nat_testbed check|shell``: the testbed from the command line.

- ``check``: build the testbed, measure every host with RFC 5780 STUN tests
  (:mod:`.nat_check`), print a table, tear down; exit status 1 when a host misbehaves.
- ``shell [CMD...]``: build the testbed and run ``bash`` (or CMD) in its outer namespace;
  ``tb HOST CMD...`` runs a command in a host (``tb prc ip addr``, ``tb r-prc conntrack -L``,
  ``tb upnp1 upnpc -l``); everything is torn down when the shell exits.

``--hosts pub1=public,prc=prc,...`` picks the hosts (default: pub1-3, cone, prc, sym, upnp1 =
IGDv1, upnp2 = IGDv2); ``--no-turn`` leaves coturn out; ``--keep-state`` keeps configs and
logs.  Needs root.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence

from .nat_check import EXPECTED, observe
from .nat_testbed import NatTestbed
from .nat_topology import DEFAULT_HOSTS

__all__ = ["main"]


def _hosts(text: str) -> dict[str, str]:
    out = {}
    for item in text.split(","):
        name, sep, kind = item.strip().partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"{item!r}: expected NAME=KIND")
        out[name] = kind
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m a2al_mcp.testing.nat_testbed",
        description="The a2al-mcp NAT testbed (sealed network namespaces; needs root).",
    )
    parser.add_argument("--hosts", type=_hosts, default=dict(DEFAULT_HOSTS), help="NAME=KIND,...")
    parser.add_argument("--no-turn", action="store_true", help="no coturn host")
    parser.add_argument("--keep-state", action="store_true", help="keep configs and logs")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="build, measure every host's NAT, tear down")
    shell = sub.add_parser("shell", help="bash (or CMD) in the outer namespace")
    shell.add_argument("cmd", nargs=argparse.REMAINDER, help="command instead of bash")
    return parser


def _check(tb: NatTestbed) -> int:
    if not tb.topology.turn:
        sys.stderr.write("check needs coturn (drop --no-turn)\n")
        return 2
    failed = 0
    header = f"{'host':8} {'kind':11} {'address':13} {'mapped':21} {'mapping':21} filtering\n"
    sys.stdout.write(header)
    for name in tb.topology.names:
        obs = observe(tb, name)
        mapped = f"{obs.mapped[0]}:{obs.mapped[1]}" if obs.mapped else "-"
        verdict = "ok" if obs.as_expected else f"EXPECTED {EXPECTED[obs.kind]}"
        failed += not obs.as_expected
        sys.stdout.write(
            f"{name:8} {obs.kind:11} {tb.addr(name):13} {mapped:21} "
            f"{obs.mapping or '-':21} {obs.filtering or '-'}  {verdict}\n"
        )
    sys.stdout.write(
        f"coturn: {tb.stun[0]}:{tb.stun[1]}, RFC 5780 alternate "
        f"{tb.stun_alternate[0]}:{tb.stun_alternate[1]}\n"
    )
    return 1 if failed else 0


def _shell(tb: NatTestbed, cmd: Sequence[str]) -> int:
    cases = "\n".join(f"    {name}) pid={pid} ;;" for name, pid in sorted(tb.namespaces.items()))
    rc = tb.state_dir / "bashrc"
    rc.write_text(
        f"""PS1='[nat-testbed] \\w\\$ '
tb() {{
  local pid
  case "$1" in
{cases}
    *) echo "tb: no host '$1' (have: {" ".join(sorted(tb.namespaces))})" >&2; return 2 ;;
  esac
  shift
  nsenter --net=/proc/$pid/ns/net -- "$@"
}}
"""
    )
    lines = [f"{'host':8} {'kind':11} {'address':13} public address"]
    lines += [
        f"{p.name:8} {p.kind:11} {p.addr:13} {p.public_addr}"
        + (f"  (router {p.router})" if p.router else "")
        for p in tb.topology.hosts
    ]
    sys.stderr.write("\n".join(lines) + f"\nstate: {tb.state_dir}\nuse: tb HOST CMD...\n")
    argv = ["bash", "--rcfile", str(rc), "-i"]
    if cmd:
        line = cmd[0] if len(cmd) == 1 else shlex.join(cmd)  # one argument: a shell line
        argv = ["bash", "-c", f"source {shlex.quote(str(rc))}; {line}"]
    # Ctrl-C belongs to the shell (it shares our terminal): it must not tear the testbed down
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.run(
            tb.argv("outer", argv), check=False, preexec_fn=_default_sigint
        ).returncode
    finally:
        signal.signal(signal.SIGINT, previous)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    with NatTestbed(args.hosts, turn=not args.no_turn, keep_state=args.keep_state) as tb:
        if args.command == "check":
            return _check(tb)
        return _shell(tb, args.cmd)
