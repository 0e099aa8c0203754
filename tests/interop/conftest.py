"""Fixtures for interop tests against the reference daemon a2ald 0.3.5.

a2ald may only run inside a sealed network namespace (see ``a2al_mcp.testing.a2ald``).  When
that is not the case, or the binary is missing, the fixtures skip the tests -- or fail them
when ``A2AL_MCP_REQUIRE_INTEROP=1`` (set it in CI so interop coverage cannot silently vanish).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NoReturn

import pytest

from a2al_mcp.testing.a2ald import A2aldNetwork, A2aldPeer, NotSealedError, check_sealed, find_a2ald
from tests.unavailable import skip_or_fail

REQUIRE_ENV = "A2AL_MCP_REQUIRE_INTEROP"
HOW_TO_RUN = (
    "Interop tests must run inside a sealed network namespace: run `bash .ci/test` as root "
    "(it runs the suite inside `unshare -n`), or "
    "`unshare -n sh -c 'ip link set lo up && python -m pytest -m interop tests/interop'`; "
    "a2ald comes from `pip install a2al==0.3.5` (or set A2ALD_BIN)."
)


def _unavailable(reason: str) -> NoReturn:
    """Skip (or, with ``A2AL_MCP_REQUIRE_INTEROP=1``, fail) the requesting test."""
    skip_or_fail(REQUIRE_ENV, "interop tests", reason, HOW_TO_RUN)


@pytest.fixture(scope="session")
def sealed_netns() -> None:
    """Require that this process runs in a sealed network namespace."""
    try:
        check_sealed()
    except NotSealedError as exc:
        reason = str(exc)
    else:
        return
    _unavailable(reason)  # outside the except block: no chained traceback in the report


@pytest.fixture(scope="session")
def a2ald_available(sealed_netns: None) -> None:
    """Require a sealed namespace and the a2ald binary."""
    if find_a2ald() is None:
        _unavailable("a2ald binary not found (pip install a2al==0.3.5 or set A2ALD_BIN).")


@pytest.fixture(scope="session")
def a2ald_peer_count() -> int:
    """Number of a2ald peers in :func:`a2ald_net` (override this fixture to change it)."""
    return 4


@pytest.fixture(scope="session")
def a2ald_net(
    a2ald_available: None,
    a2ald_peer_count: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[A2aldNetwork]:
    """A started network of a2ald peers; peer 0 is the bootstrap of the others."""
    net = A2aldNetwork(a2ald_peer_count, base_dir=tmp_path_factory.mktemp("a2ald"))
    try:
        net.start()
        yield net
    finally:
        net.close()


@pytest.fixture
def a2ald(a2ald_net: A2aldNetwork) -> A2aldPeer:
    """The first peer of :func:`a2ald_net` (the bootstrap node)."""
    return a2ald_net.peers[0]
