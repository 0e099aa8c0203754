"""Encrypted mailbox notes: send to any AID, receive on every path, keep in the inbox (§3.9).

**Send.** Resolve the recipient's endpoint record (its ``pubkey`` — for a delegated agent the
operational key — is the encryption target), seal the body, sign a rec_type 0x80 record as
the sender, then at the same time deliver it over an ``a2mb`` stream (when a connection comes
up quickly; the ``01`` acknowledgement counts) **and** STORE it at NodeID(recipient) on the
replica set, as a2ald does. ``send`` returns as soon as one path holds the note: at once when
the recipient acknowledges it (and a STORE still under way is then stopped: the recipient has
committed the note to its inbox, so a copy on the replicas would only come back to it through
its polls, to be dropped as a duplicate — and the STORE's lookup and signatures cost more CPU
than the whole direct delivery); when a replica accepts the STORE first, after the recipient's
answer or :data:`DIRECT_GRACE_S` (1 s), whichever comes first — an online recipient answers
well within that, even on a first contact that has to dial, so its acknowledgement or refusal
still reaches the sender, while an absent one no longer holds the call for the whole
:data:`DIRECT_TIMEOUT_S` (a2ald's ``mailbox_send`` only STOREs). The other path runs on in the
node's task group (stopped when the node closes); how it ends is logged and counted
(``MailboxStats.background_*``); a STORE the recipient's acknowledgement made needless is
stopped (``MailboxStats.stores_skipped``); with a live pooled connection to the recipient the
direct path goes first, and the STORE starts only if it has not been acknowledged within
:data:`WARM_HEAD_START_S` or failed. While :data:`BACKGROUND_MAX` notes have a path still
running, ``send`` waits for both paths, as it always did. The result says which paths held the
note when the call returned — ``direct``, ``stored`` or ``both`` — and ``pending`` is
``direct`` while the recipient is still being tried.

**Receive.** Notes arrive on ``a2mb`` streams, as STOREs to our node, as DHT_PUSH from
one-shot subscriptions on our key, and by AggregateRecords polling of our key (at start-up,
then with back-off from 5 s to ``mailbox.poll_interval_s``; each poll re-arms the
subscriptions). Every path goes through :meth:`Mailbox.accept`: signature, freshness, sender
authority (delegation proofs), recipient is a local identity (and, on ``a2mb``, the routed
one), decryption, dedup by message id, the inbox quotas and the disk (see
:mod:`~a2al_mcp.node.inbox`) — then one committed inbox row. A refused note is not
acknowledged on ``a2mb`` (the stream is reset) and not stored from the DHT paths; every
refusal is counted by its reason in :class:`MailboxStats`. A note refused by a quota is
remembered (up to ``mailbox_notes_total`` ids), so the copies polls keep finding on the DHT
are skipped without work until notes are deleted or purged.

A sender whose note the recipient refuses over ``a2mb`` learns it: :class:`SendResult`
``refused`` (and ``delivered`` is then ``stored`` at best), or :class:`AccessDenied` when no
DHT replica took the note either. (If the recipient had not answered within
:data:`DIRECT_GRACE_S` of a replica taking the note, ``send`` has returned with ``pending``
``direct``; a refusal after that is logged and counted in ``MailboxStats.background_refused``.)
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, Protocol

import anyio

from .._clock import Clock
from .._dataclass import dataclass
from .._random import Rng
from ..config import MailboxConfig
from ..dht.events import RecordPushed
from ..errors import (
    A2ALError,
    AccessDenied,
    ConnectionClosed,
    DecodeError,
    LimitExceeded,
    NodeClosed,
    NotFound,
    Unreachable,
    VerificationError,
)
from ..identity.aid import Aid, NodeId
from ..identity.keys import VerifyKey
from ..protocol import limits
from ..protocol.mailbox_crypto import MSG_TYPE_TEXT, open_note, seal_note
from ..protocol.payloads import MailboxPayload
from ..protocol.records import Category, SignedRecord
from ..protocol.session_frames import MailboxFrame
from ..transport.session import ERR_ACCESS_DENIED
from .inbox import AddResult, Inbox, Note

if TYPE_CHECKING:
    from ..dht.events import MailboxStored, PublishFinished
    from ..identity.local import Identity
    from ..transport.peer import PeerConnection

__all__ = ["Mailbox", "MailboxStats", "SendResult"]

logger = logging.getLogger(__name__)

REC_TYPE_MAILBOX: Final = 0x80
NOTE_TTL_S: Final = 3600
DIRECT_TIMEOUT_S: Final = 4.0
DIRECT_GRACE_S: Final = 1.0
"""Once a DHT replica holds a note, how much longer ``send`` waits for the recipient's own
answer (a dial and one round trip on a first contact): enough for an online recipient to
acknowledge or refuse the note, far less than an absent one's :data:`DIRECT_TIMEOUT_S`."""
POLL_START_S: Final = 5.0
WARM_HEAD_START_S: Final = 0.25
"""With a live pooled connection to the recipient, the direct delivery alone gets this long
before the STORE starts: its acknowledgement comes in a round trip or two, and then no STORE
is needed at all (a lookup and a STORE per note cost more CPU than the delivery itself). A
failure of the direct path starts the STORE at once."""

