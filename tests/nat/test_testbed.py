"""The NAT testbed behaves as each NAT kind should, with plain UDP sockets.

One testbed (the default topology: pub1-3, cone, prc, sym, upnp1 = IGDv1, upnp2 = IGDv2, turn)
serves the whole module; each test uses its own ports and flushes the routers it relies on.
"Not received" checks are made robust by ordering: the packet that must be dropped is sent
first, a packet that must pass is sent after it from the same side of the NAT, and the first
datagram the host receives must be the second one.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from a2al_mcp.testing.a2ald import NotSealedError
from a2al_mcp.testing.nat_check import EXPECTED, observe
from a2al_mcp.testing.nat_netns import netns_id, proc_start_time
from a2al_mcp.testing.nat_state import read_records
from a2al_mcp.testing.nat_stun import stun_query
from a2al_mcp.testing.nat_testbed import NatTestbed

pytestmark = pytest.mark.nat

Addr = tuple[str, int]
WAIT = 1.0  # seconds a datagram that must arrive may take (ample: everything is in one kernel)
IP_RECVERR = 11  # <linux/in.h>; socket.IP_RECVERR needs Python 3.12
QUIET = 0.3  # seconds to wait for a datagram that must not arrive, after the ordering probe


def udp(tb: NatTestbed, host: str, port: int) -> socket.socket:
    """A UDP socket living in ``host``, bound to its address and ``port``."""
    with tb.netns(host):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((tb.addr(host), port))
    sock.settimeout(WAIT)
    return sock


def observed(src: socket.socket, dst: socket.socket) -> Addr:
    """Send from ``src`` to ``dst``; return the source address ``dst`` sees."""
    token = os.urandom(8)
    src.sendto(token, dst.getsockname())
    while True:
        data, source = dst.recvfrom(2048)
        if data == token:
            return source[0], source[1]


def first_received(sock: socket.socket) -> bytes:
    data, _ = sock.recvfrom(2048)
    return data


def nothing_more(sock: socket.socket) -> bool:
    sock.settimeout(QUIET)
    try:
        sock.recvfrom(2048)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(WAIT)
    return False


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Sockets a test opens (closed after it)."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def open_udp(sockets: list[socket.socket], tb: NatTestbed, host: str, port: int) -> socket.socket:
    sock = udp(tb, host, port)
    sockets.append(sock)
    return sock


# ---- safety


def test_outer_namespace_is_sealed_and_the_internet_ends_at_inet(
    tb: NatTestbed, sockets: list[socket.socket]
) -> None:
    tb.prove_sealed()  # only lo, no routes, 8.8.8.8 / 2001:4860:4860::8888 unreachable
    assert tb.run("outer", ["ip", "-o", "link"], check=True).stdout.count("\n") == 1
    assert tb.run("inet", ["ip", "route", "show", "default"], check=True).stdout == ""
    # a datagram to an address outside the testbed dies at inet: ICMP net unreachable
    with tb.netns("prc"):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(probe)
    probe.settimeout(WAIT)
    probe.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)  # report non-fatal ICMP errors too
    probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routed by prc and r-prc, not by inet
    probe.send(b"x")
    with pytest.raises(OSError) as err:
        probe.recv(16)
    assert err.value.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)
    # the caller's namespace and its resolv.conf are untouched; the testbed's processes see
    # the testbed resolver
    assert netns_id() not in {netns_id(pid) for pid in tb.namespaces.values()}
    testbed_mount = f"{tb.state_dir.name}/resolv.conf /etc/resolv.conf "
    assert testbed_mount in tb.run("outer", ["cat", "/proc/self/mountinfo"]).stdout
    assert testbed_mount not in Path("/proc/self/mountinfo").read_text()
    resolv = tb.run("pub1", ["cat", "/etc/resolv.conf"], check=True).stdout
    assert resolv.startswith("nameserver 203.0.113.53")


def test_the_seal_proof_notices_a_stray_interface_or_a_default_route_on_inet(
    tb: NatTestbed,
) -> None:
    stray = ["ip", "link", "add", "stray0", "type", "veth", "peer", "name", "stray1"]
    tb.run("pub3", stray, check=True)
    try:
        with pytest.raises(NotSealedError, match=r"pub3: interfaces the testbed did not make"):
            tb.prove_sealed()
    finally:
        tb.run("pub3", ["ip", "link", "del", "stray0"], check=True)
    tb.run("inet", ["ip", "route", "add", "default", "dev", "brpub"], check=True)
    try:
        with pytest.raises(NotSealedError, match="inet has a default route"):
            tb.prove_sealed()
    finally:
        tb.run("inet", ["ip", "route", "del", "default"], check=True)
    tb.prove_sealed()


def test_addresses(tb: NatTestbed) -> None:
    assert tb.addr("pub1") == tb.wan("pub1") == "203.0.113.11"
    assert tb.wan("cone").startswith("198.51.100.")
    assert tb.wan("upnp1").startswith("198.51.99.")  # miniupnpd refuses reserved WAN ranges
    assert tb.addr("prc").startswith("10.") and tb.addr("prc").endswith(".0.2")
    route = tb.run("prc", ["ip", "route", "show", "default"], check=True).stdout
    assert route.startswith(f"default via {tb.host('prc').gateway}")


# ---- NAT kinds


def test_cone_maps_endpoint_independently_and_lets_anyone_in(
    tb: NatTestbed, sockets: list[socket.socket]
) -> None:
    tb.conntrack_flush("cone")
    host = open_udp(sockets, tb, "cone", 41001)
    pubs = [open_udp(sockets, tb, f"pub{i}", 41001) for i in (1, 2, 3)]
    seen1, seen2 = observed(host, pubs[0]), observed(host, pubs[1])
    assert seen1 == seen2 == (tb.wan("cone"), 41001)
    # pub3 was never contacted, yet reaches the host through the mapping
    pubs[2].sendto(b"unsolicited", seen1)
    assert first_received(host) == b"unsolicited"


def test_prc_maps_endpoint_independently_and_filters_by_address_and_port(
    tb: NatTestbed, sockets: list[socket.socket]
) -> None:
    tb.conntrack_flush("prc")
    host = open_udp(sockets, tb, "prc", 41002)
    pub1, pub2, pub3 = (open_udp(sockets, tb, f"pub{i}", 41002) for i in (1, 2, 3))
    pub1_other_port = open_udp(sockets, tb, "pub1", 41003)
    seen1, seen2 = observed(host, pub1), observed(host, pub2)
    assert seen1 == seen2 == (tb.wan("prc"), 41002)  # EIM, port preserved
    pub3.sendto(b"never contacted", seen1)  # dropped
    pub1_other_port.sendto(b"contacted address, other port", seen1)  # dropped
    pub1.sendto(b"contacted", seen1)  # passes
    assert first_received(host) == b"contacted"
    assert nothing_more(host)


def test_conntrack_flush_between_forgets_only_what_is_between_the_two_hosts(
    tb: NatTestbed, sockets: list[socket.socket]
) -> None:
    tb.conntrack_flush("prc")
    host = open_udp(sockets, tb, "prc", 41021)
    pub1, pub2 = (open_udp(sockets, tb, f"pub{i}", 41021) for i in (1, 2))
    seen = observed(host, pub1)
    assert observed(host, pub2) == seen
    tb.conntrack_flush_between("prc", "pub1")
    pub1.sendto(b"forgotten", seen)  # dropped: the pinhole for pub1 is gone
    pub2.sendto(b"kept", seen)  # passes: pub2's is not
    assert first_received(host) == b"kept"
    assert nothing_more(host)


def test_sym_maps_each_destination_to_another_port(
    tb: NatTestbed, sockets: list[socket.socket]
) -> None:
    tb.conntrack_flush("sym")
    host = open_udp(sockets, tb, "sym", 41004)
    pub1, pub2, pub3 = (open_udp(sockets, tb, f"pub{i}", 41004) for i in (1, 2, 3))
    seen = [observed(host, pub) for pub in (pub1, pub2, pub3)]
    assert {addr for addr, _ in seen} == {tb.wan("sym")}
    assert len({port for _, port in seen}) == len(seen)
    # replies from the contacted peer still come back; others are dropped
    pub2.sendto(b"to pub1's mapping", seen[0])
    pub1.sendto(b"reply", seen[0])
    assert first_received(host) == b"reply"
    assert nothing_more(host)


@pytest.mark.parametrize("host", ["upnp1", "upnp2"])
def test_upnp_mapping_opens_the_port(
    tb: NatTestbed, sockets: list[socket.socket], host: str
) -> None:
    port = 41010 if host == "upnp1" else 41011
    tb.conntrack_flush(host)
    lan = open_udp(sockets, tb, host, port)
    pub1, pub3 = open_udp(sockets, tb, "pub1", port), open_udp(sockets, tb, "pub3", port)
    seen = observed(lan, pub1)
    assert seen == (tb.wan(host), port)
    pub3.sendto(b"before the mapping", seen)  # filtered like prc
    pub1.sendto(b"contacted", seen)
    assert first_received(lan) == b"contacted"
    assert nothing_more(lan)

    add = [
        "upnpc", "-u", tb.upnp_url(host), "-e", "testbed",
        "-a", tb.addr(host), str(port), str(port), "UDP", "600",
    ]  # fmt: skip
    result = tb.run(host, add, check=True)
    assert f"external {tb.wan(host)}:{port} UDP is redirected" in result.stdout
    [mapping] = tb.upnp_mappings(host)
    assert (mapping.protocol, mapping.external_port) == ("UDP", port)
    assert (mapping.internal_addr, mapping.description) == (tb.addr(host), "testbed")

    pub3.sendto(b"unsolicited, mapped", seen)
    assert first_received(lan) == b"unsolicited, mapped"
    tb.run(host, ["upnpc", "-u", tb.upnp_url(host), "-d", str(port), "UDP"], check=True)
    assert tb.upnp_mappings(host) == []


@pytest.mark.parametrize(("host", "version"), [("upnp1", 1), ("upnp2", 2)])
def test_upnp_description_lists_one_igd_version(tb: NatTestbed, host: str, version: int) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with tb.netns(host), opener.open(tb.upnp_url(host), timeout=5) as resp:
        desc = resp.read().decode()
    assert f"urn:schemas-upnp-org:service:WANIPConnection:{version}" in desc
    other = 2 if version == 1 else 1
    assert f"urn:schemas-upnp-org:service:WANIPConnection:{other}" not in desc


# ---- coturn


@pytest.mark.parametrize("host", ["pub2", "cone", "prc", "sym", "upnp1"])
def test_stun_reports_the_wan_address_and_the_alternate(
    tb: NatTestbed, sockets: list[socket.socket], host: str
) -> None:
    tb_host = tb.host(host)
    if tb_host.router is not None:
        tb.conntrack_flush(host)
    sock = open_udp(sockets, tb, host, 41020)
    answer = stun_query(sock, tb.stun)
    assert answer is not None
    response, source = answer
    assert source == tb.stun
    assert response.xor_mapped is not None and response.xor_mapped[0] == tb.wan(host)
    if tb_host.kind != "sym":
        assert response.xor_mapped[1] == 41020
    assert response.other == tb.stun_alternate == ("203.0.113.4", 3479)


@pytest.mark.parametrize(("name", "port"), [("stun.l.google.com", 19302),
                                            ("stun1.l.google.com", 19302),
                                            ("stun.cloudflare.com", 3478)])  # fmt: skip
def test_a2ald_stun_names_reach_coturn_inside_the_testbed(
    tb: NatTestbed, sockets: list[socket.socket], name: str, port: int
) -> None:
    tb.resolve_a2ald_stun_names()
    got = tb.run("prc", ["getent", "ahostsv4", name], check=True).stdout.split()
    assert got[0] in (tb.stun[0], tb.stun_alternate[0])
    tb.conntrack_flush("prc")
    answer = stun_query(open_udp(sockets, tb, "prc", 41022), (got[0], port))
    assert answer is not None
    response, source = answer
    assert source == (got[0], port)
    assert response.xor_mapped == (tb.wan("prc"), 41022)


def test_stun_change_request_is_answered_from_the_alternate_address(
    tb: NatTestbed, sockets: list[socket.socket]
) -> None:
    sock = open_udp(sockets, tb, "pub2", 41021)
    both = stun_query(sock, tb.stun, change_ip=True, change_port=True)
    assert both is not None
    assert both[1] == both[0].response_origin == tb.stun_alternate
    port_only = stun_query(sock, tb.stun, change_port=True)
    assert port_only is not None
    assert port_only[1] == (tb.stun[0], tb.stun_alternate[1])
    ip_only = stun_query(sock, tb.stun, change_ip=True)
    assert ip_only is not None
    assert ip_only[1] == (tb.stun_alternate[0], tb.stun[1])


@pytest.mark.parametrize("host", ["pub1", "cone", "prc", "sym", "upnp1", "upnp2"])
def test_rfc5780_tests_tell_every_kind_apart(tb: NatTestbed, host: str) -> None:
    """CHANGE-REQUEST and the alternate address separate full cone, port-restricted, symmetric."""
    obs = observe(tb, host, port=41030, timeout=QUIET)
    assert obs.mapped is not None and obs.mapped[0] == tb.wan(host)
    assert (obs.mapping, obs.filtering) == EXPECTED[tb.host(host).kind]


# ---- processes and teardown


def test_popen_runs_in_the_host_and_teardown_stops_everything(
    nat_available: None, tmp_path: Path
) -> None:
    small = NatTestbed({"pub1": "public", "prc": "prc"}, turn=False)
    with small:
        proc = small.popen("prc", ["sleep", "600"])
        assert small.run("prc", ["pwd"], cwd=tmp_path).stdout.strip() == str(tmp_path)
        seen = small.run("prc", ["ip", "-o", "-4", "addr", "show", "eth0"], check=True).stdout
        assert small.addr("prc") in seen
        assert netns_id(proc.pid) == netns_id(small.namespaces["prc"])
        records = small.records()
        ns_ids = {netns_id(pid) for pid in small.namespaces.values()}
        assert proc.pid in {r.pid for r in records}
        assert any(r.label == "holder:outer" for r in records)
    assert proc.poll() is not None
    assert all(proc_start_time(r.pid) != r.start for r in records)
    left = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/net") in ns_ids:
                    left.append(entry)
            except OSError:
                continue
    assert left == []


def test_a_crashed_run_is_cleaned_up_by_the_next(nat_available: None, tmp_path: Path) -> None:
    base = tmp_path / "state"
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from a2al_mcp.testing.nat_testbed import NatTestbed\n"
        f"tb = NatTestbed({{'prc': 'prc'}}, turn=False, base=Path({str(base)!r}))\n"
        "tb.start()\n"
        "print(tb.state_dir, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    state = Path(out.stdout.strip())
    assert state.is_dir(), out.stderr
    records = read_records(state / "pids")
    assert [r.label for r in records][:2] == ["holder:outer", "holder:inet"]
    with NatTestbed({"pub1": "public"}, turn=False, base=base) as again:
        assert not state.exists()
        assert again.state_dir.parent == base
    assert not any(r.alive for r in records)
