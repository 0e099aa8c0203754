"""Hole punching over our signalling hub across the NAT testbed (a2al_mcp.signal.punch_*).

Two hosts behind port-restricted NATs (EIM + APDF, ``prc`` and ``prc2``), our hub
(``a2al_mcp.signal.ws_server``) on a public host. Each side is a process inside its testbed
host (``tb.popen``), and this file is that process (``python -m tests.nat.test_punch …``):
a plain UDP socket on port 4121 stands in for the node's main socket (the probes go out of it,
and a datagram from the partner on it is the "path up" the node would report for a QUIC
connection). Both register through :class:`SignalService`; the caller opens the room with
``call``, the callee answers the ``incoming`` with ``answer``; the punch runs over the room.
Afterwards each side sends datagrams to where the punch found the other: they must arrive
both ways, where — the control — one side sending alone reaches nobody.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
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

PORT = 4121
HUB_PORT = 4121
RUN_S = 40.0
PROBE = b"\x00a2al-punch-probe"
DATA = b"\x01a2al-data "


def _emit(frame: dict[str, Any]) -> None:
    print(json.dumps(frame), flush=True)


# ---------------------------------------------------------------------------- the processes


async def _hub(args: argparse.Namespace) -> None:
    import anyio

    from a2al_mcp.config import SignalConfig
    from a2al_mcp.signal.ws_server import HubServer

    hub = HubServer(SignalConfig())
    async with anyio.create_task_group() as tg:
        bound = await tg.start(hub.serve, "0.0.0.0", args.port)
        _emit({"t": "ready", "bound": list(bound)})
        await anyio.wrap_file(sys.stdin).read()  # until the test closes our stdin
        _emit({"t": "stats", "stats": str(hub.core.stats)})
        tg.cancel_scope.cancel()


class _MainSocket:
    """The stand-in for the node's main socket: sends probes, reports the partner's packets."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", port))
        self.sock.setblocking(False)
        self.probes_sent = 0
        self.seen: list[tuple[bytes, tuple[str, int]]] = []

    def send_probe(self, addr: tuple[str, int]) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendto(PROBE, addr)
            self.probes_sent += 1

    async def receive(self) -> tuple[bytes, tuple[str, int]]:
        import anyio

        while True:
            try:
                data, addr = self.sock.recvfrom(2048)
            except BlockingIOError:
                await anyio.wait_readable(self.sock)
                continue
            self.seen.append((data, addr))
            return data, (str(addr[0]), int(addr[1]))


