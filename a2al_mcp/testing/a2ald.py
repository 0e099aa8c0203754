"""Launcher for the reference daemon ``a2ald`` 0.3.5, used by the interop tests.

``a2ald`` always performs DNS, STUN and IP-echo probes that cannot be switched off, so it must
only ever run inside a *sealed* network namespace: only ``lo`` (and it must be up), no IPv4
routes, no IPv6 routes beyond loopback/link-local/multicast/reject entries, and a UDP
``connect()`` towards public addresses must fail.  :func:`check_sealed` verifies exactly that
and :meth:`A2aldPeer.start` calls it before *every* launch.

Typical use (inside ``unshare -n sh -c 'ip link set lo up && ...'``)::

    with A2aldNetwork(4) as net:
        ident = net.peers[1].identity_generate()

Linux only; standard library only.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import fcntl
import importlib.util
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

__all__ = [
    "A2ALD_VERSION",
    "PROBE_TARGETS",
    "A2aldApiError",
    "A2aldError",
    "A2aldNetwork",
    "A2aldPeer",
    "A2aldStartError",
    "NotSealed",
    "NotSealedError",
    "UdpProbe",
    "check_sealed",
    "find_a2ald",
    "free_port",
    "poll_until",
    "render_config",
    "sealed_problems",
]

log = logging.getLogger(__name__)

A2ALD_VERSION: Final = "0.3.5"
"""The daemon version these helpers were written and verified against."""

PROBE_TARGETS: Final[tuple[tuple[str, int], ...]] = (
    ("8.8.8.8", 53),
    ("2001:4860:4860::8888", 53),
)
"""Public addresses a UDP ``connect()`` must fail for (connect on UDP sends no packet)."""

_UNREACHABLE_ERRNOS: Final = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT}
)
_SIOCGIFFLAGS: Final = 0x8913
_IFF_UP: Final = 0x1
_RTF_REJECT: Final = 0x0200
# minimum field counts of a /proc/net/route line (iface dst gw flags refcnt use metric mask)
# and of a /proc/net/ipv6_route line (dst plen src plen nexthop metric refcnt use flags dev)
_ROUTE_FIELDS: Final = 8
_ROUTE6_FIELDS: Final = 10
_NODE_KEY_LEN: Final = 64  # Ed25519 private key as Go stores it: seed || public key
_PR_SET_PDEATHSIG: Final = 1
# Environment variables removed from the daemon's environment: INVOCATION_ID/JOURNAL_STREAM make
# a2ald believe it runs under a service manager (enables the self-updater); proxies would send
# its (failing anyway) HTTP probes somewhere else; every A2AL_* variable (A2AL_LISTEN_ADDR,
# A2AL_SIGNAL_LISTEN_ADDR, ...) would override config.toml.
_SCRUBBED_ENV_PREFIX: Final = "A2AL_"
_SCRUBBED_ENV: Final = frozenset(
    {
        "INVOCATION_ID",
        "JOURNAL_STREAM",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    }
)

UdpProbe = Callable[[str, int], None]
"""``probe(host, port)``: UDP ``connect()`` to the address; raises :class:`OSError` on failure."""

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# errors


class A2aldError(RuntimeError):
    """Base class of the errors raised by this module."""


class NotSealedError(A2aldError):
    """The current network namespace is not sealed; ``reasons`` lists every failed check."""

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons: tuple[str, ...] = tuple(reasons)
        super().__init__(
            "refusing to run a2ald: network namespace is not sealed: " + "; ".join(self.reasons)
        )


NotSealed = NotSealedError
"""Alias of :class:`NotSealedError`."""


class A2aldStartError(A2aldError):
    """The daemon could not be started or did not become ready in time."""


class A2aldApiError(A2aldError):
    """A REST call to a2ald failed (``status`` is 0 when no HTTP response was received)."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.body = body
        super().__init__(f"{method} {url} -> HTTP {status}: {body[:500]}")


