"""The node's endpoint URLs from a NAT view (node/nat_service.endpoint_urls): §3.6's list
first, a specific bound address only when nothing else is known, and a USAGE error that says
why and what to do when a wildcard-bound node knows nothing yet."""

from __future__ import annotations

import pytest

from a2al_mcp.errors import UsageError
from a2al_mcp.nat.types import NatType, NatView
from a2al_mcp.node.nat_service import endpoint_urls

WAN = ("198.51.100.11", 4121)


def test_the_network_address_comes_first_and_no_private_address_beside_it() -> None:
    view = NatView(nat_type=NatType.PORT_RESTRICTED, external=(WAN,), observed=(WAN,))
    assert endpoint_urls(view, ("10.1.0.2", 4121)) == ("quic://198.51.100.11:4121",)
    assert endpoint_urls(view, ("0.0.0.0", 4121), "a2al.example.org") == (
        "quic://198.51.100.11:4121",
        "quic://a2al.example.org:4121",
    )


def test_a_specific_bind_is_published_when_nothing_else_is_known() -> None:
    assert endpoint_urls(NatView(), ("127.0.0.1", 5000)) == ("quic://127.0.0.1:5000",)
    assert endpoint_urls(NatView(), ("::1", 5000)) == ("quic://[::1]:5000",)
    assert endpoint_urls(NatView(), ("127.0.0.1", 5000), "192.0.2.7") == ("quic://192.0.2.7:5000",)


def test_a_gateway_mapping_is_published() -> None:
    view = NatView(nat_type=NatType.PORT_RESTRICTED, upnp=("198.51.99.41", 4122))
    assert endpoint_urls(view, ("0.0.0.0", 4121)) == ("quic://198.51.99.41:4122",)


def test_behind_a_symmetric_nat_the_record_may_carry_no_address() -> None:
    view = NatView(nat_type=NatType.SYMMETRIC, external_ips=("198.51.100.13",))
    assert endpoint_urls(view, ("0.0.0.0", 4121)) == ()


def test_a_wildcard_bind_that_knows_nothing_says_why_and_what_to_do() -> None:
    for bind in (("0.0.0.0", 4121), ("::", 4121)):
        with pytest.raises(UsageError) as err:
            endpoint_urls(NatView(), bind)
        text = str(err.value)
        assert "wildcard" in text and "no peer or STUN server has told it" in text
        assert "nat.stun_servers" in text and "--advertise" in text
