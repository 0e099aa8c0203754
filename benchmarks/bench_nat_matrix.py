"""Issue 18's 5×5 NAT matrix timed: cold time-to-first-byte per cell, ours vs a2ald 0.3.5.

Run as root (the NAT testbed builds its own sealed namespaces and proves them sealed; a2ald
runs only through ``A2aldPeer(..., launch=tb.a2ald_launch(host))``)::

    cd /work/main && .venv/bin/python benchmarks/bench_nat_matrix.py [--directions ...]

One testbed run, the world of tests/nat/matrix_world.py: two hosts of every kind {public,
full cone, port-restricted, symmetric, UPnP IGDv1}, in each our node (in this process, on an
event loop in a thread inside the host) and a2ald side by side, our hubs on pub1/pub2 (a2ald
embeds its own there), coturn as STUN and TURN for both. A cell X→Y dials from the first host
of kind X to the second of kind Y; before each cold fetch the dialer reads the target's record,
then the UDP conntrack state between the two hosts is flushed on both routers (the shared
testbed's ``--flush-ct``). Cold: from the fetch call to its response (a small body, so
time-to-first-byte: QUIC dial with punch/ICE/TURN, the route frame, the request); ours through
``Node.fetch``, a2ald through its ``POST /fetch/{aid}`` (both to a service answering on the
target host). Warm: the median of ``--warm`` fetches on the pooled connection right after.
An a2ald target publishes its agent's record again just before each cell (in one run its
agents behind the prc and sym routers were found by nobody, a2ald included, from about 5 min
after their start): what is timed is the dial, not how long a record stays findable.

Per cell, the four directions run back to back (ours→ours, a2ald→a2ald, ours→a2ald,
a2ald→ours) so the ratio ours/a2ald compares figures taken under the same load. The matrix
starts once a2ald's records name its hubs (its 60 s republish). Then the relay throughput:
``GET /big`` (3 MiB) from ours to ours on the connection of a TURN cell and of direct cells.

Targets (issue 18): every cell ≤ 1.0×; the cells into port-restricted targets, where a2ald
loses its 2 s stagger, ≤ 0.1×; TURN cells ≤ 0.5×; warm ≤ 1.0× on every path.

Prints markdown tables and writes ``bench_nat_matrix.json`` next to this file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.nat.matrix_world

from a2al_mcp.errors import A2ALError
from a2al_mcp.testing.nat_testbed import NatTestbed
from tests.nat.matrix_world import (
    A2ALD_RECORD_S,
    CELLS,
    HOSTS,
    KINDS,
    PAIRS,
    CellResult,
    World,
    cell_hosts,
    hubs_of,
    matrix_world,
)

OUT: Final = Path(__file__).with_name("bench_nat_matrix.json")
DIRECTIONS: Final = ("ours>ours", "a2ald>a2ald", "ours>a2ald", "a2ald>ours")
THROUGHPUT_CELLS: Final = (("sym", "sym"), ("prc", "sym"), ("public", "public"), ("cone", "cone"))


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def wait_for_a2ald_hubs(world: World) -> dict[str, float | None]:
    """Until every a2ald agent behind a NAT has a record naming a hub (as our pub3 reads it),
    at most :data:`A2ALD_RECORD_S` after the world started; when each did (seconds after
    the world started; None: never)."""
    reader = world.ours["pub3"]
    nat_hosts = [h for pair in PAIRS.values() for h in pair if world.tb.host(h).router]
    seen: dict[str, float | None] = dict.fromkeys(nat_hosts)
    while None in seen.values() and time.monotonic() < world.started + A2ALD_RECORD_S:
        for host in [h for h, t in seen.items() if t is None]:
            aid = world.target_aid("a2ald", host)
            try:
                rec = world.on("pub3", reader.resolve, aid)
            except A2ALError:  # not there (yet)
                continue
            if hubs_of(rec):
                seen[host] = round(time.monotonic() - world.started, 1)
        time.sleep(1.0)
    return seen


def ms(x: float | None) -> str:
    return "–" if x is None else f"{x * 1000:.0f}"


def target_class(theirs: CellResult) -> tuple[str, float]:
    """Which of issue 18's targets a cell has, from a2ald's own path in it."""
    if theirs.path == "relay":
        return "TURN", 0.5
    if theirs.ok and theirs.cold_s is not None and theirs.cold_s >= 1.5:
        return "a2ald +2 s", 0.1
    return "", 1.0


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def matrix_table(by: dict[str, dict[tuple[str, str], CellResult]], mine: str, ref: str,
                 field: str) -> list[str]:  # fmt: skip
    """dialer × target: ``mine`` vs ``ref`` (``field``: cold_s or warm_s), with the ratio."""
    lines = [f"| {mine} vs {ref}: {field[:4]} ms | " + " | ".join(KINDS) + " |",
             "|---|" + "---|" * len(KINDS)]  # fmt: skip
    for a in KINDS:
        row = []
        for b in KINDS:
            o, t = by[mine].get((a, b)), by[ref].get((a, b))
            if o is None or t is None:
                row.append("–")
                continue
            ov = getattr(o, field) if o.ok else None
            tv = getattr(t, field) if t.ok else None
            r = ratio(ov, tv)
            cls, limit = target_class(t) if field == "cold_s" else ("", 1.0)
            mark = "" if r is None else (" ✓" if r <= limit else " ✗")
            rtxt = "" if r is None else f" = **{r:.2f}×**{mark}"
            otxt = f"{o.path.split()[0] if o.path else '?'} {ms(ov)}" if o.ok else "FAIL"
            ttxt = f"{t.path or '?'} {ms(tv)}" if t.ok else "FAIL"
            row.append(f"{otxt} / {ttxt}{rtxt}{' (' + cls + ')' if cls else ''}")
        lines.append(f"| **{a}** | " + " | ".join(row) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--directions", default=",".join(DIRECTIONS),
                    help="comma-separated, from " + ", ".join(DIRECTIONS))  # fmt: skip
    ap.add_argument("--cells", default="", help="comma-separated X-Y (default: all 25)")
    ap.add_argument("--warm", type=int, default=5, help="warm fetches per cell (median)")
    ap.add_argument("--out", type=Path, default=OUT, help="where the JSON goes")
    args = ap.parse_args()
    directions = [d.strip() for d in args.directions.split(",") if d.strip()]
    for d in directions:
        if d not in DIRECTIONS:
            raise SystemExit(f"unknown direction {d!r} (one of {', '.join(DIRECTIONS)})")
    wanted = {tuple(c.split("-")) for c in args.cells.split(",") if c}
    cells = [c for c in CELLS if not wanted or c in wanted]
    base = Path(tempfile.mkdtemp(prefix="bench-nat-matrix-"))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = loadavg()
    t_run = time.monotonic()
    results: list[CellResult] = []
    throughput: list[CellResult] = []
    with NatTestbed(HOSTS) as tb, matrix_world(tb, base / "a2ald") as world:
        notes = world.notes
        up = time.monotonic() - world.started
        waited = wait_for_a2ald_hubs(world)
        print(f"world up after {up:.0f} s; a2ald agents' records named hubs at (s): {waited}",
              file=sys.stderr, flush=True)  # fmt: skip
        notes.append(f"world up {up:.0f} s after start; a2ald's agent records behind NATs "
                     f"named a hub (as our pub3 resolved them) at s: {waited}")  # fmt: skip
        for cell in cells:
            dialer, target = cell_hosts(*cell)
            for d in directions:
                mine, theirs = d.split(">")
                r = world.cold_fetch(mine, theirs, dialer, target, warm=args.warm,
                                     republish=True)  # fmt: skip
                results.append(r)
                print(r.describe(), file=sys.stderr, flush=True)
        for cell in THROUGHPUT_CELLS:
            if cell in cells:
                r = world.throughput(*cell_hosts(*cell))
                throughput.append(r)
                print(f"throughput {r.describe()} {r.bytes_per_s or 0:.0f} B/s", file=sys.stderr)
    load_end = loadavg()
    by: dict[str, dict[tuple[str, str], CellResult]] = {d.replace(">", "→"): {} for d in DIRECTIONS}
    for r in results:
        by[f"{r.dialer_impl}→{r.target_impl}"][tuple(r.cell.split("→"))] = r  # type: ignore[index]
    machine = (f"{os.cpu_count()} CPU, {platform.system()} {platform.release()}, "
               f"python {platform.python_version()}")  # fmt: skip
    out = [
        f"date: {started}; machine: {machine}; run took {time.monotonic() - t_run:.0f} s; "
        f"load average start {load_start}, end {load_end}",
        "each cell: path and ms of ours / of a2ald, ratio ours ÷ a2ald (✓ within the "
        "cell's target: 1.0×, 0.1× where a2ald loses 2 s, 0.5× for TURN)",
        "",
        "**Cold time-to-first-byte, ours→ours vs a2ald→a2ald**",
        "",
        *matrix_table(by, "ours→ours", "a2ald→a2ald", "cold_s"),
        "",
        "**Warm fetch (median), ours→ours vs a2ald→a2ald**",
        "",
        *matrix_table(by, "ours→ours", "a2ald→a2ald", "warm_s"),
        "",
    ]
    for mixed in ("ours→a2ald", "a2ald→ours"):
        if by[mixed]:
            out += [f"**Cold, {mixed} vs a2ald→a2ald**", "",
                    *matrix_table(by, mixed, "a2ald→a2ald", "cold_s"), ""]  # fmt: skip
    if throughput:
        out += ["**Relay throughput (ours→ours, GET 3 MiB on the cell's connection)**", "",
                "| cell | path | time | MiB/s |", "|---|---|---|---|"]  # fmt: skip
        for r in throughput:
            rate = f"{r.bytes_per_s / 2**20:.1f}" if r.bytes_per_s else "FAIL"
            out.append(f"| {r.cell} | {r.path or '?'} | {ms(r.warm_s)} ms | {rate} |")
    out += ["", *(f"note: {n}" for n in notes)]
    print("\n".join(out))
    args.out.write_text(json.dumps({
        "date": started, "machine": machine, "load_start": load_start, "load_end": load_end,
        "warm_n": args.warm, "a2ald_hubs_in_record_at_s": waited, "notes": notes,
        "cells": [dataclasses.asdict(r) | {"cell": r.cell} for r in results],
        "throughput": [dataclasses.asdict(r) | {"cell": r.cell} for r in throughput],
    }, indent=1, default=str) + "\n")  # fmt: skip
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    main()
