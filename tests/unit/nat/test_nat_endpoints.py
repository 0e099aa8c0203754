"""endpoint_urls: a2al-wire §3.6 order, the plausible-WAN filter, dedupe, bounds, honesty."""

from __future__ import annotations

import pytest

from a2al_mcp.nat import NatType, NatView, endpoint_urls, is_plausible_wan, quic_url


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.1.1",
     "100.64.0.1", "100.127.255.254", "224.0.0.1", "255.255.255.255", "::", "::1", "fe80::1",
     "fd00::1", "ff02::1", "2001:0:4136:e378::1", "2002:c000:204::1", "::ffff:10.0.0.1",
     "example.org", ""],
)  # fmt: skip
def test_not_plausible_wan(host: str) -> None:
    assert not is_plausible_wan(host)


@pytest.mark.parametrize(
    "host",
    ["198.51.100.21", "203.0.113.3", "192.0.2.1", "8.8.8.8", "100.63.255.255", "100.128.0.1",
     "2001:db8::1", "2606:4700::1", "::ffff:198.51.100.21"],
)  # fmt: skip
def test_plausible_wan_includes_the_testbeds_documentation_ranges(host: str) -> None:
    assert is_plausible_wan(host)


def test_order_consensus_stun_bound_advertise_upnp() -> None:
    view = NatView(
        nat_type=NatType.PORT_RESTRICTED,
        observed=(("198.51.100.21", 4121), ("2001:db8::7", 4121)),
        stun_reflected=(("198.51.100.21", 4121), ("198.51.100.99", 4000)),
        external=(("198.51.100.21", 4121), ("198.51.100.99", 4000), ("2001:db8::7", 4121)),
        upnp=("198.51.99.41", 4122),
    )
    assert endpoint_urls(view, local_port=4121, advertise_host="a2al.example.org") == (
        "quic://198.51.100.21:4121",
        "quic://[2001:db8::7]:4121",
        "quic://198.51.100.99:4000",
        "quic://a2al.example.org:4121",
        "quic://198.51.99.41:4122",
    )


def test_public_bind_comes_after_consensus_and_stun() -> None:
    view = NatView(nat_type=NatType.FULL_CONE, public=True, external=(("203.0.113.11", 4121),),
                   observed=(("203.0.113.11", 4121),))  # fmt: skip
    assert endpoint_urls(view, local_port=4121) == ("quic://203.0.113.11:4121",)


def test_automatic_sources_are_filtered_advertise_is_not() -> None:
    view = NatView(nat_type=NatType.FULL_CONE, observed=(("127.0.0.1", 4121),),
                   external=(("127.0.0.1", 4121), ("10.0.0.2", 4121)),
                   upnp=("192.168.0.1", 4121))  # fmt: skip
    assert endpoint_urls(view, local_port=4121) == ()
    assert endpoint_urls(view, local_port=4121, advertise_host="127.0.0.1") == (
        "quic://127.0.0.1:4121",)  # fmt: skip
    assert endpoint_urls(view, local_port=4121, advertise_host="::1") == ("quic://[::1]:4121",)


def test_symmetric_publishes_nothing_automatic_but_upnp_and_advertise() -> None:
    """The consensus/STUN address of a symmetric NAT is in the view (observed, stun, IPs) but
    not in ``external``: it maps to nothing for a new peer (testbed D8)."""
    view = NatView(nat_type=NatType.SYMMETRIC, observed=(("198.51.100.31", 50001),),
                   stun_reflected=(("198.51.100.31", 50008),),
                   external_ips=("198.51.100.31",))  # fmt: skip
    assert endpoint_urls(view, local_port=4121) == ()
    upnp = NatView(nat_type=NatType.SYMMETRIC, upnp=("198.51.99.41", 4121))
    assert endpoint_urls(upnp, local_port=4121, advertise_host="h.example") == (
        "quic://h.example:4121", "quic://198.51.99.41:4121")  # fmt: skip


def test_deduplicated_and_bounded() -> None:
    many = tuple((f"198.51.100.{i}", 4121) for i in range(1, 20))
    view = NatView(nat_type=NatType.PORT_RESTRICTED, observed=many, stun_reflected=many,
                   external=many, upnp=many[0])  # fmt: skip
    urls = endpoint_urls(view, local_port=4121, advertise_host="198.51.100.1", max_urls=8)
    assert len(urls) == 8 and len(set(urls)) == 8 and urls[0] == "quic://198.51.100.1:4121"
    one = NatView(nat_type=NatType.FULL_CONE, observed=many[:1], external=many[:1],
                  upnp=many[0])  # fmt: skip
    assert endpoint_urls(one, local_port=4121) == ("quic://198.51.100.1:4121",)  # D10


def test_nothing_known_is_empty() -> None:
    assert endpoint_urls(NatView(), local_port=4121) == ()
    assert quic_url("2001:db8::1", 1) == "quic://[2001:db8::1]:1"
    assert quic_url("[2001:db8::1]", 1) == "quic://[2001:db8::1]:1"
