"""A node under hostile input keeps answering PINGs; every drop is counted; caps hold."""

from __future__ import annotations

import os
import socket
import time

import anyio
import cbor2
import pytest

from a2al_mcp import Identity, NodeConfig, SignedRecord, SystemRng
from a2al_mcp.config import DhtConfig
from a2al_mcp.identity import NodeId
from a2al_mcp.node import Node
from a2al_mcp.protocol import dht_messages as dm
from a2al_mcp.protocol.payloads import EndpointPayload, TopicPayload, topic_key

pytestmark = pytest.mark.anyio


class Attacker:
    """A raw UDP socket speaking (and abusing) the DHT wire format."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self.ident = Identity.generate(SystemRng())
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, 0))
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)

    def signed(self, body: dm.Body, tx_id: bytes | None = None) -> bytes:
        return dm.encode_message(body, tx_id=tx_id or os.urandom(20), key=self.ident.key)

    async def ping(self) -> dm.Message:
        return await self.request(dm.Ping(address=self.ident.aid))

    async def request(self, body: dm.Body) -> dm.Message:
        tx_id = os.urandom(20)
        self.send(self.signed(body, tx_id))
        with anyio.fail_after(5):
            while True:
                await anyio.wait_readable(self.sock)
                data, _ = self.sock.recvfrom(65536)
                msg = dm.decode_message(data)
                if msg.tx_id == tx_id:
                    msg.verify()
                    return msg

    def drain(self) -> list[dm.Message]:
        out: list[dm.Message] = []
        while True:
            try:
                data, _ = self.sock.recvfrom(65536)
            except BlockingIOError:
                return out
            out.append(dm.decode_message(data))


def _garbage(attacker: Attacker, node_aid: object) -> dict[str, list[bytes]]:
    ping = attacker.signed(dm.Ping(address=attacker.ident.aid))
    bad_sig = bytearray(ping)
    bad_sig[-1] ^= 0xFF
    wrong_types = cbor2.dumps({1: {1: "x", 2: b"", 3: "ping", 4: 7}, 2: [], 3: 5, 4: None})
    other = Identity.generate(SystemRng())
    forged_ping = dm.encode_message(dm.Ping(address=other.aid), tx_id=os.urandom(20),
                                    key=attacker.ident.key)  # fmt: skip
    unsolicited = attacker.signed(dm.Pong(address=attacker.ident.aid, observed_addr=("1.2.3.4", 5)))

    def dht_class(n: int) -> bytes:  # random bytes the demultiplexer hands to the DHT
        data = bytearray(os.urandom(n))
        data[0] = 0xA0 | (data[0] & 0x1F)  # a CBOR map head: bit 0x40 clear, not 00 EC
        return bytes(data)

    return {
        "decode": [dht_class(n) for n in (1, 7, 64, 500, 1199)]
        + [ping[: len(ping) // 2], wrong_types, b"\xbf" * 100],
        "oversize": [b"\xa4" + bytes(1200), b"\xa4" + bytes(60000)],  # over any sender's 1200
        "verify": [bytes(bad_sig), forged_ping],
        "unsolicited": [unsolicited, unsolicited],
    }


async def test_keeps_answering_and_counts_every_drop() -> None:
    async with Node(NodeConfig(listen_addr="127.0.0.1:0")) as node:
        attacker = Attacker(node.local_addr)
        try:
            await attacker.ping()
            before = node.status().dht
            kinds = _garbage(attacker, node.aid)
            for _ in range(20):  # 20 rounds of everything, interleaved with pings
                for datagrams in kinds.values():
                    for d in datagrams:
                        attacker.send(d)
                pong = await attacker.ping()
                assert isinstance(pong.body, dm.Pong)
            after = node.status().dht
            assert after.dropped_decode - before.dropped_decode == 20 * len(kinds["decode"])
            assert after.dropped_verify - before.dropped_verify == 20 * len(kinds["verify"])
            assert after.dropped_oversize - before.dropped_oversize == 20 * len(kinds["oversize"])
            assert after.dropped_unsolicited - before.dropped_unsolicited == 40
            assert after.requests_answered - before.requests_answered == 20
        finally:
            attacker.close()


async def test_response_with_guessed_tx_id_from_another_address() -> None:
    """A response is accepted only from the address the request went to."""
    async with (
        Node(NodeConfig(listen_addr="127.0.0.1:0")) as a,
        Node(NodeConfig(listen_addr="127.0.0.1:0", bootstrap=("{}:{}".format(*a.local_addr),)))
        as b,
    ):  # fmt: skip
        attacker = Attacker(b.local_addr)
        try:
            # b has no way to tell us its tx_ids; replaying a PONG with any tx_id is dropped
            for _ in range(50):
                attacker.send(attacker.signed(dm.Pong(address=attacker.ident.aid,
                                                      observed_addr=b.local_addr)))  # fmt: skip
            await attacker.ping()
            assert b.status().dht.dropped_unsolicited >= 50
            assert b.status().peers >= 1
            await b.publish()
            assert (await a.resolve(b.aid)).aid == b.aid  # the pair still works
        finally:
            attacker.close()


async def test_store_is_rate_limited_per_source_ip_and_caps_hold() -> None:
    async with Node(NodeConfig(listen_addr="127.0.0.1:0")) as node:
        attacker = Attacker(node.local_addr)
        try:
            wall = int(time.time())
            sent = 0
            for i in range(300):  # 300 distinct valid records from one IP, as fast as possible
                ident = Identity.generate(SystemRng())
                payload = EndpointPayload(endpoints=(f"quic://127.0.0.1:{1000 + i}",)).to_bytes()
                rec = SignedRecord.sign(ident, 1, payload, seq=1, timestamp=wall)
                attacker.send(attacker.signed(dm.Store(record=rec)))
                sent += 1
            for _ in range(100):  # the node has no event for "all handled": poll its counters
                stats = node.status().dht
                if stats.dropped_rate_limited + stats.stored_records >= sent:
                    break
                await anyio.sleep(0.05)
            stats = node.status().dht
            assert stats.dropped_rate_limited > 0
            assert stats.stored_records < sent
            answered = [m for m in attacker.drain() if isinstance(m.body, dm.StoreResp)]
            assert all(m.body.stored for m in answered if isinstance(m.body, dm.StoreResp))
            pong = await attacker.ping()  # still serving
            assert isinstance(pong.body, dm.Pong)
        finally:
            attacker.close()


async def test_honest_topic_registration_survives_a_store_flood_from_many_addresses() -> None:
    """Finding 6 over real sockets: 130 STOREs of self-made identities' registrations, each
    from its own 127.x.y.1 address (its own /24), half dated 59 s ahead, to one topic."""
    try:
        Attacker(("127.0.0.1", 9), host="127.3.0.1").close()
    except OSError:
        pytest.skip("this system cannot bind 127.x.y.z addresses other than 127.0.0.1")
    # the flooders' sockets are gone when discover asks them: do not wait long for them
    quick = DhtConfig(lookup_rpc_timeout_s=0.1)
    async with Node(NodeConfig(listen_addr="127.0.0.1:0", dht=quick)) as node:
        wall = int(time.time())
        key = NodeId(topic_key("hostile.test"))

        def registration(who: Identity, ts: int) -> SignedRecord:
            payload = TopicPayload(topic="hostile.test", name=who.aid.short()).to_bytes()
            return SignedRecord.sign(who, 0x10, payload, seq=1, timestamp=ts)

        honest = Attacker(node.local_addr, host="127.200.0.1")
        try:
            reply = await honest.request(dm.Store(record=registration(honest.ident, wall), key=key))
            assert isinstance(reply.body, dm.StoreResp) and reply.body.stored
        finally:
            honest.close()
        refused = 0
        for i in range(130):
            attacker = Attacker(node.local_addr, host=f"127.{1 + i // 250}.{i % 250}.1")
            try:
                rec = registration(attacker.ident, wall + 59 * (i % 2))
                reply = await attacker.request(dm.Store(record=rec, key=key))
            finally:
                attacker.close()
            assert isinstance(reply.body, dm.StoreResp)
            refused += not reply.body.stored
        found = await node.discover("hostile.test")
        assert honest.ident.aid in {e.aid for e in found}
        assert len(found) == 100
        assert refused == 31  # the topic holds 100 registrations; newcomers are refused
        assert node.status().dht.store_refused_per_key == 31
