"""Daemons in testbed hosts: a2ald through :class:`A2aldPeer`'s testbed launch, our own node
through ``tb.popen``; and the launch refusing to start anything when it cannot prove the seal.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from a2al_mcp.testing.a2ald import A2aldPeer, NotSealedError, poll_until
from a2al_mcp.testing.nat_testbed import NatTestbed


class _UnsealedLaunch:
    """A launch whose containment proof fails: nothing may be started."""

    listen_host = "203.0.113.99"
    config: Mapping[str, Any] = {}

    def __init__(self) -> None:
        self.started: list[Sequence[str]] = []

    def prove_sealed(self) -> None:
        raise NotSealedError(["test: the outer namespace has eth0"])

    def popen(
        self, argv: Sequence[str], *, stdout: IO[Any], env: Mapping[str, str], cwd: Path, label: str
    ) -> subprocess.Popen[bytes]:
        self.started.append(argv)
        raise AssertionError("popen called although the seal was not proved")

    def client_context(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


def test_a_launch_that_cannot_prove_its_seal_starts_nothing(tmp_path: Path) -> None:
    launch = _UnsealedLaunch()
    peer = A2aldPeer(tmp_path / "peer", binary=Path(sys.executable), launch=launch)
    with pytest.raises(NotSealedError, match="eth0"):
        peer.start()
    assert launch.started == []
    assert not peer.running
    assert peer.listen_addr == f"203.0.113.99:{peer.udp_port}"


@pytest.fixture(scope="module")
def small_tb(nat_available: None) -> Iterator[NatTestbed]:
    with NatTestbed({"pub1": "public", "prc": "prc"}) as testbed:
        yield testbed


@pytest.mark.nat
def test_a2ald_on_a_public_host_and_our_node_behind_a_nat(
    small_tb: NatTestbed, a2ald_binary: None, tmp_path: Path
) -> None:
    tb = small_tb
    peer = A2aldPeer(
        tmp_path / "a2ald", udp_port=4121, api_port=2121, launch=tb.a2ald_launch("pub1")
    )
    assert peer.listen_addr == "203.0.113.11:4121"
    node_dir = tmp_path / "node"
    try:
        peer.start()
        peer.wait_ready(20, require_peers=False)  # REST through pub1's namespace
        config = (tmp_path / "a2ald" / "config.toml").read_text()
        assert 'listen_addr = "0.0.0.0:4121"' in config
        assert 'ice_stun_urls = ["stun:203.0.113.3:3478"]' in config
        with open(tmp_path / "node.log", "wb") as log:
            node = tb.popen(
                "prc",
                [
                    sys.executable, "-m", "a2al_mcp", "node", "run", "--stay",
                    "--data-dir", str(node_dir), "--listen", "0.0.0.0:4121",
                    "--bootstrap", peer.listen_addr,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        # the node's CLI reaches it through the Unix socket in its data dir (any namespace)
        status = poll_until(
            lambda: subprocess.run(
                [sys.executable, "-m", "a2al_mcp", "node", "status", "--data-dir", str(node_dir)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ),
            lambda r: r.returncode == 0,
            timeout=30,
            interval=0.2,
            what="our node's status",
        )
        assert json.loads(status.stdout)["pid"] == node.pid
        # a2ald on the public side learns our node, seen from the NAT's WAN address
        poll_until(peer.status, lambda s: int(s["dht_peers"]) >= 1, timeout=20, what="a2ald peer")
        conntrack = tb.run("r-prc", ["conntrack", "-L", "-p", "udp"], check=True).stdout
        assert f"src={tb.addr('prc')} dst=203.0.113.11 sport=4121 dport=4121" in conntrack
        assert f"dst={tb.wan('prc')} sport=4121 dport=4121" in conntrack
    finally:
        peer.stop()
