"""Past referrals for the reports' demo history (``clinic.reports.demo``): a year of
aftercare referrals of the main site's demo patients, each sent under a consent the
patient signed that day, taken along the DOMAIN's path (accepted, waitlisted, placed,
declined, closed) over the following weeks, so the referrals report has outcomes and days
from sent to placed to count in its default period (the last twelve whole months).

The consents go through ``consents.record_consent`` (a past signature date is allowed).
The referrals, their status events and their disclosures are written as rows with their
past times (the services stamp "now"), in the order the database's triggers require: the
creation event first, the disclosure before "sent", each status change after its event.
Each disclosure is audited (42 CFR 2.25: the accounting of disclosures), each referral's
creation too.
"""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.aftercare import consents
from clinic.aftercare.consent_models import RIGHT_TO_REVOKE_DEFAULT, ConsentPurpose
from clinic.aftercare.models import AftercareResource
from clinic.aftercare.referral_models import Disclosure, Referral, ReferralEvent, ReferralStatus
from clinic.audit import AuditAction, record
from clinic.extensions import db
from clinic.patients.models import Enrollment, Patient

S = ReferralStatus
REFERRALS = 32
# The path after sending and its weight: most placed, some declined or closed.
PATHS = (
    ((S.ACCEPTED, S.PLACED), 35),
    ((S.WAITLISTED, S.ACCEPTED, S.PLACED), 15),
    ((S.WAITLISTED, S.PLACED), 10),
    ((S.DECLINED, S.CLOSED), 15),
    ((S.CLOSED,), 10),
    ((S.ACCEPTED,), 5),
    ((S.DECLINED,), 5),
    ((), 5),
)
NOTES = {
    S.SENT: "Referral packet sent with the patient's consent.",
    S.ACCEPTED: "Intake call done; a place is offered.",
    S.WAITLISTED: "No opening this week; on the waiting list.",
    S.PLACED: "Started; the provider confirmed by phone.",
    S.DECLINED: "The provider cannot take the patient at this time.",
    S.CLOSED: "The patient chose another plan.",
}


def _at(zone: ZoneInfo, day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), zone).astimezone(dt.UTC)


def _candidates(
    site_id: int, today: dt.date, rng: random.Random
) -> list[tuple[Patient, Enrollment, dt.date]]:
    """(patient, enrollment, referral day) for the site's live patients: before a discharge
    in the last year (planning aftercare), or during a current enrollment of 60 days and
    more (a day drawn at random); from 350 to 35 days ago."""
    first, last = today - dt.timedelta(days=350), today - dt.timedelta(days=35)
    rows = db.session.execute(
        sa.select(Patient, Enrollment)
        .join(Enrollment, Enrollment.patient_id == Patient.id)
        .where(Patient.site_id == site_id, Patient.entered_in_error_at.is_(None))
        .order_by(Enrollment.id)
    ).all()
    found, seen = [], set()
    for patient, enrollment in rows:
        earliest = max(first, enrollment.admitted_on + dt.timedelta(days=14))
        if enrollment.discharged_on is None:
            span = (last - earliest).days
            day = earliest + dt.timedelta(days=rng.randint(0, span)) if span >= 0 else None
        else:
            day = min(enrollment.discharged_on - dt.timedelta(days=10), last)
        if day is None or day < earliest:
            continue
        if patient.id in seen:
            continue
        seen.add(patient.id)
        found.append((patient, enrollment, day))
    return found


def seed(site, *, staff: User, patient_ids: set[int], today: dt.date, rng: random.Random) -> int:
    """Referrals of the demo history's patients (``patient_ids``) at ``site``; returns how
    many. ``staff`` records the consents and sends the referrals."""
    resources = list(
        db.session.scalars(
            sa.select(AftercareResource)
            .where(AftercareResource.active.is_(True))
            .order_by(AftercareResource.kind, AftercareResource.id)
        )
    )
    if not resources:
        return 0
    zone = ZoneInfo(site.timezone)
    now = dt.datetime.now(dt.UTC)
    chosen = [c for c in _candidates(site.id, today, rng) if c[0].id in patient_ids]
    chosen = rng.sample(chosen, min(REFERRALS, len(chosen)))
    for n, (patient, enrollment, day) in enumerate(chosen):
        resource = resources[n % len(resources)]
        consent = consents.record_consent(
            patient,
            actor=staff,
            data=consents.ConsentInput(
                kind="specific_disclosure",
                program_id=enrollment.program_id,
                information_description="Enrollment in treatment, current medication for "
                "opioid use disorder and the expected discharge date",
                recipient_type="resource",
                resource_id=resource.id,
                support_person_id=None,
                recipient_class=None,
                purpose="aftercare_referral",
                purpose_text="Aftercare after treatment",
                right_to_revoke=RIGHT_TO_REVOKE_DEFAULT,
                expiry_kind="date",
                expires_on=day + dt.timedelta(days=180),
                expiry_event=None,
                signature_method="paper",
                paper_scan_reference=f"SCAN-{day:%Y%m%d}-{patient.id}",
                electronic_signature_name=None,
                signed_on=day,
            ),
        )
        created = _at(zone, day, 11)
        referral = Referral(
            patient_id=patient.id,
            resource_id=resource.id,
            reason="Aftercare after treatment: a place near home.",
            purpose=ConsentPurpose.AFTERCARE_REFERRAL,
            status=S.DRAFT,
            created_by_id=staff.id,
            created_at=created,
            status_changed_at=created,
        )
        db.session.add(referral)
        db.session.flush()
        _event(referral, None, S.DRAFT, staff, created)
        sent = created + dt.timedelta(hours=2)
        disclosure = Disclosure(
            patient_id=patient.id,
            referral_id=referral.id,
            resource_id=resource.id,
            recipient_name=resource.name[:200],
            description=consent.information_description,
            purpose=ConsentPurpose.AFTERCARE_REFERRAL,
            consent_id=consent.id,
            disclosed_by_id=staff.id,
            disclosed_at=sent,
            disclosed_on=day,
        )
        db.session.add(disclosure)
        db.session.flush()
        _move(referral, S.SENT, staff, sent)
        when = sent
        path = rng.choices([p for p, _w in PATHS], [w for _p, w in PATHS])[0]
        for status in path:
            when += dt.timedelta(days=rng.randint(2, 15), hours=rng.randint(0, 5))
            if when >= now:
                break
            _move(referral, status, staff, when)
        record(
            AuditAction.CREATE,
            actor=staff,
            entity_type="referral",
            entity_id=referral.id,
            patient_id=patient.id,
            site_id=site.id,
            details={"demo": "reports history", "status": S(referral.status).value},
        )
        record(
            AuditAction.DISCLOSE,
            actor=staff,
            entity_type="part2_disclosure",
            entity_id=disclosure.id,
            patient_id=patient.id,
            site_id=site.id,
            details={"referral_id": referral.id, "consent_id": consent.id},
        )
    return len(chosen)


def _event(referral: Referral, before, after: ReferralStatus, staff: User, when) -> None:
    db.session.add(
        ReferralEvent(
            referral_id=referral.id,
            from_status=before,
            to_status=after,
            actor_id=staff.id,
            occurred_at=when,
            note=NOTES.get(after) if before is not None else None,
        )
    )
    db.session.flush()


def _move(referral: Referral, status: ReferralStatus, staff: User, when) -> None:
    """The event first, then the status (the database lets a status follow its event)."""
    _event(referral, S(referral.status), status, staff, when)
    referral.status = status
    referral.status_changed_at = when
    db.session.flush()
