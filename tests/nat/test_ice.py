"""ICE with aioice across the NAT testbed (a2al_mcp.ice): host, srflx and TURN relay pairs,
and QUIC of a node's own QuicService (its identity, shared socket and handlers) over the
selected pair.

Every ICE side runs as a process inside a testbed host (``tb.popen``), never in the root
namespace: aioice binds every interface address of the namespace it runs in.  This file is
also that process (``python -m tests.nat.test_ice side …``): it speaks JSON lines on
stdin/stdout, the test pumps one side's ``cred``/``cand``/``eoc`` (and, for QUIC, the
callee's ``aid``) to the other — the signalling hub's job, done here by pipes.  Closing a
side's stdin ends it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

import pytest

from a2al_mcp.testing.nat_testbed import NatTestbed

pytestmark = pytest.mark.nat

FORWARDED = frozenset({"cred", "cand", "eoc", "aid"})
"""What the pipes carry from one side to the other (the signalling frames, and the AID the
caller dials)."""
RUN_S = 45.0
"""Both sides must be done within this (gathering ≤ 8 s, ICE ≤ 30 s, QUIC a few RTTs)."""


# ---------------------------------------------------------------------------- the side process


def _emit(frame: dict[str, Any]) -> None:
    print(json.dumps(frame), flush=True)


async def _side(args: argparse.Namespace) -> None:
    import anyio

    from a2al_mcp import SystemRng
    from a2al_mcp._clock import SystemClock
    from a2al_mcp.errors import A2ALError
    from a2al_mcp.ice import IceConfig, IceSession, parse_stun_url, parse_turn_url
    from a2al_mcp.identity import Aid, Identity

    # the caller is controlling, unless told otherwise (glare: both callers)
    controlling = {"yes": True, "no": False}.get(args.controlling, args.role == "caller")
    dials = args.role == "caller"
    config = IceConfig(
        stun_servers=tuple(parse_stun_url(url) for url in args.stun),
        turn_servers=tuple(
            parse_turn_url(url, args.turn_user, args.turn_pass) for url in args.turn
        ),
        use_ipv6=False,
        connect_timeout_s=args.connect_timeout,
        credentials_timeout_s=args.credentials_timeout,
    )
    identity = Identity.generate(SystemRng())
    peer_aid: list[Aid] = []
    got_aid = anyio.Event()
    eof = anyio.Event()

    async with IceSession(config, controlling=controlling, clock=SystemClock()) as ice:

        async def read() -> None:
            async for line in anyio.wrap_file(sys.stdin):
                frame = json.loads(line)
                try:
                    if frame["t"] == "cred":
                        ice.set_remote_credentials(frame["u"], frame["p"])
                    elif frame["t"] == "cand":
                        await ice.add_remote_candidate(frame["c"])
                    elif frame["t"] == "eoc":
                        await ice.end_of_candidates()
                    elif frame["t"] == "aid":
                        peer_aid.append(Aid.from_str(frame["a"]))
                        got_aid.set()
                except A2ALError as exc:
                    _emit({"t": "refused", "code": exc.code, "message": str(exc)})
            eof.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            creds = ice.local_credentials
            if not args.no_cred:
                _emit({"t": "cred", "u": creds.ufrag, "p": creds.pwd})
            if args.quic and not dials:
                _emit({"t": "aid", "a": str(identity.aid)})
            for text in await ice.gather():
                _emit({"t": "cand", "c": text})
            _emit({"t": "eoc"})
            try:
                pair = await ice.connect()
            except A2ALError as exc:
                _emit({"t": "failed", "code": exc.code, "message": str(exc)})
                await eof.wait()
                tg.cancel_scope.cancel()
                return
            _emit({"t": "selected", "kind": pair.kind, "local": list(pair.local),
                   "remote": list(pair.remote), "local_type": pair.local_type,
                   "remote_type": pair.remote_type, "rtt_s": pair.rtt_s,
                   "stats": _jsonable(ice.statistics())})  # fmt: skip
            if args.quic:
                await _quic(ice, pair.remote, identity, dials, peer_aid, got_aid, eof)
            await eof.wait()
            tg.cancel_scope.cancel()


async def _quic(
    ice: Any, remote: Any, identity: Any, dials: bool, peer_aid: list[Any],
    got_aid: Any, eof: Any,
) -> None:  # fmt: skip
    """QUIC of a node's own service (its identity, its shared UDP socket, its handlers)
    over the selected pair: the caller is the QUIC client; the callee's echo handler
    serves the stream."""
    from a2al_mcp.ice import accept_over_ice, dial_over_ice
    from tests.unit.ice.quic_over_link import echo, quic_node

    async with quic_node(bind=("0.0.0.0", 0), identity=identity) as node:
        if dials:
            await got_aid.wait()
            pc = dial_over_ice(node.service, node.cert(), peer_aid[0], ice)
            reply = await echo(pc, b"hello over ICE")
            assert pc.path is not None
            _emit({"t": "quic", "reply": reply.decode(), "peer": str(pc.peer_aid),
                   "label": pc.path.label, "remote": list(pc.path.remote or ()),
                   "path": _jsonable(pc.path.statistics()),
                   "socket_sent": node.endpoint.statistics().sent,
                   "paths": node.service.statistics().paths})  # fmt: skip
        else:
            path = accept_over_ice(node.service, ice)
            accepted = await path.wait_connection()
            await accepted.wait_ready()
            _emit({"t": "accepted", "peer": str(accepted.peer_aid), "label": path.label,
                   "socket_sent": node.endpoint.statistics().sent})  # fmt: skip
        await eof.wait()


def _jsonable(stats: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(stats)


def main(argv: list[str]) -> None:
    import logging

    import anyio

    parser = argparse.ArgumentParser(prog="python -m tests.nat.test_ice")
    parser.add_argument("command", choices=["side"])
    parser.add_argument("--role", choices=["caller", "callee"], required=True)
    parser.add_argument("--stun", action="append", default=[])
    parser.add_argument("--turn", action="append", default=[])
    parser.add_argument("--turn-user", default="")
    parser.add_argument("--turn-pass", default="")
    parser.add_argument("--quic", action="store_true")
    parser.add_argument("--connect-timeout", type=float, default=30.0)
    parser.add_argument("--controlling", choices=["yes", "no"])
    parser.add_argument("--credentials-timeout", type=float, default=30.0)
    parser.add_argument("--no-cred", action="store_true", help="a peer that never sends cred")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"{args.role} %(name)s %(message)s")  # fmt: skip
    anyio.run(_side, args)


# ---------------------------------------------------------------------------- the test side


class Sides:
    """Two side processes and the pumps between them; every frame each one wrote."""

    def __init__(
        self, tb: NatTestbed, caller: str, callee: str, args: list[str],
        logs: dict[str, IO[bytes]],
    ) -> None:  # fmt: skip
        self.frames: dict[str, list[dict[str, Any]]] = {"caller": [], "callee": []}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs = logs
        self._cond = threading.Condition()
        for role, host in (("caller", caller), ("callee", callee)):
            argv = [sys.executable, "-m", "tests.nat.test_ice", "side", "--role", role, *args]
            self.procs[role] = tb.popen(host, argv, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self._logs[role],
                                        label=f"{host}:ice-{role}")  # fmt: skip
        self._threads = [
            threading.Thread(target=self._pump, args=("caller", "callee"), daemon=True),
            threading.Thread(target=self._pump, args=("callee", "caller"), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, src: str, dst: str) -> None:
        out = self.procs[src].stdout
        into = self.procs[dst].stdin
        assert out is not None and into is not None
        for line in out:
            frame = json.loads(line)
            with self._cond:
                self.frames[src].append(frame)
                self._cond.notify_all()
            if frame["t"] in FORWARDED:
                with contextlib.suppress(BrokenPipeError, ValueError):
                    into.write(line)
                    into.flush()
        with self._cond:
            self.frames[src].append({"t": "exit"})
            self._cond.notify_all()

    def first(self, role: str, types: set[str], deadline: float) -> dict[str, Any]:
        """The first frame of one of ``types`` that ``role`` wrote (waits until
        ``deadline``, a time.monotonic() value)."""
        with self._cond:
            while True:
                for frame in self.frames[role]:
                    if frame["t"] in types:
                        return frame
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{role}: none of {types} in time: {self.frames[role]}\n"
                                         f"{self._stderr(role)}")  # fmt: skip
                self._cond.wait(left)

    def _stderr(self, role: str) -> str:
        log = self._logs[role]
        log.seek(0)
        return log.read().decode(errors="replace")[-4000:]

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError, OSError):
                    proc.stdin.close()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for thread in self._threads:
            thread.join(timeout=5)
        for proc in self.procs.values():
            if proc.stdout is not None:
                proc.stdout.close()


@contextlib.contextmanager
def sides(tb: NatTestbed, caller: str, callee: str, *args: str) -> Iterator[Sides]:
    with tempfile.TemporaryFile() as caller_log, tempfile.TemporaryFile() as callee_log:
        pair = Sides(tb, caller, callee, list(args), {"caller": caller_log, "callee": callee_log})
        try:
            yield pair
        finally:
            pair.close()


def connected(pair: Sides, *, quic: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both sides' ``selected`` frames (the caller's ``quic`` frame too, when asked)."""
    deadline = time.monotonic() + RUN_S
    ends = {"selected", "failed", "exit"}
    caller = pair.first("caller", ends, deadline)
    callee = pair.first("callee", ends, deadline)
    for role, frame in (("caller", caller), ("callee", callee)):
        print(f"{role}: {frame}")  # shown with -s, and on failure
    assert caller["t"] == "selected", caller
    assert callee["t"] == "selected", callee
    if quic:
        done = pair.first("caller", {"quic", "exit"}, deadline)
        assert done["t"] == "quic", pair.frames["caller"]
        print(f"caller: {done}")
        caller["quic"] = done
    return caller, callee


