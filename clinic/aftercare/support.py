"""A patient's support network (issue 12, "Support network"): the people in their recovery
support system. Contacting one of them discloses that the patient is in treatment, so the
consent rule applies to them as to any resource (``consents.check_disclosure``).

Edits go under an optimistic lock (``version``); people are never deleted, only archived
(with who and when). Each function checks, changes rows, records the audit event (ids and
field names only, never names, numbers or notes) and flushes; the caller commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.aftercare.consent_models import (
    EMAIL_MAX,
    NAME_MAX,
    NOTES_MAX,
    Relationship,
    SupportPerson,
)
from clinic.audit import AuditAction, record
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.patients import common
from clinic.patients.contact import InvalidContact, normalise_phone
from clinic.patients.models import Patient
from clinic.security import Permission

ARCHIVED_MESSAGE = "This person was removed from the support network: it can no longer change."

EDITABLE_FIELDS = ("name", "relationship_kind", "phone", "email", "can_offer_housing", "notes")


@dataclass
class SupportPersonInput:
    name: str | None
    relationship: str | None
    phone: str | None = None
    email: str | None = None
    can_offer_housing: bool = False
    notes: str | None = None


def _check(actor: User, patient: Patient) -> None:
    if not actor.can(Permission.REFERRALS_MANAGE) or common.patient_for(actor, patient.id) is None:
        raise DomainError(
            "Only staff and administrators of the patient's site keep the support network."
        )
    common.refuse_if_entered_in_error(patient)


def _values(data: SupportPersonInput) -> dict:
    name = (data.name or "").strip()
    if not name:
        raise DomainError("Enter the person's name.", field="name")
    if len(name) > NAME_MAX:
        raise DomainError(f"Keep it to {NAME_MAX} characters.", field="name")
    try:
        relationship = Relationship(data.relationship)
    except ValueError:
        raise DomainError("Choose the relationship.", field="relationship") from None
    phone = (data.phone or "").strip() or None
    if phone is not None:
        try:
            phone = normalise_phone(phone)
        except InvalidContact as error:
            raise DomainError(error.message, field="phone") from None
    email = (data.email or "").strip() or None
    if email is not None and (len(email) > EMAIL_MAX or "@" not in email):
        raise DomainError("Enter an email address like name@example.org.", field="email")
    notes = (data.notes or "").strip() or None
    if notes is not None and len(notes) > NOTES_MAX:
        raise DomainError(f"Keep it to {NOTES_MAX} characters.", field="notes")
    return {
        "name": name,
        "relationship_kind": relationship,
        "phone": phone,
        "email": email,
        "can_offer_housing": bool(data.can_offer_housing),
        "notes": notes,
    }


def _audit(action: AuditAction, person: SupportPerson, patient: Patient, actor, **details):
    record(
        action,
        actor=actor,
        entity_type="support_person",
        entity_id=person.id,
        patient_id=patient.id,
        site_id=patient.site_id,
        details=details or None,
    )


def add_support_person(patient: Patient, *, actor: User, data: SupportPersonInput) -> SupportPerson:
    """Add someone to the patient's support network (staff, administrators)."""
    _check(actor, patient)
    person = SupportPerson(patient_id=patient.id, created_by_id=actor.id, **_values(data))
    db.session.add(person)
    db.session.flush()
    _audit(AuditAction.CREATE, person, patient, actor)
    return person


def edit_support_person(
    person: SupportPerson, *, actor: User, data: SupportPersonInput, version: int | None
) -> SupportPerson:
    """Change a support person's details; ``version`` is the one the form was built from
    (someone else's change meanwhile is a conflict, never overwritten)."""
    patient = person.patient
    _check(actor, patient)
    if person.archived:
        raise DomainError(ARCHIVED_MESSAGE)
    common.check_version(person.version, version)
    values = _values(data)
    changed = [k for k, v in values.items() if getattr(person, k) != v]
    if not changed:
        return person
    for key in changed:
        setattr(person, key, values[key])
    person.updated_at = utcnow()
    person.updated_by_id = actor.id
    db.session.flush()
    _audit(AuditAction.UPDATE, person, patient, actor, fields=sorted(changed))
    return person


def archive_support_person(
    person: SupportPerson, *, actor: User, version: int | None
) -> SupportPerson:
    """Take someone out of the support network: kept, marked archived (who, when). Their
    consents stay as signed; no new disclosure goes to them."""
    patient = person.patient
    _check(actor, patient)
    if person.archived:
        raise DomainError("This person was already removed from the support network.")
    common.check_version(person.version, version)
    person.archived_at = utcnow()
    person.archived_by_id = actor.id
    db.session.flush()
    _audit(AuditAction.UPDATE, person, patient, actor, change="archived")
    return person


def support_people(patient: Patient, *, archived: bool = True) -> Sequence[SupportPerson]:
    """The patient's support network (current first, by name), one statement."""
    query = sa.select(SupportPerson).where(SupportPerson.patient_id == patient.id)
    if not archived:
        query = query.where(SupportPerson.archived_at.is_(None))
    return db.session.scalars(
        query.order_by(SupportPerson.archived_at.is_not(None), SupportPerson.name, SupportPerson.id)
    ).all()


def support_person_for(user: User, person_id: int) -> SupportPerson | None:
    """A support person by id, only within the user's reach (the patient's site scope)."""
    person = db.session.get(SupportPerson, person_id)
    if person is None or common.patient_for(user, person.patient_id) is None:
        return None
    return person
