"""The round-trip time a connection reports (issue 18): ``rtt_ms``, the live connection's
smoothed RTT from its QUIC stack, next to ``dial_s`` in ``status`` traversal paths and in the
``resolve`` and ``connect`` results, with either stack dialling. Loopback only; no timing is
asserted, only that the value is there and positive for a live connection."""

from __future__ import annotations

import pytest

from a2al_mcp.node.http import HttpRequest, HttpResponse
from a2al_mcp.toolspec import call_tool
from a2al_mcp.transport import peer
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio

STACKS = ["aioquic", "qh3"] if peer.QH3_AVAILABLE else ["aioquic"]


async def _hello(req: HttpRequest) -> HttpResponse:
    return HttpResponse(200, (("content-type", "text/plain"),), b"hello")


@pytest.mark.parametrize("stack", STACKS)
async def test_status_resolve_and_connect_report_the_live_rtt(
    stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peer, "DEFAULT_OUTBOUND_STACK", stack)
    monkeypatch.setattr(peer, "DEFAULT_INBOUND_STACK", stack)
    async with network(2, publish=True) as (a, b):
        a.serve(http=_hello)
        assert (await b.fetch(a.aid, "GET", "/")).status == 200
        [pc] = [c for c in b.connections() if c.is_dialer and c.peer_aid == a.aid]
        rtt_s = pc.smoothed_rtt_s()
        assert rtt_s is not None and rtt_s > 0

        got = await call_tool(b, "resolve", {"aid": str(a.aid)})
        connection = got["connection"]
        assert connection["path"] == "direct" and connection["dial_s"] >= 0
        assert connection["rtt_ms"] > 0
        got = await call_tool(b, "connect", {"aid": str(a.aid)})
        assert got["path"] == "direct" and got["rtt_ms"] > 0
        got = await call_tool(b, "status", {})
        [path] = got["traversal"]["paths"]
        assert path["aid"] == str(a.aid) and path["rtt_ms"] > 0 and "dial_s" in path
