"""One a2ald process: launch (only when sealed), readiness, shutdown, logs.

The REST calls come from :class:`~a2al_mcp.testing.a2ald_api.A2aldClient`.  By default the
daemon runs in the caller's namespace, which :func:`check_sealed` must find sealed before every
launch.  With ``launch=`` (an :class:`A2aldLaunch`, e.g. ``NatTestbed.a2ald_launch(host)``) it
runs in a host of the NAT testbed instead: that launch proves the testbed's outer namespace
sealed before every launch, starts the process in the host, and opens the REST sockets there.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final, Protocol

from a2al_mcp._clock import SystemClock

from .a2ald_api import A2aldClient
from .a2ald_config import daemon_env, find_a2ald, render_config
from .a2ald_errors import A2aldApiError, A2aldError, A2aldStartError
from .a2ald_sealed import check_sealed
from .ports import free_port

__all__ = ["A2aldLaunch", "A2aldPeer"]

log = logging.getLogger(__name__)

_NODE_KEY_LEN: Final = 64  # Ed25519 private key as Go stores it: seed || public key
_PR_SET_PDEATHSIG: Final = 1

_CLOCK: Final = SystemClock()


def _parent_death_hook() -> Callable[[], None] | None:
    """Return a ``preexec_fn`` making the kernel SIGTERM the daemon when its parent dies.

    Keeps a crashed or killed test run from leaving daemons behind (which would also keep the
    namespace alive).  The libc symbol is resolved here, in the parent, not after ``fork``.
    """
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


class A2aldLaunch(Protocol):
    """Where and how a daemon runs when not in the caller's own (sealed) namespace."""

    listen_host: str
    """The address peers reach the daemon at (used for :attr:`A2aldPeer.listen_addr`)."""
    config: Mapping[str, Any]
    """Keyword arguments for :func:`~.a2ald_config.render_config` (where the daemon runs)."""

    def prove_sealed(self) -> None:
        """Raise :class:`~.a2ald_errors.NotSealedError` unless the launch is contained."""

    def popen(
        self,
        argv: Sequence[str],
        *,
        stdout: IO[Any],
        env: Mapping[str, str],
        cwd: Path,
        label: str,
    ) -> subprocess.Popen[bytes]:
        """Start the daemon (its lifetime is also owned by the launch's environment)."""
        ...

    def client_context(self) -> contextlib.AbstractContextManager[None]:
        """Context in which sockets to the daemon's ``127.0.0.1`` API must be created."""
        ...


