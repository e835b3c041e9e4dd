"""Medication orders, stop-dose holds and patient flags (DOMAIN.md, "Medication for opioid
use disorder"; 42 CFR 8.12(h)).

An order is never edited: a dose change ends the current order and starts the next one
(``replaces_id``), so the history of who ordered what, when and why is the table itself. A
database trigger on both engines refuses any UPDATE of an order's clinical columns; only the
ending columns (status, end date, who, when, why) may be set, once.

Amounts are exact decimals in milligrams (``Milligrams``): never floats.
"""

from __future__ import annotations

import calendar
import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic.accounts.models import User
from clinic.db import Base, utcnow
from clinic.patients.models import Enrollment, Patient, str_enum

# No order is ever this large (XR naltrexone is 380 mg, XR buprenorphine 300 mg, the
# highest methadone doses a few hundred mg): a typing slip such as 10,000 mg is refused by
# the service and, failing that, by a CHECK.
DOSE_CEILING_MG = Decimal("1000")
MG_QUANTUM = Decimal("0.01")


class Milligrams(sa.types.TypeDecorator):
    """An exact amount in mg, NUMERIC(7, 2): ``Decimal`` in, ``Decimal`` out on both engines.

    SQLite has no decimal type; its NUMERIC affinity stores 62.5 as a REAL, which holds any
    two-decimal amount below 100,000 closely enough that ``Decimal(str(value))`` quantised
    to 0.01 gives back exactly what was written. Sums are taken in Python, not in SQL."""

    impl = sa.Numeric(7, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.Numeric(7, 2, asdecimal=False))
        return dialect.type_descriptor(sa.Numeric(7, 2))

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        amount = Decimal(value).quantize(MG_QUANTUM)
        return str(amount) if dialect.name == "sqlite" else amount

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        if value is None:
            return None
        return Decimal(str(value)).quantize(MG_QUANTUM)


class ProductForm(StrEnum):
    ORAL_LIQUID = "oral_liquid"
    TABLET = "tablet"
    DISPERSIBLE_TABLET = "dispersible_tablet"
    SUBLINGUAL_FILM = "sublingual_film"
    SUBLINGUAL_TABLET = "sublingual_tablet"
    INJECTION = "injection"

    @property
    def label(self) -> str:
        return {
            "oral_liquid": "Oral liquid",
            "tablet": "Tablet",
            "dispersible_tablet": "Dispersible tablet",
            "sublingual_film": "Sublingual film",
            "sublingual_tablet": "Sublingual tablet",
            "injection": "Injection",
        }[self.value]

    @property
    def is_sublingual(self) -> bool:
        return self in (ProductForm.SUBLINGUAL_FILM, ProductForm.SUBLINGUAL_TABLET)


class Medication(StrEnum):
    METHADONE = "methadone"
    BUPRENORPHINE = "buprenorphine"
    BUPRENORPHINE_NALOXONE = "buprenorphine_naloxone"
    XR_BUPRENORPHINE = "xr_buprenorphine"
    NALTREXONE = "naltrexone"
    XR_NALTREXONE = "xr_naltrexone"

    @property
    def label(self) -> str:
        return {
            "methadone": "Methadone",
            "buprenorphine": "Buprenorphine",
            "buprenorphine_naloxone": "Buprenorphine-naloxone",
            "xr_buprenorphine": "Extended-release buprenorphine injection",
            "naltrexone": "Naltrexone (oral)",
            "xr_naltrexone": "Extended-release naltrexone injection",
        }[self.value]

    @property
    def is_injection(self) -> bool:
        return self in (Medication.XR_BUPRENORPHINE, Medication.XR_NALTREXONE)

    @property
    def substance(self) -> str:
        """The controlled substance (or not) the ledger names: methadone, buprenorphine or
        naltrexone."""
        if self is Medication.METHADONE:
            return "methadone"
        if self in (Medication.NALTREXONE, Medication.XR_NALTREXONE):
            return "naltrexone"
        return "buprenorphine"

    @property
    def forms(self) -> tuple[ProductForm, ...]:
        """The product forms this medication comes in (DOMAIN.md's table)."""
        return MEDICATION_FORMS[self]

    @property
    def schedules(self) -> tuple[Schedule, ...]:
        """Injections are given weekly, monthly or every 4 weeks; the rest daily or split."""
        if self.is_injection:
            return (Schedule.WEEKLY, Schedule.MONTHLY, Schedule.EVERY_4_WEEKS)
        return (Schedule.DAILY, Schedule.SPLIT)


