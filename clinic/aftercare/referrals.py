"""Referrals (issue 12; DOMAIN.md "Aftercare referrals"): create a draft, move it along its
status path with a note, set its follow-up date, and the lists staff work from.

Sending (draft → sent) is a disclosure and lives in ``clinic.aftercare.disclosures``: a
status change here never makes a referral "sent". Services flush, never commit; every
change is audited.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from clinic.accounts.models import User
from clinic.aftercare import directory
from clinic.aftercare.consent_models import ConsentPurpose, SupportPerson
from clinic.aftercare.models import AftercareResource, ResourceKind, Tristate
from clinic.aftercare.referral_models import (
    NOTE_MAX,
    REASON_MAX,
    TRANSITIONS,
    Referral,
    ReferralEvent,
    ReferralStatus,
)
from clinic.audit import AuditAction, record
from clinic.db import utcnow
from clinic.errors import ConflictError, DomainError
from clinic.extensions import db
from clinic.medications.models import Medication
from clinic.medications.orders import moud_summary
from clinic.pagination import SortedPage, SortSpec, paginate_sorted
from clinic.patients import common
from clinic.patients.models import Patient
from clinic.sites.time import site_today

RESIDENCE_KINDS = (ResourceKind.HALFWAY_HOUSE, ResourceKind.RECOVERY_RESIDENCE)
FOLLOW_UP_MAX_DAYS = 366
RESOURCE_CHOICES_MAX = 200

SEND_IS_ITS_OWN_STEP = (
    "Send the referral from its Send page: sending discloses that the patient is in "
    "treatment, and needs the patient's consent."
)


def _text(value: str | None) -> str:
    return (value or "").strip()


def _audit(referral: Referral, action: AuditAction, actor: User, **details) -> None:
    record(
        action,
        actor=actor,
        entity_type="referral",
        entity_id=referral.id,
        patient_id=referral.patient_id,
        site_id=referral.patient.site_id,
        details=details,
    )


def check_manager(actor: User, patient: Patient, *, new_disclosure: bool = False) -> None:
    """Staff and administrators who may open the patient's chart manage referrals (the
    service checks it too: a view's decorator is not the only gate). A record entered in
    error (a wrong or duplicate person) gets no new referral and discloses nothing."""
    from clinic.security import Permission

    if not actor.can(Permission.REFERRALS_MANAGE) or common.patient_for(actor, patient.id) is None:
        raise DomainError("Only staff and administrators of the patient's site manage referrals.")
    if new_disclosure:
        common.refuse_if_entered_in_error(patient)


def _check_version(referral: Referral, version: int | None) -> None:
    if version is None or version != referral.version:
        raise ConflictError()


# --- reading -------------------------------------------------------------------------------


def referral_for(user: User, referral_id: int) -> Referral | None:
    """The referral if its patient is within the user's sites (else None: a 404)."""
    query = (
        sa.select(Referral)
        .join(Patient, Patient.id == Referral.patient_id)
        .options(
            joinedload(Referral.patient).joinedload(Patient.site),
            joinedload(Referral.resource),
            joinedload(Referral.support_person),
        )
        .where(Referral.id == referral_id)
    )
    return db.session.scalar(common.scoped(query, user))