# --------------------------------------------------------------------------------------------
# sealed-namespace check


def _read_text(path: str) -> str | None:
    """Return the file's text, or None when it does not exist."""
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def _interfaces(proc_net_dev: str) -> list[str]:
    """Interface names listed in a ``/proc/net/dev`` text."""
    names = []
    for line in proc_net_dev.splitlines()[2:]:
        name, sep, _ = line.partition(":")
        if sep and name.strip():
            names.append(name.strip())
    return names


def _ipv4_route_problems(proc_net_route: str) -> list[str]:
    """Every entry of ``/proc/net/route`` (main table) is a problem."""
    out = []
    for line in proc_net_route.splitlines()[1:]:
        fields = line.split()
        if len(fields) < _ROUTE_FIELDS:
            continue
        dev, dst, gw, flags, mask = fields[0], fields[1], fields[2], fields[3], fields[7]
        out.append(
            f"IPv4 route {_hex_ipv4(dst)}/{_hex_ipv4(mask)} via {_hex_ipv4(gw)} dev {dev} "
            f"(flags 0x{flags})"
        )
    return out


def _hex_ipv4(little_endian_hex: str) -> str:
    """Render a little-endian hex IPv4 address from ``/proc/net/route``."""
    try:
        return socket.inet_ntoa(struct.pack("<I", int(little_endian_hex, 16)))
    except (ValueError, struct.error):
        return little_endian_hex


_LOOPBACK_V6_OK: Final = (
    ipaddress.IPv6Network("::1/128"),
    ipaddress.IPv6Network("fe80::/10"),
    ipaddress.IPv6Network("ff00::/8"),
)


def _ipv6_route_problems(proc_net_ipv6_route: str) -> list[str]:
    """IPv6 routes other than reject entries or loopback/link-local/multicast on ``lo``."""
    out = []
    for line in proc_net_ipv6_route.splitlines():
        fields = line.split()
        if len(fields) < _ROUTE6_FIELDS:
            continue
        try:
            net = ipaddress.IPv6Network((int(fields[0], 16), int(fields[1], 16)))
            flags = int(fields[8], 16)
        except ValueError:
            out.append(f"unparsable IPv6 route line {line.strip()!r}")
            continue
        dev = fields[9]
        if flags & _RTF_REJECT:
            continue
        if dev == "lo" and any(net.subnet_of(ok) for ok in _LOOPBACK_V6_OK):
            continue
        out.append(f"IPv6 route {net} dev {dev} (flags 0x{flags:08x})")
    return out


def _lo_flags() -> int:
    """Interface flags of ``lo`` in the current namespace (``SIOCGIFFLAGS``; sysfs can be stale)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        req = struct.pack("16sh22x", b"lo", 0)  # struct ifreq: name + ifr_flags, 40 bytes
        res = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, req)
    return int(struct.unpack_from("16sh", res)[1])


def _udp_connect(host: str, port: int) -> None:
    """Default :data:`UdpProbe`: ``connect()`` a UDP socket (no packet is sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))


def _probe_problems(probe: UdpProbe) -> list[str]:
    """Run the functional probe against every public target."""
    out = []
    for host, port in PROBE_TARGETS:
        try:
            probe(host, port)
        except OSError as exc:
            if exc.errno in _UNREACHABLE_ERRNOS:
                continue
            out.append(f"UDP connect to [{host}]:{port} failed unexpectedly: {exc!r}")
        else:
            out.append(f"UDP connect to [{host}]:{port} succeeded (a route to it exists)")
    return out


def _loopback_problems(lo_flags: int | None) -> list[str]:
    """``lo`` must be up and 127.0.0.1 bindable."""
    out = []
    try:
        flags = _lo_flags() if lo_flags is None else lo_flags
    except OSError as exc:
        out.append(f"cannot read the flags of lo: {exc!r}")
    else:
        if not flags & _IFF_UP:
            out.append("lo is down (run `ip link set lo up` inside the namespace)")
    if lo_flags is None:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.1", 0))
        except OSError as exc:
            out.append(f"cannot bind 127.0.0.1: {exc!r}")
    return out


