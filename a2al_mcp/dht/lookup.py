"""The iterative lookup as a state machine (a2al-wire §4.8; zikade's shape).

One engine serves three kinds: ``NODES`` (FIND_NODE: the K closest peers), ``FIRST`` (FIND_VALUE
until the first valid record: resolve) and ``ALL`` (FIND_VALUE at every close peer, records
merged: discovery and mailbox polling). The core feeds it answers and failures; it says whom
to ask next. Termination is Kademlia's: done when the K closest live candidates have all
answered (or, for ``FIRST``, at the first valid record) — fewer RPCs than a2ald's
"until the tracks are exhausted", and the same records, since replicas sit on the closest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import Enum

from .._dataclass import dataclass
from .._types import Addr
from ..errors import A2ALError
from ..identity.aid import Aid, NodeId
from ..protocol.records import Category, SignedRecord

__all__ = ["Candidate", "Lookup", "LookupKind", "valid_records"]


class LookupKind(Enum):
    NODES = "nodes"
    FIRST = "first"
    ALL = "all"


class _State(Enum):
    NEW = 0
    WAITING = 1
    DONE = 2
    FAILED = 3


@dataclass(slots=True)
class Candidate:
    """A peer the lookup knows about."""

    aid: Aid
    node_id: NodeId
    addr: Addr
    distance: int
    state: _State = _State.NEW
    hops: int = 0
    """How many answers led to this peer (0: known before the lookup began)."""


def slot_of(record: SignedRecord) -> tuple[object, ...]:
    """The identity under which aggregated records replace each other (newest wins)."""
    if record.category is Category.TOPIC:
        return ("topic", record.pubkey)
    if record.category is Category.MAILBOX:
        return ("mailbox", record.pubkey, record.payload)
    return ("sovereign", record.address, record.rec_type)


class Lookup:
    """One iterative lookup. Sans-I/O: it never sends; it tells the core whom to ask."""

    def __init__(
        self,
        target: NodeId,
        kind: LookupKind,
        *,
        self_id: NodeId,
        accept: Callable[[SignedRecord], bool] = lambda r: True,
        k: int = 16,
        alpha: int = 5,
    ) -> None:
        self.target = target
        self.kind = kind
        self._t = int(target)
        self._self_id = self_id
        self._accept = accept
        self._k = k
        self._alpha = alpha
        self._cands: dict[NodeId, Candidate] = {}
        self._records: dict[tuple[object, ...], SignedRecord] = {}
        self.found: SignedRecord | None = None
        """For FIRST: the first valid record."""
        self.queried = 0
        """RPCs sent."""
        self.answered = 0
        """Answers received."""
        self._found_hops = 0

    # -- inputs -----------------------------------------------------------------------

    def add_candidates(self, peers: Iterable[tuple[Aid, Addr]], *, hops: int = 0) -> None:
        """Learn about peers (seeds, or NodeInfos from an answer ``hops`` deep)."""
        for aid, addr in peers:
            node_id = aid.node_id
            if node_id == self._self_id or node_id in self._cands:
                continue
            self._cands[node_id] = Candidate(aid, node_id, addr, int(node_id) ^ self._t,
                                             hops=hops)  # fmt: skip

    def add_records(self, records: Iterable[SignedRecord], *, hops: int = 0) -> None:
        """Offer records (from an answer ``hops`` deep, or the local store); invalid ones are
        ignored."""
        for rec in records:
            if not self._accept(rec):
                continue
            if self.kind is LookupKind.FIRST and self.found is None:
                self.found = rec
                self._found_hops = hops
            slot = slot_of(rec)
            old = self._records.get(slot)
            if old is None or rec.is_newer_than(old):
                self._records[slot] = rec

    def on_answer(self, node_id: NodeId, peers: Iterable[tuple[Aid, Addr]],
                  records: Iterable[SignedRecord] = ()) -> None:  # fmt: skip
        """A queried peer answered."""
        c = self._cands.get(node_id)
        depth = 1
        if c is not None:
            depth = c.hops + 1
            if c.state is _State.WAITING:
                c.state = _State.DONE
                self.answered += 1
        self.add_records(records, hops=depth)
        self.add_candidates(peers, hops=depth)

    def on_failure(self, node_id: NodeId) -> None:
        """A queried peer did not answer in time."""
        c = self._cands.get(node_id)
        if c is not None and c.state is _State.WAITING:
            c.state = _State.FAILED

    def reopen(self, node_id: NodeId) -> bool:
        """Mark an answered peer as queried again (for a further page of records)."""
        c = self._cands.get(node_id)
        if c is None or c.state is not _State.DONE:
            return False
        c.state = _State.WAITING
        self.answered -= 1
        self.queried += 1
        return True

    def candidate(self, node_id: NodeId) -> Candidate:
        """The candidate entry of a known peer."""
        return self._cands[node_id]

    # -- outputs ----------------------------------------------------------------------

    def _live(self) -> list[Candidate]:
        live = [c for c in self._cands.values() if c.state is not _State.FAILED]
        live.sort(key=lambda c: c.distance)
        return live[: self._k]

    @property
    def finished(self) -> bool:
        if self.kind is LookupKind.FIRST and self.found is not None:
            return True
        return all(c.state is _State.DONE for c in self._live())

    def next_requests(self) -> list[Candidate]:
        """Candidates to query now (marked as waiting); empty when at capacity or done."""
        if self.finished:
            return []
        live = self._live()
        in_flight = sum(1 for c in self._cands.values() if c.state is _State.WAITING)
        out: list[Candidate] = []
        for c in live:
            if in_flight + len(out) >= self._alpha:
                break
            if c.state is _State.NEW:
                c.state = _State.WAITING
                out.append(c)
        self.queried += len(out)
        return out

    @property
    def waiting(self) -> int:
        """RPCs in flight."""
        return sum(1 for c in self._cands.values() if c.state is _State.WAITING)

    def closest(self) -> list[Candidate]:
        """The closest peers that answered (up to K)."""
        done = [c for c in self._cands.values() if c.state is _State.DONE]
        done.sort(key=lambda c: c.distance)
        return done[: self._k]

    def path_hops(self) -> int:
        """Sequential RPCs behind the result: for a FIRST hit, to the peer that returned the
        record (0 for a local hit); otherwise the deepest answer among the closest set."""
        if self.kind is LookupKind.FIRST and self.found is not None:
            return self._found_hops
        return max((c.hops + 1 for c in self.closest()), default=0)

    def records(self) -> list[SignedRecord]:
        """All accepted records, newest per slot."""
        return list(self._records.values())


def valid_records(
    target: NodeId, rec_type: int, wall_now: Callable[[], float]
) -> Callable[[SignedRecord], bool]:
    """A lookup's ``accept``: records of ``rec_type`` (0: any) valid under ``target`` at the
    Unix time ``wall_now()`` returns when each record is offered."""
    key = bytes(target)

    def accept(rec: SignedRecord) -> bool:
        if rec_type and rec.rec_type != rec_type:
            return False
        try:
            rec.validate(wall_now(), key=key)
        except A2ALError:
            return False
        return True

    return accept
