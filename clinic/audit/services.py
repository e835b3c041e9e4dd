"""Recording, verifying and reading audit events. Views and services call ``record()``;
nothing else writes the audit tables.

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
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import Flask, Response, g, has_request_context, request
from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy import event
from sqlalchemy.orm import Session

from clinic.accounts.models import User, user_site
from clinic.audit import display
from clinic.audit.keys import AuditKeys, audit_keys
from clinic.audit.keys import configure as configure_keys
from clinic.audit.models import (
    GENESIS_HASH,
    REVIEW_NOTE_MAX,
    AuditAction,
    AuditChainHead,
    AuditEvent,
    AuditOutcome,
    BreakGlassGrant,
    ReviewOutcome,
)
from clinic.converters import DATABASE_INT_MAX
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.patients.models import Patient
from clinic.sites.models import Site

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


# --- who may read what ----------------------------------------------------------------


@dataclass(frozen=True)
class AuditScope:
    """The events an administrator may read (HIPAA minimum necessary, 164.502(b)).

    Organisation-wide administrators (``all_sites``) read every event. A site
    administrator reads the events about their sites: an event about a patient when the
    patient is at one of their sites; otherwise an event filed under one of their sites;
    otherwise an event about a user account when that user works at one of their sites;
    otherwise (sign-ins of no account, page views without a patient) when the user who
    acted works at one of their sites. Everything is decided in the query.
    """

    site_ids: frozenset[int] | None  # None: every site

    @classmethod
    def of(cls, user: Any) -> AuditScope:
        return cls(None if user.all_sites else frozenset(user.site_ids))

    @classmethod
    def everything(cls) -> AuditScope:
        return cls(None)

    def _sites(self) -> frozenset[int]:
        return self.site_ids or frozenset({-1})  # no site: nothing matches

    def patient_visible(self, patient_id: int) -> bool:
        """True when the patient exists and lies in scope (always True organisation-wide)."""
        if self.site_ids is None:
            return True
        if not 1 <= patient_id <= MAX_ID:
            return False
        found = db.session.scalar(
            sa.select(Patient.id).where(
                Patient.id == patient_id, Patient.site_id.in_(self._sites())
            )
        )
        return found is not None

    def user_visible(self, username: str) -> bool:
        """True when a user of that name works at one of the scope's sites."""
        if self.site_ids is None:
            return True
        found = db.session.scalar(
            sa.select(User.id)
            .join(user_site, user_site.c.user_id == User.id)
            .where(User.username == username, user_site.c.site_id.in_(self._sites()))
            .limit(1)
        )
        return found is not None

    def event_clause(self) -> sa.ColumnElement[bool]:
        """The WHERE clause on ``audit_event`` selecting the events in scope."""
        if self.site_ids is None:
            return sa.true()
        sites = self._sites()
        e = AuditEvent
        patients = sa.select(Patient.id).where(Patient.site_id.in_(sites))
        users = sa.select(user_site.c.user_id).where(user_site.c.site_id.in_(sites))
        user_ids_as_text = sa.select(sa.cast(user_site.c.user_id, sa.String)).where(
            user_site.c.site_id.in_(sites)
        )
        # One CASE, in the rule's order of precedence: the planner cannot turn it into
        # index lookups for each branch (SQLite's multi-index OR would collect and sort a
        # third of the trail), so a page walks the seq index newest first and stops.
        return sa.case(
            (e.patient_id.is_not(None), e.patient_id.in_(patients)),
            (e.site_id.is_not(None), e.site_id.in_(sites)),
            (e.entity_type == "user", e.entity_id.in_(user_ids_as_text)),
            else_=e.user_id.in_(users),
        )


# --- reading --------------------------------------------------------------------------


@dataclass
class AuditFilters:
    username: str | None = None
    patient_id: int | None = None
    action: str | None = None
    entity_type: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None


USER_PREFIX_LIMIT = 200


