"""DHT at scale in the deterministic simulator: resolve success, RPCs and hops vs N.

For each N: N real DhtCores join through one seed (then the network settles for 30 virtual
seconds), every node publishes its endpoint record (8 replicas), a fraction of the nodes is
killed *after* publishing, and live nodes resolve random AIDs of *all* nodes (the killed
ones' records must still be found on surviving replicas). Reports resolve success, mean RPCs
per resolve, mean hop count, virtual-time p50/p95 and how long the run took.

    python benchmarks/bench_dht_sim_scale.py --nodes 300 1000 3000 10000 --kill 0.25
    python benchmarks/bench_dht_sim_scale.py --nodes 300 --all-pairs      # 89,700 resolves

Results go to stdout as one JSON line per N (and to --out, appended).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import statistics
import time
from pathlib import Path

from a2al_mcp.testing.dhtsim import DhtSim


def run(n: int, *, kill: float, resolves: int, all_pairs: bool, seed: int) -> dict[str, object]:
    t0 = time.perf_counter()
    sim = DhtSim(n, seed=seed)
    sim.bootstrap_all()
    t_boot = time.perf_counter() - t0
    sent_boot = sim.net.stats().sent

    t1 = time.perf_counter()
    pubs = sim.publish_many(
        [(i, sim.endpoint_record(i), sim.core(i).aid.node_id) for i in range(n)], batch=256
    )
    t_pub = time.perf_counter() - t1
    replicas = statistics.mean(len(p.stored_at) for p in pubs)

    rnd = random.Random(seed)
    dead = set(rnd.sample(range(n), int(n * kill)))
    for i in dead:
        sim.net.kill(sim.nodes[i])
    live = [i for i in range(n) if i not in dead]

    if all_pairs:
        pairs = [(i, sim.core(j).aid) for i in live for j in range(n) if j != i]
    else:
        pairs = []
        while len(pairs) < resolves:
            i, j = rnd.choice(live), rnd.randrange(n)
            if i != j:
                pairs.append((i, sim.core(j).aid))
    t2 = time.perf_counter()
    v0 = sim.net.now
    results = sim.resolve_many(pairs, batch=256)
    t_res = time.perf_counter() - t2
    ok = [r for r in results if r.records]
    rpcs = [r.queried for r in results]
    hops = [r.hops for r in ok]
    return {
        "nodes": n,
        "killed": len(dead),
        "resolves": len(results),
        "success": len(ok) / len(results),
        "rpcs_mean": statistics.mean(rpcs),
        "hops_mean": statistics.mean(hops) if hops else None,
        "hops_max": max(hops) if hops else None,
        "replicas_mean": replicas,
        "join_datagrams_per_node": sent_boot / n,
        "virtual_resolve_phase_s": sim.net.now - v0,
        "wall_bootstrap_s": round(t_boot, 1),
        "wall_publish_s": round(t_pub, 1),
        "wall_resolve_s": round(t_res, 1),
        "wall_total_s": round(time.perf_counter() - t0, 1),
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[300, 1000])
    ap.add_argument("--kill", type=float, default=0.25)
    ap.add_argument("--resolves", type=int, default=2000)
    ap.add_argument("--all-pairs", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    print(f"# {platform.platform()} python {platform.python_version()}", flush=True)
    for n in args.nodes:
        row = run(n, kill=args.kill, resolves=args.resolves, all_pairs=args.all_pairs,
                  seed=args.seed)  # fmt: skip
        line = json.dumps(row)
        print(line, flush=True)
        if args.out:
            with args.out.open("a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
