"""Which of a :class:`~a2al_mcp.transport.quic_host.QuicHost`'s connections to ask, and when
its next deadline is: the marks (a dirty set) and the deadline heap (issue 15).

**Only what moved is asked**: a send on one connection must not cost a pass over all of them,
nor must a thousand idle connections cost a pass per timer. A connection is asked for
datagrams at the host's next ``datagrams_to_send`` when it is *marked*:

* it received datagrams, or its timer fired (the host's ``handle_timer``);
* a command was issued on it — whoever issues one (``send_stream_data``, ``reset_stream``,
  ``stop_stream``, ``close``, ``send_ping``, ``after_read``'s new credit …) calls
  :meth:`QuicHost.touch <a2al_mcp.transport.quic_host.QuicHost.touch>` afterwards (the
  host's ``connect``, ``closing`` and ``drain`` do it themselves), as a command on an
  aioquic connection must be followed by ``transmit()``;
* it sent datagrams at the previous ask (it may have stopped short: pacing, a full
  congestion window, qh3's "capacity exhausted" during a handshake), until an ask finds
  nothing;
* its deadline has passed (a delayed ACK is written by ``datagrams_to_send`` itself once
  due, before the timer loop comes round).

So a connection is asked whenever a loop over all of them could have found something, and an
idle one is never asked. This holds for a *tracked* host (``tracked=True``: the
:class:`~a2al_mcp.transport.peer.QuicService`, which marks after every command it issues); an
untracked host (the default, for drivers and tests that issue commands on connections
without telling it) asks every connection at every send and reads every timer, as a plain
loop would. Deadlines sit in a heap of
``(deadline, sequence, connection)`` with lazy deletion: a connection's ``get_timer()`` is
read again only after it was marked or asked; the entry it replaces stays in the heap, is no
longer the connection's own, and is skipped when it surfaces.

Sans-I/O: no clock; the times are the host's.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection
from typing import Final, Generic, Protocol, TypeVar

__all__ = ["DUE_SLACK_S", "ConnectionSchedule"]

DUE_SLACK_S: Final = 1e-6
"""A deadline this close ahead counts as passed when asking for datagrams: a stack keeps its
time in whole microseconds (qh3) and may find an ACK due a rounding error before the float
its ``get_timer()`` gave."""


class _Timed(Protocol):
    def get_timer(self) -> float | None: ...


C = TypeVar("C", bound=_Timed)


class ConnectionSchedule(Generic[C]):
    """The marks and the deadline heap of one host's connections.

    Args:
        live: the host's live connections, a view it keeps current (read, never changed).
        tracked: only marked connections are asked and have their timer read again (see
            "Only what moved is asked"); False asks them all and reads every timer.
        on_error: called with a connection whose ``get_timer()`` raised and the exception
            (the host contains it: closes and forgets the connection, or re-raises).
    """

    __slots__ = ("_live", "_marked", "_on_error", "_sequence", "_stale", "_timer_of", "_timers",
                 "_tracked")  # fmt: skip

    def __init__(
        self,
        live: Collection[C],
        *,
        tracked: bool,
        on_error: Callable[[C, BaseException], None],
    ) -> None:
        self._live = live
        self._tracked = tracked
        self._on_error = on_error
        self._marked: dict[C, None] = {}
        """Connections to ask at the next send (an ordered set)."""
        self._stale: dict[C, None] = {}
        """Connections whose ``get_timer()`` must be read again (an ordered set)."""
        self._timers: list[tuple[float, int, C]] = []
        """Heap of (deadline, sequence, connection); an entry counts only while it is its
        connection's ``_timer_of`` (lazy deletion). Sequences are unique: connections are
        never compared."""
        self._timer_of: dict[C, tuple[float, int, C]] = {}
        self._sequence = 0

    def mark(self, conn: C) -> None:
        """Ask ``conn`` at the next send and read its timer again."""
        self._marked[conn] = None
        self._stale[conn] = None

    def ask(self, conn: C) -> None:
        """Ask ``conn`` at the next send."""
        self._marked[conn] = None

    def reread(self, conn: C) -> None:
        """Read ``conn``'s timer again before the next deadline is given."""
        self._stale[conn] = None

    def forget(self, conn: C) -> None:
        """``conn`` is gone: no mark, no timer read, its heap entry is dead."""
        self._marked.pop(conn, None)
        self._stale.pop(conn, None)
        self._timer_of.pop(conn, None)

    def take_asked(self, now: float) -> dict[C, None]:
        """The connections to ask now (an ordered set, which may hold some no longer live):
        the marked ones and, tracked, those whose deadline has passed; untracked, all. The
        marks are cleared."""
        asked, self._marked = self._marked, {}
        if self._tracked:
            self._add_due(asked, now)
        else:
            asked.update(dict.fromkeys(self._live))
        return asked

    def take_due(self, now: float) -> list[C]:
        """Pop the connections whose deadline is ``now`` or before (timers read again first);
        each leaves the heap until its timer is read again."""
        self._refresh()
        timers, timer_of = self._timers, self._timer_of
        due: list[C] = []
        while timers and timers[0][0] <= now:
            entry = heapq.heappop(timers)
            conn = entry[2]
            if timer_of.get(conn) is entry:
                del timer_of[conn]  # read again, once it fired
                due.append(conn)
        return due

    def next_deadline(self) -> float | None:
        """The earliest deadline of any connection (timers read again first)."""
        self._refresh()
        timers, timer_of = self._timers, self._timer_of
        while timers and timer_of.get(timers[0][2]) is not timers[0]:
            heapq.heappop(timers)  # replaced or gone
        return timers[0][0] if timers else None

    def _refresh(self) -> None:
        """Read the timer of every connection marked or asked since its last read (only
        those), and give each its heap entry."""
        if not self._tracked:
            self._stale.update(dict.fromkeys(self._live))
        if not self._stale:
            return
        stale, self._stale = self._stale, {}
        timers, timer_of, live = self._timers, self._timer_of, self._live
        for conn in stale:
            if conn not in live:
                continue
            try:
                t = conn.get_timer()
            except BaseException as exc:
                self._on_error(conn, exc)
                continue
            entry = timer_of.get(conn)
            if entry is not None:
                if entry[0] == t:
                    continue  # unchanged: its entry stands
                del timer_of[conn]  # its heap entry is dead from now on
            if t is not None:
                self._sequence += 1
                entry = (t, self._sequence, conn)
                timer_of[conn] = entry
                heapq.heappush(timers, entry)
        if len(timers) > 2 * len(timer_of) + 64:  # mostly dead entries: compact
            self._timers = [e for e in timers if timer_of.get(e[2]) is e]
            heapq.heapify(self._timers)

    def _add_due(self, asked: dict[C, None], now: float) -> None:
        """Add to ``asked`` the connections whose deadline has passed (the heap's entries
        up to ``now``, without popping them: :meth:`take_due` still fires them)."""
        timers, timer_of = self._timers, self._timer_of
        now += DUE_SLACK_S
        if not timers or timers[0][0] > now:
            return
        todo = [0]
        n = len(timers)
        while todo:
            i = todo.pop()
            entry = timers[i]
            if entry[0] > now:
                continue
            if timer_of.get(entry[2]) is entry:
                asked[entry[2]] = None
            child = 2 * i + 1
            if child < n:
                todo.append(child)
                if child + 1 < n:
                    todo.append(child + 1)
