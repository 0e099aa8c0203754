"""THE driver: one UDP socket shared by the DHT and QUIC cores (ARCHITECTURE §B4).

:class:`UdpEndpoint` owns a non-blocking UDP socket and two loops in a task group it owns:

* the **receive loop** waits until the socket is readable (``anyio.wait_readable``: the event
  loop's ``add_reader``, or, on a loop without it such as Windows' ``ProactorEventLoop``,
  anyio's selector thread), drains up to ``max_batch``
  datagrams, classifies each one (:func:`~a2al_mcp.transport.demux.classify`) and hands it to
  its core (all with the same ``now``), then flushes **once per batch** — the batching that
  doubles aioquic (reading/quic-perf.md §2.5); the reading and handing over is
  :class:`~a2al_mcp.transport.udp_receive.DatagramReceiver`'s;
* the **timer loop** sleeps until the earliest ``get_timer()`` of the attached cores, runs
  ``handle_timer`` on the cores that are due, and flushes.

A *flush* drains every core's ``next_event()`` into ``on_events(core_name, event)``, sends what
``datagrams_to_send(now)`` returns (:class:`~a2al_mcp.transport.udp_send.DatagramSender`), and
re-arms the timer. On Linux, runs of equal-sized datagrams to one address leave in one
``sendmsg`` with UDP generic segmentation offload (GSO) and runs from one sender arrive in one
read (GRO), see :mod:`~a2al_mcp.transport.udp_offload`; elsewhere (macOS, Windows), and if
the kernel refuses, one datagram per ``sendto``/``recvfrom``. Callers that run
a core command (``core.start_lookup(...)``) must call :meth:`UdpEndpoint.flush` afterwards,
exactly as aioquic's ``transmit()`` must follow a ``QuicConnection`` command.

On Windows, an ICMP "port unreachable" for an earlier send makes the next read of a UDP socket
fail with WSAECONNRESET; the endpoint turns those reports off
(:func:`~a2al_mcp.transport.udp_icmp.disable_icmp_resets`), and a reset that still comes is
counted (``recv_resets``) and read past.

Remote garbage and core bugs never stop the loops: every exception from a core or the
``on_events`` callback that :func:`~a2al_mcp._containment.containable` allows (everything but
cancellation and exit, Rust panics of qh3 included) is caught per datagram, batch, timer or
event, counted, and logged at most once per 30 s. This module, with its receive and send
sides (:mod:`~a2al_mcp.transport.udp_receive`, :mod:`~a2al_mcp.transport.udp_send`) and the
offload helpers (:mod:`~a2al_mcp.transport.udp_offload`), is the only code of the package
that touches sockets and the event loop directly.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import socket
from collections.abc import Callable
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Final, Self

import anyio
import anyio.abc
import anyio.lowlevel

from .._containment import containable
from .._types import Addr, DatagramCore
from ..errors import UsageError
from .demux import Kind
from .endpoint_stats import NOTHING_COUNTED, EndpointStatistics
from .udp_addr import bind_family, normalise
from .udp_icmp import disable_icmp_resets
from .udp_offload import GSO_MAX_BYTES, GSO_MAX_SEGMENTS, enable_gro, gro_supported, gso_supported
from .udp_receive import RECV_BUFFER_BYTES, DatagramReceiver
from .udp_send import DatagramSender

if TYPE_CHECKING:
    from .._clock import Clock

__all__ = [
    "GSO_MAX_BYTES",
    "GSO_MAX_SEGMENTS",
    "RECV_BUFFER_BYTES",
    "EndpointStatistics",
    "UdpEndpoint",
]

logger = logging.getLogger(__name__)

SOCKET_BUFFER_BYTES: Final = 1 << 20
"""Requested SO_RCVBUF/SO_SNDBUF (the kernel caps it at net.core.[rw]mem_max)."""

LOG_INTERVAL_S: Final = 30.0
"""Repeated failures of one kind are logged at most this often (always counted)."""

_MAX_FLUSH_PASSES: Final = 8


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class UdpEndpoint:
    """The UDP socket shared by the DHT, QUIC and STUN cores, and the loops that drive them.

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
        stun: core fed with STUN-classified datagrams (named ``"stun"``): the node's STUN
            client, whose requests leave from this socket so that the answers tell the
            address peers see it at. Without it STUN datagrams are dropped and counted.
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
        stun: DatagramCore[object] | None = None,
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
        self._family = bind_family(bind)
        self._bind: Addr = (bind[0], bind[1])
        self._clock = clock
        self._dht = dht
        self._quic = quic
        self._stun = stun
        self._cores: tuple[tuple[str, DatagramCore[object]], ...] = tuple(
            (name, core)
            for name, core in (("dht", dht), ("quic", quic), ("stun", stun))
            if core is not None
        )
        self._on_events = on_events
        self._echo = echo
        self._max_batch = max_batch
        self._gso = gso and gso_supported()
        self._gro = gro and gro_supported()
        self._sock_factory = sock_factory

        self._state = _State.UNOPENED
        self._sock: socket.socket | None = None
        self._sender: DatagramSender | None = None
        self._receiver: DatagramReceiver | None = None
        self._local_addr: Addr | None = None
        self._exit_stack: contextlib.AsyncExitStack | None = None
        # anyio primitives need a running event loop: created in __aenter__.
        self._loops_scope: anyio.CancelScope | None = None
        self._loops_done: anyio.Event | None = None
        self._wake_event: anyio.Event | None = None
        self._armed: float | None = None
        self._flushing = False
        self._flush_again = False
        self._last_log: dict[str, float] = {}

        self._core_errors = 0
        self._callback_errors = 0
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
            sender = self._sender = DatagramSender(
                sock, self._family, gso=self._gso, log_limited=self._log_limited, logger=logger
            )
            self._receiver = DatagramReceiver(
                sock,
                self._family,
                gro=self._gro,
                max_batch=self._max_batch,
                dht=self._dht,
                quic=self._quic,
                stun=self._stun,
                echo=self._echo,
                sender=sender,
                core_failed=self._core_failed,
                log_limited=self._log_limited,
            )
            self._local_addr = normalise(sock.getsockname())
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
            disable_icmp_resets(sock)
            if self._gro:
                self._gro = enable_gro(sock)
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

    def route_source(self, peer: Addr) -> str | None:
        """The local IP the host's routing table would send from to reach ``peer`` now, or
        None when there is no route (or ``peer`` is not an IP literal).

        It connects a fresh UDP socket of ``peer``'s family and reads its address: no packet
        leaves (a UDP ``connect`` only looks the route up), on every platform. A node bound
        to a wildcard address learns this way that its network changed (a new Wi-Fi, a
        new lease).
        """
        host, port = peer
        ip = host.split("%", 1)[0]
        try:
            family = bind_family((ip, port))
        except ValueError:
            return None
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((host, port))
                return normalise(probe.getsockname())[0]
        except OSError:
            return None

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

    def send_datagram(self, data: bytes, addr: Addr) -> None:
        """Send one datagram from the socket now, outside every core: the hole punch's probes,
        which must leave from the socket the NAT maps for DHT and QUIC. Send errors are
        counted as any send's (``send_errors``, ``send_dropped``), never raised; nothing is
        sent unless the endpoint is open."""
        if self._state is _State.OPEN and self._sender is not None:
            self._sender.send(data, addr)

    def wake(self) -> None:
        """Make the timer loop re-read every core's ``get_timer()`` now."""
        if self._wake_event is not None:
            self._wake_event.set()

    def statistics(self) -> EndpointStatistics:
        """A snapshot of the counters."""
        receiver, sender = self._receiver, self._sender
        if receiver is None or sender is None:
            return NOTHING_COUNTED  # never opened
        by_kind = dict(receiver.received_by_kind)
        by_kind[Kind.QUIC] += receiver.received_quic
        return EndpointStatistics(
            received=receiver.received,
            received_by_kind=MappingProxyType(by_kind),
            dropped=MappingProxyType(dict(receiver.dropped)),
            dropped_empty=receiver.dropped_empty,
            sent=sender.sent,
            gso_sends=sender.gso_sends,
            send_dropped=sender.send_dropped,
            send_errors=sender.errors,
            recv_errors=receiver.recv_errors,
            recv_resets=receiver.recv_resets,
            core_errors=self._core_errors,
            callback_errors=self._callback_errors,
            batches=receiver.batches,
            gro_reads=receiver.gro_reads,
            timer_fires=self._timer_fires,
        )

    # ------------------------------------------------------------------ receive side

    async def _receive_loop(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        sock, receiver = self._sock, self._receiver
        assert sock is not None and receiver is not None
        drain = receiver.drain
        monotonic = self._clock.monotonic
        task_status.started()
        while True:
            await anyio.wait_readable(sock)
            if drain(monotonic()):
                self._flush(monotonic())

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
        sender = self._sender
        assert sender is not None
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
                    sender.send_all(datagrams)
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