MEDICATION_FORMS: dict[Medication, tuple[ProductForm, ...]] = {
    Medication.METHADONE: (
        ProductForm.ORAL_LIQUID,
        ProductForm.DISPERSIBLE_TABLET,
        ProductForm.TABLET,
    ),
    Medication.BUPRENORPHINE: (ProductForm.SUBLINGUAL_TABLET, ProductForm.SUBLINGUAL_FILM),
    Medication.BUPRENORPHINE_NALOXONE: (
        ProductForm.SUBLINGUAL_FILM,
        ProductForm.SUBLINGUAL_TABLET,
    ),
    Medication.XR_BUPRENORPHINE: (ProductForm.INJECTION,),
    Medication.NALTREXONE: (ProductForm.TABLET,),
    Medication.XR_NALTREXONE: (ProductForm.INJECTION,),
}


class Schedule(StrEnum):
    DAILY = "daily"
    SPLIT = "split"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    EVERY_4_WEEKS = "every_4_weeks"

    @property
    def label(self) -> str:
        return {
            "daily": "Daily",
            "split": "Daily, split in two portions",
            "weekly": "Weekly",
            "monthly": "Monthly",
            "every_4_weeks": "Every 4 weeks",
        }[self.value]

    @property
    def interval_days(self) -> int | None:
        """Days between administrations: None for the daily schedules; 7; 28. Monthly is
        given as 31 (the longest month) for a "days since" comparison, but its due date is
        the same day of the next calendar month (``next_due``)."""
        return {"weekly": 7, "monthly": 31, "every_4_weeks": 28}.get(self.value)

    def next_due(self, last: dt.date) -> dt.date:
        """The day the next administration is due after one given on ``last``: the next
        day for daily schedules, +7 / +28 days, or the same day of the next calendar month
        (the month's last day when it is shorter, e.g. Jan 31 → Feb 28)."""
        if self is Schedule.MONTHLY:
            year, month = (last.year + 1, 1) if last.month == 12 else (last.year, last.month + 1)
            day = min(last.day, calendar.monthrange(year, month)[1])
            return dt.date(year, month, day)
        return last + dt.timedelta(days=self.interval_days or 1)


class OrderStatus(StrEnum):
    ACTIVE = "active"
    ENDED = "ended"

    @property
    def label(self) -> str:
        return self.value.title()


def _forms_check() -> str:
    return " OR ".join(
        f"(medication = '{medication.value}' AND product_form IN "
        f"({', '.join(repr(form.value) for form in forms)}))"
        for medication, forms in MEDICATION_FORMS.items()
    )


INJECTIONS = ", ".join(repr(m.value) for m in Medication if m.is_injection)
INJECTION_SCHEDULES = "'weekly', 'monthly', 'every_4_weeks'"
ACTIVE_ORDER = "status = 'active'"
# The columns an order is written with and never changes (the trigger
# medication_order_clinical_immutable in the migration lists the same).
ORDER_CLINICAL_COLUMNS = (
    "patient_id",
    "enrollment_id",
    "medication",
    "product_form",
    "strength",
    "dose_mg",
    "schedule",
    "split_first_mg",
    "split_second_mg",
    "start_on",
    "prescriber_id",
    "reason",
    "justification",
    "last_opioid_use_on",
    "replaces_id",
    "created_at",
)