async def _side(args: argparse.Namespace) -> None:
    """``caller``/``callee``: one role; ``both``: register, wait for ``go <partner AID>`` on
    stdin, then call the partner while answering its call (glare: both do this at once)."""
    import anyio

    from a2al_mcp import SystemRng
    from a2al_mcp._clock import SystemClock
    from a2al_mcp.config import SignalConfig
    from a2al_mcp.errors import A2ALError, NotFound
    from a2al_mcp.identity import Identity
    from a2al_mcp.signal.client_service import SignalService, answer, call
    from a2al_mcp.signal.frames import Frame
    from a2al_mcp.signal.punch_core import Finish, PunchAttempt
    from a2al_mcp.signal.punch_service import PunchSession, punch_over_room
    from a2al_mcp.signal.room_socket import RoomSocket

    clock = SystemClock()
    me = str(Identity.generate(SystemRng()).aid)
    main = _MainSocket(PORT)
    local = ((args.external, PORT),)
    sessions: list[PunchSession] = []
    attempts: list[PunchAttempt] = []
    peer_data: list[tuple[str, tuple[str, int]]] = []
    results: list[Finish] = []
    failures: list[str] = []

    async def read_main() -> None:
        while True:
            data, addr = await main.receive()
            if data.startswith(DATA):
                peer_data.append((data[len(DATA) :].decode(), addr))
            for session in sessions:
                session.path_up(addr)  # a packet from the partner: the path is up

    async def punch(room: RoomSocket, initiator: bool, done: anyio.CancelScope) -> None:
        attempt = PunchAttempt(initiator=initiator, local_addrs=local, nat_type=3)
        attempts.append(attempt)
        try:
            if args.send_cred:  # a2ald punches only once it has the partner's ICE cred
                await room.send(Frame("cred", u="pUnChUfRaGaBcDeF", p="pUnChPaSsWoRd" + "x" * 19))
            with anyio.fail_after(RUN_S):
                results.append(await punch_over_room(
                    room, attempt, sender=main, quic=None, clock=clock,
                    on_session=sessions.append,
                ))  # fmt: skip
            done.cancel()
        except NotFound:
            raise
        except A2ALError as exc:
            failures.append(f"{'caller' if initiator else 'callee'}: {exc} {attempt.stats}")
        finally:
            with anyio.CancelScope(shield=True):
                await room.aclose()

    async def as_caller(target: str, done: anyio.CancelScope) -> None:
        # a2ald's callee may not be registered (NotFound) or ready (no external address
        # yet: it never answers) at first: try again until --retry-s is spent
        give_up = clock.monotonic() + args.retry_s
        while True:
            try:
                await punch(await call(args.hub, me, target), True, done)
            except NotFound as exc:
                failures.append(f"caller: {exc}")
            if results or clock.monotonic() >= give_up:
                return
            await anyio.sleep(1.0)

    async def as_callee(done: anyio.CancelScope) -> None:
        incoming = await service.incoming.receive()
        await punch(await answer(incoming.hub, incoming.room), False, done)

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_main)
        service = SignalService(SignalConfig(), hubs=[args.hub], clock=clock)
        await tg.start(service.run)
        target = args.target
        if args.role != "caller":
            service.set_identities([me])
            with anyio.fail_after(10):
                await service.wait_registered()
            _emit({"t": "registered", "aid": me})
        if args.role == "both":
            line = await anyio.wrap_file(sys.stdin).readline()
            target = line.split()[1]
        async with anyio.create_task_group() as race:
            if args.role != "callee":
                race.start_soon(as_caller, target, race.cancel_scope)
            if args.role != "caller":
                race.start_soon(as_callee, race.cancel_scope)
        if not results:
            _emit({"t": "failed", "message": "; ".join(failures)})
            tg.cancel_scope.cancel()
            return
        result = results[0]
        winner = next(a for a in attempts if a.result == result)
        _emit({"t": "punched", "addr": list(result.addr), "round": result.round,
               "rtt_s": result.rtt_s, "probes": main.probes_sent,
               "targets": [list(a) for a in winner.targets], "initiator": winner.initiator,
               "glare": sum(a.stats.glare for a in attempts),
               "seen": [[data[:1].hex(), list(addr)] for data, addr in main.seen[:20]],
               "foreign": winner.stats.foreign_frames,
               "ts_mismatch": winner.stats.ts_mismatch,
               "unexpected": winner.stats.unexpected_frames,
               "failures": failures})  # fmt: skip
        # the path, proved by plain datagrams both ways
        for i in range(10):
            main.sock.sendto(DATA + f"{args.role}:{i}".encode(), result.addr)
            await anyio.sleep(0.1)
        await anyio.sleep(1.0)
        _emit({"t": "data", "got": [[text, list(addr)] for text, addr in peer_data]})
        tg.cancel_scope.cancel()


def _listen(args: argparse.Namespace) -> None:
    """The control: listen on the main port for ``seconds``; print what came."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", PORT))
    sock.settimeout(0.2)
    got = []
    _emit({"t": "listening"})
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        with contextlib.suppress(TimeoutError):
            data, addr = sock.recvfrom(2048)
            got.append([data.decode(errors="replace"), list(addr)])
    _emit({"t": "data", "got": got})


def _send(args: argparse.Namespace) -> None:
    """The control: from the main port, ``count`` datagrams to ``to`` (one side alone)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", PORT))
    host, port = args.to.rsplit(":", 1)
    for i in range(args.count):
        sock.sendto(DATA + f"alone:{i}".encode(), (host, int(port)))
        time.sleep(0.1)
    _emit({"t": "sent", "count": args.count})


