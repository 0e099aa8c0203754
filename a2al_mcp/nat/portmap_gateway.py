"""The default-route gateway: where NAT-PMP and PCP requests go (both RFCs: the client's
default gateway, port 5351).

Portable without extra dependencies: on Linux ``/proc/net/route``; on macOS and the BSDs the
output of ``route -n get default``; on Windows that of ``route print -4 0.0.0.0``. The parsers
are pure functions (tested on real outputs); :func:`default_gateway` does the reading and
returns None when there is no IPv4 default route or the platform's tool is missing. Blocking:
call it in a worker thread.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Final

from .._platform import IS_LINUX, IS_WINDOWS

__all__ = [
    "default_gateway",
    "parse_bsd_route_get",
    "parse_proc_net_route",
    "parse_windows_route_print",
]

_RTF_UP: Final = 0x1
_RTF_GATEWAY: Final = 0x2
_COMMAND_TIMEOUT_S: Final = 3.0


def _ipv4(text: str) -> str | None:
    try:
        ip = ipaddress.IPv4Address(text)
    except ValueError:
        return None
    return None if ip.is_unspecified or ip.is_loopback or ip.is_multicast else str(ip)


def parse_proc_net_route(text: str) -> str | None:
    """The gateway of the best IPv4 default route in Linux ``/proc/net/route`` (lowest
    metric; addresses are little-endian hex)."""
    best: tuple[int, str] | None = None
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        _iface, dest, gateway, flags, _ref, _use, metric, mask = fields[:8]
        try:
            flag_bits = int(flags, 16)
            if int(dest, 16) != 0 or int(mask, 16) != 0:
                continue
            gw_raw = int(gateway, 16).to_bytes(4, "little")
            metric_n = int(metric)
        except ValueError:
            continue
        if flag_bits & (_RTF_UP | _RTF_GATEWAY) != _RTF_UP | _RTF_GATEWAY:
            continue
        gw = _ipv4(str(ipaddress.IPv4Address(gw_raw)))
        if gw is not None and (best is None or metric_n < best[0]):
            best = (metric_n, gw)
    return best[1] if best else None


def parse_bsd_route_get(text: str) -> str | None:
    """The gateway in the output of macOS/BSD ``route -n get default``."""
    match = re.search(r"^\s*gateway:\s*(\S+)\s*$", text, re.MULTILINE)
    return _ipv4(match.group(1)) if match else None


def parse_windows_route_print(text: str) -> str | None:
    """The gateway of the lowest-metric ``0.0.0.0/0`` row of Windows ``route print``
    (``Network Destination  Netmask  Gateway  Interface  Metric``; "On-link" rows have no
    gateway)."""
    best: tuple[int, str] | None = None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 5 or fields[0] != "0.0.0.0" or fields[1] != "0.0.0.0":
            continue
        gw = _ipv4(fields[2])
        try:
            metric = int(fields[4])
        except ValueError:
            continue
        if gw is not None and (best is None or metric < best[0]):
            best = (metric, gw)
    return best[1] if best else None


def _run(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(  # fixed argv, no shell
            argv, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def default_gateway() -> str | None:
    """The IPv4 default gateway of this host (of the calling thread's network namespace on
    Linux), or None. Blocking (reads a file or runs a command)."""
    if IS_LINUX:
        for path in ("/proc/thread-self/net/route", "/proc/net/route"):
            try:
                return parse_proc_net_route(Path(path).read_text(encoding="ascii"))
            except OSError:
                continue
        return None
    if IS_WINDOWS:
        out = _run(["route", "print", "-4", "0.0.0.0"])
        return parse_windows_route_print(out) if out else None
    out = _run(["route", "-n", "get", "default"])
    return parse_bsd_route_get(out) if out else None
