"""The node's data directory: its key, its lock, and where the inbox and peer cache live.

``DataHome(path)`` creates the directory (0700), takes an exclusive lock on ``lock`` so two
processes never share it (``flock`` where there is ``fcntl``, else ``msvcrt.locking`` of its
first byte, as on Windows) (the holder's process id is in ``lock.info``; the second one gets a
clear error naming the first), removes temp files an interrupted write left, and keeps the
node's Ed25519 key in ``node.key`` (hex seed, 0600), made on first use. Every file is written
through :func:`~a2al_mcp.node.state.write_atomic`. Default location: the platform's user data
directory (``platformdirs``), overridden by ``A2AL_MCP_HOME`` or ``--data-dir``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import platformdirs

from ..errors import ConfigError, DecodeError, UsageError
from ..identity.keys import SigningKey
from ..identity.local import Identity
from .state import clean_temp, ensure_dir, read_text, write_atomic

if TYPE_CHECKING:
    from .._random import Rng

__all__ = ["LOCK_INFO", "DataHome", "default_home"]

LOCK_INFO: Final = "lock.info"
LOCK_INFO_MAX: Final = 4096
"""Most bytes of ``lock.info`` read for the "in use by" message."""
NODE_KEY_MAX: Final = 4096
"""Largest ``node.key`` read (it holds 64 hex digits)."""


# Chosen by what the platform has, not by its name. The modules are typed Any: typeshed
# declares fcntl's and msvcrt's functions for their own platforms only, and mypy checks this
# file for Linux, macOS and Windows alike.
_fcntl: Any
_msvcrt: Any
try:  # POSIX: flock the whole lock file
    _fcntl = importlib.import_module("fcntl")
except ImportError:  # no fcntl (Windows): lock the lock file's first byte with msvcrt
    _fcntl = None
    _msvcrt = importlib.import_module("msvcrt")


def _try_lock(fd: int) -> bool:
    if _fcntl is not None:
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        _msvcrt.locking(fd, _msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _unlock(fd: int) -> None:
    if _fcntl is not None:
        _fcntl.flock(fd, _fcntl.LOCK_UN)
        return
    os.lseek(fd, 0, os.SEEK_SET)
    _msvcrt.locking(fd, _msvcrt.LK_UNLCK, 1)


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("a2al-mcp", appauthor=False))


class DataHome:
    """An opened, locked data directory. Close it (or use ``with``) to release the lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser()
        ensure_dir(self.path)
        lock_path = self.path / "lock"
        # the lock file itself is never replaced (a rename would give the next process a
        # fresh, unlocked inode): what it says about its holder lives in lock.info
        self._lock = open(lock_path, "a+")  # noqa: SIM115 - held for the directory's lifetime
        if not _try_lock(self._lock.fileno()):
            other = self._holder()
            self._lock.close()
            raise UsageError(
                f"the data directory {self.path} is in use by process {other}; stop it or "
                "choose another directory (--data-dir or A2AL_MCP_HOME)"
            )
        try:
            clean_temp(self.path)
            if lock_path.stat().st_size:  # an earlier version wrote its holder's id there
                self._lock.truncate(0)
            write_atomic(self.path / LOCK_INFO, f"{os.getpid()}\n")
        except (ConfigError, OSError) as exc:
            self.close()
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(
                f"cannot prepare the data directory {self.path}: {exc}", path=str(self.path)
            ) from exc

    def _holder(self) -> str:
        """Who holds the lock, as its ``lock.info`` (or an earlier version's ``lock``) says."""
        for path in (self.path / LOCK_INFO, self.path / "lock"):
            try:
                text = read_text(path, LOCK_INFO_MAX).strip()
            except (OSError, ValueError):
                continue
            if text:
                return text
        return "another process"

    def identity(self, rng: Rng) -> Identity:
        """The node identity kept here (created on first use).

        Raises:
            ConfigError: ``node.key`` is unreadable or corrupt, or cannot be written (the
                message names it).
        """
        key_path = self.path / "node.key"
        try:
            text = read_text(key_path, NODE_KEY_MAX)
        except FileNotFoundError:
            key = SigningKey.generate(rng)
            write_atomic(key_path, key.seed.hex() + "\n")
            return Identity.from_key(key)
        except OSError as exc:
            raise ConfigError(
                f"cannot read the node key {key_path}: {exc}", path=str(key_path)
            ) from exc
        except ValueError as exc:  # too long, or not text
            raise ConfigError(
                f"{key_path} does not hold a node key: {exc}", path=str(key_path)
            ) from exc
        try:
            return Identity.from_key(SigningKey(bytes.fromhex(text.strip())))
        except (ValueError, DecodeError) as exc:
            raise ConfigError(
                f"{key_path} does not hold a node key: {exc}", path=str(key_path)
            ) from exc

    def close(self) -> None:
        if not self._lock.closed:
            with contextlib.suppress(OSError):  # while still locked: no other holder's file
                (self.path / LOCK_INFO).unlink()
            _unlock(self._lock.fileno())
            self._lock.close()

    def __enter__(self) -> DataHome:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
