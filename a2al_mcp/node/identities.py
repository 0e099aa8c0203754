"""IdentityStore: the identities a node acts as, and the agent key files that keep them.

The node's own (native) identity comes first; delegated agents are added to it, created
here, imported from a sealed export, or loaded from ``data_dir/agents/`` on start. Agent
files are written and read through :mod:`a2al_mcp.node.state` (atomic, 0600, bounded). The
store is a live read-only mapping ``Aid -> Identity`` for the parts of the node that only
look identities up (the mailbox, the QUIC route check).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import anyio
import anyio.to_thread

from .._clock import Clock
from .._random import Rng
from ..errors import UsageError
from ..identity.aid import Aid
from ..identity.local import DelegatedIdentity, Identity
from .state import clean_temp, load_agents, save_agent

__all__ = ["IdentityStore"]


class IdentityStore(Mapping[Aid, Identity]):
    """The local identities, by AID (the node's own first)."""

    def __init__(
        self,
        node: Identity,
        *,
        data_dir: Path | None,
        clock: Clock,
        rng: Rng,
        on_added: Callable[[Identity], None] | None = None,
    ) -> None:
        """
        Args:
            node: the node's own identity (native).
            data_dir: where agent key files are kept (``data_dir/agents``); None keeps
                nothing on disk.
            clock: wall time for delegation checks and issue dates.
            rng: keys, salts and nonces.
            on_added: called with every identity added (e.g. to make its certificate).
        """
        if node.is_delegated:
            raise UsageError("the node identity must be native; add agents with add_identity()")
        self.node = node
        self._data_dir = data_dir
        self._clock = clock
        self._rng = rng
        self._on_added = on_added
        self._by_aid: dict[Aid, Identity] = {node.aid: node}
        self._kdf_limiter = anyio.CapacityLimiter(1)
        """One passphrase KDF (scrypt, up to 64 MiB) at a time, in a worker thread."""

    # -- Mapping ------------------------------------------------------------------------

    def __getitem__(self, aid: Aid) -> Identity:
        return self._by_aid[aid]

    def __iter__(self) -> Iterator[Aid]:
        return iter(self._by_aid)

    def __len__(self) -> int:
        return len(self._by_aid)

    # -- lookups and additions ----------------------------------------------------------

    def identities(self) -> list[Identity]:
        return list(self._by_aid.values())

    def require(self, aid: Aid | None) -> Identity:
        """The local identity ``aid`` (None: the node's own).

        Raises:
            UsageError: ``aid`` is not a local identity.
        """
        if aid is None:
            return self.node
        try:
            return self._by_aid[aid]
        except KeyError:
            raise UsageError(f"{aid} is not a local identity") from None

    def add(self, identity: Identity) -> None:
        """Act as ``identity`` too (not kept on disk; see :meth:`create_agent`)."""
        self._by_aid[identity.aid] = identity
        if self._on_added is not None:
            self._on_added(identity)

    def create_agent(self) -> DelegatedIdentity:
        """A new delegated agent, kept in ``data_dir/agents/`` (0600) and added. The owner
        (master) key is returned once and **not** kept."""
        created = DelegatedIdentity.generate(self._rng, issued_at=int(self._clock.wall()))
        self._save_agent(created.identity)
        self.add(created.identity)
        return created

    def load_agents(self) -> None:
        """Add the agents kept in ``data_dir/agents``; a corrupt file refuses (``ConfigError``
        naming it). Temp files an interrupted write left are removed."""
        if self._data_dir is None:
            return
        clean_temp(self._data_dir)
        for ident in load_agents(self._data_dir / "agents", self._clock.wall()):
            self.add(ident)

    def _save_agent(self, ident: Identity) -> None:
        if self._data_dir is not None and ident.delegation is not None:
            save_agent(self._data_dir / "agents", ident)

    # -- sealed exports -----------------------------------------------------------------

    async def export(self, passphrase: str, aid: Aid | None = None) -> str:
        """A local identity (default: the node) sealed under ``passphrase`` (scrypt,
        AES-GCM). The KDF runs in a worker thread (one at a time), not on the event loop."""
        from ..identity.keyfile import seal_identity  # scrypt and AES-GCM: with first use

        ident = self.require(aid)
        salt, nonce = self._rng.bytes(16), self._rng.bytes(12)
        seal = functools.partial(seal_identity, ident, passphrase, salt=salt, nonce=nonce)
        return await anyio.to_thread.run_sync(seal, limiter=self._kdf_limiter)

    async def import_sealed(self, blob: str, passphrase: str) -> Identity:
        """Add an exported delegated agent (kept in the data directory). The export is
        bounded and checked before its KDF runs, in a worker thread (one at a time).

        Raises:
            DecodeError: not an export, or one asking for more scrypt than allowed.
            VerificationError: wrong passphrase. UsageError: not a delegated agent, or its
                delegation no longer verifies.
        """
        from ..identity.keyfile import import_identity

        open_ = functools.partial(import_identity, blob, passphrase, now=self._clock.wall())
        ident = await anyio.to_thread.run_sync(open_, limiter=self._kdf_limiter)
        if not ident.is_delegated:
            raise UsageError("only delegated agents can be imported; a node key is the node's")
        self._save_agent(ident)
        self.add(ident)
        return ident
