"""The 42 CFR Part 2 disclosure check and a consent's state (issue 12; DOMAIN.md "Consent
and disclosure"). ``clinic.aftercare.consents`` re-exports every public name here: callers
(the referral sending, E2) import them from there.

State is computed, never stored (``consent_state``): REVOKED from the revocation date on;
EXPIRED after the expiry date, or once the treatment ended for an "end of treatment"
consent; PENDING before the signature date; else ACTIVE.

The end-of-treatment rule: treatment ends on a day D when the patient is discharged on D
and no enrollment of theirs is open at the end of D (a transfer closes one enrollment and
opens the next the same day: not an end). An event consent is expired on day X when the
treatment ended on some D with signed_on <= D <= X, or when no enrollment was open at the
end of the signature day (a discharge dated before it: the end had come already). A
readmission later does not revive it: a new episode needs a new consent.

``check_disclosure`` is what the referral sending calls, in its transaction, before
recording a disclosure: it reads (two statements), records nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import aliased, joinedload

from clinic.aftercare.consent_models import (
    END_OF_TREATMENT,
    Consent,
    ConsentKind,
    ConsentPurpose,
    ExpiryKind,
    RecipientClass,
    RestrictionRequest,
    SupportPerson,
)
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.patients import common
from clinic.patients.models import Enrollment, Patient

if TYPE_CHECKING:
    from clinic.aftercare.models import AftercareResource


class DisclosureRefused(DomainError):
    """No consent allows this disclosure (or a restriction forbids it): the message says
    why, in staff's words."""


