"""Issue 2 interop: our identity and wire codec against a live a2ald 0.3.5 (sealed namespace).

- a2ald's delegation proofs verify with our code;
- the endpoint and topic records a2ald publishes for a delegated agent verify (authority too);
- a2ald answers our signed DHT datagrams, and *accepts records we sign* for an agent it
  created (op key + its proof), delivered as a UDP STORE: then serves them back byte-identical
  and finds our topic registration through its own discovery.
"""

from __future__ import annotations

import base64
import socket
import time
from typing import Any

import pytest

from a2al_mcp import Aid, DelegationProof, EndpointPayload, Identity, SignedRecord, SigningKey
from a2al_mcp._random import SystemRng
from a2al_mcp.protocol import dht_messages as dm
from a2al_mcp.protocol.payloads import TopicPayload, topic_key
from a2al_mcp.testing.a2ald import A2aldPeer, poll_until

pytestmark = pytest.mark.interop


class UdpDhtClient:
    """A bare DHT speaker: one socket, one node key, request/response by tx_id."""

    def __init__(self) -> None:
        self.rng = SystemRng()
        self.key = SigningKey.generate(self.rng)
        self.identity = Identity.from_key(self.key)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5.0)

    def close(self) -> None:
        self.sock.close()

    def request(self, body: dm.Body, to: tuple[str, int]) -> dm.Message:
        tx_id = self.rng.bytes(20)
        self.sock.sendto(dm.encode_message(body, tx_id=tx_id, key=self.key), to)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            data, _src = self.sock.recvfrom(65536)
            msg = dm.decode_message(data)
            msg.verify()
            if msg.tx_id == tx_id:
                return msg
        raise TimeoutError(f"no answer to {body.MSG_TYPE.name}")


@pytest.fixture
def client() -> Any:
    c = UdpDhtClient()
    try:
        yield c
    finally:
        c.close()


def _addr(peer: A2aldPeer) -> tuple[str, int]:
    host, port = peer.listen_addr.rsplit(":", 1)
    return host, int(port)


def _records(peer: A2aldPeer, aid: str, rec_type: int = 0) -> list[SignedRecord]:
    out = []
    for r in peer.resolve_records(aid, type=rec_type)["records"]:
        out.append(
            SignedRecord(
                address=Aid.from_str(r["aid"]),
                rec_type=r["rec_type"],
                payload=base64.b64decode(r["payload_base64"]),
                seq=r["seq"],
                timestamp=r["timestamp"],
                ttl=r["ttl"],
                pubkey=base64.b64decode(r["pubkey_base64"]),
                signature=base64.b64decode(r["signature_base64"]),
                delegation=base64.b64decode(r.get("delegation_base64") or ""),
            )
        )
    return out


def _agent(peer: A2aldPeer) -> tuple[dict[str, Any], Identity]:
    gen = peer.identity_generate()
    op = SigningKey.from_go_bytes(bytes.fromhex(gen["operational_private_key_hex"]))
    proof = DelegationProof.from_bytes(bytes.fromhex(gen["delegation_proof_hex"]))
    return gen, Identity.from_delegation(op, proof, now=time.time())


def test_generated_delegation_proof_verifies(a2ald: A2aldPeer) -> None:
    gen = a2ald.identity_generate()
    proof = DelegationProof.from_bytes(bytes.fromhex(gen["delegation_proof_hex"]))
    op = SigningKey.from_go_bytes(bytes.fromhex(gen["operational_private_key_hex"]))
    master = SigningKey.from_go_bytes(bytes.fromhex(gen["master_private_key_hex"]))
    proof.verify(time.time(), op_pub=bytes(op.public), agent=Aid.from_str(gen["aid"]))
    assert str(proof.agent) == gen["aid"]  # our text form equals a2ald's
    assert proof.master_pub == bytes(master.public)
    assert (proof.scope, proof.expires_at) == (1, 0)
    # byte-exact: re-encoding the parsed proof gives a2ald's bytes
    assert proof.to_bytes().hex() == gen["delegation_proof_hex"]
    # and a proof we create for the same keys verifies the same way
    ours = DelegationProof.create(master, op.public, issued_at=proof.issued_at)
    assert ours.to_bytes() == proof.to_bytes()


