"""SHA-256 and SHA-512 from CPython's own implementations, not OpenSSL's.

``hashlib`` loads ``_hashlib``, which initialises OpenSSL's digest tables at import (about
0.65 MiB of a node's resident memory and ~2 ms of its start, issue 15), and its OpenSSL
objects cost more per call than the built-in ones on the short inputs hashed here (AIDs,
NodeIDs, record ids: ~1.0 against ~0.3 µs). The digests are the same functions, so the
wire is unchanged. An interpreter built without the built-in hashes falls back to
``hashlib``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["sha256", "sha512"]

if TYPE_CHECKING:
    from hashlib import sha256 as sha256
    from hashlib import sha512 as sha512
else:
    try:  # CPython 3.12+
        from _sha2 import sha256, sha512
    except ImportError:
        try:  # CPython 3.11
            from _sha256 import sha256
            from _sha512 import sha512
        except ImportError:  # built without them
            from hashlib import sha256, sha512