class MedicationOrder(Base):
    __tablename__ = "medication_order"
    __table_args__ = (
        sa.CheckConstraint(f"dose_mg > 0 AND dose_mg <= {DOSE_CEILING_MG}", name="dose_in_range"),
        sa.CheckConstraint(
            "(schedule = 'split' AND split_first_mg IS NOT NULL AND split_second_mg IS NOT NULL"
            " AND split_first_mg > 0 AND split_second_mg > 0"
            " AND split_first_mg + split_second_mg = dose_mg)"
            " OR (schedule <> 'split' AND split_first_mg IS NULL AND split_second_mg IS NULL)",
            name="split_portions",
        ),
        sa.CheckConstraint(_forms_check(), name="medication_form"),
        sa.CheckConstraint(
            f"(medication IN ({INJECTIONS}) AND schedule IN ({INJECTION_SCHEDULES}))"
            f" OR (medication NOT IN ({INJECTIONS}) AND schedule IN ('daily', 'split'))",
            name="schedule_fits_medication",
        ),
        # An order ended before its start was never in force: it ends the day before.
        sa.CheckConstraint(
            "end_on IS NULL OR end_on >= start_on OR status = 'ended'", name="end_after_start"
        ),
        sa.CheckConstraint(
            "(status = 'ended') = (ended_at IS NOT NULL)"
            " AND (status <> 'ended' OR (end_on IS NOT NULL AND ended_reason IS NOT NULL"
            " AND ended_by_id IS NOT NULL))",
            name="ended_complete",
        ),
        sa.CheckConstraint("length(strength) > 0", name="strength_not_empty"),
        sa.CheckConstraint("reason IS NULL OR length(reason) > 0", name="reason_not_empty"),
        sa.CheckConstraint(
            "justification IS NULL OR length(justification) > 0", name="justification_not_empty"
        ),
        sa.CheckConstraint(
            "ended_reason IS NULL OR length(ended_reason) > 0", name="ended_reason_not_empty"
        ),
        sa.CheckConstraint(
            "last_opioid_use_on IS NULL OR last_opioid_use_on <= start_on",
            name="last_use_before_start",
        ),
        # At most one active order per patient and medication.
        sa.Index(
            "uq_medication_order_active_patient_medication",
            "patient_id",
            "medication",
            unique=True,
            sqlite_where=sa.text(ACTIVE_ORDER),
            postgresql_where=sa.text(ACTIVE_ORDER),
        ),
        sa.Index("ix_medication_order_patient_start", "patient_id", "start_on"),
        sa.Index("ix_medication_order_status_start", "status", "start_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    enrollment_id: Mapped[int] = mapped_column(sa.ForeignKey("enrollment.id"), index=True)
    medication: Mapped[Medication] = mapped_column(str_enum(Medication, "medication"))
    product_form: Mapped[ProductForm] = mapped_column(str_enum(ProductForm, "product_form"))
    strength: Mapped[str] = mapped_column(sa.String(40))
    dose_mg: Mapped[Decimal] = mapped_column(Milligrams())
    schedule: Mapped[Schedule] = mapped_column(str_enum(Schedule, "medication_schedule", 16))
    split_first_mg: Mapped[Decimal | None] = mapped_column(Milligrams())
    split_second_mg: Mapped[Decimal | None] = mapped_column(Milligrams())
    start_on: Mapped[dt.date]
    # The last day the order is in force (inclusive); None until it ends.
    end_on: Mapped[dt.date | None]
    status: Mapped[OrderStatus] = mapped_column(
        str_enum(OrderStatus, "order_status", 16), default=OrderStatus.ACTIVE
    )
    prescriber_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    # Why this order (required for a dose change beyond the program's step and a switch).
    reason: Mapped[str | None] = mapped_column(sa.String(500))
    # Written clinical justification: first-day methadone above 50 mg (42 CFR
    # 8.12(h)(3)(ii)), a dose above the usual range, naltrexone without 7 opioid-free days.
    justification: Mapped[str | None] = mapped_column(sa.String(1000))
    last_opioid_use_on: Mapped[dt.date | None]
    replaces_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("medication_order.id"), index=True
    )
    ended_reason: Mapped[str | None] = mapped_column(sa.String(500))
    ended_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    ended_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    patient: Mapped[Patient] = relationship()
    enrollment: Mapped[Enrollment] = relationship()
    prescriber: Mapped[User] = relationship(foreign_keys=[prescriber_id])
    ended_by: Mapped[User | None] = relationship(foreign_keys=[ended_by_id])

    @property
    def active(self) -> bool:
        return self.status == OrderStatus.ACTIVE

    @property
    def dose_label(self) -> str:
        """E.g. "62.5 mg", "80 mg (50 mg + 30 mg)"."""
        text = f"{format_mg(self.dose_mg)} mg"
        if self.split_first_mg is not None and self.split_second_mg is not None:
            text += f" ({format_mg(self.split_first_mg)} mg + {format_mg(self.split_second_mg)} mg)"
        return text

    def in_force_on(self, day: dt.date) -> bool:
        return self.start_on <= day and (self.end_on is None or self.end_on >= day)


def format_mg(amount: Decimal) -> str:
    """62.50 → "62.5", 80.00 → "80"."""
    text = f"{amount:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


LIVE_HOLD = "lifted_at IS NULL"


class MedicationHold(Base):
    """A stop-dose hold: no dose by any route while it is in force, i.e. on a site-local
    day d when ``lifted_at IS NULL AND (until_on IS NULL OR until_on >= d)``. One live
    (unlifted) hold per patient."""

    __tablename__ = "medication_hold"
    __table_args__ = (
        sa.CheckConstraint("length(reason) > 0", name="reason_not_empty"),
        sa.CheckConstraint(
            "(lifted_at IS NULL) = (lifted_by_id IS NULL)"
            " AND (lifted_at IS NULL) = (lift_reason IS NULL)",
            name="lift_complete",
        ),
        sa.CheckConstraint(
            "lift_reason IS NULL OR length(lift_reason) > 0", name="lift_reason_not_empty"
        ),
        sa.Index(
            "uq_medication_hold_live_patient",
            "patient_id",
            unique=True,
            sqlite_where=sa.text(LIVE_HOLD),
            postgresql_where=sa.text(LIVE_HOLD),
        ),
        sa.Index("ix_medication_hold_patient_placed", "patient_id", "placed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    reason: Mapped[str] = mapped_column(sa.String(500))
    until_on: Mapped[dt.date | None]
    placed_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    placed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    lifted_at: Mapped[dt.datetime | None]
    lifted_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    lift_reason: Mapped[str | None] = mapped_column(sa.String(500))

    patient: Mapped[Patient] = relationship()
    placed_by: Mapped[User] = relationship(foreign_keys=[placed_by_id])
    lifted_by: Mapped[User | None] = relationship(foreign_keys=[lifted_by_id])

    def in_force_on(self, day: dt.date) -> bool:
        return self.lifted_at is None and (self.until_on is None or self.until_on >= day)


class FlagCategory(StrEnum):
    INFO = "info"
    WARNING = "warning"

    @property
    def label(self) -> str:
        return {"info": "Information", "warning": "Warning"}[self.value]


LIVE_FLAG = "cleared_at IS NULL"


class PatientFlag(Base):
    """Free text with a category shown on the dosing screen; a warning must be
    acknowledged once a day before dosing (the dose ledger's flag acknowledgements)."""

    __tablename__ = "patient_flag"
    __table_args__ = (
        sa.CheckConstraint("length(text) > 0", name="text_not_empty"),
        sa.CheckConstraint("(cleared_at IS NULL) = (cleared_by_id IS NULL)", name="clear_complete"),
        sa.Index("ix_patient_flag_patient_cleared", "patient_id", "cleared_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    category: Mapped[FlagCategory] = mapped_column(str_enum(FlagCategory, "flag_category", 16))
    text: Mapped[str] = mapped_column(sa.String(500))
    created_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    cleared_at: Mapped[dt.datetime | None]
    cleared_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))

    patient: Mapped[Patient] = relationship()
    created_by: Mapped[User] = relationship(foreign_keys=[created_by_id])
    cleared_by: Mapped[User | None] = relationship(foreign_keys=[cleared_by_id])

    @property
    def live(self) -> bool:
        return self.cleared_at is None


# --- dose ledger ---
# The dose ledger (21 CFR 1304.24(a)), flag acknowledgements and missed-dose reviews
# (task M-dosing). Rules live in clinic.medications.ledger, .missed and .reviews; the
# database backs them.


class DoseKind(StrEnum):
    OBSERVED = "observed"
    TAKE_HOME = "take_home"
    MISSED = "missed"
    HELD = "held"
    REVERSAL = "reversal"
    INJECTION = "injection"

    @property
    def label(self) -> str:
        return {
            "observed": "Observed",
            "take_home": "Take-home",
            "missed": "Missed",
            "held": "Held",
            "reversal": "Reversal",
            "injection": "Injection",
        }[self.value]

    @property
    def takes_slot(self) -> bool:
        """A medication given to the patient (observed or injected): it takes the
        patient's next dose slot of the day (``DoseEntry.slot``)."""
        return self in (DoseKind.OBSERVED, DoseKind.INJECTION)


# The kinds that give medication: each takes a slot of the day and carries an amount.
_GIVEN = "kind IN ('observed', 'injection')"


class DoseEntry(Base):
    """One row of the dose ledger: the 21 CFR 1304.24(a) record of a dose dispensed (or a
    dose day missed or held, or the reversal of a mistaken row).

    Append-only: triggers refuse UPDATE and DELETE on both engines (and TRUNCATE on
    PostgreSQL); a mistake is corrected by a ``reversal`` row pointing at it
    (``reverses_id``, with a reason), at most one per row.

    ``slot`` numbers the medication given to a patient on a site-local day (1, 2, ...;
    a reversed row keeps its number, the next dose takes the next one): two nurses
    dosing the same patient at once compute the same slot and the unique constraint
    ``uq_dose_entry_patient_day_slot`` lets only one of them save."""

    __tablename__ = "dose_entry"
    __table_args__ = (
        # Medication given carries its amount; a missed or held day carries none.
        sa.CheckConstraint(
            f"NOT ({_GIVEN}) OR (amount_mg IS NOT NULL AND amount_mg > 0)", name="amount_given"
        ),
        sa.CheckConstraint(
            "kind NOT IN ('missed', 'held') OR amount_mg IS NULL", name="no_amount_not_given"
        ),
        sa.CheckConstraint("amount_mg IS NULL OR amount_mg > 0", name="amount_positive"),
        sa.CheckConstraint(f"({_GIVEN}) = (slot IS NOT NULL)", name="slot_for_given"),
        sa.CheckConstraint("slot IS NULL OR slot > 0", name="slot_positive"),
        sa.CheckConstraint(
            "(kind = 'reversal') = (reverses_id IS NOT NULL)", name="reversal_reverses"
        ),
        sa.CheckConstraint(
            "kind NOT IN ('reversal', 'missed', 'held')"
            " OR (reason IS NOT NULL AND length(reason) > 0)",
            name="reason_given",
        ),
        sa.CheckConstraint(
            "(kind = 'injection') = (lot IS NOT NULL AND injection_site IS NOT NULL)",
            name="injection_details",
        ),
        sa.CheckConstraint(
            "(take_home_mg IS NULL) = (take_home_form IS NULL)", name="take_home_complete"
        ),
        sa.CheckConstraint(
            "take_home_mg IS NULL OR take_home_mg > 0",
            name="take_home_amount",
        ),
        # A take-home bottle (issue 13) has its take-on date (a later day), its number in
        # its dispensing, and the dispensing (the visit, its decision, its label sheet).
        sa.CheckConstraint(
            "(kind = 'take_home') = (take_on IS NOT NULL AND bottle_number IS NOT NULL"
            " AND dispensing_id IS NOT NULL)",
            name="take_home_bottle",
        ),
        sa.CheckConstraint(
            "kind <> 'take_home' OR (amount_mg IS NOT NULL AND amount_mg > 0"
            " AND take_on > dispensed_on AND bottle_number > 0)",
            name="take_home_bottle_amount",
        ),
        sa.UniqueConstraint(
            "patient_id", "dispensed_on", "slot", name="uq_dose_entry_patient_day_slot"
        ),
        sa.UniqueConstraint(
            "dispensing_id", "bottle_number", name="uq_dose_entry_dispensing_bottle"
        ),
        sa.Index("ix_dose_entry_patient_take_on", "patient_id", "take_on"),
        sa.Index(
            "uq_dose_entry_reverses_id",
            "reverses_id",
            unique=True,
            sqlite_where=sa.text("reverses_id IS NOT NULL"),
            postgresql_where=sa.text("reverses_id IS NOT NULL"),
        ),
        # (patient_id, dispensed_on, ...) above serves a patient's days (the last dose,
        # the missed-day count). A patient's history, newest first, is paginated by keyset
        # on (dispensed_at, id).
        sa.Index("ix_dose_entry_patient_history", "patient_id", "dispensed_at", "id"),
        # A site's day (the dosing screen's doses today, the daily dispensing log).
        sa.Index("ix_dose_entry_site_day", "site_id", "dispensed_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[DoseKind] = mapped_column(str_enum(DoseKind, "dose_kind", 16))
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("site.id"))
    order_id: Mapped[int | None] = mapped_column(sa.ForeignKey("medication_order.id"), index=True)
    medication: Mapped[Medication] = mapped_column(str_enum(Medication, "dose_medication"))
    # 1304.24(a): name of the substance, strength and dosage form.
    substance: Mapped[str] = mapped_column(sa.String(32))
    strength: Mapped[str] = mapped_column(sa.String(40))
    dosage_form: Mapped[ProductForm] = mapped_column(str_enum(ProductForm, "dose_form"))
    # Date dispensed: the site's clinical day; the instant, in UTC.
    dispensed_on: Mapped[dt.date]
    dispensed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    amount_mg: Mapped[Decimal | None] = mapped_column(Milligrams())
    take_home_mg: Mapped[Decimal | None] = mapped_column(Milligrams())
    take_home_form: Mapped[str | None] = mapped_column(sa.String(40))
    slot: Mapped[int | None]
    # The dispenser: the signed-in user, never typed.
    dispenser_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    station: Mapped[str | None] = mapped_column(sa.String(40))
    reason: Mapped[str | None] = mapped_column(sa.String(500))
    reverses_id: Mapped[int | None] = mapped_column(sa.ForeignKey("dose_entry.id"))
    lot: Mapped[str | None] = mapped_column(sa.String(40))
    injection_site: Mapped[str | None] = mapped_column(sa.String(40))
    # A take-home bottle (kind take_home): the site-local day it is for, its number on the
    # label, and its dispensing (clinic.medications.take_home_models.TakeHomeDispensing).
    take_on: Mapped[dt.date | None]
    bottle_number: Mapped[int | None]
    dispensing_id: Mapped[int | None] = mapped_column(sa.ForeignKey("take_home_dispensing.id"))

    patient: Mapped[Patient] = relationship()
    dispenser: Mapped[User] = relationship()
    order: Mapped[MedicationOrder | None] = relationship()

    @property
    def kind_label(self) -> str:
        return DoseKind(self.kind).label


class FlagAcknowledgement(Base):
    """A warning flag acknowledged for one site-local day, by the user about to dose: a
    warning must be acknowledged once per day before the patient is dosed."""

    __tablename__ = "flag_acknowledgement"
    __table_args__ = (
        sa.UniqueConstraint(
            "flag_id", "acknowledged_on", name="uq_flag_acknowledgement_flag_id_acknowledged_on"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    flag_id: Mapped[int] = mapped_column(sa.ForeignKey("patient_flag.id"))
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"), index=True)
    acknowledged_on: Mapped[dt.date]
    acknowledged_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    acknowledged_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ReviewDecision(StrEnum):
    CONTINUE = "continue"
    HOLD = "hold"
    NEW_ORDER = "new_order"

    @property
    def label(self) -> str:
        return {
            "continue": "Continue the current order",
            "hold": "Hold doses (stop-dose hold)",
            "new_order": "Write a new order",
        }[self.value]


class MissedDoseReview(Base):
    """A clinician's review of a patient who missed 3 or more consecutive due days: it
    takes the patient off the review list and the dosing screen's alert until 3 more due
    days are missed after the review's day."""

    __tablename__ = "missed_dose_review"
    __table_args__ = (
        sa.CheckConstraint("missed_days >= 0", name="missed_days_not_negative"),
        sa.Index("ix_missed_dose_review_patient", "patient_id", "reviewed_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    order_id: Mapped[int | None] = mapped_column(sa.ForeignKey("medication_order.id"))
    reviewed_on: Mapped[dt.date]
    missed_days: Mapped[int]
    decision: Mapped[ReviewDecision] = mapped_column(str_enum(ReviewDecision, "review_decision"))
    note: Mapped[str | None] = mapped_column(sa.String(500))
    reviewed_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    reviewed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    reviewed_by: Mapped[User] = relationship()
