"""Start to a correct endpoint record behind each NAT kind: our node vs a2ald 0.3.5, one run.

Run as root (the NAT testbed builds its own sealed namespaces and proves them sealed; a2ald
runs only through ``A2aldPeer(..., launch=tb.a2ald_launch(host))``)::

    cd /work/main && .venv/bin/python benchmarks/bench_nat_start.py [--kinds cone,sym]

Topology (:class:`~a2al_mcp.testing.nat_testbed.NatTestbed`): three a2ald peers on public
hosts ``pub1``-``pub3`` are the bootstrap set of both implementations (the public a2ald
network, as in the shared testbed's README); one of our nodes on public host ``obs`` is the
observer: it resolves the measured node's AID on the DHT every 0.25 s and notes each record
(seq, nat_type, endpoints) with the time it was first seen. For every NAT kind (public,
cone, prc, sym, upnp-igdv1, upnp-igdv2) a fresh process of ours (``Node(cfg,
auto_publish=True)``, the node ``serve`` runs, wildcard bind ``0.0.0.0:4121``) starts on its
own host behind its own router of that kind, is watched, then stopped; then an a2ald on a
second host of the same kind, watched long enough (default 90 s) for its 60 s republish to
show. Both: STUN = the testbed's coturn only (ours ``nat.stun_servers``; a2ald
``ice_stun_urls``: its compiled-in STUN names fail DNS in the testbed), UPnP on (ours
``nat.upnp = true``; a2ald ``disable_upnp = false``), on every host.

Times are from the process's start (just after ``Popen`` returned) to the first time the
observer read the record. "Correct": the record's ``nat_type`` is the kind's (public 1, full
cone 1, port-restricted 3, symmetric 4, a UPnP router that holds a mapping for the node 1;
one that holds none: 3, it is then a port-restricted NAT) and its first URL is the router's
WAN address at a port that reaches the node (its own port, port-preserving NATs; or the
mapped external port) -- behind the symmetric NAT without a mapping, no URL on the WAN
address (no port there reaches the node). Polling is 0.25 s apart: times are +-0.3 s.

At most 4 a2ald run at once (3 seeds + 1 measured). Every loop is bounded by a deadline.
Prints a markdown table and writes ``bench_nat_start.json`` next to this file.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import queue
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread

from a2al_mcp import Node, NodeConfig
from a2al_mcp.errors import A2ALError
from a2al_mcp.identity.aid import Aid
from a2al_mcp.testing.a2ald import A2aldPeer
from a2al_mcp.testing.nat_testbed import NatTestbed

PORT: Final = 4121
API_PORT: Final = 2121
POLL_S: Final = 0.25
RESOLVE_TIMEOUT_S: Final = 2.0
SEEDS: Final = ("pub1", "pub2", "pub3")
OBSERVER: Final = "obs"
# kind -> (short name for hosts, nat_type a correct record carries without a gateway mapping)
KINDS: Final = {
    "public": ("pub", 1),
    "cone": ("cone", 1),
    "prc": ("prc", 3),
    "sym": ("sym", 4),
    "upnp-igdv1": ("upnp1", 1),
    "upnp-igdv2": ("upnp2", 1),
}
UPNP: Final = ("upnp-igdv1", "upnp-igdv2")
OUT: Final = Path(__file__).with_name("bench_nat_start.json")
# a2ald's endpoint probe asks only its compiled-in STUN names (ice_stun_urls is ICE's), which
# fail DNS in the testbed; with these the testbed's coturn answers them, at three distinct
# ip:ports (two names sharing one would race through conntrack: README P3).
# a2ald's compiled-in STUN names, pointed at the testbed's coturn (TEST-NET addresses that
# exist only inside the sealed testbed). This file is bind-mounted over /etc/hosts in the
# testbed's private mount namespace only; no public host is ever resolved or reached.
A2ALD_STUN_HOSTS: Final = (
    "127.0.0.1 localhost\n"
    "203.0.113.3 stun.l.google.com\n"
    "203.0.113.4 stun1.l.google.com\n"
    "203.0.113.4 stun.cloudflare.com\n"
)
A2ALD_STUN_NFT: Final = """table ip benchstun {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr 203.0.113.3 udp dport 19302 dnat to 203.0.113.3:3479
    ip daddr 203.0.113.4 udp dport 19302 dnat to 203.0.113.4:3479
  }
}
"""

OUR_CHILD: Final = r"""
import json, logging, sys
import anyio
from a2al_mcp import Node, NodeConfig
from a2al_mcp.config import NatConfig

