"""UDP segmentation offload on Linux: GSO sends and GRO reads, and what to do without them.

With generic segmentation offload (GSO, ``UDP_SEGMENT``) a run of equal-sized datagrams to
one address leaves in one ``sendmsg``: the kernel splits it, so receivers see ordinary
datagrams. With generic receive offload (GRO, ``UDP_GRO``) the kernel hands over a run of
datagrams from one sender in one read, with the segment size in a control message; it is
split here into the datagrams it was.

Both exist only on Linux. :func:`gso_supported` and :func:`gro_supported` say whether to try
them (by :data:`~a2al_mcp._platform.PLATFORM`, which the simulated-OS test mode sets, and by
the socket's capabilities); elsewhere (macOS, Windows) the endpoint sends one datagram per
``sendto`` and reads one per ``recvfrom``, and :func:`send_segments` /
:func:`recv_coalesced` are never called: were they, they fail like a kernel without the
option (``OSError(EOPNOTSUPP)``), never with an ``AttributeError`` (Windows sockets have no
``sendmsg``/``recvmsg``). Sans-policy: what to count and log is
:mod:`~a2al_mcp.transport.endpoint`'s and :mod:`~a2al_mcp.transport.udp_send`'s.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Final

from .. import _platform
from .._types import Addr

__all__ = [
    "GSO_MAX_BYTES",
    "GSO_MAX_SEGMENTS",
    "GSO_UNSUPPORTED",
    "enable_gro",
    "gro_supported",
    "gso_runs",
    "gso_supported",
    "recv_coalesced",
    "send_segments",
]

GSO_MAX_SEGMENTS: Final = 64
"""Most datagrams handed to the kernel in one GSO ``sendmsg`` (the kernel allows 64)."""

GSO_MAX_BYTES: Final = 65_000
"""Most bytes in one GSO ``sendmsg`` (a UDP payload is below 64 KiB)."""

GSO_UNSUPPORTED: Final = frozenset({errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP})
"""The errors of a GSO send that mean this kernel or path has no UDP GSO."""

_SOL_UDP: Final = 17
_UDP_SEGMENT: Final = 103  # linux/udp.h; the socket module has no name for it in 3.11
_UDP_GRO: Final = 104  # linux/udp.h: receive runs of datagrams coalesced, with their size
_GRO_ANCILLARY: Final = socket.CMSG_SPACE(4) if hasattr(socket, "CMSG_SPACE") else 0


def gso_supported() -> bool:
    """Whether this platform may have UDP GSO (Linux; the kernel may still refuse it)."""
    return _platform.IS_LINUX and hasattr(socket.socket, "sendmsg")


def gro_supported() -> bool:
    """Whether this platform may have UDP GRO (Linux; :func:`enable_gro` asks the kernel)."""
    return _platform.IS_LINUX and hasattr(socket.socket, "recvmsg") and _GRO_ANCILLARY > 0


def enable_gro(sock: socket.socket) -> bool:
    """Ask the kernel to coalesce received runs on ``sock``; False if it refuses."""
    try:
        sock.setsockopt(_SOL_UDP, _UDP_GRO, 1)
    except OSError:
        return False
    return True


def _unsupported(what: str) -> OSError:
    return OSError(errno.EOPNOTSUPP, f"{what} needs Linux, not {sys.platform}")


def recv_coalesced(sock: socket.socket, size: int) -> tuple[bytes | list[bytes], Any]:
    """One read from a socket with GRO on: a datagram, or the list of equal-sized datagrams
    (the last may be shorter) the kernel coalesced from one sender; and the sender's address.

    Raises:
        OSError: as ``recvmsg`` (``BlockingIOError`` when there is nothing to read), or
            EOPNOTSUPP off Linux.
    """
    if sys.platform == "linux":  # mypy checks the branch only where sockets have recvmsg
        data, ancillary, _flags, raw_addr = sock.recvmsg(size, _GRO_ANCILLARY)
        for level, kind, value in ancillary:
            if level == _SOL_UDP and kind == _UDP_GRO:
                (segment,) = struct.unpack("@i", value[:4])
                if 0 < segment < len(data):
                    return [data[i : i + segment] for i in range(0, len(data), segment)], raw_addr
        return data, raw_addr
    else:  # both branches are platform-guarded, so mypy reports neither as unreachable
        raise _unsupported("UDP GRO")


def send_segments(
    sock: socket.socket, segments: Sequence[bytes], size: int, target: tuple[str, int]
) -> None:
    """Send ``segments`` (each ``size`` bytes, the last maybe shorter) in one GSO ``sendmsg``.

    Raises:
        OSError: as ``sendmsg``; an errno in :data:`GSO_UNSUPPORTED` (EOPNOTSUPP off Linux)
            means the kernel or path has no GSO.
    """
    if sys.platform == "linux":  # mypy checks the branch only where sockets have sendmsg
        sock.sendmsg(segments, [(_SOL_UDP, _UDP_SEGMENT, struct.pack("@H", size))], 0, target)
    else:
        raise _unsupported("UDP GSO")


def gso_runs(datagrams: Sequence[tuple[bytes, Addr]]) -> Iterator[tuple[int, int, int]]:
    """Split ``datagrams`` in order into runs one GSO send can carry: ``(start, stop,
    size)`` for ``datagrams[start:stop]``, all to one address and ``size`` bytes long but
    the last, which may be shorter; at most :data:`GSO_MAX_SEGMENTS` datagrams and
    :data:`GSO_MAX_BYTES` bytes."""
    i, n = 0, len(datagrams)
    while i < n:
        data, addr = datagrams[i]
        size = total = len(data)
        j = i + 1
        while j < n and j - i < GSO_MAX_SEGMENTS:
            nxt, nxt_addr = datagrams[j]
            length = len(nxt)
            if nxt_addr != addr or length > size or total + length > GSO_MAX_BYTES:
                break
            total += length
            j += 1
            if length < size:
                break  # only the last segment may be shorter
        yield i, j, size
        i = j
