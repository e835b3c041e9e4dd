"""A patient's support network, 42 CFR Part 2 consents and restriction requests (issue 12;
DOMAIN.md "Consent and disclosure (42 CFR Part 2, 2024 revision)").

- ``SupportPerson``: someone in the patient's recovery support system. Edited under an
  optimistic lock, never deleted: archived, with who and when.
- ``Consent`` (``part2_consent``): a written consent with every §2.31 element as a required
  column (NOT NULL, and a CHECK ``length > 0`` on text). A signed consent is never edited:
  triggers on both engines refuse an UPDATE of any element and every DELETE; a changed
  consent is a new one (``based_on_id`` says which it replaces in the staff's mind; the old
  one stays, revoked or not, as signed). Revocation (§2.31(a)(6)) is written once.
- ``RestrictionRequest`` (``disclosure_restriction``): the patient asked that something
  not be disclosed to someone (§2.26); honoured by ``consents.check_disclosure``. Lifted
  once, never deleted.

State (active, expired, revoked) is computed from the dates, never stored
(``clinic.aftercare.consents.consent_state``).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic.accounts.models import User
from clinic.db import Base, utcnow
from clinic.patients.models import Patient, Program, str_enum

if TYPE_CHECKING:
    from clinic.aftercare.models import AftercareResource

NAME_MAX = 120
PHONE_MAX = 32
EMAIL_MAX = 254
NOTES_MAX = 2000
ELEMENT_MAX = 2000  # a consent's text elements
SHORT_MAX = 200  # names, references, typed signatures

# 42 CFR 2.32 (2024 revision), in substance (DOMAIN.md): printed on the consent form and
# on every referral packet, i.e. with every disclosure.
PART2_NOTICE = (
    "This record which has been disclosed to you is protected by federal confidentiality "
    "rules (42 CFR part 2). These rules prohibit you from using or disclosing this record, "
    "or testimony that describes the information contained in this record, in any civil, "
    "criminal, administrative, or legislative proceedings by any Federal, State, or local "
    "authority, against the patient, unless authorized by the consent of the patient, "
    "except as provided at 42 CFR 2.12(c)(5) or as authorized by a court in accordance with "
    "42 CFR 2.64 or 2.65. In addition, the Federal rules prohibit you from making any other "
    "use or disclosure of this record unless at least one of the following applies: further "
    "use or disclosure is expressly permitted by the written consent of the individual "
    "whose information is being disclosed in this record or as otherwise permitted by "
    "42 CFR part 2. A general authorization for the release of medical or other information "
    "is NOT sufficient to meet the required elements of written consent to further use or "
    "redisclose this record (see 42 CFR 2.31)."
)

# §2.31(a)(6): the right to revoke, and how. Prefilled on the form; the patient may be
# told more, never less.
RIGHT_TO_REVOKE_DEFAULT = (
    "You may revoke this consent at any time, in writing, by giving or sending a signed and "
    "dated statement to the program's front desk. Revoking it stops further disclosures; it "
    "does not undo disclosures already made in reliance on it."
)

# §2.33(b) (2024 revision): a TPO consent's redisclosure statement.
TPO_REDISCLOSURE_DEFAULT = (
    "Records disclosed under this consent for treatment, payment or health care operations "
    "may be further disclosed by a HIPAA covered entity or business associate recipient as "
    "the HIPAA regulations permit, except for uses and disclosures in proceedings against "
    "the patient, which 42 CFR 2.12(d) and the notice above forbid."
)


class Relationship(StrEnum):
    FAMILY = "family"
    FRIEND = "friend"
    SPONSOR = "sponsor"
    PEER_RECOVERY_COACH = "peer_recovery_coach"
    OTHER = "other"

    @property
    def label(self) -> str:
        return {
            "family": "Family",
            "friend": "Friend",
            "sponsor": "Sponsor",
            "peer_recovery_coach": "Peer recovery coach",
            "other": "Other",
        }[self.value]


class ConsentKind(StrEnum):
    SPECIFIC_DISCLOSURE = "specific_disclosure"
    TPO = "tpo"
    COUNSELING_NOTES = "counseling_notes"

    @property
    def label(self) -> str:
        return {
            "specific_disclosure": "Specific disclosure",
            "tpo": "Treatment, payment and health care operations (TPO)",
            "counseling_notes": "SUD counseling notes",
        }[self.value]


class ConsentPurpose(StrEnum):
    AFTERCARE_REFERRAL = "aftercare_referral"
    CARE_COORDINATION = "care_coordination"
    TPO = "tpo"
    OTHER = "other"

    @property
    def label(self) -> str:
        return {
            "aftercare_referral": "Aftercare referral and placement",
            "care_coordination": "Care coordination",
            "tpo": "Treatment, payment and health care operations",
            "other": "Other (as written)",
        }[self.value]


class RecipientClass(StrEnum):
    """A described class of recipients (§2.31(a)(4)): what it includes is fixed here, so
    ``check_disclosure`` reads the same class the patient signed."""

    RESIDENCES = "residences"
    SUPPORT_GROUPS = "support_groups"
    OUTPATIENT_CARE = "outpatient_care"
    PEER_SUPPORT = "peer_support"
    AFTERCARE_DIRECTORY = "aftercare_directory"
    SUPPORT_NETWORK = "support_network"

    @property
    def label(self) -> str:
        return {
            "residences": "Recovery residences and halfway houses in the program's directory",
            "support_groups": "Support groups in the program's directory",
            "outpatient_care": "Continuing outpatient care providers in the program's directory",
            "peer_support": "Peer recovery support services in the program's directory",
            "aftercare_directory": "Every aftercare resource in the program's directory",
            "support_network": "The people in my support network recorded by the program",
        }[self.value]

    @property
    def resource_kinds(self) -> frozenset[str]:
        """The aftercare resource kinds (``ResourceKind`` values) the class includes."""
        return {
            "residences": frozenset({"halfway_house", "recovery_residence"}),
            "support_groups": frozenset({"support_group"}),
            "outpatient_care": frozenset({"outpatient_care"}),
            "peer_support": frozenset({"peer_support"}),
            "aftercare_directory": frozenset(
                {
                    "halfway_house",
                    "recovery_residence",
                    "support_group",
                    "outpatient_care",
                    "peer_support",
                }
            ),
            "support_network": frozenset(),
        }[self.value]

    @property
    def includes_support_people(self) -> bool:
        return self is RecipientClass.SUPPORT_NETWORK


class ExpiryKind(StrEnum):
    DATE = "date"
    EVENT = "event"
    NONE = "none"

    @property
    def label(self) -> str:
        return {
            "date": "On a date",
            "event": "At the end of treatment",
            "none": "No expiration (TPO consent only; until revoked)",
        }[self.value]


class SignatureMethod(StrEnum):
    PAPER = "paper"
    ELECTRONIC = "electronic"

    @property
    def label(self) -> str:
        return {
            "paper": "Signed on paper (scanned)",
            "electronic": "Signed electronically at the front desk",
        }[self.value]


END_OF_TREATMENT = "End of treatment"
ARCHIVED_COMPLETE = (
    "(archived_at IS NULL) = (archived_by_id IS NULL)"  # archived: when and by whom, or neither
)


def _text_check(column: str, *, optional: bool = False) -> sa.CheckConstraint:
    rule = f"length({column}) > 0"
    return sa.CheckConstraint(
        f"{column} IS NULL OR {rule}" if optional else rule, name=f"{column}_not_empty"
    )


def _recipient_one_of(*, allow_none: bool) -> str:
    count = (
        "(CASE WHEN resource_id IS NULL THEN 0 ELSE 1 END)"
        " + (CASE WHEN support_person_id IS NULL THEN 0 ELSE 1 END)"
        " + (CASE WHEN recipient_class IS NULL THEN 0 ELSE 1 END)"
    )
    return f"{count} <= 1" if allow_none else f"{count} = 1"


class SupportPerson(Base):
    """Someone in a patient's recovery support system. Contacting them discloses that the
    patient is in treatment: the consent rule applies (``check_disclosure``)."""

    __tablename__ = "support_person"
    __table_args__ = (
        _text_check("name"),
        _text_check("phone", optional=True),
        _text_check("email", optional=True),
        _text_check("notes", optional=True),
        sa.CheckConstraint(ARCHIVED_COMPLETE, name="archived_complete"),
        sa.Index("ix_support_person_patient", "patient_id", "archived_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    name: Mapped[str] = mapped_column(sa.String(NAME_MAX))
    relationship_kind: Mapped[Relationship] = mapped_column(
        "relationship", str_enum(Relationship, "support_relationship")
    )
    phone: Mapped[str | None] = mapped_column(sa.String(PHONE_MAX))
    email: Mapped[str | None] = mapped_column(sa.String(EMAIL_MAX))
    can_offer_housing: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    notes: Mapped[str | None] = mapped_column(sa.String(NOTES_MAX))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    updated_at: Mapped[dt.datetime | None]
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    archived_at: Mapped[dt.datetime | None]
    archived_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    patient: Mapped[Patient] = relationship()
    archived_by: Mapped[User | None] = relationship(foreign_keys=[archived_by_id])

    __mapper_args__ = {"version_id_col": version}

    @property
    def archived(self) -> bool:
        return self.archived_at is not None


# The columns a consent is signed with: never changed (trigger part2_consent_immutable).
CONSENT_ELEMENT_COLUMNS = (
    "patient_id",
    "patient_name",
    "kind",
    "program_id",
    "program_name",
    "information_description",
    "resource_id",
    "support_person_id",
    "recipient_class",
    "recipient_name",
    "purpose",
    "purpose_text",
    "right_to_revoke",
    "expiry_kind",
    "expires_on",
    "expiry_event",
    "signature_method",
    "paper_scan_reference",
    "electronic_signature_name",
    "signed_on",
    "redisclosure_statement",
    "based_on_id",
    "recorded_by_id",
    "recorded_at",
)
CONSENT_REVOCATION_COLUMNS = ("revoked_on", "revocation_method", "revoked_by_id", "revoked_at")


class Consent(Base):
    """A 42 CFR 2.31 written consent, as signed. Every element is a required column:

    patient (``patient_id`` and the name as written), who may disclose (``program_id`` and
    its name as written), the information (``information_description``), the recipient
    (exactly one of a resource, a support person or a described class, and its name as
    written), the purpose (a code the disclosure check reads, and its text), the right to
    revoke and how, the expiration (a date; the end of treatment; none, TPO only), the
    signature (paper with the scan's reference, or electronic with the typed name), its date,
    and who recorded it. A TPO consent carries its redisclosure statement."""

    __tablename__ = "part2_consent"
    __table_args__ = (
        _text_check("patient_name"),
        _text_check("program_name"),
        _text_check("information_description"),
        _text_check("recipient_name"),
        _text_check("purpose_text"),
        _text_check("right_to_revoke"),
        _text_check("expiry_event", optional=True),
        _text_check("paper_scan_reference", optional=True),
        _text_check("electronic_signature_name", optional=True),
        _text_check("redisclosure_statement", optional=True),
        _text_check("revocation_method", optional=True),
        sa.CheckConstraint(_recipient_one_of(allow_none=False), name="one_recipient"),
        sa.CheckConstraint("(kind = 'tpo') = (purpose = 'tpo')", name="tpo_purpose"),
        sa.CheckConstraint(
            "kind <> 'tpo' OR redisclosure_statement IS NOT NULL", name="tpo_redisclosure"
        ),
        sa.CheckConstraint(
            "(expiry_kind = 'date') = (expires_on IS NOT NULL)", name="expiry_date_when_dated"
        ),
        sa.CheckConstraint(
            "(expiry_kind = 'event') = (expiry_event IS NOT NULL)", name="expiry_event_when_event"
        ),
        sa.CheckConstraint("expiry_kind <> 'none' OR kind = 'tpo'", name="no_expiry_only_tpo"),
        sa.CheckConstraint(
            "expires_on IS NULL OR expires_on >= signed_on", name="expires_after_signature"
        ),
        sa.CheckConstraint(
            "(signature_method = 'paper') = (paper_scan_reference IS NOT NULL)"
            " AND (signature_method = 'electronic') = (electronic_signature_name IS NOT NULL)",
            name="signature_evidence",
        ),
        sa.CheckConstraint(
            "(revoked_on IS NULL) = (revocation_method IS NULL)"
            " AND (revoked_on IS NULL) = (revoked_by_id IS NULL)"
            " AND (revoked_on IS NULL) = (revoked_at IS NULL)",
            name="revocation_complete",
        ),
        sa.CheckConstraint(
            "revoked_on IS NULL OR revoked_on >= signed_on", name="revoked_after_signature"
        ),
        sa.Index("ix_part2_consent_patient", "patient_id", "signed_on"),
        sa.Index("ix_part2_consent_resource", "resource_id"),
        sa.Index("ix_part2_consent_support_person", "support_person_id"),
        sa.Index("ix_part2_consent_expires_on", "expires_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    patient_name: Mapped[str] = mapped_column(sa.String(SHORT_MAX))
    kind: Mapped[ConsentKind] = mapped_column(str_enum(ConsentKind, "consent_kind"))
    program_id: Mapped[int] = mapped_column(sa.ForeignKey("program.id"))
    program_name: Mapped[str] = mapped_column(sa.String(SHORT_MAX))
    information_description: Mapped[str] = mapped_column(sa.String(ELEMENT_MAX))
    resource_id: Mapped[int | None] = mapped_column(sa.ForeignKey("aftercare_resource.id"))
    support_person_id: Mapped[int | None] = mapped_column(sa.ForeignKey("support_person.id"))
    recipient_class: Mapped[RecipientClass | None] = mapped_column(
        str_enum(RecipientClass, "consent_recipient_class")
    )
    recipient_name: Mapped[str] = mapped_column(sa.String(ELEMENT_MAX))
    purpose: Mapped[ConsentPurpose] = mapped_column(str_enum(ConsentPurpose, "consent_purpose"))
    purpose_text: Mapped[str] = mapped_column(sa.String(ELEMENT_MAX))
    right_to_revoke: Mapped[str] = mapped_column(sa.String(ELEMENT_MAX))
    expiry_kind: Mapped[ExpiryKind] = mapped_column(str_enum(ExpiryKind, "consent_expiry", 8))
    expires_on: Mapped[dt.date | None]
    expiry_event: Mapped[str | None] = mapped_column(sa.String(SHORT_MAX))
    signature_method: Mapped[SignatureMethod] = mapped_column(
        str_enum(SignatureMethod, "consent_signature", 16)
    )
    paper_scan_reference: Mapped[str | None] = mapped_column(sa.String(SHORT_MAX))
    electronic_signature_name: Mapped[str | None] = mapped_column(sa.String(SHORT_MAX))
    signed_on: Mapped[dt.date]
    redisclosure_statement: Mapped[str | None] = mapped_column(sa.String(ELEMENT_MAX))
    based_on_id: Mapped[int | None] = mapped_column(sa.ForeignKey("part2_consent.id"))
    recorded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_on: Mapped[dt.date | None]
    revocation_method: Mapped[str | None] = mapped_column(sa.String(ELEMENT_MAX))
    revoked_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    revoked_at: Mapped[dt.datetime | None]

    patient: Mapped[Patient] = relationship()
    program: Mapped[Program] = relationship()
    resource: Mapped[AftercareResource | None] = relationship("AftercareResource")
    support_person: Mapped[SupportPerson | None] = relationship()
    recorded_by: Mapped[User] = relationship(foreign_keys=[recorded_by_id])
    revoked_by: Mapped[User | None] = relationship(foreign_keys=[revoked_by_id])

    @property
    def revoked(self) -> bool:
        return self.revoked_on is not None


RESTRICTION_ELEMENT_COLUMNS = (
    "patient_id",
    "purpose",
    "resource_id",
    "support_person_id",
    "recipient_class",
    "details",
    "requested_on",
    "recorded_by_id",
    "recorded_at",
)
RESTRICTION_LIFT_COLUMNS = ("lifted_on", "lift_reason", "lifted_by_id", "lifted_at")


class RestrictionRequest(Base):
    """§2.26: the patient asked that something not be disclosed. ``purpose`` NULL: for any
    purpose; no recipient (resource, support person or class): to anyone. In force from
    ``requested_on`` until lifted (written once, with who, when and why)."""

    __tablename__ = "disclosure_restriction"
    __table_args__ = (
        _text_check("details"),
        _text_check("lift_reason", optional=True),
        sa.CheckConstraint(_recipient_one_of(allow_none=True), name="at_most_one_recipient"),
        sa.CheckConstraint(
            "(lifted_on IS NULL) = (lift_reason IS NULL)"
            " AND (lifted_on IS NULL) = (lifted_by_id IS NULL)"
            " AND (lifted_on IS NULL) = (lifted_at IS NULL)",
            name="lift_complete",
        ),
        sa.CheckConstraint(
            "lifted_on IS NULL OR lifted_on >= requested_on", name="lifted_after_request"
        ),
        sa.Index("ix_disclosure_restriction_patient", "patient_id", "lifted_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    purpose: Mapped[ConsentPurpose | None] = mapped_column(
        str_enum(ConsentPurpose, "restriction_purpose")
    )
    resource_id: Mapped[int | None] = mapped_column(sa.ForeignKey("aftercare_resource.id"))
    support_person_id: Mapped[int | None] = mapped_column(sa.ForeignKey("support_person.id"))
    recipient_class: Mapped[RecipientClass | None] = mapped_column(
        str_enum(RecipientClass, "restriction_recipient_class")
    )
    details: Mapped[str] = mapped_column(sa.String(ELEMENT_MAX))
    requested_on: Mapped[dt.date]
    recorded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    lifted_on: Mapped[dt.date | None]
    lift_reason: Mapped[str | None] = mapped_column(sa.String(ELEMENT_MAX))
    lifted_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    lifted_at: Mapped[dt.datetime | None]

    patient: Mapped[Patient] = relationship()
    resource: Mapped[AftercareResource | None] = relationship("AftercareResource")
    support_person: Mapped[SupportPerson | None] = relationship()
    recorded_by: Mapped[User] = relationship(foreign_keys=[recorded_by_id])
    lifted_by: Mapped[User | None] = relationship(foreign_keys=[lifted_by_id])

    @property
    def lifted(self) -> bool:
        return self.lifted_on is not None

    def in_force_on(self, day: dt.date) -> bool:
        return self.requested_on <= day and (self.lifted_on is None or self.lifted_on > day)

    @property
    def recipient_label(self) -> str:
        if self.resource is not None:
            return self.resource.name
        if self.support_person is not None:
            return self.support_person.name
        if self.recipient_class is not None:
            return self.recipient_class.label
        return "Anyone"

    @property
    def purpose_label(self) -> str:
        return self.purpose.label if self.purpose is not None else "Any purpose"
