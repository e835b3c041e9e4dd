"""Stop-dose holds and patient flags (issue 10; DOMAIN.md "Holds and flags").

A clinician puts a hold on a patient (reason; until a date or until lifted) and lifts it:
a patient under a hold in force cannot be dosed by any route (the dosing services ask
``holds_in_force``). Flags are free text with a category (information, warning) shown on
the dosing screen; a warning is acknowledged once a day before dosing (task M-dosing).
Each function checks, changes rows, records the audit event (ids and kinds only, never
the reason or the flag's text) and flushes; the caller commits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications.models import FlagCategory, MedicationHold, PatientFlag
from clinic.patients import common
from clinic.patients.models import Patient
from clinic.security import Permission
from clinic.sites.time import site_today

HOLD_AHEAD_DAYS = 366
HOLD_EXISTS_MESSAGE = "The patient is already on hold: lift that hold first."
ONLY_CLINICIANS_MESSAGE = "Only clinicians place and lift holds and flags."


def _audit(
    action: AuditAction, entity_type: str, entity_id: int, patient: Patient, actor: User, **details
) -> None:
    record(
        action,
        actor=actor,
        entity_type=entity_type,
        entity_id=entity_id,
        patient_id=patient.id,
        site_id=patient.site_id,
        details=details or None,
    )


def _text(value: str | None, *, field: str, message: str, limit: int = 500) -> str:
    text = (value or "").strip()
    if not text:
        raise DomainError(message, field=field)
    if len(text) > limit:
        raise DomainError(f"Keep it to {limit} characters.", field=field)
    return text


def _check_actor(actor: User, patient: Patient) -> None:
    if not actor.can(Permission.MEDICATION_HOLD):
        raise DomainError(ONLY_CLINICIANS_MESSAGE)
    if patient.entered_in_error:
        raise DomainError(common.ENTERED_IN_ERROR_MESSAGE)


# --- reading -------------------------------------------------------------------------------


def hold_for(user: User, hold_id: int) -> MedicationHold | None:
    """A hold by id, only within the user's reach (as ``patients.common.patient_for``)."""
    hold = db.session.get(MedicationHold, hold_id)
    if hold is None or common.patient_for(user, hold.patient_id) is None:
        return None
    return hold


def flag_for(user: User, flag_id: int) -> PatientFlag | None:
    flag = db.session.get(PatientFlag, flag_id)
    if flag is None or common.patient_for(user, flag.patient_id) is None:
        return None
    return flag


def hold_for_any(hold_id: int) -> MedicationHold | None:
    """Unscoped: only to attribute a refused access to its patient."""
    return db.session.get(MedicationHold, hold_id)


def flag_for_any(flag_id: int) -> PatientFlag | None:
    """Unscoped: only to attribute a refused access to its patient."""
    return db.session.get(PatientFlag, flag_id)


def _in_force(on: dt.date) -> sa.ColumnElement[bool]:
    return sa.and_(
        MedicationHold.lifted_at.is_(None),
        sa.or_(MedicationHold.until_on.is_(None), MedicationHold.until_on >= on),
    )


def holds_in_force(patient_ids: Iterable[int], on: dt.date) -> dict[int, MedicationHold]:
    """The hold in force on ``on`` for each of these patients who has one (one query)."""
    ids = list(patient_ids)
    if not ids:
        return {}
    holds = db.session.scalars(
        sa.select(MedicationHold).where(MedicationHold.patient_id.in_(ids), _in_force(on))
    )
    return {hold.patient_id: hold for hold in holds}


def live_flags(patient_ids: Iterable[int]) -> dict[int, list[PatientFlag]]:
    """The uncleared flags of each of these patients, warnings first (one query)."""
    ids = list(patient_ids)
    if not ids:
        return {}
    flags = db.session.scalars(
        sa.select(PatientFlag)
        .where(PatientFlag.patient_id.in_(ids), PatientFlag.cleared_at.is_(None))
        .order_by(
            PatientFlag.patient_id,
            sa.case((PatientFlag.category == FlagCategory.WARNING, 0), else_=1),
            PatientFlag.id,
        )
    )
    found: dict[int, list[PatientFlag]] = {}
    for flag in flags:
        found.setdefault(flag.patient_id, []).append(flag)
    return found


