"""What an ICE session reports about its selected pair, and the pair kind (pure)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from .._types import Addr

__all__ = ["PairKind", "SelectedPair", "pair_kind"]

PairKind = Literal["host", "srflx", "relay"]
"""How the selected pair reaches the peer: ``relay`` if either side is a TURN relay
candidate, else ``srflx`` if either side went through a NAT mapping (srflx or prflx),
else ``host``."""


def pair_kind(local_type: str, remote_type: str) -> PairKind:
    """The :data:`PairKind` of a pair of candidate types."""
    types = {local_type, remote_type}
    if "relay" in types:
        return "relay"
    if types & {"srflx", "prflx"}:
        return "srflx"
    return "host"


@dataclasses.dataclass(frozen=True, slots=True)
class SelectedPair:
    """The nominated pair of a connected session."""

    local: Addr
    """Our candidate's address (for a relay candidate: the address on the TURN server)."""
    remote: Addr
    """Where our datagrams go."""
    local_type: str
    remote_type: str
    rtt_s: float | None
    """Round-trip time of the connectivity check that validated the pair (retransmissions
    included if the first request was lost); None if no check of ours validated it."""

    @property
    def kind(self) -> PairKind:
        return pair_kind(self.local_type, self.remote_type)
