"""Take-home bottles checked back at a later visit: each bottle whose take-on day has passed
is recorded once as returned empty, not returned, or tampered; a finding opens a diversion
incident on the chart (and puts the patient's decisions on the review list).

Rules (DOMAIN.md "Take-home bottles"; issue 13): empties are returned and checked at the
next visit; an unreturned or tampered bottle is a diversion incident that feeds the next
take-home review. A bottle is checked once (``uq_bottle_return_dose_entry_id``); the
checks of one visit are saved all together or not at all. Reversed bottles are never due.

Dates are site-local clinical days (``clinic.sites.time.site_today``). Services check,
write, record their audit event and flush; the caller commits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications.dose_day import not_reversed
from clinic.medications.models import DoseEntry, DoseKind
from clinic.medications.take_home_models import (
    NOTE_MAX,
    BottleReturn,
    DiversionIncident,
    IncidentSource,
    ReturnOutcome,
)
from clinic.patients.common import format_day
from clinic.patients.models import Patient
from clinic.security import Permission
from clinic.sites.time import site_today

NOT_ALLOWED_MESSAGE = "Only a clinician who records take-home decisions records bottle returns."
NOTHING_DUE_MESSAGE = "No bottle is due back: nothing to record."
CHOOSE_OUTCOME_MESSAGE = "Record what came back for every bottle listed."
NOT_DUE_MESSAGE = "A bottle listed is no longer due back (checked or reversed meanwhile)."
NOTE_NEEDED_MESSAGE = "Describe what was found: a bottle not returned or tampered is a finding."
ALREADY_CHECKED_MESSAGE = (
    "These bottles were checked at the same moment by someone else: see the chart."
)


def bottles_due_back(patient_id: int, today: dt.date) -> list[DoseEntry]:
    """The patient's bottles whose take-on day has passed (before ``today``), not
    reversed and not yet checked, by take-on day. One statement."""
    return list(
        db.session.scalars(
            sa.select(DoseEntry)
            .where(
                DoseEntry.patient_id == patient_id,
                DoseEntry.kind == DoseKind.TAKE_HOME,
                DoseEntry.take_on < today,
                not_reversed(),
                ~sa.exists().where(BottleReturn.dose_entry_id == DoseEntry.id),
            )
            .order_by(DoseEntry.take_on, DoseEntry.id)
        )
    )


def open_incident(
    patient: Patient,
    *,
    source: IncidentSource,
    description: str,
    actor: User,
    now: dt.datetime,
    **details: object,
) -> DiversionIncident:
    """Open a diversion incident on the patient's chart (a bottle-return or call-back
    finding), found on the site-local day of ``now``, and audit it (``details``: counts,
    never text). Flushes; the caller commits."""
    incident = DiversionIncident(
        patient_id=patient.id,
        site_id=patient.site_id,
        found_on=site_today(patient.site, now),
        source=source,
        description=description[:NOTE_MAX],
        recorded_by_id=actor.id,
        recorded_at=now,
    )
    db.session.add(incident)
    db.session.flush()
    record(
        AuditAction.CREATE,
        actor=actor,
        entity_type="diversion_incident",
        entity_id=incident.id,
        patient_id=patient.id,
        site_id=patient.site_id,
        details={"source": source.value, **details},
    )
    return incident


def _describe(findings: list[tuple[DoseEntry, ReturnOutcome]], note: str) -> str:
    counts = {
        outcome: sum(1 for _b, o in findings if o is outcome)
        for outcome in (ReturnOutcome.UNRETURNED, ReturnOutcome.TAMPERED)
    }
    parts = [f"{n} {o.label.lower()}" for o, n in counts.items() if n]
    days = ", ".join(format_day(b.take_on) for b, _o in findings if b.take_on)
    # The source ("Bottle return") is shown beside the description: not repeated here.
    text = f"{'; '.join(parts).capitalize()} (take-on {days}). {note}"
    return text[:NOTE_MAX]


def record_returns(
    patient: Patient,
    *,
    actor: User,
    outcomes: Mapping[int, ReturnOutcome | str],
    note: str | None = None,
    now: dt.datetime | None = None,
) -> list[BottleReturn]:
    """Record the check of the patient's bottles due back: ``outcomes`` maps each bottle's
    ledger row id (``DoseEntry.id``) to its ``ReturnOutcome``. Every bottle given must be
    due back (``bottles_due_back``); a finding (not returned, tampered) needs ``note`` and
    opens one ``DiversionIncident`` (source ``bottle_return``) for the visit, which each
    finding's return carries. Returns the ``BottleReturn`` rows, by take-on day.

    Raises ``DomainError``: not ``TAKE_HOMES_DECIDE``; nothing due; an outcome missing or
    unknown; a bottle not due back; a finding without a note. All or nothing: the caller
    rolls back on any error (and on ``uq_bottle_return_dose_entry_id``, a race)."""
    if not actor.can(Permission.TAKE_HOMES_DECIDE):
        raise DomainError(NOT_ALLOWED_MESSAGE)
    now = now or utcnow()
    today = site_today(patient.site, now)
    due = {b.id: b for b in bottles_due_back(patient.id, today)}
    if not due:
        raise DomainError(NOTHING_DUE_MESSAGE)
    if not outcomes:
        raise DomainError(CHOOSE_OUTCOME_MESSAGE, field="outcomes")
    checked: list[tuple[DoseEntry, ReturnOutcome]] = []
    for entry_id, raw in outcomes.items():
        bottle = due.get(entry_id)
        if bottle is None:
            raise DomainError(NOT_DUE_MESSAGE, field="outcomes")
        try:
            outcome = ReturnOutcome(raw)
        except ValueError:
            raise DomainError(CHOOSE_OUTCOME_MESSAGE, field="outcomes") from None
        checked.append((bottle, outcome))
    checked.sort(key=lambda pair: (pair[0].take_on, pair[0].id))
    note = (note or "").strip() or None
    findings = [(b, o) for b, o in checked if o.finding]
    incident = None
    if findings:
        if note is None:
            raise DomainError(NOTE_NEEDED_MESSAGE, field="note")
        incident = open_incident(
            patient,
            source=IncidentSource.BOTTLE_RETURN,
            description=_describe(findings, note),
            actor=actor,
            now=now,
            bottles=len(findings),
        )
    rows = [
        BottleReturn(
            dose_entry_id=bottle.id,
            patient_id=patient.id,
            checked_on=today,
            outcome=outcome,
            note=note,
            incident_id=incident.id if incident is not None and outcome.finding else None,
            recorded_by_id=actor.id,
            recorded_at=now,
        )
        for bottle, outcome in checked
    ]
    db.session.add_all(rows)
    db.session.flush()
    for row in rows:
        record(
            AuditAction.CREATE,
            actor=actor,
            entity_type="bottle_return",
            entity_id=row.id,
            patient_id=patient.id,
            site_id=patient.site_id,
            details={"outcome": row.outcome.value},
        )
    return rows
