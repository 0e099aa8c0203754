"""Text forms of blockchain-owned AIDs: Ethereum EIP-55 and Paralism bech32/base58check."""

from __future__ import annotations

from typing import Final

from .. import _digest
from ..errors import DecodeError
from ._keccak import keccak256

__all__ = [
    "base58check_decode",
    "bech32_decode_p2wpkh",
    "bech32_encode_p2wpkh",
    "eip55",
    "paralism_bech32_decode",
    "paralism_bech32_encode",
    "parse_eip55",
]


def eip55(addr20: bytes) -> str:
    """The EIP-55 checksummed ``0x`` form of a 20-byte Ethereum address."""
    lower = addr20.hex()
    digest = keccak256(lower.encode()).hex()
    out = [c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(lower)]
    return "0x" + "".join(out)


def parse_eip55(text: str) -> bytes:
    """Parse ``0x`` + 40 hex: all-lowercase is accepted as is, any other casing must be EIP-55."""
    if len(text) != 42 or text[:2] not in ("0x", "0X"):
        raise DecodeError("Ethereum address must be 0x followed by 40 hex digits")
    body = text[2:]
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        raise DecodeError("Ethereum address has non-hex characters") from None
    if body != body.lower() and eip55(raw)[2:] != body:
        raise DecodeError("Ethereum address has a bad EIP-55 checksum (wrong letter case)")
    return raw


_CHARSET: Final = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GEN: Final = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= _GEN[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], frm: int, to: int, pad: bool) -> list[int]:
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << to) - 1
    for value in data:
        acc = (acc << frm) | value
        bits += frm
        while bits >= to:
            bits -= to
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to - bits)) & maxv)
    elif bits >= frm or ((acc << (to - bits)) & maxv):
        raise DecodeError("bech32: invalid padding")
    return out


def _bech32_encode(hrp: str, data: list[int]) -> str:
    polymod = _polymod(_hrp_expand(hrp) + data + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in data + checksum)


def _bech32_decode(text: str, hrps: tuple[str, ...]) -> list[int]:
    """The 5-bit data groups of a bech32 (not bech32m) string whose HRP is one of ``hrps``."""
    if text.lower() != text and text.upper() != text:
        raise DecodeError("bech32: mixed case")
    text = text.lower()
    pos = text.rfind("1")
    hrp, rest = text[:pos], text[pos + 1 :]
    if hrp not in hrps or len(rest) < 7:
        raise DecodeError("bech32: unknown prefix or too short")
    try:
        data = [_CHARSET.index(c) for c in rest]
    except ValueError:
        raise DecodeError("bech32: invalid character") from None
    if _polymod(_hrp_expand(hrp) + data) != 1:
        raise DecodeError("bech32: bad checksum")
    return data[:-6]


def bech32_encode_p2wpkh(hrp: str, program: bytes) -> str:
    """BIP-173 bech32 of witness version 0 and a 20-byte program (``bc1q…``, 42 characters).

    This is Bitcoin's segwit address, *not* how a2al spells a Paralism AID; see
    :func:`paralism_bech32_encode`.
    """
    return _bech32_encode(hrp, [0, *_convert_bits(program, 8, 5, True)])


def bech32_decode_p2wpkh(text: str, hrps: tuple[str, ...]) -> bytes:
    """Decode a BIP-173 (not bech32m) witness-v0 address with a 20-byte program."""
    data = _bech32_decode(text, hrps)
    if data[0] != 0:
        raise DecodeError("bech32: only witness version 0 is an AID")
    program = bytes(_convert_bits(data[1:], 5, 8, False))
    if len(program) != 20:
        raise DecodeError("bech32: witness program must be 20 bytes")
    return program


def paralism_bech32_encode(hrp: str, hash20: bytes) -> str:
    """a2al's bech32 spelling of a Paralism key hash (``bc1q…``, 43 characters).

    a2ald (``paralismCodec.Format``) encodes the *bytes* ``0x00 ‖ hash20`` as 5-bit groups
    (btcutil ``EncodeFromBase256``): 34 groups where a BIP-173 segwit address has a 5-bit
    witness version and 32 groups. Both start with ``bc1q``; they are different strings and
    neither implementation accepts the other's.
    """
    return _bech32_encode(hrp, _convert_bits(b"\x00" + hash20, 8, 5, True))


def paralism_bech32_decode(text: str, hrps: tuple[str, ...]) -> bytes:
    """Parse a2al's bech32 Paralism spelling; return the 20-byte key hash.

    Mirrors a2ald's ``parseParalismBech32``: bech32 checksum (not bech32m), groups converted
    back to bytes without padding (at most 4 zero bits left over), exactly 21 bytes with a
    leading zero byte.

    Raises:
        DecodeError: bad checksum or HRP, or not the a2al layout (a BIP-173 segwit address
            is refused with a hint naming the a2al spelling of the same hash).
    """
    data = _bech32_decode(text, hrps)
    try:
        raw = bytes(_convert_bits(data, 5, 8, False))
    except DecodeError:
        raw = b""
    if len(raw) == 21 and raw[0] == 0:
        return raw[1:]
    hint = ""
    if len(data) == 33 and data[0] == 0:
        try:
            program = bytes(_convert_bits(data[1:], 5, 8, False))
        except DecodeError:
            program = b""
        if len(program) == 20:
            hrp = text[: text.rfind("1")].lower()
            hint = (
                "; this is a BIP-173 segwit address, a2al writes the same key hash as "
                + paralism_bech32_encode(hrp, program)
            )
    raise DecodeError(
        "bech32: not an a2al Paralism address (bech32 of a zero byte and the 20-byte key hash, "
        f"43 characters){hint}"
    )


_B58: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58check_decode(text: str, version: int) -> bytes:
    """Decode Base58Check with a one-byte version prefix; return the 20-byte payload."""
    n = 0
    for c in text:
        idx = _B58.find(c)
        if idx < 0:
            raise DecodeError("base58: invalid character")
        n = n * 58 + idx
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    pad = len(text) - len(text.lstrip("1"))
    raw = b"\x00" * pad + body
    if len(raw) != 25:
        raise DecodeError("base58check: wrong length for a P2PKH address")
    payload, check = raw[:-4], raw[-4:]
    if _digest.sha256(_digest.sha256(payload).digest()).digest()[:4] != check:
        raise DecodeError("base58check: bad checksum")
    if payload[0] != version:
        raise DecodeError("base58check: unexpected version byte")
    return payload[1:]