def sent(pair: Sides, role: str) -> list[str]:
    return [f["c"] for f in pair.frames[role] if f["t"] == "cand"]


def turn_args(tb: NatTestbed) -> list[str]:
    [(url, user, password)] = tb.turn_servers
    return ["--turn", url, "--turn-user", user, "--turn-pass", password]


def stun_args(tb: NatTestbed) -> list[str]:
    host, port = tb.stun
    return ["--stun", f"stun:{host}:{port}"]


@pytest.fixture(scope="module")
def tb(nat_available: None) -> Iterator[NatTestbed]:
    """Two public hosts, a full cone, two symmetric NATs, and coturn."""
    hosts = {"pub1": "public", "pub2": "public", "cone": "cone", "sym": "sym", "sym2": "sym"}
    with NatTestbed(hosts) as testbed:
        yield testbed


def test_host_pair_between_two_public_hosts(tb: NatTestbed) -> None:
    with sides(tb, "pub1", "pub2") as pair:
        caller, callee = connected(pair)
    assert caller["kind"] == callee["kind"] == "host"
    assert caller["remote"] == [tb.addr("pub2"), callee["local"][1]]
    assert callee["remote"] == [tb.addr("pub1"), caller["local"][1]]
    assert caller["rtt_s"] is not None and caller["rtt_s"] >= 0
    # what we sent is pion's grammar: no prefix, lowercase udp, typ host
    [text] = sent(pair, "caller")
    assert text.split()[1:3] == ["1", "udp"] and text.endswith("typ host")
    assert text.split()[4] == tb.addr("pub1")