def patient_referrals(patient: Patient, *, limit: int | None = None) -> list[Referral]:
    """The patient's referrals, newest first, with their recipients: one query."""
    query = (
        sa.select(Referral)
        .options(joinedload(Referral.resource), joinedload(Referral.support_person))
        .where(Referral.patient_id == patient.id)
        .order_by(Referral.id.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    return list(db.session.scalars(query).unique())


REFERRAL_SORTS = SortSpec(
    columns={
        "created": -Referral.id,  # newest first by default
        "status": Referral.status,
        "follow_up": Referral.follow_up_on,
    },
    default="created",
)


def patient_referrals_page(patient: Patient) -> SortedPage:
    """One page of the patient's referrals, sorted as the request asks, with their
    recipients: one query (keyset pages, ``clinic.pagination``)."""
    query = sa.select(Referral).where(Referral.patient_id == patient.id)
    return paginate_sorted(
        query,
        REFERRAL_SORTS,
        tiebreak=Referral.id.desc(),
        options=[joinedload(Referral.resource), joinedload(Referral.support_person)],
    )


def history(referral: Referral) -> list[ReferralEvent]:
    """The referral's status changes, oldest first, with who made them: one query."""
    return list(
        db.session.scalars(
            sa.select(ReferralEvent)
            .options(joinedload(ReferralEvent.actor))
            .where(ReferralEvent.referral_id == referral.id)
            .order_by(ReferralEvent.id)
        )
    )


@dataclass(frozen=True)
class ResourceFilter:
    kind: str | None = None
    accepts_moud: bool = False
    accepts_methadone: bool = False
    beds: bool = False
    text: str | None = None


def resource_choices(filters: ResourceFilter) -> list[AftercareResource]:
    """Active resources of the directory matching the filters, by name (the directory's
    own search, ``directory.search_query``): one query, capped at ``RESOURCE_CHOICES_MAX``
    (the filters narrow a long directory)."""
    query = directory.search_query(
        directory.DirectoryFilters(
            kind=ResourceKind(filters.kind) if filters.kind else None,
            accepts_moud=Tristate.YES if filters.accepts_moud else None,
            accepts_methadone=Tristate.YES if filters.accepts_methadone else None,
            beds_available=filters.beds,
            text=_text(filters.text) or None,
        )
    )
    return list(
        db.session.scalars(
            query.order_by(sa.func.lower(AftercareResource.name), AftercareResource.id).limit(
                RESOURCE_CHOICES_MAX
            )
        )
    )


def resource_for_choice(resource_id: int) -> AftercareResource | None:
    """An active resource by id (one chosen before the page's filters changed)."""
    resource = db.session.get(AftercareResource, resource_id)
    return resource if resource is not None and resource.active else None


def support_people_of(patient: Patient) -> list[SupportPerson]:
    """The patient's support people who are not archived, by name."""
    return list(
        db.session.scalars(
            sa.select(SupportPerson)
            .where(SupportPerson.patient_id == patient.id, SupportPerson.archived_at.is_(None))
            .order_by(SupportPerson.name, SupportPerson.id)
        )
    )


def moud_warnings(patient: Patient, resource: AftercareResource | None) -> list[str]:
    """Why this residence may not take this patient's medication (DOMAIN.md: many do not,
    and staff need to know before referring). A warning, never a refusal: staff may have
    called the house. Reads the patient's active orders through the medications service."""
    if resource is None or resource.kind not in RESIDENCE_KINDS:
        return []
    medications = moud_summary(patient)
    if not medications:
        return []
    warnings = []
    on_methadone = Medication.METHADONE in medications
    if resource.accepts_moud == Tristate.NO:
        warnings.append(f"{resource.name} does not accept residents on MOUD.")
    elif on_methadone and resource.accepts_methadone == Tristate.NO:
        warnings.append(f"{resource.name} does not accept residents on methadone.")
    elif resource.accepts_moud == Tristate.UNKNOWN or (
        on_methadone and resource.accepts_methadone == Tristate.UNKNOWN
    ):
        warnings.append(
            f"The directory does not say whether {resource.name} accepts residents on "
            + ("methadone." if on_methadone else "MOUD.")
        )
    return warnings


# --- changes -------------------------------------------------------------------------------


def _check_follow_up(follow_up_on: dt.date | None, today: dt.date) -> None:
    if follow_up_on is None:
        return
    if follow_up_on < today:
        raise DomainError("Choose today or a later day for the follow-up.", field="follow_up_on")
    if follow_up_on > today + dt.timedelta(days=FOLLOW_UP_MAX_DAYS):
        raise DomainError("Choose a follow-up within a year.", field="follow_up_on")


def create_referral(
    patient: Patient,
    *,
    actor: User,
    resource_id: int | None = None,
    support_person_id: int | None = None,
    reason: str | None,
    follow_up_on: dt.date | None = None,
    purpose: ConsentPurpose | str = ConsentPurpose.AFTERCARE_REFERRAL,
) -> Referral:
    """A draft referral of ``patient`` to an active resource of the directory or to one of
    the patient's own support people (exactly one). Nothing is disclosed yet: sending is
    ``disclosures.send``. The MOUD warning (``moud_warnings``) is the page's to show."""
    check_manager(actor, patient, new_disclosure=True)
    if (resource_id is None) == (support_person_id is None):
        raise DomainError(
            "Choose a resource from the directory or a person of the support network (one).",
            field="resource_id",
        )
    resource = support_person = None
    if resource_id is not None:
        resource = db.session.get(AftercareResource, resource_id)
        if resource is None or not resource.active:
            raise DomainError(
                "This resource is not in the directory or is no longer active: choose another.",
                field="resource_id",
            )
    else:
        support_person = db.session.get(SupportPerson, support_person_id)
        if (
            support_person is None
            or support_person.patient_id != patient.id
            or support_person.archived_at is not None
        ):
            raise DomainError(
                "Choose a person of this patient's support network.", field="support_person_id"
            )
    reason = _text(reason)
    if not reason:
        raise DomainError("Say why the patient is referred.", field="reason")
    if len(reason) > REASON_MAX:
        raise DomainError(f"Keep the reason under {REASON_MAX} characters.", field="reason")
    try:
        purpose = ConsentPurpose(purpose)
    except ValueError:
        raise DomainError("Choose a purpose from the list.", field="purpose") from None
    _check_follow_up(follow_up_on, site_today(patient.site))
    now = utcnow()
    referral = Referral(
        patient=patient,
        resource=resource,
        support_person=support_person,
        reason=reason,
        purpose=purpose,
        status=ReferralStatus.DRAFT,
        follow_up_on=follow_up_on,
        created_by_id=actor.id,
        created_at=now,
        status_changed_at=now,
    )
    db.session.add(referral)
    db.session.flush()
    db.session.add(
        ReferralEvent(
            referral_id=referral.id,
            from_status=None,
            to_status=ReferralStatus.DRAFT,
            actor_id=actor.id,
            occurred_at=now,
        )
    )
    db.session.flush()
    _audit(referral, AuditAction.CREATE, actor, status=ReferralStatus.DRAFT.value)
    return referral


def move(referral: Referral, to_status: ReferralStatus, *, actor: User, note: str | None) -> None:
    """Record the move and its event (the callers checked it is allowed). The event is
    written first: the database lets a status change only follow its event."""
    now = utcnow()
    db.session.add(
        ReferralEvent(
            referral_id=referral.id,
            from_status=referral.status,
            to_status=to_status,
            actor_id=actor.id,
            occurred_at=now,
            note=note or None,
        )
    )
    db.session.flush()
    before = referral.status
    referral.status = to_status
    referral.status_changed_at = now
    if to_status.final:
        referral.follow_up_on = None  # nothing left to follow up
    db.session.flush()
    _audit(
        referral,
        AuditAction.UPDATE,
        actor,
        from_status=ReferralStatus(before).value,
        to_status=to_status.value,
    )


def _note(note: str | None) -> str | None:
    note = _text(note)
    if len(note) > NOTE_MAX:
        raise DomainError(f"Keep the note under {NOTE_MAX} characters.", field="note")
    return note or None


def change_status(
    referral: Referral,
    *,
    actor: User,
    to_status: ReferralStatus | str | None,
    note: str | None,
    version: int | None,
) -> Referral:
    """Move a referral along the DOMAIN's path (``TRANSITIONS``) with a note; any other
    move is refused (and refused again by the database's trigger). "Sent" is not a status
    change: it is ``disclosures.send``, with its consent."""
    check_manager(actor, referral.patient)
    try:
        target = ReferralStatus(to_status)
    except ValueError:
        raise DomainError("Choose the new status.", field="status") from None
    current = ReferralStatus(referral.status)
    if target is ReferralStatus.SENT and current is ReferralStatus.DRAFT:
        raise DomainError(SEND_IS_ITS_OWN_STEP, field="status")
    if target not in TRANSITIONS[current]:
        raise DomainError(
            f"A referral that is {current.label.lower()} cannot become {target.label.lower()}.",
            field="status",
        )
    note = _note(note)
    _check_version(referral, version)
    move(referral, target, actor=actor, note=note)
    return referral


def set_follow_up(
    referral: Referral, *, actor: User, follow_up_on: dt.date | None, version: int | None
) -> Referral:
    """Set (or clear) the day staff check on the referral again; a placed or closed
    referral has nothing to follow up."""
    check_manager(actor, referral.patient)
    if ReferralStatus(referral.status).final:
        raise DomainError("A placed or closed referral needs no follow-up.", field="follow_up_on")
    _check_follow_up(follow_up_on, site_today(referral.patient.site))
    _check_version(referral, version)
    referral.follow_up_on = follow_up_on
    db.session.flush()
    _audit(referral, AuditAction.UPDATE, actor, changed=["follow_up_on"])
    return referral


# --- the staff dashboard ---------------------------------------------------------------------


def counts_by_status(user: User) -> dict[ReferralStatus, int]:
    """How many referrals of the user's sites are in each status: one query."""
    query = (
        sa.select(Referral.status, sa.func.count(Referral.id))
        .join(Patient, Patient.id == Referral.patient_id)
        .group_by(Referral.status)
    )
    counts = dict.fromkeys(ReferralStatus, 0)
    for status, count in db.session.execute(common.scoped(query, user)):
        counts[ReferralStatus(status)] = count
    return counts


def follow_ups_due(user: User, on: dt.date, *, limit: int = 100) -> list[Referral]:
    """Open referrals of the user's sites whose follow-up day is ``on`` or past, oldest
    first, with patient and recipient: one query."""
    query = (
        sa.select(Referral)
        .join(Patient, Patient.id == Referral.patient_id)
        .options(
            joinedload(Referral.patient),
            joinedload(Referral.resource),
            joinedload(Referral.support_person),
        )
        .where(
            Referral.follow_up_on.is_not(None),
            Referral.follow_up_on <= on,
            Referral.status.not_in([ReferralStatus.PLACED, ReferralStatus.CLOSED]),
        )
        .order_by(Referral.follow_up_on, Referral.id)
        .limit(limit)
    )
    return list(db.session.scalars(common.scoped(query, user)).unique())


def residences_with_beds(*, limit: int = 50) -> list[AftercareResource]:
    """Active residences that accept MOUD and have a bed free, most beds first: one query."""
    return list(
        db.session.scalars(
            sa.select(AftercareResource)
            .where(
                AftercareResource.active.is_(True),
                AftercareResource.kind.in_(RESIDENCE_KINDS),
                AftercareResource.accepts_moud == Tristate.YES,
                AftercareResource.beds_available > 0,
            )
            .order_by(AftercareResource.beds_available.desc(), AftercareResource.name)
            .limit(limit)
        )
    )


def consents_expiring(user: User, on: dt.date, *, days: int = 30, limit: int = 100) -> list:
    """Consents of the user's sites, active on ``on``, that expire (by date) within ``days``:
    a new consent is needed before the next disclosure. One query."""
    from clinic.aftercare.consent_models import Consent, ExpiryKind

    query = (
        sa.select(Consent)
        .join(Patient, Patient.id == Consent.patient_id)
        .options(joinedload(Consent.patient))
        .where(
            Consent.expiry_kind == ExpiryKind.DATE,
            Consent.expires_on >= on,
            Consent.expires_on <= on + dt.timedelta(days=days),
            Consent.signed_on <= on,
            Consent.revoked_on.is_(None),
        )
        .order_by(Consent.expires_on, Consent.id)
        .limit(limit)
    )
    return list(db.session.scalars(common.scoped(query, user)).unique())