def test_published_agent_records_verify(a2ald_net: Any, client: UdpDhtClient) -> None:
    owner = a2ald_net.peers[1]
    gen, ident = _agent(owner)
    aid = gen["aid"]
    owner.register_agent(gen["operational_private_key_hex"], gen["delegation_proof_hex"])
    owner.register_services(aid, ["interop.codec"], name="codec", brief="wire test",
                            protocols=["a2a"], tags=["x"], ttl=600)  # fmt: skip
    owner.publish_agent(aid)
    endpoint = poll_until(
        lambda: _records(owner, aid, rec_type=1), bool, timeout=15, what="agent endpoint record"
    )
    profile = poll_until(
        lambda: _records(owner, aid, rec_type=2), bool, timeout=15, what="agent profile record"
    )
    # the topic record, fetched with our own FIND_VALUE at the topic key
    tkey = dm.NodeId(topic_key("interop.codec"))
    found = client.request(dm.FindValue(target=tkey, rec_type=0x10), _addr(owner))
    assert isinstance(found.body, dm.FindValueResp)
    topics = list(found.body.records)
    assert len(endpoint) == 1 and len(profile) == 1 and len(topics) == 1
    now = time.time()
    for rec in endpoint + profile:
        rec.validate(now, key=rec.default_key())
    topics[0].validate(now, key=bytes(tkey))
    for rec in endpoint + profile + topics:
        assert rec.address == ident.aid
        assert rec.delegation, "a2ald agents sign with an op key and carry the proof"
        assert rec.pubkey == bytes(ident.key.public)
        assert rec.delegation_proof() == ident.delegation
    ep = EndpointPayload.from_bytes(endpoint[0].payload)
    assert ep.endpoints == (f"quic://{owner.listen_addr}",)
    tp = TopicPayload.from_bytes(topics[0].payload)
    assert (tp.topic, tp.name, tp.brief, tp.protocols, tp.tags) == (
        "interop.codec", "codec", "wire test", ("a2a",), ("x",),
    )  # fmt: skip
    from a2al_mcp.protocol.payloads import AgentProfilePayload

    prof = AgentProfilePayload.from_bytes(profile[0].payload)
    assert prof.protocols == ("a2a",) and prof.skills == ("interop.codec",)


def test_a2ald_answers_our_datagrams(a2ald: A2aldPeer, client: UdpDhtClient) -> None:
    pong = client.request(dm.Ping(address=client.identity.aid), _addr(a2ald))
    assert isinstance(pong.body, dm.Pong)
    assert str(pong.sender) == a2ald.node_aid
    assert pong.body.observed_addr == client.sock.getsockname()
    resp = client.request(dm.FindNode(target=client.identity.aid.node_id), _addr(a2ald))
    assert isinstance(resp.body, dm.FindNodeResp)
    node_aid = Aid.from_str(a2ald.node_aid)
    found = client.request(dm.FindValue(target=node_aid.node_id, rec_type=1), _addr(a2ald))
    assert isinstance(found.body, dm.FindValueResp)
    recs = list(found.body.records) + ([found.body.record] if found.body.record else [])
    assert recs, "a2ald serves its own node endpoint record"
    for rec in recs:
        rec.validate(time.time(), key=bytes(node_aid.node_id))


def test_a2ald_accepts_records_we_sign_for_its_agent(a2ald_net: Any, client: UdpDhtClient) -> None:
    peer, other = a2ald_net.peers[0], a2ald_net.peers[3]
    gen, ident = _agent(peer)  # keys and proof made by a2ald; never registered there
    now = int(time.time())
    payload = EndpointPayload(endpoints=("quic://127.0.0.1:45999",)).to_bytes()
    rec = SignedRecord.sign(ident, 1, payload, seq=7, timestamp=now, ttl=3600)
    resp = client.request(dm.Store(record=rec, key=ident.aid.node_id), _addr(peer))
    assert isinstance(resp.body, dm.StoreResp)
    assert resp.body.stored and not resp.body.already_had, resp.body
    served = _records(peer, gen["aid"], rec_type=1)
    assert served == [rec]  # byte-identical fields, signature and delegation
    # a stale copy (same seq) is reported as already held
    again = client.request(dm.Store(record=rec, key=ident.aid.node_id), _addr(peer))
    assert isinstance(again.body, dm.StoreResp) and again.body.already_had

    # a topic record under the topic key: a2ald's own discovery finds it
    topic = TopicPayload(topic="interop.ours", name="ours", protocols=("mcp",), brief="hi")
    trec = SignedRecord.sign(ident, 0x10, topic.to_bytes(), seq=now * 10**9, timestamp=now)
    tkey = dm.NodeId(topic_key("interop.ours"))
    tresp = client.request(dm.Store(record=trec, key=tkey), _addr(peer))
    assert isinstance(tresp.body, dm.StoreResp) and tresp.body.stored
    entries = poll_until(
        lambda: other.discover(["interop.ours"]),
        lambda d: bool(d.get("entries")),
        timeout=15,
        what="a2ald discovering our topic record",
    )["entries"]
    assert entries[0]["aid"] == gen["aid"]
    assert entries[0]["protocols"] == ["mcp"]
    assert entries[0]["brief"] == "hi"


def test_a2ald_refuses_a_record_with_a_bad_signature(
    a2ald: A2aldPeer, client: UdpDhtClient, ident_a: Identity
) -> None:
    import dataclasses

    now = int(time.time())
    payload = EndpointPayload(endpoints=("quic://127.0.0.1:1",)).to_bytes()
    rec = SignedRecord.sign(ident_a, 1, payload, seq=1, timestamp=now)
    forged = dataclasses.replace(rec, seq=2)  # signature no longer covers the fields
    resp = client.request(dm.Store(record=forged), _addr(a2ald))
    assert isinstance(resp.body, dm.StoreResp)
    assert not resp.body.stored and resp.body.reason == dm.StoreReason.INVALID
