"""The durable outbox: JSON-RPC requests (A2A ``SendMessage``) kept for agents that are offline.

A message for an AID that is offline or unreachable is queued (:meth:`Outbox.enqueue`) with a
delivery id and sent by :meth:`Outbox.run`, a loop of the node's task group, when the agent
comes back: **at least once** (the request body, and so the A2A ``messageId`` in it, is the
same on every try: the receiver can drop duplicates; :func:`~a2al_mcp.adapters.a2a.serve_a2a`
does), **until** its TTL (``OutboxConfig.ttl_s``, 24 h by default) runs out, **bounded** per
target and in total, **cancellable** (:meth:`Outbox.cancel`) while queued.

**When it tries.** After a failed try the next waits ``retry_initial_s``, doubling up to
``retry_max_s``. In between, a target's endpoint record is watched: the node has no push for
endpoint records (a DHT one-shot subscription, wire §4.6, registers only where a record is
held, and an agent gone for an hour has none; and the DHT service hands on only mailbox
pushes), so each queued target is resolved every ``watch_interval_s`` (at most
``watch_per_round`` targets per round, in turn) and a record with a new ``seq`` — the agent
republished, so it is back — or a live connection to it makes its messages due at once (a
try still dialling the record seen before is given up for a new one).

**What counts as delivered.** The agent answered with a JSON-RPC ``result``: ``delivered``;
with a JSON-RPC ``error`` or something that is not JSON-RPC: ``failed`` (final: it was
received). Connection failures, timeouts and HTTP 5xx are tried again. The answer is kept
with the delivery (``reply``) until ``keep_done_s`` after it ended, for ``outbox_list``,
the inbox resource and :meth:`Outbox.listen`'s callbacks.

**State rules.** One SQLite database, ``outbox.db`` in the data directory, created with mode
0600, WAL journal with ``synchronous=NORMAL`` as the inbox (one committed transaction per
change: durable across process crashes). A delivery is marked done only after the answer is
in; a crash between the two sends it again (with the same ``messageId``). Without a data
directory it lives in memory. No exception from one delivery ends the loop: it is counted
(:attr:`OutboxStats.errors`) and that delivery is tried again later.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio
import anyio.abc

from .._clock import Clock
from .._dataclass import dataclass
from .._lazy import lazy_module
from ..config import OutboxConfig
from ..errors import A2ALError, LimitExceeded, NetworkError, NotFound, UsageError
from ..identity.aid import Aid
from .inbox_db import open_sqlite

if TYPE_CHECKING:  # HTTP (h11) loads with the first try, not with the node
    import sqlite3

    from .http import HttpResponse
else:  # loaded with the first database opened
    sqlite3 = lazy_module("sqlite3")

__all__ = ["STATES", "Delivery", "Outbox", "OutboxConfig", "OutboxStats"]  # OutboxConfig: config.py

logger = logging.getLogger(__name__)

STATES: Final = ("queued", "delivered", "failed", "expired", "canceled")
"""A delivery's states: ``queued`` until it ends in one of the other four."""
TICK_S: Final = 0.25
"""How often the loop looks at what is due while something is queued."""
IDLE_TICK_S: Final = 3600.0
"""How often it looks (to forget old ended deliveries) while nothing is queued: a queued
message wakes it at once."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One queued message and what became of it."""

    id: str
    sender: Aid
    """The local identity it is sent as."""
    target: Aid
    state: str
    """One of :data:`STATES`."""
    created_at: float
    expires_at: float
    attempts: int
    next_at: float
    """When it is tried next (Unix seconds) while queued."""
    last_error: str
    done_at: float | None
    reply_status: int | None
    """The HTTP status of the agent's answer (delivered or failed)."""
    reply: bytes
    """The agent's answer (the JSON-RPC response body), once it came."""


@dataclass(frozen=True, slots=True)
class OutboxStats:
    queued: int
    queued_bytes: int
    enqueued: int
    """Messages queued since the node started."""
    delivered: int
    failed: int
    expired: int
    canceled: int
    attempts: int
    """Tries since the node started (each failed one waits its back-off)."""
    retries: int
    """Tries that failed and will be made again."""
    errors: int
    """Unexpected exceptions contained (each delivery concerned tried again later)."""
    watch_wakeups: int
    """Times a new endpoint record or a live connection made a target due at once."""


class Connect(Protocol):
    def __call__(self, aid: Aid, *, local: Aid | None = ..., timeout_s: float | None = ...
                 ) -> Awaitable[object]: ...  # fmt: skip


