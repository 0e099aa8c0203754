"""The NAT testbed's pure parts, without root: topology plan, links, rules, STUN codec, leases,
the process record and the a2ald config for a testbed host.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from a2al_mcp.testing.a2ald_config import render_config
from a2al_mcp.testing.nat_links import allowed_interfaces, namespace_scripts, veth_links
from a2al_mcp.testing.nat_netns import proc_start_time
from a2al_mcp.testing.nat_rules import nat_rules
from a2al_mcp.testing.nat_services import miniupnpd_config, parse_upnp_leases
from a2al_mcp.testing.nat_state import RunState, clean_stale_runs, read_records
from a2al_mcp.testing.nat_stun import MAGIC_COOKIE, binding_request, parse_binding_response
from a2al_mcp.testing.nat_topology import DEFAULT_HOSTS, plan_topology


def test_plan_addresses_follow_the_kinds() -> None:
    topo = plan_topology(DEFAULT_HOSTS)
    assert [(p.name, p.addr, p.public_addr) for p in topo.hosts] == [
        ("pub1", "203.0.113.11", "203.0.113.11"),
        ("pub2", "203.0.113.12", "203.0.113.12"),
        ("pub3", "203.0.113.13", "203.0.113.13"),
        ("cone", "10.4.0.2", "198.51.100.11"),
        ("prc", "10.5.0.2", "198.51.100.12"),
        ("sym", "10.6.0.2", "198.51.100.13"),
        ("upnp1", "10.7.0.2", "198.51.99.41"),
        ("upnp2", "10.8.0.2", "198.51.99.42"),
    ]
    assert topo.host("r-prc").name == "prc"
    with pytest.raises(KeyError):
        topo.host("nope")


@pytest.mark.parametrize(
    "hosts", [{"inet": "public"}, {"Bad": "public"}, {"x" * 13: "public"}, {"a": "fullcone"}]
)
def test_plan_refuses_bad_names_and_kinds(hosts: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        plan_topology(hosts)


def test_links_and_scripts_stay_inside_the_plan() -> None:
    topo = plan_topology({"pub1": "public", "prc": "prc"}, turn=True)
    assert veth_links(topo) == [
        ("inet", "p-turn", "turn", "eth0"),
        ("inet", "p-pub1", "pub1", "eth0"),
        ("inet", "w-prc", "r-prc", "wan0"),
        ("r-prc", "lan0", "prc", "eth0"),
    ]
    assert allowed_interfaces(topo)["inet"] == {
        "lo", "brpub", "brwan", "brwan2", "p-turn", "p-pub1", "w-prc",
    }  # fmt: skip
    scripts = namespace_scripts(topo)
    assert "default" not in scripts["inet"]  # the simulated internet has no way out
    assert "ip route add default via 10.2.0.1" in scripts["prc"]
    assert "ip route add default via 198.51.100.1" in scripts["r-prc"]
    assert "masquerade" in scripts["r-prc"] and 'iifname "wan0" ct state new' in scripts["r-prc"]


def test_rules_per_kind() -> None:
    cone = nat_rules("cone", wan="198.51.100.11", host="10.1.0.2")
    assert "ip daddr 198.51.100.11 meta l4proto udp counter dnat to 10.1.0.2" in cone
    assert "dnat" not in nat_rules("prc", wan="198.51.100.12", host="10.2.0.2")
    assert "masquerade fully-random" in nat_rules("sym", wan="198.51.100.13", host="10.3.0.2")
    upnp = nat_rules("upnp-igdv2", wan="198.51.99.41", host="10.4.0.2")
    assert "chain prerouting_miniupnpd" in upnp and "jump miniupnpd" in upnp
    for kind in ("cone", "prc", "sym", "upnp-igdv1"):
        assert "ct state new counter drop" in nat_rules(kind, wan="w", host="h")
    with pytest.raises(ValueError):
        nat_rules("full", wan="w", host="h")


def test_miniupnpd_config_flavours(tmp_path: Path) -> None:
    v1 = miniupnpd_config(lan_net="10.7.0.0/24", igdv1=True, index=1, state=tmp_path)
    v2 = miniupnpd_config(lan_net="10.7.0.0/24", igdv1=False, index=2, state=tmp_path)
    assert "force_igd_desc_v1=yes" in v1 and "force_igd_desc_v1=no" in v2
    assert "allow 1024-65535 10.7.0.0/24 1024-65535" in v1
    assert f"lease_file={tmp_path / 'leases'}" in v2


def test_lease_file_parsing() -> None:
    text = "UDP:4121:10.7.0.2:4121:1796300883:a2al: node\nbroken line\nTCP:x:1:2:3:d\n"
    [lease] = parse_upnp_leases(text)
    assert (lease.protocol, lease.external_port, lease.internal_addr) == ("UDP", 4121, "10.7.0.2")
    assert (lease.internal_port, lease.expires, lease.description) == (
        4121,
        1796300883,
        "a2al: node",
    )


def _attr(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value


def test_stun_codec() -> None:
    txid = bytes(range(12))
    plain = binding_request(txid)
    assert plain == struct.pack("!HHI12s", 1, 0, MAGIC_COOKIE, txid)
    change = binding_request(txid, change_ip=True, change_port=True)
    assert change[20:] == struct.pack("!HHI", 0x0003, 4, 0x06)
    xport = 4121 ^ (MAGIC_COOKIE >> 16)
    xaddr = int.from_bytes(bytes([198, 51, 100, 11]), "big") ^ MAGIC_COOKIE
    body = (
        _attr(0x0020, struct.pack("!BBHI", 0, 1, xport, xaddr))
        + _attr(0x802C, struct.pack("!BBH4B", 0, 1, 3479, 203, 0, 113, 4))
        + _attr(0x802B, struct.pack("!BBH4B", 0, 1, 3478, 203, 0, 113, 3))
    )
    msg = struct.pack("!HHI12s", 0x0101, len(body), MAGIC_COOKIE, txid) + body
    resp = parse_binding_response(msg)
    assert resp is not None
    assert resp.xor_mapped == ("198.51.100.11", 4121)
    assert resp.other == ("203.0.113.4", 3479)
    assert resp.response_origin == ("203.0.113.3", 3478)
    assert resp.mapped is None
    assert parse_binding_response(plain) is None  # a request is not a response


def test_a2ald_config_for_a_testbed_host() -> None:
    text = render_config(
        udp_port=4121,
        api_port=2121,
        bootstrap=["203.0.113.11:4121"],
        listen_host="0.0.0.0",
        fallback_host=None,
        min_observed_peers=None,
        stun_urls=["stun:203.0.113.3:3478"],
        turn_servers=[("turn:203.0.113.3:3478?transport=udp", "a2al", "testbed")],
        disable_upnp=False,
        signal_listen_addr="",
        disable_relay=False,
    )
    conf = tomllib.loads(text)
    assert conf["listen_addr"] == "0.0.0.0:4121"
    assert "fallback_host" not in conf and "min_observed_peers" not in conf
    assert conf["turn_servers"] == [
        {
            "url": "turn:203.0.113.3:3478?transport=udp",
            "credential_type": "static",
            "username": "a2al",
            "credential": "testbed",
        }
    ]
    assert (conf["disable_upnp"], conf["disable_relay"], conf["signal_listen_addr"]) == (
        False, False, "",
    )  # fmt: skip
    loopback = tomllib.loads(render_config(udp_port=1, api_port=2, bootstrap=[]))
    assert loopback["listen_addr"] == "127.0.0.1:1" and loopback["fallback_host"] == "127.0.0.1"


def test_stale_runs_are_stopped_by_pid_and_start_time(tmp_path: Path) -> None:
    """A run whose owner is gone has its recorded processes stopped; a live run is kept."""
    live = RunState(tmp_path)
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        live.record(sleeper.pid, "live-sleeper")
        dead_owner = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                    capture_output=True, text=True, check=True)  # fmt: skip
        stale = tmp_path / f"run-{dead_owner.stdout.strip()}-1-1"
        stale.mkdir()
        orphan = subprocess.Popen(["sleep", "600"])
        start = proc_start_time(orphan.pid)
        (stale / "pids").write_text(f"{orphan.pid} {start} orphan\n{os.getpid()} 1 reused-pid\n")
        assert [r.label for r in read_records(stale / "pids")] == ["orphan", "reused-pid"]
        assert clean_stale_runs(tmp_path) == ["orphan"]  # our own pid: other start time, spared
        assert orphan.wait(timeout=10) is not None
        assert not stale.exists() and live.dir.exists()
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
        live.remove()
