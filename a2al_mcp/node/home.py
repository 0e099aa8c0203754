"""The node's data directory: its key, its lock, and where the inbox and peer cache live.

``DataHome(path)`` creates the directory (0700), takes an exclusive lock so two processes never
share it (the second one gets a clear error naming the first), and keeps the node's Ed25519 key
in ``node.key`` (hex seed, 0600), made on first use. Default location: the platform's user data
directory (``platformdirs``), overridden by ``A2AL_MCP_HOME`` or ``--data-dir``.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from ..errors import ConfigError, UsageError
from ..identity.keys import SigningKey
from ..identity.local import Identity

if TYPE_CHECKING:
    from .._random import Rng

__all__ = ["DataHome", "default_home"]


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("a2al-mcp", appauthor=False))


class DataHome:
    """An opened, locked data directory. Close it (or use ``with``) to release the lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser()
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(f"cannot create the data directory {self.path}: {exc}") from exc
        lock_path = self.path / "lock"
        self._lock = open(lock_path, "a+")  # noqa: SIM115 - held for the directory's lifetime
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.seek(0)
            other = self._lock.read().strip() or "another process"
            self._lock.close()
            raise UsageError(
                f"the data directory {self.path} is in use by process {other}; stop it or "
                "choose another directory (--data-dir or A2AL_MCP_HOME)"
            ) from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(str(os.getpid()))
        self._lock.flush()

    def identity(self, rng: Rng) -> Identity:
        """The node identity kept here (created on first use)."""
        key_path = self.path / "node.key"
        if key_path.exists():
            try:
                seed = bytes.fromhex(key_path.read_text().strip())
                return Identity.from_key(SigningKey(seed))
            except (ValueError, OSError) as exc:
                raise ConfigError(f"{key_path} does not hold a node key: {exc}") from exc
        key = SigningKey.generate(rng)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.seed.hex() + "\n")
        return Identity.from_key(key)

    def close(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()

    def __enter__(self) -> DataHome:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
