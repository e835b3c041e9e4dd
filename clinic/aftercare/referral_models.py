"""Referrals, their status history and the disclosures they make (issue 12; DOMAIN.md
"Aftercare referrals" and "Consent and disclosure"; 42 CFR 2.31, 2.32, 2.25).

A ``Referral`` sends a patient to a resource of the directory or to a person of their
support network: exactly one of the two (a CHECK). Its status moves along the DOMAIN's
path only (``TRANSITIONS``): the service refuses any other move, and the database refuses
it again, on both engines (the referrals migration's triggers: a new referral is a draft,
a status changes along an allowed pair only, and a referral becomes "sent" only with its
disclosure on record). Each change is a ``ReferralEvent``, whose (from, to) pair a CHECK
limits to the same table.

Sending is a disclosure: a ``Disclosure`` row (table ``part2_disclosure``) names the
recipient as disclosed, what was disclosed, the purpose, the consent that allowed it and
who disclosed it. Events and disclosures are append-only (triggers on both engines; the
app's database role may only INSERT and SELECT them, ``clinic/audit/cli.py``), so the
accounting of disclosures (§2.25) keeps every one of them, whatever becomes of the consent.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic.accounts.models import User
from clinic.aftercare.consent_models import ConsentPurpose
from clinic.db import Base, utcnow
from clinic.patients.models import Patient, str_enum

if TYPE_CHECKING:
    from clinic.aftercare.consent_models import Consent, SupportPerson
    from clinic.aftercare.models import AftercareResource

REASON_MAX = 1000
NOTE_MAX = 1000
RECIPIENT_NAME_MAX = 200
DESCRIPTION_MAX = 2000


class ReferralStatus(StrEnum):
    DRAFT = "draft"
    SENT = "sent"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    WAITLISTED = "waitlisted"
    PLACED = "placed"
    CLOSED = "closed"

    @property
    def label(self) -> str:
        return {
            "draft": "Draft",
            "sent": "Sent",
            "accepted": "Accepted",
            "declined": "Declined",
            "waitlisted": "Waitlisted",
            "placed": "Placed",
            "closed": "Closed",
        }[self.value]

    @property
    def final(self) -> bool:
        return self in (ReferralStatus.PLACED, ReferralStatus.CLOSED)


S = ReferralStatus
# DOMAIN.md: draft → sent → accepted / declined / waitlisted → placed / closed; a waitlist
# ends in acceptance, a refusal or a placement; any status not final may be closed.
TRANSITIONS: dict[ReferralStatus, tuple[ReferralStatus, ...]] = {
    S.DRAFT: (S.SENT, S.CLOSED),
    S.SENT: (S.ACCEPTED, S.DECLINED, S.WAITLISTED, S.CLOSED),
    S.ACCEPTED: (S.PLACED, S.CLOSED),
    S.DECLINED: (S.CLOSED,),
    S.WAITLISTED: (S.ACCEPTED, S.DECLINED, S.PLACED, S.CLOSED),
    S.PLACED: (),
    S.CLOSED: (),
}
ALLOWED_PAIRS = tuple((a.value, b.value) for a, targets in TRANSITIONS.items() for b in targets)


def allowed_pairs_sql(old: str, new: str) -> str:
    """SQL true when (``old``, ``new``) is an allowed transition: the CHECK's and the
    triggers' condition, written once."""
    return " OR ".join(f"({old} = '{a}' AND {new} = '{b}')" for a, b in ALLOWED_PAIRS)


