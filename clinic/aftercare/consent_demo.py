"""Demo support networks, consents and a restriction request for ``flask seed-demo`` (after
the directory's demo, before the referrals'): consents active, expired (on a date and at
the end of treatment), revoked, a TPO consent and a counseling-notes consent.

Only through the services, as staff would record them. Resources are looked up by kind;
without a directory (its demo not run) the consents name classes of recipients instead.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.aftercare import consents, restrictions, support
from clinic.aftercare.consent_models import (
    END_OF_TREATMENT,
    RIGHT_TO_REVOKE_DEFAULT,
    TPO_REDISCLOSURE_DEFAULT,
)
from clinic.extensions import db
from clinic.patients.models import Enrollment, Patient
from clinic.sites.models import Site
from clinic.sites.time import site_today

# patient (first, last) -> the support people: name, relationship, can offer a place to stay
NETWORKS = {
    ("Ana", "Torres"): [("Maria Torres", "family", True), ("Dee Walker", "sponsor", False)],
    ("Emily", "Nguyen"): [("Chris Lane", "peer_recovery_coach", False)],
    ("Sarah", "O'Connor"): [("Kevin O'Connor", "family", False), ("Liz Park", "friend", True)],
    ("John", "Smith"): [("Ray Smith", "family", False)],
}


@dataclass
class Seeded:
    people: int = 0
    consents: int = 0
    restrictions: int = 0


def _patient(site: Site, first: str, last: str) -> Patient | None:
    return db.session.scalar(
        sa.select(Patient)
        .where(Patient.site_id == site.id, Patient.first_name == first, Patient.last_name == last)
        .order_by(Patient.id)
    )


def _program_id(patient: Patient) -> int | None:
    return db.session.scalar(
        sa.select(Enrollment.program_id)
        .where(Enrollment.patient_id == patient.id)
        .order_by(Enrollment.discharged_on.is_(None).desc(), Enrollment.admitted_on.desc())
    )


def _resource_id(*kinds: str) -> int | None:
    """The first active resource of these kinds (accepting methadone first), if any."""
    try:
        from clinic.aftercare.models import AftercareResource
    except ImportError:  # the directory is not installed
        return None
    return db.session.scalar(
        sa.select(AftercareResource.id)
        .where(AftercareResource.active.is_(True), AftercareResource.kind.in_(kinds))
        .order_by((AftercareResource.accepts_methadone == "yes").desc(), AftercareResource.id)
    )


def _consent(patient: Patient, staff: User, today: dt.date, **fields) -> consents.Consent:
    signed_on = fields.pop("signed_on", today)
    resource_id = fields.pop("resource_id", None)
    recipient = fields.pop("recipient_class", None)
    person_id = fields.pop("support_person_id", None)
    if resource_id is not None:
        recipient_type = "resource"
    elif person_id is not None:
        recipient_type = "support_person"
    else:
        recipient_type, recipient = "class", recipient or "aftercare_directory"
    data = consents.ConsentInput(
        kind=fields.pop("kind", "specific_disclosure"),
        program_id=_program_id(patient),
        information_description=fields.pop(
            "information",
            "Enrollment in treatment, current medication for opioid use disorder and the "
            "expected discharge date",
        ),
        recipient_type=recipient_type,
        resource_id=resource_id,
        support_person_id=person_id,
        recipient_class=recipient,
        purpose=fields.pop("purpose", "aftercare_referral"),
        purpose_text=fields.pop("purpose_text", "Placement in a recovery residence"),
        right_to_revoke=RIGHT_TO_REVOKE_DEFAULT,
        expiry_kind=fields.pop("expiry_kind", "date"),
        expires_on=fields.pop("expires_on", signed_on + dt.timedelta(days=90)),
        expiry_event=fields.pop("expiry_event", None),
        signature_method=fields.pop("signature_method", "paper"),
        paper_scan_reference=fields.pop("scan", f"SCAN-{signed_on:%Y%m%d}-{patient.id}"),
        electronic_signature_name=fields.pop("typed", None),
        signed_on=signed_on,
        redisclosure_statement=fields.pop("redisclosure", None),
    )
    assert not fields, fields
    return consents.record_consent(patient, actor=staff, data=data)


def seed(site: Site, *, staff: User) -> Seeded:
    """Support people, consents and a restriction request for some of ``site``'s patients
    (those the patients demo made); returns what was created."""
    today = site_today(site)
    seeded = Seeded()
    people: dict[tuple[str, str], list] = {}
    for (first, last), network in NETWORKS.items():
        patient = _patient(site, first, last)
        if patient is None:
            continue
        people[(first, last)] = [
            support.add_support_person(
                patient,
                actor=staff,
                data=support.SupportPersonInput(
                    name=name, relationship=relationship, can_offer_housing=housing
                ),
            )
            for name, relationship, housing in network
        ]
        seeded.people += len(network)
    residence = _resource_id("recovery_residence", "halfway_house")
    outpatient = _resource_id("outpatient_care")

    if (ana := _patient(site, "Ana", "Torres")) is not None:
        # SCENARIOS Thursday: a consent naming the first home, for placement, 90 days.
        _consent(ana, staff, today, resource_id=residence, recipient_class="residences")
        _consent(
            ana,
            staff,
            today - dt.timedelta(days=7),
            support_person_id=people[("Ana", "Torres")][0].id,
            purpose_text="Arranging a place to stay with my mother after treatment",
            expiry_kind="event",
            expires_on=None,
            expiry_event=END_OF_TREATMENT,
            signature_method="electronic",
            scan=None,
            typed="Ana Torres",
        )
        seeded.consents += 2
    if (emily := _patient(site, "Emily", "Nguyen")) is not None:
        _consent(
            emily,
            staff,
            today - dt.timedelta(days=30),
            kind="tpo",
            purpose="tpo",
            purpose_text="Treatment, payment and health care operations",
            recipient_class="outpatient_care",
            expiry_kind="none",
            expires_on=None,
            redisclosure=TPO_REDISCLOSURE_DEFAULT,
        )
        seeded.consents += 1
    if (sarah := _patient(site, "Sarah", "O'Connor")) is not None:
        _consent(
            sarah,
            staff,
            today - dt.timedelta(days=120),
            resource_id=residence,
            recipient_class="residences",
            expires_on=today - dt.timedelta(days=30),
        )
        revoked = _consent(
            sarah,
            staff,
            today - dt.timedelta(days=60),
            recipient_class="support_groups",
            purpose="care_coordination",
            purpose_text="Introducing me to a mutual-help group",
        )
        consents.revoke_consent(
            revoked,
            actor=staff,
            revoked_on=today - dt.timedelta(days=10),
            method="Signed letter handed in at the front desk",
        )
        restrictions.record_restriction(
            sarah,
            actor=staff,
            purpose=None,
            recipient_type="support_person",
            resource_id=None,
            support_person_id=people[("Sarah", "O'Connor")][0].id,
            recipient_class=None,
            details="Nothing about my treatment to my brother.",
            requested_on=today - dt.timedelta(days=5),
        )
        seeded.consents += 2
        seeded.restrictions += 1
    if (john := _patient(site, "John", "Smith")) is not None:
        _consent(
            john,
            staff,
            today - dt.timedelta(days=3),
            kind="counseling_notes",
            information="SUD counseling notes of the last three months",
            resource_id=outpatient,
            recipient_class="outpatient_care",
            purpose="care_coordination",
            purpose_text="Continuity of counseling at the outpatient program",
            expires_on=today + dt.timedelta(days=180),
        )
        _consent(john, staff, today - dt.timedelta(days=3), recipient_class="residences")
        seeded.consents += 2
    if (jessica := _patient(site, "Jessica", "Wilson")) is not None and _program_id(jessica):
        admitted = db.session.scalar(
            sa.select(sa.func.min(Enrollment.admitted_on)).where(
                Enrollment.patient_id == jessica.id
            )
        )
        _consent(
            jessica,
            staff,
            admitted,
            recipient_class="residences",
            expiry_kind="event",
            expires_on=None,
            expiry_event=END_OF_TREATMENT,
        )  # discharged since: expired at the end of treatment
        seeded.consents += 1
    db.session.flush()
    return seeded
