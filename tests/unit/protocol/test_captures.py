"""The 301 real DHT datagrams a2ald 0.3.5 exchanged: decode, verify, re-encode identically."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from a2al_mcp.protocol import dht_messages as dm
from a2al_mcp.protocol.records import Category, SignedRecord
from tests.conftest import load_captures

CAPTURES = load_captures("dht")


def test_capture_set_is_complete() -> None:
    assert len(CAPTURES) == 301
    counts = Counter(dm.decode_message(bytes.fromhex(c["hex"])).msg_type for c in CAPTURES)
    assert counts[dm.MsgType.PING] == 30
    assert counts[dm.MsgType.STORE] == 44
    assert counts[dm.MsgType.DHT_PUSH_ACK] == 3


@pytest.mark.parametrize("row", CAPTURES, ids=lambda r: f"{r['t']:.3f}-{r['dht_msg_type']}")
def test_datagram_decodes_verifies_and_reencodes(row: dict[str, Any]) -> None:
    raw = bytes.fromhex(row["hex"])
    msg = dm.decode_message(raw)
    assert msg.msg_type == row["dht_msg_type"]
    msg.verify()
    assert msg.to_bytes() == raw


def _records(msg: dm.Message) -> list[tuple[SignedRecord, bytes | None]]:
    body = msg.body
    if isinstance(body, dm.Store):
        key = bytes(body.key) if body.key else body.record.default_key()
        return [(body.record, key)]
    if isinstance(body, dm.DhtPush):
        return [(body.record, bytes(body.key))]
    if isinstance(body, dm.FindValueResp):
        return [(r, None) for r in body.records] + ([(body.record, None)] if body.record else [])
    return []


def test_every_captured_record_is_valid_with_authority() -> None:
    seen: Counter[str] = Counter()
    for row in CAPTURES:
        msg = dm.decode_message(bytes.fromhex(row["hex"]))
        for rec, key in _records(msg):
            now = rec.timestamp + 1  # as of capture time
            rec.validate(now, key=key)
            assert SignedRecord.from_bytes(rec.to_bytes()) == rec
            kind = f"{rec.category.value}:{'delegated' if rec.delegation else 'native'}"
            seen[kind] += 1
            if rec.category is Category.SOVEREIGN and rec.rec_type == 1:
                from a2al_mcp.protocol.payloads import EndpointPayload

                ep = EndpointPayload.from_bytes(rec.payload)
                assert all(e.startswith("quic://127.0.0.1:") for e in ep.endpoints)
    # the capture holds node records, delegated agent records, topics and mailbox notes
    assert seen["sovereign:native"] > 0
    assert seen["sovereign:delegated"] > 0
    assert seen["topic:delegated"] > 0
    assert seen["mailbox:delegated"] > 0


def test_tampered_datagram_fails_verification() -> None:
    from a2al_mcp.errors import VerificationError

    raw = bytearray(bytes.fromhex(CAPTURES[0]["hex"]))
    raw[-1] ^= 1  # flip a signature bit
    with pytest.raises(VerificationError):
        dm.decode_message(bytes(raw)).verify()