class A2aldPeer(A2aldClient):
    """One a2ald process with its own data dir, on 127.0.0.1 ports, plus a small REST client.

    ``node_key`` (64 bytes: Ed25519 seed ‖ public key) is written to ``keys/node.key`` for a
    deterministic node AID.  ``bootstrap`` entries are ``"host:port"`` strings.  The data dir
    must be new or empty.  :meth:`start` refuses to run unless :func:`check_sealed` passes,
    or, with ``launch``, unless the launch proves its own containment (see the module doc).
    """

    LOG_NAME: Final = "daemon.log"

    def __init__(
        self,
        data_dir: Path,
        *,
        bootstrap: Sequence[str] = (),
        udp_port: int | None = None,
        api_port: int | None = None,
        node_key: bytes | None = None,
        binary: Path | None = None,
        log_level: str = "info",
        name: str = "a2ald",
        launch: A2aldLaunch | None = None,
    ) -> None:
        if node_key is not None and len(node_key) != _NODE_KEY_LEN:
            raise ValueError("node_key must be 64 bytes (Ed25519 seed || public key)")
        self.data_dir = Path(data_dir)
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise ValueError(f"data dir {self.data_dir} is not empty")
        self.name = name
        self.bootstrap: list[str] = list(bootstrap)
        self._auto_udp = udp_port is None
        self._auto_api = api_port is None
        self.udp_port = udp_port if udp_port is not None else free_port(udp=True, tcp=True)
        super().__init__(api_port if api_port is not None else free_port(udp=False, tcp=True))
        self._node_key = node_key
        self._binary = binary
        self.log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None
        self._node_aid: str | None = None
        self.launch = launch

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<A2aldPeer {self.name} udp={self.udp_port} api={self.api_port} {state}>"

    # ---- addresses and state

    @property
    def listen_addr(self) -> str:
        """``"<host>:<udp port>"``: DHT/QUIC address, usable as a bootstrap entry.

        The host is 127.0.0.1, or the launch's address (a testbed host's).
        """
        host = self.launch.listen_host if self.launch is not None else "127.0.0.1"
        return f"{host}:{self.udp_port}"

    @property
    def log_path(self) -> Path:
        """The daemon's combined stdout/stderr."""
        return self.data_dir / self.LOG_NAME

    @property
    def pid(self) -> int | None:
        """PID of the running daemon, or None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the daemon process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def node_aid(self) -> str:
        """The daemon's node AID (checksummed text form), from ``/status``."""
        if self._node_aid is None:
            self._node_aid = str(self.status()["node_aid"])
        return self._node_aid

    def reallocate_ports(self) -> bool:
        """Pick new free ports for those not given explicitly (only while stopped).

        Returns False when both ports were given explicitly (nothing to change).
        """
        if self.running:
            raise A2aldError("cannot change ports of a running daemon")
        if self._auto_udp:
            self.udp_port = free_port(udp=True, tcp=True)
        if self._auto_api:
            self.api_port = free_port(udp=False, tcp=True)
        return self._auto_udp or self._auto_api

    # ---- lifecycle

    def start(self) -> None:
        """Write the config and launch the daemon (does not wait; see :meth:`wait_ready`)."""
        if self.running:
            raise A2aldError(f"{self.name} is already running (pid {self.pid})")
        binary = self._binary or find_a2ald()
        if binary is None:
            raise A2aldStartError(
                "a2ald binary not found (pip install a2al==0.3.5 or set A2ALD_BIN)"
            )
        self._prepare_data_dir()
        args = [str(binary), "-data-dir", str(self.data_dir), "-no-open-browser"]
        with open(self.log_path, "ab") as logf:
            if self.launch is not None:
                self.launch.prove_sealed()  # immediately before the launch, every time
                self._proc = self.launch.popen(
                    args, stdout=logf, env=daemon_env(), cwd=self.data_dir, label=self.name
                )
                self._node_aid = None
                log.info("started %s pid %d in %s", self.name, self._proc.pid, self.launch)
                return
            check_sealed()  # immediately before the launch, every time
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=daemon_env(),
                cwd=self.data_dir,
                close_fds=True,
                preexec_fn=_parent_death_hook(),
            )
        self._node_aid = None
        log.info(
            "started %s pid %d (udp %d, api %d)",
            self.name,
            self._proc.pid,
            self.udp_port,
            self.api_port,
        )

    def _prepare_data_dir(self) -> None:
        """Create the data dir, ``config.toml`` and (optionally) ``keys/node.key``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = render_config(
            udp_port=self.udp_port,
            api_port=self.api_port,
            bootstrap=self.bootstrap,
            log_level=self.log_level,
            **(self.launch.config if self.launch is not None else {}),
        )
        (self.data_dir / "config.toml").write_text(config, encoding="utf-8")
        if self._node_key is not None:
            keys = self.data_dir / "keys"
            keys.mkdir(mode=0o700, exist_ok=True)
            key_file = keys / "node.key"
            key_file.write_text(self._node_key.hex(), encoding="ascii")
            key_file.chmod(0o600)

    def request(self, method: str, path: str, body: object = None, *, timeout: float = 30.0) -> Any:
        """As :meth:`A2aldClient.request`, from the launch's namespace when there is one."""
        if self.launch is None:
            return super().request(method, path, body, timeout=timeout)
        with self.launch.client_context():
            return super().request(method, path, body, timeout=timeout)

    def wait_ready(self, timeout: float = 20.0, *, require_peers: bool | None = None) -> None:
        """Poll ``/health`` and ``/status`` until the daemon is up.

        With ``require_peers`` (default: whenever a bootstrap list is configured) also wait
        until ``dht_peers > 0``.  Raises :class:`A2aldStartError` if the process exits or the
        deadline passes.
        """
        if require_peers is None:
            require_peers = bool(self.bootstrap)
        deadline = _CLOCK.monotonic() + timeout
        while True:
            self._raise_if_exited()
            missing = self._readiness(require_peers=require_peers)
            if missing is None:
                log.info("%s ready", self.name)
                return
            if _CLOCK.monotonic() >= deadline:
                raise A2aldStartError(
                    f"{self.name} not ready after {timeout}s ({missing}); "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _readiness(self, *, require_peers: bool) -> str | None:
        """None when ready, else a short description of what is missing."""
        try:
            self.get("/health", timeout=2.0)
            status = self.status()
        except A2aldApiError as exc:
            return str(exc)
        if require_peers and not int(status.get("dht_peers") or 0) > 0:
            return "dht_peers is 0"
        return None

    def _raise_if_exited(self) -> None:
        """Raise :class:`A2aldStartError` when the process is gone."""
        if self._proc is None:
            raise A2aldStartError(f"{self.name} was not started")
        code = self._proc.poll()
        if code is not None:
            raise A2aldStartError(
                f"{self.name} exited with status {code}; log tail:\n{self.log_tail()}"
            )

    def terminate(self) -> None:
        """Send SIGTERM without waiting (a2ald 0.3.5 needs about 3 s to exit); see :meth:`stop`."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the daemon, SIGKILL it after ``timeout`` seconds; return its exit status."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM; sending SIGKILL", self.name, proc.pid)
                proc.kill()
                proc.wait(timeout=timeout)
        log.info("stopped %s (status %s)", self.name, proc.returncode)
        return proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` lines of the daemon log ("" if there is none)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