def main(argv: list[str]) -> None:
    import logging

    import anyio

    parser = argparse.ArgumentParser(prog="python -m tests.nat.test_punch")
    sub = parser.add_subparsers(dest="command", required=True)
    hub = sub.add_parser("hub")
    hub.add_argument("--port", type=int, default=HUB_PORT)
    side = sub.add_parser("side")
    side.add_argument("--role", choices=["caller", "callee", "both"], required=True)
    side.add_argument("--hub", required=True)
    side.add_argument("--external", required=True, help="our main socket's external IPv4")
    side.add_argument("--target", default="", help="the callee's AID (caller)")
    side.add_argument("--retry-s", type=float, default=0.0, help="caller: keep trying so long")
    side.add_argument("--send-cred", action="store_true", help="send an ICE cred first")
    listen = sub.add_parser("listen")
    listen.add_argument("--seconds", type=float, default=2.0)
    send = sub.add_parser("send")
    send.add_argument("--to", required=True)
    send.add_argument("--count", type=int, default=10)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format=f"{args.command} %(name)s %(message)s")  # fmt: skip
    if args.command == "hub":
        anyio.run(_hub, args)
    elif args.command == "side":
        anyio.run(_side, args)
    elif args.command == "listen":
        _listen(args)
    else:
        _send(args)


# ---------------------------------------------------------------------------- the test side


class Proc:
    """One process in a testbed host; its JSON lines, collected by a thread."""

    def __init__(self, tb: NatTestbed, host: str, args: list[str], log: IO[bytes]) -> None:
        argv = [sys.executable, "-m", "tests.nat.test_punch", *args]
        self.log = log
        self.lines: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self.proc = tb.popen(host, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=log, label=f"{host}:punch-{args[0]}")  # fmt: skip
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(json.loads(line))
                self._cond.notify_all()
        with self._cond:
            self.lines.append({"t": "exit"})
            self._cond.notify_all()

    def first(self, *types: str, timeout: float = RUN_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if line["t"] in types or line["t"] == "exit":
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"none of {types} in time: {self.lines}\n{self.stderr()}")
                self._cond.wait(left)

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-6000:]

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._thread.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def process(tb: NatTestbed, host: str, *args: str) -> Iterator[Proc]:
    with tempfile.TemporaryFile() as log:
        proc = Proc(tb, host, list(args), log)
        try:
            yield proc
        finally:
            proc.close()


@pytest.fixture(scope="module")
def tb(nat_available: None) -> Iterator[NatTestbed]:
    """A public host for the hub and two port-restricted NATs."""
    with NatTestbed({"pub1": "public", "prc": "prc", "prc2": "prc"}, turn=False) as testbed:
        yield testbed


def _flush(tb: NatTestbed) -> None:
    tb.conntrack_flush("prc")
    tb.conntrack_flush("prc2")


def _alone(tb: NatTestbed, sender: str, receiver: str) -> list[Any]:
    """What ``receiver`` got when ``sender`` alone sent to its external main port."""
    _flush(tb)
    with process(tb, receiver, "listen", "--seconds", "2.5") as listener:
        assert listener.first("listening")["t"] == "listening"
        out = tb.run(sender, [sys.executable, "-m", "tests.nat.test_punch", "send",
                              "--to", f"{tb.wan(receiver)}:{PORT}"], check=True)  # fmt: skip
        assert json.loads(out.stdout)["t"] == "sent"
        got = listener.first("data")
    assert got["t"] == "data", listener.stderr()
    return list(got["got"])


