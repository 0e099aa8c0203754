"""Inbox size after a 100k-note flood (issue 14; by hand, not in CI).

    python benchmarks/hostile/mailbox.py [--notes 100000] [--identities 1000] [--seconds 180]

A target node with the default ``[limits]`` runs in its own process (inbox on disk in a
temporary directory); an attacker node in this process signs notes as many self-made
identities and pushes them over ``a2mb`` on one QUIC connection, ``concurrency`` streams at a
time, as fast as loopback allows, until ``notes`` are sent or ``seconds`` have passed. Reported:
notes acknowledged and refused (as the attacker saw them), notes stored and refusals by reason
(the target's statistics), the inbox file size (database + WAL), the target's RSS after the
flood, and the rate. Loopback only; nothing else is contacted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from a2al_mcp import Identity, NodeConfig, SigningKey, SystemRng
from a2al_mcp.errors import ConnectionClosed, RequestTimeout
from a2al_mcp.node import Node
from a2al_mcp.protocol.mailbox_crypto import seal_note
from a2al_mcp.protocol.records import SignedRecord
from a2al_mcp.protocol.session_frames import MailboxFrame

TARGET = r"""
import json, os, sys, anyio
from pathlib import Path
from a2al_mcp import Identity, NodeConfig, SigningKey
from a2al_mcp.node import Node

def rss() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak, KiB on Linux

async def main() -> None:
    ident = Identity.from_key(SigningKey(bytes.fromhex(sys.argv[1])))
    home = Path(sys.argv[2])
    async with Node(NodeConfig(listen_addr="127.0.0.1:0", data_dir=home), ident) as node:
        print(json.dumps({"port": node.local_addr[1], "rss": rss()}), flush=True)
        async for _ in anyio.wrap_file(sys.stdin):
            st = node.status().mailbox
            files = [home / n for n in ("inbox.db", "inbox.db-wal")]
            size = sum(f.stat().st_size for f in files if f.exists())
            out = {k: getattr(st, k) for k in st.__dataclass_fields__}
            print(json.dumps({"stats": out, "inbox_bytes": size, "rss": rss()}), flush=True)

anyio.run(main)
"""


async def _line(proc: anyio.abc.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    buf = b""
    while not buf.endswith(b"\n"):
        buf += await proc.stdout.receive(65536)
    reply: dict[str, Any] = json.loads(buf)
    return reply


async def flood(
    notes: int = 100_000, identities: int = 1_000, concurrency: int = 32, seconds: float = 180.0
) -> dict[str, Any]:
    """Flood one node with ``notes`` notes from ``identities`` senders; figures as a dict."""
    rng = SystemRng()
    seed = rng.bytes(32)
    recipient = Identity.from_key(SigningKey(seed))
    key = recipient.key.public
    senders = [Identity.generate(rng) for _ in range(identities)]
    acked = refused = lost = sent = 0
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-c", TARGET, seed.hex(), str(Path(tmp) / "home")]
        async with await anyio.open_process(argv, stderr=None) as proc:
            assert proc.stdin is not None
            start = await _line(proc)
            async with Node(NodeConfig(listen_addr="127.0.0.1:0")) as attacker:
                url = f"quic://127.0.0.1:{start['port']}"
                pc = await attacker.connect(recipient.aid, endpoints=[url])
                t0 = time.perf_counter()
                deadline = t0 + seconds

                async def worker(first: int) -> None:
                    nonlocal acked, refused, lost, sent
                    for i in range(first, notes, concurrency):
                        if time.perf_counter() > deadline:
                            return
                        ident = senders[i % identities]
                        payload = seal_note(sender=ident.aid, recipient=recipient.aid,
                                            recipient_key=key, body=b"flood %d" % i,
                                            rng=rng)  # fmt: skip
                        wall = time.time()
                        rec = SignedRecord.sign(ident, 0x80, payload.to_bytes(),
                                                seq=math.floor(wall * 1e9) + i,
                                                timestamp=int(wall), ttl=3600)  # fmt: skip
                        sent += 1
                        try:
                            await pc.send_mailbox(MailboxFrame(rec.msg_id, rec.to_bytes()))
                            acked += 1
                        except ConnectionClosed:
                            refused += 1
                        except RequestTimeout:
                            lost += 1

                async with anyio.create_task_group() as tg:
                    for w in range(concurrency):
                        tg.start_soon(worker, w)
                elapsed = time.perf_counter() - t0
                pc.close()
            await proc.stdin.send(b"stats\n")
            after = await _line(proc)
            await proc.stdin.aclose()
            await proc.wait()
    st = after["stats"]
    return {
        "notes_sent": sent,
        "identities": identities,
        "seconds": round(elapsed, 1),
        "notes_per_s": round(sent / elapsed),
        "acked": acked,
        "refused": refused,
        "no_answer": lost,
        "stored_notes": st["stored_notes"],
        "stored_bytes": st["stored_bytes"],
        "refused_by_reason": {k: v for k, v in st.items() if k.startswith("refused_") and v},
        "inbox_file_bytes": after["inbox_bytes"],
        "target_rss_start_mb": round(start["rss"] / 2**20, 1),
        "target_rss_after_mb": round(after["rss"] / 2**20, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--notes", type=int, default=100_000)
    p.add_argument("--identities", type=int, default=1_000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seconds", type=float, default=180.0)
    a = p.parse_args()
    result = anyio.run(flood, a.notes, a.identities, a.concurrency, a.seconds)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