def test_cone_to_public_through_the_cone_nats_mapping(tb: NatTestbed) -> None:
    tb.conntrack_flush("cone")
    with sides(tb, "cone", "pub1", *stun_args(tb)) as pair:
        caller, callee = connected(pair)
    texts = sent(pair, "caller")
    srflx = [t for t in texts if " typ srflx " in t]
    assert len(srflx) == 1 and srflx[0].split()[4] == tb.wan("cone")
    # The public side reaches the cone host at its NAT's mapping (signalled as srflx, or
    # learned from the check as prflx); the cone side sends from its host base (aioice
    # pairs only bases), so its own view of the pair types is host -> host.
    assert callee["kind"] == "srflx"
    assert callee["remote"][0] == tb.wan("cone")
    assert callee["remote_type"] in ("srflx", "prflx")
    assert caller["remote"][0] == tb.addr("pub1")
    assert caller["local"][0] == tb.addr("cone")


def test_symmetric_to_symmetric_through_the_turn_relay(tb: NatTestbed) -> None:
    tb.conntrack_flush("sym")
    tb.conntrack_flush("sym2")
    with sides(tb, "sym", "sym2", *stun_args(tb), *turn_args(tb)) as pair:
        caller, callee = connected(pair)
    for role in ("caller", "callee"):
        types = {t.split()[7] for t in sent(pair, role)}
        assert types == {"host", "srflx", "relay"}, sent(pair, role)
    relay_ip = tb.turn_servers[0][0].split(":")[1]
    assert caller["kind"] == callee["kind"] == "relay"
    assert relay_ip in (caller["remote"][0], caller["local"][0])


