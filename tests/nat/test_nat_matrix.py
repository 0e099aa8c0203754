"""Issue 18's 5×5 matrix in the NAT testbed: dialer NAT kind × target NAT kind, each cell a
cold fetch that must succeed, for ours→ours, a2ald→ours and ours→a2ald; mailbox, resolve and
discover from and to every NAT kind.

The world (tests/nat/matrix_world.py) is built once for the module: two hosts of each kind
{public, full cone, port-restricted, symmetric, UPnP IGDv1}, our node and a2ald 0.3.5 in
each (a2ald started only through ``NatTestbed.a2ald_launch``), our hubs on ``pub1``/``pub2``,
coturn as STUN and TURN for both. A cell X→Y dials from the first host of kind X to the
second of kind Y (the diagonal X1→X2 uses two routers of the same kind, the UPnP diagonal two
UPnP hosts). Before each dial the dialer reads the target's record (DHT traffic), then the UDP
conntrack state between the two hosts is flushed on both routers (the shared testbed's
``--flush-ct``): every cell is a first contact. The dialer may have no connection to the
target before (each dialer-target pair is dialled once). Each cell records its path and its
cold and warm times, printed as tables at the end of the module (``pytest -s``); no time is
asserted (docs/benchmarks.md: benchmarks/bench_nat_matrix.py).

Run: ``bash .ci/test -q -s tests/nat/test_nat_matrix.py`` (root; seals a namespace).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from a2al_mcp import Aid, ResolvedEndpoint
from a2al_mcp.testing.a2ald import poll_until
from a2al_mcp.testing.nat_testbed import NatTestbed
from tests.nat.interop_a2ald import mailbox_poll, mailbox_send
from tests.nat.matrix_world import (
    CELLS,
    HOSTS,
    KINDS,
    OURS_NAT_TYPE,
    PAIRS,
    READY_S,
    CellResult,
    World,
    cell_hosts,
    cell_id,
    hubs_of,
    matrix_world,
    topic,
)
from tests.nat.test_nat_interop import discover_until, note_until, resolve_until

pytestmark = pytest.mark.nat

CELL_IDS = [cell_id(c) for c in CELLS]
A2ALD_FIND_S = 20.0
A2ALD_UNFINDABLE = (
    "known (issue 18 note): a2ald's agent behind this NAT was not found by our nodes even after it "
    "published again; the cell is about the dial, which needs the record"
)


@pytest.fixture(scope="module")
def tb(nat_available: None) -> Iterator[NatTestbed]:
    with NatTestbed(HOSTS) as testbed:
        yield testbed


@pytest.fixture(scope="module")
def world(
    tb: NatTestbed, a2ald_binary: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with matrix_world(tb, tmp_path_factory.mktemp("nat_matrix")) as w:
        yield w
        print("\n\n" + "\n".join(tables(w.results) + w.notes))


def tables(results: list[CellResult]) -> list[str]:
    """One markdown table per direction: path and cold / warm ms per cell."""
    out = []
    for direction in sorted({(r.dialer_impl, r.target_impl) for r in results}):
        cells = {(r.cell.split("→")[0], r.cell.split("→")[1]): r for r in results
                 if (r.dialer_impl, r.target_impl) == direction}  # fmt: skip
        out += [f"{direction[0]} → {direction[1]} (cold / warm ms, path)", "",
                "| dialer \\ target | " + " | ".join(KINDS) + " |",
                "|---|" + "---|" * len(KINDS)]  # fmt: skip
        for a in KINDS:
            row = []
            for b in KINDS:
                r = cells.get((a, b))
                if r is None:
                    row.append("–")
                elif not r.ok or r.cold_s is None:
                    row.append(f"**FAIL** {r.path or ''}".strip())
                else:
                    warm = f" / {r.warm_s * 1000:.0f}" if r.warm_s is not None else ""
                    row.append(f"{r.path.split()[0]} {r.cold_s * 1000:.0f}{warm}")
            out.append(f"| **{a}** | " + " | ".join(row) + " |")
        out.append("")
        out += [r.describe() for r in results if (r.dialer_impl, r.target_impl) == direction]
        out.append("")
    return out


def _cell(
    world: World, dialer_impl: str, target_impl: str, cell: tuple[str, str], *,
    republish: bool = False,
) -> None:  # fmt: skip
    dialer, target = cell_hosts(*cell)
    result = world.cold_fetch(dialer_impl, target_impl, dialer, target, republish=republish)
    if target_impl == "a2ald" and result.error.startswith("NotFound: no record of"):
        pytest.xfail(f"{A2ALD_UNFINDABLE}: {result.describe()}")
    print(result.describe())
    assert result.ok, result.describe()


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_ours_fetches_cold_from_ours(world: World, cell: tuple[str, str]) -> None:
    _cell(world, "ours", "ours", cell)


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_a2ald_fetches_cold_from_ours(world: World, cell: tuple[str, str]) -> None:
    _cell(world, "a2ald", "ours", cell)


# -- mailbox, resolve, discover: from the first host of each kind to the second (X1→X2),
# so every kind is both a sender and a recipient; towards a2ald and from it as well


def _a2ald_agent_found(world: World, a: str, b: str) -> ResolvedEndpoint:
    """Our node on ``a`` finds a2ald's agent on ``b``: a2ald publishes it again every
    :data:`A2ALD_FIND_S` until it is found, three times at most (a2ald behind a NAT did not
    always keep its agent's record findable for minutes: upnp2 in one run, sym2 in another;
    see the a2ald dial cells)."""
    theirs = Aid.from_str(world.a2ald_agents[b].aid)
    failed: AssertionError | None = None
    for _ in range(3):
        world.a2ald[b].publish_agent(str(theirs))
        try:
            found: ResolvedEndpoint = world.on(
                a, resolve_until, world.ours[a], theirs, lambda r: bool(r.endpoints),
                f"ours on {a} resolving a2ald's agent on {b}", A2ALD_FIND_S,
            )  # fmt: skip
        except AssertionError as exc:
            failed = exc
        else:
            return found
    assert failed is not None
    pytest.xfail(f"{A2ALD_UNFINDABLE}: {failed}")


@pytest.mark.parametrize("kind", KINDS)
def test_resolve_from_and_to_every_kind(world: World, kind: str) -> None:
    a, b = PAIRS[kind]
    want = OURS_NAT_TYPE[kind]
    ours_b = world.ours_agents[b].aid
    rec = world.on(a, resolve_until, world.ours[a], ours_b,
                   lambda r: r.nat_type == want and (want == 1 or bool(hubs_of(r))),
                   f"ours on {a} resolving our agent on {b}")  # fmt: skip
    assert rec.nat_type == want
    got = _a2ald_agent_found(world, a, b)
    assert f"{world.tb.wan(b)}:" in " ".join(got.endpoints), got
    seen = poll_until(lambda: world.a2ald[a].resolve(str(ours_b)),
                      lambda r: int(r["nat_type"]) == want, timeout=READY_S, interval=0.3,
                      what=f"a2ald on {a} resolving our agent on {b}")  # fmt: skip
    assert int(seen["nat_type"]) == want


@pytest.mark.parametrize("kind", KINDS)
def test_discover_from_and_to_every_kind(world: World, kind: str) -> None:
    a, b = PAIRS[kind]
    ours_b = world.ours_agents[b].aid
    entry = world.on(a, discover_until, world.ours[a], topic("ours", b), ours_b,
                     f"ours on {a} discovering ours on {b}")  # fmt: skip
    assert entry.name == f"ours-{b}"
    theirs = world.a2ald_agents[b]
    entry = world.on(a, discover_until, world.ours[a], theirs.topic, Aid.from_str(theirs.aid),
                     f"ours on {a} discovering a2ald on {b}")  # fmt: skip
    assert entry.service == theirs.topic
    got = poll_until(lambda: world.a2ald[a].discover([topic("ours", b)]),
                     lambda d: any(e["aid"] == str(ours_b) for e in d.get("entries") or []),
                     timeout=READY_S, interval=0.3,
                     what=f"a2ald on {a} discovering ours on {b}")  # fmt: skip
    assert got["entries"]


@pytest.mark.parametrize("kind", KINDS)
def test_mailbox_from_and_to_every_kind(world: World, kind: str) -> None:
    """Each note after a flush between the two hosts: where the recipient's NAT filters, the
    copy on the DHT replicas is the one that arrives."""
    a, b = PAIRS[kind]
    tb = world.tb
    ours_a, ours_b = world.ours_agents[a].aid, world.ours_agents[b].aid
    theirs_a, theirs_b = world.a2ald_agents[a], world.a2ald_agents[b]
    _a2ald_agent_found(world, a, b)  # its key, for the note to it

    body = f"ours {a} -> ours {b}".encode()
    tb.conntrack_flush_between(a, b)
    world.on(a, world.ours[a].send_mailbox, ours_b, body, local=ours_a)
    via = world.on(b, note_until, world.ours[b], ours_b, ours_a, body)
    print(f"{kind}: ours {a} -> ours {b} via {via}")

    body = f"ours {a} -> a2ald {b}".encode()
    tb.conntrack_flush_between(a, b)
    world.on(a, world.ours[a].send_mailbox, Aid.from_str(theirs_b.aid), body, local=ours_a)
    seen: list[tuple[str, bytes]] = []

    def arrived() -> list[tuple[str, bytes]]:
        seen.extend(mailbox_poll(theirs_b.peer, theirs_b.aid))
        return seen

    poll_until(arrived, lambda got: (str(ours_a), body) in got, timeout=READY_S, interval=0.3,
               what=f"a2ald on {b} reading ours on {a}")  # fmt: skip

    body = f"a2ald {a} -> ours {b}".encode()
    tb.conntrack_flush_between(a, b)
    sent = mailbox_send(theirs_a.peer, theirs_a.aid, str(ours_b), body)
    assert sent.get("ok"), sent
    via = world.on(b, note_until, world.ours[b], ours_b, Aid.from_str(theirs_a.aid), body)
    print(f"{kind}: a2ald {a} -> ours {b} via {via}")


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_ours_fetches_cold_from_a2ald(world: World, cell: tuple[str, str]) -> None:
    """Last: a2ald names its hubs in its records only at its 60 s republish. Its agent's
    record is published again first (as the benchmark does): a2ald behind a NAT does not
    always keep it findable minutes later (seen for cone2, upnp2, prc2), and this cell is
    about the dial, not about a2ald's records."""
    _cell(world, "ours", "a2ald", cell, republish=True)
