"""The default-gateway parsers on real outputs of Linux, macOS and Windows."""

from __future__ import annotations

from a2al_mcp.nat.portmap_gateway import (
    parse_bsd_route_get,
    parse_proc_net_route,
    parse_windows_route_print,
)

PROC_NET_ROUTE = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t0100070A\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t0000070A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
"""

MACOS_ROUTE_GET = """\
   route to: default
destination: default
       mask: default
    gateway: 192.168.1.254
  interface: en0
      flags: <UP,GATEWAY,DONE,STATIC,PRCLONING,GLOBAL>
 recvpipe  sendpipe  ssthresh  rtt,msec    rttvar  hopcount      mtu     expire
       0         0         0         0         0         0      1500         0
"""

WINDOWS_ROUTE_PRINT = """\
===========================================================================
Interface List
 12...00 15 5d 01 02 03 ......Microsoft Hyper-V Network Adapter
===========================================================================

IPv4 Route Table
===========================================================================
Active Routes:
Network Destination        Netmask          Gateway       Interface  Metric
          0.0.0.0          0.0.0.0      192.168.0.1    192.168.0.23     35
          0.0.0.0          0.0.0.0         On-link       10.8.0.6      5
          0.0.0.0          0.0.0.0       172.16.0.1     172.16.0.9     25
===========================================================================
Persistent Routes:
  None
"""


def test_linux_picks_the_lowest_metric_default_route() -> None:
    # 0100070A little-endian = 10.7.0.1 (metric 100) beats 192.168.1.1 (metric 600)
    assert parse_proc_net_route(PROC_NET_ROUTE) == "10.7.0.1"


def test_linux_without_a_default_route_has_no_gateway() -> None:
    header, *_, onlink = PROC_NET_ROUTE.splitlines()
    assert parse_proc_net_route(header + "\n" + onlink + "\n") is None
    assert parse_proc_net_route("") is None
    # A default route without the gateway flag (a point-to-point link) does not count.
    assert (
        parse_proc_net_route(header + "\ntun0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\n")
        is None
    )


def test_macos_route_get_default() -> None:
    assert parse_bsd_route_get(MACOS_ROUTE_GET) == "192.168.1.254"
    assert parse_bsd_route_get("route: writing to routing socket: not in table\n") is None
    # A link-layer "gateway" (an interface) is no address to send to.
    assert parse_bsd_route_get("    gateway: link#4\n") is None


def test_windows_route_print_lowest_metric_with_a_gateway() -> None:
    assert parse_windows_route_print(WINDOWS_ROUTE_PRINT) == "172.16.0.1"
    assert parse_windows_route_print("Active Routes:\nNone\n") is None
