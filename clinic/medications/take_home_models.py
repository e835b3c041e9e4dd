"""Take-home decisions, take-home bottles and what follows them back (issue 13; DOMAIN.md
"Take-home methadone" and "Take-home bottles"; 42 CFR 8.12(i)).

- ``TakeHomeDecision``: a clinician's documented decision that a patient may take doses
  home — a run of days from a start date, or a weekly schedule (e.g. Saturday and Sunday)
  — answered against the six criteria of 42 CFR 8.12(i)(2), each with a note, and approved
  by a prescriber. The cap that applied (by time in treatment; NULL for buprenorphine) and
  the days counted against it are stored with it, and a CHECK keeps the counted days within
  the cap. Signed elements never change (triggers); a decision is approved or declined
  once, and ended once.
- ``TakeHomeReview``: a clinician's review of a decision (continue or end), which takes it
  off the review list until it is due again.
- ``TakeHomeDispensing``: one visit's take-home bottles, each a ``DoseEntry`` of kind
  ``take_home`` (take-on date, bottle number, mg) in the append-only dose ledger; the unit
  a label sheet is printed for.
- ``BottleReturn``: the check of one bottle at a later visit (returned empty, unreturned,
  tampered); a finding opens a ``DiversionIncident``.
- ``CallBack``: a random call-back (the patient brings every remaining bottle within 24
  hours for a count), its outcome recorded once; a short count is a finding.
- ``DiversionIncident``: a finding on the chart that puts the patient's decisions on the
  review list.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic.accounts.models import User
from clinic.db import Base, utcnow
from clinic.medications.models import Medication, MedicationOrder
from clinic.patients.models import Enrollment, Patient, str_enum

NOTE_MAX = 1000
REASON_MAX = 500
MAX_TAKE_HOME_DAYS = 28  # the federal ceiling (42 CFR 8.12(i)(3)), days 31 and later

# The six criteria of 42 CFR 8.12(i)(2), in the order the form asks them.
CRITERIA = (
    ("substance_use", "No active substance use or other risk-raising condition"),
    ("attendance", "Regular attendance"),
    ("behaviour", "No serious behavioural problems"),
    ("diversion", "No known recent diversion"),
    ("storage", "Safe transport and storage"),
    ("other", "Other factors the practitioner considers"),
)


class ScheduleKind(StrEnum):
    DAYS = "days"  # a run of consecutive days from start_on
    WEEKLY = "weekly"  # the given weekdays, every week from start_on (until end_on)

    @property
    def label(self) -> str:
        return {"days": "A run of days", "weekly": "Weekly schedule"}[self.value]


def _criteria_columns_check() -> str:
    return " AND ".join(f"length({name}_note) > 0" for name, _label in CRITERIA)


class TakeHomeDecision(Base):
    """A documented take-home decision (see the module docstring).

    Shapes: ``days`` (1-28) for a run of days, covering ``start_on`` .. ``end_on``
    (= start_on + days - 1); ``weekdays`` (ISO digits, e.g. "67") for a weekly schedule
    from ``start_on`` until ``end_on`` if set. ``treatment_day``: days since admission on
    ``start_on`` (admission day = 0). ``cap_days``: the cap that applied (None for
    buprenorphine); ``counted_days``: the take-home days counted against it (clinic-closed
    days excluded; for a weekly schedule, its longest run)."""

    __tablename__ = "take_home_decision"
    __table_args__ = (
        sa.CheckConstraint("medication IN ('methadone', 'buprenorphine')", name="medication_kind"),
        sa.CheckConstraint(
            "(schedule_kind = 'days' AND days BETWEEN 1 AND 28 AND weekdays IS NULL"
            " AND end_on IS NOT NULL)"
            " OR (schedule_kind = 'weekly' AND days IS NULL AND weekdays IS NOT NULL"
            " AND length(weekdays) BETWEEN 1 AND 7)",
            name="schedule_shape",
        ),
        sa.CheckConstraint("end_on IS NULL OR end_on >= start_on", name="end_after_start"),
        sa.CheckConstraint("treatment_day >= 0", name="treatment_day_not_negative"),
        sa.CheckConstraint("counted_days >= 0", name="counted_days_not_negative"),
        sa.CheckConstraint(
            "cap_days IS NULL OR counted_days <= cap_days", name="counted_within_cap"
        ),
        sa.CheckConstraint(
            "(medication = 'methadone') = (cap_days IS NOT NULL)", name="cap_for_methadone"
        ),
        sa.CheckConstraint(_criteria_columns_check(), name="criteria_notes_given"),
        sa.CheckConstraint(
            "(approved_at IS NULL) = (approved_by_id IS NULL)", name="approval_complete"
        ),
        sa.CheckConstraint(
            "(declined_at IS NULL) = (declined_by_id IS NULL)"
            " AND (declined_at IS NULL) = (declined_reason IS NULL)",
            name="decline_complete",
        ),
        sa.CheckConstraint(
            "approved_at IS NULL OR declined_at IS NULL", name="approved_or_declined"
        ),
        sa.CheckConstraint(
            "(ended_at IS NULL) = (ended_by_id IS NULL)"
            " AND (ended_at IS NULL) = (end_reason IS NULL)"
            " AND (ended_at IS NULL) = (ended_on IS NULL)",
            name="end_complete",
        ),
        sa.Index("ix_take_home_decision_patient", "patient_id", "start_on"),
        sa.Index("ix_take_home_decision_site", "site_id", "approved_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("site.id"))
    enrollment_id: Mapped[int] = mapped_column(sa.ForeignKey("enrollment.id"))
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("medication_order.id"))
    medication: Mapped[Medication] = mapped_column(str_enum(Medication, "take_home_medication"))
    schedule_kind: Mapped[ScheduleKind] = mapped_column(
        str_enum(ScheduleKind, "take_home_schedule", 8)
    )
    start_on: Mapped[dt.date]
    end_on: Mapped[dt.date | None]
    days: Mapped[int | None]
    weekdays: Mapped[str | None] = mapped_column(sa.String(7))
    treatment_day: Mapped[int]
    cap_days: Mapped[int | None]
    counted_days: Mapped[int]
    # 42 CFR 8.12(i)(2): each criterion answered (met or not) with a note.
    substance_use_met: Mapped[bool]
    substance_use_note: Mapped[str] = mapped_column(sa.String(NOTE_MAX))
    attendance_met: Mapped[bool]
    attendance_note: Mapped[str] = mapped_column(sa.String(NOTE_MAX))
    behaviour_met: Mapped[bool]
    behaviour_note: Mapped[str] = mapped_column(sa.String(NOTE_MAX))
    diversion_met: Mapped[bool]
    diversion_note: Mapped[str] = mapped_column(sa.String(NOTE_MAX))
    storage_met: Mapped[bool]
    storage_note: Mapped[str] = mapped_column(sa.String(NOTE_MAX))
    # The day safe-storage education was given (DOMAIN.md: "with safe-storage education
    # recorded").
    storage_education_on: Mapped[dt.date]
    other_met: Mapped[bool]
    other_note: Mapped[str] = mapped_column(sa.String(NOTE_MAX))
    recorded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    approved_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    approved_at: Mapped[dt.datetime | None]
    declined_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    declined_at: Mapped[dt.datetime | None]
    declined_reason: Mapped[str | None] = mapped_column(sa.String(REASON_MAX))
    ended_on: Mapped[dt.date | None]
    ended_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    ended_at: Mapped[dt.datetime | None]
    end_reason: Mapped[str | None] = mapped_column(sa.String(REASON_MAX))

    patient: Mapped[Patient] = relationship()
    enrollment: Mapped[Enrollment] = relationship()
    order: Mapped[MedicationOrder] = relationship()
    recorded_by: Mapped[User] = relationship(foreign_keys=[recorded_by_id])
    approved_by: Mapped[User | None] = relationship(foreign_keys=[approved_by_id])
    declined_by: Mapped[User | None] = relationship(foreign_keys=[declined_by_id])
    ended_by: Mapped[User | None] = relationship(foreign_keys=[ended_by_id])

    def __repr__(self) -> str:
        return f"<TakeHomeDecision {self.id} patient={self.patient_id}>"


class ReviewOutcome(StrEnum):
    CONTINUE = "continue"
    END = "end"

    @property
    def label(self) -> str:
        return {"continue": "Continue the decision", "end": "End the decision"}[self.value]


class TakeHomeReview(Base):
    """A clinician's review of a take-home decision (append-only)."""

    __tablename__ = "take_home_review"
    __table_args__ = (
        sa.CheckConstraint("length(note) > 0", name="note_not_empty"),
        sa.Index("ix_take_home_review_decision", "decision_id", "reviewed_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    decision_id: Mapped[int] = mapped_column(sa.ForeignKey("take_home_decision.id"))
    reviewed_on: Mapped[dt.date]
    outcome: Mapped[ReviewOutcome] = mapped_column(
        str_enum(ReviewOutcome, "take_home_review_outcome", 12)
    )
    note: Mapped[str] = mapped_column(sa.String(NOTE_MAX))
    reviewed_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    reviewed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    decision: Mapped[TakeHomeDecision] = relationship()
    reviewed_by: Mapped[User] = relationship()


class TakeHomeDispensing(Base):
    """One visit's take-home bottles (``DoseEntry`` rows of kind ``take_home`` pointing
    here), dispensed under ``decision_id``. Append-only."""

    __tablename__ = "take_home_dispensing"
    __table_args__ = (
        sa.CheckConstraint("bottle_count BETWEEN 1 AND 28", name="bottle_count_range"),
        sa.Index("ix_take_home_dispensing_patient", "patient_id", "dispensed_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("site.id"))
    decision_id: Mapped[int] = mapped_column(sa.ForeignKey("take_home_decision.id"), index=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("medication_order.id"))
    dispensed_on: Mapped[dt.date]
    dispensed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    dispenser_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    bottle_count: Mapped[int]

    patient: Mapped[Patient] = relationship()
    decision: Mapped[TakeHomeDecision] = relationship()
    order: Mapped[MedicationOrder] = relationship()
    dispenser: Mapped[User] = relationship()


class IncidentSource(StrEnum):
    BOTTLE_RETURN = "bottle_return"
    CALL_BACK = "call_back"

    @property
    def label(self) -> str:
        return {"bottle_return": "Bottle return", "call_back": "Call-back"}[self.value]


class DiversionIncident(Base):
    """A diversion finding on the patient's chart (append-only): it puts the patient's
    take-home decisions on the review list."""

    __tablename__ = "diversion_incident"
    __table_args__ = (
        sa.CheckConstraint("length(description) > 0", name="description_not_empty"),
        sa.Index("ix_diversion_incident_patient", "patient_id", "found_on"),
        sa.Index("ix_diversion_incident_site", "site_id", "found_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("site.id"))
    found_on: Mapped[dt.date]
    source: Mapped[IncidentSource] = mapped_column(str_enum(IncidentSource, "diversion_source", 16))
    description: Mapped[str] = mapped_column(sa.String(NOTE_MAX))
    recorded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    patient: Mapped[Patient] = relationship()
    recorded_by: Mapped[User] = relationship()


class ReturnOutcome(StrEnum):
    RETURNED = "returned"  # the empty bottle came back, intact
    UNRETURNED = "unreturned"
    TAMPERED = "tampered"

    @property
    def label(self) -> str:
        return {
            "returned": "Returned empty",
            "unreturned": "Not returned",
            "tampered": "Tampered",
        }[self.value]

    @property
    def finding(self) -> bool:
        return self is not ReturnOutcome.RETURNED


class BottleReturn(Base):
    """The check of one take-home bottle (a ``DoseEntry`` of kind ``take_home``) at a
    later visit; recorded once per bottle (append-only). A finding carries its incident."""

    __tablename__ = "bottle_return"
    __table_args__ = (
        sa.UniqueConstraint("dose_entry_id", name="uq_bottle_return_dose_entry_id"),
        sa.CheckConstraint(
            "(outcome = 'returned') = (incident_id IS NULL)", name="incident_for_finding"
        ),
        sa.Index("ix_bottle_return_patient", "patient_id", "checked_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dose_entry_id: Mapped[int] = mapped_column(sa.ForeignKey("dose_entry.id"))
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    checked_on: Mapped[dt.date]
    outcome: Mapped[ReturnOutcome] = mapped_column(
        str_enum(ReturnOutcome, "bottle_return_outcome", 12)
    )
    note: Mapped[str | None] = mapped_column(sa.String(NOTE_MAX))
    incident_id: Mapped[int | None] = mapped_column(sa.ForeignKey("diversion_incident.id"))
    recorded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    incident: Mapped[DiversionIncident | None] = relationship()
    recorded_by: Mapped[User] = relationship()


class CallBackOutcome(StrEnum):
    COMPLETE = "complete"  # every remaining bottle brought, counts right, intact
    SHORT = "short"  # fewer bottles (or less medication) than expected
    TAMPERED = "tampered"
    NO_SHOW = "no_show"  # not brought within 24 hours

    @property
    def label(self) -> str:
        return {
            "complete": "Complete: count correct",
            "short": "Short count",
            "tampered": "Tampered bottle",
            "no_show": "Not brought within 24 hours",
        }[self.value]

    @property
    def finding(self) -> bool:
        return self is not CallBackOutcome.COMPLETE


class CallBack(Base):
    """A random call-back: the patient is called at ``called_at`` and must bring every
    remaining take-home bottle by ``due_by`` (24 hours later). ``bottles_expected``: the
    bottles in the patient's hands when called (from the ledger). The outcome is recorded
    once (trigger); a finding carries its incident."""

    __tablename__ = "call_back"
    __table_args__ = (
        sa.CheckConstraint("bottles_expected >= 0", name="bottles_expected_not_negative"),
        sa.CheckConstraint(
            "bottles_counted IS NULL OR bottles_counted >= 0", name="bottles_counted_not_negative"
        ),
        sa.CheckConstraint(
            "(outcome IS NULL) = (outcome_at IS NULL)"
            " AND (outcome IS NULL) = (outcome_by_id IS NULL)",
            name="outcome_complete",
        ),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome = 'complete' OR incident_id IS NOT NULL",
            name="incident_for_finding",
        ),
        sa.CheckConstraint(
            "outcome IS NOT NULL OR incident_id IS NULL", name="incident_after_outcome"
        ),
        sa.Index("ix_call_back_patient", "patient_id", "called_at"),
        sa.Index("ix_call_back_site", "site_id", "called_at"),
        # One open call-back per patient (two clinicians starting one at once: one saves).
        sa.Index(
            "uq_call_back_open_patient",
            "patient_id",
            unique=True,
            sqlite_where=sa.text("outcome IS NULL"),
            postgresql_where=sa.text("outcome IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("site.id"))
    called_at: Mapped[dt.datetime]
    called_on: Mapped[dt.date]
    due_by: Mapped[dt.datetime]
    called_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    bottles_expected: Mapped[int]
    bottles_counted: Mapped[int | None]
    outcome: Mapped[CallBackOutcome | None] = mapped_column(
        str_enum(CallBackOutcome, "call_back_outcome", 12), nullable=True
    )
    outcome_at: Mapped[dt.datetime | None]
    outcome_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    note: Mapped[str | None] = mapped_column(sa.String(NOTE_MAX))
    incident_id: Mapped[int | None] = mapped_column(sa.ForeignKey("diversion_incident.id"))

    patient: Mapped[Patient] = relationship()
    called_by: Mapped[User] = relationship(foreign_keys=[called_by_id])
    outcome_by: Mapped[User | None] = relationship(foreign_keys=[outcome_by_id])
    incident: Mapped[DiversionIncident | None] = relationship()