def _prefix_range(column: sa.ColumnElement, prefix: str) -> sa.ColumnElement[bool]:
    # A range, not LIKE: the typed text carries no wildcards, and a b-tree index on the
    # column (app_user's unique username) serves it on SQLite and PostgreSQL alike.
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return column >= prefix
    return sa.and_(column >= prefix, column < prefix[:-1] + chr(last + 1))


def users_with_prefix(prefix: str, scope: AuditScope) -> list[int]:
    """Ids of the users in ``scope`` (working at one of its sites) whose username starts
    with ``prefix`` (case-insensitive, surrounding spaces ignored), at most
    ``USER_PREFIX_LIMIT``; [] for an empty prefix. The range is checked again in Python,
    since a database collation may order punctuation differently from code points."""
    prefix = prefix.strip().lower()
    if not prefix:
        return []
    query = sa.select(User.id, User.username).where(_prefix_range(User.username, prefix))
    if scope.site_ids is not None:
        at_sites = sa.select(user_site.c.user_id).where(user_site.c.site_id.in_(scope._sites()))
        query = query.where(User.id.in_(at_sites))
    rows = db.session.execute(query.order_by(User.username).limit(USER_PREFIX_LIMIT))
    return [user_id for user_id, username in rows if username.startswith(prefix)]


@dataclass
class PatientLookup:
    """What the viewer's patient filter found: exactly one ``patient`` in scope,
    several ``candidates`` to choose from, or nothing (``refused``: an MRN that is
    unknown or outside the scope, which the caller records as ``access_denied``;
    ``refused_id``: the patient it names, if any)."""

    patient: Patient | None = None
    candidates: list[Patient] | None = None
    refused: bool = False
    refused_id: int | None = None


PATIENT_CHOICES_LIMIT = 20


def find_patient(user: Any, scope: AuditScope, text: str) -> PatientLookup:
    """The patient an administrator means by ``text``: an MRN ("MAIN-1042", any case),
    else a name or date of birth as the patient search reads it, inside ``scope`` only
    (records entered in error included: their trail stays readable). Several matches
    come back as at most ``PATIENT_CHOICES_LIMIT`` candidates, with their sites loaded."""
    from sqlalchemy.orm import selectinload

    # Imported here: the patients domain records through clinic.audit at import time.
    from clinic.patients import search

    text = text.strip()
    if search.MRN_RE.match(text):
        found = db.session.scalar(sa.select(Patient).where(Patient.mrn == text.upper()))
        if found is None or not scope.patient_visible(found.id):
            return PatientLookup(refused=True, refused_id=found.id if found else None)
        return PatientLookup(patient=found)
    matches = list(
        db.session.scalars(
            search.search_patients(user, text, include_in_error=True)
            .options(selectinload(Patient.site))
            .order_by(Patient.last_name, Patient.first_name, Patient.id)
            .limit(PATIENT_CHOICES_LIMIT + 1)
        )
    )
    if len(matches) == 1:
        return PatientLookup(patient=matches[0])
    return PatientLookup(candidates=matches)


def _first_seq_at_or_after(moment: dt.datetime) -> int | None:
    # One seek on the occurred_at index (events are appended in time order), not a
    # min() over every later event.
    return db.session.scalar(
        sa.select(AuditEvent.seq)
        .where(AuditEvent.occurred_at >= moment)
        .order_by(AuditEvent.occurred_at, AuditEvent.seq)
        .limit(1)
    )


