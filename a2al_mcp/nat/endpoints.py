"""The endpoint URLs to publish (a2al-wire §3.6), from a :class:`NatView`. Pure.

Order: consensus addresses → STUN-reflected addresses → our bound address when it is a public
one → ``advertise_host`` (the user's ``fallback_host``) → the UPnP mapping; deduplicated and
at most ``max_urls``. The automatic sources keep only plausible WAN IPs; ``advertise_host`` is
taken as given (it is the only way to publish ``quic://127.0.0.1:…``).

Where this differs from a2ald, on purpose:

* A STUN answer is published with the port the server saw, not paired with the local port:
  our STUN requests leave from the shared socket, so behind an endpoint-independent mapping
  the mapped ``ip:port`` is the one every peer reaches; a port-preserving NAT makes both the
  same anyway.
* Behind a symmetric NAT (``nat_type`` 4) neither the consensus nor the STUN address is
  published (the view's :attr:`~NatView.external` is empty for that family): each mapping only
  works for the host it was made for, and ``<WAN IP>:<local port>`` maps to nothing (testbed
  D8). The list is then just the user's ``advertise_host`` and a UPnP mapping if any, often
  empty: the node publishes its record anyway, with nat_type 4, so it can still be resolved
  and mailed (the record carries its key). Hubs, and so hole punching and relays, are the
  next step (issue 18): until then such a node is reached only by mail.
"""

from __future__ import annotations

from .._types import Addr
from .addresses import is_plausible_wan
from .types import NatView

__all__ = ["endpoint_urls", "quic_url"]


def quic_url(host: str, port: int) -> str:
    """``quic://host:port``, IPv6 literals in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"quic://{host}:{port}"


def endpoint_urls(view: NatView, *, local_port: int, advertise_host: str | None = None,
                  max_urls: int = 8) -> tuple[str, ...]:  # fmt: skip
    """The ``quic://`` URLs to publish now; () when nothing is known (the caller decides)."""
    honest = set(view.external)
    auto: list[Addr] = [a for a in view.observed if a in honest]
    auto += [a for a in view.stun_reflected if a in honest]
    auto += [a for a in view.external if a not in auto]
    urls = [quic_url(h, p) for h, p in auto if is_plausible_wan(h) and 0 < p < 65536]
    if advertise_host:
        urls.append(quic_url(advertise_host, local_port))
    if view.upnp is not None and is_plausible_wan(view.upnp[0]) and view.upnp[1] > 0:
        urls.append(quic_url(*view.upnp))
    return tuple(dict.fromkeys(urls))[:max_urls]
