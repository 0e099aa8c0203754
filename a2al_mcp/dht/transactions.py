"""The DHT core's transaction table (a2al-wire §4.5): the operations running and the requests
each has in flight, by tx_id, with deadlines, remaining attempts and owner. Sans-I/O.

A response matches a request when its tx_id, its type and its source address all do. A
request whose deadline passes is handed back once (:meth:`Transactions.pop_due`); the core
then retries it under a fresh tx_id or fails it to its operation. An operation that ended
leaves its requests in the table (their answers still teach the routing table, their
timeouts still count) but no longer owns them; a cancelled one takes them out.
"""

from __future__ import annotations

import heapq
from typing import Final

from .._dataclass import dataclass
from .._types import Addr
from ..identity.aid import NodeId
from ..protocol import dht_messages as dm
from .effects import Op

__all__ = ["RESPONSES", "Pending", "Transactions", "response_of"]

_RESPONSE_OF: Final = {
    dm.MsgType.PING: dm.MsgType.PONG,
    dm.MsgType.FIND_NODE: dm.MsgType.FIND_NODE_RESP,
    dm.MsgType.FIND_VALUE: dm.MsgType.FIND_VALUE_RESP,
    dm.MsgType.STORE: dm.MsgType.STORE_RESP,
    dm.MsgType.DHT_PUSH: dm.MsgType.DHT_PUSH_ACK,
}
RESPONSES: Final = frozenset(_RESPONSE_OF.values())
"""The message types that answer a request."""


def response_of(request: dm.MsgType) -> dm.MsgType:
    """The message type that answers ``request``."""
    return _RESPONSE_OF[request]


@dataclass(slots=True)
class Pending:
    """One request in flight."""

    tx_id: bytes
    addr: Addr
    expect: dm.MsgType
    deadline: float
    op_id: int
    """The operation it belongs to (0: the core's own, e.g. a routing-table check)."""
    node_id: NodeId | None
    body: dm.Body
    attempts_left: int
    timeout_s: float


class Transactions:
    """Running operations by id; requests in flight by tx_id and by deadline (a heap whose
    stale entries are skipped)."""

    __slots__ = ("_next_op", "_ops", "_pending", "_timers")

    def __init__(self) -> None:
        self._ops: dict[int, Op] = {}
        self._next_op = 1
        self._pending: dict[bytes, Pending] = {}
        self._timers: list[tuple[float, bytes]] = []

    # -- operations -------------------------------------------------------------------

    def new_op_id(self) -> int:
        op_id = self._next_op
        self._next_op += 1
        return op_id

    def register(self, op: Op) -> None:
        self._ops[op.op_id] = op

    def running(self, op_id: int) -> Op | None:
        """The operation ``op_id`` if it is still running."""
        op = self._ops.get(op_id)
        return None if op is None or op.done else op

    def end(self, op: Op) -> None:
        """``op`` ended: its requests stay in flight but no longer reach it."""
        op.done = True
        self._ops.pop(op.op_id, None)
        op.txs.clear()

    def cancel(self, op_id: int) -> bool:
        """Stop ``op_id`` and forget its requests; True if it was still running."""
        op = self._ops.pop(op_id, None)
        if op is None or op.done:
            return False
        op.done = True
        for tx_id in op.txs:
            del self._pending[tx_id]  # its heap entry is skipped by pop_due/next_deadline
        op.txs.clear()
        return True

    # -- requests ---------------------------------------------------------------------

    def add(self, p: Pending) -> None:
        self._pending[p.tx_id] = p
        heapq.heappush(self._timers, (p.deadline, p.tx_id))
        op = self._ops.get(p.op_id)
        if op is not None:
            op.txs.add(p.tx_id)

    def remove(self, p: Pending) -> None:
        """Take an answered or timed-out request out (its heap entry is skipped later)."""
        del self._pending[p.tx_id]
        op = self._ops.get(p.op_id)
        if op is not None:
            op.txs.discard(p.tx_id)

    def match(self, tx_id: bytes, msg_type: dm.MsgType, addr: Addr) -> Pending | None:
        """The request a response answers, or None (unsolicited)."""
        p = self._pending.get(tx_id)
        if p is None or p.expect != msg_type or p.addr != addr:
            return None
        return p

    def pop_due(self, now: float) -> Pending | None:
        """The next request whose deadline passed by ``now``, taken off the deadline heap
        (still held: the caller removes it), or None."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, tx_id = heapq.heappop(timers)
            p = self._pending.get(tx_id)
            if p is None or p.deadline > now:
                continue
            return p
        return None

    def next_deadline(self) -> float | None:
        """The earliest deadline of a request still in flight."""
        timers, pending = self._timers, self._pending
        while timers and (
            timers[0][1] not in pending or pending[timers[0][1]].deadline != timers[0][0]
        ):
            heapq.heappop(timers)
        return timers[0][0] if timers else None