def filtered_events(filters: AuditFilters, scope: AuditScope) -> sa.Select:
    """Events in ``scope`` matching the filters, newest first. A patient or user outside
    the scope matches nothing. Dates become a range of ``seq`` through the ``occurred_at``
    index, so every filter is served by an index ending in ``seq``."""
    query = sa.select(AuditEvent).where(scope.event_clause())
    if filters.username:
        user_ids = users_with_prefix(filters.username, scope)
        if not user_ids:
            return query.where(sa.false())
        query = query.where(AuditEvent.user_id.in_(user_ids))
    if filters.patient_id:
        if not 1 <= filters.patient_id <= MAX_ID or not scope.patient_visible(filters.patient_id):
            return query.where(sa.false())
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
    filters: AuditFilters, *, scope: AuditScope, before: int | None, size: int = 100
) -> tuple[list[AuditEvent], int | None]:
    """One page of events older than ``before`` (keyset pagination: as fast on page 1,000
    as on page 1); returns the events and the cursor of the next page, if any.
    ``before`` is clamped to 1..MAX_SEQ, so no cursor reaches the database out of range."""
    query = filtered_events(filters, scope)
    if before is not None:
        query = query.where(AuditEvent.seq < min(max(before, 1), MAX_SEQ))
    events = list(db.session.scalars(query.limit(size + 1)))
    next_cursor = events[size - 1].seq if len(events) > size else None
    return events[:size], next_cursor


@dataclass
class ViewerRow:
    """An event as the viewer lists it: the moment in its site's time (or the viewer's
    first site's) beside UTC, and the patient's MRN rather than an internal id."""

    event: AuditEvent
    when: display.Moment
    mrn: str | None


def viewer_rows(events: list[AuditEvent], *, fallback_timezone: str | None) -> list[ViewerRow]:
    """``events`` with their display: two statements (the events' sites, the patients'
    MRNs) whatever their number, none without events."""
    if not events:
        return []
    site_ids = {e.site_id for e in events if e.site_id is not None}
    zones: dict[int, str] = {}
    if site_ids:
        rows = db.session.execute(sa.select(Site.id, Site.timezone).where(Site.id.in_(site_ids)))
        zones = {site_id: zone for site_id, zone in rows}  # noqa: C416 (see access_report)
    patient_ids = {e.patient_id for e in events if e.patient_id is not None}
    mrns: dict[int, str] = {}
    if patient_ids:
        rows = db.session.execute(
            sa.select(Patient.id, Patient.mrn).where(Patient.id.in_(patient_ids))
        )
        mrns = {patient_id: mrn for patient_id, mrn in rows}  # noqa: C416
    return [
        ViewerRow(
            event=e,
            when=display.moment(e.occurred_at, zones.get(e.site_id) or fallback_timezone),
            mrn=mrns.get(e.patient_id),
        )
        for e in events
    ]


def iter_events(
    filters: AuditFilters, *, scope: AuditScope, batch_size: int = 2000
) -> Iterator[AuditEvent]:
    """Every matching event in scope, newest first, fetched in keyset batches (CSV)."""
    before = None
    while True:
        events, before = event_page(filters, scope=scope, before=before, size=batch_size)
        yield from events
        if before is None:
            return


# --- break-glass review ---------------------------------------------------------------


def _grants_in_scope(scope: AuditScope) -> sa.Select:
    query = sa.select(BreakGlassGrant)
    if scope.site_ids is not None:
        patients = sa.select(Patient.id).where(Patient.site_id.in_(scope._sites()))
        query = query.where(BreakGlassGrant.patient_id.in_(patients))
    return query


@dataclass
class GrantRow:
    """One emergency access as the review shows it: the grant, who opened which patient
    at which site, who reviewed it, and how many pages of the patient's record the
    clinician viewed while the grant lasted."""

    grant: BreakGlassGrant
    clinician: User
    patient: Patient
    site: Site
    reviewer: User | None
    pages_viewed: int

    @property
    def live(self) -> bool:
        """The access has not ended yet: a review may come while it lasts, and must not
        say it ended."""
        return self.grant.expires_at > utcnow()


