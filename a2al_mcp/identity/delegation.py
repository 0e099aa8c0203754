"""Delegation proofs: an owner authorises an Ed25519 operational key to act as its AID.

Wire form (a2al-wire §2.3), canonical CBOR with integer keys::

    1 master_pub  bstr 32   Ed25519 owners only
    2 op_pub      bstr 32
    3 agent_addr  bstr 21   the AID represented
    4 issued_at   uint      Unix seconds
    5 expires_at  uint      Unix seconds, 0 = never
    6 scope       uint      1 = network operations
    7 signature   bstr      64 (Ed25519) or 65 (secp256k1 recoverable)
    8 message     tstr      exact signed text, blockchain owners only

Ed25519 owners (AID 0xA0) sign ``"a2al-del\\0" ‖ canonical{1..6}``. Ethereum (0xA3) and
Paralism (0xA2) owners sign a text message with their wallet; verifying those needs the
``web3`` extra (see :mod:`a2al_mcp.identity.web3`).
"""

from __future__ import annotations

import dataclasses
from typing import Final, Self

from .. import _cbor
from .._dataclass import dataclass
from ..errors import DecodeError, ExtraMissing, VerificationError
from .aid import Aid, AidVersion
from .keys import SigningKey, VerifyKey

__all__ = ["CLOCK_SKEW_S", "SCOPE_NETWORK_OPS", "DelegationProof"]

DELEGATION_PREFIX: Final = b"a2al-del\x00"
SCOPE_NETWORK_OPS: Final = 1
CLOCK_SKEW_S: Final = 60
"""Grace period after ``expires_at`` (and the future-skew tolerance of records)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DelegationProof:
    """An owner's authorisation of an operational Ed25519 key for one AID."""

    agent: Aid
    """The AID the operational key may act as."""
    op_pub: bytes
    """The authorised Ed25519 operational public key (32 bytes)."""
    issued_at: int
    """Unix seconds; a newer delegation beats older records (RecordIsNewer)."""
    expires_at: int = 0
    """Unix seconds; 0 = never expires."""
    scope: int = SCOPE_NETWORK_OPS
    """Must be 1 (network operations)."""
    signature: bytes = b""
    """64-byte Ed25519 or 65-byte secp256k1 recoverable signature."""
    master_pub: bytes = b""
    """The Ed25519 owner key (Ed25519 owners only)."""
    message: str = ""
    """The exact text signed by a blockchain owner (Ethereum/Paralism only)."""

    # -- construction ---------------------------------------------------------------

    @classmethod
    def create(
        cls,
        master: SigningKey,
        op_pub: VerifyKey | bytes,
        *,
        issued_at: int,
        expires_at: int = 0,
        scope: int = SCOPE_NETWORK_OPS,
    ) -> Self:
        """Sign a delegation from an Ed25519 owner key to ``op_pub``."""
        unsigned = cls(
            agent=Aid.from_public_key(master.public),
            op_pub=bytes(op_pub),
            issued_at=issued_at,
            expires_at=expires_at,
            scope=scope,
            master_pub=bytes(master.public),
        )
        return dataclasses.replace(unsigned, signature=master.sign(unsigned.signed_bytes()))

    def signed_bytes(self) -> bytes:
        """What an Ed25519 owner signs: the prefix and the canonical map of fields 1-6."""
        return DELEGATION_PREFIX + _cbor.dumps(
            {
                1: self.master_pub,
                2: self.op_pub,
                3: bytes(self.agent),
                4: self.issued_at,
                5: self.expires_at,
                6: self.scope,
            }
        )

    # -- wire form --------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Canonical CBOR, as a2ald emits it."""
        m: dict[int, object] = {}
        if self.master_pub:
            m[1] = self.master_pub
        m.update({2: self.op_pub, 3: bytes(self.agent), 4: self.issued_at})
        m.update({5: self.expires_at, 6: self.scope, 7: self.signature})
        if self.message:
            m[8] = self.message
        return _cbor.dumps(m)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Parse and shape-check a proof (a2al-wire §2.3 ``ParseDelegationProof``).

        Raises:
            DecodeError: malformed CBOR or a field of the wrong size for the owner type.
        """
        f = _cbor.loads_map(data, "delegation proof")
        agent_raw = f.bytes_(3, size=21)
        op_pub = f.bytes_(2, size=32)
        master_pub = f.bytes_(1)
        signature = f.bytes_(7)
        message = f.text(8)
        version = agent_raw[0]
        if version == AidVersion.ED25519:
            if len(master_pub) != 32:
                raise DecodeError("delegation proof: Ed25519 owner needs a 32-byte master_pub")
            if len(signature) != 64:
                raise DecodeError("delegation proof: Ed25519 signature must be 64 bytes")
            if message:
                raise DecodeError("delegation proof: Ed25519 owner must not carry a message")
        elif version in (AidVersion.ETHEREUM, AidVersion.PARALISM):
            if master_pub:
                raise DecodeError("delegation proof: blockchain owner must not carry master_pub")
            if len(signature) != 65:
                raise DecodeError("delegation proof: blockchain signature must be 65 bytes")
            if not message:
                raise DecodeError("delegation proof: blockchain owner needs the signed message")
        else:
            raise DecodeError(f"delegation proof: unsupported AID version 0x{version:02x}")
        return cls(
            agent=Aid(agent_raw),
            op_pub=op_pub,
            issued_at=f.uint(4),
            expires_at=f.uint(5),
            scope=f.uint(6, 8),
            signature=signature,
            master_pub=master_pub,
            message=message,
        )

    # -- verification -----------------------------------------------------------------

    def verify(self, now: float, *, op_pub: bytes | None = None, agent: Aid | None = None) -> None:
        """Check the proof is valid at Unix time ``now``.

        Args:
            now: current Unix time in seconds.
            op_pub: if given, the operational key the proof must authorise.
            agent: if given, the AID the proof must represent.

        Raises:
            VerificationError: wrong key or AID, bad signature, wrong scope, or expired.
            ExtraMissing: a blockchain owner's proof and the ``web3`` extra is not installed.
        """
        if op_pub is not None and op_pub != self.op_pub:
            raise VerificationError("delegation proof authorises a different operational key")
        if agent is not None and agent != self.agent:
            raise VerificationError(f"delegation proof is for {self.agent}, not {agent}")
        if self.scope != SCOPE_NETWORK_OPS:
            raise VerificationError(f"delegation proof scope {self.scope} is not 1 (network ops)")
        if self.expires_at and now >= self.expires_at + CLOCK_SKEW_S:
            raise VerificationError(f"delegation proof expired at {self.expires_at}")
        version = self.agent.version
        if version == AidVersion.ED25519:
            if Aid.from_public_key(self.master_pub) != self.agent:
                raise VerificationError("delegation proof: master key does not own the AID")
            VerifyKey(self.master_pub).verify(
                self.signature, self.signed_bytes(), "delegation proof signature"
            )
        elif version in (AidVersion.ETHEREUM, AidVersion.PARALISM):
            from . import web3  # lazy: needs the optional 'web3' extra

            web3.verify_blockchain_delegation(self)
        else:
            raise VerificationError(f"delegation proof: unsupported AID version 0x{version:02x}")

    def is_valid(
        self, now: float, *, op_pub: bytes | None = None, agent: Aid | None = None
    ) -> bool:
        """Like :meth:`verify`, returning False instead of raising.

        Raises:
            ExtraMissing: "cannot check" is not "invalid", so this still raises.
        """
        try:
            self.verify(now, op_pub=op_pub, agent=agent)
        except ExtraMissing:
            raise
        except VerificationError:
            return False
        return True
