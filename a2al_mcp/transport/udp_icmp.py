"""Windows reports ICMP errors about earlier sends on the next read of a UDP socket: turn it off.

A datagram sent to a port nobody listens on draws an ICMP "port unreachable"; Windows then
fails the socket's next ``recvfrom`` with WSAECONNRESET (``ConnectionResetError``), and one
whose TTL ran out with WSAENETRESET. Neither says anything about the datagram being read, so
the endpoint reads past them (:mod:`~a2al_mcp.transport.udp_receive` counts them); better,
:func:`disable_icmp_resets` asks Windows not to report them at all (``SIO_UDP_CONNRESET``
and ``SIO_UDP_NETRESET`` off, through ``WSAIoctl``: Python's ``socket.ioctl`` accepts only
three other codes). Other systems do not report ICMP errors on unconnected UDP sockets.

Chosen by capability: only Windows sockets have an ``ioctl`` method, and only Windows'
``ctypes`` has ``windll``.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from typing import Final

__all__ = ["ICMP_RESET_ERRNOS", "SIO_UDP_CONNRESET", "SIO_UDP_NETRESET", "disable_icmp_resets"]

logger = logging.getLogger(__name__)

SIO_UDP_CONNRESET: Final = 0x9800000C  # _WSAIOW(IOC_VENDOR, 12), mstcpip.h
SIO_UDP_NETRESET: Final = 0x9800000F  # _WSAIOW(IOC_VENDOR, 15), Windows 8 and later

ICMP_RESET_ERRNOS: Final = frozenset(
    {errno.ECONNRESET, errno.ENETRESET, 10054, 10052}  # and Windows' WSAECONNRESET/WSAENETRESET
)
"""Errors of a read that report an ICMP error about an earlier send (Windows), not the read."""

WsaIoctl = Callable[[int, int, bool], bool]
"""``wsaioctl(socket_handle, code, on) -> succeeded``: Windows' WSAIoctl with a BOOL input."""


def disable_icmp_resets(sock: socket.socket, wsaioctl: WsaIoctl | None = None) -> bool:
    """Turn off ICMP error reports on ``sock``'s reads where the system makes them (Windows).

    Returns whether both were turned off (False elsewhere, where there is nothing to turn off,
    or if Windows refused: the reads then fail now and then, and are read past).
    """
    if not hasattr(sock, "ioctl"):  # not a Windows socket: no such reports
        return False
    call = wsaioctl if wsaioctl is not None else _find_wsaioctl()
    if call is None:
        return False
    done = True
    for code in (SIO_UDP_CONNRESET, SIO_UDP_NETRESET):
        if not call(sock.fileno(), code, False):
            logger.debug("udp.icmp_reports_not_disabled code=%#x", code)
            done = False
    return done


def _find_wsaioctl() -> WsaIoctl | None:
    """Winsock's WSAIoctl through ctypes, or None where there is no Winsock."""
    import ctypes  # only reached on Windows sockets

    windll = getattr(ctypes, "windll", None)
    if windll is None:
        return None
    try:
        function = windll.ws2_32.WSAIoctl
    except (OSError, AttributeError):
        return None
    void_p, dword = ctypes.c_void_p, ctypes.c_uint32
    function.argtypes = [ctypes.c_size_t, dword, void_p, dword, void_p, dword, void_p, void_p,
                         void_p]  # fmt: skip
    function.restype = ctypes.c_int

    def wsaioctl(handle: int, code: int, on: bool) -> bool:
        flag, returned = dword(1 if on else 0), dword(0)  # a BOOL is 4 bytes
        status = function(handle, code, ctypes.byref(flag), ctypes.sizeof(flag), None, 0,
                          ctypes.byref(returned), None, None)  # fmt: skip
        return int(status) == 0

    return wsaioctl
