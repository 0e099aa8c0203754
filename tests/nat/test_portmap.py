"""Port mapping against a real miniupnpd in the NAT testbed: IGDv1, IGDv2, PCP/NAT-PMP with
UPnP off, and a router with no mapping service at all.

Each test starts a child process inside a testbed host (``python tests/nat/test_portmap.py
SPEC``): it runs a :class:`~a2al_mcp.nat.portmap_service.PortMapper` over the real drivers,
echoes UDP on the mapped port, reports ``on_change`` and statistics as JSON lines and obeys
``stats``/``close`` on stdin. The test reads miniupnpd's own table (its lease file, and
``upnpc -l`` where UPnP is on) and sends a datagram from a public host to the mapped address.
Every packet stays inside the sealed testbed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

pytestmark = pytest.mark.nat

HOSTS = {
    "pub1": "public",
    "upnp1": "upnp-igdv1",
    "upnp2": "upnp-igdv2",
    "upnp3": "upnp-igdv1",  # UPnP blocked on its router: PCP / NAT-PMP only
    "prc": "prc",  # no mapping service on its router
}
ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0  # bound on every wait for the gateway (the steps take seconds)


# ------------------------------------------------------------------------ the child process


async def _child_main(spec: dict[str, Any]) -> None:
    import anyio

    from a2al_mcp.nat.pmp import PmpClient
    from a2al_mcp.nat.portmap import PortMapConfig
    from a2al_mcp.nat.portmap_client import FirstGateway, GatewayClient
    from a2al_mcp.nat.portmap_service import PortMapper
    from a2al_mcp.nat.upnp import UpnpClient

    def emit(**kw: Any) -> None:
        print(json.dumps(kw), flush=True)

    config = PortMapConfig(**spec["config"])
    clients: list[GatewayClient] = []
    if spec.get("upnp", True):
        clients.append(UpnpClient(config))
    clients.append(PmpClient(config, prefer=spec.get("prefer", "pcp")))
    port = int(spec["port"])
    mapper = PortMapper(
        config,
        port,
        FirstGateway(clients),
        on_change=lambda address: emit(event="change", address=address),
    )

    def stats() -> dict[str, Any]:
        return dataclasses.asdict(mapper.statistics())

    async with (
        await anyio.create_udp_socket(
            family=socket.AF_INET, local_host="0.0.0.0", local_port=port
        ) as sock,
        anyio.create_task_group() as tg,
    ):

        async def echo() -> None:
            async for data, (host, src_port) in sock:
                await sock.sendto(b"echo:" + data, host, src_port)

        tg.start_soon(echo)
        await tg.start(mapper.run)
        emit(event="started")
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if line.strip() == "stats":
                emit(event="stats", stats=stats())
                continue
            await mapper.aclose()
            emit(event="closed", stats=stats())
            tg.cancel_scope.cancel()
            return


# ------------------------------------------------------------------------- the test's side


class Child:
    """A mapper child process in a testbed host, spoken to in JSON lines."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.changes: list[Any] = []
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, out: IO[bytes] | None) -> None:
        assert out is not None
        for raw in out:
            with contextlib.suppress(ValueError):
                self.lines.put(json.loads(raw))

    def next(self, event: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                msg = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {event!r} from the child within {WAIT} s") from None
            if msg["event"] == "change":
                self.changes.append(msg["address"])
            if msg["event"] == event:
                return msg

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def stats(self) -> dict[str, Any]:
        self.send("stats")
        stats: dict[str, Any] = self.next("stats")["stats"]
        return stats

    def mapped(self) -> tuple[str, int]:
        address = self.next("change")["address"]
        assert address is not None
        return address[0], address[1]

    def close(self) -> dict[str, Any]:
        self.send("close")
        stats: dict[str, Any] = self.next("closed")["stats"]
        self.proc.wait(timeout=WAIT)
        return stats


@pytest.fixture(scope="module")
def tb(nat_available: None) -> Iterator[Any]:
    from a2al_mcp.testing.nat_testbed import NatTestbed

    with NatTestbed(HOSTS, turn=False) as testbed:
        # upnp3's router: UPnP off (SSDP and the description/SOAP port dropped on the LAN
        # side), NAT-PMP/PCP on UDP 5351 left as it is.
        testbed.run(
            testbed.router("upnp3"),
            ["nft", "-f", "-"],
            check=True,
            input=(
                "table inet noupnp {\n"
                "  chain input { type filter hook input priority -10; policy accept;\n"
                "    iifname lan0 udp dport 1900 drop\n"
                "    iifname lan0 tcp dport 5000 drop\n"
                "  }\n"
                "}\n"
            ),
        )
        yield testbed


@pytest.fixture
def start(tb: Any, tmp_path: Path) -> Iterator[Callable[..., Child]]:
    children: list[Child] = []

    def start_child(host: str, port: int, **spec: Any) -> Child:
        spec = {"port": port, **spec}
        spec.setdefault("config", {})
        stderr = open(tmp_path / f"{host}-{port}.stderr", "wb")  # noqa: SIM115 - kept by Popen
        proc = tb.popen(
            host,
            [sys.executable, str(Path(__file__).resolve()), json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=str(ROOT),
        )
        stderr.close()
        child = Child(proc)
        children.append(child)
        child.next("started")
        return child

    yield start_child
    for child in children:
        if child.proc.poll() is None:
            child.proc.kill()
        child.proc.wait(timeout=WAIT)
        for pipe in (child.proc.stdin, child.proc.stdout):
            if pipe is not None:
                pipe.close()
    for path in sorted(tmp_path.glob("*.stderr")):
        text = path.read_text(errors="replace").strip()
        if text:
            print(f"--- {path.name}\n{text}")


def leases(tb: Any, host: str, port: int) -> list[Any]:
    return [m for m in tb.upnp_mappings(host) if m.external_port == port]


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {WAIT} s: {what}")


def echo_from_public(tb: Any, address: tuple[str, int]) -> bytes:
    """Send a datagram from pub1 to ``address``; return the answer."""
    with tb.netns("pub1"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.bind((tb.addr("pub1"), 0))
        sock.settimeout(5.0)
        sock.sendto(b"hello", address)
        data, source = sock.recvfrom(2048)
    assert source == address
    return data


def upnpc_list(tb: Any, host: str) -> str:
    out: str = tb.run(host, ["upnpc", "-l"], check=True).stdout
    return out


# ------------------------------------------------------------------------------------ tests


def test_igdv1_mapping_appears_is_renewed_and_deleted_on_close(tb: Any, start: Any) -> None:
    port = 40121
    child = start("upnp1", port, config={"lease_s": 6, "min_renew_s": 1.0})
    address = child.mapped()
    assert address == (tb.wan("upnp1"), port)

    (lease,) = wait_for(lambda: leases(tb, "upnp1", port), "miniupnpd holds the mapping")
    assert (lease.protocol, lease.internal_addr, lease.internal_port) == (
        "UDP",
        tb.addr("upnp1"),
        port,
    )
    assert lease.description == "a2al-quic"
    assert f"UDP {port}->{tb.addr('upnp1')}:{port}" in upnpc_list(tb, "upnp1")
    # Reachable from the public side through the mapping (miniupnpd's DNAT).
    assert echo_from_public(tb, address) == b"echo:hello"

    # Renewal at half of the 6 s lease: the same mapping, a later expiry.
    wait_for(lambda: child.stats()["mapping"]["renewals"] >= 1, "a renewal")
    (renewed,) = wait_for(
        lambda: [m for m in leases(tb, "upnp1", port) if m.expires > lease.expires],
        "miniupnpd's lease moved forward",
    )
    assert renewed.internal_port == port
    assert child.stats()["protocol"] == "upnp"

    stats = child.close()
    assert stats["mapping"]["state"] == "closed"
    assert stats["mapping"]["deletions"] == 1
    assert leases(tb, "upnp1", port) == []
    assert f"UDP {port}->" not in upnpc_list(tb, "upnp1")
    assert child.changes == [list(address), None]


def test_igdv2_only_gateway_is_mapped(tb: Any, start: Any) -> None:
    # The gateway describes WANIPConnection:2 only: the case a2ald (goupnp, v1) misses.
    url = tb.upnp_url("upnp2")
    fetch = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=5).read().decode())"
    desc = tb.run("upnp2", [sys.executable, "-c", fetch], check=True).stdout
    assert "urn:schemas-upnp-org:service:WANIPConnection:2" in desc
    assert "WANIPConnection:1" not in desc

    port = 40122
    child = start("upnp2", port)
    address = child.mapped()
    assert address == (tb.wan("upnp2"), port)
    assert child.stats()["protocol"] == "upnp"
    (lease,) = wait_for(lambda: leases(tb, "upnp2", port), "miniupnpd (IGDv2) holds it")
    assert lease.internal_addr == tb.addr("upnp2")
    assert echo_from_public(tb, address) == b"echo:hello"
    child.close()
    assert leases(tb, "upnp2", port) == []


@pytest.mark.parametrize("prefer", ["pcp", "nat-pmp"])
def test_pcp_or_natpmp_maps_when_upnp_is_off(tb: Any, start: Any, prefer: str) -> None:
    port = 40123 if prefer == "pcp" else 40124
    child = start("upnp3", port, prefer=prefer, config={"discovery_timeout_s": 1.0})
    address = child.mapped()
    assert address == (tb.wan("upnp3"), port)
    stats = child.stats()
    assert stats["protocol"] == prefer
    assert stats["mapping"]["gateway"] == f"{prefer}:{tb.host('upnp3').gateway}"
    assert wait_for(lambda: leases(tb, "upnp3", port), "miniupnpd holds the PCP/NAT-PMP mapping")
    assert echo_from_public(tb, address) == b"echo:hello"
    child.close()
    wait_for(lambda: not leases(tb, "upnp3", port), "the mapping deleted on close")


def test_back_off_when_no_gateway_answers(tb: Any, start: Any) -> None:
    config = {
        "discovery_timeout_s": 1.0,
        "pmp_tries": 2,
        "backoff_initial_s": 0.5,
        "backoff_max_s": 1.0,
    }
    child = start("prc", 40125, config=config)
    stats = wait_for(
        lambda: (s := child.stats())["mapping"]["failure_streak"] >= 3 and s,
        "three failed attempts in a row",
    )
    assert stats["running"]
    assert stats["mapping"]["state"] in ("backoff", "discovering")
    assert stats["mapping"]["address"] is None
    assert stats["driver_errors"] >= 3
    # Both protocols were tried: UPnP found nobody, PCP was refused by the router.
    assert "UPnP" in stats["mapping"]["last_error"]
    assert "5351" in stats["mapping"]["last_error"]
    assert child.close()["mapping"]["state"] == "closed"
    assert child.changes == []


if __name__ == "__main__":
    import anyio

    anyio.run(_child_main, json.loads(sys.argv[1]))
