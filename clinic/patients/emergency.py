"""Break-glass (emergency) access: look a patient up at every site by name and date of
birth, grant a clinician an hour's access to a patient outside their sites, and find the
live grant (HIPAA 164.312(a)(2)(ii) emergency access procedure; minimum necessary, 45 CFR
164.502(b) and 42 CFR 2.13). Every lookup and grant is audited (HIPAA 164.312(b)).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.audit.models import BreakGlassGrant
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.patients.common import audit_patient, visible_site_ids
from clinic.patients.models import (
    Patient,
)
from clinic.patients.names import has_letter, name_keys
from clinic.patients.registry import patients_born_on, same_names

# --- break-glass -----------------------------------------------------------------------

BREAK_GLASS_MINUTES = 60
EMERGENCY_LOOKUP_LIMIT = 20  # matches shown at most: a lookup is not a browse
LOOKUP_NAME_MESSAGE = 'Type the last name, or "last name, first name".'


class PatientNotFound(DomainError):
    """A lookup by MRN found no patient: a refused object lookup (the view records it)."""


@dataclass
class EmergencyMatch:
    """A patient an emergency lookup found, as the results show it: where and under which
    MRN, nothing of the record. ``own_site``: a patient of the user's sites (the chart
    opens without emergency access)."""

    patient_id: int
    mrn: str
    site_code: str
    site_name: str
    own_site: bool


@dataclass
class EmergencyLookup:
    matches: list[EmergencyMatch]  # at most EMERGENCY_LOOKUP_LIMIT
    total: int  # how many matched

    @property
    def more(self) -> bool:
        return self.total > len(self.matches)


def split_lookup_name(text: str) -> tuple[str, str]:
    """ "Torres, Ana" -> ("Ana", "Torres"); "de la Cruz" -> ("", "de la Cruz"): a last
    name, or "last, first" as the patient search takes it."""
    last, _, first = " ".join(text.split()).partition(",")
    return first.strip(), last.strip()


def emergency_lookup(*, actor: User, name: str, date_of_birth: dt.date) -> EmergencyLookup:
    """Find a patient for emergency access by last name (or "last, first") and date of
    birth, at every site (HIPAA 164.312(a)(2)(ii), emergency access procedure).

    Minimum necessary (45 CFR 164.502(b), 42 CFR 2.13): a match shows its site and MRN
    only, and at most EMERGENCY_LOOKUP_LIMIT of them. The names are compared as the
    duplicate check compares them (``same_names``). The lookup is recorded without what
    was typed: one ``break_glass_lookup`` event with the number of matches, and one per
    patient of another site shown (a disclosure of where they are treated)."""
    first, last = split_lookup_name(name)
    if not has_letter(last):
        raise DomainError(LOOKUP_NAME_MESSAGE, field="name")
    firsts = name_keys(first) if has_letter(first) else set()
    lasts = name_keys(last)
    born = db.session.scalars(patients_born_on(date_of_birth))
    found = [p for p in born if same_names(p, firsts, lasts)]
    sites = visible_site_ids(actor)
    matches = [
        EmergencyMatch(
            patient_id=p.id,
            mrn=p.mrn,
            site_code=p.site.code,
            site_name=p.site.name,
            own_site=sites is None or p.site_id in sites,
        )
        for p in found[:EMERGENCY_LOOKUP_LIMIT]
    ]
    record(
        AuditAction.VIEW,
        actor=actor,
        entity_type="break_glass_lookup",
        details={"results": len(found), "shown": len(matches)},
    )
    for match in matches:
        if not match.own_site:
            record(
                AuditAction.VIEW,
                actor=actor,
                entity_type="break_glass_lookup",
                entity_id=match.patient_id,
                patient_id=match.patient_id,
                site_id=next(p.site_id for p in found if p.id == match.patient_id),
                details={"shown": ["site", "mrn"]},
            )
    return EmergencyLookup(matches=matches, total=len(found))


@dataclass
class EmergencyAccess:
    """A live grant of emergency access; ``repeated``: it was already live (a second
    request got the same grant, not a new one)."""

    patient: Patient
    grant: BreakGlassGrant
    repeated: bool


def live_grant(
    user: User, patient_id: int, now: dt.datetime | None = None
) -> BreakGlassGrant | None:
    """The user's grant for the patient live at ``now`` (the latest, if history holds
    several), or None."""
    return db.session.scalar(
        sa.select(BreakGlassGrant)
        .where(
            BreakGlassGrant.user_id == user.id,
            BreakGlassGrant.patient_id == patient_id,
            BreakGlassGrant.expires_at > (now or utcnow()),
        )
        .order_by(BreakGlassGrant.expires_at.desc())
        .limit(1)
    )


def grant_break_glass(*, actor: User, mrn: str, reason: str) -> EmergencyAccess:
    """Emergency access to a patient outside the clinician's sites (HIPAA 164.312(a)(2)(ii)).

    Lasts BREAK_GLASS_MINUTES, is recorded as a ``break_glass`` event and waits on the
    administrators' review list until acknowledged.

    One live grant per clinician and patient: asking again while a grant is live returns
    that grant, unchanged — its expiry is NOT extended (access that outlives the hour
    needs a new request after it, reviewed on its own; a silent extension would hide
    how long the record was open). The repeat is recorded as a ``break_glass`` event on
    the same grant (``"repeat": true``; the reason stays out of the audit trail, as the
    first one does). The clinician's user row is locked first (``FOR NO KEY UPDATE`` on
    PostgreSQL; SQLite runs one writer at a time), so two requests at once make one
    grant: the second waits, then finds the first's."""
    reason = reason.strip()
    if len(reason) < 10:
        raise DomainError("Give the reason in at least 10 characters.", field="reason")
    patient = db.session.scalar(sa.select(Patient).where(Patient.mrn == mrn.strip().upper()))
    if patient is None:
        raise PatientNotFound("No patient has that medical record number.", field="mrn")
    sites = visible_site_ids(actor)
    if sites is None or patient.site_id in sites:
        raise DomainError(
            "This patient is at your site: open the chart from the patient list.", field="mrn"
        )
    # Serialise this clinician's grant requests (key_share: a foreign key to the user
    # row, e.g. an audit event of another request, is not blocked).
    db.session.execute(
        sa.select(User.id).where(User.id == actor.id).with_for_update(key_share=True)
    )
    now = utcnow()
    grant = live_grant(actor, patient.id, now)
    if grant is not None:
        audit_patient(
            patient,
            AuditAction.BREAK_GLASS,
            "break_glass_grant",
            grant.id,
            actor=actor,
            details={"repeat": True},
        )
        return EmergencyAccess(patient, grant, repeated=True)
    grant = BreakGlassGrant(
        user_id=actor.id,
        patient_id=patient.id,
        reason=reason,
        granted_at=now,
        expires_at=now + dt.timedelta(minutes=BREAK_GLASS_MINUTES),
    )
    db.session.add(grant)
    db.session.flush()
    audit_patient(
        patient,
        AuditAction.BREAK_GLASS,
        "break_glass_grant",
        grant.id,
        actor=actor,
        details={"minutes": BREAK_GLASS_MINUTES},
    )
    return EmergencyAccess(patient, grant, repeated=False)


# --- what the database refuses, in the services' words ---------------------------------
# Constraint and trigger names (see the models and the patient_hardening migration) with