class ConsentState(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"
    PENDING = "pending"  # signed with a later date than the day asked about

    @property
    def label(self) -> str:
        return {
            "active": "Active",
            "expired": "Expired",
            "revoked": "Revoked",
            "pending": "Not yet in force",
        }[self.value]


@dataclass(frozen=True)
class Recipient:
    """Whom a disclosure goes to: exactly one of a resource or a support person."""

    resource: AftercareResource | None = None
    support_person: SupportPerson | None = None

    def __post_init__(self) -> None:
        if (self.resource is None) == (self.support_person is None):
            raise ValueError("a recipient is exactly one of a resource or a support person")

    @property
    def name(self) -> str:
        return self.resource.name if self.resource is not None else self.support_person.name  # type: ignore[union-attr]


# --- state ------------------------------------------------------------------------------


def _treatment_ended(patient_id, since, on: dt.date) -> sa.ColumnElement[bool]:
    """SQL: the patient's treatment ended on a day D with ``since`` <= D <= ``on`` (module
    doc: a discharge after which no enrollment is open)."""
    ended, other = aliased(Enrollment), aliased(Enrollment)
    still_open = (
        sa.select(other.id)
        .where(
            other.patient_id == ended.patient_id,
            other.admitted_on <= ended.discharged_on,
            sa.or_(other.discharged_on.is_(None), other.discharged_on > ended.discharged_on),
        )
        .exists()
    )
    # Not in treatment at the end of the signature day (a discharge recorded later, dated
    # before it): the end of treatment had come already.
    open_at_signature = (
        sa.select(other.id)
        .where(
            other.patient_id == patient_id,
            other.admitted_on <= since,
            sa.or_(other.discharged_on.is_(None), other.discharged_on > since),
        )
        .exists()
    )
    return sa.or_(
        sa.select(ended.id)
        .where(
            ended.patient_id == patient_id,
            ended.discharged_on.is_not(None),
            ended.discharged_on >= since,
            ended.discharged_on <= on,
            ~still_open,
        )
        .exists(),
        ~open_at_signature,
    )


def _state(consent: Consent, on: dt.date, treatment_ended: bool) -> ConsentState:
    if consent.revoked_on is not None and consent.revoked_on <= on:
        return ConsentState.REVOKED
    if consent.signed_on > on:
        return ConsentState.PENDING
    if consent.expiry_kind == ExpiryKind.DATE and consent.expires_on < on:  # type: ignore[operator]
        return ConsentState.EXPIRED
    if consent.expiry_kind == ExpiryKind.EVENT and treatment_ended:
        return ConsentState.EXPIRED
    return ConsentState.ACTIVE


def consent_state(consent: Consent, on: dt.date) -> ConsentState:
    """ACTIVE / EXPIRED / REVOKED (PENDING before its signature date) on day ``on``,
    computed from the dates and, for an end-of-treatment consent, the enrollments."""
    ended = False
    if consent.expiry_kind == ExpiryKind.EVENT:
        ended = bool(
            db.session.scalar(
                sa.select(_treatment_ended(consent.patient_id, consent.signed_on, on))
            )
        )
    return _state(consent, on, ended)


def patient_consents(patient: Patient, on: dt.date) -> list[tuple[Consent, ConsentState]]:
    """The patient's consents, newest first, each with its state on ``on`` (one statement,
    the recipients joined)."""
    ended = _treatment_ended(Consent.patient_id, Consent.signed_on, on).label("ended")
    rows = db.session.execute(
        sa.select(Consent, ended)
        .where(Consent.patient_id == patient.id)
        .options(
            joinedload(Consent.resource),
            joinedload(Consent.support_person),
        )
        .order_by(Consent.signed_on.desc(), Consent.id.desc())
    ).all()
    return [(c, _state(c, on, bool(e) and c.expiry_kind == ExpiryKind.EVENT)) for c, e in rows]


def consent_scope_summary(consent: Consent) -> str:
    """The consent's scope in plain words, as the referral packet prints it (§2.32(b): a
    copy or a clear summary of the consent goes with each disclosure)."""
    if consent.expiry_kind == ExpiryKind.DATE:
        until = f"until {common.format_day(consent.expires_on)}"  # type: ignore[arg-type]
    elif consent.expiry_kind == ExpiryKind.EVENT:
        until = f"until {(consent.expiry_event or END_OF_TREATMENT).rstrip('.').lower()}"
    else:
        until = "until revoked"
    kind = "" if consent.kind == ConsentKind.SPECIFIC_DISCLOSURE else f" ({consent.kind.label})"
    return (
        f"Consent{kind} signed by {consent.patient_name} on "
        f"{common.format_day(consent.signed_on)}: {consent.program_name} may disclose "
        f"{consent.information_description.rstrip('.')} to {consent.recipient_name.rstrip('.')} "
        f"for {consent.purpose_text.rstrip('.')}, {until}. The patient may revoke it in "
        "writing at any time."
    )


# --- the disclosure check -----------------------------------------------------------------


def _names(consent: Consent, recipient: Recipient) -> bool:
    if recipient.resource is not None:
        if consent.resource_id is not None:
            return consent.resource_id == recipient.resource.id
        return (
            consent.recipient_class is not None
            and str(recipient.resource.kind)
            in RecipientClass(consent.recipient_class).resource_kinds
        )
    person = recipient.support_person
    if consent.support_person_id is not None:
        return consent.support_person_id == person.id  # type: ignore[union-attr]
    return (
        consent.recipient_class is not None
        and RecipientClass(consent.recipient_class).includes_support_people
        and person.patient_id == consent.patient_id  # type: ignore[union-attr]
    )


def _written_name(person: SupportPerson) -> str:
    """A support person's name as a consent writes it (``consents._recipient``)."""
    return f"{person.name} ({person.relationship_kind.label.lower()})"


def _renamed(consent: Consent, recipient: Recipient) -> bool:
    """The consent names this recipient by id, but the record now names someone else: the
    row was edited since the patient signed (§2.31(a)(4): the recipient the patient named,
    not whoever the row says today)."""
    written = consent.recipient_name.strip()
    if recipient.resource is not None:
        return consent.resource_id is not None and written != recipient.resource.name.strip()
    person = recipient.support_person
    if consent.support_person_id is None:
        return False
    return written not in (_written_name(person), person.name.strip())  # type: ignore[arg-type]


def _forbids(restriction: RestrictionRequest, recipient: Recipient, purpose) -> bool:
    if restriction.purpose is not None and restriction.purpose != purpose:
        return False
    if restriction.resource_id is None and restriction.support_person_id is None:
        if restriction.recipient_class is None:
            return True  # to anyone
        cls = RecipientClass(restriction.recipient_class)
        if recipient.resource is not None:
            return str(recipient.resource.kind) in cls.resource_kinds
        return cls.includes_support_people
    if recipient.resource is not None:
        return restriction.resource_id == recipient.resource.id
    return restriction.support_person_id == recipient.support_person.id  # type: ignore[union-attr]


def check_disclosure(
    patient: Patient,
    *,
    recipient: Recipient,
    purpose: ConsentPurpose,
    on: dt.date,
    counseling_notes: bool = False,
    lock: bool = False,
) -> Consent:
    """The consent that allows disclosing ``patient``'s information to ``recipient`` for
    ``purpose`` on day ``on`` (42 CFR 2.31, 2.33): active on ``on`` (signed on or before,
    not revoked, not expired), naming this recipient (by id, or by a class that includes
    it), for this purpose, of the counseling-notes kind exactly when counseling notes are
    disclosed (§2.31(b)); and no restriction the patient asked for (§2.26) forbids it.

    Raises ``DisclosureRefused`` with the reason otherwise. Two statements; records
    nothing (the caller records the disclosure under the consent returned). With ``lock``
    (a send), the patient's consents are locked until the caller's commit (PostgreSQL
    ``FOR UPDATE``), so a revocation waits for the disclosure instead of slipping in
    between this check and the commit."""
    purpose = ConsentPurpose(purpose)
    if recipient.support_person is not None:
        person = recipient.support_person
        if purpose == ConsentPurpose.TPO:
            # Family and friends are no provider, payer or operation of the program (§2.33(b)).
            raise DisclosureRefused(
                f"{person.name} is not a treatment provider or payer: a disclosure to them "
                "needs a specific consent, not the TPO consent."
            )
        if person.patient_id != patient.id:
            raise DisclosureRefused(f"{person.name} is not in this patient's support network.")
        if person.archived:
            raise DisclosureRefused(
                f"{person.name} was removed from the patient's support network."
            )
    elif not recipient.resource.active:  # type: ignore[union-attr]
        raise DisclosureRefused(
            f"{recipient.name} is no longer active in the directory: nothing is sent to it."
        )
    ended = _treatment_ended(Consent.patient_id, Consent.signed_on, on).label("ended")
    query = (
        sa.select(Consent, ended)
        .where(Consent.patient_id == patient.id)
        .order_by(Consent.signed_on.desc(), Consent.id.desc())
    )
    if lock:
        query = query.with_for_update(of=Consent)
    rows = db.session.execute(query).all()
    restrictions = db.session.scalars(
        sa.select(RestrictionRequest).where(
            RestrictionRequest.patient_id == patient.id,
            RestrictionRequest.requested_on <= on,
            sa.or_(RestrictionRequest.lifted_on.is_(None), RestrictionRequest.lifted_on > on),
        )
    ).all()
    for restriction in restrictions:
        if _forbids(restriction, recipient, purpose):
            raise DisclosureRefused(
                f"The patient asked on {common.format_day(restriction.requested_on)} that "
                f"nothing be disclosed to {_restriction_whom(restriction)} for "
                f"{restriction.purpose_label.lower()}: the restriction is in force."
            )
    naming = [(c, e) for c, e in rows if _names(c, recipient)]
    if not naming:
        raise DisclosureRefused(f"No consent on file names {recipient.name} as a recipient.")
    current = [(c, e) for c, e in naming if not _renamed(c, recipient)]
    if not current:
        raise DisclosureRefused(
            f"The consent names {naming[0][0].recipient_name}, and the record now says "
            f"{recipient.name}: the details changed since the patient signed. Record a new "
            "consent naming the recipient as they are."
        )
    naming = current
    wanted_kind = (ConsentKind.COUNSELING_NOTES,) if counseling_notes else ()
    of_kind = [
        (c, e) for c, e in naming if (c.kind == ConsentKind.COUNSELING_NOTES) == bool(wanted_kind)
    ]
    if not of_kind:
        raise DisclosureRefused(
            "Counseling notes need a consent of their own (42 CFR 2.31(b)): none names "
            f"{recipient.name}."
            if counseling_notes
            else f"The only consent naming {recipient.name} is for counseling notes."
        )
    covering = [(c, e) for c, e in of_kind if c.purpose == purpose]
    if not covering:
        raise DisclosureRefused(
            f"The consent naming {recipient.name} does not cover {purpose.label.lower()}."
        )
    reasons = []
    for consent, treatment_ended in covering:
        state = _state(consent, on, bool(treatment_ended))
        if state == ConsentState.ACTIVE:
            return consent
        reasons.append(_why_not(consent, state))
    raise DisclosureRefused(" ".join(dict.fromkeys(reasons)))


def _why_not(consent: Consent, state: ConsentState) -> str:
    signed = common.format_day(consent.signed_on)
    if state == ConsentState.REVOKED:
        return (
            f"The consent signed on {signed} was revoked on "
            f"{common.format_day(consent.revoked_on)}."  # type: ignore[arg-type]
        )
    if state == ConsentState.PENDING:
        return f"The consent is dated {signed}: it is not in force yet."
    if consent.expiry_kind == ExpiryKind.DATE:
        return (
            f"The consent signed on {signed} expired on "
            f"{common.format_day(consent.expires_on)}."  # type: ignore[arg-type]
        )
    return f"The consent signed on {signed} expired at the end of treatment."


def _restriction_whom(restriction: RestrictionRequest) -> str:
    label = restriction.recipient_label
    return "anyone" if label == "Anyone" else label
