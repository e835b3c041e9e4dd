"""Restriction requests (42 CFR 2.26; issue 12): the patient asks that something not be
disclosed to someone. Recorded here, honoured by ``consents.check_disclosure`` from the
request's date until lifted; lifting is written once (service, then trigger).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from clinic.accounts.models import User
from clinic.aftercare.consent_models import (
    ConsentPurpose,
    RecipientClass,
    RestrictionRequest,
    SupportPerson,
)
from clinic.aftercare.consents import _audit, _check_recorder, _choice, _resource, _text
from clinic.audit import AuditAction
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.patients import common
from clinic.patients.models import Patient
from clinic.sites.time import site_today

ALREADY_LIFTED_MESSAGE = "This restriction was already lifted."


def record_restriction(
    patient: Patient,
    *,
    actor: User,
    purpose: str | None,
    recipient_type: str | None,
    resource_id: int | None,
    support_person_id: int | None,
    recipient_class: str | None,
    details: str | None,
    requested_on: dt.date | None,
) -> RestrictionRequest:
    """Record the patient's request that something not be disclosed (§2.26): for a purpose
    or any; to a resource, a support person, a class, or anyone. Honoured by
    ``check_disclosure`` from the request's date until lifted."""
    _check_recorder(actor, patient)
    chosen_purpose = (
        _choice(ConsentPurpose, purpose, "purpose", "Choose the purpose.") if purpose else None
    )
    kwargs: dict = {}
    if recipient_type == "resource":
        resource = _resource(resource_id)
        if resource is None:
            raise DomainError("Choose the resource.", field="resource_id")
        kwargs["resource_id"] = resource.id
    elif recipient_type == "support_person":
        person = db.session.get(SupportPerson, support_person_id or 0)
        if person is None or person.patient_id != patient.id:
            raise DomainError(
                "Choose a person of the patient's support network.", field="support_person_id"
            )
        kwargs["support_person_id"] = person.id
    elif recipient_type == "class":
        kwargs["recipient_class"] = _choice(
            RecipientClass, recipient_class, "recipient_class", "Choose the class."
        )
    elif recipient_type != "anyone":
        raise DomainError("Choose to whom it must not be disclosed.", field="recipient_type")
    text = _text(details, "details", "Write down the patient's request in their words.")
    if requested_on is None:
        raise DomainError("Enter the date of the request.", field="requested_on")
    if requested_on > site_today(patient.site):
        raise DomainError("The request date cannot be in the future.", field="requested_on")
    restriction = RestrictionRequest(
        patient_id=patient.id,
        purpose=chosen_purpose,
        details=text,
        requested_on=requested_on,
        recorded_by_id=actor.id,
        recorded_at=utcnow(),
        **kwargs,
    )
    db.session.add(restriction)
    db.session.flush()
    _audit(AuditAction.CREATE, "disclosure_restriction", restriction.id, patient, actor)
    return restriction


def lift_restriction(
    restriction: RestrictionRequest,
    *,
    actor: User,
    lifted_on: dt.date | None,
    reason: str | None,
) -> RestrictionRequest:
    """End a restriction request (the patient withdrew it): written once."""
    patient = restriction.patient
    _check_recorder(actor, patient)
    if restriction.lifted_on is not None:
        raise DomainError(ALREADY_LIFTED_MESSAGE)
    if lifted_on is None:
        raise DomainError("Enter the date it ends.", field="lifted_on")
    if lifted_on > site_today(patient.site):
        raise DomainError("The date cannot be in the future.", field="lifted_on")
    if lifted_on < restriction.requested_on:
        raise DomainError("The date cannot be before the request.", field="lifted_on")
    restriction.lift_reason = _text(reason, "reason", "Write why it ends.")
    restriction.lifted_on = lifted_on
    restriction.lifted_by_id = actor.id
    restriction.lifted_at = utcnow()
    db.session.flush()
    _audit(
        AuditAction.UPDATE,
        "disclosure_restriction",
        restriction.id,
        patient,
        actor,
        change="lifted",
    )
    return restriction


def restriction_for(user: User, restriction_id: int) -> RestrictionRequest | None:
    restriction = db.session.get(RestrictionRequest, restriction_id)
    if restriction is None or common.patient_for(user, restriction.patient_id) is None:
        return None
    return restriction


def patient_restrictions(patient: Patient) -> Sequence[RestrictionRequest]:
    """Every restriction request of the patient, in force first, newest first."""
    return db.session.scalars(
        sa.select(RestrictionRequest)
        .where(RestrictionRequest.patient_id == patient.id)
        .options(
            joinedload(RestrictionRequest.resource),
            joinedload(RestrictionRequest.support_person),
        )
        .order_by(
            RestrictionRequest.lifted_on.is_not(None),
            RestrictionRequest.requested_on.desc(),
            RestrictionRequest.id.desc(),
        )
    ).all()
