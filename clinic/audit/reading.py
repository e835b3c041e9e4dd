"""Who may read which audit events, and reading them: the scope of a reader (site
administrators see their sites), the viewer's filters, keyset pages and the CSV export's
iterator. Reads only; the pages that show events record their own audit events."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from clinic.accounts.models import User, user_site
from clinic.audit import display
from clinic.audit.models import (
    AuditAction,
    AuditEvent,
)
from clinic.audit.services import MAX_ID, MAX_SEQ
from clinic.extensions import db
from clinic.patients.models import Patient
from clinic.sites.models import Site

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