async def main() -> None:
    seeds, stun, logfile = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
    logging.basicConfig(filename=logfile, level=logging.INFO,
                        format="%(asctime)s %(name)s %(message)s")
    cfg = NodeConfig(listen_addr="0.0.0.0:4121", bootstrap=tuple(seeds),
                     nat=NatConfig(stun_servers=(stun,), upnp=True))
    node = Node(cfg, join_in_background=True, auto_publish=True)
    print(json.dumps({"aid": str(node.aid)}), flush=True)
    async with node:
        await anyio.to_thread.run_sync(sys.stdin.readline)  # the bench says: status, then stop
        print(json.dumps({"status": node.status().nat}, default=lambda o: (
            o if not hasattr(o, "__dataclass_fields__") else
            {f: getattr(o, f) for f in o.__dataclass_fields__})), flush=True)

anyio.run(main)
"""


# ---- the observer: our node on a public host, polling the DHT from its own thread


@dataclasses.dataclass
class Sample:
    """A record the observer read for the first time (a new seq or new content)."""

    t: float
    """Seconds since the watched process started."""
    seq: int
    nat_type: int
    endpoints: list[str]


class Observer:
    """Our node on host ``obs`` (its own thread and event loop, in that namespace)."""

    def __init__(self, tb: NatTestbed, seeds: list[str]) -> None:
        self._tb = tb
        self._seeds = seeds
        self._jobs: queue.Queue[tuple[str, float, float, Future[Any]] | None] = queue.Queue()
        self._up: Future[str] = Future()
        self._thread = threading.Thread(target=self._run, name="observer", daemon=True)

    def __enter__(self) -> Observer:
        self._thread.start()
        self._up.result(timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)

    def watch(self, aid: str, t0: float, until: float) -> list[Sample]:
        """Resolve ``aid`` every :data:`POLL_S` until monotonic ``until``; each new record
        once, timed from monotonic ``t0``."""
        done: Future[list[Sample]] = Future()
        self._jobs.put((aid, t0, until, done))
        return done.result(timeout=max(1.0, until - time.monotonic()) + 30)

    def _run(self) -> None:
        try:
            with self._tb.netns(OBSERVER):
                anyio.run(self._main)
        except BaseException as exc:
            if not self._up.done():
                self._up.set_exception(exc)
            raise

    async def _main(self) -> None:
        cfg = NodeConfig(listen_addr=f"{self._tb.addr(OBSERVER)}:{PORT}",
                         bootstrap=tuple(self._seeds))  # fmt: skip
        async with Node(cfg) as node:
            self._up.set_result(str(node.aid))
            while True:
                job = await anyio.to_thread.run_sync(self._jobs.get)
                if job is None:
                    return
                aid, t0, until, done = job
                try:
                    done.set_result(await self._poll(node, Aid.from_str(aid), t0, until))
                except Exception as exc:  # handed to the bench's thread
                    done.set_exception(exc)

    @staticmethod
    async def _poll(node: Node, aid: Aid, t0: float, until: float) -> list[Sample]:
        seen: list[Sample] = []
        while time.monotonic() < until:
            started = time.monotonic()
            with anyio.move_on_after(RESOLVE_TIMEOUT_S), contextlib.suppress(A2ALError):
                got = await node.resolve(aid)
                now = time.monotonic() - t0
                sample = Sample(round(now, 2), got.seq, got.nat_type, list(got.endpoints))
                last = seen[-1] if seen else None
                if last is None or (last.seq, last.nat_type, last.endpoints) != (
                    sample.seq, sample.nat_type, sample.endpoints
                ):  # fmt: skip
                    seen.append(sample)
            await anyio.sleep(max(0.0, POLL_S - (time.monotonic() - started)))
        return seen


# ---- judging a record


def expected_type(kind: str, mapped: bool) -> int:
    """What a correct record of a node behind ``kind`` carries (``mapped``: the UPnP router
    held a mapping for it)."""
    if kind in UPNP:
        return 1 if mapped else 3
    return KINDS[kind][1]


def url_ok(kind: str, wan: str, endpoints: list[str], ports: set[int]) -> bool:
    """The first URL reaches the node: ``wan`` at one of ``ports``; behind the symmetric NAT
    without a mapping, correct is no URL on ``wan`` at all."""
    if kind == "sym" and ports == {PORT}:
        return not any(f"//{wan}:" in u for u in endpoints)
    return bool(endpoints) and any(endpoints[0] == f"quic://{wan}:{p}" for p in ports)


def judge(kind: str, wan: str, samples: list[Sample], mapped_ports: set[int]) -> dict[str, Any]:
    ports = {PORT} | mapped_ports
    want = expected_type(kind, bool(mapped_ports))

    def ok(s: Sample | None) -> bool:
        return s is not None and s.nat_type == want and url_ok(kind, wan, s.endpoints, ports)

    correct = next((s for s in samples if ok(s)), None)
    first = samples[0] if samples else None
    final = samples[-1] if samples else None
    return {
        "expected_nat_type": want,
        "first": dataclasses.asdict(first) if first else None,
        "final": dataclasses.asdict(final) if final else None,
        "correct_at": correct.t if correct else None,
        "final_correct": ok(final),
        "records": [dataclasses.asdict(s) for s in samples],
    }


# ---- the two implementations, one process each


def mapped_ports(tb: NatTestbed, host: str, kind: str) -> set[int]:
    if kind not in UPNP:
        return set()
    return {m.external_port for m in tb.upnp_mappings(host)
            if m.internal_port == PORT and m.protocol == "UDP"}  # fmt: skip


def read_json_line(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"pid {proc.pid}: no line within {timeout} s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"pid {proc.pid} exited ({proc.poll()}) before answering")
    got: dict[str, Any] = json.loads(line)
    return got


def run_ours(tb: NatTestbed, obs: Observer, kind: str, host: str, seeds: list[str],
             env: dict[str, str], watch_s: float, logdir: Path) -> dict[str, Any]:  # fmt: skip
    stun = "{}:{}".format(*tb.stun)
    argv = [sys.executable, "-c", OUR_CHILD, ",".join(seeds), stun, str(logdir / f"{host}.log")]
    proc = tb.popen(host, argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    label=f"ours:{host}")  # fmt: skip
    t0 = time.monotonic()
    mapped: set[int] = set()
    status: dict[str, Any] = {}
    try:
        aid = read_json_line(proc, 30)["aid"]
        samples = obs.watch(aid, t0, t0 + watch_s)
        mapped = mapped_ports(tb, host, kind)
        assert proc.stdin is not None
        proc.stdin.write(b"status\n")
        proc.stdin.flush()
        status = read_json_line(proc, 15)["status"]
        proc.stdin.close()
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
    out = judge(kind, tb.wan(host), samples, mapped)
    out.update(aid=aid, host=host, wan=tb.wan(host), mapped_ports=sorted(mapped), status=status,
               mapping_left_after_exit=sorted(mapped_ports(tb, host, kind)))  # fmt: skip
    return out


def run_a2ald(tb: NatTestbed, obs: Observer, kind: str, host: str, seeds: list[str],
              watch_s: float, base: Path) -> dict[str, Any]:  # fmt: skip
    launch = tb.a2ald_launch(host)
    launch.config = {**launch.config, "disable_upnp": False}  # UPnP on, as ours
    peer = A2aldPeer(base / host, bootstrap=seeds, udp_port=PORT, api_port=API_PORT,
                     launch=launch, name=f"a2ald-{host}")  # fmt: skip
    mapped: set[int] = set()
    local: dict[str, Any] = {}
    try:
        peer.start()
        t0 = time.monotonic()
        aid = ""
        while not aid and time.monotonic() < t0 + 20:
            with contextlib.suppress(Exception):
                aid = peer.node_aid
            if not aid:
                time.sleep(0.05)
        if not aid:
            raise TimeoutError(f"{peer.name}: no node AID within 20 s:\n{peer.log_tail()}")
        samples = obs.watch(aid, t0, t0 + watch_s)
        mapped = mapped_ports(tb, host, kind)
        with contextlib.suppress(Exception):
            local = {"status": peer.status(), "debug_host": peer.get("/debug/host")}
    finally:
        peer.stop()
    out = judge(kind, tb.wan(host), samples, mapped)
    out.update(aid=aid, host=host, wan=tb.wan(host), mapped_ports=sorted(mapped), local=local,
               mapping_left_after_exit=sorted(mapped_ports(tb, host, kind)))  # fmt: skip
    return out


# ---- the run


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def our_env(base: Path) -> dict[str, str]:
    """Our children's environment: bytecode from a private cache compiled once, untimed (an
    installed package has it; a checkout without current ``__pycache__`` would compile every
    module of ours on every start, which is not start-up cost of the node)."""
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("A2AL_MCP_")}  # fmt: skip
    env["PYTHONPYCACHEPREFIX"] = str(base / "pycache")
    package = Path(__file__).resolve().parent.parent / "a2al_mcp"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], env=env, check=True,
                   stdout=subprocess.DEVNULL, timeout=300)  # fmt: skip
    return env


def hosts_for(kinds: list[str]) -> dict[str, str]:
    hosts = dict.fromkeys((*SEEDS, OBSERVER), "public")
    for kind in kinds:
        short = KINDS[kind][0]
        hosts[f"o{short}"] = kind  # ours
        hosts[f"a{short}"] = kind  # a2ald
    return hosts


def a2ald_stun_names(tb: NatTestbed, base: Path) -> None:
    """Inside the testbed only: a2ald's compiled-in STUN names (stun.l.google.com:19302,
    stun1.l.google.com:19302, stun.cloudflare.com:3478) resolve, through an ``/etc/hosts``
    bind-mounted in the testbed's private mount namespace, to coturn's two addresses; port
    19302 is forwarded to coturn's 3479 on the ``turn`` host."""
    hosts = base / "hosts"
    hosts.write_text(A2ALD_STUN_HOSTS)
    tb.run("outer", ["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    tb.run("turn", ["nft", "-f", "-"], input=A2ALD_STUN_NFT, check=True)


@contextlib.contextmanager
def seeds_up(tb: NatTestbed, base: Path) -> Iterator[list[str]]:
    """Three a2ald peers on the public hosts, each bootstrapping from the ones before."""
    peers: list[A2aldPeer] = []
    try:
        for i, host in enumerate(SEEDS):
            peer = A2aldPeer(base / host, bootstrap=[p.listen_addr for p in peers],
                             udp_port=PORT, api_port=API_PORT, launch=tb.a2ald_launch(host),
                             name=f"a2ald-seed{i}")  # fmt: skip
            peers.append(peer)
            peer.start()
            peer.wait_ready(30, require_peers=bool(i))
        yield [p.listen_addr for p in peers]
    finally:
        for peer in peers:
            peer.stop()


def fmt_rec(rec: dict[str, Any] | None) -> str:
    return "none" if rec is None else f"{rec['t']:.1f} s, {rec['nat_type']}"


def fmt_url(rec: dict[str, Any] | None) -> str:
    if rec is None:
        return "–"
    return f"`{rec['endpoints'][0]}`" if rec["endpoints"] else "none"


def fmt_correct(r: dict[str, Any]) -> str:
    return "never" if r["correct_at"] is None else f"{r['correct_at']:.1f} s"


def table(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| NAT kind | correct type | ours: first record | ours: correct | ours: first URL "
        "| a2ald: first record | a2ald: final record | a2ald: correct | a2ald: final first URL "
        "| ours/a2ald (to correct) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, r in results.items():
        o, a = r["ours"], r["a2ald"]
        if o["correct_at"] is not None and a["correct_at"] is not None:
            ratio = f"{o['correct_at'] / a['correct_at']:.2f}×"
        elif o["correct_at"] is not None:
            ratio = "a2ald never correct"
        else:
            ratio = "ours never correct"
        want = (f"{o['expected_nat_type']}" if o["expected_nat_type"] == a["expected_nat_type"]
                else f"ours {o['expected_nat_type']}, a2ald {a['expected_nat_type']}")  # fmt: skip
        lines.append(
            f"| {kind} | {want} | {fmt_rec(o['first'])} | {fmt_correct(o)} | "
            f"{fmt_url(o['final'])} | {fmt_rec(a['first'])} | {fmt_rec(a['final'])} | "
            f"{fmt_correct(a)} | {fmt_url(a['final'])} | {ratio} |"
        )
    return lines


def bench(tb: NatTestbed, base: Path, kinds: list[str], args: argparse.Namespace,
          env: dict[str, str], results: dict[str, dict[str, Any]],
          loads: dict[str, list[float]]) -> None:  # fmt: skip
    """Seeds and observer up, then every kind in turn: ours, then a2ald."""
    logs = base / "logs"
    logs.mkdir()
    with seeds_up(tb, base / "a2ald") as seeds, Observer(tb, seeds) as obs:
        time.sleep(3)  # the observer's first lookups settle
        for kind in kinds:
            short = KINDS[kind][0]
            for router in (f"o{short}", f"a{short}"):
                if kind != "public":
                    tb.conntrack_flush(router)
            loads[kind] = loadavg()
            ours = run_ours(tb, obs, kind, f"o{short}", seeds, env, args.ours_watch, logs)
            theirs = run_a2ald(tb, obs, kind, f"a{short}", seeds, args.a2ald_watch,
                               base / "a2ald")  # fmt: skip
            results[kind] = {"ours": ours, "a2ald": theirs}
            print(f"{kind}: ours correct at {fmt_correct(ours)}, a2ald "
                  f"{fmt_rec(theirs['first'])} -> {fmt_rec(theirs['final'])}",
                  file=sys.stderr, flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated NAT kinds")
    ap.add_argument("--ours-watch", type=float, default=25.0, help="seconds ours is watched")
    ap.add_argument("--a2ald-watch", type=float, default=90.0, help="seconds a2ald is watched")
    ap.add_argument("--no-a2ald-stun-names", action="store_true",
                    help="leave a2ald's compiled-in STUN names unresolvable (no STUN for its "
                    "endpoint probe)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=OUT, help="where the JSON goes")
    args = ap.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for kind in kinds:
        if kind not in KINDS:
            raise SystemExit(f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
    base = Path(tempfile.mkdtemp(prefix="bench-nat-"))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = loadavg()
    env = our_env(base)
    results: dict[str, dict[str, Any]] = {}
    loads: dict[str, list[float]] = {}
    t_run = time.monotonic()
    a2ald_stun = "unresolvable" if args.no_a2ald_stun_names else "coturn"
    with NatTestbed(hosts_for(kinds)) as tb:
        if not args.no_a2ald_stun_names:
            a2ald_stun_names(tb, base)
        bench(tb, base, kinds, args, env, results, loads)
    load_end = loadavg()
    machine = (f"{os.cpu_count()} CPU, {platform.system()} {platform.release()}, "
               f"python {platform.python_version()}")  # fmt: skip
    head = [
        f"date: {started}; machine: {machine}; run took {time.monotonic() - t_run:.0f} s",
        f"load average (1/5/15 min): start {load_start}, end {load_end}; "
        f"at each kind's start: " + ", ".join(f"{k} {v[0]:.2f}" for k, v in loads.items()),
        f"bootstrap: a2ald 0.3.5 on {', '.join(SEEDS)} (both); STUN: coturn {tb.stun[0]}:"
        f"{tb.stun[1]} only (both; a2ald's compiled-in STUN names: "
        f"{a2ald_stun}); UPnP on (both); observer: our node on '{OBSERVER}', "
        f"polling resolve every {POLL_S} s; watched: ours {args.ours_watch:.0f} s, "
        f"a2ald {args.a2ald_watch:.0f} s",
        "",
    ]
    print("\n".join(head + table(results)))
    args.out.write_text(json.dumps({
        "date": started, "machine": machine, "load_start": load_start, "load_end": load_end,
        "load_at_kind": loads, "seeds": [f"{tb.addr(h)}:{PORT}" for h in SEEDS],
        "stun": list(tb.stun), "a2ald_stun_names": a2ald_stun,
        "watch_s": {"ours": args.ours_watch, "a2ald": args.a2ald_watch},
        "poll_s": POLL_S, "results": results,
    }, indent=1, default=str) + "\n")  # fmt: skip
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    main()
