"""42 CFR Part 2 consents: recording and revoking them (issue 12; DOMAIN.md "Consent and
disclosure"), and, re-exported from ``consent_rules``, the disclosure check and a consent's
state (``check_disclosure``, ``consent_state``, ``consent_scope_summary``, ``Recipient``,
``DisclosureRefused``, ``ConsentState``). Restriction requests (§2.26) are
``clinic.aftercare.restrictions``.

Recording: every §2.31 element is required; a blank one is refused by the field it
concerns (and again by the database's CHECKs). A consent is never edited: a changed
consent is a new one (``prefill_from``). Revocation (§2.31(a)(6)) is written once
(service, then trigger).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.aftercare.consent_models import (
    ELEMENT_MAX,
    END_OF_TREATMENT,
    RIGHT_TO_REVOKE_DEFAULT,
    SHORT_MAX,
    TPO_REDISCLOSURE_DEFAULT,
    Consent,
    ConsentKind,
    ConsentPurpose,
    ExpiryKind,
    RecipientClass,
    SignatureMethod,
    SupportPerson,
)
from clinic.audit import AuditAction, record
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.patients import common
from clinic.patients.models import Enrollment, Patient, Program
from clinic.sites.time import site_today

if TYPE_CHECKING:
    from clinic.aftercare.models import AftercareResource
from clinic.aftercare.consent_rules import (
    ConsentState,
    DisclosureRefused,
    Recipient,
    check_disclosure,
    consent_scope_summary,
    consent_state,
    patient_consents,
)

__all__ = [
    "ConsentInput",
    "ConsentState",
    "DisclosureRefused",
    "Recipient",
    "check_disclosure",
    "consent_scope_summary",
    "consent_state",
    "patient_consents",
    "prefill_from",
    "record_consent",
    "revoke_consent",
]

ALREADY_REVOKED_MESSAGE = "This consent was already revoked."


# --- recording ------------------------------------------------------------------------------


@dataclass
class ConsentInput:
    """A consent's elements as entered (the form's fields)."""

    kind: str | None
    program_id: int | None
    information_description: str | None
    recipient_type: str | None  # resource / support_person / class
    resource_id: int | None
    support_person_id: int | None
    recipient_class: str | None
    purpose: str | None
    purpose_text: str | None
    right_to_revoke: str | None
    expiry_kind: str | None
    expires_on: dt.date | None
    expiry_event: str | None
    signature_method: str | None
    paper_scan_reference: str | None
    electronic_signature_name: str | None
    signed_on: dt.date | None
    redisclosure_statement: str | None = None
    based_on_id: int | None = None


def _text(value: str | None, field: str, message: str, limit: int = ELEMENT_MAX) -> str:
    text = (value or "").strip()
    if not text:
        raise DomainError(message, field=field)
    if len(text) > limit:
        raise DomainError(f"Keep it to {limit} characters.", field=field)
    return text


def _choice(enum, value, field: str, message: str):
    try:
        return enum(value)
    except ValueError:
        raise DomainError(message, field=field) from None


def _check_recorder(actor: User, patient: Patient) -> None:
    from clinic.security import Permission

    if not actor.can(Permission.CONSENTS_RECORD) or common.patient_for(actor, patient.id) is None:
        raise DomainError("Only staff and administrators of the patient's site record consents.")
    common.refuse_if_entered_in_error(patient)


def _resource(resource_id: int | None):
    from clinic.aftercare.models import AftercareResource

    if resource_id is None:
        return None
    return db.session.get(AftercareResource, resource_id)


def _audit(action: AuditAction, entity: str, entity_id: int, patient: Patient, actor, **details):
    record(
        action,
        actor=actor,
        entity_type=entity,
        entity_id=entity_id,
        patient_id=patient.id,
        site_id=patient.site_id,
        details=details or None,
    )


def record_consent(patient: Patient, *, actor: User, data: ConsentInput) -> Consent:
    """Record a signed §2.31 consent. Every element is required (§2.31(a)); an expiry
    before the signature date, a signature date in the future, a program of another site
    or a support person of another patient is refused by the field it concerns."""
    _check_recorder(actor, patient)
    today = site_today(patient.site)
    kind = _choice(ConsentKind, data.kind, "kind", "Choose the kind of consent.")
    program = db.session.get(Program, data.program_id) if data.program_id else None
    if program is None or program.site_id != patient.site_id:
        raise DomainError("Choose the program that may disclose.", field="program_id")
    information = _text(
        data.information_description,
        "information_description",
        "Describe the information that may be disclosed (how much and what kind).",
    )
    recipient_kwargs, recipient_name = _recipient(patient, data)
    purpose = _choice(ConsentPurpose, data.purpose, "purpose", "Choose the purpose.")
    if (kind == ConsentKind.TPO) != (purpose == ConsentPurpose.TPO):
        raise DomainError(
            "A TPO consent is for treatment, payment and health care operations, and only "
            "a TPO consent is.",
            field="purpose",
        )
    purpose_text = _text(data.purpose_text, "purpose_text", "Write the purpose of the disclosure.")
    right_to_revoke = _text(
        data.right_to_revoke,
        "right_to_revoke",
        "State the patient's right to revoke the consent and how.",
    )
    signed_on = data.signed_on
    if signed_on is None:
        raise DomainError("Enter the date the patient signed.", field="signed_on")
    if signed_on > today:
        raise DomainError("The signature date cannot be in the future.", field="signed_on")
    if signed_on < patient.date_of_birth:
        raise DomainError("The signature date is before the patient's birth.", field="signed_on")
    expiry = _choice(ExpiryKind, data.expiry_kind, "expiry_kind", "Choose when it expires.")
    expires_on, expiry_event = None, None
    if expiry == ExpiryKind.DATE:
        if data.expires_on is None:
            raise DomainError("Enter the expiration date.", field="expires_on")
        if data.expires_on < signed_on:
            raise DomainError(
                "The expiration date cannot be before the signature date.", field="expires_on"
            )
        expires_on = data.expires_on
    elif expiry == ExpiryKind.EVENT:
        if not _in_treatment(patient, signed_on):
            raise DomainError(
                "The patient is not in treatment on the signature date, so the end of "
                "treatment would never come: choose an expiration date.",
                field="expiry_kind",
            )
        expiry_event = _text(
            data.expiry_event or END_OF_TREATMENT,
            "expiry_event",
            "Describe the event that ends the consent.",
            SHORT_MAX,
        )
    elif kind != ConsentKind.TPO:
        raise DomainError(
            "Only a TPO consent may have no expiration: choose a date or the end of treatment.",
            field="expiry_kind",
        )
    method = _choice(
        SignatureMethod, data.signature_method, "signature_method", "Choose how it was signed."
    )
    scan, typed = None, None
    if method == SignatureMethod.PAPER:
        scan = _text(
            data.paper_scan_reference,
            "paper_scan_reference",
            "Enter the reference of the signed paper's scan.",
            SHORT_MAX,
        )
    else:
        typed = _text(
            data.electronic_signature_name,
            "electronic_signature_name",
            "Enter the name the patient typed to sign.",
            SHORT_MAX,
        )
    redisclosure = None
    if kind == ConsentKind.TPO:
        redisclosure = _text(
            data.redisclosure_statement,
            "redisclosure_statement",
            "A TPO consent carries its redisclosure statement.",
        )
    based_on = None
    if data.based_on_id is not None:
        based_on = db.session.get(Consent, data.based_on_id)
        if based_on is None or based_on.patient_id != patient.id:
            raise DomainError("The consent this one replaces is not this patient's.")
    consent = Consent(
        patient_id=patient.id,
        patient_name=f"{patient.first_name} {patient.last_name}",
        kind=kind,
        program_id=program.id,
        program_name=program.name,
        information_description=information,
        recipient_name=recipient_name,
        purpose=purpose,
        purpose_text=purpose_text,
        right_to_revoke=right_to_revoke,
        expiry_kind=expiry,
        expires_on=expires_on,
        expiry_event=expiry_event,
        signature_method=method,
        paper_scan_reference=scan,
        electronic_signature_name=typed,
        signed_on=signed_on,
        redisclosure_statement=redisclosure,
        based_on_id=based_on.id if based_on else None,
        recorded_by_id=actor.id,
        recorded_at=utcnow(),
        **recipient_kwargs,
    )
    db.session.add(consent)
    db.session.flush()
    _audit(
        AuditAction.CREATE,
        "part2_consent",
        consent.id,
        patient,
        actor,
        kind=kind.value,
        purpose=purpose.value,
        based_on=consent.based_on_id,
    )
    return consent


def _in_treatment(patient: Patient, day: dt.date) -> bool:
    """An enrollment of the patient is open at the end of ``day`` (``consent_rules``: the
    end of treatment is a discharge after which none is)."""
    return (
        db.session.scalar(
            sa.select(Enrollment.id)
            .where(
                Enrollment.patient_id == patient.id,
                Enrollment.admitted_on <= day,
                sa.or_(Enrollment.discharged_on.is_(None), Enrollment.discharged_on > day),
            )
            .limit(1)
        )
        is not None
    )


def _recipient(patient: Patient, data: ConsentInput) -> tuple[dict, str]:
    if data.recipient_type == "resource":
        resource = _resource(data.resource_id)
        if resource is None:
            raise DomainError("Choose the resource that may receive it.", field="resource_id")
        return {"resource_id": resource.id}, resource.name
    if data.recipient_type == "support_person":
        person = db.session.get(SupportPerson, data.support_person_id or 0)
        if person is None or person.patient_id != patient.id or person.archived:
            raise DomainError(
                "Choose a person of the patient's support network.", field="support_person_id"
            )
        return (
            {"support_person_id": person.id},
            f"{person.name} ({person.relationship_kind.label.lower()})",
        )
    if data.recipient_type == "class":
        cls = _choice(RecipientClass, data.recipient_class, "recipient_class", "Choose the class.")
        return {"recipient_class": cls}, cls.label
    raise DomainError("Choose who may receive the information.", field="recipient_type")


def prefill_from(consent: Consent | None, patient: Patient) -> dict:
    """A new consent's starting values: the elements of ``consent`` (a changed consent is a
    new one, based on the old), or the program's defaults. The signature is never copied."""
    if consent is None:
        return {
            "right_to_revoke": RIGHT_TO_REVOKE_DEFAULT,
            "redisclosure_statement": TPO_REDISCLOSURE_DEFAULT,
            "expiry_event": END_OF_TREATMENT,
        }
    recipient_type = (
        "resource"
        if consent.resource_id
        else ("support_person" if consent.support_person_id else "class")
    )
    return {
        "kind": consent.kind.value,
        "program_id": consent.program_id,
        "information_description": consent.information_description,
        "recipient_type": recipient_type,
        "resource_id": consent.resource_id,
        "support_person_id": consent.support_person_id,
        "recipient_class": consent.recipient_class.value if consent.recipient_class else "",
        "purpose": consent.purpose.value,
        "purpose_text": consent.purpose_text,
        "right_to_revoke": consent.right_to_revoke,
        "expiry_kind": consent.expiry_kind.value,
        "expiry_event": consent.expiry_event or END_OF_TREATMENT,
        "redisclosure_statement": consent.redisclosure_statement or TPO_REDISCLOSURE_DEFAULT,
        "based_on_id": consent.id,
    }


