"""What a node process loads before it needs it (issue 15: start-up time and idle RSS).

A DHT-only process (the start → first resolve of ``bench_dht_vs_a2ald``) imports the node,
opens it, joins and resolves. None of that needs the QUIC certificates (cryptography's x509,
which brings email, calendar and locale), HTTP (h11), tunnels, the port-mapping clients
(PCP, NAT-PMP, UPnP) when ``nat.upnp`` is off, the identity export (scrypt), the MCP SDK or
the QUIC stacks' TLS: they load with their first use. Each check runs in a fresh interpreter,
since this one has imported everything already. Only loopback addresses are used.
"""

from __future__ import annotations

import ast
import subprocess
import sys

_LATER = (
    "cryptography.x509",
    "email",
    "calendar",
    "h11",
    "a2al_mcp.node.http",
    "a2al_mcp.node.tunnel",
    "a2al_mcp.nat.portmap_service",
    "a2al_mcp.nat.pmp",
    "a2al_mcp.nat.upnp",
    "a2al_mcp.identity.keyfile",
    "cryptography.hazmat.primitives.kdf.scrypt",
    "shutil",
    "mcp",
    "pydantic",
    "aioquic.tls",
    "qh3",
    "a2al_mcp.transport.tls",
    "a2al_mcp.transport.tls_qh3",
)


def _loaded_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter, then list which of ``_LATER`` it loaded that an
    empty interpreter of the same environment does not (the simulated-OS runs of .ci/run
    bring a sitecustomize that loads some of them before any code of ours)."""

    def run(source: str) -> set[str]:
        probe = f"{source}\nimport sys\nprint(sorted(m for m in {_LATER!r} if m in sys.modules))\n"
        out = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
        )
        return set(ast.literal_eval(out.stdout.strip().splitlines()[-1]))

    return sorted(run(code) - run("pass"))


def test_importing_the_node_loads_none_of_the_later_modules() -> None:
    code = "from a2al_mcp import Aid, NodeConfig\nfrom a2al_mcp.node import Node"
    assert _loaded_after(code) == []


def test_a_node_that_joined_and_resolved_has_loaded_none_of_them() -> None:
    code = """
import anyio
from a2al_mcp import NodeConfig
from a2al_mcp.node import Node

async def main() -> None:
    async with Node(NodeConfig(listen_addr="127.0.0.1:0")) as seed:
        await seed.publish()
        addr = f"127.0.0.1:{seed.local_addr[1]}"
        async with Node(NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(addr,))) as node:
            found = await node.resolve(seed.aid)
            assert found.aid == seed.aid, found

anyio.run(main)
"""
    assert _loaded_after(code) == []


def test_the_port_mapping_and_certificates_still_load_when_used() -> None:
    """The deferred modules are there when asked for: a certificate built on first use, the
    NAT package's names resolved on access."""
    code = """
from a2al_mcp import nat
from a2al_mcp.identity import Identity
from a2al_mcp._random import SeededRng
from a2al_mcp.transport.certificates import LocalCertificate
assert nat.PortMapper.__name__ == "PortMapper"
ident = Identity.generate(SeededRng(1))
local = LocalCertificate.create(ident, now=1_700_000_000, rng=SeededRng(2))
assert local.certificate.serial_number > 0
"""
    assert {"cryptography.x509", "a2al_mcp.nat.portmap_service"} <= set(_loaded_after(code))


def test_a_certificate_built_on_first_use_is_the_one_made_at_once() -> None:
    """LocalCertificate.create draws the serial and reads the time at once and builds later:
    the DER is what make_certificate gives for the same draw, delegated identities too."""
    from cryptography.hazmat.primitives import serialization

    from a2al_mcp._random import SeededRng
    from a2al_mcp.identity import DelegatedIdentity, Identity
    from a2al_mcp.transport.certificates import LocalCertificate, make_certificate

    der = serialization.Encoding.DER
    node = Identity.generate(SeededRng(1))
    agent = DelegatedIdentity.generate(SeededRng(3), issued_at=1_699_000_000).identity
    for ident in (node, agent):
        local = LocalCertificate.create(ident, now=1_700_000_000.7, rng=SeededRng(2))
        cert, key = make_certificate(ident, now=1_700_000_000.7, rng=SeededRng(2))
        assert local.certificate.public_bytes(der) == cert.public_bytes(der)
        assert local.private_key.private_bytes_raw() == key.private_bytes_raw()
        assert local.certificate is local.certificate  # built once


def test_a_local_certificate_needs_a_certificate_and_key_or_a_serial() -> None:
    import pytest

    from a2al_mcp._random import SeededRng
    from a2al_mcp.errors import UsageError
    from a2al_mcp.identity import Identity
    from a2al_mcp.transport.certificates import LocalCertificate, make_certificate

    ident = Identity.generate(SeededRng(1))
    cert, key = make_certificate(ident, now=1_700_000_000, rng=SeededRng(2))
    assert LocalCertificate(ident, cert, key).certificate is cert
    with pytest.raises(UsageError):
        LocalCertificate(ident, cert)
    with pytest.raises(UsageError):
        LocalCertificate(ident)


def test_an_inbox_in_memory_answers_before_and_after_its_first_note() -> None:
    """Without a data directory the inbox's database is built with the first note: before
    it, purge, count and read answer for an empty inbox; after it, as always."""
    from a2al_mcp._random import SeededRng
    from a2al_mcp.identity import Identity
    from a2al_mcp.node.inbox import AddResult, Inbox, Note

    me, peer = (Identity.generate(SeededRng(i)).aid for i in (1, 2))
    inbox = Inbox(None)
    assert not inbox.read_only
    assert inbox.purge(1_700_000_000.0, 60.0) == (0, 0)
    assert inbox.count(me) == 0
    assert inbox.read(me, now=1_700_000_000.0) == []
    note = Note(msg_id=b"\x01" * 32, recipient=me, sender=peer, msg_type=3, body=b"hi",
                sent_at=1_700_000_000, received_at=1_700_000_000.0, via="direct")  # fmt: skip
    assert inbox.add(note) is AddResult.STORED
    assert inbox.add(note) is AddResult.DUPLICATE
    assert inbox.usage().notes == 1
    assert [n.body for n in inbox.read(me, now=1_700_000_001.0)] == [b"hi"]
    assert inbox.count(me, unread_only=False) == 1
    inbox.close()