class Referral(Base):
    """A patient referred to a resource or a support person. ``purpose`` is what a consent
    must cover for sending it; ``version`` is the optimistic lock of every change."""

    __tablename__ = "referral"
    __table_args__ = (
        sa.CheckConstraint(
            "(resource_id IS NULL) <> (support_person_id IS NULL)", name="one_recipient"
        ),
        sa.CheckConstraint(
            f"length(reason) > 0 AND length(reason) <= {REASON_MAX}", name="reason_length"
        ),
        sa.Index("ix_referral_patient", "patient_id", "id"),
        sa.Index("ix_referral_status_follow_up", "status", "follow_up_on"),
        sa.Index("ix_referral_resource_id", "resource_id"),
        sa.Index("ix_referral_support_person_id", "support_person_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    resource_id: Mapped[int | None] = mapped_column(sa.ForeignKey("aftercare_resource.id"))
    support_person_id: Mapped[int | None] = mapped_column(sa.ForeignKey("support_person.id"))
    reason: Mapped[str] = mapped_column(sa.String(REASON_MAX))
    purpose: Mapped[ConsentPurpose] = mapped_column(
        str_enum(ConsentPurpose, "referral_purpose", 32),
        default=ConsentPurpose.AFTERCARE_REFERRAL,
    )
    status: Mapped[ReferralStatus] = mapped_column(
        str_enum(ReferralStatus, "referral_status", 16), default=ReferralStatus.DRAFT
    )
    follow_up_on: Mapped[dt.date | None]
    created_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status_changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    patient: Mapped[Patient] = relationship()
    resource: Mapped[AftercareResource | None] = relationship("AftercareResource")
    support_person: Mapped[SupportPerson | None] = relationship("SupportPerson")
    created_by: Mapped[User] = relationship(foreign_keys=[created_by_id])
    events: Mapped[list[ReferralEvent]] = relationship(
        back_populates="referral", order_by="ReferralEvent.id"
    )

    __mapper_args__ = {"version_id_col": version}

    @property
    def recipient_name(self) -> str:
        if self.resource is not None:
            return self.resource.name
        return support_person_name(self.support_person)

    @property
    def next_statuses(self) -> tuple[ReferralStatus, ...]:
        """Where a status change may take it (sending is its own step, with its consent)."""
        return tuple(s for s in TRANSITIONS[ReferralStatus(self.status)] if s is not S.SENT)


def support_person_name(person) -> str:
    """A support person's name as staff write it (the support-network model's own
    ``display_name`` when it has one)."""
    if person is None:
        return "—"
    for attr in ("display_name", "full_name", "name"):
        value = getattr(person, attr, None)
        if value:
            return str(value)
    first, last = getattr(person, "first_name", ""), getattr(person, "last_name", "")
    return f"{first} {last}".strip() or f"Support person {person.id}"


class ReferralEvent(Base):
    """One status change (the creation has ``from_status`` NULL): who, when, a note.
    Append-only; the CHECK allows the DOMAIN's transitions only."""

    __tablename__ = "referral_event"
    __table_args__ = (
        sa.CheckConstraint(
            "(from_status IS NULL AND to_status = 'draft') OR "
            + allowed_pairs_sql("from_status", "to_status"),
            name="allowed_transition",
        ),
        sa.CheckConstraint(
            f"note IS NULL OR (length(note) > 0 AND length(note) <= {NOTE_MAX})",
            name="note_length",
        ),
        sa.Index("ix_referral_event_referral", "referral_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    referral_id: Mapped[int] = mapped_column(sa.ForeignKey("referral.id"))
    from_status: Mapped[ReferralStatus | None] = mapped_column(
        str_enum(ReferralStatus, "referral_event_from", 16)
    )
    to_status: Mapped[ReferralStatus] = mapped_column(
        str_enum(ReferralStatus, "referral_event_to", 16)
    )
    actor_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    note: Mapped[str | None] = mapped_column(sa.String(NOTE_MAX))

    referral: Mapped[Referral] = relationship(back_populates="events")
    actor: Mapped[User] = relationship()


class Disclosure(Base):
    """One disclosure of Part 2 information (§2.25 accounting): to whom (the resource or
    support person, and the name as disclosed), what, for what purpose, under which
    consent, by whom and when (``disclosed_on``: the site's day). Append-only."""

    __tablename__ = "part2_disclosure"
    __table_args__ = (
        sa.CheckConstraint(
            "(resource_id IS NULL) <> (support_person_id IS NULL)", name="one_recipient"
        ),
        sa.CheckConstraint(
            f"length(recipient_name) > 0 AND length(recipient_name) <= {RECIPIENT_NAME_MAX}",
            name="recipient_name_length",
        ),
        sa.CheckConstraint(
            f"length(description) > 0 AND length(description) <= {DESCRIPTION_MAX}",
            name="description_length",
        ),
        # A referral is disclosed once: two staff sending it at once store one disclosure.
        sa.Index("uq_part2_disclosure_referral", "referral_id", unique=True),
        sa.Index("ix_part2_disclosure_patient_on", "patient_id", "disclosed_on"),
        sa.Index("ix_part2_disclosure_consent_id", "consent_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    referral_id: Mapped[int | None] = mapped_column(sa.ForeignKey("referral.id"))
    resource_id: Mapped[int | None] = mapped_column(sa.ForeignKey("aftercare_resource.id"))
    support_person_id: Mapped[int | None] = mapped_column(sa.ForeignKey("support_person.id"))
    recipient_name: Mapped[str] = mapped_column(sa.String(RECIPIENT_NAME_MAX))
    description: Mapped[str] = mapped_column(sa.String(DESCRIPTION_MAX))
    purpose: Mapped[ConsentPurpose] = mapped_column(
        str_enum(ConsentPurpose, "disclosure_purpose", 32)
    )
    consent_id: Mapped[int] = mapped_column(sa.ForeignKey("part2_consent.id"))
    disclosed_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    disclosed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    disclosed_on: Mapped[dt.date]

    patient: Mapped[Patient] = relationship()
    referral: Mapped[Referral | None] = relationship()
    consent: Mapped[Consent] = relationship("Consent")
    disclosed_by: Mapped[User] = relationship()