def _grant_rows(query: sa.Select) -> list[GrantRow]:
    # One statement for the whole list: the people, the patient, the site and the
    # count of views inside the grant's window (a correlated subquery on the
    # (user_id, seq) index), whatever the number of grants.
    clinician = sa.orm.aliased(User)
    reviewer = sa.orm.aliased(User)
    views = (
        sa.select(sa.func.count(AuditEvent.id))
        .where(
            AuditEvent.user_id == BreakGlassGrant.user_id,
            AuditEvent.patient_id == BreakGlassGrant.patient_id,
            AuditEvent.action == AuditAction.VIEW,
            AuditEvent.occurred_at >= BreakGlassGrant.granted_at,
            AuditEvent.occurred_at < BreakGlassGrant.expires_at,
        )
        .correlate(BreakGlassGrant)
        .scalar_subquery()
    )
    query = (
        query.add_columns(clinician, Patient, Site, reviewer, views)
        .join(clinician, clinician.id == BreakGlassGrant.user_id)
        .join(Patient, Patient.id == BreakGlassGrant.patient_id)
        .join(Site, Site.id == Patient.site_id)
        .outerjoin(reviewer, reviewer.id == BreakGlassGrant.acknowledged_by_id)
    )
    return [GrantRow(*row) for row in db.session.execute(query)]


def break_glass_grants(
    scope: AuditScope, *, unacknowledged_only: bool = True, limit: int = 200
) -> list[GrantRow]:
    """Emergency accesses to patients in ``scope``, newest first (the review list), at
    most ``limit``; in one statement whatever their number."""
    query = _grants_in_scope(scope).order_by(BreakGlassGrant.granted_at.desc()).limit(limit)
    if unacknowledged_only:
        query = query.where(BreakGlassGrant.acknowledged_at.is_(None))
    return _grant_rows(query)


def grant_row(scope: AuditScope, grant_id: int) -> GrantRow | None:
    """One grant as the review shows it, or None when it does not exist or its patient
    lies outside ``scope`` (the caller answers 404 for both)."""
    if not 1 <= grant_id <= MAX_ID:
        return None
    rows = _grant_rows(_grants_in_scope(scope).where(BreakGlassGrant.id == grant_id))
    return rows[0] if rows else None


def grant_for_review(scope: AuditScope, grant_id: int) -> BreakGlassGrant | None:
    """The grant, or None when it does not exist or its patient lies outside ``scope``."""
    if not 1 <= grant_id <= MAX_ID:
        return None
    return db.session.scalar(_grants_in_scope(scope).where(BreakGlassGrant.id == grant_id))


ESCALATION_NOTE_MESSAGE = "Say why this access is escalated and to whom."
ALREADY_REVIEWED_MESSAGE = "This emergency access was already acknowledged; nothing was changed."


def acknowledge_break_glass(
    grant: BreakGlassGrant, *, actor: Any, outcome: ReviewOutcome | str, note: str | None = None
) -> None:
    """An administrator has reviewed an emergency access and its reason
    (HIPAA 164.308(a)(1)(ii)(D) information system activity review): ``outcome`` is
    ``appropriate`` or ``escalated``; ``note`` (at most ``REVIEW_NOTE_MAX`` characters)
    is required for an escalation and stays on the grant: the audit event records the
    outcome, never the note.

    Raises ``DomainError`` (field ``outcome`` or ``note``) for an unknown outcome or an
    escalation without a note, and when the grant was already acknowledged, by this
    request's reader or a racing one (the UPDATE only changes an unacknowledged row).
    The CHECKs on ``break_glass_grant`` hold the same rules in the database.
    """
    try:
        outcome = ReviewOutcome(outcome)
    except ValueError:
        raise DomainError("Choose an outcome.", field="outcome") from None
    note = (note or "").strip() or None
    if outcome is ReviewOutcome.ESCALATED and note is None:
        raise DomainError(ESCALATION_NOTE_MESSAGE, field="note")
    if note is not None and len(note) > REVIEW_NOTE_MAX:
        raise DomainError(f"Enter at most {REVIEW_NOTE_MAX} characters.", field="note")
    grant_id, patient_id = grant.id, grant.patient_id
    table = BreakGlassGrant.__table__
    changed = db.session.execute(
        sa.update(table)
        .where(table.c.id == grant_id, table.c.acknowledged_at.is_(None))
        .values(
            acknowledged_at=utcnow(),
            acknowledged_by_id=actor.id,
            review_outcome=outcome.value,
            review_note=note,
        )
    ).rowcount
    if changed != 1:
        raise DomainError(ALREADY_REVIEWED_MESSAGE)
    db.session.expire(grant)
    record(
        AuditAction.ACKNOWLEDGE,
        actor=actor,
        entity_type="break_glass_grant",
        entity_id=grant_id,
        patient_id=patient_id,
        details={"outcome": outcome.value},
    )


