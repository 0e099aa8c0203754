"""Identity: Ed25519 keys, AIDs and NodeIDs, delegation proofs, local identities."""

from .aid import Aid, AidVersion, NodeId
from .delegation import DelegationProof
from .keys import SigningKey, VerifyKey
from .local import DelegatedIdentity, Identity

__all__ = [
    "Aid",
    "AidVersion",
    "DelegatedIdentity",
    "DelegationProof",
    "Identity",
    "NodeId",
    "SigningKey",
    "VerifyKey",
]
