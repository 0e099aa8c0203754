"""Remote kills (issue 14, findings 1 and 2) against a real ``a2al-mcp serve --stdio``.

The served node runs in a subprocess, driven by the official mcp client (which tells us its
AID and UDP port through the ``status`` tool, and notices at once if the process died). Each
test attacks it over loopback and then checks it still answers:

* one unauthenticated QUIC Initial whose ClientHello offers an X25519MLKEM768 key share of
  10 bytes, and one with an empty share (qh3's Rust code panicked, the panic is a
  ``BaseException``, and the node's task group ended: exit 1);
* one mailbox note, then STOP_SENDING on its stream before the ``01`` acknowledgement is
  written (writing to the reset stream raised inside the store task and ended the node).
  Acknowledge-after-commit must hold: the note is in the inbox even though no
  acknowledgement could reach us, and a second note on the same connection is acknowledged.

The second runs with the served node accepting on qh3 (the default) and on aioquic.

In-process tests at the end check the containment policy itself: the UDP driver and the
node's peer-driven tasks swallow (and count) any exception but cancellation and exit.
"""

from __future__ import annotations

import math
import socket
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from a2al_mcp import Aid, NodeConfig, SystemRng
from a2al_mcp._clock import SystemClock
from a2al_mcp.identity import VerifyKey
from a2al_mcp.mcp_server._compat import MCP_MAJOR
from a2al_mcp.node import Node
from a2al_mcp.protocol.mailbox_crypto import seal_note
from a2al_mcp.protocol.records import SignedRecord
from a2al_mcp.protocol.session_frames import MailboxFrame
from a2al_mcp.transport.endpoint import UdpEndpoint
from a2al_mcp.transport.tls import client_configuration
from tests.mcp.toolcall import call
from tests.unit.transport.test_handshake_differential import (
    CALLER,
    MLKEM,
    NODE,
    hostile_client,
    key_shares,
)

pytestmark = pytest.mark.anyio

if MCP_MAJOR != 2:  # pragma: no cover
    pytest.skip("mcp 2.x client", allow_module_level=True)

from mcp import Client, StdioServerParameters  # noqa: E402

STACKS = ("qh3", "aioquic")