BACKGROUND_MAX: Final = 64
"""At most this many notes have a path still running after ``send`` returned; while that
many do, ``send`` waits for both paths, as it always did (a sender that outpaces the STOREs
is slowed down instead of piling up tasks)."""


@dataclass(frozen=True, slots=True)
class SendResult:
    """How a note went out."""

    msg_id: bytes
    """SHA-256 of the sealed payload: the id both ends use."""
    delivered: str
    """Which paths held the note when the call returned: ``direct`` (the recipient
    acknowledged it over QUIC), ``stored`` (DHT replicas accepted it) or ``both``."""
    replicas: int
    """DHT nodes that had accepted the record when the call returned (0 when the recipient
    acknowledged it first: the STORE is then stopped)."""
    direct_error: str = ""
    """Why the direct path did not work (empty when it did)."""
    refused: bool = False
    """The recipient was reached and refused the note (its mailbox or disk is full, or the
    note was not acceptable to it); any DHT copy may be collected once it has room."""
    pending: str = ""
    """The path still running when the call returned, in the background: ``direct`` (the
    note is on ``replicas`` DHT nodes; the recipient had not answered within
    ``DIRECT_GRACE_S`` and the delivery to it goes on), else empty (a STORE still under way
    when the recipient acknowledges is stopped, not left running). How a background path
    ends is logged and counted (:class:`MailboxStats` ``background_*``)."""

    @property
    def message_id(self) -> str:
        return self.msg_id.hex()


@dataclass(slots=True)
class MailboxStats:
    sent: int = 0
    received: int = 0
    duplicates: int = 0
    refused: int = 0
    """Notes refused, for any reason: forged or unauthorised sender, not for us, garbage,
    expired, over a quota, disk full (the ``refused_*`` fields say which quota or disk)."""
    polls: int = 0
    refused_sender_notes: int = 0
    """Refused: the sender had ``limits.mailbox_notes_per_sender`` notes stored."""
    refused_sender_bytes: int = 0
    """Refused: over ``limits.mailbox_bytes_per_sender``."""
    refused_total_notes: int = 0
    """Refused: the inbox held ``limits.mailbox_notes_total`` notes."""
    refused_total_bytes: int = 0
    """Refused: over ``limits.mailbox_bytes_total``."""
    refused_disk_low: int = 0
    """Refused: less than ``limits.mailbox_min_free_disk_bytes`` free on the inbox's disk."""
    refused_disk_full: int = 0
    """Refused: the inbox could not be written (disk full, I/O error, read-only)."""
    refused_known: int = 0
    """Copies of notes already refused by a quota, skipped without work."""
    purged_read: int = 0
    """Read notes removed after ``mailbox.retention_s``."""
    purged_unread: int = 0
    """Unread notes removed after ``limits.mailbox_unread_retention_s``."""
    stored_notes: int = 0
    """Notes in the inbox now (all local identities)."""
    stored_bytes: int = 0
    """Body bytes of the notes in the inbox now."""
    read_only: bool = False
    """The inbox cannot be written (disk full): new notes are refused until space returns."""
    storage_errors: int = 0
    """Failed inbox database operations (each one a refusal or a read left unmarked)."""
    background_ok: int = 0
    """Paths still running when ``send`` returned (``SendResult.pending``) that then held
    the note too: the STORE reached a replica, or the recipient acknowledged."""
    background_failed: int = 0
    """Such paths that failed (no replica took the note, or the recipient did not
    acknowledge it); the other path held the note already."""
    background_refused: int = 0
    """Of ``background_failed``: the recipient refused the note over ``a2mb`` after
    ``send`` had returned (the sender learns it only here and in the log)."""
    stores_skipped: int = 0
    """STOREs stopped because the recipient acknowledged the note first (it holds it)."""