# --- patient access report ------------------------------------------------------------


@dataclass
class AccessEntry:
    """One access to a patient's record as the report shows it: no ids, hashes or IPs."""

    when: display.Moment
    who: str
    role: str
    what: str
    reason: str | None


@dataclass
class AccessReport:
    patient: Patient
    site: Site
    date_from: dt.date | None
    date_to: dt.date | None
    entries: list[AccessEntry]


def _site_day_start(day: dt.date, timezone: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), ZoneInfo(timezone)).astimezone(dt.UTC)


def access_report(
    patient: Patient, *, date_from: dt.date | None = None, date_to: dt.date | None = None
) -> AccessReport:
    """Who accessed ``patient``'s record, newest first, for the accounting a patient may
    ask for (45 CFR 164.528; 42 CFR 2.24): each successful event about the patient with
    the person's full name and role at the time, the moment in the patient's site time,
    the access in plain words (``display.describe``) and, for emergency access, the
    reason the clinician gave. ``date_from``/``date_to`` are days in the site's time
    zone, both included. Refused attempts are not accesses and are left out.

    Four statements whatever the number of events: the site, the events (by the
    ``(patient_id, seq)`` index), the people and the patient's emergency-access grants.
    The caller has checked that the administrator may see the patient.
    """
    site = db.session.get(Site, patient.site_id)
    query = sa.select(AuditEvent).where(
        AuditEvent.patient_id == patient.id, AuditEvent.outcome == AuditOutcome.SUCCESS
    )
    if date_from is not None:
        query = query.where(AuditEvent.occurred_at >= _site_day_start(date_from, site.timezone))
    if date_to is not None:
        end = _site_day_start(date_to + dt.timedelta(days=1), site.timezone)
        query = query.where(AuditEvent.occurred_at < end)
    events = list(db.session.scalars(query.order_by(AuditEvent.seq.desc())))
    user_ids = {e.user_id for e in events if e.user_id is not None}
    names: dict[int, str] = {}
    if user_ids:
        rows = db.session.execute(sa.select(User.id, User.full_name).where(User.id.in_(user_ids)))
        # Not dict(rows): a Result has .keys() (its columns), so dict() would index it.
        names = {user_id: full_name for user_id, full_name in rows}  # noqa: C416
    grants = list(
        db.session.scalars(
            sa.select(BreakGlassGrant).where(BreakGlassGrant.patient_id == patient.id)
        )
    )

    def emergency_reason(event: AuditEvent, details: dict) -> str | None:
        if event.action == AuditAction.BREAK_GLASS:
            return next((g.reason for g in grants if str(g.id) == event.entity_id), None)
        if not details.get("break_glass"):
            return None
        return next(
            (
                g.reason
                for g in grants
                if g.user_id == event.user_id and g.granted_at <= event.occurred_at < g.expires_at
            ),
            None,
        )

    entries = []
    for item in events:
        details = display.details_of(item.details)
        entries.append(
            AccessEntry(
                when=display.moment(item.occurred_at, site.timezone),
                who=names.get(item.user_id) or ("A former user" if item.user_id else "The system"),
                role=display.role_label(item.role) if item.user_id else "",
                what=display.describe(item.action.value, item.entity_type, details),
                reason=emergency_reason(item, details),
            )
        )
    return AccessReport(patient, site, date_from, date_to, entries)
