"""a2ald REST calls the NAT interop tests share: an agent with a topic, mailbox send and poll.

Shapes as observed on a2ald 0.3.5 (tests/interop use the same calls on loopback).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from a2al_mcp.testing.a2ald import A2aldApiError, A2aldPeer, poll_until

__all__ = ["A2aldAgent", "mailbox_poll", "mailbox_send", "make_agent", "stopping"]


class A2aldAgent:
    """A delegated agent a2ald serves: its AID (text) and the topic it registered."""

    def __init__(self, peer: A2aldPeer, aid: str, topic: str) -> None:
        self.peer = peer
        self.aid = aid
        self.topic = topic


def make_agent(
    peer: A2aldPeer,
    topic: str,
    *,
    service_tcp: str | None = None,
    timeout: float = 30,
    published: bool = True,
) -> A2aldAgent:
    """A new agent on ``peer``, registered under ``topic`` and published. a2ald refuses the
    publish (HTTP 500) until it knows an address to put in the record: polled, unless not
    ``published`` (a2ald that can never publish: the publish is asked for once)."""
    gen = peer.identity_generate()
    aid = gen["aid"]
    peer.register_agent(gen["operational_private_key_hex"], gen["delegation_proof_hex"],
                        service_tcp=service_tcp)  # fmt: skip
    peer.register_services(aid, [topic], name=f"{peer.name}", protocols=["mcp"], ttl=600)
    if not published:
        with contextlib.suppress(A2aldApiError):
            peer.publish_agent(aid)
        return A2aldAgent(peer, aid, topic)
    poll_until(lambda: peer.publish_agent(aid), lambda r: bool(r.get("ok")), timeout=timeout,
               interval=0.3, what=f"{peer.name} publishing its agent")  # fmt: skip
    return A2aldAgent(peer, aid, topic)


def mailbox_send(peer: A2aldPeer, sender: str, recipient: str, body: bytes) -> dict[str, Any]:
    """``POST /agents/{sender}/mailbox/send`` (msg_type 3: a plain note)."""
    got: dict[str, Any] = peer.post(f"/agents/{sender}/mailbox/send", {
        "recipient": recipient, "msg_type": 3, "body_base64": base64.b64encode(body).decode(),
    })  # fmt: skip
    return got


def mailbox_poll(peer: A2aldPeer, aid: str) -> list[tuple[str, bytes]]:
    """``POST /agents/{aid}/mailbox/poll``: the notes as ``(sender, body)``."""
    got = peer.post(f"/agents/{aid}/mailbox/poll", {})
    return [(m["sender"], base64.b64decode(m["body_base64"])) for m in got.get("messages", [])]


@contextlib.contextmanager
def stopping(peers: Sequence[A2aldPeer]) -> Iterator[None]:
    """Stop every peer on exit: SIGTERM to all first (a2ald takes ~3 s to exit), then wait."""
    try:
        yield
    finally:
        for peer in peers:
            peer.terminate()
        for peer in peers:
            peer.stop()
