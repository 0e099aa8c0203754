"""Our punch against a2ald 0.3.5's, in the NAT testbed: both behind port-restricted NATs, our
side the caller through a2ald's own hub (a2ald on a public host), a2ald the callee.

a2ald runs only through :class:`~a2al_mcp.testing.a2ald.A2aldPeer` with the testbed's launch
(which proves the testbed sealed before it starts anything). Our side is the side process of
:mod:`tests.nat.test_punch` (a plain UDP socket as its main socket). It calls a2ald's node AID
(a2ald's Mode B: ICE and the punch, as the callee; it punches only once it has our ICE
``cred``, so we send one); the punch is ours against theirs: their
``punch-ack`` answers our ``punch-init``, our ``punch-go`` makes them fire QUIC at our NAT's
address, and our probes open our NAT for it. Proved on the wire: their QUIC packets reach our
socket from their NAT's address, and their NAT's conntrack entry towards us has seen replies
(our probes got in).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from a2al_mcp.testing.a2ald import A2aldPeer, poll_until
from a2al_mcp.testing.nat_testbed import NatTestbed
from tests.nat.test_punch import PORT, process

pytestmark = pytest.mark.nat


@pytest.fixture(scope="module")
def tb(nat_available: None) -> Iterator[NatTestbed]:
    """a2ald's hub on a public host, two port-restricted NATs, STUN (coturn) for a2ald."""
    with NatTestbed({"pub1": "public", "prc": "prc", "prc2": "prc"}) as testbed:
        yield testbed


def _flush_udp(tb: NatTestbed, host: str) -> None:
    """Forget the UDP state of ``host``'s router (its TCP to the hub stays)."""
    tb.run(tb.router(host), ["conntrack", "-D", "-p", "udp"])  # exits 1 when there is none


def test_our_caller_punches_a2ald_behind_prc2_through_a2alds_hub(
    tb: NatTestbed, a2ald_binary: None, tmp_path: Path
) -> None:
    tb.prove_sealed()
    hub = A2aldPeer(tmp_path / "pub1", udp_port=PORT, api_port=2121,
                    launch=tb.a2ald_launch("pub1"), name="a2ald-pub1")  # fmt: skip
    target = A2aldPeer(tmp_path / "prc2", bootstrap=[f"{tb.addr('pub1')}:{PORT}"],
                       udp_port=PORT, api_port=2121, launch=tb.a2ald_launch("prc2"),
                       name="a2ald-prc2", log_level="debug")  # fmt: skip
    try:
        hub.start()
        hub.wait_ready(30, require_peers=False)
        target.start()
        target.wait_ready(30, require_peers=True)
        # natsense must know prc2's external address (a2ald sends no punch-ack without it)
        wan = tb.wan("prc2")
        poll_until(lambda: target.request("GET", "/debug/host"), lambda h: wan in str(h),
                   timeout=30, what="prc2's external address")  # fmt: skip
        _flush_udp(tb, "prc")
        _flush_udp(tb, "prc2")
        hub_url = f"ws://{tb.addr('pub1')}:{PORT}"
        args = ("side", "--role", "caller", "--hub", hub_url, "--external", tb.wan("prc"),
                "--target", target.node_aid, "--retry-s", "40", "--send-cred")  # fmt: skip
        with process(tb, "prc", *args) as caller:
            done = caller.first("punched", "failed", timeout=80)
            log = caller.stderr()
        conntrack = tb.run(tb.router("prc2"), ["conntrack", "-L", "-p", "udp"], check=True).stdout
        a2ald_log = target.log_tail(400)
    finally:
        target.stop()
        hub.stop()
    print(f"caller: {done}")
    assert done["t"] == "punched", f"{done}\n{log}\n{a2ald_log}"
    # a2ald answered our punch-init and fired at us on our punch-go: its QUIC (long header
    # Initial) came through both NATs from its NAT's address
    assert done["addr"] == [tb.wan("prc2"), PORT]
    assert done["targets"] == [[tb.wan("prc2"), PORT]]
    from_a2ald = [first for first, addr in done["seen"] if addr == [tb.wan("prc2"), PORT]]
    assert from_a2ald and all(int(b, 16) & 0xC0 == 0xC0 for b in from_a2ald), done["seen"]
    assert done["foreign"] >= 1  # its ICE frames (cred, cand, eoc) shared the room
    assert done["ts_mismatch"] == done["unexpected"] == 0  # its punch-ack echoed our ts
    # our probes got into prc2 through its NAT: the entry for prc2 → our NAT saw replies
    tuple_ = f"src={tb.addr('prc2')} dst={tb.wan('prc')} sport={PORT} dport={PORT}"
    ours = [line for line in conntrack.splitlines() if tuple_ in line]
    assert ours and "UNREPLIED" not in ours[0], conntrack
