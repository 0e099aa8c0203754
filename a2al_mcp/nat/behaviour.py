"""RFC 5780 NAT behaviour discovery against one STUN server that offers OTHER-ADDRESS. Pure.

Order matters (RFC 5780 §4.3–§4.4): the filtering tests go first and only to the primary
address, because the mapping test sends to the alternate IP and would open an
address-dependent filter for it, making the change-IP answer pass.

1. test I (done by the caller): Binding to the primary ``P`` → mapped ``M1``, OTHER-ADDRESS ``A``.
2. filtering, both at once to ``P``: CHANGE-REQUEST change-IP+port (answered from ``A.ip:A.port``
   ⇒ endpoint-independent filtering) and change-port (answered from ``P.ip:A.port`` ⇒
   address-dependent); neither ⇒ address-and-port-dependent.
3. mapping: Binding to ``A.ip:P.port`` → ``M2``; ``M2 == M1`` ⇒ endpoint-independent mapping,
   else destination-dependent (symmetric).

An answer that does not come from where the CHANGE-REQUEST asked (a server ignoring the
attribute) or an error answer makes that test inconclusive instead of a false "open".
"""

from __future__ import annotations

import dataclasses
from enum import Enum

from .._dataclass import dataclass
from .._types import Addr
from .stun import CHANGE_IP, CHANGE_PORT, StunAnswer

__all__ = ["Behaviour", "BehaviourTest", "Filtering", "Mapping", "StunAsk"]


class Mapping(Enum):
    ENDPOINT_INDEPENDENT = "endpoint-independent"
    DEPENDENT = "destination-dependent"


class Filtering(Enum):
    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What the tests found; None where a test was inconclusive or has not run."""

    server: Addr
    mapped: Addr
    """Test I's mapped address (towards the primary address)."""
    mapping: Mapping | None = None
    filtering: Filtering | None = None


@dataclass(frozen=True, slots=True)
class StunAsk:
    """A Binding request the test wants sent."""

    server: Addr
    purpose: str
    change: int = 0


FILTER_IP = "filter-ip"
FILTER_PORT = "filter-port"
MAPPING = "mapping"


class BehaviourTest:
    """One run of the filtering and mapping tests, after test I gave ``mapped`` and ``other``."""

    def __init__(self, server: Addr, mapped: Addr, other: Addr) -> None:
        self.server = server
        self._mapped = mapped
        self._other = other
        self._waiting: set[str] = set()
        self._answered: set[str] = set()
        self._inconclusive: set[str] = set()
        self.result = Behaviour(server, mapped)
        self._phase = "filter"
        self.done = False

    def start(self) -> list[StunAsk]:
        if self._other[0] == self.server[0] or self._other[1] == self.server[1]:
            self.done = True  # an alternate address that is not one: no test possible
            return []
        self._waiting = {FILTER_IP, FILTER_PORT}
        return [StunAsk(self.server, FILTER_IP, CHANGE_IP | CHANGE_PORT),
                StunAsk(self.server, FILTER_PORT, CHANGE_PORT)]  # fmt: skip

    def on_answer(self, answer: StunAnswer) -> list[StunAsk]:
        purpose = answer.purpose
        if purpose not in self._waiting:
            return []
        self._waiting.discard(purpose)
        if answer.mapped is None:
            self._inconclusive.add(purpose)
        elif purpose == MAPPING:
            mapping = (Mapping.ENDPOINT_INDEPENDENT if answer.mapped == self._mapped
                       else Mapping.DEPENDENT)  # fmt: skip
            self.result = dataclasses.replace(self.result, mapping=mapping)
        elif self._came_from_changed(purpose, answer.source):
            self._answered.add(purpose)
        else:
            self._inconclusive.add(purpose)
        return self._next()

    def on_timeout(self, purpose: str) -> list[StunAsk]:
        if purpose not in self._waiting:
            return []
        self._waiting.discard(purpose)
        return self._next()

    def _came_from_changed(self, purpose: str, source: Addr) -> bool:
        if purpose == FILTER_IP:
            return source[0] != self.server[0] and source[1] != self.server[1]
        return source[0] == self.server[0] and source[1] != self.server[1]

    def _next(self) -> list[StunAsk]:
        if self._waiting:
            return []
        if self._phase == "filter":
            self._filtering()
            self._phase = MAPPING
            self._waiting = {MAPPING}
            return [StunAsk((self._other[0], self.server[1]), MAPPING)]
        self.done = True
        return []

    def _filtering(self) -> None:
        if FILTER_IP in self._answered:
            f: Filtering | None = Filtering.ENDPOINT_INDEPENDENT
        elif FILTER_IP in self._inconclusive or FILTER_PORT in self._inconclusive:
            f = None
        elif FILTER_PORT in self._answered:
            f = Filtering.ADDRESS_DEPENDENT
        else:
            f = Filtering.ADDRESS_AND_PORT_DEPENDENT
        self.result = dataclasses.replace(self.result, filtering=f)