def revoke_consent(
    consent: Consent, *, actor: User, revoked_on: dt.date | None, method: str | None
) -> Consent:
    """Record the patient's written revocation (§2.31(a)(6)): from that day on the consent
    allows no new disclosure; disclosures made under it stay in the accounting. Written
    once (service, then trigger)."""
    patient = consent.patient
    _check_recorder(actor, patient)
    if consent.revoked_on is not None:
        raise DomainError(ALREADY_REVOKED_MESSAGE)
    if revoked_on is None:
        raise DomainError("Enter the date of the revocation.", field="revoked_on")
    if revoked_on > site_today(patient.site):
        raise DomainError("The revocation date cannot be in the future.", field="revoked_on")
    if revoked_on < consent.signed_on:
        raise DomainError(
            "The revocation date cannot be before the consent was signed.", field="revoked_on"
        )
    consent.revocation_method = _text(
        method,
        "revocation_method",
        "Describe how the patient revoked it in writing (e.g. a signed letter handed in).",
    )
    consent.revoked_on = revoked_on
    consent.revoked_by_id = actor.id
    consent.revoked_at = utcnow()
    db.session.flush()
    _audit(AuditAction.UPDATE, "part2_consent", consent.id, patient, actor, change="revoked")
    return consent


# --- reading ---------------------------------------------------------------------------------


def consent_for(user: User, consent_id: int) -> Consent | None:
    """A consent by id, only within the user's reach (its patient's site scope)."""
    consent = db.session.get(Consent, consent_id)
    if consent is None or common.patient_for(user, consent.patient_id) is None:
        return None
    return consent


def site_programs(patient: Patient) -> Sequence[Program]:
    """The programs of the patient's site: who may disclose."""
    return db.session.scalars(
        sa.select(Program)
        .where(Program.site_id == patient.site_id)
        .order_by(Program.active.desc(), Program.name)
    ).all()


def active_resources() -> Iterable[AftercareResource]:
    """The directory's active resources, by name (the recipients a consent may name)."""
    from clinic.aftercare.models import AftercareResource

    return db.session.scalars(
        sa.select(AftercareResource)
        .where(AftercareResource.active)
        .order_by(AftercareResource.name)
    ).all()