_REFUSAL_FIELD: dict[AddResult, str] = {
    AddResult.SENDER_NOTES: "refused_sender_notes",
    AddResult.SENDER_BYTES: "refused_sender_bytes",
    AddResult.TOTAL_NOTES: "refused_total_notes",
    AddResult.TOTAL_BYTES: "refused_total_bytes",
    AddResult.DISK_LOW: "refused_disk_low",
    AddResult.DISK_FULL: "refused_disk_full",
}


@dataclass(slots=True, kw_only=True)
class _Delivery:
    """One note on its way by both paths, as far as each has got. ``send`` returns once it
    is :meth:`settled`; what is left runs on in the node's task group."""

    recipient: Aid
    msg_id: bytes
    direct: str = "dialing"
    """``dialing`` (connecting, or waiting for the answer) → ``ok`` | ``failed``."""
    store: str = "storing"
    """``storing`` → ``ok`` (a replica took it) | ``failed`` | ``skipped`` (stopped: the
    recipient acknowledged first)."""
    direct_error: str = ""
    refused: bool = False
    replicas: int = 0
    returned: bool = False
    """``send`` has returned: what ends now is the background's outcome."""
    background: bool = False
    """``send`` returned with a path still running (counted in ``Mailbox._background``)."""
    ended: bool = False
    """Both paths have ended, or were stopped (the node closed, or ``fault``)."""
    fault: Exception | None = None
    """What escaped a path that should not have (a bug; the node's supervisor counts it)."""
    scope: anyio.CancelScope = dataclasses.field(default_factory=anyio.CancelScope)
    store_scope: anyio.CancelScope = dataclasses.field(default_factory=anyio.CancelScope)
    """Stops the STORE alone once the recipient acknowledged."""
    changed: anyio.Event = dataclasses.field(default_factory=anyio.Event)

    def notify(self) -> None:
        changed, self.changed = self.changed, anyio.Event()
        changed.set()

    def settled(self) -> bool:
        """Nothing more to wait for: the recipient acknowledged, both paths answered, or
        the delivery stopped. (A replica holding the note while the recipient has not
        answered yet ends the wait after :data:`DIRECT_GRACE_S`: see ``Mailbox.send``.)"""
        if self.direct == "ok" or self.ended:
            return True
        return self.direct == "failed" and self.store != "storing"

    def pending(self) -> str:
        """The path still running (``SendResult.pending``)."""
        if self.store == "storing":
            return "store"
        return "direct" if self.direct == "dialing" else ""


class Resolved(Protocol):
    """What the mailbox reads of a resolved recipient (a :class:`~a2al_mcp.node.status.
    ResolvedEndpoint`)."""

    @property
    def record(self) -> SignedRecord: ...
    @property
    def endpoints(self) -> tuple[str, ...]: ...


class Connect(Protocol):
    """Open (or reuse) a verified connection from ``local`` to ``aid`` (``Node.connect``)."""

    def __call__(
        self, aid: Aid, *, local: Aid | None = ..., endpoints: Sequence[str] | None = ...
    ) -> Awaitable[PeerConnection]: ...


class Aggregate(Protocol):
    """Collect every record of ``rec_type`` at ``key`` from the DHT, optionally subscribing
    to it there (an AggregateRecords lookup)."""

    def __call__(
        self, key: NodeId, rec_type: int, *, subscribe: bool = ...
    ) -> Awaitable[tuple[SignedRecord, ...]]: ...