class Fetch(Protocol):
    def __call__(self, aid: Aid, method: str = ..., path: str = ..., *,
                 headers: Sequence[tuple[str, str]] = ..., body: bytes = ...,
                 local: Aid | None = ..., timeout_s: float = ...
                 ) -> Awaitable[HttpResponse]: ...  # fmt: skip


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    id           TEXT    NOT NULL PRIMARY KEY,
    sender       TEXT    NOT NULL,
    target       TEXT    NOT NULL,
    path         TEXT    NOT NULL,
    headers      TEXT    NOT NULL,
    request      BLOB    NOT NULL,
    state        TEXT    NOT NULL,
    created_at   REAL    NOT NULL,
    expires_at   REAL    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      REAL    NOT NULL,
    last_error   TEXT    NOT NULL DEFAULT '',
    done_at      REAL,
    reply_status INTEGER,
    reply        BLOB    NOT NULL DEFAULT x''
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_queued ON outbox (state, target, created_at);
"""
_FIELDS: Final = ("id, sender, target, state, created_at, expires_at, attempts, next_at, "
                  "last_error, done_at, reply_status, reply")  # fmt: skip


def _open(path: Path | None) -> sqlite3.Connection:
    """The database at ``path`` (in memory for None), the inbox's way (:func:`open_sqlite`)."""
    return open_sqlite(path, _SCHEMA)


def _delivery(row: Sequence[Any]) -> Delivery:
    return Delivery(id=row[0], sender=Aid.from_str(row[1]), target=Aid.from_str(row[2]),
                    state=row[3], created_at=row[4], expires_at=row[5], attempts=row[6],
                    next_at=row[7], last_error=row[8], done_at=row[9], reply_status=row[10],
                    reply=bytes(row[11]))  # fmt: skip


class _Retry(Exception):
    """A try that failed in a way worth trying again (the text says why)."""


