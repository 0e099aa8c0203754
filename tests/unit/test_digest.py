"""a2al_mcp._digest: the built-in SHA-256/SHA-512 give hashlib's digests (issue 15: the node
no longer loads OpenSSL's _hashlib for them)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from a2al_mcp import _digest


def test_the_digests_are_hashlibs() -> None:
    for n in (0, 1, 21, 32, 55, 56, 63, 64, 65, 127, 128, 1000):
        data = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
        assert _digest.sha256(data).digest() == hashlib.sha256(data).digest()
        assert _digest.sha512(data).digest() == hashlib.sha512(data).digest()


def test_aids_records_and_topics_hash_without_hashlib() -> None:
    """The identity and record modules hash through _digest: importing them and deriving an
    AID, its NodeID and a topic key loads no hashlib (so no _hashlib)."""
    code = (
        "import sys\n"
        "from a2al_mcp.identity.aid import Aid\n"
        "from a2al_mcp.protocol.payloads import topic_key\n"
        "import a2al_mcp.protocol.records\n"
        "aid = Aid.from_public_key(bytes(32)); aid.node_id; topic_key('x')\n"
        "print('hashlib' in sys.modules, '_hashlib' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
