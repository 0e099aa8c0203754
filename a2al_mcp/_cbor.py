"""CBOR with the semantics of the Go reference (fxamacker/cbor, canonical options).

Encoding is RFC 7049 §3.9 canonical CBOR (shortest integers, definite lengths, map keys
sorted length-first then bytewise), which is what ``cbor2.dumps(..., canonical=True)``
produces. Go's struct rules (``null`` for nil slices, omitted ``omitempty`` fields) are
applied by the callers when they build the maps.

Decoding is strict about what matters and lenient where Go is: exactly one item, no
trailing bytes, every failure a :class:`~a2al_mcp.errors.DecodeError`. Unknown keys are
ignored by the field readers (:class:`Fields`), as Go ignores them. Tagged items (major
type 6) are refused: no A2AL structure uses them, and cbor2 would otherwise build whatever
a peer asks for from its semantic tags, including shared references (tags 28/29: a 276-byte
payload that expands to gigabytes when serialised, or a cycle), sets, regexes, MIME messages
and bignums. Inputs over :data:`KEY_CHECK_MIN` bytes are walked raw first and refused if a
map key is not an integer or a string (hash-colliding array keys; see :func:`_check_keys`).

:func:`item_end` walks raw CBOR without decoding it, so signatures can be checked over
the exact bytes received (a2al-wire §1.2).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any, Final

import cbor2

from .errors import DecodeError

__all__ = [
    "Fields",
    "dumps",
    "dumps_ordered",
    "head",
    "item_end",
    "loads",
    "loads_map",
    "map_value_spans",
]

MAX_DEPTH: Final = 16
"""Nesting limit for :func:`item_end`; protocol structures are at most 5 deep."""


def _refuse_tag(*_args: object) -> Any:
    raise DecodeError("CBOR tags are not allowed in A2AL data")


# cbor2's built-in semantic tags (6.x); every other tag goes to the tag hook.
_NO_SEMANTIC_TAGS: Final = dict.fromkeys(
    (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004,
     43000, 55799),
    _refuse_tag,
)  # fmt: skip


def dumps(obj: object) -> bytes:
    """Encode ``obj`` as canonical CBOR."""
    return cbor2.dumps(obj, canonical=True)


def dumps_ordered(obj: object) -> bytes:
    """Encode ``obj`` whose maps the caller built in canonical key order (small integer keys,
    ascending). Identical to :func:`dumps` for such values and about 2.5x faster, because
    cbor2 need not sort; the DHT message bodies use it (their tests compare both)."""
    return cbor2.dumps(obj)


def head(major: int, n: int) -> bytes:
    """The shortest-form head of a CBOR item: major type and argument ``n`` (0 ≤ n < 2^64)."""
    if n < 24:
        return bytes([major << 5 | n])
    if n < 0x100:
        return bytes([major << 5 | 24, n])
    if n < 0x10000:
        return bytes([major << 5 | 25]) + n.to_bytes(2, "big")
    if n < 0x1_0000_0000:
        return bytes([major << 5 | 26]) + n.to_bytes(4, "big")
    return bytes([major << 5 | 27]) + n.to_bytes(8, "big")


KEY_CHECK_MIN: Final = 4096
"""Inputs longer than this have their map keys checked before decoding (see
:func:`_check_keys`); shorter ones cannot hold enough keys to matter (~150 at most)."""


def _check_keys(data: bytes | memoryview) -> None:
    """Walk the raw items once, refusing map keys that are not integers or strings, and tags.

    Python hashes integer tuples (what cbor2 makes of array keys) without a random seed, so a
    peer can fill one map with thousands of keys of one hash and make building it quadratic:
    2,250 such keys in a 63 KB DHT datagram cost ~150 ms to decode, ~70x an honest message of
    that size. No A2AL map has array, map, float or simple keys.

    Raises:
        DecodeError: such a key, a tag, nesting over 400 or a truncated item.
    """
    n = len(data)
    pos = 0
    # one entry per open container: [items left (-1: indefinite), is a map, items seen]
    stack: list[list[int]] = []
    left = 1  # items left at the top level
    while True:
        if stack:
            top = stack[-1]
            if top[0] == 0:
                stack.pop()
                continue
            if pos >= n:
                raise DecodeError("truncated CBOR")
            ib = data[pos]
            if top[0] == -1 and ib == 0xFF:
                pos += 1
                stack.pop()
                continue
            if top[1] and top[2] % 2 == 0 and ib >> 5 > 3:
                raise DecodeError("a CBOR map key must be an integer or a string")
            top[2] += 1
            if top[0] > 0:
                top[0] -= 1
        elif left == 0:
            return
        else:
            left = 0
        major, ai, arg, pos = _head(data, pos)
        if major in (0, 1) or (major == 7 and ai != 31):
            continue
        if major == 6:
            raise DecodeError("CBOR tags are not allowed in A2AL data")
        if major == 7:
            raise DecodeError("unexpected CBOR break")
        if major in (2, 3) and arg != -1:
            pos += arg
            if pos > n:
                raise DecodeError("truncated CBOR string")
            continue
        count = -1 if arg == -1 else arg * 2 if major == 5 else arg
        if count > n - pos:  # every item takes at least one byte
            raise DecodeError("truncated CBOR container")
        if len(stack) >= _DECODE_DEPTH_MAX:
            raise DecodeError("CBOR nested too deeply")
        stack.append([count, int(major == 5), 0])


_DECODE_DEPTH_MAX: Final = 400
"""cbor2's own nesting limit."""


