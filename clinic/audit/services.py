"""Recording and verifying audit events. Views and services call ``record()``; nothing
else writes the audit tables.

``record()`` queues the event on the database session; it is appended to the hash chain
in the same transaction, just before COMMIT. The chain head is locked only from that
append to the commit, so audited requests never queue behind each other for longer.
A request that queued events but does not commit itself (a page view) is committed after
the response is built; if that fails, the user gets an error page instead of the data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, g, has_request_context, request
from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy import event
from sqlalchemy.orm import Session

from clinic.audit.models import (
    GENESIS_HASH,
    AuditAction,
    AuditChainHead,
    AuditEvent,
    AuditOutcome,
)
from clinic.db import utcnow
from clinic.extensions import db

PENDING_KEY = "audit_pending"
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
    """
    actor_id = getattr(actor, "id", None) if getattr(actor, "is_authenticated", False) else None
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
        "ip": request.remote_addr if has_request_context() else None,
        "request_id": g.get("request_id") if has_request_context() else None,
        "details": canonical_json(details or {}),
    }
    session = session or db.session()
    session.info.setdefault(PENDING_KEY, []).append(row)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def event_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """SHA-256 over the previous hash and a canonical encoding of the event."""
    payload = {k: fields[k] for k in HASHED_FIELDS}
    payload["occurred_at"] = _timestamp(payload["occurred_at"])
    return hashlib.sha256(f"{prev_hash}\n{canonical_json(payload)}".encode()).hexdigest()


def _append(session: Session, rows: list[dict[str, Any]]) -> None:
    # Take the chain head's lock first (an UPDATE: a row lock on PostgreSQL, the write
    # lock on SQLite), then read it: no two appenders can link to the same event.
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
        row["prev_hash"] = prev
        row["hash"] = prev = event_hash(prev, row)
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


@dataclass
class ChainReport:
    events: int
    ok: bool
    problem: str | None = None
    last_hash: str = GENESIS_HASH


def verify_chain(batch_size: int = 2000) -> ChainReport:
    """Walk the chain from the first event; report the first broken or missing link."""
    expected_seq, prev = 1, GENESIS_HASH
    count = 0
    for event_row in _events_in_order(batch_size):
        if event_row.seq != expected_seq:
            return ChainReport(
                count, False, f"event {expected_seq} is missing (found {event_row.seq} next)", prev
            )
        if event_row.prev_hash != prev:
            return ChainReport(
                count, False, f"event {event_row.seq} does not link to the event before it", prev
            )
        fields = {k: getattr(event_row, k) for k in HASHED_FIELDS}
        fields["action"] = AuditAction(fields["action"]).value
        fields["outcome"] = AuditOutcome(fields["outcome"]).value
        if event_hash(prev, fields) != event_row.hash:
            return ChainReport(
                count, False, f"event {event_row.seq} was altered (its hash does not match)", prev
            )
        prev = event_row.hash
        expected_seq += 1
        count += 1
    head = db.session.get(AuditChainHead, 1)
    if head is None or head.last_seq != count or head.last_hash != prev:
        last = head.last_seq if head else "none"
        return ChainReport(
            count,
            False,
            f"the chain ends at event {count} but its head says {last}: "
            "events are missing from the end",
            prev,
        )
    return ChainReport(count, True, None, prev)


def _events_in_order(batch_size: int) -> Iterator[AuditEvent]:
    last = 0
    while True:
        batch = list(
            db.session.scalars(
                sa.select(AuditEvent)
                .where(AuditEvent.seq > last)
                .order_by(AuditEvent.seq)
                .limit(batch_size)
            )
        )
        if not batch:
            return
        yield from batch
        last = batch[-1].seq
        db.session.expunge_all()


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
    app.after_request(commit_pending_events)


# --- reading --------------------------------------------------------------------------


@dataclass
class AuditFilters:
    username: str | None = None
    patient_id: int | None = None
    action: str | None = None
    entity_type: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None


def _first_seq_at_or_after(moment: dt.datetime) -> int | None:
    # One seek on the occurred_at index (events are appended in time order), not a
    # min() over every later event.
    return db.session.scalar(
        sa.select(AuditEvent.seq)
        .where(AuditEvent.occurred_at >= moment)
        .order_by(AuditEvent.occurred_at, AuditEvent.seq)
        .limit(1)
    )


def filtered_events(filters: AuditFilters) -> sa.Select:
    """Events matching the filters, newest first. Dates become a range of ``seq`` through
    the ``occurred_at`` index, so every filter is served by an index ending in ``seq``."""
    query = sa.select(AuditEvent)
    if filters.username:
        query = query.where(AuditEvent.username == filters.username.strip().lower())
    if filters.patient_id:
        query = query.where(AuditEvent.patient_id == filters.patient_id)
    if filters.action:
        query = query.where(AuditEvent.action == AuditAction(filters.action))
    if filters.entity_type:
        query = query.where(AuditEvent.entity_type == filters.entity_type.strip())
    if filters.date_from:
        start = dt.datetime.combine(filters.date_from, dt.time(), dt.UTC)
        first = _first_seq_at_or_after(start)
        query = query.where(AuditEvent.seq >= (first if first is not None else 2**62))
    if filters.date_to:
        end = dt.datetime.combine(filters.date_to + dt.timedelta(days=1), dt.time(), dt.UTC)
        first_after = _first_seq_at_or_after(end)
        if first_after is not None:
            query = query.where(AuditEvent.seq < first_after)
    return query.order_by(AuditEvent.seq.desc())


def event_page(
    filters: AuditFilters, *, before: int | None, size: int = 100
) -> tuple[list[AuditEvent], int | None]:
    """One page of events older than ``before`` (keyset pagination: as fast on page 1,000
    as on page 1); returns the events and the cursor of the next page, if any."""
    query = filtered_events(filters)
    if before:
        query = query.where(AuditEvent.seq < before)
    events = list(db.session.scalars(query.limit(size + 1)))
    next_cursor = events[size - 1].seq if len(events) > size else None
    return events[:size], next_cursor


def iter_events(filters: AuditFilters, batch_size: int = 2000) -> Iterator[AuditEvent]:
    """Every matching event, newest first, fetched in keyset batches (CSV export)."""
    before = None
    while True:
        events, before = event_page(filters, before=before, size=batch_size)
        yield from events
        if before is None:
            return


# --- break-glass review ---------------------------------------------------------------


def break_glass_grants(*, unacknowledged_only: bool = True, limit: int = 200) -> list:
    from clinic.audit.models import BreakGlassGrant

    query = sa.select(BreakGlassGrant).order_by(BreakGlassGrant.granted_at.desc()).limit(limit)
    if unacknowledged_only:
        query = query.where(BreakGlassGrant.acknowledged_at.is_(None))
    return list(db.session.scalars(query))


def acknowledge_break_glass(grant: Any, *, actor: Any) -> None:
    """An administrator has reviewed an emergency access and its reason."""
    if grant.acknowledged_at is not None:
        return
    grant.acknowledged_at = utcnow()
    grant.acknowledged_by_id = actor.id
    db.session.flush()
    record(
        AuditAction.ACKNOWLEDGE,
        actor=actor,
        entity_type="break_glass_grant",
        entity_id=grant.id,
        patient_id=grant.patient_id,
    )
