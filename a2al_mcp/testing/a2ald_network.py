"""A network of N a2ald peers on loopback, torn down as one."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

from .a2ald_errors import A2aldError, A2aldStartError
from .a2ald_peer import A2aldPeer

__all__ = ["A2aldNetwork"]

log = logging.getLogger(__name__)


class A2aldNetwork:
    """N a2ald peers on loopback: peer 0 first, the others bootstrap from it.

    ``extra_bootstrap`` (``"host:port"`` entries, e.g. our own node) is given to every peer;
    peer 0 then also waits until it has a DHT peer, unless ``require_join`` is false (the
    other peers always wait until they have joined).
    Use as a context manager; everything is torn down on exit, also after failures.  Without
    ``base_dir`` a temporary directory is used and removed on exit (unless ``keep_dirs``).
    """

    START_ATTEMPTS: Final = 3

    def __init__(
        self,
        count: int = 4,
        *,
        base_dir: Path | None = None,
        extra_bootstrap: Sequence[str] = (),
        node_keys: Sequence[bytes | None] = (),
        ready_timeout: float = 20.0,
        require_join: bool = True,
        log_level: str = "info",
        keep_dirs: bool = False,
        binary: Path | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("count must be >= 1")
        self.count = count
        self.extra_bootstrap = list(extra_bootstrap)
        self.ready_timeout = ready_timeout
        self.require_join = require_join
        self.log_level = log_level
        self._node_keys = list(node_keys)
        self._binary = binary
        self._base_dir = base_dir
        self._owns_dir = base_dir is None and not keep_dirs
        self.peers: list[A2aldPeer] = []

    def __enter__(self) -> A2aldNetwork:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def base_dir(self) -> Path:
        """Directory holding ``peer1``, ``peer2`` ... data dirs."""
        if self._base_dir is None:
            self._base_dir = Path(tempfile.mkdtemp(prefix="a2ald-net-"))
        return self._base_dir

    @property
    def bootstrap(self) -> str:
        """Listen address of the first peer (``"127.0.0.1:<port>"``)."""
        if not self.peers:
            raise A2aldError("network not started")
        return self.peers[0].listen_addr

    def start(self) -> None:
        """Start all peers in order and wait for each; stops everything on failure."""
        if self.peers:
            raise A2aldError("network already started")
        try:
            for index in range(self.count):
                self._start_peer(index)
        except BaseException:
            self.close()
            raise

    def _start_peer(self, index: int) -> None:
        """Create, start and wait for peer ``index`` (retry on a lost port race)."""
        boot = list(self.extra_bootstrap)
        if index > 0:
            boot.insert(0, self.peers[0].listen_addr)
        peer = A2aldPeer(
            self.base_dir / f"peer{index + 1}",
            bootstrap=boot,
            node_key=self._node_keys[index] if index < len(self._node_keys) else None,
            binary=self._binary,
            log_level=self.log_level,
            name=f"a2ald-peer{index + 1}",
        )
        self.peers.append(peer)  # before starting: close() must see it whatever happens
        join = index > 0 or (self.require_join and bool(boot))
        for attempt in range(1, self.START_ATTEMPTS + 1):
            peer.start()
            try:
                peer.wait_ready(self.ready_timeout, require_peers=join)
            except A2aldStartError:
                peer.stop()
                port_race = "address already in use" in peer.log_tail(5)
                if attempt == self.START_ATTEMPTS or not port_race or not peer.reallocate_ports():
                    raise
                log.warning("%s lost a port race; retrying with new ports", peer.name)
                continue
            return

    def close(self) -> None:
        """Stop every peer and remove the temporary directory if we made it.

        All peers get SIGTERM at once (each needs ~3 s to exit), then each is waited for.
        """
        peers, self.peers = self.peers, []
        for peer in reversed(peers):
            try:
                peer.terminate()
            except OSError:
                log.exception("failed to signal %s", peer.name)
        for peer in reversed(peers):
            try:
                peer.stop()
            except Exception:
                log.exception("failed to stop %s", peer.name)
        if self._owns_dir and self._base_dir is not None:
            shutil.rmtree(self._base_dir, ignore_errors=True)
            self._base_dir = None
