"""The REST API client of one a2ald daemon, and polling it until a condition holds."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

from a2al_mcp._clock import SystemClock

from .a2ald_errors import A2aldApiError

__all__ = ["A2aldClient", "poll_until"]

T = TypeVar("T")

_CLOCK: Final = SystemClock()


def poll_until(
    fn: Callable[[], T],
    until: Callable[[T], bool],
    *,
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Call ``fn`` until ``until(result)`` holds; raise :class:`TimeoutError` after ``timeout``.

    :class:`A2aldApiError` raised by ``fn`` counts as "not yet" (the last one is chained).
    """
    deadline = _CLOCK.monotonic() + timeout
    last_exc: A2aldApiError | None = None
    last: T | None = None
    while True:
        try:
            result = fn()
        except A2aldApiError as exc:
            last_exc = exc
        else:
            if until(result):
                return result
            last, last_exc = result, None
        if _CLOCK.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached after {timeout}s; last: {last!r}") from last_exc
        time.sleep(interval)


class A2aldClient:
    """A small JSON client of an a2ald REST API on ``127.0.0.1:<api_port>``.

    :class:`~a2al_mcp.testing.a2ald_peer.A2aldPeer` is one (for the daemon it runs); build
    one directly to talk to a daemon started elsewhere in the same namespace.
    """

    def __init__(self, api_port: int) -> None:
        self.api_port = api_port
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def api_url(self) -> str:
        """Base URL of the REST API."""
        return f"http://127.0.0.1:{self.api_port}"

    def request(self, method: str, path: str, body: object = None, *, timeout: float = 30.0) -> Any:
        """Call the REST API and return the decoded JSON (None for an empty body).

        Non-GET requests always carry a JSON body (``{}`` if none) and
        ``Content-Type: application/json``, which a2ald requires.
        """
        url = self.api_url + path
        data = None
        headers = {"Accept": "application/json"}
        if method not in ("GET", "HEAD"):
            data = json.dumps({} if body is None else body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                text = exc.read().decode("utf-8", "replace")
            raise A2aldApiError(method, url, exc.code, text) from None
        except (urllib.error.URLError, OSError) as exc:
            raise A2aldApiError(method, url, 0, f"no response: {exc}") from exc
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise A2aldApiError(method, url, 200, f"invalid JSON: {raw[:200]!r}") from exc

    def get(self, path: str, *, timeout: float = 30.0) -> Any:
        """``GET path`` (JSON result)."""
        return self.request("GET", path, timeout=timeout)

    def post(self, path: str, body: object = None, *, timeout: float = 30.0) -> Any:
        """``POST path`` with a JSON body (JSON result)."""
        return self.request("POST", path, body, timeout=timeout)

    def _object(self, method: str, path: str, body: object = None) -> dict[str, Any]:
        """Call and require a JSON object as the answer."""
        out = self.request(method, path, body)
        if not isinstance(out, dict):
            raise A2aldApiError(method, self.api_url + path, 200, f"expected an object: {out!r}")
        return out

    # ---- thin wrappers (shapes as observed on a2ald 0.3.5)

    def health(self) -> dict[str, Any]:
        """``GET /health`` -> ``{"status": "ok"}``."""
        return self._object("GET", "/health")

    def status(self) -> dict[str, Any]:
        """``GET /status`` (``node_aid``, ``dht_peers``, ``version``, ``node_published`` ...)."""
        return self._object("GET", "/status")

    def debug_identity(self) -> dict[str, Any]:
        """``GET /debug/identity`` -> ``{address, node_id_hex, local_addr}``."""
        return self._object("GET", "/debug/identity")

    def identity_generate(self) -> dict[str, Any]:
        """``POST /identity/generate``: a new master key, operational key and delegation.

        Answer: ``{aid, master_private_key_hex, operational_private_key_hex,
        delegation_proof_hex, warning}`` (keys: hex of 64-byte Ed25519 seed ‖ public key).
        """
        return self._object("POST", "/identity/generate", {})

    def register_agent(
        self, op_key_hex: str, proof_hex: str, service_tcp: str | None = None
    ) -> dict[str, Any]:
        """``POST /agents`` -> ``{aid, status: "registered"}``."""
        body: dict[str, Any] = {
            "operational_private_key_hex": op_key_hex,
            "delegation_proof_hex": proof_hex,
        }
        if service_tcp:
            body["service_tcp"] = service_tcp
        return self._object("POST", "/agents", body)

    def publish_agent(self, aid: str) -> dict[str, Any]:
        """``POST /agents/{aid}/publish`` -> ``{ok, seq}``."""
        return self._object("POST", f"/agents/{aid}/publish", {})

    def resolve(self, aid: str) -> dict[str, Any]:
        """``POST /resolve/{aid}`` -> ``{address, endpoints, nat_type, seq, timestamp, ttl}``.

        A miss is HTTP 404 ``{"error": "resolve failed"}`` (raised as :class:`A2aldApiError`).
        """
        return self._object("POST", f"/resolve/{aid}", {})

    def resolve_records(self, aid: str, type: int = 0) -> dict[str, Any]:
        """``GET /resolve/{aid}/records?type=N`` (0 = all types)."""
        return self._object("GET", f"/resolve/{aid}/records?type={int(type)}")

    def register_services(
        self,
        aid: str,
        services: Sequence[str],
        name: str = "",
        brief: str = "",
        protocols: Sequence[str] = (),
        tags: Sequence[str] = (),
        ttl: int = 600,
        meta: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /agents/{aid}/services`` (topic records, renewed by the daemon)."""
        body = {
            "services": list(services),
            "name": name,
            "brief": brief,
            "protocols": list(protocols),
            "tags": list(tags),
            "meta": dict(meta or {}),
            "ttl": ttl,
        }
        return self._object("POST", f"/agents/{aid}/services", body)

    def discover(
        self,
        services: Sequence[str],
        filter: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /discover`` -> ``{"entries": [...]}`` (``[]`` when nothing matches).

        ``filter`` is e.g. ``{"protocols": ["mcp"], "tags": ["x"]}``.
        """
        body: dict[str, Any] = {"services": list(services)}
        if filter is not None:
            body["filter"] = dict(filter)
        return self._object("POST", "/discover", body)

    def post_record(
        self, aid: str, rec_type: int, payload: bytes, ttl: int = 3600
    ) -> dict[str, Any]:
        """``POST /agents/{aid}/records`` (custom sovereign record, ``rec_type`` 2-15)."""
        body = {
            "rec_type": rec_type,
            "payload_base64": base64.b64encode(payload).decode("ascii"),
            "ttl": ttl,
        }
        return self._object("POST", f"/agents/{aid}/records", body)