def sealed_problems(
    *,
    proc_net_dev: str | None = None,
    proc_net_route: str | None = None,
    proc_net_ipv6_route: str | None = None,
    lo_flags: int | None = None,
    udp_probe: UdpProbe | None = None,
) -> list[str]:
    """Return every reason why the current network namespace is not sealed (empty = sealed).

    Each keyword overrides one input (for unit tests); when an input is None the live value
    of the current namespace is used.  When ``lo_flags`` is given, the live bind probe of
    127.0.0.1 is skipped too.
    """
    dev = _read_text("/proc/net/dev") if proc_net_dev is None else proc_net_dev
    route = _read_text("/proc/net/route") if proc_net_route is None else proc_net_route
    route6 = (
        _read_text("/proc/net/ipv6_route") if proc_net_ipv6_route is None else proc_net_ipv6_route
    )
    problems: list[str] = []
    if dev is None:
        problems.append("/proc/net/dev is missing (is /proc mounted?)")
    else:
        names = _interfaces(dev)
        others = sorted(set(names) - {"lo"})
        if others:
            problems.append("interfaces other than lo present: " + ", ".join(others))
        if "lo" not in names:
            problems.append("no lo interface")
    if route is None:
        problems.append("/proc/net/route is missing (is /proc mounted?)")
    else:
        problems.extend(_ipv4_route_problems(route))
    if route6 is not None:  # a missing file means the kernel has no IPv6 at all
        problems.extend(_ipv6_route_problems(route6))
    problems.extend(_loopback_problems(lo_flags))
    problems.extend(_probe_problems(_udp_connect if udp_probe is None else udp_probe))
    return problems


def check_sealed(
    *,
    proc_net_dev: str | None = None,
    proc_net_route: str | None = None,
    proc_net_ipv6_route: str | None = None,
    lo_flags: int | None = None,
    udp_probe: UdpProbe | None = None,
) -> None:
    """Raise :class:`NotSealedError` unless the current network namespace is sealed.

    Sealed means: ``/proc/net/dev`` lists only ``lo``; ``lo`` is up and 127.0.0.1 bindable;
    ``/proc/net/route`` has no entries; ``/proc/net/ipv6_route`` has only reject entries and
    loopback/link-local/multicast routes on ``lo``; and UDP ``connect()`` to 8.8.8.8:53 and
    [2001:4860:4860::8888]:53 fails with ENETUNREACH/EHOSTUNREACH/EADDRNOTAVAIL (or the
    address family is unsupported).  Keywords override the inputs, see :func:`sealed_problems`.
    """
    problems = sealed_problems(
        proc_net_dev=proc_net_dev,
        proc_net_route=proc_net_route,
        proc_net_ipv6_route=proc_net_ipv6_route,
        lo_flags=lo_flags,
        udp_probe=udp_probe,
    )
    if problems:
        raise NotSealedError(problems)


# --------------------------------------------------------------------------------------------
# binary, ports, polling


def find_a2ald() -> Path | None:
    """Locate the a2ald binary: ``$A2ALD_BIN``, else ``<site-packages>/a2al/bin/a2ald``.

    Returns None when it is missing or not executable.
    """
    override = os.environ.get("A2ALD_BIN")
    if override:
        candidate: Path | None = Path(override)
    else:
        candidate = _wheel_binary()
    if candidate is None or not candidate.is_file() or not os.access(candidate, os.X_OK):
        return None
    return candidate


def _wheel_binary() -> Path | None:
    """Return the binary shipped in the ``a2al`` wheel, if the package is importable."""
    try:
        spec = importlib.util.find_spec("a2al")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "bin" / "a2ald"


