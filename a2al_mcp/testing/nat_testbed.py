"""The project's NAT testbed: a small simulated internet with NAT routers, built in namespaces.

Safety first: :class:`NatTestbed` creates an *outer* network namespace (with a private mount
namespace) and proves it sealed (only ``lo``, no routes, UDP ``connect()`` to 8.8.8.8 and
2001:4860:4860::8888 fails) before it builds anything.  Every inner namespace is started from
inside it and every veth is created in it directly into the inner namespaces, so the root
namespace never sees an interface, bridge, route, nft rule or mount of the testbed.  The
simulated internet router ``inet`` has *no default route*: anything addressed outside the
testbed dies there.  Processes run with the outer mount namespace, where ``/etc/resolv.conf``
names an address inside the testbed on which nothing listens (lookups fail at once).
Namespaces live as long as their holder processes; every process is recorded by PID (and start
time) and stopped on exit, and the leftovers of a crashed run are stopped at the next start.
Needs root, ``unshare``/``nsenter`` (util-linux), ``ip``, ``nft``, and for the services
``turnserver`` (coturn), ``miniupnpd``, ``conntrack``.  The topology is in
:mod:`.nat_topology`, the NAT rule sets in :mod:`.nat_rules`.

API::

    from a2al_mcp.testing.nat_testbed import NatTestbed

    with NatTestbed({"pub1": "public", "prc": "prc", "upnp1": "upnp-igdv1"}) as tb:
        tb.addr("prc")            # "10.2.0.2": the host's own address
        tb.wan("prc")             # "198.51.100.11": its router's WAN address
        tb.addr("pub1")           # "203.0.113.11" (tb.wan("pub1") is the same)
        proc = tb.popen("prc", [sys.executable, "-m", "a2al_mcp", "node", "run", ...],
                        env=..., cwd=...)     # Popen in that host; PID recorded, stopped on exit
        tb.run("prc", ["ip", "route"])        # CompletedProcess (text, captured; check=...)
        with tb.netns("prc"):                 # this thread only; no await inside
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # lives in "prc"
        tb.conntrack_flush("prc")             # the router of "prc" (or "r-prc")
        tb.conntrack_flush_between("prc", "sym")   # UDP between the two only, both routers
        tb.resolve_a2ald_stun_names()         # a2ald's built-in STUN names -> coturn
        tb.upnp_mappings("upnp1")             # [UpnpMapping(...)] its miniupnpd holds
        tb.upnp_url("upnp1")                  # "http://10.3.0.1:5000/rootDesc.xml"
        tb.stun, tb.stun_alternate            # ("203.0.113.3", 3478), ("203.0.113.4", 3479)
        tb.turn_servers                       # [("turn:203.0.113.3:3478?transport=udp", ...)]
        tb.prove_sealed()                     # NotSealedError unless the testbed is closed
        A2aldPeer(dir, udp_port=4121, api_port=2121, launch=tb.a2ald_launch("pub1"))

``tb.argv(host, argv)`` gives the ``nsenter`` command line for a process you start yourself;
``tb.namespaces`` maps every namespace name to its holder PID; ``tb.records()`` lists every
process started (PID, start time, label).  :func:`~.nat_check.observe` measures a host's
mapping and filtering with RFC 5780 STUN tests.  Commands start in the caller's working
directory (or ``cwd``).  The testbed is IPv4 only (IPv6 is off on its interfaces; ``lo``
keeps ``::1``).

Host kinds: ``public`` (on 203.0.113.0/24), ``cone`` (EIM + EIF), ``prc`` (EIM + APDF),
``sym`` (EDM, fully random ports), ``upnp-igdv1`` / ``upnp-igdv2`` (as prc, plus miniupnpd 2.3
with UPnP IGD v1 or v2 descriptions and NAT-PMP/PCP on the router's LAN address; HTTP port
5000).  Every NAT host is ``10.N.0.2`` behind router ``r-<host>`` (``10.N.0.1``), N the
host's position in ``hosts``.  coturn (unless ``turn=False``) listens on 203.0.113.3 and
203.0.113.4, ports 3478 and 3479 on each: RFC 5780 OTHER-ADDRESS is 203.0.113.4:3479 and
CHANGE-REQUEST is honoured; long-term credentials ``a2al``/``testbed``, realm
``testbed.invalid``.  Other namespaces usable by name: ``outer``, ``inet``, ``turn``,
``r-<host>``.  Conntrack keeps NAT pinholes open for 30 s (unreplied) to 120 s (replied):
flush a router between measurements of first contact.

Command line (as root)::

    python -m a2al_mcp.testing.nat_testbed check   # build, measure every host, tear down
    python -m a2al_mcp.testing.nat_testbed shell   # bash in the outer namespace; `tb HOST cmd`
    python -m a2al_mcp.testing.nat_testbed --hosts pub1=public,sym=sym shell 'tb sym ip a'
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

from a2al_mcp._clock import SystemClock

from .a2ald_errors import NotSealedError
from .nat_daemons import start_daemons
from .nat_launch import TestbedLaunch
from .nat_links import allowed_interfaces, namespace_scripts, veth_links
from .nat_netns import (
    NatTestbedError,
    enter_netns,
    netns_id,
    netns_net_files,
    netns_sealed_problems,
    ns_argv,
    parent_death_hook,
    proc_net_interfaces,
    proc_start_time,
    spawn_holder,
)
from .nat_services import (
    TURN_PASSWORD,
    TURN_USER,
    UPNP_HTTP_PORT,
    UpnpMapping,
    parse_upnp_leases,
)
from .nat_state import DEFAULT_BASE, ProcessRecord, RunState, clean_stale_runs, stop_processes
from .nat_topology import (
    DEFAULT_HOSTS,
    DNS_ADDR,
    TURN_ADDR,
    TURN_ALT_ADDR,
    TURN_ALT_PORT,
    TURN_HOST,
    TURN_PORT,
    UPNP_KINDS,
    HostPlan,
    Topology,
    plan_topology,
)

__all__ = ["REQUIRED_TOOLS", "NatTestbed", "NatTestbedError", "missing_requirements"]

log = logging.getLogger(__name__)

REQUIRED_TOOLS: Final = ("unshare", "nsenter", "ip", "nft", "sh", "sleep", "mount")
SERVICE_TOOLS: Final = {"turn": "turnserver", "upnp": "miniupnpd", "conntrack": "conntrack"}
_CLOCK: Final = SystemClock()
_LINK_SETUP: Final = "ip link set lo up\necho 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"
_FORWARD: Final = "echo 1 > /proc/sys/net/ipv4/ip_forward"
_READY_TIMEOUT: Final = 15.0


def missing_requirements(*, turn: bool = True, upnp: bool = True) -> list[str]:
    """What this machine lacks to build a testbed (empty: it can): root and the tools."""
    out = [] if os.geteuid() == 0 else ["root (namespaces, nft)"]
    tools = [*REQUIRED_TOOLS, SERVICE_TOOLS["conntrack"]]
    if turn:
        tools.append(SERVICE_TOOLS["turn"])
    if upnp:
        tools.append(SERVICE_TOOLS["upnp"])
    out += [f"{tool} (not on PATH)" for tool in tools if shutil.which(tool) is None]
    return out


class NatTestbed:
    """The topology of :mod:`.nat_topology` for ``hosts`` (``{name: kind}``), as a context.

    ``turn``: run coturn on host ``turn``; ``base``: where run state (configs, logs, the PID
    record) is kept, one directory per run, removed on exit unless ``keep_state``.
    """

    def __init__(
        self,
        hosts: Mapping[str, str] = DEFAULT_HOSTS,
        *,
        turn: bool = True,
        base: Path = DEFAULT_BASE,
        keep_state: bool = False,
    ) -> None:
        self.topology: Topology = plan_topology(hosts, turn=turn)
        self._base = base
        self._keep_state = keep_state
        self._state: RunState | None = None
        self._outer: int | None = None
        self._ns: dict[str, int] = {}
        self._ns_ids: set[str] = set()
        self._children: list[subprocess.Popen[bytes]] = []
        self._holders: list[ProcessRecord] = []
        self._stun_names = False

    # ---- context

    def __enter__(self) -> NatTestbed:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def state_dir(self) -> Path:
        """This run's state directory (configs, logs, ``pids``)."""
        if self._state is None:
            raise NatTestbedError("testbed not started")
        return self._state.dir

    # ---- addresses

    def host(self, name: str) -> HostPlan:
        """The plan of host ``name`` (also accepts ``r-<name>``)."""
        return self.topology.host(name)

    def addr(self, host: str) -> str:
        """The host's own IPv4 address (its LAN address behind a NAT)."""
        return self.host(host).addr

    def wan(self, host: str) -> str:
        """Where the internet sees ``host``: its router's WAN address (a public host: its own)."""
        return self.host(host).public_addr

    @property
    def stun(self) -> tuple[str, int]:
        """coturn's primary STUN/TURN address."""
        return (TURN_ADDR, TURN_PORT)

    @property
    def stun_alternate(self) -> tuple[str, int]:
        """coturn's RFC 5780 alternate address (its OTHER-ADDRESS)."""
        return (TURN_ALT_ADDR, TURN_ALT_PORT)

    @property
    def namespaces(self) -> dict[str, int]:
        """Namespace name -> holder PID (``outer``, ``inet``, ``turn``, hosts, ``r-<host>``)."""
        out = dict(self._ns)
        if self._outer is not None:
            out["outer"] = self._outer
        return out

    def _pid(self, name: str) -> int:
        try:
            return self._ns[name]
        except KeyError:
            raise NatTestbedError(
                f"no namespace {name!r} (have: {', '.join(sorted(self._ns))})"
            ) from None

    def _outer_pid(self) -> int:
        if self._outer is None:
            raise NatTestbedError("testbed not started")
        return self._outer

    # ---- safety

    def prove_sealed(self) -> None:
        """Raise :class:`NotSealedError` unless the testbed is (still) closed.

        Closed: the outer namespace is sealed (only ``lo``, no routes, no way to 8.8.8.8 or
        2001:4860:4860::8888); every inner namespace has exactly the interfaces the testbed
        made (whose other ends are all inside it); ``inet`` has no default route.
        """
        problems = netns_sealed_problems(self._outer_pid())
        if self._ns:
            problems += self._inner_problems()
        if problems:
            raise NotSealedError(problems)

    def _inner_problems(self) -> list[str]:
        expected = allowed_interfaces(self.topology)
        inner = {name: pid for name, pid in self._ns.items() if name != "outer"}
        seen = netns_net_files(inner, ("dev", "route"))
        problems = []
        for name, files in seen.items():
            extra = proc_net_interfaces(files["dev"]) - expected.get(name, set())
            if extra:
                problems.append(f"{name}: interfaces the testbed did not make: {sorted(extra)}")
        for line in seen.get("inet", {}).get("route", "").splitlines()[1:]:
            fields = line.split()
            if len(fields) > 1 and fields[1] == "00000000":
                problems.append(f"inet has a default route: {line.strip()}")
        return problems

    # ---- processes

    def argv(
        self, name: str, argv: Sequence[str], *, cwd: str | os.PathLike[str] | None = None
    ) -> list[str]:
        """``argv`` wrapped to run in namespace ``name`` with the testbed's mount namespace.

        It starts in ``cwd`` (default: the caller's working directory).
        """
        return ns_argv(self._pid(name), argv, mount_pid=self._outer_pid(), cwd=cwd)

    def popen(
        self,
        host: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = None,
        stderr: int | IO[Any] | None = None,
        label: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in namespace ``host``; recorded by PID and stopped on exit.

        The process's PID is that of ``argv`` (``nsenter`` execs it).  It gets its own session
        (signals to the test process do not reach it) and is SIGKILLed by the kernel if the
        creating (main) thread dies.
        """
        state = self._started()
        proc = subprocess.Popen(
            self.argv(host, argv, cwd=cwd),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=None if env is None else dict(env),
            cwd=cwd,
            close_fds=True,
            start_new_session=True,
            preexec_fn=parent_death_hook(),
        )
        self._children.append(proc)
        state.record(proc.pid, label or f"{host}:{os.path.basename(argv[0])}")
        return proc

    def run(
        self,
        host: str,
        argv: Sequence[str],
        *,
        check: bool = False,
        timeout: float = 30.0,
        input: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in namespace ``host`` to completion; output captured as text."""
        self._started()
        result = subprocess.run(
            self.argv(host, argv, cwd=cwd),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
        if check and result.returncode != 0:
            raise NatTestbedError(
                f"{host}: {' '.join(argv)} exited with {result.returncode}: "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    @contextlib.contextmanager
    def netns(self, host: str) -> Iterator[None]:
        """The calling thread in namespace ``host`` for the block (see :func:`enter_netns`)."""
        with enter_netns(self._pid(host)):
            yield

    def records(self) -> list[ProcessRecord]:
        """Every process this run started (holders, services, :meth:`popen`), in order."""
        return self._state.records() if self._state is not None else []

    def _started(self) -> RunState:
        if self._state is None or self._outer is None:
            raise NatTestbedError("testbed not started")
        return self._state

    # ---- NAT helpers

    def router(self, name: str) -> str:
        """The router namespace of host ``name`` (``name`` itself if it is a router)."""
        plan = self.host(name)
        if plan.router is None:
            raise NatTestbedError(f"{name!r} is a public host: it has no router")
        return plan.router

    def conntrack_flush(self, router: str) -> None:
        """Forget every connection (and NAT mapping) of the router of ``router``."""
        self.run(self.router(router), ["conntrack", "-F"], check=True)

    def conntrack_flush_between(self, a: str, b: str) -> None:
        """Forget the UDP state between hosts ``a`` and ``b`` on both their routers (as the
        shared testbed's ``--flush-ct``): a dial between them is then a first contact, while
        every other mapping (to seeds, hubs, TURN) stays."""
        for host, other in ((a, b), (b, a)):
            plan = self.host(host)
            if plan.router is None:
                continue
            for flag in ("-s", "-d"):  # its packets from the other, and to it
                # exits 1 when nothing matched
                self.run(plan.router, ["conntrack", "-D", "-p", "udp", flag, self.wan(other)])

    def resolve_a2ald_stun_names(self) -> None:
        """Inside the testbed only: a2ald's compiled-in STUN names resolve to coturn.

        a2ald 0.3.5 learns the address it publishes from natsense or from STUN to its
        compiled-in servers (``ice_stun_urls`` serve ICE only; shared testbed README D8), so
        behind a symmetric NAT it publishes nothing unless those names resolve.  An
        ``/etc/hosts`` bind-mounted in the testbed's private mount namespace maps
        stun.l.google.com, stun1.l.google.com and stun.cloudflare.com to coturn's two
        addresses (three distinct ``ip:port``: two names on one would race through conntrack,
        README P3); port 19302 is forwarded to coturn's 3479 on ``turn``.  No public host is
        ever resolved or reached: these TEST-NET addresses exist only inside the testbed.
        Idempotent.
        """
        if not self.topology.turn:
            raise NatTestbedError("the STUN names need coturn (turn=True)")
        if self._stun_names:
            return
        hosts = self.state_dir / "hosts"
        hosts.write_text(_A2ALD_STUN_HOSTS, encoding="utf-8")
        self.run("outer", ["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
        self.run(TURN_HOST, ["nft", "-f", "-"], input=_A2ALD_STUN_NFT, check=True)
        self._stun_names = True

    def upnp_mappings(self, host: str) -> list[UpnpMapping]:
        """The port mappings the miniupnpd of ``host``'s router holds now."""
        plan = self.host(host)
        if plan.kind not in UPNP_KINDS:
            raise NatTestbedError(f"{host!r} is not behind a UPnP router")
        leases = self.state_dir / plan.name / "leases"
        try:
            return parse_upnp_leases(leases.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []

    def upnp_url(self, host: str) -> str:
        """The root description URL of ``host``'s UPnP router."""
        plan = self.host(host)
        if plan.kind not in UPNP_KINDS:
            raise NatTestbedError(f"{host!r} is not behind a UPnP router")
        return f"http://{plan.gateway}:{UPNP_HTTP_PORT}/rootDesc.xml"

    def a2ald_launch(self, host: str) -> TestbedLaunch:
        """How :class:`~.a2ald_peer.A2aldPeer` runs a2ald in ``host`` (``launch=``)."""
        self._pid(host)
        return TestbedLaunch(self, host)

    @property
    def turn_servers(self) -> list[tuple[str, str, str]]:
        """``(url, username, credential)`` of coturn's TURN service (empty without ``turn``)."""
        if not self.topology.turn:
            return []
        return [(f"turn:{TURN_ADDR}:{TURN_PORT}?transport=udp", TURN_USER, TURN_PASSWORD)]

    # ---- build

    def start(self) -> None:
        """Build the topology and start the services; on any failure tear down and raise."""
        if self._state is not None:
            raise NatTestbedError("testbed already started")
        missing = missing_requirements(
            turn=self.topology.turn,
            upnp=any(p.kind in UPNP_KINDS for p in self.topology.hosts),
        )
        if missing:
            raise NatTestbedError("cannot build the NAT testbed, missing: " + ", ".join(missing))
        clean_stale_runs(self._base)
        self._state = RunState(self._base)
        try:
            self._build_outer()
            self._build_namespaces()
            self._build_links()
            self.prove_sealed()
            start_daemons(self)
        except BaseException:
            self.close()
            raise

    def _holder(self, name: str, *, setup: str, via: int | None) -> int:
        state = self._state
        assert state is not None
        proc = spawn_holder(via=via, mount=via is None, setup=setup)
        self._children.append(proc)
        self._holders.append(state.record(proc.pid, f"holder:{name}"))
        self._ns_ids.add(netns_id(proc.pid))
        return proc.pid

    def _build_outer(self) -> None:
        self._outer = self._holder("outer", setup="ip link set lo up", via=None)
        self._ns["outer"] = self._outer
        self.prove_sealed()
        resolv = self.state_dir / "resolv.conf"
        resolv.write_text(f"nameserver {DNS_ADDR}\noptions timeout:1 attempts:1\n")
        self.run("outer", ["mount", "--bind", str(resolv), "/etc/resolv.conf"], check=True)

    def _build_namespaces(self) -> None:
        outer = self._outer_pid()
        self._ns["inet"] = self._holder("inet", setup=f"{_LINK_SETUP}\n{_FORWARD}", via=outer)
        names = [TURN_HOST] if self.topology.turn else []
        for plan in self.topology.hosts:
            names.append(plan.name)
            if plan.router is not None:
                self._ns[plan.router] = self._holder(
                    plan.router, setup=f"{_LINK_SETUP}\n{_FORWARD}", via=outer
                )
        for name in names:
            self._ns[name] = self._holder(name, setup=_LINK_SETUP, via=outer)

    def _build_links(self) -> None:
        batch = "".join(
            f"link add {ia} netns {self._pid(a)} type veth peer name {ib} netns {self._pid(b)}\n"
            for a, ia, b, ib in veth_links(self.topology)
        )
        self.run("outer", ["ip", "-batch", "-"], input=batch, check=True)
        running = [
            (name, subprocess.Popen(self.argv(name, ["sh", "-ec", script]), **_CAPTURE))
            for name, script in namespace_scripts(self.topology).items()
        ]
        failures = []
        for name, proc in running:
            out, _ = proc.communicate(timeout=30)
            if proc.returncode != 0:
                failures.append(f"{name}: {out.decode(errors='replace').strip()}")
        if failures:
            raise NatTestbedError("configuring the testbed failed: " + "; ".join(failures))

    # ---- teardown

    def close(self) -> None:
        """Stop every recorded process, then the holders: the namespaces go with them."""
        state = self._state
        if state is None:
            return
        holders = {r.pid for r in self._holders}
        others = [r for r in state.records() if r.pid not in holders]
        killed = stop_processes(reversed(others))
        if killed:
            log.warning("testbed processes needed SIGKILL: %s", ", ".join(killed))
        strays = _processes_in(self._ns_ids, exclude=holders)
        if strays:
            log.warning("killing %d stray processes left in testbed namespaces", len(strays))
            stop_processes(strays, grace=1.0)
        stop_processes(reversed(self._holders), grace=1.0)
        for proc in self._children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._children.clear()
        self._holders.clear()
        self._ns.clear()
        self._ns_ids.clear()
        self._outer = None
        self._state = None
        self._stun_names = False
        if not self._keep_state:
            state.remove()


_A2ALD_STUN_HOSTS: Final = (
    "127.0.0.1 localhost\n"
    f"{TURN_ADDR} stun.l.google.com\n"
    f"{TURN_ALT_ADDR} stun1.l.google.com\n"
    f"{TURN_ALT_ADDR} stun.cloudflare.com\n"
)
_A2ALD_STUN_NFT: Final = f"""table ip a2aldstun {{
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr {TURN_ADDR} udp dport 19302 dnat to {TURN_ADDR}:{TURN_ALT_PORT}
    ip daddr {TURN_ALT_ADDR} udp dport 19302 dnat to {TURN_ALT_ADDR}:{TURN_ALT_PORT}
  }}
}}
"""

_CAPTURE: Final[dict[str, Any]] = {
    "stdin": subprocess.DEVNULL,
    "stdout": subprocess.PIPE,
    "stderr": subprocess.STDOUT,
}


def _processes_in(ns_ids: set[str], *, exclude: set[int]) -> list[ProcessRecord]:
    """Every process (other than ``exclude``) whose network namespace is one of ``ns_ids``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        try:
            ns = os.readlink(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        start = proc_start_time(int(entry))
        if ns in ns_ids and start is not None:
            out.append(ProcessRecord(int(entry), start, f"stray:{entry}"))
    return out


if __name__ == "__main__":
    from .nat_cli import main

    sys.exit(main())
