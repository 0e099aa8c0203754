"""Decode + verify of endpoint records per second vs the bare Ed25519 verify rate.

    python benchmarks/bench_record_verify.py [--n 20000] [--rounds 5]

The ceiling is `cryptography`'s Ed25519 verify of the same signed bytes with a key object
loaded once. "record" is what a node does per received record: parse the CBOR, shape-check,
build the key, re-encode the signed fields, verify, decode and check the endpoint payload,
check freshness and authority. Run by hand; results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from a2al_mcp import EndpointPayload, Identity, SignedRecord
from a2al_mcp._random import SeededRng
from a2al_mcp.protocol import dht_messages as dm

T0 = 1_700_000_000


def make_records(n: int, publishers: int = 64) -> list[bytes]:
    rng = SeededRng(publishers)
    idents = [Identity.generate(rng) for _ in range(publishers)]
    payload = EndpointPayload(endpoints=("quic://203.0.113.7:4121",), nat_type=1).to_bytes()
    return [
        SignedRecord.sign(idents[i % publishers], 1, payload, seq=i, timestamp=T0).to_bytes()
        for i in range(n)
    ]


def bench(
    cases: dict[str, tuple[Callable[[bytes], None], list[bytes]]], rounds: int
) -> dict[str, float]:
    """Best rate of each case; cases are interleaved round by round so that background
    load hits them alike."""
    best = dict.fromkeys(cases, 0.0)
    for _ in range(rounds):
        for name, (fn, items) in cases.items():
            t = time.perf_counter()
            for it in items:
                fn(it)
            best[name] = max(best[name], len(items) / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    raw = make_records(args.n)
    recs = [SignedRecord.from_bytes(r) for r in raw]
    keys = {r.pubkey: Ed25519PublicKey.from_public_bytes(r.pubkey) for r in recs}
    pre = [(keys[r.pubkey], r.pubkey, r.signature, r.signed_bytes()) for r in recs]
    by_id = {id(b): p for b, p in zip(raw, pre, strict=True)}

    def bare(b: bytes) -> None:
        key, _pub, sig, msg = by_id[id(b)]
        key.verify(sig, msg)

    def bare_with_key_load(b: bytes) -> None:
        _key, pub, sig, msg = by_id[id(b)]
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)

    def record(b: bytes) -> None:
        rec = SignedRecord.from_bytes(b)
        rec.verify(T0)
        rec.check_authority(T0)

    datagrams = [
        dm.encode_message(
            dm.Store(record=r), tx_id=bytes(20), key=Identity.generate(SeededRng(i)).key
        )
        for i, r in enumerate(recs[:2000])
    ]

    def datagram(b: bytes) -> None:
        msg = dm.decode_message(b)
        msg.verify()
        assert isinstance(msg.body, dm.Store)
        msg.body.record.verify(T0)
        msg.body.record.check_authority(T0)

    # more publishers than the parsed-key memo holds (8192): every verify parses its key
    fresh = make_records(10000, publishers=10000)
    r = bench(
        {
            "bare": (bare, raw),
            "bare_load": (bare_with_key_load, raw),
            "record": (record, raw),
            "fresh": (record, fresh),
            "datagram": (datagram, datagrams),
        },
        args.rounds,
    )
    ceiling, ceiling_load, ours, dgram = r["bare"], r["bare_load"], r["record"], r["datagram"]
    print(f"machine: {platform.machine()} python {platform.python_version()}")
    print(f"bare Ed25519 verify (key loaded once):        {ceiling:10.0f} /s")
    print(f"bare Ed25519 verify (key parsed per record):  {ceiling_load:10.0f} /s")
    print(
        f"endpoint record decode+verify+authority:      {ours:10.0f} /s  "
        f"= {100 * ours / ceiling:.1f}% of the ceiling"
    )
    print(
        f"  same, every record from a new publisher:   {r['fresh']:10.0f} /s  "
        f"= {100 * r['fresh'] / ceiling_load:.1f}% of the key-parsing ceiling"
    )
    print(
        f"STORE datagram decode+verify (2 signatures):  {dgram:10.0f} /s  "
        f"= {100 * 2 * dgram / ceiling:.1f}% of the ceiling per signature"
    )


if __name__ == "__main__":
    main()
