"""THE driver: one UDP socket shared by the DHT and QUIC cores (ARCHITECTURE §B4).

:class:`UdpEndpoint` owns a non-blocking UDP socket and two loops in a task group it owns:

* the **receive loop** waits until the socket is readable, drains up to ``max_batch``
  datagrams, classifies each one (:func:`~a2al_mcp.transport.demux.classify`) and hands it to
  its core (all with the same ``now``), then flushes **once per batch** — the batching that
  doubles aioquic (reading/quic-perf.md §2.5);
* the **timer loop** sleeps until the earliest ``get_timer()`` of the attached cores, runs
  ``handle_timer`` on the cores that are due, and flushes.

A *flush* drains every core's ``next_event()`` into ``on_events(core_name, event)``, sends what
``datagrams_to_send(now)`` returns, and re-arms the timer. On Linux, runs of equal-sized
datagrams to one address leave in one ``sendmsg`` with UDP generic segmentation offload (GSO,
``UDP_SEGMENT``); the kernel splits them, so receivers see ordinary datagrams. If the kernel
refuses GSO, the endpoint falls back to one ``sendto`` per datagram for good. Callers that run
a core command (``core.start_lookup(...)``) must call :meth:`UdpEndpoint.flush` afterwards,
exactly as aioquic's ``transmit()`` must follow a ``QuicConnection`` command.

Remote garbage and core bugs never stop the loops: every exception from a core or the
``on_events`` callback that :func:`~a2al_mcp._containment.containable` allows (everything but
cancellation and exit, Rust panics of qh3 included) is caught per datagram, batch, timer or
event, counted, and logged at most once per 30 s. This is the only module of the package
that touches sockets and the event loop directly.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import ipaddress
import logging
import socket
import struct
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import anyio
import anyio.abc
import anyio.lowlevel

from .._containment import containable
from .._types import Addr, DatagramCore
from ..errors import UsageError
from .demux import Kind, classify, echo_reply

if TYPE_CHECKING:
    from .._clock import Clock

__all__ = ["EndpointStatistics", "UdpEndpoint"]

logger = logging.getLogger(__name__)

RECV_BUFFER_BYTES: Final = 65_535
"""Largest datagram read (a2ald's mux read buffer is 64 KiB)."""

SOCKET_BUFFER_BYTES: Final = 1 << 20
"""Requested SO_RCVBUF/SO_SNDBUF (the kernel caps it at net.core.[rw]mem_max)."""

LOG_INTERVAL_S: Final = 30.0
"""Repeated failures of one kind are logged at most this often (always counted)."""

GSO_MAX_SEGMENTS: Final = 64
"""Most datagrams handed to the kernel in one GSO ``sendmsg`` (the kernel allows 64)."""

GSO_MAX_BYTES: Final = 65_000
"""Most bytes in one GSO ``sendmsg`` (a UDP payload is below 64 KiB)."""

_SOL_UDP: Final = 17
_UDP_SEGMENT: Final = 103  # linux/udp.h; the socket module has no name for it in 3.11
_UDP_GRO: Final = 104  # linux/udp.h: receive runs of datagrams coalesced, with their size
_GRO_ANCILLARY: Final = socket.CMSG_SPACE(4) if hasattr(socket, "CMSG_SPACE") else 0
_GSO_UNSUPPORTED: Final = frozenset({errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP})
_QUIC_FIXED_BIT: Final = 0x40
"""A datagram with this bit in byte 0 can be neither an echo probe nor STUN (demux.py)."""
_MAX_FLUSH_PASSES: Final = 8
_MAX_HOST_CACHE: Final = 1024
_MAPPED_PREFIX: Final = "::ffff:"


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointStatistics:
    """A snapshot of the endpoint's counters."""

    received: int
    """Datagrams read from the socket (including empty ones)."""
    received_by_kind: Mapping[Kind, int]
    """Datagrams read, by classification."""
    dropped: Mapping[Kind, int]
    """Received datagrams nobody consumed: no core attached for the kind, echo probes with
    ``echo=False``, and STUN messages (no STUN consumer is attached to the driver)."""
    dropped_empty: int
    """Empty datagrams received."""
    sent: int
    """Datagrams handed to the kernel (each segment of a GSO send counts)."""
    gso_sends: int
    """``sendmsg`` calls that carried several datagrams (GSO)."""
    send_dropped: int
    """Datagrams dropped because the socket's send buffer was full (BlockingIOError)."""
    send_errors: int
    """Datagrams the kernel refused (any other OSError, or an address this socket cannot reach)."""
    recv_errors: int
    """Errors reported by ``recvfrom`` (for example an ICMP error queued on the socket)."""
    core_errors: int
    """Exceptions raised by a core (receive, timer, send, get_timer, next_event); each one is
    swallowed (Rust panics included; never cancellation or exit)."""
    callback_errors: int
    """Exceptions raised by the ``on_events`` callback; each one is swallowed."""
    batches: int
    """Wake-ups of the receive loop that read at least one datagram."""
    gro_reads: int
    """Reads that returned several datagrams coalesced by the kernel (UDP GRO)."""
    timer_fires: int
    """Calls of ``handle_timer`` on a core."""


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class UdpEndpoint:
    """The UDP socket shared by the DHT and QUIC cores, and the loops that drive them.

    Use it as an async context manager (anyio, asyncio backend)::

        async with UdpEndpoint(("::", 4121), clock=SystemClock(), dht=dht_core) as ep:
            dht_core.start_lookup(target, now=clock.monotonic())
            ep.flush()  # send what the command queued and re-arm the timer

    Lifetime: ``__aenter__`` binds the socket and starts both loops in a task group owned by
    the endpoint; like every anyio task group it must be left by ``__aexit__`` in the task
    that entered it, in LIFO order with other scopes (use ``async with`` or an
    ``AsyncExitStack``). :meth:`aclose` stops the loops and closes the socket early, from any
    task; it is idempotent and does not replace ``__aexit__``.

    Args:
        bind: local address; the host must be an IP literal. ``"::"`` gives a dual-stack
            socket (IPV6_V6ONLY off); IPv4-mapped source addresses are reported as plain IPv4.
        clock: the only clock the driver reads; every ``now`` handed to a core comes from it.
        dht: core fed with DHT-classified datagrams (named ``"dht"`` in ``on_events``).
        quic: core fed with QUIC-classified datagrams (named ``"quic"``).
        on_events: called with ``(core_name, event)`` for every event a core emits. Without
            it, events are drained and discarded (so they cannot pile up).
        echo: answer a2ald-style UDP echo probes (``00 EC`` …) verbatim.
        max_batch: datagrams read per readiness wake-up before flushing (a GRO read
            counts all its datagrams and may go past it).
        gso: send runs of equal-sized datagrams with UDP GSO where the platform has it
            (Linux); False always sends one datagram per ``sendto``.
        gro: let the kernel hand over runs of datagrams from one sender in one read (UDP
            GRO, Linux), split here into the datagrams they were; False reads one datagram
            per ``recvfrom``.
        sock_factory: makes the socket, called as ``sock_factory(family, socket.SOCK_DGRAM)``
            in ``__aenter__``; the endpoint then sets its options, binds it and owns it
            (closes it). Default :class:`socket.socket`; tests pass a subclass that records
            or refuses sends, so nothing patches the endpoint's internals.
    """

    def __init__(
        self,
        bind: Addr,
        *,
        clock: Clock,
        dht: DatagramCore[object] | None = None,
        quic: DatagramCore[object] | None = None,
        on_events: Callable[[str, object], None] | None = None,
        echo: bool = False,
        max_batch: int = 64,
        gso: bool = True,
        gro: bool = True,
        sock_factory: Callable[[socket.AddressFamily, socket.SocketKind], socket.socket] = (
            socket.socket
        ),
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        host, port = bind
        try:
            bind_ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"bind host must be an IP literal, got {host!r}") from None
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"bind port out of range: {port}")
        self._bind: Addr = (host, port)
        self._family = socket.AF_INET6 if bind_ip.version == 6 else socket.AF_INET
        self._clock = clock
        self._dht = dht
        self._quic = quic
        self._quic_batch: Callable[[list[tuple[bytes, Addr]], float], None] | None = getattr(
            quic, "receive_datagrams", None
        )  # a QUIC core that takes a whole batch (QuicHost) pays per batch, not per datagram
        self._cores: tuple[tuple[str, DatagramCore[object]], ...] = tuple(
            (name, core) for name, core in (("dht", dht), ("quic", quic)) if core is not None
        )
        self._on_events = on_events
        self._echo = echo
        self._max_batch = max_batch
        self._gso = gso and sys.platform == "linux" and hasattr(socket.socket, "sendmsg")
        self._gro = gro and sys.platform == "linux" and _GRO_ANCILLARY > 0
        self._sock_factory = sock_factory

        self._state = _State.UNOPENED
        self._sock: socket.socket | None = None
        self._local_addr: Addr | None = None
        self._exit_stack: contextlib.AsyncExitStack | None = None
        # anyio primitives need a running event loop: created in __aenter__.
        self._loops_scope: anyio.CancelScope | None = None
        self._loops_done: anyio.Event | None = None
        self._wake_event: anyio.Event | None = None
        self._armed: float | None = None
        self._flushing = False
        self._flush_again = False
        self._send_hosts: dict[str, str | None] = {}
        self._last_log: dict[str, float] = {}

        self._received = 0
        self._received_by_kind = dict.fromkeys(Kind, 0)
        self._received_quic = 0  # QUIC datagrams taken by the fast path (not in the dict)
        self._dropped = dict.fromkeys(Kind, 0)
        self._dropped_empty = 0
        self._sent = 0
        self._gso_sends = 0
        self._send_dropped = 0
        self._send_errors = 0
        self._recv_errors = 0
        self._core_errors = 0
        self._callback_errors = 0
        self._batches = 0
        self._gro_reads = 0
        self._timer_fires = 0

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Self:
        if self._state is not _State.UNOPENED:
            raise UsageError(f"cannot open an endpoint that is {self._state.value}")
        self._loops_scope = anyio.CancelScope()
        self._loops_done = anyio.Event()
        self._wake_event = anyio.Event()
        async with contextlib.AsyncExitStack() as stack:
            sock = self._open_socket()
            stack.callback(sock.close)
            self._sock = sock
            self._local_addr = _normalise(sock.getsockname())
            task_group = await stack.enter_async_context(anyio.create_task_group())
            await task_group.start(self._run_loops)
            self._exit_stack = stack.pop_all()
        self._state = _State.OPEN
        logger.debug("endpoint.open local=%s cores=%s", self._local_addr, self.core_names)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        stack, self._exit_stack = self._exit_stack, None
        if stack is None:
            return None
        return await stack.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        """Stop the loops and close the socket. Idempotent; safe from any task.

        The task group itself is left by ``__aexit__``; after ``aclose()`` it has no children.
        """
        if self._state is _State.CLOSED:
            return
        was_open = self._state is _State.OPEN
        self._state = _State.CLOSED
        if not was_open:
            return
        assert self._loops_scope is not None and self._loops_done is not None
        self._loops_scope.cancel()
        with anyio.CancelScope(shield=True):
            await self._loops_done.wait()
        if self._sock is not None:
            self._sock.close()
        logger.debug("endpoint.closed local=%s", self._local_addr)

    def _open_socket(self) -> socket.socket:
        sock = self._sock_factory(self._family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if self._family == socket.AF_INET6 and self._bind[0] == "::":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
            if self._gro:
                try:
                    sock.setsockopt(_SOL_UDP, _UDP_GRO, 1)
                except OSError:
                    self._gro = False
            sock.bind(self._bind)
        except BaseException:
            sock.close()
            raise
        return sock

    async def _run_loops(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        assert self._loops_scope is not None and self._loops_done is not None
        try:
            with self._loops_scope:
                async with anyio.create_task_group() as loops:
                    await loops.start(self._receive_loop)
                    await loops.start(self._timer_loop)
                    task_status.started()
        finally:
            self._loops_done.set()

    # ------------------------------------------------------------------ public API

    @property
    def local_addr(self) -> Addr:
        """The bound address (with the port the kernel chose for port 0)."""
        if self._local_addr is None:
            raise UsageError("the endpoint is not open")
        return self._local_addr

    @property
    def core_names(self) -> tuple[str, ...]:
        """Names of the attached cores, as passed to ``on_events``."""
        return tuple(name for name, _ in self._cores)

    def flush(self) -> None:
        """Deliver pending events, send pending datagrams and re-arm the timer.

        Call it after every core command. Re-entrant calls (from ``on_events``) make the
        running flush do another pass. After :meth:`aclose` it does nothing.

        Raises:
            UsageError: the endpoint has not been opened yet.
        """
        if self._state is _State.UNOPENED:
            raise UsageError("the endpoint is not open")
        if self._state is _State.OPEN:
            self._flush(self._clock.monotonic())

    def wake(self) -> None:
        """Make the timer loop re-read every core's ``get_timer()`` now."""
        if self._wake_event is not None:
            self._wake_event.set()

    def statistics(self) -> EndpointStatistics:
        """A snapshot of the counters."""
        by_kind = dict(self._received_by_kind)
        by_kind[Kind.QUIC] += self._received_quic
        return EndpointStatistics(
            received=self._received,
            received_by_kind=MappingProxyType(by_kind),
            dropped=MappingProxyType(dict(self._dropped)),
            dropped_empty=self._dropped_empty,
            sent=self._sent,
            gso_sends=self._gso_sends,
            send_dropped=self._send_dropped,
            send_errors=self._send_errors,
            recv_errors=self._recv_errors,
            core_errors=self._core_errors,
            callback_errors=self._callback_errors,
            batches=self._batches,
            gro_reads=self._gro_reads,
            timer_fires=self._timer_fires,
        )

    # ------------------------------------------------------------------ receive side

    async def _receive_loop(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        sock = self._sock
        assert sock is not None
        recvfrom = self._recv_gro if self._gro else sock.recvfrom
        max_batch = self._max_batch
        dispatch = self._dispatch
        monotonic = self._clock.monotonic
        normalise = self._normalise
        quic_batch: list[tuple[bytes, Addr]] = []
        batching = self._quic_batch is not None
        task_status.started()
        while True:
            await anyio.wait_readable(sock)
            count = 0
            now = monotonic()
            while count < max_batch:
                try:
                    data, raw_addr = recvfrom(RECV_BUFFER_BYTES)
                except BlockingIOError:
                    break
                except OSError as exc:
                    self._recv_errors += 1
                    self._log_limited("recv", "endpoint.recv_error error=%r", exc)
                    break
                if isinstance(data, list):  # a GRO run: several datagrams of one sender
                    self._gro_reads += 1
                    segments: list[bytes] | tuple[bytes] = data
                else:
                    segments = (data,)
                count += len(segments)
                addr: Addr | None = None
                for d in segments:  # each by its own first byte: QUIC and DHT share a socket
                    if d and d[0] & _QUIC_FIXED_BIT and batching:
                        # the bulk of the traffic: QUIC (no STUN/echo), handed over per batch
                        if addr is None:
                            addr = normalise(raw_addr)
                        quic_batch.append((d, addr))
                    else:
                        dispatch(d, raw_addr, now)
            if quic_batch:
                self._received_quic += len(quic_batch)
                self._receive_quic_batch(quic_batch, now)
                quic_batch = []
            if count:
                self._received += count
                self._batches += 1
                self._flush(monotonic())

    def _recv_gro(self, size: int) -> tuple[bytes | list[bytes], Any]:
        """One read: a datagram, or the list of equal-sized datagrams (the last may be
        shorter) the kernel coalesced from one sender."""
        assert self._sock is not None
        data, ancillary, _flags, raw_addr = self._sock.recvmsg(size, _GRO_ANCILLARY)
        for level, kind, value in ancillary:
            if level == _SOL_UDP and kind == _UDP_GRO:
                (segment,) = struct.unpack("@i", value[:4])
                if 0 < segment < len(data):
                    return [data[i : i + segment] for i in range(0, len(data), segment)], raw_addr
        return data, raw_addr

    def _receive_quic_batch(self, batch: list[tuple[bytes, Addr]], now: float) -> None:
        assert self._quic_batch is not None
        try:
            self._quic_batch(batch, now)
        except BaseException as exc:  # the rest of the batch is lost, as if the network dropped it
            self._core_failed(exc, "quic")

    def _dispatch(self, data: bytes, raw_addr: Any, now: float) -> None:
        if data and data[0] & _QUIC_FIXED_BIT:  # QUIC, no STUN/echo
            quic = self._quic
            if quic is not None:
                self._received_quic += 1
                try:
                    quic.receive_datagram(data, self._normalise(raw_addr), now)
                except BaseException as exc:
                    self._core_failed(exc, "quic")
                return
        kind = classify(data)
        if kind is None:
            self._dropped_empty += 1
            return
        self._received_by_kind[kind] += 1
        if kind is Kind.DHT:
            core = self._dht
        elif kind is Kind.QUIC:
            core = self._quic
        else:
            if kind is Kind.ECHO and self._echo:
                self._send_raw(echo_reply(data), (raw_addr[0], raw_addr[1]))
            else:
                self._dropped[kind] += 1
            return
        if core is None:
            self._dropped[kind] += 1
            return
        try:
            core.receive_datagram(data, self._normalise(raw_addr), now)
        except BaseException as exc:
            self._core_failed(exc, kind.value)

    # ------------------------------------------------------------------ timer side

    async def _timer_loop(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        clock = self._clock
        while True:
            # A fresh event before reading the deadlines, so no wake() can be lost.
            wake = self._wake_event = anyio.Event()
            deadline = self._armed = self._next_deadline()
            if deadline is None:
                await wake.wait()
                continue
            delay = deadline - clock.monotonic()
            if delay > 0:
                with anyio.move_on_after(delay):
                    await wake.wait()
                if wake.is_set():
                    continue
            # The loop's sleep may end a hair early; never hand a core a `now` before its due time.
            now = max(clock.monotonic(), deadline)
            for name, core in self._cores:
                try:
                    timer = core.get_timer()
                    if timer is not None and timer <= now:
                        self._timer_fires += 1
                        core.handle_timer(now)
                except BaseException as exc:
                    self._core_failed(exc, name)
            self._flush(now)
            # A core whose deadline stays in the past must not starve the receive loop.
            await anyio.lowlevel.checkpoint()

    def _next_deadline(self) -> float | None:
        deadline: float | None = None
        for name, core in self._cores:
            try:
                timer = core.get_timer()
            except BaseException as exc:
                self._core_failed(exc, name)
                continue
            if timer is not None and (deadline is None or timer < deadline):
                deadline = timer
        return deadline

    def _rearm(self) -> None:
        """Wake the timer loop only if a deadline moved earlier than the one it sleeps on."""
        deadline = self._next_deadline()
        if deadline is not None and (self._armed is None or deadline < self._armed):
            self.wake()

    # ------------------------------------------------------------------ send side

    def _flush(self, now: float) -> None:
        if self._flushing:
            self._flush_again = True
            return
        self._flushing = True
        try:
            for _ in range(_MAX_FLUSH_PASSES):
                self._flush_again = False
                for name, core in self._cores:
                    self._deliver_events(name, core)
                    try:
                        datagrams = core.datagrams_to_send(now)
                    except BaseException as exc:
                        self._core_failed(exc, name)
                        continue
                    if self._gso and len(datagrams) > 1:
                        self._send_runs(datagrams)
                    else:
                        for data, addr in datagrams:
                            self._send(data, addr)
                if not self._flush_again:
                    break
        finally:
            self._flushing = False
        self._rearm()

    def _deliver_events(self, name: str, core: DatagramCore[object]) -> None:
        callback = self._on_events
        while True:
            try:
                event = core.next_event()
            except BaseException as exc:
                self._core_failed(exc, name)
                return
            if event is None:
                return
            if callback is None:
                continue
            try:
                callback(name, event)
            except BaseException as exc:
                if not containable(exc):
                    raise
                self._callback_errors += 1
                self._log_limited(
                    "callback", "endpoint.callback_error core=%s error=%r", name, exc, exc_info=True
                )

    def _normalise(self, raw_addr: Any) -> Addr:
        if self._family == socket.AF_INET:
            return raw_addr  # type: ignore[no-any-return]  # already (host, port)
        return _normalise(raw_addr)

    def _send(self, data: bytes, addr: Addr) -> None:
        target = self._target(addr)
        if target is None:
            self._send_errors += 1
            self._log_limited("send", "endpoint.send_error addr=%s error=unreachable family", addr)
            return
        self._send_raw(data, target)

    def _target(self, addr: Addr) -> tuple[str, int] | None:
        host, port = addr
        try:
            target = self._send_hosts[host]
        except KeyError:
            target = self._send_host(host)
        return None if target is None else (target, port)

    def _send_runs(self, datagrams: list[tuple[bytes, Addr]]) -> None:
        """Send ``datagrams`` in order, each run of equal-sized datagrams to one address
        (the last of a run may be shorter) in one GSO ``sendmsg``."""
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
            if j - i == 1 or not self._gso:
                for k in range(i, j):
                    self._send(*datagrams[k])
            else:
                self._send_gso([d for d, _ in datagrams[i:j]], size, addr)
            i = j

    def _send_gso(self, segments: list[bytes], size: int, addr: Addr) -> None:
        assert self._sock is not None
        target = self._target(addr)
        if target is None:
            self._send_errors += len(segments)
            self._log_limited("send", "endpoint.send_error addr=%s error=unreachable family", addr)
            return
        try:
            self._sock.sendmsg(
                segments, [(_SOL_UDP, _UDP_SEGMENT, struct.pack("@H", size))], 0, target
            )
        except BlockingIOError:
            self._send_dropped += len(segments)
        except OSError as exc:
            if exc.errno not in _GSO_UNSUPPORTED:
                self._send_errors += len(segments)
                self._log_limited("send", "endpoint.send_error addr=%s error=%r", addr, exc)
                return
            self._gso = False  # this kernel or path has no UDP GSO: one datagram per send
            logger.info("endpoint.gso_disabled error=%r", exc)
            for data in segments:
                self._send_raw(data, target)
        else:
            self._sent += len(segments)
            self._gso_sends += 1

    def _send_raw(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self._sock is not None
        try:
            self._sock.sendto(data, addr)
        except BlockingIOError:
            self._send_dropped += 1
        except OSError as exc:
            self._send_errors += 1
            self._log_limited("send", "endpoint.send_error addr=%s error=%r", addr, exc)
        else:
            self._sent += 1

    def _send_host(self, host: str) -> str | None:
        """The host string to pass to ``sendto`` on this socket, or None if unreachable.

        Only IP literals are accepted (never a name: that would block on DNS). An IPv4
        destination on a dual-stack socket becomes its IPv4-mapped IPv6 form.
        """
        target: str | None
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            target = None
        else:
            if self._family == socket.AF_INET6:
                target = f"{_MAPPED_PREFIX}{ip}" if ip.version == 4 else host
            elif ip.version == 4:
                target = host
            elif isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                target = str(ip.ipv4_mapped)
            else:
                target = None
        if len(self._send_hosts) >= _MAX_HOST_CACHE:
            self._send_hosts.clear()
        self._send_hosts[host] = target
        return target

    # ------------------------------------------------------------------ logging

    def _core_failed(self, exc: BaseException, core: str) -> None:
        """Count and log (rate-limited) an exception a core raised; re-raise it if it is
        cancellation or exit (:func:`~a2al_mcp._containment.containable`)."""
        if not containable(exc):
            raise exc
        self._core_errors += 1
        self._log_limited("core", "endpoint.core_error core=%s error=%r", core, exc, exc_info=True)

    def _log_limited(self, key: str, msg: str, *args: object, exc_info: bool = False) -> None:
        now = self._clock.monotonic()
        last = self._last_log.get(key)
        if last is not None and now - last < LOG_INTERVAL_S:
            return
        self._last_log[key] = now
        logger.warning(msg, *args, exc_info=exc_info)


def _normalise(raw_addr: Any) -> Addr:
    """``(host, port)`` from a socket address; IPv4-mapped IPv6 becomes plain IPv4."""
    host: str = raw_addr[0]
    if host.startswith(_MAPPED_PREFIX) and "." in host:
        host = host[len(_MAPPED_PREFIX) :]
    return (host, raw_addr[1])
