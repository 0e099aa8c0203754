"""Crash safety: a receiving node killed with SIGKILL right after acknowledging a note keeps
every acknowledged note, exactly once (issue 5). 50 rounds, a fresh process each."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import sys
from pathlib import Path

import anyio
import anyio.abc
import pytest

from a2al_mcp import Identity, NodeConfig, SigningKey, SystemRng
from a2al_mcp.node import Node
from a2al_mcp.protocol.mailbox_crypto import seal_note
from a2al_mcp.protocol.records import SignedRecord
from a2al_mcp.protocol.session_frames import MailboxFrame

pytestmark = pytest.mark.anyio
ROUNDS = 50

RECEIVER = """
import sys, anyio
from pathlib import Path
from a2al_mcp import Identity, NodeConfig, SigningKey
from a2al_mcp.node import Node

async def main() -> None:
    ident = Identity.from_key(SigningKey(bytes.fromhex(sys.argv[1])))
    cfg = NodeConfig(listen_addr="127.0.0.1:0", data_dir=Path(sys.argv[2]))
    async with Node(cfg, ident) as node:
        print(node.local_addr[1], flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


async def _start(seed: bytes, data_dir: Path) -> tuple[anyio.abc.Process, int]:
    proc = await anyio.open_process([sys.executable, "-c", RECEIVER, seed.hex(), str(data_dir)],
                                    stderr=None)  # fmt: skip
    assert proc.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        line += await proc.stdout.receive(64)
    return proc, int(line)


async def test_kill_9_after_ack_loses_nothing(tmp_path: Path) -> None:
    seed = SystemRng().bytes(32)
    recipient = Identity.from_key(SigningKey(seed))
    acked: list[bytes] = []
    with anyio.fail_after(300):
        async with Node(NodeConfig(listen_addr="127.0.0.1:0")) as sender:
            for i in range(ROUNDS):
                proc, port = await _start(seed, tmp_path)
                pc = None
                try:
                    payload = seal_note(sender=sender.aid, recipient=recipient.aid,
                                        recipient_key=recipient.key.public,
                                        body=f"note {i}".encode(), rng=SystemRng())  # fmt: skip
                    wall = sender._clock.wall()
                    rec = SignedRecord.sign(sender.identity, 0x80, payload.to_bytes(),
                                            seq=math.floor(wall * 1e9), timestamp=int(wall),
                                            ttl=3600)  # fmt: skip
                    pc = await sender.connect(recipient.aid,
                                              endpoints=[f"quic://127.0.0.1:{port}"])  # fmt: skip
                    await pc.send_mailbox(MailboxFrame(rec.msg_id, rec.to_bytes()))
                    acked.append(rec.msg_id)
                finally:
                    os.kill(proc.pid, signal.SIGKILL)  # right after the ack
                    await proc.wait()
                    await proc.aclose()
                    if pc is not None:
                        pc.close()
    db = sqlite3.connect(tmp_path / "inbox.db")
    rows = db.execute("SELECT msg_id, COUNT(*) FROM inbox GROUP BY msg_id").fetchall()
    db.close()
    stored = {bytes(m): n for m, n in rows}
    assert len(acked) == ROUNDS
    assert all(stored.get(m) == 1 for m in acked), "an acknowledged note was lost or doubled"
    assert len(stored) == ROUNDS
