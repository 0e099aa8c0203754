"""A local identity: the key we sign with, the AID we act as, and the proof that links them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from .._dataclass import dataclass
from ..errors import ExtraMissing, UsageError, VerificationError
from .aid import Aid
from .delegation import DelegationProof
from .keys import SigningKey

if TYPE_CHECKING:
    from .._random import Rng

__all__ = ["DelegatedIdentity", "Identity"]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who we are on the network.

    A *native* identity signs with the key its AID derives from. A *delegated* identity
    (what a2ald calls an agent) signs with an operational key and carries the owner's
    proof, which travels with every record and certificate.
    """

    key: SigningKey
    """The Ed25519 key that signs (the owner key, or the operational key)."""
    aid: Aid
    """The AID this identity acts as."""
    delegation: DelegationProof | None = None
    """The proof authorising ``key`` for ``aid``; None for native identities."""

    def __post_init__(self) -> None:
        if self.delegation is None:
            if not self.aid.matches_key(self.key.public):
                raise UsageError("a native identity's AID must derive from its key")
        else:
            if self.delegation.op_pub != bytes(self.key.public):
                raise UsageError("the delegation proof authorises a different operational key")
            if self.delegation.agent != self.aid:
                raise UsageError("the delegation proof is for a different AID")

    @classmethod
    def from_key(cls, key: SigningKey) -> Self:
        """The native identity of an Ed25519 key."""
        return cls(key, Aid.from_public_key(key.public))

    @classmethod
    def generate(cls, rng: Rng) -> Self:
        """A new random native identity."""
        return cls.from_key(SigningKey.generate(rng))

    @classmethod
    def from_delegation(cls, op_key: SigningKey, proof: DelegationProof, now: float) -> Self:
        """A delegated identity from an operational key and a proof that must verify now."""
        try:
            proof.verify(now, op_pub=bytes(op_key.public))
        except ExtraMissing:
            raise
        except VerificationError as exc:
            raise UsageError(f"cannot use this delegation: {exc}") from exc
        return cls(op_key, proof.agent, proof)

    @property
    def is_delegated(self) -> bool:
        """True if this identity signs with an operational key."""
        return self.delegation is not None

    def sign(self, message: bytes) -> bytes:
        """Sign with this identity's key."""
        return self.key.sign(message)


@dataclass(frozen=True, slots=True)
class DelegatedIdentity:
    """A freshly generated delegated identity, with the owner key shown once."""

    identity: Identity
    """The operational identity to keep."""
    master: SigningKey
    """The owner key. Store it offline; the node does not keep it."""

    @classmethod
    def generate(cls, rng: Rng, *, issued_at: int, expires_at: int = 0) -> Self:
        """A new owner key, a new operational key and the proof linking them."""
        master = SigningKey.generate(rng)
        op = SigningKey.generate(rng)
        proof = DelegationProof.create(
            master, op.public, issued_at=issued_at, expires_at=expires_at
        )
        return cls(Identity(op, proof.agent, proof), master)