SERVE = """
import sys
from a2al_mcp.transport import peer
peer.DEFAULT_INBOUND_STACK = sys.argv[1]  # the stack the served node accepts with
from a2al_mcp.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


def served(stack: str, home: Path) -> StdioServerParameters:
    # --standalone: the node must run in this process, where the stack was chosen
    args = ["-c", SERVE, stack, "serve", "--stdio", "--standalone", "--listen", "127.0.0.1:0",
            "--data-dir", str(home)]  # fmt: skip
    return StdioServerParameters(command=sys.executable, args=args)


async def where(client: Any) -> tuple[Aid, int]:
    st = await call(client, "status")
    host, port = st["listen"].rsplit(":", 1)
    assert host == "127.0.0.1"
    return Aid.from_str(st["aid"]), int(port)


def hostile_initial(share: bytes, port: int) -> list[bytes]:
    """The first datagrams of a client whose ClientHello offers only X25519MLKEM768 with
    ``share`` as its key share (the client machinery is aioquic's; the share is rewritten)."""
    client = hostile_client(client_configuration(CALLER, NODE.aid), key_shares((MLKEM, share)))
    client.connect(("127.0.0.1", port), now=0.0)
    return [data for data, _ in client.datagrams_to_send(0.0)]


async def send_and_wait_for_reply(datagrams: list[bytes], port: int) -> bool:
    """Send ``datagrams`` from a fresh socket; True if the node answered within 3 s (a
    node that refuses the handshake answers with a CONNECTION_CLOSE)."""
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
        for data in datagrams:
            await sock.sendto(data, "127.0.0.1", port)
        with anyio.move_on_after(3):
            await sock.receive()
            return True
    return False


async def test_a_short_mlkem_key_share_does_not_kill_the_node(tmp_path: Path) -> None:
    # qh3 accepts (the default); aioquic does not know X25519MLKEM768 and never parsed the
    # share (test_handshake_differential runs every hostile share against both stacks)
    with anyio.fail_after(30):
        async with Client(served("qh3", tmp_path / "home")) as c:
            _, port = await where(c)
            for share in (b"\x07" * 10, b""):
                answered = await send_and_wait_for_reply(hostile_initial(share, port), port)
                assert answered  # a CONNECTION_CLOSE with an alert: refused, not dead
                st = await call(c, "status")  # the process is alive and its node answers
                assert st["contained_errors"]["core"] == 0  # refused, not contained
            # an honest client still gets in
            async with Node(NodeConfig(listen_addr="127.0.0.1:0")) as honest:
                aid, _ = await where(c)
                pc = await honest.connect(aid, endpoints=[f"quic://127.0.0.1:{port}"])
                assert pc.peer.aid == aid


def _note(sender: Node, recipient: Aid, key: bytes, text: str) -> MailboxFrame:
    payload = seal_note(sender=sender.aid, recipient=recipient, recipient_key=VerifyKey(key),
                        body=text.encode(), rng=SystemRng())  # fmt: skip
    wall = sender._clock.wall()
    rec = SignedRecord.sign(sender.identity, 0x80, payload.to_bytes(), seq=math.floor(wall * 1e9),
                            timestamp=int(wall), ttl=3600)  # fmt: skip
    return MailboxFrame(rec.msg_id, rec.to_bytes())


@pytest.mark.parametrize("stack", STACKS)
async def test_stop_sending_on_a_mailbox_note_does_not_kill_the_node(
    stack: str, tmp_path: Path
) -> None:
    with anyio.fail_after(30):
        async with (
            Client(served(stack, tmp_path / "home")) as c,
            Node(NodeConfig(listen_addr="127.0.0.1:0")) as attacker,
        ):
            aid, port = await where(c)
            pc = await attacker.connect(aid, endpoints=[f"quic://127.0.0.1:{port}"])
            key = pc.peer.public_key
            await pc.wait_ready()
            # the note and STOP_SENDING leave in one flight: the node stores the note, then
            # writes its acknowledgement to a stream whose send side we already stopped
            sid = pc.session.send_mailbox(_note(attacker, aid, key, "first"))
            pc.conn.stop_stream(sid, 0x0B)
            pc.service.flush()
            # a second note on the same connection is acknowledged: the node lives on
            await pc.send_mailbox(_note(attacker, aid, key, "second"))
            st = await call(c, "status")
            assert st["connections"] >= 1
            box = await call(c, "read_mailbox", {"peek": True})
            # nothing acknowledged is lost; and the first note was committed before its
            # acknowledgement was written (acknowledge after commit), so it is there too
            assert sorted(m["text"] for m in box["messages"]) == ["first", "second"]
            assert {m["from"] for m in box["messages"]} == {str(attacker.aid)}


# ------------------------------------------------------------------------ containment policy


class Panic(BaseException):  # what qh3's pyo3_runtime.PanicException is like
    """A BaseException that is neither cancellation nor exit, as a Rust panic."""


class _ExplodingCore:
    """A datagram core that panics on every datagram, timer and send."""

    def __init__(self, expect: int) -> None:
        self.calls = 0
        self.expect = expect
        self.seen = anyio.Event()

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        self.calls += 1
        if self.calls == self.expect:
            self.seen.set()
        raise Panic("receive")

    def handle_timer(self, now: float) -> None:
        raise Panic("timer")

    def get_timer(self) -> float | None:
        return None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        raise Panic("send")

    def next_event(self) -> object | None:
        raise Panic("event")


async def test_the_driver_contains_panics_of_a_core() -> None:
    core = _ExplodingCore(expect=3)
    async with UdpEndpoint(("127.0.0.1", 0), clock=SystemClock(), dht=core) as ep:
        port = ep.local_addr[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(3):
                s.sendto(b"\x01dht", ("127.0.0.1", port))
        with anyio.fail_after(5):
            await core.seen.wait()
        await anyio.lowlevel.checkpoint()
        stats = ep.statistics()
        assert stats.core_errors >= 3 + 2  # each datagram, and next_event/send of the flushes


async def test_node_tasks_contain_panics_and_count_them() -> None:
    async with Node(NodeConfig(listen_addr="127.0.0.1:0")) as node:
        done = anyio.Event()

        async def hostile() -> None:
            done.set()
            raise Panic("from a peer's stream handler")

        async def failing() -> None:
            raise ValueError("a write to a reset stream")

        node.spawn(failing)
        node.spawn(hostile)
        await done.wait()
        await anyio.lowlevel.checkpoint()
        st = node.status()
        assert st.contained_errors.tasks == 2 and st.contained_errors.last == "Panic"
        node.status()  # the node is still open