_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def free_port(*, udp: bool = True, tcp: bool = True, attempts: int = 200) -> int:
    """Return a 127.0.0.1 port that is currently free for UDP and/or TCP.

    Ports are never handed out twice by one process, so consecutive calls do not collide
    even though each probe socket is closed before the port is used.
    """
    if not (udp or tcp):
        raise ValueError("need udp and/or tcp")
    first = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, first) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            if udp and tcp and not _tcp_port_free(port):
                continue
        with _ports_lock:
            if port in _handed_out:
                continue
            _handed_out.add(port)
        return port
    raise A2aldError(f"no free loopback port found after {attempts} attempts")


def _tcp_port_free(port: int) -> bool:
    """Tell whether a TCP socket can bind 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def poll_until(
    fn: Callable[[], T],
    until: Callable[[T], bool],
    *,
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Call ``fn`` until ``until(result)`` holds; raise :class:`TimeoutError` after ``timeout``.

    :class:`A2aldApiError` raised by ``fn`` counts as "not yet" (the last one is chained).
    """
    deadline = time.monotonic() + timeout
    last_exc: A2aldApiError | None = None
    last: T | None = None
    while True:
        try:
            result = fn()
        except A2aldApiError as exc:
            last_exc = exc
        else:
            if until(result):
                return result
            last, last_exc = result, None
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached after {timeout}s; last: {last!r}") from last_exc
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# config


def _toml_str(value: str) -> str:
    """Render a TOML basic string (JSON escaping is a valid subset for these values)."""
    return json.dumps(value)


def _toml_list(values: Iterable[str]) -> str:
    """Render a TOML array of strings."""
    return "[" + ", ".join(_toml_str(v) for v in values) + "]"


def render_config(
    *,
    udp_port: int,
    api_port: int,
    bootstrap: Sequence[str],
    log_level: str = "info",
) -> str:
    """``config.toml`` for a sealed loopback test peer (see a2al-wire.md §7.3)."""
    lines = [
        "# written by a2al_mcp.testing.a2ald: sealed loopback test peer",
        f'listen_addr = "127.0.0.1:{udp_port}"',
        'quic_listen_addr = ""',
        f"bootstrap = {_toml_list(bootstrap)}",
        "min_observed_peers = 1",
        # a2ald drops loopback from its endpoint list unless it is the fallback host
        'fallback_host = "127.0.0.1"',
        "disable_upnp = true",
        f'api_addr = "127.0.0.1:{api_port}"',
        'api_token = ""',
        "require_local_token = false",
        'log_format = "text"',
        f"log_level = {_toml_str(log_level)}",
        'ice_signal_url = ""',
        "ice_signal_urls = []",
        'ice_stun_urls = ["stun:127.0.0.1:3478"]',
        "ice_turn_urls = []",
        "turn_servers = []",
        "ice_publish_turns = []",
        # "off": no embedded signalling hub at all ("" would listen on [::]:<listen port>/tcp)
        'signal_listen_addr = "off"',
        "auto_publish = true",
        "open_browser = false",
        "beacon_mode = false",
        "disable_relay = true",
        "",
        "[update]",
        "auto = false",
        "",
    ]
    return "\n".join(lines)


