"""Recording and verifying audit events. Views and services call ``record()``; nothing
else writes the audit tables. Reading them is ``clinic.audit.reading``; reviewing access
(break-glass grants, the patient access report) is ``clinic.audit.review``.

``record()`` queues the event on the database session; it is appended to the hash chain
in the same transaction, just before COMMIT. The chain head is locked only from that
append to the commit, so audited requests never queue behind each other for longer.
A request that queued events but does not commit itself (a page view) is committed after
the response is built; if that fails, the user gets an error page instead of the data.

Each event's hash is an HMAC-SHA256, keyed with a secret kept outside the database
(``clinic.audit.keys``), over the previous event's hash and a canonical encoding of the
event's ``HASHED_FIELDS``. Events written before keys existed keep their plain SHA-256
hash (``key_id`` None); the migration that introduced keys closed them with a keyed
``chain_sealed`` event, and ``verify_chain()`` accepts unkeyed events only before it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, g, has_request_context, request
from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy import event
from sqlalchemy.orm import Session

from clinic.accounts.models import User
from clinic.audit.keys import AuditKeys, audit_keys
from clinic.audit.keys import configure as configure_keys
from clinic.audit.models import (
    GENESIS_HASH,
    AuditAction,
    AuditChainHead,
    AuditEvent,
    AuditOutcome,
)
from clinic.converters import DATABASE_INT_MAX
from clinic.db import utcnow
from clinic.extensions import db

PENDING_KEY = "audit_pending"
# Largest id an INTEGER column holds (PostgreSQL int4): a larger one never reaches a query.
MAX_ID = DATABASE_INT_MAX
# Largest position in the chain (BIGINT): a larger cursor is clamped to it.
MAX_SEQ = 2**63 - 1
IP_COLUMN_LENGTH = 45

# What each event's hash covers. ``key_id`` is covered too, so an event cannot be moved
# to another key; ``prev_hash`` is the chain itself.
HASHED_FIELDS = (
    "seq",
    "occurred_at",
    "user_id",
    "username",
    "role",
    "site_id",
    "action",
    "entity_type",
    "entity_id",
    "patient_id",
    "outcome",
    "ip",
    "request_id",
    "details",
    "key_id",
)
# What the plain SHA-256 events written before keys existed covered.
LEGACY_HASHED_FIELDS = HASHED_FIELDS[:-1]
SEAL_ENTITY = "audit_chain"


def client_ip(raw: str | None) -> str | None:
    """``raw`` as a normalised IP address, or None when it is not one (a forged or
    over-long ``X-Forwarded-For`` behind ProxyFix, an IPv6 zone such as ``fe80::1%eth0``).
    Never raises. ``clinic.edge`` checks the same at the WSGI edge; this is the audit
    trail's own check, whatever the caller's request looks like."""
    if not raw or len(raw) > 64 or "%" in raw:
        return None
    try:
        text = str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        return None
    return text if len(text) <= IP_COLUMN_LENGTH else None


def recently_recorded(
    user: User, action: AuditAction, entity_type: str, site_id: int, within: dt.timedelta
) -> bool:
    """Whether ``user`` has an event of ``action`` on ``entity_type`` at ``site_id`` in the
    trail from the last ``within``: lets a page's automatic refresh skip recording again
    only when the server itself holds the record of the page shown (never on the client's
    word)."""
    return (
        db.session.scalar(
            sa.select(AuditEvent.id)
            .where(
                AuditEvent.user_id == user.id,
                AuditEvent.action == action,
                AuditEvent.entity_type == entity_type,
                AuditEvent.site_id == site_id,
                AuditEvent.occurred_at > utcnow() - within,
            )
            .limit(1)
        )
        is not None
    )


def record(
    action: AuditAction,
    *,
    actor: Any | None,
    entity_type: str | None = None,
    entity_id: int | str | None = None,
    patient_id: int | None = None,
    site_id: int | None = None,
    outcome: AuditOutcome = AuditOutcome.SUCCESS,
    details: Mapping[str, Any] | None = None,
    session: Session | None = None,
) -> None:
    """Queue one audit event for the current transaction.

    ``actor`` is the user who acted (None for an anonymous request or the operator's CLI).
    ``details`` holds context such as the *names* of changed fields; never clinical text,
    passwords or codes (HIPAA minimum necessary; 42 CFR 2.16 security of records).
    The client's address is stored only when it is a valid IP address; otherwise the
    event stores None and ``"client_ip_invalid": true`` (never the raw value).
    """
    actor_id = getattr(actor, "id", None) if getattr(actor, "is_authenticated", False) else None
    details = dict(details or {})
    ip = None
    if has_request_context():
        ip = client_ip(request.remote_addr)
        if ip is None and request.remote_addr:
            details["client_ip_invalid"] = True
    row = {
        "occurred_at": utcnow(),
        "user_id": actor_id,
        "username": getattr(actor, "username", None) if actor_id else None,
        "role": getattr(getattr(actor, "role", None), "value", None) if actor_id else None,
        "site_id": site_id,
        "action": AuditAction(action).value,
        "entity_type": entity_type,
        "entity_id": None if entity_id is None else str(entity_id),
        "patient_id": patient_id,
        "outcome": AuditOutcome(outcome).value,
        "ip": ip,
        "request_id": g.get("request_id") if has_request_context() else None,
        "details": canonical_json(details),
    }
    session = session or db.session()
    session.info.setdefault(PENDING_KEY, []).append(row)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _message(prev_hash: str, fields: Mapping[str, Any], names: tuple[str, ...]) -> bytes:
    payload = {k: fields[k] for k in names}
    payload["occurred_at"] = _timestamp(payload["occurred_at"])
    return f"{prev_hash}\n{canonical_json(payload)}".encode()


def event_hash(prev_hash: str, fields: Mapping[str, Any], secret: bytes) -> str:
    """HMAC-SHA256 with ``secret`` over the previous hash and the canonical JSON of the
    event's ``HASHED_FIELDS`` (``fields["key_id"]`` names the key); 64 hex characters."""
    return hmac.new(secret, _message(prev_hash, fields, HASHED_FIELDS), hashlib.sha256).hexdigest()


def legacy_event_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """The plain SHA-256 of events written before keys existed (``key_id`` None)."""
    return hashlib.sha256(_message(prev_hash, fields, LEGACY_HASHED_FIELDS)).hexdigest()


def _append(session: Session, rows: list[dict[str, Any]]) -> None:
    # Take the chain head's lock first (an UPDATE: a row lock on PostgreSQL, the write
    # lock on SQLite), then read it: no two appenders can link to the same event.
    keys = audit_keys()
    head = AuditChainHead.__table__
    session.execute(sa.update(head).where(head.c.id == 1).values(last_seq=head.c.last_seq))
    seq, prev = session.execute(
        sa.select(head.c.last_seq, head.c.last_hash).where(head.c.id == 1)
    ).one()
    # Stamped under the lock, so time order and chain order agree (the viewer turns date
    # filters into ranges of seq).
    appended_at = utcnow()
    for row in rows:
        seq += 1
        row["occurred_at"] = appended_at
        row["seq"] = seq
        row["key_id"] = keys.current_id
        row["prev_hash"] = prev
        row["hash"] = prev = event_hash(prev, row, keys.current_secret)
    session.execute(sa.insert(AuditEvent.__table__), rows)
    session.execute(sa.update(head).where(head.c.id == 1).values(last_seq=seq, last_hash=prev))


@event.listens_for(FlaskSession, "before_commit")
def _append_pending(session: Session) -> None:
    rows = session.info.pop(PENDING_KEY, None)
    if rows:
        _append(session, rows)


@event.listens_for(FlaskSession, "after_rollback")
def _drop_pending(session: Session) -> None:
    # What was rolled back did not happen: its events go too.
    session.info.pop(PENDING_KEY, None)


def has_pending(session: Session | None = None) -> bool:
    return bool((session or db.session()).info.get(PENDING_KEY))


# --- verification ---------------------------------------------------------------------


@dataclass(frozen=True)
class ChainAnchor:
    """The chain's last event, exported out of the database by ``flask audit anchor``:
    whoever later verifies against it detects a chain shortened or rewritten up to it."""

    seq: int
    hash: str
    key_id: str | None
    occurred_at: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ChainAnchor:
        """Read an anchor; raises ``ValueError`` when ``text`` is not one."""
        try:
            data = json.loads(text)
            anchor = cls(
                seq=data["seq"],
                hash=data["hash"],
                key_id=data.get("key_id"),
                occurred_at=data.get("occurred_at", ""),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError("not an audit chain anchor (JSON with seq and hash)") from exc
        if (
            not isinstance(anchor.seq, int)
            or isinstance(anchor.seq, bool)
            or not 1 <= anchor.seq <= MAX_SEQ
            or not isinstance(anchor.hash, str)
            or len(anchor.hash) != 64
            or any(c not in "0123456789abcdef" for c in anchor.hash)
        ):
            raise ValueError("not an audit chain anchor (seq must be >= 1, hash 64 hex digits)")
        return anchor


def chain_anchor() -> ChainAnchor | None:
    """The last event of the chain as an anchor, or None when the chain is empty."""
    last = db.session.execute(
        sa.select(AuditEvent.seq, AuditEvent.hash, AuditEvent.key_id, AuditEvent.occurred_at)
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    ).one_or_none()
    if last is None:
        return None
    return ChainAnchor(last.seq, last.hash, last.key_id, _timestamp(last.occurred_at))


@dataclass
class ChainReport:
    events: int
    ok: bool
    problem: str | None = None
    last_hash: str = GENESIS_HASH
    anchors_checked: int = 0


def _is_seal(row: Any, legacy_events: int, legacy_head: str) -> bool:
    if row.action != AuditAction.CHAIN_SEALED.value or row.entity_type != SEAL_ENTITY:
        return False
    try:
        details = json.loads(row.details)
    except json.JSONDecodeError:
        return False
    return details == {"legacy_events": legacy_events, "legacy_head": legacy_head}


def verify_chain(
    *, keys: AuditKeys | None = None, anchors: Iterable[ChainAnchor] = (), batch_size: int = 2000
) -> ChainReport:
    """Walk the chain from the first event; report the first broken or missing link.

    Broken: a gap in ``seq``, an event that does not link to the one before, a hash that
    does not match (HMAC with the key the event names), a key that is not configured, an
    unkeyed (plain SHA-256) event anywhere but in a prefix closed by the keyed seal, an
    empty chain, a head that disagrees with the last event, or an anchor whose event is
    missing or has another hash. ``keys`` defaults to the app's (``AUDIT_HMAC_KEYS``).
    """
    keys = keys or audit_keys()
    pending = {a.seq: a for a in anchors}
    checked = 0
    expected_seq, prev, count = 1, GENESIS_HASH, 0
    legacy, keyed_seen = 0, False

    def broken(problem: str) -> ChainReport:
        return ChainReport(count, False, problem, prev, checked)

    try:
        for row in _events_in_order(batch_size):
            seq = row.seq
            if seq != expected_seq:
                return broken(f"event {expected_seq} is missing (found {seq} next)")
            if row.prev_hash != prev:
                return broken(f"event {seq} does not link to the event before it")
            fields = {k: getattr(row, k) for k in HASHED_FIELDS}
            if row.key_id is None:
                if keyed_seen:
                    return broken(
                        f"event {seq} is an unkeyed SHA-256 event after keyed events: "
                        "the chain was rewritten"
                    )
                if legacy_event_hash(prev, fields) != row.hash:
                    return broken(f"event {seq} was altered (its hash does not match)")
                legacy += 1
            else:
                secret = keys.secret(row.key_id)
                if secret is None:
                    return broken(
                        f"event {seq} names key {row.key_id!r}, which AUDIT_HMAC_KEYS does "
                        "not hold: configure that key, or the event was forged"
                    )
                if not hmac.compare_digest(event_hash(prev, fields, secret), row.hash):
                    return broken(f"event {seq} was altered (its hash does not match)")
                if legacy and not keyed_seen and not _is_seal(row, legacy, prev):
                    return broken(
                        f"events 1-{legacy} are unkeyed SHA-256 events and event {seq} is "
                        "not the keyed seal that must follow them: the chain was rewritten"
                    )
                keyed_seen = True
            anchor = pending.pop(seq, None)
            if anchor is not None:
                if anchor.hash != row.hash:
                    return broken(
                        f"event {seq} does not match the anchor (hash {anchor.hash[:12]}...): "
                        "the chain was rewritten"
                    )
                checked += 1
            prev = row.hash
            expected_seq += 1
            count += 1
    except (LookupError, ValueError, TypeError) as exc:
        # A value the columns' types cannot read back (an edited date, say).
        return broken(f"event {expected_seq} was altered (unreadable: {type(exc).__name__})")
    if count == 0:
        return broken(
            "the audit trail is empty: a trail in use always has events, so they were removed"
        )
    if legacy and not keyed_seen:
        return broken(
            f"the chain holds only unkeyed SHA-256 events (1-{legacy}) with no keyed seal: "
            "the chain was rewritten"
        )
    if pending:
        return broken(
            f"the chain ends at event {count} but an anchor names event {max(pending)}: "
            "events were removed"
        )
    head = db.session.get(AuditChainHead, 1)
    if head is None or head.last_seq != count or head.last_hash != prev:
        last = head.last_seq if head else "none"
        return broken(
            f"the chain ends at event {count} but its head says {last}: "
            "events are missing from the end"
        )
    return ChainReport(count, True, None, prev, checked)


def _events_in_order(batch_size: int) -> Iterator[Any]:
    # Core rows, with the enums read as plain text: an edited value the Enum types would
    # refuse is reported as an altered event, not raised.
    table = AuditEvent.__table__
    columns = [
        sa.type_coerce(c, sa.String()).label(c.name) if c.name in {"action", "outcome"} else c
        for c in table.c
    ]
    last = 0
    while True:
        batch = db.session.execute(
            sa.select(*columns).where(table.c.seq > last).order_by(table.c.seq).limit(batch_size)
        ).all()
        if not batch:
            return
        yield from batch
        last = batch[-1].seq


# --- wiring ---------------------------------------------------------------------------


def commit_pending_events(response: Response) -> Response:
    """Commit the events a request queued but did not commit (page views, refusals)."""
    if has_pending():
        try:
            db.session.commit()
        except sa.exc.SQLAlchemyError:
            db.session.rollback()
            from flask import current_app, render_template

            current_app.logger.exception("could not record the audit trail")
            # Fail closed: without its audit record, the page is not shown.
            return Response(render_template("errors/500.html", code=500), status=500)
    return response


def register(app: Flask) -> None:
    """Load the chain's keys (``RuntimeError`` in production without them) and commit
    the events each request queued."""
    configure_keys(app)
    app.after_request(commit_pending_events)
