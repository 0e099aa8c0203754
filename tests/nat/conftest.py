"""Fixtures for the NAT testbed tests (:mod:`a2al_mcp.testing.nat_testbed`).

The testbed needs root, ``unshare``/``nsenter``, ``ip``, ``nft``, ``conntrack``, coturn and
miniupnpd.  Without them the tests skip -- or fail when ``A2AL_MCP_REQUIRE_NAT=1`` (CI sets it,
so NAT coverage cannot silently vanish).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import NoReturn

import pytest

from a2al_mcp.testing.a2ald import find_a2ald
from a2al_mcp.testing.nat_testbed import NatTestbed, missing_requirements
from tests.unavailable import skip_or_fail

REQUIRE_ENV = "A2AL_MCP_REQUIRE_NAT"
HOW_TO_RUN = (
    "The NAT testbed needs root and the Debian packages nftables miniupnpd miniupnpc coturn "
    "conntrack iproute2 util-linux (see .ci/run); run `bash .ci/test tests/nat` as root."
)


def _unavailable(reason: str) -> NoReturn:
    """Skip (or, with ``A2AL_MCP_REQUIRE_NAT=1``, fail) the requesting test."""
    skip_or_fail(REQUIRE_ENV, "the NAT tests", reason, HOW_TO_RUN)


@pytest.fixture(scope="session")
def nat_available() -> None:
    """Require what the testbed needs (root and the tools, upnpc included)."""
    missing = missing_requirements()
    if shutil.which("upnpc") is None:
        missing.append("upnpc (not on PATH)")
    if missing:
        _unavailable("missing: " + ", ".join(missing))


@pytest.fixture(scope="module")
def tb(nat_available: None) -> Iterator[NatTestbed]:
    """One testbed with every host kind (the default topology) for a whole test module."""
    with NatTestbed() as testbed:
        yield testbed


@pytest.fixture(scope="session")
def a2ald_binary(nat_available: None) -> None:
    """Require the reference daemon (``pip install a2al==0.3.5``, part of the test extra)."""
    if find_a2ald() is None:
        _unavailable("a2ald binary not found (pip install a2al==0.3.5 or set A2ALD_BIN).")
