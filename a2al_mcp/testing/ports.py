"""Free 127.0.0.1 ports for test servers, never handed out twice by one process."""

from __future__ import annotations

import socket
import threading

from .a2ald_errors import A2aldError

__all__ = ["free_port"]

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
