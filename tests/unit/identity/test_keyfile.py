"""identity/keyfile.py: a passphrase export opens again, and an export from anyone (a user
pastes what they were sent) is refused with a DecodeError before it can cost anything: at
45ad18d hostile exports raised AttributeError, RecursionError, OverflowError or ValueError
(INTERNAL in the identity_import tool) and scrypt parameters up to n=2^20, r=32, p=16 (4 GiB)
were run."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from a2al_mcp._random import SeededRng
from a2al_mcp.errors import DecodeError, UsageError, VerificationError
from a2al_mcp.identity import DelegatedIdentity, Identity, keyfile

T0 = 1_700_000_000
FORMAT = "a2al-mcp-identity-1"
PASS = "correct horse"
MEMORY_MAX = 64 * 2**20
"""The documented bounds (keyfile.SCRYPT_MEMORY_MAX, SCRYPT_WORK_MAX, EXPORT_MAX_CHARS)."""
WORK_MAX = 2 * 2**15 * 8
TEXT_MAX = 16 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _craft(inner: bytes, *, n: int = 2, r: int = 1, p: int = 1, **fields: Any) -> str:
    """An export sealed under PASS with cheap scrypt, as anyone can make one."""
    salt, nonce = bytes(16), bytes(12)
    key = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(PASS.encode())
    ct = AESGCM(key).encrypt(nonce, inner, FORMAT.encode())
    doc: dict[str, Any] = {"format": FORMAT, "kdf": "scrypt", "n": n, "r": r, "p": p,
                           "salt": _b64(salt), "nonce": _b64(nonce),
                           "ciphertext": _b64(ct)}  # fmt: skip
    doc.update(fields)
    return json.dumps(doc)


@pytest.fixture(scope="module")
def agent() -> Identity:
    return DelegatedIdentity.generate(SeededRng(1), issued_at=T0).identity


@pytest.fixture(scope="module")
def exported(agent: Identity) -> str:
    return keyfile.export_identity(agent, PASS, rng=SeededRng(2))


def test_round_trip_within_the_bounds(agent: Identity, exported: str) -> None:
    doc = json.loads(exported)
    assert (doc["n"], doc["r"], doc["p"]) == (2**15, 8, 1)
    assert 128 * doc["n"] * doc["r"] <= MEMORY_MAX and doc["n"] * doc["r"] * doc["p"] <= WORK_MAX
    assert len(exported) < TEXT_MAX // 8
    back = keyfile.import_identity(exported, PASS, now=T0)
    assert back.aid == agent.aid and back.key.seed == agent.key.seed
    with pytest.raises(VerificationError):
        keyfile.import_identity(exported, PASS + "x", now=T0)


def _with(exported: str, **fields: Any) -> str:
    doc = json.loads(exported)
    doc.update(fields)
    return json.dumps(doc)


HOSTILE: dict[str, Any] = {
    "list": "[]",
    "int": "1",
    "null": "null",
    "deep": "[" * 10_000,
    "too-long": " " * (TEXT_MAX + 1),
    "n-float": {"n": 32768.0},
    "n-bool": {"n": True},
    "n-text": {"n": "32768"},
    "n-3": {"n": 3},
    "n-0": {"n": 0},
    "r-0": {"r": 0},
    "p-3": {"p": 3},
    "p-0": {"p": 0},
    "memory-128MiB": {"n": 2**17, "r": 8},
    "memory-4GiB": {"n": 2**20, "r": 32, "p": 16},
    "work-p2-at-64MiB": {"n": 2**16, "r": 8, "p": 2},
    "empty-nonce": {"nonce": ""},
    "long-nonce": {"nonce": _b64(bytes(64))},
    "salt-not-b64": {"salt": "@@@@"},
    "salt-not-text": {"salt": 5},
    "salt-non-ascii": {"salt": "é"},
    "ciphertext-short": {"ciphertext": _b64(bytes(8))},
    "ciphertext-huge": {"ciphertext": _b64(bytes(8000))},
    "wrong-format": {"format": "x"},
    "wrong-kdf": {"kdf": "argon2"},
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_malformed_or_costly_exports_are_decode_errors_before_any_kdf(
    case: str, exported: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    change = HOSTILE[case]
    blob = change if isinstance(change, str) else _with(exported, **change)

    def no_kdf(*args: Any) -> bytes:
        raise AssertionError(f"scrypt ran for {case}")

    monkeypatch.setattr(keyfile, "_key", no_kdf)
    with pytest.raises(DecodeError, match="not an a2al-mcp identity export"):
        keyfile.import_identity(blob, PASS, now=T0)


@pytest.mark.parametrize(
    "inner",
    [b"[]", b"\xff\xfe", b"{}", b'{"seed": 5}', b'{"seed": "zz"}', b'{"seed": "00"}',
     b'{"seed": "' + b"00" * 32 + b'", "delegation_proof": 7}',
     b'{"seed": "' + b"00" * 32 + b'", "delegation_proof": "a0"}', b"[" * 3000],
    ids=["list", "not-utf8", "no-seed", "seed-int", "seed-not-hex", "seed-short",
         "proof-int", "proof-junk", "deep"],
)  # fmt: skip
def test_junk_sealed_under_the_right_passphrase_is_a_decode_error(inner: bytes) -> None:
    with pytest.raises(DecodeError):
        keyfile.import_identity(_craft(inner), PASS, now=T0)


def test_a_passphrase_that_is_not_unicode_is_a_usage_error(exported: str, agent: Identity) -> None:
    with pytest.raises(UsageError, match="lone surrogate"):
        keyfile.import_identity(exported, "\ud800passphrase", now=T0)
    with pytest.raises(UsageError, match="lone surrogate"):
        keyfile.export_identity(agent, "\ud800passphrase", rng=SeededRng(3))
