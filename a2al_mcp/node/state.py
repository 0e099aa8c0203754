"""The one way the node writes its files: atomically, private from creation, durable.

Every file the node keeps in its data directory (``node.key``, ``agents/<aid>.json``,
``peers.cache``, ``lock.info``) is written by :func:`write_atomic`: a temp file in the same
directory, created with mode 0600 (``O_EXCL``), written, ``fsync``-ed, renamed over the
target (``os.replace``), then the directory is ``fsync``-ed so the rename survives a power
cut. A crash at any moment leaves either the old file or the new one, never a half-written
one; what it can leave is a temp file (``.<name>.<16 hex>.tmp``), which
:func:`clean_temp` removes when the directory is opened again. The inbox is SQLite and keeps
its own journal.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
from pathlib import Path
from typing import Final

from .._random import SystemRng
from ..errors import ConfigError, DecodeError, ExtraMissing, UsageError
from ..identity.delegation import DelegationProof
from ..identity.keys import SigningKey
from ..identity.local import Identity

__all__ = [
    "TEMP_SUFFIX",
    "clean_temp",
    "ensure_dir",
    "is_temp",
    "load_agents",
    "read_text",
    "save_agent",
    "write_atomic",
]

logger = logging.getLogger(__name__)

TEMP_SUFFIX: Final = ".tmp"
_TEMP_NAME: Final = re.compile(r"^\..+\.[0-9a-f]{16}\.tmp$")
_LEGACY_TEMPS: Final = frozenset({"peers.tmp"})
"""Temp names earlier versions used (``peers.cache`` was written through ``peers.tmp``)."""
AGENT_FILE_MAX: Final = 64 * 1024
"""Largest agent key file read (ours are ~0.4 KB)."""
_DIR_FSYNC_UNSUPPORTED: Final = frozenset(
    {errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES, errno.EPERM}
)


def ensure_dir(folder: Path) -> None:
    """Create ``folder`` (and its parents) with mode 0700 if it does not exist."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"cannot create the directory {folder}: {exc}", path=str(folder)) from exc


def is_temp(path: Path) -> bool:
    """True for a temp file :func:`write_atomic` (or an earlier version) may leave behind."""
    return bool(_TEMP_NAME.match(path.name)) or path.name in _LEGACY_TEMPS


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` atomically and durably; the file is 0600 from creation.

    Raises:
        ConfigError: the file could not be written (the message names ``path`` and the OS
            reason); ``path`` is then unchanged and no temp file is left.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    folder = path.parent
    tmp = folder / f".{path.name}.{SystemRng().bytes(8).hex()}{TEMP_SUFFIX}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}", path=str(path)) from exc
    try:
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}", path=str(path)) from exc
    _fsync_dir(folder, path)


def read_text(path: Path, max_bytes: int) -> str:
    """The UTF-8 text of a small file the node keeps, read no further than ``max_bytes``.

    Raises:
        OSError: as ``open``/``read`` do (FileNotFoundError when it is not there).
        ValueError: the file is longer than ``max_bytes`` or not UTF-8 (UnicodeDecodeError).
    """
    with path.open("rb") as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ValueError(f"longer than {max_bytes} bytes")
    return raw.decode("utf-8")


def clean_temp(folder: Path) -> list[Path]:
    """Remove the temp files a crash left in ``folder`` (not recursive); returns them.

    Call it only while this process owns the directory (the data directory's lock)."""
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return removed
    except OSError as exc:
        raise ConfigError(f"cannot read the directory {folder}: {exc}", path=str(folder)) from exc
    for entry in entries:
        if is_temp(entry) and entry.is_file():
            try:
                entry.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ConfigError(
                    f"cannot remove the leftover temp file {entry}: {exc}", path=str(entry)
                ) from exc
            logger.warning("state.temp_removed path=%s (left by an interrupted write)", entry)
            removed.append(entry)
    return removed


def _fsync_dir(folder: Path, path: Path) -> None:
    """Make the rename durable. Skipped where a directory cannot be opened (Windows) or
    its file system does not sync directories."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise ConfigError(
                f"cannot make {path} durable: {exc.strerror or exc}", path=str(path)
            ) from exc
    finally:
        os.close(fd)


# -- agent keys ------------------------------------------------------------------------------


def save_agent(folder: Path, ident: Identity) -> Path:
    """Keep a delegated agent's operational key and proof in ``folder/<aid>.json`` (0600).

    Raises:
        UsageError: ``ident`` is not delegated. ConfigError: the file could not be written.
    """
    if ident.delegation is None:
        raise UsageError("only a delegated agent is kept in the agents directory")
    ensure_dir(folder)
    doc = {"aid": str(ident.aid), "operational_seed_hex": ident.key.seed.hex(),
           "delegation_proof_hex": ident.delegation.to_bytes().hex()}  # fmt: skip
    path = folder / f"{ident.aid}.json"
    write_atomic(path, json.dumps(doc))
    return path


def load_agents(folder: Path, now: float) -> list[Identity]:
    """Every agent kept in ``folder`` (after removing temp files a crash left there).

    A file that parses but whose delegation cannot be used now (expired, or its check needs
    an extra that is not installed) is skipped with a warning naming it: it is intact and
    may be usable later. A file that does not parse is refused, since the owner key is not
    kept and skipping it silently would lose the agent unnoticed.

    Raises:
        ConfigError: an agent file is unreadable or corrupt (the message names it).
    """
    if not folder.is_dir():
        return []
    clean_temp(folder)
    out: list[Identity] = []
    for path in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(read_text(path, AGENT_FILE_MAX))
            proof = DelegationProof.from_bytes(bytes.fromhex(doc["delegation_proof_hex"]))
            key = SigningKey(bytes.fromhex(doc["operational_seed_hex"]))
            named = doc["aid"]
        except (OSError, ValueError, KeyError, TypeError, DecodeError) as exc:
            raise ConfigError(
                f"the agent key file {path} is unreadable or corrupt ({exc}); move it out of "
                f"{folder} to start without that agent"
            ) from exc
        try:
            ident = Identity.from_delegation(key, proof, now)
        except (UsageError, ExtraMissing) as exc:
            logger.warning("agents.load_skipped path=%s reason=%s", path, exc)
            continue
        if named != str(ident.aid) or path.stem != str(ident.aid):
            raise ConfigError(
                f"the agent key file {path} holds the agent {ident.aid}, not {named}; move it "
                f"out of {folder} to start without it"
            )
        out.append(ident)
    return out
