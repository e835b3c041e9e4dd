"""Demo referrals for ``flask seed-demo`` (after the directory's and the consents' demos):
referrals in every status, each sent one under the consent that covers it (its disclosure
in the accounting), a draft waiting for a consent, and follow-ups due today.

Only through the services: a referral is sent only where the consents demo left an active
consent for that recipient and purpose, exactly as staff would.
"""

from __future__ import annotations

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.aftercare import consents, disclosures, referrals
from clinic.aftercare.consent_models import Consent, SupportPerson
from clinic.aftercare.models import AftercareResource
from clinic.aftercare.referral_models import ReferralStatus
from clinic.extensions import db
from clinic.patients.models import Patient
from clinic.sites.models import Site
from clinic.sites.time import site_today

S = ReferralStatus
# Where each sent referral is taken after sending (the first stays "sent").
PATHS: tuple[tuple[ReferralStatus, ...], ...] = (
    (),
    (S.ACCEPTED,),
    (S.WAITLISTED,),
    (S.ACCEPTED, S.PLACED),
    (S.DECLINED,),
    (S.WAITLISTED, S.ACCEPTED, S.PLACED),
    (S.DECLINED, S.CLOSED),
    (S.CLOSED,),
)
NOTES = {
    S.ACCEPTED: "Intake call done; they will hold the bed until Friday.",
    S.WAITLISTED: "No bed this week; second on the waiting list.",
    S.PLACED: "Moved in; house manager confirmed by phone.",
    S.DECLINED: "The house does not take residents on methadone after all.",
    S.CLOSED: "Patient chose to stay with family instead.",
}


def _recipient_of(consent: Consent, resources: list[AftercareResource]):
    """A resource or support person this consent names (by id, or by its class)."""
    if consent.resource is not None:
        return consent.resource, None
    if consent.support_person is not None:
        return None, consent.support_person
    if consent.recipient_class is None:
        return None, None
    if consent.recipient_class.includes_support_people:
        person = db.session.scalar(
            sa.select(SupportPerson)
            .where(
                SupportPerson.patient_id == consent.patient_id,
                SupportPerson.archived_at.is_(None),
            )
            .order_by(SupportPerson.id)
        )
        return None, person
    kinds = consent.recipient_class.resource_kinds
    return next((r for r in resources if r.kind in kinds), None), None


def seed(site: Site, *, staff: User) -> int:
    """Referrals of ``site``'s patients; returns how many were created."""
    today = site_today(site)
    resources = list(
        db.session.scalars(
            sa.select(AftercareResource)
            .where(AftercareResource.active.is_(True))
            .order_by(AftercareResource.beds_available.desc().nulls_last(), AftercareResource.id)
        )
    )
    if not resources:
        return 0
    candidates = db.session.scalars(
        sa.select(Consent)
        .join(Patient, Patient.id == Consent.patient_id)
        .where(Patient.site_id == site.id, Consent.kind != "counseling_notes")
        .order_by(Consent.id)
    ).all()
    created = 0
    usable: list[tuple[Consent, AftercareResource | None, SupportPerson | None]] = []
    seen: set[tuple[int, int | None, int | None]] = set()
    for consent in candidates:
        if consents.consent_state(consent, today) != consents.ConsentState.ACTIVE:
            continue
        resource, person = _recipient_of(consent, resources)
        key = (consent.patient_id, getattr(resource, "id", None), getattr(person, "id", None))
        if (resource is None and person is None) or key in seen:
            continue
        seen.add(key)
        usable.append((consent, resource, person))
    paths = list(PATHS)
    # Round after round over the consents that allow a disclosure, until every path is
    # shown (a second referral to the same place is common: after a waitlist, a refusal).
    while paths and usable:
        for entry in list(usable):
            if not paths:
                break
            consent, resource, person = entry
            referral = referrals.create_referral(
                consent.patient,
                actor=staff,
                resource_id=resource.id if resource else None,
                support_person_id=person.id if person else None,
                reason="Safe housing after discharge from intensive outpatient."
                if resource is not None and resource.kind in referrals.RESIDENCE_KINDS
                else "Support in early recovery.",
                purpose=consent.purpose if consent.purpose != "tpo" else "aftercare_referral",
            )
            created += 1
            try:
                # Refused before it writes anything: the referral simply stays a draft.
                disclosures.send(referral, actor=staff, version=referral.version)
            except consents.DisclosureRefused:
                usable.remove(entry)  # a restriction, or a consent for another purpose
                continue
            for status in paths.pop(0):
                referrals.change_status(
                    referral,
                    actor=staff,
                    to_status=status,
                    note=NOTES[status],
                    version=referral.version,
                )
            if not ReferralStatus(referral.status).final:
                referrals.set_follow_up(
                    referral, actor=staff, follow_up_on=today, version=referral.version
                )
    # A draft waiting for the patient's consent, to the first residence.
    patient = db.session.scalar(
        sa.select(Patient)
        .where(Patient.site_id == site.id, Patient.entered_in_error_at.is_(None))
        .order_by(Patient.id)
    )
    if patient is not None:
        referrals.create_referral(
            patient,
            actor=staff,
            resource_id=resources[0].id,
            reason="Asked about sober living; consent to be signed at the next visit.",
        )
        created += 1
    db.session.flush()
    return created