def test_prc_to_prc_punch_over_our_hub_opens_the_path_both_ways(tb: NatTestbed) -> None:
    tb.prove_sealed()
    hub_url = f"ws://{tb.addr('pub1')}:{HUB_PORT}"
    with process(tb, "pub1", "hub") as hub:
        assert hub.first("ready")["t"] == "ready", hub.stderr()
        # the control: one side alone reaches nobody through the other's NAT (APDF)
        assert _alone(tb, "prc", "prc2") == []
        assert _alone(tb, "prc2", "prc") == []
        _flush(tb)  # no state between the hosts: first contact
        with process(tb, "prc2", "side", "--role", "callee", "--hub", hub_url,
                     "--external", tb.wan("prc2")) as callee:  # fmt: skip
            reg = callee.first("registered")
            assert reg["t"] == "registered", callee.stderr()
            caller_args = ("--hub", hub_url, "--external", tb.wan("prc"), "--target", reg["aid"])
            with process(tb, "prc", "side", "--role", "caller", *caller_args) as caller:
                ends = ("punched", "failed")
                done = {"caller": caller.first(*ends), "callee": callee.first(*ends)}
                data = {"caller": caller.first("data"), "callee": callee.first("data")}
                logs = {"caller": caller.stderr(), "callee": callee.stderr()}
    for role, frame in done.items():
        print(f"{role}: {frame}\n{role} data: {data[role]}")
        assert frame["t"] == "punched", f"{frame}\n{logs[role]}"
    # each found the other at its NAT's external main port
    assert done["caller"]["addr"] == [tb.wan("prc2"), PORT]
    assert done["callee"]["addr"] == [tb.wan("prc"), PORT]
    assert done["caller"]["targets"] == [[tb.wan("prc2"), PORT]]
    assert done["callee"]["targets"] == [[tb.wan("prc"), PORT]]
    # the path, both ways, through both NATs
    got_by_caller = {text for text, addr in data["caller"]["got"] if addr == [tb.wan("prc2"), PORT]}
    got_by_callee = {text for text, addr in data["callee"]["got"] if addr == [tb.wan("prc"), PORT]}
    assert got_by_caller == {f"callee:{i}" for i in range(10)}
    assert got_by_callee == {f"caller:{i}" for i in range(10)}


def test_glare_prc_and_prc2_call_each_other_at_once_and_both_get_the_path(tb: NatTestbed) -> None:
    """Two nodes behind port-restricted NATs dial each other at the same moment (issue 18's
    glare cell): both open the same room, the hub pairs what comes first (caller with caller,
    testbed D15, or caller with callee); each side races its call against its answer."""
    tb.prove_sealed()
    hub_url = f"ws://{tb.addr('pub1')}:{HUB_PORT}"
    with process(tb, "pub1", "hub") as hub:
        assert hub.first("ready")["t"] == "ready", hub.stderr()
        _flush(tb)
        args = ("side", "--role", "both", "--hub", hub_url, "--external")
        with process(tb, "prc", *args, tb.wan("prc")) as a, \
                process(tb, "prc2", *args, tb.wan("prc2")) as b:  # fmt: skip
            aid = {"a": a.first("registered"), "b": b.first("registered")}
            assert aid["a"]["t"] == aid["b"]["t"] == "registered", a.stderr() + b.stderr()
            for proc, other in ((a, aid["b"]["aid"]), (b, aid["a"]["aid"])):
                assert proc.proc.stdin is not None
                proc.proc.stdin.write(f"go {other}\n".encode())
            for proc in (a, b):
                assert proc.proc.stdin is not None
                proc.proc.stdin.flush()
            done = {"a": a.first("punched", "failed"), "b": b.first("punched", "failed")}
            data = {"a": a.first("data"), "b": b.first("data")}
            logs = {"a": a.stderr(), "b": b.stderr()}
    for side, frame in done.items():
        print(f"{side}: {frame}\n{side} data: {data[side]}")
        assert frame["t"] == "punched", f"{frame}\n{logs[side]}"
    assert done["a"]["addr"] == [tb.wan("prc2"), PORT]
    assert done["b"]["addr"] == [tb.wan("prc"), PORT]
    assert {t for t, addr in data["a"]["got"] if addr == [tb.wan("prc2"), PORT]} == {
        f"both:{i}" for i in range(10)
    }
    assert {t for t, addr in data["b"]["got"] if addr == [tb.wan("prc"), PORT]} == {
        f"both:{i}" for i in range(10)
    }


if __name__ == "__main__":
    main(sys.argv[1:])