def loads(data: bytes) -> Any:
    """Decode exactly one CBOR item; trailing bytes and every failure raise DecodeError."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("CBOR input must be bytes")
    if len(data) > KEY_CHECK_MIN:
        _check_keys(data)
    fp = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(
            fp, tag_hook=_refuse_tag, semantic_decoders=_NO_SEMANTIC_TAGS
        ).decode()
    except DecodeError:
        raise
    except RecursionError as exc:
        raise DecodeError("CBOR nested too deeply") from exc
    except Exception as exc:  # cbor2 raises several types (ValueError, OverflowError, ...)
        raise DecodeError(f"invalid CBOR: {exc}") from exc
    if fp.tell() != len(data):
        raise DecodeError(f"{len(data) - fp.tell()} bytes of trailing data after CBOR item")
    return value


def loads_map(data: bytes, what: str) -> Fields:
    """Decode one CBOR map and wrap it for typed field access."""
    value = loads(data)
    if not isinstance(value, dict):
        raise DecodeError(f"{what}: expected a CBOR map, got {type(value).__name__}")
    return Fields(value, what)


def _head(data: bytes | memoryview, pos: int) -> tuple[int, int, int, int]:
    """Return (major type, additional info, argument, position after the head)."""
    try:
        ib = data[pos]
    except IndexError:
        raise DecodeError("truncated CBOR") from None
    major, ai = ib >> 5, ib & 0x1F
    pos += 1
    if ai < 24:
        return major, ai, ai, pos
    if ai > 27:
        if ai == 31 and major in (2, 3, 4, 5, 7):
            return major, ai, -1, pos  # indefinite length / break
        raise DecodeError(f"invalid CBOR additional info {ai}")
    n = 1 << (ai - 24)
    end = pos + n
    if end > len(data):
        raise DecodeError("truncated CBOR")
    return major, ai, int.from_bytes(data[pos:end], "big"), end


def item_end(data: bytes | memoryview, pos: int = 0, depth: int = 0) -> int:
    """Return the offset just past the CBOR item that starts at ``pos``.

    Raises:
        DecodeError: the item is truncated, malformed or nested deeper than MAX_DEPTH.
    """
    if depth > MAX_DEPTH:
        raise DecodeError("CBOR nested too deeply")
    major, _ai, arg, pos = _head(data, pos)
    if arg == -1:  # indefinite length: items until the break byte 0xff
        if major == 7:
            raise DecodeError("unexpected CBOR break")
        per_entry = 2 if major == 5 else 1
        while True:
            if pos >= len(data):
                raise DecodeError("truncated CBOR")
            if data[pos] == 0xFF:
                return pos + 1
            for _ in range(per_entry):
                pos = item_end(data, pos, depth + 1)
    if major in (0, 1, 7):
        return pos
    if major in (2, 3):
        end = pos + arg
        if end > len(data):
            raise DecodeError("truncated CBOR string")
        return end
    if major == 6:
        return item_end(data, pos, depth + 1)
    count = arg * 2 if major == 5 else arg
    if count > len(data) - pos:  # every item takes at least one byte
        raise DecodeError("truncated CBOR container")
    for _ in range(count):
        pos = item_end(data, pos, depth + 1)
    return pos


def map_value_spans(data: bytes | memoryview) -> dict[int, tuple[int, int]]:
    """Byte spans of the values of a definite-length map's unsigned-integer keys.

    The first occurrence of a duplicated key wins; other keys are skipped.

    Raises:
        DecodeError: not a definite-length map, malformed, or trailing bytes.
    """
    major, _ai, count, pos = _head(data, 0)
    if major != 5 or count < 0:
        raise DecodeError("expected a definite-length CBOR map")
    spans: dict[int, tuple[int, int]] = {}
    for _ in range(count):
        k_end = item_end(data, pos)
        v_end = item_end(data, k_end)
        k_major, _ai, key, _ = _head(data, pos)
        if k_major == 0:
            spans.setdefault(key, (k_end, v_end))
        pos = v_end
    if pos != len(data):
        raise DecodeError(f"{len(data) - pos} bytes of trailing data after CBOR map")
    return spans


_UINT_MAX = {8: 0xFF, 16: 0xFFFF, 32: 0xFFFF_FFFF, 64: 0xFFFF_FFFF_FFFF_FFFF}


class Fields:
    """Typed, Go-like access to the integer-keyed fields of a decoded CBOR map.

    Absent keys and ``null`` read as the Go zero value unless a method says otherwise;
    a present value of the wrong type raises DecodeError naming the structure and key.
    """

    __slots__ = ("_m", "_what")

    def __init__(self, mapping: Mapping[Any, Any], what: str) -> None:
        self._m = mapping
        self._what = what

    def _bad(self, key: int, expected: str) -> DecodeError:
        got = type(self._m.get(key)).__name__
        return DecodeError(f"{self._what}: field {key} must be {expected}, got {got}")

    def has(self, key: int) -> bool:
        """True if the key is present (even with a null value)."""
        return key in self._m

    def raw(self, key: int) -> Any:
        """The decoded value as is (None if absent)."""
        return self._m.get(key)

    def bytes_(self, key: int, *, size: int | tuple[int, ...] | None = None) -> bytes:
        """A byte string (absent/null = b""), optionally of an exact size."""
        v = self._m.get(key)
        if v is None:
            v = b""
        elif not isinstance(v, bytes):
            raise self._bad(key, "a byte string")
        if size is not None:
            sizes = (size,) if isinstance(size, int) else size
            if len(v) not in sizes:
                want = " or ".join(str(s) for s in sizes)
                raise DecodeError(f"{self._what}: field {key} must be {want} bytes, got {len(v)}")
        return v

    def uint(self, key: int, bits: int = 64) -> int:
        """An unsigned integer (absent/null = 0) that fits in ``bits`` bits."""
        v = self._m.get(key)
        if v is None:
            return 0
        if type(v) is not int or v < 0:
            raise self._bad(key, "an unsigned integer")
        if v > _UINT_MAX[bits]:
            raise DecodeError(f"{self._what}: field {key} overflows uint{bits}")
        return v

    def bool_(self, key: int) -> bool:
        """A boolean (absent/null = False)."""
        v = self._m.get(key)
        if v is None:
            return False
        if not isinstance(v, bool):
            raise self._bad(key, "a boolean")
        return v

    def text(self, key: int) -> str:
        """A text string (absent/null = "")."""
        v = self._m.get(key)
        if v is None:
            return ""
        if not isinstance(v, str):
            raise self._bad(key, "a text string")
        return v

    def text_list(self, key: int) -> tuple[str, ...] | None:
        """An array of text strings; None when absent or null (Go's nil slice)."""
        v = self._m.get(key)
        if v is None:
            return None
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            raise self._bad(key, "an array of text strings")
        return tuple(v)

    def list_(self, key: int) -> list[Any] | None:
        """An array of any items; None when absent or null."""
        v = self._m.get(key)
        if v is None:
            return None
        if not isinstance(v, list):
            raise self._bad(key, "an array")
        return v

    def map_(self, key: int) -> dict[Any, Any] | None:
        """A map; None when absent or null."""
        v = self._m.get(key)
        if v is None:
            return None
        if not isinstance(v, dict):
            raise self._bad(key, "a map")
        return v

    def sub(self, key: int, what: str) -> Fields:
        """A nested map wrapped as Fields (absent/null = empty map)."""
        return Fields(self.map_(key) or {}, what)
