"""The send side of the endpoint's UDP socket: ``sendto``, GSO runs and what the kernel refuses.

:class:`DatagramSender` sends what the cores queued, in order. On Linux, runs of equal-sized
datagrams to one address leave in one GSO ``sendmsg`` (:mod:`~a2al_mcp.transport.udp_offload`);
if the kernel refuses GSO, the sender falls back to one ``sendto`` per datagram for good. A
full send buffer drops the datagram (as the network would); any other refusal, or an address
the socket cannot reach (:class:`~a2al_mcp.transport.udp_addr.SendTargets`), is counted and
logged through the endpoint's rate-limited log. Nothing here raises for a send.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence

from .._types import Addr
from .udp_addr import SendTargets
from .udp_offload import GSO_UNSUPPORTED, gso_runs, send_segments

__all__ = ["DatagramSender"]

LogLimited = Callable[..., None]
"""``log_limited(key, msg, *args)``: log a warning at most once per interval per key."""


class DatagramSender:
    """Sends datagrams on one UDP socket and counts what became of them.

    Args:
        sock: the endpoint's bound, non-blocking socket (not owned: never closed here).
        family: its address family (IPv4 destinations go IPv4-mapped on a dual-stack one).
        gso: try UDP GSO for runs (the platform must have it, see
            :func:`~a2al_mcp.transport.udp_offload.gso_supported`).
        log_limited: the endpoint's rate-limited warning log.
        logger: where the one-off "GSO turned off" note goes.
    """

    __slots__ = (
        "_log_limited",
        "_logger",
        "_sock",
        "_targets",
        "errors",
        "gso",
        "gso_sends",
        "send_dropped",
        "sent",
    )

    def __init__(
        self,
        sock: socket.socket,
        family: socket.AddressFamily,
        *,
        gso: bool,
        log_limited: LogLimited,
        logger: logging.Logger,
    ) -> None:
        self._sock = sock
        self._targets = SendTargets(family)
        self._log_limited = log_limited
        self._logger = logger
        self.gso = gso
        """Whether runs still go out with GSO (turned off for good when the kernel refuses)."""
        self.sent = 0
        """Datagrams handed to the kernel (each segment of a GSO send counts)."""
        self.gso_sends = 0
        """``sendmsg`` calls that carried several datagrams (GSO)."""
        self.send_dropped = 0
        """Datagrams dropped because the socket's send buffer was full (BlockingIOError)."""
        self.errors = 0
        """Datagrams the kernel refused, or to an address this socket cannot reach."""

    def send_all(self, datagrams: Sequence[tuple[bytes, Addr]]) -> None:
        """Send ``datagrams`` in order (runs of equal-sized ones with GSO, if on)."""
        if self.gso and len(datagrams) > 1:
            self._send_runs(datagrams)
        else:
            for data, addr in datagrams:
                self.send(data, addr)

    def send(self, data: bytes, addr: Addr) -> None:
        """Send one datagram to a core's destination."""
        target = self._targets.target(addr)
        if target is None:
            self.errors += 1
            self._log_limited("send", "endpoint.send_error addr=%s error=unreachable family", addr)
            return
        self.send_raw(data, target)

    def send_raw(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send one datagram to an address in the socket's own form (as it reported it)."""
        try:
            self._sock.sendto(data, addr)
        except BlockingIOError:
            self.send_dropped += 1
        except OSError as exc:
            self.errors += 1
            self._log_limited("send", "endpoint.send_error addr=%s error=%r", addr, exc)
        else:
            self.sent += 1

    def _send_runs(self, datagrams: Sequence[tuple[bytes, Addr]]) -> None:
        """Send ``datagrams`` in order, each run of equal-sized datagrams to one address
        (the last of a run may be shorter) in one GSO ``sendmsg``."""
        for i, j, size in gso_runs(datagrams):
            if j - i == 1 or not self.gso:
                for k in range(i, j):
                    self.send(*datagrams[k])
            else:
                self._send_gso([d for d, _ in datagrams[i:j]], size, datagrams[i][1])

    def _send_gso(self, segments: list[bytes], size: int, addr: Addr) -> None:
        target = self._targets.target(addr)
        if target is None:
            self.errors += len(segments)
            self._log_limited("send", "endpoint.send_error addr=%s error=unreachable family", addr)
            return
        try:
            send_segments(self._sock, segments, size, target)
        except BlockingIOError:
            self.send_dropped += len(segments)
        except OSError as exc:
            if exc.errno not in GSO_UNSUPPORTED:
                self.errors += len(segments)
                self._log_limited("send", "endpoint.send_error addr=%s error=%r", addr, exc)
                return
            self.gso = False  # this kernel or path has no UDP GSO: one datagram per send
            self._logger.info("endpoint.gso_disabled error=%r", exc)
            for data in segments:
                self.send_raw(data, target)
        else:
            self.sent += len(segments)
            self.gso_sends += 1