def test_quic_over_the_selected_pair_between_public_hosts(tb: NatTestbed) -> None:
    with sides(tb, "pub1", "pub2", "--quic") as pair:
        caller, _ = connected(pair, quic=True)
    aid = next(f["a"] for f in pair.frames["callee"] if f["t"] == "aid")
    quic = caller["quic"]
    assert quic["reply"] == "echo:hello over ICE"
    assert quic["peer"] == aid
    assert quic["path"]["sent"] > 0 and quic["path"]["received"] > 0


def test_quic_over_a_turn_relay_pair(tb: NatTestbed) -> None:
    """Two nodes' QUIC services behind symmetric NATs: the connection runs over the coturn
    relay pair (never their shared sockets), and the callee's stream handler serves it."""
    tb.conntrack_flush("sym")
    tb.conntrack_flush("sym2")
    with sides(tb, "sym", "sym2", *stun_args(tb), *turn_args(tb), "--quic") as pair:
        caller, callee = connected(pair, quic=True)
        accepted = pair.first("callee", {"accepted", "exit"}, time.monotonic() + RUN_S)
    print(f"callee: {accepted}")
    assert caller["kind"] == callee["kind"] == "relay"
    quic = caller["quic"]
    assert quic["reply"] == "echo:hello over ICE"
    assert quic["label"] == "relay" and quic["remote"] == caller["remote"]
    assert quic["path"]["sent"] > 0 and quic["path"]["received"] > 0
    assert not quic["path"]["failed"] and quic["paths"] == 1
    assert quic["socket_sent"] == 0  # not one datagram of it left by the shared socket
    assert accepted["t"] == "accepted" and accepted["label"] == "relay"
    assert accepted["socket_sent"] == 0
    aid = next(f["a"] for f in pair.frames["callee"] if f["t"] == "aid")
    assert quic["peer"] == aid


def test_glare_both_controlling_resolve_the_role_conflict(tb: NatTestbed) -> None:
    """Two callers paired by a hub (testbed README D15): both start controlling; the ICE
    role conflict (487, tie-breakers) leaves one controlling, and QUIC still comes up."""
    tb.conntrack_flush("cone")
    with sides(tb, "cone", "pub1", *stun_args(tb), "--controlling", "yes", "--quic") as pair:
        caller, callee = connected(pair, quic=True)
    assert {caller["stats"]["controlling"], callee["stats"]["controlling"]} == {True, False}
    assert caller["quic"]["reply"] == "echo:hello over ICE"


def test_two_symmetric_nats_without_turn_fail_with_a_timeout(tb: NatTestbed) -> None:
    tb.conntrack_flush("sym")
    tb.conntrack_flush("sym2")
    with sides(tb, "sym", "sym2", *stun_args(tb), "--connect-timeout", "4") as pair:
        deadline = time.monotonic() + RUN_S
        caller = pair.first("caller", {"selected", "failed", "exit"}, deadline)
        callee = pair.first("callee", {"selected", "failed", "exit"}, deadline)
    print(f"caller: {caller}\ncallee: {callee}")
    for frame in (caller, callee):
        assert frame["t"] == "failed"
        assert frame["code"] == "TIMEOUT"
        assert "local: 1 host, 1 srflx; remote: 1 host, 1 srflx" in frame["message"]


def test_a_peer_without_credentials_times_out_on_them(tb: NatTestbed) -> None:
    with sides(tb, "pub1", "pub2", "--no-cred", "--credentials-timeout", "1") as pair:
        deadline = time.monotonic() + RUN_S
        frames = [pair.first(role, {"selected", "failed", "exit"}, deadline)
                  for role in ("caller", "callee")]  # fmt: skip
    for frame in frames:
        assert frame["t"] == "failed", frame
        assert frame["code"] == "TIMEOUT"
        assert frame["message"] == "no ICE credentials from the peer within 1 s"


if __name__ == "__main__":
    main(sys.argv[1:])