def _daemon_env() -> dict[str, str]:
    """Return the caller's environment minus variables that change a2ald's behaviour."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in _SCRUBBED_ENV and not k.startswith(_SCRUBBED_ENV_PREFIX)
    }


def _parent_death_hook() -> Callable[[], None] | None:
    """Return a ``preexec_fn`` making the kernel SIGTERM the daemon when its parent dies.

    Keeps a crashed or killed test run from leaving daemons behind (which would also keep the
    namespace alive).  The libc symbol is resolved here, in the parent, not after ``fork``.
    """
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


# --------------------------------------------------------------------------------------------
# one daemon


class A2aldPeer:
    """One a2ald process with its own data dir, on 127.0.0.1 ports, plus a small REST client.

    ``node_key`` (64 bytes: Ed25519 seed ‖ public key) is written to ``keys/node.key`` for a
    deterministic node AID.  ``bootstrap`` entries are ``"host:port"`` strings.  The data dir
    must be new or empty.  :meth:`start` refuses to run unless :func:`check_sealed` passes.
    """

    LOG_NAME: Final = "daemon.log"

    def __init__(
        self,
        data_dir: Path,
        *,
        bootstrap: Sequence[str] = (),
        udp_port: int | None = None,
        api_port: int | None = None,
        node_key: bytes | None = None,
        binary: Path | None = None,
        log_level: str = "info",
        name: str = "a2ald",
    ) -> None:
        if node_key is not None and len(node_key) != _NODE_KEY_LEN:
            raise ValueError("node_key must be 64 bytes (Ed25519 seed || public key)")
        self.data_dir = Path(data_dir)
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise ValueError(f"data dir {self.data_dir} is not empty")
        self.name = name
        self.bootstrap: list[str] = list(bootstrap)
        self._auto_udp = udp_port is None
        self._auto_api = api_port is None
        self.udp_port = udp_port if udp_port is not None else free_port(udp=True, tcp=True)
        self.api_port = api_port if api_port is not None else free_port(udp=False, tcp=True)
        self._node_key = node_key
        self._binary = binary
        self.log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None
        self._node_aid: str | None = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<A2aldPeer {self.name} udp={self.udp_port} api={self.api_port} {state}>"

    # ---- addresses and state

    @property
    def api_url(self) -> str:
        """Base URL of the REST API."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def listen_addr(self) -> str:
        """``"127.0.0.1:<udp port>"``: DHT/QUIC address, usable as a bootstrap entry."""
        return f"127.0.0.1:{self.udp_port}"

    @property
    def log_path(self) -> Path:
        """The daemon's combined stdout/stderr."""
        return self.data_dir / self.LOG_NAME

    @property
    def pid(self) -> int | None:
        """PID of the running daemon, or None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the daemon process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def node_aid(self) -> str:
        """The daemon's node AID (checksummed text form), from ``/status``."""
        if self._node_aid is None:
            self._node_aid = str(self.status()["node_aid"])
        return self._node_aid

    def reallocate_ports(self) -> bool:
        """Pick new free ports for those not given explicitly (only while stopped).

        Returns False when both ports were given explicitly (nothing to change).
        """
        if self.running:
            raise A2aldError("cannot change ports of a running daemon")
        if self._auto_udp:
            self.udp_port = free_port(udp=True, tcp=True)
        if self._auto_api:
            self.api_port = free_port(udp=False, tcp=True)
        return self._auto_udp or self._auto_api

    # ---- lifecycle

    def start(self) -> None:
        """Write the config and launch the daemon (does not wait; see :meth:`wait_ready`)."""
        if self.running:
            raise A2aldError(f"{self.name} is already running (pid {self.pid})")
        binary = self._binary or find_a2ald()
        if binary is None:
            raise A2aldStartError(
                "a2ald binary not found (pip install a2al==0.3.5 or set A2ALD_BIN)"
            )
        self._prepare_data_dir()
        check_sealed()  # immediately before the launch, every time
        args = [str(binary), "-data-dir", str(self.data_dir), "-no-open-browser"]
        with open(self.log_path, "ab") as logf:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=_daemon_env(),
                cwd=self.data_dir,
                close_fds=True,
                preexec_fn=_parent_death_hook(),
            )
        self._node_aid = None
        log.info(
            "started %s pid %d (udp %d, api %d)",
            self.name,
            self._proc.pid,
            self.udp_port,
            self.api_port,
        )

    def _prepare_data_dir(self) -> None:
        """Create the data dir, ``config.toml`` and (optionally) ``keys/node.key``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = render_config(
            udp_port=self.udp_port,
            api_port=self.api_port,
            bootstrap=self.bootstrap,
            log_level=self.log_level,
        )
        (self.data_dir / "config.toml").write_text(config, encoding="utf-8")
        if self._node_key is not None:
            keys = self.data_dir / "keys"
            keys.mkdir(mode=0o700, exist_ok=True)
            key_file = keys / "node.key"
            key_file.write_text(self._node_key.hex(), encoding="ascii")
            key_file.chmod(0o600)

    def wait_ready(self, timeout: float = 20.0, *, require_peers: bool | None = None) -> None:
        """Poll ``/health`` and ``/status`` until the daemon is up.

        With ``require_peers`` (default: whenever a bootstrap list is configured) also wait
        until ``dht_peers > 0``.  Raises :class:`A2aldStartError` if the process exits or the
        deadline passes.
        """
        if require_peers is None:
            require_peers = bool(self.bootstrap)
        deadline = time.monotonic() + timeout
        while True:
            self._raise_if_exited()
            missing = self._readiness(require_peers=require_peers)
            if missing is None:
                log.info("%s ready", self.name)
                return
            if time.monotonic() >= deadline:
                raise A2aldStartError(
                    f"{self.name} not ready after {timeout}s ({missing}); "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _readiness(self, *, require_peers: bool) -> str | None:
        """None when ready, else a short description of what is missing."""
        try:
            self.get("/health", timeout=2.0)
            status = self.status()
        except A2aldApiError as exc:
            return str(exc)
        if require_peers and not int(status.get("dht_peers") or 0) > 0:
            return "dht_peers is 0"
        return None

    def _raise_if_exited(self) -> None:
        """Raise :class:`A2aldStartError` when the process is gone."""
        if self._proc is None:
            raise A2aldStartError(f"{self.name} was not started")
        code = self._proc.poll()
        if code is not None:
            raise A2aldStartError(
                f"{self.name} exited with status {code}; log tail:\n{self.log_tail()}"
            )

    def terminate(self) -> None:
        """Send SIGTERM without waiting (a2ald 0.3.5 needs about 3 s to exit); see :meth:`stop`."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the daemon, SIGKILL it after ``timeout`` seconds; return its exit status."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM; sending SIGKILL", self.name, proc.pid)
                proc.kill()
                proc.wait(timeout=timeout)
        log.info("stopped %s (status %s)", self.name, proc.returncode)
        return proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` lines of the daemon log ("" if there is none)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ---- REST

    def request(self, method: str, path: str, body: object = None, *, timeout: float = 30.0) -> Any:
        """Call the REST API and return the decoded JSON (None for an empty body).

        Non-GET requests always carry a JSON body (``{}`` if none) and
        ``Content-Type: application/json``, which a2ald requires.
        """
        url = self.api_url + path
        data = None
        headers = {"Accept": "application/json"}
        if method not in ("GET", "HEAD"):
            data = json.dumps({} if body is None else body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                text = exc.read().decode("utf-8", "replace")
            raise A2aldApiError(method, url, exc.code, text) from None
        except (urllib.error.URLError, OSError) as exc:
            raise A2aldApiError(method, url, 0, f"no response: {exc}") from exc
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise A2aldApiError(method, url, 200, f"invalid JSON: {raw[:200]!r}") from exc

    def get(self, path: str, *, timeout: float = 30.0) -> Any:
        """``GET path`` (JSON result)."""
        return self.request("GET", path, timeout=timeout)

    def post(self, path: str, body: object = None, *, timeout: float = 30.0) -> Any:
        """``POST path`` with a JSON body (JSON result)."""
        return self.request("POST", path, body, timeout=timeout)

    def _object(self, method: str, path: str, body: object = None) -> dict[str, Any]:
        """Call and require a JSON object as the answer."""
        out = self.request(method, path, body)
        if not isinstance(out, dict):
            raise A2aldApiError(method, self.api_url + path, 200, f"expected an object: {out!r}")
        return out

    # ---- thin wrappers (shapes as observed on a2ald 0.3.5)

    def health(self) -> dict[str, Any]:
        """``GET /health`` -> ``{"status": "ok"}``."""
        return self._object("GET", "/health")

    def status(self) -> dict[str, Any]:
        """``GET /status`` (``node_aid``, ``dht_peers``, ``version``, ``node_published`` ...)."""
        return self._object("GET", "/status")

    def debug_identity(self) -> dict[str, Any]:
        """``GET /debug/identity`` -> ``{address, node_id_hex, local_addr}``."""
        return self._object("GET", "/debug/identity")

    def identity_generate(self) -> dict[str, Any]:
        """``POST /identity/generate``: a new master key, operational key and delegation.

        Answer: ``{aid, master_private_key_hex, operational_private_key_hex,
        delegation_proof_hex, warning}`` (keys: hex of 64-byte Ed25519 seed ‖ public key).
        """
        return self._object("POST", "/identity/generate", {})

    def register_agent(
        self, op_key_hex: str, proof_hex: str, service_tcp: str | None = None
    ) -> dict[str, Any]:
        """``POST /agents`` -> ``{aid, status: "registered"}``."""
        body: dict[str, Any] = {
            "operational_private_key_hex": op_key_hex,
            "delegation_proof_hex": proof_hex,
        }
        if service_tcp:
            body["service_tcp"] = service_tcp
        return self._object("POST", "/agents", body)

    def publish_agent(self, aid: str) -> dict[str, Any]:
        """``POST /agents/{aid}/publish`` -> ``{ok, seq}``."""
        return self._object("POST", f"/agents/{aid}/publish", {})

    def resolve(self, aid: str) -> dict[str, Any]:
        """``POST /resolve/{aid}`` -> ``{address, endpoints, nat_type, seq, timestamp, ttl}``.

        A miss is HTTP 404 ``{"error": "resolve failed"}`` (raised as :class:`A2aldApiError`).
        """
        return self._object("POST", f"/resolve/{aid}", {})

    def resolve_records(self, aid: str, type: int = 0) -> dict[str, Any]:
        """``GET /resolve/{aid}/records?type=N`` (0 = all types)."""
        return self._object("GET", f"/resolve/{aid}/records?type={int(type)}")

    def register_services(
        self,
        aid: str,
        services: Sequence[str],
        name: str = "",
        brief: str = "",
        protocols: Sequence[str] = (),
        tags: Sequence[str] = (),
        ttl: int = 600,
        meta: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /agents/{aid}/services`` (topic records, renewed by the daemon)."""
        body = {
            "services": list(services),
            "name": name,
            "brief": brief,
            "protocols": list(protocols),
            "tags": list(tags),
            "meta": dict(meta or {}),
            "ttl": ttl,
        }
        return self._object("POST", f"/agents/{aid}/services", body)

    def discover(
        self,
        services: Sequence[str],
        filter: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /discover`` -> ``{"entries": [...]}`` (``[]`` when nothing matches).

        ``filter`` is e.g. ``{"protocols": ["mcp"], "tags": ["x"]}``.
        """
        body: dict[str, Any] = {"services": list(services)}
        if filter is not None:
            body["filter"] = dict(filter)
        return self._object("POST", "/discover", body)

    def post_record(
        self, aid: str, rec_type: int, payload: bytes, ttl: int = 3600
    ) -> dict[str, Any]:
        """``POST /agents/{aid}/records`` (custom sovereign record, ``rec_type`` 2-15)."""
        body = {
            "rec_type": rec_type,
            "payload_base64": base64.b64encode(payload).decode("ascii"),
            "ttl": ttl,
        }
        return self._object("POST", f"/agents/{aid}/records", body)


# --------------------------------------------------------------------------------------------
# a network of daemons


class A2aldNetwork:
    """N a2ald peers on loopback: peer 0 first, the others bootstrap from it.

    ``extra_bootstrap`` (``"host:port"`` entries, e.g. our own node) is given to every peer;
    peer 0 then also waits until it has a DHT peer, unless ``require_join`` is false (the
    other peers always wait until they have joined).
    Use as a context manager; everything is torn down on exit, also after failures.  Without
    ``base_dir`` a temporary directory is used and removed on exit (unless ``keep_dirs``).
    """

    START_ATTEMPTS: Final = 3

    def __init__(
        self,
        count: int = 4,
        *,
        base_dir: Path | None = None,
        extra_bootstrap: Sequence[str] = (),
        node_keys: Sequence[bytes | None] = (),
        ready_timeout: float = 20.0,
        require_join: bool = True,
        log_level: str = "info",
        keep_dirs: bool = False,
        binary: Path | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("count must be >= 1")
        self.count = count
        self.extra_bootstrap = list(extra_bootstrap)
        self.ready_timeout = ready_timeout
        self.require_join = require_join
        self.log_level = log_level
        self._node_keys = list(node_keys)
        self._binary = binary
        self._base_dir = base_dir
        self._owns_dir = base_dir is None and not keep_dirs
        self.peers: list[A2aldPeer] = []

    def __enter__(self) -> A2aldNetwork:
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
    def base_dir(self) -> Path:
        """Directory holding ``peer1``, ``peer2`` ... data dirs."""
        if self._base_dir is None:
            self._base_dir = Path(tempfile.mkdtemp(prefix="a2ald-net-"))
        return self._base_dir

    @property
    def bootstrap(self) -> str:
        """Listen address of the first peer (``"127.0.0.1:<port>"``)."""
        if not self.peers:
            raise A2aldError("network not started")
        return self.peers[0].listen_addr

    def start(self) -> None:
        """Start all peers in order and wait for each; stops everything on failure."""
        if self.peers:
            raise A2aldError("network already started")
        try:
            for index in range(self.count):
                self._start_peer(index)
        except BaseException:
            self.close()
            raise

    def _start_peer(self, index: int) -> None:
        """Create, start and wait for peer ``index`` (retry on a lost port race)."""
        boot = list(self.extra_bootstrap)
        if index > 0:
            boot.insert(0, self.peers[0].listen_addr)
        peer = A2aldPeer(
            self.base_dir / f"peer{index + 1}",
            bootstrap=boot,
            node_key=self._node_keys[index] if index < len(self._node_keys) else None,
            binary=self._binary,
            log_level=self.log_level,
            name=f"a2ald-peer{index + 1}",
        )
        self.peers.append(peer)  # before starting: close() must see it whatever happens
        join = index > 0 or (self.require_join and bool(boot))
        for attempt in range(1, self.START_ATTEMPTS + 1):
            peer.start()
            try:
                peer.wait_ready(self.ready_timeout, require_peers=join)
            except A2aldStartError:
                peer.stop()
                port_race = "address already in use" in peer.log_tail(5)
                if attempt == self.START_ATTEMPTS or not port_race or not peer.reallocate_ports():
                    raise
                log.warning("%s lost a port race; retrying with new ports", peer.name)
                continue
            return

    def close(self) -> None:
        """Stop every peer and remove the temporary directory if we made it.

        All peers get SIGTERM at once (each needs ~3 s to exit), then each is waited for.
        """
        peers, self.peers = self.peers, []
        for peer in reversed(peers):
            try:
                peer.terminate()
            except OSError:
                log.exception("failed to signal %s", peer.name)
        for peer in reversed(peers):
            try:
                peer.stop()
            except Exception:
                log.exception("failed to stop %s", peer.name)
        if self._owns_dir and self._base_dir is not None:
            shutil.rmtree(self._base_dir, ignore_errors=True)
            self._base_dir = None
