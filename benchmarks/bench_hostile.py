"""A node under attack, by hand (issue 14; not in CI). Loopback only; Linux (127.x.y.z
sources, /proc for RSS).

    python benchmarks/bench_hostile.py                 # every scenario, full size (~15 min)
    python benchmarks/bench_hostile.py memory flood    # some of them
    python benchmarks/bench_hostile.py --quick         # every scenario, a tenth of the size

Scenarios, each in its own process so one's memory does not colour the next's:

* ``memory``  — a peer pushes 1 GB at a handler that never reads: RSS and unread bytes held;
* ``flood``   — honest connect latency p50/p95 without and during a 10,000-INITIAL flood;
* ``tunnel``  — the price of the limits: one stream's throughput and connect latency;
* ``mailbox`` — inbox size, refusals and RSS after a 100k-note flood from 1,000 identities;
* ``dht``     — an honest topic registration under a 100k-STORE flood from 2,500 addresses.

The scenarios live in ``benchmarks/hostile/`` (each also runs alone); this runner prints
each one's figures as one JSON line, named. Results go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent / "hostile"

FULL: dict[str, list[str]] = {
    "memory": ["transport.py", "memory"],
    "flood": ["transport.py", "flood"],
    "tunnel": ["transport.py", "tunnel"],
    "mailbox": ["mailbox.py"],
    "dht": ["dht.py"],
}
QUICK_ARGS: dict[str, list[str]] = {
    "mailbox": ["--notes", "10000", "--identities", "100", "--seconds", "60"],
    "dht": ["--stores", "10000", "--addresses", "250", "--prefixes", "250"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="*", help=f"any of {', '.join(FULL)} (default: all)")
    ap.add_argument("--quick", action="store_true", help="mailbox and dht at a tenth of the size")
    args = ap.parse_args()
    unknown = sorted(set(args.scenarios) - set(FULL))
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(unknown)}")
    for name in args.scenarios or list(FULL):
        script, *rest = FULL[name]
        if args.quick:
            rest += QUICK_ARGS.get(name, [])
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, str(HERE / script), *rest],
            capture_output=True,
            text=True,
            check=False,
        )
        out = proc.stdout.strip()
        print(
            json.dumps(
                {
                    "scenario": name,
                    "exit": proc.returncode,
                    "seconds": round(time.monotonic() - start, 1),
                    "output": out,
                    "stderr_tail": proc.stderr.strip().splitlines()[-3:] if proc.returncode else [],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
