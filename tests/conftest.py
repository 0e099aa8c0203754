"""Shared fixtures: the anyio backend, the wire vectors and the captured a2ald datagrams.

This file is also loaded by the suites that run in their own virtual environments
(``tests/mcp1``, ``tests/crewai``): import nothing here beyond pytest and ``a2al_mcp``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from a2al_mcp.identity import Identity, SigningKey

VECTORS = Path(__file__).parent / "vectors"


def load_vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / "wire-vectors.json").read_text())
    return data


def load_captures(kind: str = "dht") -> list[dict[str, Any]]:
    lines = (VECTORS / "a2ald-0.3.5-udp-datagrams.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [r for r in rows if r["kind"] == kind]


@pytest.fixture
def anyio_backend() -> str:
    """Every ``@pytest.mark.anyio`` test runs on asyncio (no test venv installs trio)."""
    return "asyncio"


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    return load_vectors()


@pytest.fixture(scope="session")
def key_a(vectors: dict[str, Any]) -> SigningKey:
    return SigningKey(bytes.fromhex(vectors["seed_a"]))


@pytest.fixture(scope="session")
def key_b(vectors: dict[str, Any]) -> SigningKey:
    return SigningKey(bytes.fromhex(vectors["seed_b"]))


@pytest.fixture(scope="session")
def ident_a(key_a: SigningKey) -> Identity:
    return Identity.from_key(key_a)


@pytest.fixture(scope="session")
def ident_b(key_b: SigningKey) -> Identity:
    return Identity.from_key(key_b)
