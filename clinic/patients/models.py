"""Patients, treatment programs and enrollments (admission to discharge).

Rules from DOMAIN.md: one active enrollment per patient and program; ASAM level stored
with its edition; TEDS-D discharge reasons; 42 CFR 8.12 deadlines (medical examination and
psychosocial assessment / initial care plan within 14 days; periodic care-plan review).
"""

from __future__ import annotations

import datetime as dt
from enum import IntEnum, StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic.accounts.models import User
from clinic.db import Base, utcnow
from clinic.sites.models import Site


def str_enum(enum: type[StrEnum], name: str, length: int = 32) -> sa.Enum:
    return sa.Enum(
        enum,
        native_enum=False,
        create_constraint=True,
        length=length,
        name=name,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


# Name search keys: lower-case ASCII letters and digits, compared by byte so a prefix
# range (key >= 'smi' AND key < 'smj') uses a plain b-tree index on both engines.
SearchKey = sa.String(80).with_variant(sa.String(80, collation="C"), "postgresql")
UNCONFIRMED_IDENTITY = "NOT duplicate_confirmed AND entered_in_error_at IS NULL"


class SexAtBirth(StrEnum):
    FEMALE = "female"
    MALE = "male"
    INTERSEX = "intersex"
    UNKNOWN = "unknown"

    @property
    def label(self) -> str:
        return self.value.title()


class Substance(StrEnum):
    HEROIN = "heroin"
    FENTANYL = "fentanyl"
    PRESCRIPTION_OPIOIDS = "prescription_opioids"
    ALCOHOL = "alcohol"
    METHAMPHETAMINE = "methamphetamine"
    COCAINE = "cocaine"
    CANNABIS = "cannabis"
    BENZODIAZEPINES = "benzodiazepines"
    OTHER = "other"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()


class Patient(Base):
    __tablename__ = "patient"
    __table_args__ = (
        sa.CheckConstraint("length(first_name) > 0", name="first_name_not_empty"),
        sa.CheckConstraint("length(last_name) > 0", name="last_name_not_empty"),
        sa.CheckConstraint("date_of_birth <= intake_date", name="born_before_intake"),
        sa.CheckConstraint(
            "(entered_in_error_at IS NULL) = (entered_in_error_reason IS NULL)",
            name="entered_in_error_has_reason",
        ),
        # The patient list's sorts, each ending in the id (its tiebreak): a keyset page
        # seeks to its cursor and reads in order, forwards or backwards, on both engines
        # (clinic.pagination). The MRN's own unique index serves the MRN sort.
        sa.Index("ix_patient_last_key_id", "last_key", "id"),
        sa.Index("ix_patient_date_of_birth_id", "date_of_birth", "id"),
        sa.Index("ix_patient_intake_date_id", "intake_date", "id"),
        sa.Index("ix_patient_first_key", "first_key"),
        sa.Index("ix_patient_preferred_key", "preferred_key"),
        sa.Index("ix_patient_dob_last_key", "date_of_birth", "last_key"),
        # One unconfirmed registration per person (same name keys and date of birth):
        # two registrations racing each other cannot both pass the duplicate check. A
        # registration the user confirmed as a different person is outside the index.
        sa.Index(
            "uq_patient_unconfirmed_identity",
            "last_key",
            "first_key",
            "date_of_birth",
            unique=True,
            sqlite_where=sa.text(UNCONFIRMED_IDENTITY),
            postgresql_where=sa.text(UNCONFIRMED_IDENTITY),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("site.id"), index=True)
    # Medical record number: the site's code and a per-site number, e.g. MAIN-000042.
    mrn: Mapped[str] = mapped_column(sa.String(24), unique=True)
    first_name: Mapped[str] = mapped_column(sa.String(80))
    last_name: Mapped[str] = mapped_column(sa.String(80))
    preferred_name: Mapped[str | None] = mapped_column(sa.String(80))
    first_key: Mapped[str] = mapped_column(SearchKey)
    last_key: Mapped[str] = mapped_column(SearchKey)
    preferred_key: Mapped[str | None] = mapped_column(SearchKey)
    date_of_birth: Mapped[dt.date]
    sex_at_birth: Mapped[SexAtBirth] = mapped_column(str_enum(SexAtBirth, "sex_at_birth", 16))
    gender_identity: Mapped[str | None] = mapped_column(sa.String(60))
    phone: Mapped[str | None] = mapped_column(sa.String(32))
    email: Mapped[str | None] = mapped_column(sa.String(254))
    address_line1: Mapped[str | None] = mapped_column(sa.String(120))
    address_line2: Mapped[str | None] = mapped_column(sa.String(120))
    city: Mapped[str | None] = mapped_column(sa.String(80))
    state: Mapped[str | None] = mapped_column(sa.String(40))
    postal_code: Mapped[str | None] = mapped_column(sa.String(16))
    emergency_contact_name: Mapped[str | None] = mapped_column(sa.String(120))
    emergency_contact_phone: Mapped[str | None] = mapped_column(sa.String(32))
    emergency_contact_relationship: Mapped[str | None] = mapped_column(sa.String(60))
    primary_substance: Mapped[Substance] = mapped_column(str_enum(Substance, "substance"))
    intake_date: Mapped[dt.date]
    state_registry_id: Mapped[str | None] = mapped_column(sa.String(40))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    # The user who registered (or renamed) this record saw patients with the same name
    # and date of birth and confirmed this is someone else.
    duplicate_confirmed: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Never deleted: a record entered by mistake is marked so, with who, when and why.
    entered_in_error_at: Mapped[dt.datetime | None]
    entered_in_error_reason: Mapped[str | None] = mapped_column(sa.String(500))
    entered_in_error_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    site: Mapped[Site] = relationship()
    enrollments: Mapped[list[Enrollment]] = relationship(
        back_populates="patient", order_by="Enrollment.admitted_on.desc(), Enrollment.id.desc()"
    )
    name_tokens: Mapped[list[PatientNameToken]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )

    __mapper_args__ = {"version_id_col": version}

    @property
    def display_name(self) -> str:
        preferred = f" ({self.preferred_name})" if self.preferred_name else ""
        return f"{self.last_name}, {self.first_name}{preferred}"

    @property
    def entered_in_error(self) -> bool:
        return self.entered_in_error_at is not None

    def age_on(self, day: dt.date) -> int:
        born = self.date_of_birth
        return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


class PatientNameToken(Base):
    """One word a name search may start with (see ``clinic.patients.names``): a search
    word is a prefix range on ``token``, served by the (token, patient_id) index."""

    __tablename__ = "patient_name_token"
    __table_args__ = (sa.Index("ix_patient_name_token_token", "token", "patient_id"),)

    patient_id: Mapped[int] = mapped_column(
        sa.ForeignKey("patient.id", ondelete="CASCADE"), primary_key=True
    )
    token: Mapped[str] = mapped_column(SearchKey, primary_key=True)


class ProgramKind(StrEnum):
    METHADONE_OTP = "methadone_otp"
    OFFICE_BUPRENORPHINE = "office_buprenorphine"
    XR_NALTREXONE = "xr_naltrexone"
    INTENSIVE_OUTPATIENT = "intensive_outpatient"
    OUTPATIENT = "outpatient"

    @property
    def label(self) -> str:
        return {
            "methadone_otp": "Methadone maintenance (OTP)",
            "office_buprenorphine": "Office-based buprenorphine",
            "xr_naltrexone": "Extended-release naltrexone",
            "intensive_outpatient": "Intensive outpatient",
            "outpatient": "Outpatient",
        }[self.value]

    @property
    def is_otp(self) -> bool:
        """An opioid treatment program: the only kind 42 CFR 8.12 applies to (its 14-day
        examination, assessment and initial care plan deadlines, and the take-home caps
        of 8.12(i)). Office-based buprenorphine is prescribed under a DEA registration,
        naltrexone is not an opioid, and outpatient / intensive outpatient programs are
        not OTPs (DOMAIN.md: "the caps do not apply to buprenorphine")."""
        return self is ProgramKind.METHADONE_OTP


# 42 CFR 8.12(i): take-home supply caps by time in treatment. Programs (and states)
# may set lower caps, never higher.
FEDERAL_TAKE_HOME_CAPS = {"days_0_14": 7, "days_15_30": 14, "days_31_plus": 28}
DEFAULT_CARE_PLAN_REVIEW_DAYS = 90
DEFAULT_METHADONE_STEP_MG = 10
DEFAULT_BUPRENORPHINE_STEP_MG = 4
# A progress note signed more than this many hours after its session ended is a late
# entry (DOMAIN.md "Therapy sessions"; issue 11).
DEFAULT_NOTE_LATE_HOURS = 72
# A take-home decision older than this many days is due for review (issue 13).
DEFAULT_TAKE_HOME_REVIEW_DAYS = 90
TAKE_HOME_CAP_COLUMNS = (
    "take_home_cap_days_0_14",
    "take_home_cap_days_15_30",
    "take_home_cap_days_31_plus",
)
# Take-home caps are set for an opioid treatment program and only for one.
TAKE_HOME_CAPS_OTP_ONLY = (
    "(kind = 'methadone_otp' AND "
    + " AND ".join(f"{c} IS NOT NULL" for c in TAKE_HOME_CAP_COLUMNS)
    + ") OR (kind <> 'methadone_otp' AND "
    + " AND ".join(f"{c} IS NULL" for c in TAKE_HOME_CAP_COLUMNS)
    + ")"
)


class Program(Base):
    __tablename__ = "program"
    __table_args__ = (
        sa.UniqueConstraint("site_id", "name", name="uq_program_site_id_name"),
        sa.CheckConstraint("length(name) > 0", name="name_not_empty"),
        sa.CheckConstraint(
            "care_plan_review_days BETWEEN 1 AND 365", name="care_plan_review_days_range"
        ),
        sa.CheckConstraint(
            f"take_home_cap_days_0_14 BETWEEN 0 AND {FEDERAL_TAKE_HOME_CAPS['days_0_14']}",
            name="take_home_cap_0_14",
        ),
        sa.CheckConstraint(
            f"take_home_cap_days_15_30 BETWEEN 0 AND {FEDERAL_TAKE_HOME_CAPS['days_15_30']}",
            name="take_home_cap_15_30",
        ),
        sa.CheckConstraint(
            f"take_home_cap_days_31_plus BETWEEN 0 AND {FEDERAL_TAKE_HOME_CAPS['days_31_plus']}",
            name="take_home_cap_31_plus",
        ),
        sa.CheckConstraint(TAKE_HOME_CAPS_OTP_ONLY, name="take_home_caps_otp_only"),
        sa.CheckConstraint("methadone_step_mg BETWEEN 1 AND 100", name="methadone_step_range"),
        sa.CheckConstraint(
            "buprenorphine_step_mg BETWEEN 1 AND 32", name="buprenorphine_step_range"
        ),
        sa.CheckConstraint("note_late_hours BETWEEN 1 AND 720", name="note_late_hours_range"),
        sa.CheckConstraint(
            "take_home_review_days BETWEEN 1 AND 365", name="take_home_review_days_range"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("site.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    kind: Mapped[ProgramKind] = mapped_column(str_enum(ProgramKind, "program_kind"))
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    care_plan_review_days: Mapped[int] = mapped_column(
        default=DEFAULT_CARE_PLAN_REVIEW_DAYS, server_default=str(DEFAULT_CARE_PLAN_REVIEW_DAYS)
    )
    # 42 CFR 8.12(i) take-home caps: an OTP's (at most the federal caps); NULL for every
    # other kind (the CHECK take_home_caps_otp_only).
    take_home_cap_days_0_14: Mapped[int | None]
    take_home_cap_days_15_30: Mapped[int | None]
    take_home_cap_days_31_plus: Mapped[int | None]
    # A dose change larger than this asks for a reason (DOMAIN.md; issue 10).
    methadone_step_mg: Mapped[int] = mapped_column(
        default=DEFAULT_METHADONE_STEP_MG, server_default=str(DEFAULT_METHADONE_STEP_MG)
    )
    buprenorphine_step_mg: Mapped[int] = mapped_column(
        default=DEFAULT_BUPRENORPHINE_STEP_MG, server_default=str(DEFAULT_BUPRENORPHINE_STEP_MG)
    )
    note_late_hours: Mapped[int] = mapped_column(
        default=DEFAULT_NOTE_LATE_HOURS, server_default=str(DEFAULT_NOTE_LATE_HOURS)
    )
    take_home_review_days: Mapped[int] = mapped_column(
        default=DEFAULT_TAKE_HOME_REVIEW_DAYS, server_default=str(DEFAULT_TAKE_HOME_REVIEW_DAYS)
    )
    # Optimistic lock: two administrators editing the same program cannot silently undo
    # each other's change (the form carries the version it was built from).
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    site: Mapped[Site] = relationship()

    __mapper_args__ = {"version_id_col": version}


class AsamEdition(StrEnum):
    THIRD = "3"
    FOURTH = "4"

    @property
    def label(self) -> str:
        return "ASAM 3rd ed." if self is AsamEdition.THIRD else "ASAM 4th ed."


ASAM_LEVELS: dict[AsamEdition, tuple[str, ...]] = {
    AsamEdition.THIRD: ("0.5", "1", "OTP", "2.1", "2.5", "3.1", "3.3", "3.5", "3.7", "4"),
    AsamEdition.FOURTH: ("1.0", "1.5", "1.7", "2.1", "2.5", "2.7", "3.1", "3.5", "3.7", "4"),
}


def _asam_check() -> str:
    clauses = [
        f"(asam_edition = '{edition.value}' AND asam_level IN "
        f"({', '.join(repr(level) for level in levels)}))"
        for edition, levels in ASAM_LEVELS.items()
    ]
    return " OR ".join(clauses)


class DischargeReason(IntEnum):
    """TEDS-D reason for discharge."""

    COMPLETED = 1
    DROPPED_OUT = 2
    TERMINATED = 3
    TRANSFERRED = 4
    INCARCERATED = 5
    DEATH = 6
    OTHER = 7

    @property
    def label(self) -> str:
        return {
            1: "Treatment completed",
            2: "Dropped out (left against advice)",
            3: "Terminated by facility",
            4: "Transferred to another program or facility",
            5: "Incarcerated",
            6: "Death",
            7: "Other",
        }[self.value]


class Enrollment(Base):
    __tablename__ = "enrollment"
    __table_args__ = (
        sa.CheckConstraint(_asam_check(), name="asam_level_valid"),
        sa.CheckConstraint(
            "(discharged_on IS NULL) = (discharge_reason IS NULL)", name="discharge_complete"
        ),
        sa.CheckConstraint(
            "discharged_on IS NULL OR discharged_on >= admitted_on",
            name="discharge_after_admission",
        ),
        sa.CheckConstraint(
            "discharge_reason IS NULL OR discharge_reason BETWEEN 1 AND 7",
            name="discharge_reason_teds",
        ),
        sa.CheckConstraint(
            "medical_exam_on IS NULL OR medical_exam_on >= admitted_on", name="exam_after_admission"
        ),
        sa.CheckConstraint(
            "assessment_on IS NULL OR assessment_on >= admitted_on",
            name="assessment_after_admission",
        ),
        sa.CheckConstraint(
            "care_plan_on IS NULL OR care_plan_on >= admitted_on", name="care_plan_after_admission"
        ),
        # ...and none after the discharge, whichever of the two is written last.
        sa.CheckConstraint(
            "medical_exam_on IS NULL OR discharged_on IS NULL OR medical_exam_on <= discharged_on",
            name="exam_before_discharge",
        ),
        sa.CheckConstraint(
            "assessment_on IS NULL OR discharged_on IS NULL OR assessment_on <= discharged_on",
            name="assessment_before_discharge",
        ),
        sa.CheckConstraint(
            "care_plan_on IS NULL OR discharged_on IS NULL OR care_plan_on <= discharged_on",
            name="care_plan_before_discharge",
        ),
        # At most one active enrollment per patient and program.
        sa.Index(
            "uq_enrollment_active_patient_program",
            "patient_id",
            "program_id",
            unique=True,
            sqlite_where=sa.text("discharged_on IS NULL"),
            postgresql_where=sa.text("discharged_on IS NULL"),
        ),
        sa.Index("ix_enrollment_program_active", "program_id", "discharged_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"), index=True)
    program_id: Mapped[int] = mapped_column(sa.ForeignKey("program.id"))
    admitted_on: Mapped[dt.date]
    asam_edition: Mapped[AsamEdition] = mapped_column(str_enum(AsamEdition, "asam_edition", 1))
    asam_level: Mapped[str] = mapped_column(sa.String(8))
    primary_counselor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    transferred_from_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("enrollment.id"), index=True
    )
    discharged_on: Mapped[dt.date | None]
    discharge_reason: Mapped[int | None]
    # 42 CFR 8.12(f): deadlines after admission, recorded as completion dates.
    medical_exam_on: Mapped[dt.date | None]
    assessment_on: Mapped[dt.date | None]
    care_plan_on: Mapped[dt.date | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    patient: Mapped[Patient] = relationship(back_populates="enrollments")
    program: Mapped[Program] = relationship()
    primary_counselor: Mapped[User | None] = relationship(foreign_keys=[primary_counselor_id])
    reviews: Mapped[list[CarePlanReview]] = relationship(
        back_populates="enrollment", order_by="CarePlanReview.reviewed_on.desc()"
    )
    corrections: Mapped[list[EnrollmentCorrection]] = relationship(
        order_by="EnrollmentCorrection.id", viewonly=True
    )

    __mapper_args__ = {"version_id_col": version}

    @property
    def active(self) -> bool:
        return self.discharged_on is None

    @property
    def level_label(self) -> str:
        return f"{self.asam_level} ({AsamEdition(self.asam_edition).label})"

    @property
    def discharge_reason_label(self) -> str | None:
        return DischargeReason(self.discharge_reason).label if self.discharge_reason else None


class CarePlanReview(Base):
    """A periodic review of the care plan (interval: the program's setting). Its date lies
    between the initial care plan and the discharge (a trigger on both tables)."""

    __tablename__ = "care_plan_review"
    __table_args__ = (
        # One review a day per enrollment: the same review posted twice is stored once.
        sa.UniqueConstraint(
            "enrollment_id", "reviewed_on", name="uq_care_plan_review_enrollment_id_reviewed_on"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(sa.ForeignKey("enrollment.id"), index=True)
    reviewed_on: Mapped[dt.date]
    recorded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    enrollment: Mapped[Enrollment] = relationship(back_populates="reviews")


class CorrectedField(StrEnum):
    """What an enrollment correction changed."""

    PRIMARY_COUNSELOR = "primary_counselor"
    LEVEL_OF_CARE = "level_of_care"
    ADMITTED_ON = "admitted_on"
    DISCHARGE = "discharge"

    @property
    def label(self) -> str:
        return {
            "primary_counselor": "Primary counselor",
            "level_of_care": "Level of care",
            "admitted_on": "Admission date",
            "discharge": "Discharge (undone)",
        }[self.value]


class EnrollmentCorrection(Base):
    """One corrected value of an enrollment: who, when, which field, the value before and
    after (as shown to people: a counselor's name, "OTP (ASAM 3rd ed.)", an ISO date), and why.

    Append-only: the history of a clinical record is never rewritten (triggers refuse
    UPDATE and DELETE on both engines, see the program_rules_enrollment_corrections
    migration)."""

    __tablename__ = "enrollment_correction"
    __table_args__ = (
        sa.CheckConstraint("length(reason) >= 10", name="reason_given"),
        sa.Index("ix_enrollment_correction_enrollment_id", "enrollment_id", "corrected_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(sa.ForeignKey("enrollment.id"))
    field: Mapped[CorrectedField] = mapped_column(str_enum(CorrectedField, "corrected_field"))
    old_value: Mapped[str | None] = mapped_column(sa.String(160))
    new_value: Mapped[str | None] = mapped_column(sa.String(160))
    reason: Mapped[str] = mapped_column(sa.String(500))
    corrected_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    corrected_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    corrected_by: Mapped[User] = relationship()
