"""ICE credentials: the ``cred`` frame's ``u`` (ufrag) and ``p`` (password) (a2al-wire §6.4).

pion generates a 16-letter ufrag and a 32-letter password (``[A-Za-z]``, as the captured
frames show: ``AQnCKqjsQgYLhDAL`` / ``iYDoDgDAtCvnsRHJCOdJMiqvOGJHIzIC``); ours have the same
shape, drawn from the injected :class:`~a2al_mcp._random.Rng`.  Remote credentials are checked
against RFC 8445 §5.3 (ufrag 4-256 ice-chars, password 22-256 ice-chars) — pion only requires
them non-empty, aioice needs the RFC form for its own and signs with the remote password
verbatim, so nothing stricter than the RFC is asked of a peer.

Pure: no I/O, no clock; randomness only from the ``rng`` passed in.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Final

from ..errors import DecodeError

if TYPE_CHECKING:
    from .._random import Rng

__all__ = ["PWD_LENGTH", "UFRAG_LENGTH", "IceCredentials"]

UFRAG_LENGTH: Final = 16
"""pion's ufrag length (``randutil`` letters)."""
PWD_LENGTH: Final = 32
"""pion's password length."""

_LETTERS: Final = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_UFRAG: Final = re.compile(r"[A-Za-z0-9+/]{4,256}")
_PWD: Final = re.compile(r"[A-Za-z0-9+/]{22,256}")


@dataclasses.dataclass(frozen=True, slots=True)
class IceCredentials:
    """One side's ICE username fragment and password."""

    ufrag: str
    pwd: str = dataclasses.field(repr=False)

    @classmethod
    def generate(cls, rng: Rng) -> IceCredentials:
        """Fresh local credentials shaped like pion's (16 and 32 ASCII letters)."""

        def letters(n: int) -> str:
            return "".join(_LETTERS[rng.randrange(len(_LETTERS))] for _ in range(n))

        return cls(letters(UFRAG_LENGTH), letters(PWD_LENGTH))

    @classmethod
    def parse(cls, ufrag: object, pwd: object) -> IceCredentials:
        """Remote credentials from a ``cred`` frame; :class:`~a2al_mcp.errors.DecodeError`
        unless both are RFC 8445 ice-char strings of the allowed lengths."""
        if not isinstance(ufrag, str) or _UFRAG.fullmatch(ufrag) is None:
            raise DecodeError("ICE ufrag is not 4-256 ice-chars", operation="parse ICE credentials")
        if not isinstance(pwd, str) or _PWD.fullmatch(pwd) is None:
            raise DecodeError(
                "ICE password is not 22-256 ice-chars", operation="parse ICE credentials"
            )
        return cls(ufrag, pwd)