def hold_history(patient: Patient) -> list[MedicationHold]:
    return list(
        db.session.scalars(
            sa.select(MedicationHold)
            .options(joinedload(MedicationHold.placed_by), joinedload(MedicationHold.lifted_by))
            .where(MedicationHold.patient_id == patient.id)
            .order_by(MedicationHold.placed_at.desc(), MedicationHold.id.desc())
        ).unique()
    )


def flag_history(patient: Patient) -> list[PatientFlag]:
    return list(
        db.session.scalars(
            sa.select(PatientFlag)
            .options(joinedload(PatientFlag.created_by), joinedload(PatientFlag.cleared_by))
            .where(PatientFlag.patient_id == patient.id)
            .order_by(PatientFlag.cleared_at.is_not(None), PatientFlag.id.desc())
        ).unique()
    )


# --- holds -----------------------------------------------------------------------------------


def place_hold(
    patient: Patient, *, actor: User, reason: str | None, until_on: dt.date | None
) -> MedicationHold:
    """Put a stop-dose hold on the patient, until ``until_on`` (inclusive) or until lifted.
    One live hold per patient (a partial unique index backs it); a hold whose date has
    passed is closed first, recorded as lifted by its expiry."""
    _check_actor(actor, patient)
    why = _text(reason, field="reason", message="Give the reason for the hold.")
    today = site_today(patient.site)
    if until_on is not None:
        if until_on < today:
            raise DomainError("The hold's last day cannot be in the past.", field="until_on")
        if until_on > today + dt.timedelta(days=HOLD_AHEAD_DAYS):
            raise DomainError(
                "A hold lasts at most a year: leave the date empty.", field="until_on"
            )
    live = db.session.scalar(
        sa.select(MedicationHold).where(
            MedicationHold.patient_id == patient.id, MedicationHold.lifted_at.is_(None)
        )
    )
    if live is not None:
        if live.in_force_on(today):
            raise DomainError(HOLD_EXISTS_MESSAGE)
        _lift(live, actor=actor, reason="expired")
    hold = MedicationHold(
        patient_id=patient.id, reason=why, until_on=until_on, placed_by_id=actor.id
    )
    db.session.add(hold)
    db.session.flush()
    _audit(AuditAction.CREATE, "medication_hold", hold.id, patient, actor)
    return hold


def _lift(hold: MedicationHold, *, actor: User, reason: str) -> None:
    hold.lifted_at = utcnow()
    hold.lifted_by_id = actor.id
    hold.lift_reason = reason
    db.session.flush()
    _audit(
        AuditAction.UPDATE, "medication_hold", hold.id, hold.patient, actor, fields=["lifted_at"]
    )


def lift_hold(hold: MedicationHold, *, actor: User, reason: str | None) -> None:
    """Lift a live hold, with why."""
    _check_actor(actor, hold.patient)
    if hold.lifted_at is not None:
        raise DomainError("This hold was already lifted.")
    why = _text(reason, field="reason", message="Give the reason for lifting the hold.")
    _lift(hold, actor=actor, reason=why)


# --- flags -----------------------------------------------------------------------------------


def add_flag(
    patient: Patient, *, actor: User, category: FlagCategory | str | None, text: str | None
) -> PatientFlag:
    """A flag shown on the dosing screen: information, or a warning to acknowledge."""
    _check_actor(actor, patient)
    try:
        kind = FlagCategory(category)
    except ValueError:
        raise DomainError("Choose information or warning.", field="category") from None
    body = _text(text, field="text", message="Write the flag's text.")
    flag = PatientFlag(patient_id=patient.id, category=kind, text=body, created_by_id=actor.id)
    db.session.add(flag)
    db.session.flush()
    _audit(AuditAction.CREATE, "patient_flag", flag.id, patient, actor, category=kind.value)
    return flag


def clear_flag(flag: PatientFlag, *, actor: User) -> None:
    """Clear a flag: it no longer shows (it stays in the history)."""
    _check_actor(actor, flag.patient)
    if flag.cleared_at is not None:
        raise DomainError("This flag was already cleared.")
    flag.cleared_at = utcnow()
    flag.cleared_by_id = actor.id
    db.session.flush()
    _audit(AuditAction.UPDATE, "patient_flag", flag.id, flag.patient, actor, fields=["cleared_at"])
