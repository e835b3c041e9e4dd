"""Sending a referral, which discloses Part 2 information, and the accounting of
disclosures (issue 12; 42 CFR 2.31 consent, 2.32 notice, 2.25 accounting).

``send`` is the only way a referral becomes "sent": in one transaction it asks
``consents.check_disclosure`` for the active consent that covers this recipient and
purpose (no restriction forbidding it), records the ``Disclosure`` under that consent and
the status change. Refused, nothing is saved. The database backs it: a referral becomes
"sent" only with its disclosure on record, a referral is disclosed once (a unique index:
two staff sending at once store one disclosure), and disclosures are append-only, so a
revoked or expired consent stops new disclosures but never removes those made.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from clinic.accounts.models import User
from clinic.aftercare import consents
from clinic.aftercare.consent_models import Consent
from clinic.aftercare.referral_models import (
    DESCRIPTION_MAX,
    RECIPIENT_NAME_MAX,
    Disclosure,
    Referral,
    ReferralStatus,
)
from clinic.aftercare.referrals import _check_version, _note, check_manager, move
from clinic.audit import AuditAction, record
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.patients.models import Patient
from clinic.sites.time import site_today

ACCOUNTING_YEARS = 3  # §2.25: the disclosures of the past 3 years
ALREADY_SENT = "This referral was already sent: its disclosure is in the accounting."


def recipient_of(referral: Referral) -> consents.Recipient:
    return consents.Recipient(resource=referral.resource, support_person=referral.support_person)


def default_description(consent: Consent) -> str:
    """What sending discloses unless staff narrow it: the information the covering consent
    describes (its §2.31(a)(3) element), never more than the patient agreed to."""
    return consent.information_description


def covering_consent(
    referral: Referral, on: dt.date | None = None, *, lock: bool = False
) -> Consent:
    """The consent that allows sending this referral on ``on`` (default: the site's today);
    ``lock`` (sending) holds the patient's consents until the commit. Raises
    ``consents.DisclosureRefused`` with the reason in staff's words."""
    on = on or site_today(referral.patient.site)
    return consents.check_disclosure(
        referral.patient,
        recipient=recipient_of(referral),
        purpose=referral.purpose,
        on=on,
        lock=lock,
    )


def send(
    referral: Referral,
    *,
    actor: User,
    version: int | None,
    description: str | None = None,
    note: str | None = None,
    on: dt.date | None = None,
) -> Disclosure:
    """Send a draft referral: a disclosure (42 CFR 2.31). Refused unless an active consent
    covers this recipient and purpose and no restriction request (§2.26) forbids it; then
    the disclosure is recorded under that consent (what, to whom, when, by whom) with the
    status change, in the same transaction. Nothing is saved when refused."""
    check_manager(actor, referral.patient, new_disclosure=True)
    if ReferralStatus(referral.status) is not ReferralStatus.DRAFT:
        raise DomainError(
            ALREADY_SENT
            if referral.status != ReferralStatus.CLOSED
            else "This referral is closed: it cannot be sent."
        )
    _check_version(referral, version)
    on = on or site_today(referral.patient.site)
    consent = covering_consent(referral, on, lock=True)
    description = (description or "").strip() or default_description(consent)
    if len(description) > DESCRIPTION_MAX:
        raise DomainError(
            f"Keep the description under {DESCRIPTION_MAX} characters.", field="description"
        )
    note = _note(note)
    disclosure = Disclosure(
        patient_id=referral.patient_id,
        referral_id=referral.id,
        resource_id=referral.resource_id,
        support_person_id=referral.support_person_id,
        recipient_name=referral.recipient_name[:RECIPIENT_NAME_MAX],
        description=description,
        purpose=referral.purpose,
        consent_id=consent.id,
        disclosed_by_id=actor.id,
        disclosed_at=utcnow(),
        disclosed_on=on,
    )
    db.session.add(disclosure)
    db.session.flush()  # before the status: the database lets "sent" follow a disclosure only
    move(referral, ReferralStatus.SENT, actor=actor, note=note)
    record(
        AuditAction.DISCLOSE,
        actor=actor,
        entity_type="part2_disclosure",
        entity_id=disclosure.id,
        patient_id=referral.patient_id,
        site_id=referral.patient.site_id,
        details={"referral_id": referral.id, "consent_id": consent.id},
    )
    return disclosure


def disclosure_of(referral: Referral) -> Disclosure | None:
    """The disclosure sending this referral made, with its consent: one query."""
    return db.session.scalar(
        sa.select(Disclosure)
        .options(joinedload(Disclosure.consent), joinedload(Disclosure.disclosed_by))
        .where(Disclosure.referral_id == referral.id)
    )


def accounting_since(on: dt.date) -> dt.date:
    """The first day of the §2.25 accounting on ``on``: 3 years back."""
    try:
        return on.replace(year=on.year - ACCOUNTING_YEARS)
    except ValueError:  # 29 February
        return on.replace(year=on.year - ACCOUNTING_YEARS, day=28)


def accounting(
    patient: Patient, *, since: dt.date | None = None, on: dt.date | None = None
) -> list[Disclosure]:
    """Every disclosure of the patient's records from ``since`` (default: 3 years before
    the site's today) to ``on``, newest first, with recipient, what, purpose, consent and
    who disclosed it (42 CFR 2.25): one query. Disclosures stay whatever became of the
    consent (revoked, expired): they were made."""
    on = on or site_today(patient.site)
    since = since or accounting_since(on)
    return list(
        db.session.scalars(
            sa.select(Disclosure)
            .options(
                joinedload(Disclosure.consent),
                joinedload(Disclosure.disclosed_by),
            )
            .where(
                Disclosure.patient_id == patient.id,
                Disclosure.disclosed_on >= since,
                Disclosure.disclosed_on <= on,
            )
            .order_by(Disclosure.disclosed_at.desc(), Disclosure.id.desc())
        ).unique()
    )
