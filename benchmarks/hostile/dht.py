"""Issue 14 finding 6 by hand: an honest topic registration under a 100k-STORE flood.

A real :class:`Node` listens on 127.0.0.1. One honest registrant STOREs its topic record from
127.200.0.1; then a child process sends ``--stores`` STOREs to the same topic, each a
registration of a fresh self-made identity (every other one dated 59 s ahead), from
``--addresses`` loopback source addresses spread over ``--prefixes`` /24s (Linux binds any
127.x.y.z). Reports STOREs sent / reaching the node / accepted / refused by reason, whether
the honest registration is still discoverable, the store's size and the node's RSS.

    python benchmarks/hostile/dht.py                      # 100k STOREs, 2,500 addrs in 2,500 /24s
    python benchmarks/hostile/dht.py --prefixes 10        # the same addresses in 10 /24s

Not run in CI (minutes of CPU). Linux only (127.x.y.z binds; /proc for RSS).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import socket
import time
from typing import Any

import anyio

from a2al_mcp import Identity, NodeConfig, SignedRecord, SystemRng
from a2al_mcp.config import DhtConfig
from a2al_mcp.identity import NodeId
from a2al_mcp.node import Node
from a2al_mcp.protocol import dht_messages as dm
from a2al_mcp.protocol.payloads import TopicPayload, topic_key

TOPIC = "bench.hostile"


def _registration(who: Identity, ts: int) -> SignedRecord:
    payload = TopicPayload(topic=TOPIC, name=who.aid.short()).to_bytes()
    return SignedRecord.sign(who, 0x10, payload, seq=1, timestamp=ts)


def _store_datagram(who: Identity, ts: int) -> bytes:
    body = dm.Store(record=_registration(who, ts), key=NodeId(topic_key(TOPIC)))
    return dm.encode_message(body, tx_id=os.urandom(20), key=who.key)


def _address(i: int, prefixes: int) -> str:
    p, host = i % prefixes, i // prefixes + 1
    return f"127.{1 + p // 256}.{p % 256}.{host}"


def _flood(target: tuple[str, int], stores: int, addresses: int, prefixes: int,
           max_s: float, out: Any) -> None:  # fmt: skip
    """Child process: send the STOREs, ``group`` sockets open at a time, round-robin."""
    rng = SystemRng()
    sent, deadline, group = 0, time.monotonic() + max_s, 250
    per_addr = -(-stores // addresses)
    for first in range(0, addresses, group):
        socks = []
        for i in range(first, min(first + group, addresses)):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((_address(i, prefixes), 0))
            s.setblocking(False)
            socks.append(s)
        for _ in range(per_addr):
            for s in socks:
                if sent >= stores or time.monotonic() > deadline:
                    break
                ts = int(time.time()) + 59 * (sent % 2)
                try:
                    s.sendto(_store_datagram(Identity.generate(rng), ts), target)
                except BlockingIOError:
                    time.sleep(0.001)
                sent += 1
        for s in socks:
            s.close()
    out.put(sent)


def _rss_kib() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def run(stores: int = 100_000, addresses: int = 2_500, prefixes: int = 2_500,
              max_seconds: float = 600.0) -> dict[str, Any]:  # fmt: skip
    quick = DhtConfig(lookup_rpc_timeout_s=0.1)  # the flooders never answer lookups
    async with Node(NodeConfig(listen_addr="127.0.0.1:0", dht=quick)) as node:
        honest = Identity.generate(SystemRng())
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.200.0.1", 0))
        sock.settimeout(5)
        sock.sendto(_store_datagram(honest, int(time.time())), node.local_addr)
        reply = dm.decode_message((await anyio.to_thread.run_sync(sock.recvfrom, 65536))[0])
        sock.close()
        assert isinstance(reply.body, dm.StoreResp) and reply.body.stored, reply
        before = node.status().dht
        rss_before = _rss_kib()

        ctx = multiprocessing.get_context("spawn")
        q = ctx.Queue()
        t0 = time.perf_counter()
        proc = ctx.Process(target=_flood, args=(node.local_addr, stores, addresses, prefixes,
                                                max_seconds, q))  # fmt: skip
        proc.start()
        sent = await anyio.to_thread.run_sync(q.get)
        await anyio.to_thread.run_sync(proc.join)
        last = -1
        while node.status().dht.received != last:  # let the node finish its queue
            last = node.status().dht.received
            await anyio.sleep(0.5)
        elapsed = time.perf_counter() - t0

        after = node.status().dht
        found = await node.discover(TOPIC)

        def d(name: str) -> int:
            return int(getattr(after, name) - getattr(before, name))

        received = d("received")
        refused = {
            "rate_limited_ip": d("rate_limited_ip"),
            "rate_limited_prefix": d("rate_limited_prefix"),
            "full_per_key": d("store_refused_per_key"),
            "full_keys": d("store_refused_keys"),
            "full_records": d("store_refused_records"),
            "full_bytes": d("store_refused_bytes"),
            "invalid": d("store_rejected_invalid"),
        }
        return {
            "stores_sent": sent,
            "source_addresses": addresses,
            "source_prefixes_24": prefixes,
            "stores_reaching_node": received,
            "lost_in_kernel": sent - received,
            "accepted": received - sum(refused.values()),
            "refused": refused,
            "honest_discoverable": honest.aid in {e.aid for e in found},
            "registrations_found": len(found),
            "store_records": after.stored_records,
            "store_keys": after.stored_keys,
            "store_bytes": after.stored_bytes,
            "rss_kib_before": rss_before,
            "rss_kib_after": _rss_kib(),
            "seconds": round(elapsed, 1),
            "stores_per_s_handled": round(received / elapsed),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", type=int, default=100_000)
    ap.add_argument("--addresses", type=int, default=2_500)
    ap.add_argument("--prefixes", type=int, default=2_500)
    ap.add_argument("--max-seconds", type=float, default=600.0)
    a = ap.parse_args()
    result = anyio.run(run, a.stores, a.addresses, a.prefixes, a.max_seconds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