class Outbox:
    """Queued requests to AIDs, in one SQLite database, sent by :meth:`run`."""

    def __init__(
        self,
        path: Path | None,
        config: OutboxConfig,
        *,
        clock: Clock,
        resolve: Callable[[Aid], Awaitable[Any]],
        connect: Connect,
        fetch: Fetch,
        connected: Callable[..., bool],
    ) -> None:
        """``resolve(aid)`` returns an object with ``seq`` (or raises NotFound);
        ``connected(aid, local=...)`` says whether a live connection exists."""
        self.config = config
        self._clock = clock
        self._resolve = resolve
        self._connect = connect
        self._fetch = fetch
        self._connected = connected
        self._path = path
        self._conn: sqlite3.Connection | None = None
        """Opened at once from a file that exists (queued messages resume); otherwise with
        the first message (a node that queues nothing writes nothing, on a full disk too)."""
        if path is not None and path.exists():
            try:
                self._conn = _open(path)
            except (sqlite3.Error, OSError) as exc:  # tried again with the first use
                logger.warning("outbox.not_opened path=%s error=%r", path, exc)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Delivery], None]] = []
        self._wake = anyio.Event()
        self._busy: set[str] = set()
        self._trying: dict[str, tuple[anyio.CancelScope, float]] = {}
        """The try under way per target/sender: its scope and when it began (monotonic)."""
        self._watching: set[str] = set()
        self._seen_seq: dict[str, int | None] = {}
        self._watch_turn = 0
        self._last_watch = 0.0
        self._counts = dict.fromkeys(("enqueued", "delivered", "failed", "expired", "canceled",
                                      "attempts", "retries", "errors", "watch_wakeups"),
                                     0)  # fmt: skip

    @property
    def _db(self) -> sqlite3.Connection:
        """The database, opened (and the file created) now if it is not yet.

        Raises:
            LimitExceeded: it cannot be opened or created (e.g. a full disk)."""
        if self._conn is None:
            try:
                self._conn = _open(self._path)
            except (sqlite3.Error, OSError) as exc:
                self._counts["errors"] += 1
                raise LimitExceeded(f"the outbox cannot open {self._path}: {exc}",
                                    operation="outbox",
                                    hint="free space in the data directory") from exc  # fmt: skip
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    # -- the queue -------------------------------------------------------------------------

    def enqueue(
        self,
        *,
        sender: Aid,
        target: Aid,
        body: bytes,
        headers: Sequence[tuple[str, str]] = (),
        path: str = "/",
        delivery_id: str | None = None,
        ttl_s: float | None = None,
    ) -> Delivery:
        """Keep ``body`` (a POST to ``path``) for ``target``; it is tried at once.

        Raises:
            LimitExceeded: the body is over ``message_max_bytes``, or ``target`` already has
                ``per_target_max`` queued messages, or the outbox ``total_max``.
            UsageError: ``ttl_s`` is not positive, or ``delivery_id`` is taken.
        """
        cfg = self.config
        if len(body) > cfg.message_max_bytes:
            raise LimitExceeded(f"the message is {len(body)} bytes; the outbox keeps at most "
                                f"{cfg.message_max_bytes}", aid=target,
                                operation="outbox")  # fmt: skip
        ttl = cfg.ttl_s if ttl_s is None else min(float(ttl_s), cfg.ttl_s)
        if ttl <= 0:
            raise UsageError("a queued message needs a positive TTL", operation="outbox")
        import uuid  # here: it loads platform, which a node that queues nothing never needs

        did = delivery_id or uuid.uuid4().hex
        now = self._clock.wall()
        with self._lock:
            for_target, total = self._db.execute(
                "SELECT SUM(target = ?), COUNT(*) FROM outbox WHERE state = 'queued'",
                (str(target),)).fetchone()  # fmt: skip
            if (for_target or 0) >= cfg.per_target_max:
                raise LimitExceeded(f"{cfg.per_target_max} messages already wait for {target} "
                                    "in the outbox (outbox.per_target_max)", aid=target,
                                    operation="outbox",
                                    hint="cancel some with outbox_cancel, or wait for it to "
                                    "come back")  # fmt: skip
            if total >= cfg.total_max:
                raise LimitExceeded(f"the outbox is full: {cfg.total_max} messages wait "
                                    "(outbox.total_max)", aid=target, operation="outbox",
                                    hint="cancel some with outbox_cancel")  # fmt: skip
            try:
                self._db.execute(
                    "INSERT INTO outbox (id, sender, target, path, headers, request, state, "
                    "created_at, expires_at, next_at) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                    (did, str(sender), str(target), path, json.dumps(list(headers)), body,
                     now, now + ttl, now))  # fmt: skip
            except sqlite3.IntegrityError as exc:
                raise UsageError(f"the delivery id {did[:64]!r} is taken",
                                 operation="outbox") from exc  # fmt: skip
        self._counts["enqueued"] += 1
        self._wake.set()
        return self.get(did)

    def get(self, delivery_id: str) -> Delivery:
        """Raises NotFound: no such delivery (never queued, or ended long ago)."""
        with self._lock:
            row = self._db.execute(f"SELECT {_FIELDS} FROM outbox WHERE id = ?",
                                   (delivery_id,)).fetchone()  # fmt: skip
        if row is None:
            raise NotFound(f"no delivery {delivery_id[:64]!r} in the outbox", operation="outbox",
                           hint="outbox_list shows them")  # fmt: skip
        return _delivery(row)

    def deliveries(
        self, *, state: str | None = None, target: Aid | None = None, limit: int = 100
    ) -> list[Delivery]:
        """Deliveries, newest first (only ``state``'s, or ``target``'s, when given)."""
        where, args = [], []
        if state is not None:
            where.append("state = ?")
            args.append(state)
        if target is not None:
            where.append("target = ?")
            args.append(str(target))
        sql = f"SELECT {_FIELDS} FROM outbox"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [_delivery(r) for r in rows]

    def cancel(self, delivery_id: str) -> Delivery:
        """Stop a queued delivery (a try already under way may still reach the agent).

        Raises:
            NotFound: no such delivery. UsageError: it already ended (its state says how).
        """
        with self._lock:
            changed = self._db.execute(
                "UPDATE outbox SET state = 'canceled', done_at = ? WHERE id = ? AND "
                "state = 'queued'", (self._clock.wall(), delivery_id)).rowcount  # fmt: skip
        done = self.get(delivery_id)
        if not changed:
            raise UsageError(f"delivery {delivery_id[:64]} is {done.state} already: only a "
                             "queued one can be canceled", operation="outbox_cancel")  # fmt: skip
        self._ended(done)
        return done

    def listen(self, callback: Callable[[Delivery], None]) -> Callable[[], None]:
        """Call ``callback(delivery)`` when a delivery ends; returns an unsubscribe function."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def statistics(self) -> OutboxStats:
        if self._conn is None:
            return OutboxStats(queued=0, queued_bytes=0, **self._counts)
        with self._lock:
            n, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(request)), 0) "
                                       "FROM outbox WHERE state = 'queued'").fetchone()  # fmt: skip
        return OutboxStats(queued=n, queued_bytes=size, **self._counts)

    def _ended(self, delivery: Delivery) -> None:
        self._counts[delivery.state] += 1
        for cb in list(self._listeners):
            try:
                cb(delivery)
            except Exception:  # a listener's bug stops nothing
                logger.exception("outbox.listener_failed id=%s", delivery.id)

    # -- the service -----------------------------------------------------------------------

    async def run(self) -> None:
        """Send what is due, watch queued targets, expire; until cancelled (node close)."""
        async with anyio.create_task_group() as tg:
            while True:
                self._wake = anyio.Event()  # before the round: a wake during it is kept
                busy = True
                try:
                    busy = self._round(tg)
                except (sqlite3.Error, A2ALError) as exc:  # the disk: try again next round
                    self._counts["errors"] += 1
                    logger.warning("outbox.round_failed error=%r", exc)
                # nothing queued: sleep until something is (only ended ones to forget)
                tick = min(self.config.watch_interval_s, TICK_S) if busy else IDLE_TICK_S
                with anyio.move_on_after(tick):
                    await self._wake.wait()

    def _round(self, tg: anyio.abc.TaskGroup) -> bool:
        """One pass: expire, start the tries that are due, watch records. Returns whether
        anything is queued or being tried."""
        if self._conn is None:  # nothing queued yet, or a file that could not be opened
            if self._path is None or not self._path.exists():
                return False
            try:
                self._db  # noqa: B018 - opens it
            except LimitExceeded:
                return False  # tried again with the next wake-up or message
        now = self._clock.wall()
        self._expire(now)
        with self._lock:
            due = self._db.execute(
                "SELECT target, sender, MIN(next_at) FROM outbox WHERE state = 'queued' "
                "GROUP BY target, sender ORDER BY MIN(created_at)").fetchall()  # fmt: skip
        waiting: list[str] = []
        for target, sender, next_at in due:
            key = f"{target}/{sender}"
            if key in self._busy:  # watched all the same: a try may be dialling a dead record
                if target not in waiting:
                    waiting.append(target)
                continue
            if next_at <= now or self._connected(Aid.from_str(target), local=Aid.from_str(sender)):
                if len(self._busy) < self.config.parallel_max:
                    self._busy.add(key)
                    tg.start_soon(self._drain, target, sender)
            elif target not in waiting:
                waiting.append(target)
        if waiting and now - self._last_watch >= self.config.watch_interval_s:
            self._last_watch = now
            start = self._watch_turn % len(waiting)
            turn = (waiting[start:] + waiting[:start])[: self.config.watch_per_round]
            self._watch_turn += len(turn)
            for target in turn:
                if target not in self._watching:
                    self._watching.add(target)
                    tg.start_soon(self._watch, target)
        return bool(due or self._busy)

    def _expire(self, now: float) -> None:
        with self._lock:
            rows = self._db.execute(f"SELECT {_FIELDS} FROM outbox WHERE state = 'queued' AND "
                                    "expires_at <= ?", (now,)).fetchall()  # fmt: skip
            self._db.execute("UPDATE outbox SET state = 'expired', done_at = ? WHERE "
                             "state = 'queued' AND expires_at <= ?", (now, now))  # fmt: skip
            self._db.execute("DELETE FROM outbox WHERE state != 'queued' AND done_at < ?",
                             (now - self.config.keep_done_s,))  # fmt: skip
            self._db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state != 'queued' "
                "ORDER BY done_at DESC LIMIT -1 OFFSET ?)", (self.config.done_max,))  # fmt: skip
        for row in rows:
            self._ended(dataclasses.replace(_delivery(row), state="expired", done_at=now))

    async def _watch(self, target: str) -> None:
        """Resolve ``target``: a record with a new seq (it republished: it is back) makes its
        messages due now."""
        looked = self._clock.monotonic()
        try:
            try:
                seq: int | None = int((await self._resolve(Aid.from_str(target))).seq)
            except NotFound:
                seq = None
            except A2ALError:  # the DHT not ready, a timeout: the next round tries again
                return
            before = self._seen_seq.get(target, -1)
            self._seen_seq[target] = seq
            if seq is not None and seq != before:
                self._counts["watch_wakeups"] += 1
                with self._lock:
                    self._db.execute("UPDATE outbox SET next_at = 0 WHERE state = 'queued' AND "
                                     "target = ?", (target,))  # fmt: skip
                if before != -1:  # it changed under a try that began before: that try dials
                    for key, (scope, began) in list(self._trying.items()):  # the old record
                        if key.startswith(target + "/") and began < looked:
                            scope.cancel()
                self._wake.set()
        except Exception as exc:
            self._counts["errors"] += 1
            logger.warning("outbox.watch_failed target=%s error=%r", target, exc)
        finally:
            self._watching.discard(target)

    async def _drain(self, target: str, sender: str) -> None:
        """Send ``sender``'s queued messages for ``target``, oldest first, until one fails."""
        key = f"{target}/{sender}"
        try:
            while True:
                with self._lock:
                    row = self._db.execute(
                        "SELECT id, path, headers, request, attempts FROM outbox WHERE "
                        "state = 'queued' AND target = ? AND sender = ? AND expires_at > ? "
                        "ORDER BY created_at LIMIT 1",
                        (target, sender, self._clock.wall())).fetchone()  # fmt: skip
                if row is None:
                    return
                did, path, headers, body, attempts = row
                try:
                    self._counts["attempts"] += 1
                    pairs = [(str(k), str(v)) for k, v in json.loads(headers)]
                    with anyio.CancelScope() as scope:
                        self._trying[key] = (scope, self._clock.monotonic())
                        resp = await self._try(
                            Aid.from_str(target), Aid.from_str(sender), path, pairs, body
                        )
                    del self._trying[key]
                    if scope.cancelled_caught:  # a new endpoint record: try it at once
                        why = "superseded by a new endpoint record"
                        self._failed_try(did, target, sender, attempts + 1, why, wait=0.0)
                        return
                except _Retry as exc:
                    self._failed_try(did, target, sender, attempts + 1, str(exc))
                    return
                except Exception as exc:  # a bug or the disk: counted, tried again later
                    self._counts["errors"] += 1
                    logger.warning("outbox.delivery_error id=%s error=%r", did, exc)
                    self._failed_try(did, target, sender, attempts + 1, f"internal: {exc!r}")
                    return
                self._answered(did, attempts + 1, resp)
        finally:
            self._trying.pop(key, None)
            self._busy.discard(key)
            self._wake.set()

    async def _try(
        self, target: Aid, sender: Aid, path: str, headers: list[Any], body: bytes
    ) -> HttpResponse:
        cfg = self.config
        try:
            await self._connect(target, local=sender, timeout_s=cfg.connect_timeout_s)
            resp = await self._fetch(target, "POST", path, headers=headers, body=body,
                                     local=sender, timeout_s=cfg.answer_timeout_s)  # fmt: skip
        except (NotFound, NetworkError) as exc:
            raise _Retry(f"{type(exc).__name__}: {exc.message}") from exc
        if resp.status >= 500:
            raise _Retry(f"the agent answered HTTP {resp.status}")
        return resp

    def _failed_try(
        self, did: str, target: str, sender: str, attempts: int, error: str,
        wait: float | None = None,
    ) -> None:  # fmt: skip
        cfg = self.config
        if wait is None:
            wait = min(cfg.retry_max_s, cfg.retry_initial_s * 2 ** min(attempts - 1, 30))
        self._counts["retries"] += 1
        with self._lock:
            self._db.execute("UPDATE outbox SET attempts = ?, last_error = ? WHERE id = ?",
                             (attempts, error[:500], did))  # fmt: skip
            self._db.execute("UPDATE outbox SET next_at = ? WHERE state = 'queued' AND "
                             "target = ? AND sender = ?",
                             (self._clock.wall() + wait, target, sender))  # fmt: skip
        logger.info("outbox.retry id=%s attempts=%d in=%.1fs error=%s", did, attempts, wait, error)

    def _answered(self, did: str, attempts: int, resp: HttpResponse) -> None:
        try:
            answer = json.loads(resp.body)
        except ValueError:
            answer = None
        ok = isinstance(answer, dict) and answer.get("jsonrpc") == "2.0" and "result" in answer
        state = "delivered" if ok else "failed"
        error = "" if ok else (json.dumps(answer.get("error"))[:500]
                               if isinstance(answer, dict) and "error" in answer
                               else f"not a JSON-RPC answer (HTTP {resp.status})")  # fmt: skip
        with self._lock:
            changed = self._db.execute(
                "UPDATE outbox SET state = ?, attempts = ?, last_error = ?, done_at = ?, "
                "reply_status = ?, reply = ? WHERE id = ? AND state = 'queued'",
                (state, attempts, error, self._clock.wall(), resp.status, resp.body, did),
            ).rowcount  # fmt: skip
        if changed:  # not canceled or expired meanwhile
            self._ended(self.get(did))