class Mailbox:
    """The node's mailbox service (owned by :class:`~a2al_mcp.node.Node`), built from the
    narrow things it needs of the node, so it can be built and tested alone:

    ``identities`` is the live mapping of the local identities (notes to others are
    refused); ``resolve``, ``connect``, ``publish_record`` (STORE a record on the replica
    set of a key) and ``aggregate`` are the node's DHT and QUIC verbs; ``dht_ready`` says
    whether the routing table has anyone to poll; ``spawn`` runs a task in the node's task
    group (cancelled on close, what it raises contained and counted), or raises
    :class:`NodeClosed` when the node is not open."""

    def __init__(
        self,
        inbox: Inbox,
        *,
        config: MailboxConfig,
        clock: Clock,
        rng: Rng,
        identities: Mapping[Aid, Identity],
        resolve: Callable[[Aid], Awaitable[Resolved]],
        connect: Connect,
        publish_record: Callable[[SignedRecord, NodeId], Awaitable[PublishFinished]],
        aggregate: Aggregate,
        dht_ready: Callable[[], bool],
        spawn: Callable[[Callable[[], Awaitable[None]]], None],
        connected: Callable[..., bool] | None = None,
    ) -> None:
        self.inbox = inbox
        self._config = config
        self._clock = clock
        self._rng = rng
        self._identities = identities
        self._resolve = resolve
        self._connect = connect
        self._publish_record = publish_record
        self._aggregate = aggregate
        self._dht_ready = dht_ready
        self._spawn = spawn
        self._connected = connected
        """``connected(recipient, local=sender)``: a live pooled connection exists."""
        self._background = 0
        """Deliveries with a path still running after ``send`` returned."""
        self._stats = MailboxStats()
        self._listeners: list[Callable[[Note], None]] = []
        self._wake = anyio.Event()
        self._refused_ids: OrderedDict[bytes, None] = OrderedDict()
        """Message ids refused by a quota (bounded; forgotten when notes are removed)."""
        self._refused_freed = inbox.usage().freed

    @property
    def stats(self) -> MailboxStats:
        """The live counters, with the inbox's current size and state."""
        usage = self.inbox.usage()
        st = self._stats
        st.stored_notes, st.stored_bytes = usage.notes, usage.bytes
        st.read_only, st.storage_errors = usage.read_only, usage.storage_errors
        return st

    # -- send -----------------------------------------------------------------------------

    def statistics(self) -> MailboxStats:
        """A snapshot of :attr:`stats`."""
        return dataclasses.replace(self.stats)

    async def send(
        self, recipient: Aid, body: bytes | str, *, sender: Identity,
        msg_type: int = MSG_TYPE_TEXT,
    ) -> SendResult:  # fmt: skip
        """Seal ``body`` (a ``str`` is sent as UTF-8) for ``recipient`` and deliver it (see
        the module docstring).

        Raises:
            LimitExceeded: the body is over 389 bytes.
            NotFound: the recipient has no endpoint record (so no key to encrypt to).
            Unreachable: neither the direct path nor any DHT replica took the note.
            AccessDenied: the recipient refused the note and no DHT replica took it.
            NodeClosed: the node closed before either path held the note.
        """
        if isinstance(body, str):
            body = body.encode()
        if len(body) > limits.MAILBOX_BODY_MAX:
            raise LimitExceeded(
                f"a mailbox note holds at most {limits.MAILBOX_BODY_MAX} bytes, this body has "
                f"{len(body)}; send larger data over a direct connection (connect or fetch)"
            )
        try:
            resolved = await self._resolve(recipient)
        except NotFound:
            raise NotFound(
                f"{recipient} has no endpoint record, so there is no key to encrypt to; "
                "it must have published within the last hour"
            ) from None
        key = VerifyKey(resolved.record.pubkey)
        payload = seal_note(sender=sender.aid, recipient=recipient, recipient_key=key,
                            body=body, msg_type=msg_type, rng=self._rng)  # fmt: skip
        wall = self._clock.wall()
        record = SignedRecord.sign(sender, REC_TYPE_MAILBOX, payload.to_bytes(),
                                   seq=math.floor(wall * 1e9), timestamp=int(wall),
                                   ttl=NOTE_TTL_S)  # fmt: skip
        frame = MailboxFrame(record.msg_id, record.to_bytes())
        d = _Delivery(recipient=recipient, msg_id=record.msg_id)
        self._spawn(functools.partial(self._deliver, d, record, frame, sender.aid,
                                      resolved.endpoints))  # fmt: skip
        grace = True
        try:
            while not d.ended:
                room = self._background < BACKGROUND_MAX  # else wait for both, as before
                if d.settled() and room:
                    break
                if grace and room and d.store == "ok":  # the recipient has a little longer
                    grace = False
                    with anyio.move_on_after(DIRECT_GRACE_S):
                        while not d.settled():
                            await d.changed.wait()
                    if not d.settled():
                        break  # it has not answered: the dial goes on in the background
                    continue
                await d.changed.wait()
        except BaseException:  # the caller gave up: both paths stop, as before
            d.scope.cancel()
            raise
        d.returned = True
        if d.pending():
            d.background = True
            self._background += 1
        return self._outcome(d)

    def _outcome(self, d: _Delivery) -> SendResult:
        """What ``send`` says once the delivery :meth:`~_Delivery.settled`."""
        recipient = d.recipient
        if d.direct == "ok" or d.store == "ok":
            self._stats.sent += 1
            how = ("both" if d.direct == d.store == "ok"
                   else "direct" if d.direct == "ok" else "stored")  # fmt: skip
            pending = d.pending()
            if pending:
                logger.debug("mailbox.sent recipient=%s msg=%s delivered=%s pending=%s",
                             recipient.short(), d.msg_id.hex()[:16], how, pending)  # fmt: skip
            return SendResult(d.msg_id, how, d.replicas, d.direct_error, d.refused, pending)
        if d.fault is not None:
            raise Unreachable(
                f"the note to {recipient} could not be delivered: {d.fault!r}"
            ) from d.fault
        if d.direct != "failed" or d.store != "failed":  # stopped before both answered
            raise NodeClosed(f"the node closed before the note to {recipient} was delivered")
        if d.refused:
            raise AccessDenied(f"{d.direct_error}; no DHT node stored it either", aid=recipient)
        raise Unreachable(
            f"the note to {recipient} could not be delivered: direct: {d.direct_error}; "
            "no DHT node accepted it"
        )

    async def _deliver(
        self, d: _Delivery, record: SignedRecord, frame: MailboxFrame, local: Aid,
        endpoints: tuple[str, ...],
    ) -> None:  # fmt: skip
        """Both paths of one note, in the node's task group: ``send`` waits for the first
        that holds the note; the other runs on to its end (or until the node closes)."""
        try:
            with d.scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._direct, d, frame, local, endpoints)
                    if self._warm(d.recipient, local):
                        with anyio.move_on_after(WARM_HEAD_START_S):
                            while d.direct == "dialing":
                                await d.changed.wait()
                    if d.store == "storing":  # not made needless by the acknowledgement
                        tg.start_soon(self._store, d, record)
        except Exception as exc:  # a bug: the supervisor counts and logs it
            d.fault = exc
            raise
        finally:
            d.ended = True
            if d.background:
                self._background -= 1
            if d.returned and d.pending():
                logger.info("mailbox.background_stopped recipient=%s msg=%s pending=%s",
                            d.recipient.short(), d.msg_id.hex()[:16], d.pending())  # fmt: skip
            d.notify()

    def _warm(self, recipient: Aid, local: Aid) -> bool:
        if self._connected is None:
            return False
        try:
            return self._connected(recipient, local=local)
        except A2ALError:  # closing: the paths find out themselves
            return False

    async def _direct(
        self, d: _Delivery, frame: MailboxFrame, local: Aid, endpoints: tuple[str, ...]
    ) -> None:
        """Deliver over ``a2mb``: the recipient's ``01`` acknowledgement means it holds the
        note (committed to its inbox)."""
        recipient = d.recipient
        acknowledged = False
        try:
            with anyio.fail_after(DIRECT_TIMEOUT_S):
                pc = await self._connect(recipient, local=local, endpoints=endpoints)
                await pc.send_mailbox(frame)
            acknowledged = True
            if d.store == "storing":  # the recipient holds it: no copy on the replicas
                d.store = "skipped"
                self._stats.stores_skipped += 1
                d.store_scope.cancel()
        except TimeoutError:
            d.direct_error = f"no acknowledgement within {DIRECT_TIMEOUT_S:g} s"
        except ConnectionClosed as exc:
            if exc.error_code == ERR_ACCESS_DENIED:
                d.refused = True
                d.direct_error = (
                    f"{recipient} refused the note (its mailbox or disk is full, or it "
                    "did not accept the note)"
                )
            else:
                d.direct_error = str(exc) or type(exc).__name__
        except NodeClosed:
            return  # the node is closing: _deliver ends, and says so if it matters
        except A2ALError as exc:
            d.direct_error = str(exc) or type(exc).__name__
        d.direct = "ok" if acknowledged else "failed"
        if d.returned:  # the note was stored already: this is the background's outcome
            stats = self._stats
            if d.direct == "ok":
                stats.background_ok += 1
            else:
                stats.background_failed += 1
                stats.background_refused += d.refused
            logger.info("mailbox.direct_done recipient=%s msg=%s ok=%s refused=%s error=%s",
                        recipient.short(), d.msg_id.hex()[:16], d.direct == "ok", d.refused,
                        d.direct_error)  # fmt: skip
        d.notify()

    async def _store(self, d: _Delivery, record: SignedRecord) -> None:
        """STORE at NodeID(recipient) on its replica set, as a2ald does."""
        recipient = d.recipient
        try:
            with d.store_scope:
                event = await self._publish_record(record, recipient.node_id)
            if d.store_scope.cancelled_caught:
                return  # stopped by _direct, which said so
        except NodeClosed:
            return  # the node is closing: _deliver ends, and says so if it matters
        except A2ALError as exc:
            logger.info("mailbox.store_failed recipient=%s error=%s", recipient.short(), exc)
            d.store = "failed"
        else:
            d.replicas = len(event.stored_at)
            d.store = "ok" if d.replicas else "failed"
        if d.returned:  # the recipient acknowledged already: the background's outcome
            stats = self._stats
            if d.store == "ok":
                stats.background_ok += 1
            else:
                stats.background_failed += 1
            logger.info("mailbox.store_done recipient=%s msg=%s replicas=%d",
                        recipient.short(), d.msg_id.hex()[:16], d.replicas)  # fmt: skip
        d.notify()

    # -- receive --------------------------------------------------------------------------

    def read(
        self,
        recipient: Aid,
        *,
        peek: bool = False,
        limit: int = 50,
        sender: Aid | None = None,
        include_read: bool = False,
    ) -> list[Note]:
        """Notes for the local identity ``recipient``, oldest first; unless ``peek`` they
        are marked read (kept until deleted or past retention)."""
        return self.inbox.read(recipient, peek=peek, limit=limit, sender=sender,
                               include_read=include_read, now=self._clock.wall())  # fmt: skip

    def delete(self, recipient: Aid, msg_ids: Sequence[bytes]) -> int:
        """Remove notes of ``recipient`` from the inbox; returns how many were removed."""
        return self.inbox.delete(recipient, msg_ids)

    def listen(self, callback: Callable[[Note], None]) -> Callable[[], None]:
        """Call ``callback(note)`` for every new note; returns a function that stops it."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def accept(self, record: SignedRecord, *, via: str, routed: Aid | None = None) -> bool:
        """Verify, open and store one mailbox record. True if it is (now or already) in the
        inbox — the condition for acknowledging it; False if it was refused (counted by
        reason). Never raises: a storage failure is a refusal."""
        now = self._clock.wall()
        stats = self._stats
        if self._refused_ids:
            freed = self.inbox.usage().freed
            if freed != self._refused_freed:  # notes were removed: quotas may have room
                self._refused_ids.clear()
                self._refused_freed = freed
            elif record.msg_id in self._refused_ids:
                stats.refused += 1
                stats.refused_known += 1
                return False
        try:
            if record.category is not Category.MAILBOX:
                raise VerificationError(f"rec_type {record.rec_type:#x} is not a mailbox note")
            payload = MailboxPayload.from_bytes(record.payload)
            if payload.sender != record.address:
                raise VerificationError("note sender does not match the record's signer")
            ident = self._identities.get(payload.recipient)
            if ident is None or (routed is not None and payload.recipient != routed):
                raise VerificationError("note is addressed to an AID that is not ours here")
            if self._has(payload.recipient, record.msg_id):  # acknowledged again, even at quota
                stats.duplicates += 1
                return True
            record.validate(now)  # signature, freshness, sender authority (delegation)
            over = self.inbox.precheck(record.address)  # before the work of decrypting
            if over is not None:
                self._count_refusal(over, record, via)
                self._remember_refused(record.msg_id)
                return False
            opened = open_note(payload, own_aid=ident.aid, own_key=ident.key)
        except (VerificationError, DecodeError) as exc:
            stats.refused += 1
            logger.info("mailbox.refused via=%s reason=%s", via, exc)
            return False
        note = Note(msg_id=record.msg_id, recipient=payload.recipient, sender=record.address,
                    msg_type=opened.msg_type, body=opened.body, sent_at=record.timestamp,
                    received_at=now, via=via)  # fmt: skip
        result = self.inbox.add(note)
        if result is AddResult.DUPLICATE:
            stats.duplicates += 1
            return True
        if result is not AddResult.STORED:
            self._count_refusal(result, record, via)
            if result.quota:
                self._remember_refused(record.msg_id)
            return False
        stats.received += 1
        self._wake.set()
        for cb in list(self._listeners):
            try:
                cb(note)
            except Exception:  # a listener's bug must not lose the note (it is committed)
                logger.exception("mailbox.listener_failed")
        return True

    def _count_refusal(self, result: AddResult, record: SignedRecord, via: str) -> None:
        stats = self._stats
        stats.refused += 1
        field = _REFUSAL_FIELD[result]
        setattr(stats, field, getattr(stats, field) + 1)
        logger.info("mailbox.refused via=%s sender=%s reason=%s", via, record.address.short(),
                    result.value)  # fmt: skip

    def _has(self, recipient: Aid, msg_id: bytes) -> bool:
        import sqlite3  # the inbox's database has loaded it; the node's import need not

        try:
            return self.inbox.has(recipient, msg_id)
        except sqlite3.Error:  # unreadable for now: Inbox.add decides (and counts)
            return False

    def _remember_refused(self, msg_id: bytes) -> None:
        """Only for verified records: the id is then this sender's note, never someone
        else's (the payload names its sender)."""
        if not self._refused_ids:
            self._refused_freed = self.inbox.usage().freed
        self._refused_ids[msg_id] = None
        while len(self._refused_ids) > self.inbox.limits.mailbox_notes_total:
            self._refused_ids.popitem(last=False)

    def purge(self, now: float | None = None) -> tuple[int, int]:
        """Remove read notes past ``mailbox.retention_s`` and unread notes past
        ``limits.mailbox_unread_retention_s``; returns (read, unread) removed."""
        when = self._clock.wall() if now is None else now
        read, unread = self.inbox.purge(when, self._config.retention_s,
                                        self.inbox.limits.mailbox_unread_retention_s)  # fmt: skip
        self._stats.purged_read += read
        self._stats.purged_unread += unread
        if read or unread:
            logger.info("mailbox.purged read=%d unread=%d", read, unread)
        return read, unread

    def on_dht_record(self, event: MailboxStored | RecordPushed) -> None:
        """A mailbox record a peer STOREd with us or pushed to us (a DHT event): accepted if
        it is filed under the key of one of the local identities."""
        if event.record.category is Category.MAILBOX:
            via = "push" if isinstance(event, RecordPushed) else "store"
            if any(event.key == aid.node_id for aid in self._identities):
                self.accept(event.record, via=via)

    async def on_frame(self, routed: Aid | None, frame: MailboxFrame) -> bool:
        """An ``a2mb`` frame on a connection routed to ``routed``."""
        try:
            record = SignedRecord.from_bytes(frame.record)
        except DecodeError:
            self._stats.refused += 1
            return False
        if record.msg_id != frame.msg_id:
            self._stats.refused += 1
            return False
        return self.accept(record, via="direct", routed=routed)

    async def poll(self) -> int:
        """Collect the notes waiting at our identities' keys (and re-arm the one-shot
        subscriptions there). Returns how many were new."""
        before = self._stats.received
        self._stats.polls += 1
        for ident in list(self._identities.values()):
            try:
                records = await self._aggregate(ident.aid.node_id, REC_TYPE_MAILBOX,
                                                subscribe=True)  # fmt: skip
            except A2ALError as exc:
                logger.info("mailbox.poll_failed aid=%s error=%s", ident.aid.short(), exc)
                continue
            for rec in records:
                self.accept(rec, via="poll")
        return self._stats.received - before

    async def poll_loop(self) -> None:
        """Poll at start-up, then with back-off while nothing arrives; purge old notes."""
        cfg = self._config
        delay = POLL_START_S
        while True:
            try:
                found = await self.poll() if self._dht_ready() else 0
            except NodeClosed:
                return
            self.purge()
            delay = POLL_START_S if found else min(delay * 2, cfg.poll_interval_s)
            self._wake = anyio.Event()
            with anyio.move_on_after(delay):
                await self._wake.wait()
