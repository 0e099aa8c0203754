"""The links of a testbed topology and the commands that configure each namespace (text only).

Every link is a veth pair created from the outer namespace directly into its two inner
namespaces (``ip link add A netns PID_A type veth peer name B netns PID_B``), so no interface
ever exists outside the testbed's inner namespaces.  The scripts then give each namespace its
bridges, addresses, routes and NAT rules; ``inet`` gets no default route.

This module only writes text; it creates nothing.  Its one user,
:meth:`~a2al_mcp.testing.nat_testbed.NatTestbed.start`, runs these commands only after the
outer namespace was proved sealed (only ``lo``, no routes, public addresses unreachable:
``prove_sealed`` in ``_build_outer``), and proves the whole testbed sealed again once the links
exist (every inner namespace has only the interfaces :func:`allowed_interfaces` names).
"""

from __future__ import annotations

from collections.abc import Sequence

from .nat_rules import nat_rules
from .nat_topology import INET_ADDRS, PUBLIC_NET, TURN_ADDR, TURN_ALT_ADDR, TURN_HOST, Topology

__all__ = ["allowed_interfaces", "namespace_scripts", "veth_links"]


def veth_links(topology: Topology) -> list[tuple[str, str, str, str]]:
    """(namespace A, interface A, namespace B, interface B) for every link."""
    out = []
    if topology.turn:
        out.append(("inet", "p-turn", TURN_HOST, "eth0"))
    for plan in topology.hosts:
        if plan.router is None:
            out.append(("inet", plan.inet_port, plan.name, "eth0"))
        else:
            out.append(("inet", plan.inet_port, plan.router, "wan0"))
            out.append((plan.router, "lan0", plan.name, "eth0"))
    return out


def allowed_interfaces(topology: Topology) -> dict[str, set[str]]:
    """Interface names each inner namespace may have (``lo``, its links, inet's bridges)."""
    out: dict[str, set[str]] = {"inet": {"lo", *INET_ADDRS}}
    for a, ia, b, ib in veth_links(topology):
        out.setdefault(a, {"lo"}).add(ia)
        out.setdefault(b, {"lo"}).add(ib)
    return out


def _host_script(addrs: Sequence[str], gateway: str) -> str:
    lines = [f"ip addr add {a}/24 dev eth0" for a in addrs]
    lines += ["ip link set eth0 up", f"ip route add default via {gateway}"]
    return "\n".join(lines)


def namespace_scripts(topology: Topology) -> dict[str, str]:
    """``sh -e`` commands configuring every inner namespace (run once the veths exist)."""
    inet = []
    for bridge, addrs in INET_ADDRS.items():
        inet.append(f"ip link add {bridge} type bridge")
        inet += [f"ip addr add {a}/24 dev {bridge}" for a in addrs]
        inet.append(f"ip link set {bridge} up")
    scripts: dict[str, str] = {}
    if topology.turn:
        inet.append("ip link set p-turn master brpub up")
        scripts[TURN_HOST] = _host_script([TURN_ADDR, TURN_ALT_ADDR], f"{PUBLIC_NET}.1")
    for plan in topology.hosts:
        inet.append(f"ip link set {plan.inet_port} master {plan.bridge} up")
        scripts[plan.name] = _host_script([plan.addr], plan.gateway)
        if plan.router is not None and plan.wan is not None:
            rules = nat_rules(plan.kind, wan=plan.wan, host=plan.addr)
            scripts[plan.router] = "\n".join(
                [
                    f"ip addr add {plan.wan}/24 dev wan0",
                    "ip link set wan0 up",
                    f"ip route add default via {plan.wan_gateway}",
                    f"ip addr add {plan.lan_router_addr}/24 dev lan0",
                    "ip link set lan0 up",
                    f"nft -f - <<'NFT'\n{rules}NFT",
                ]
            )
    scripts["inet"] = "\n".join(inet)  # no default route: the simulated internet ends here
    return scripts
