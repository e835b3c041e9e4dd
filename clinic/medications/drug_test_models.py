"""Drug tests and the random-test draw (issue 13; DOMAIN.md "Medication for opioid use
disorder", the last rule; 42 CFR 8.12(f)(6): at least 8 random tests a year in maintenance
treatment).

- ``DrugTest``: one specimen collected from a patient — when (UTC instant and site-local
  day), urine or oral fluid, observed or not, random or scheduled, who collected it, and
  the validity checks. Marked entered in error once, never deleted.
- ``DrugTestResult``: one result per analyte and method. A presumptive result (point of
  care or immunoassay) may be followed by a definitive one (laboratory confirmation,
  LC-MS/MS) that supersedes it; each (test, analyte, method) is recorded once. Results are
  append-only (database triggers).
- ``RandomTestDraw`` / ``RandomTestSelection``: the day's seeded random draw of patients to
  test at a site, recorded when it is made (on the day, never before) and never changed.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic.accounts.models import User
from clinic.db import Base, utcnow
from clinic.patients.models import Patient, str_enum

OTHER_ANALYTE_MAX = 60
REASON_MAX = 500
SEED_MAX = 64


class Specimen(StrEnum):
    URINE = "urine"
    ORAL_FLUID = "oral_fluid"

    @property
    def label(self) -> str:
        return {"urine": "Urine", "oral_fluid": "Oral fluid"}[self.value]


class TestReason(StrEnum):
    __test__ = False  # not a pytest class

    RANDOM = "random"
    SCHEDULED = "scheduled"

    @property
    def label(self) -> str:
        return {"random": "Random", "scheduled": "Scheduled"}[self.value]


class Analyte(StrEnum):
    OPIOIDS = "opioids"
    FENTANYL = "fentanyl"
    METHADONE = "methadone"
    BUPRENORPHINE = "buprenorphine"
    COCAINE = "cocaine"
    AMPHETAMINES = "amphetamines"
    BENZODIAZEPINES = "benzodiazepines"
    CANNABIS = "cannabis"
    ALCOHOL = "alcohol"
    OTHER = "other"

    @property
    def label(self) -> str:
        return {
            "opioids": "Opioids",
            "fentanyl": "Fentanyl",
            "methadone": "Methadone",
            "buprenorphine": "Buprenorphine",
            "cocaine": "Cocaine",
            "amphetamines": "Amphetamines",
            "benzodiazepines": "Benzodiazepines",
            "cannabis": "Cannabis",
            "alcohol": "Alcohol",
            "other": "Other",
        }[self.value]


class ResultValue(StrEnum):
    POSITIVE = "positive"
    NEGATIVE = "negative"
    NOT_TESTED = "not_tested"

    @property
    def label(self) -> str:
        return {"positive": "Positive", "negative": "Negative", "not_tested": "Not tested"}[
            self.value
        ]


class ResultMethod(StrEnum):
    PRESUMPTIVE = "presumptive"
    DEFINITIVE = "definitive"

    @property
    def label(self) -> str:
        return {
            "presumptive": "Presumptive (point of care / immunoassay)",
            "definitive": "Definitive (laboratory confirmation)",
        }[self.value]


class DrugTest(Base):
    """A specimen collected from a patient. ``collected_at`` is the UTC instant,
    ``collected_on`` its site-local day. ``temperature_in_range`` applies to urine only
    (NULL for oral fluid). ``selection_id``: the random draw that picked this test, if any."""

    __tablename__ = "drug_test"
    __table_args__ = (
        sa.CheckConstraint(
            "specimen = 'urine' OR temperature_in_range IS NULL", name="temperature_urine_only"
        ),
        sa.CheckConstraint(
            "(entered_in_error_at IS NULL) = (entered_in_error_by_id IS NULL)"
            " AND (entered_in_error_at IS NULL) = (entered_in_error_reason IS NULL)",
            name="error_mark_complete",
        ),
        sa.CheckConstraint(
            "entered_in_error_reason IS NULL OR length(entered_in_error_reason) > 0",
            name="error_reason_not_empty",
        ),
        sa.Index("ix_drug_test_patient_collected", "patient_id", "collected_at"),
        sa.Index("ix_drug_test_site_day", "site_id", "collected_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("site.id"))
    collected_at: Mapped[dt.datetime]
    collected_on: Mapped[dt.date]
    specimen: Mapped[Specimen] = mapped_column(str_enum(Specimen, "drug_test_specimen", 16))
    observed: Mapped[bool]
    reason: Mapped[TestReason] = mapped_column(str_enum(TestReason, "drug_test_reason", 16))
    collected_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    temperature_in_range: Mapped[bool | None]
    adulteration_suspected: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    selection_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("random_test_selection.id"), index=True
    )
    recorded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    entered_in_error_at: Mapped[dt.datetime | None]
    entered_in_error_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    entered_in_error_reason: Mapped[str | None] = mapped_column(sa.String(REASON_MAX))

    patient: Mapped[Patient] = relationship()
    collected_by: Mapped[User] = relationship(foreign_keys=[collected_by_id])
    recorded_by: Mapped[User] = relationship(foreign_keys=[recorded_by_id])
    results: Mapped[list[DrugTestResult]] = relationship(
        back_populates="test", order_by="DrugTestResult.id"
    )

    def __repr__(self) -> str:
        return f"<DrugTest {self.id} patient={self.patient_id}>"


class DrugTestResult(Base):
    """One analyte's result by one method. ``other_name`` names an analyte of kind
    ``other`` (and is empty for the listed analytes), so ``(test, analyte, other_name,
    method)`` is unique on both engines. A definitive result supersedes the presumptive
    one for the same analyte (``clinic.medications.drug_tests``)."""

    __tablename__ = "drug_test_result"
    __table_args__ = (
        sa.UniqueConstraint(
            "test_id",
            "analyte",
            "other_name",
            "method",
            name="uq_drug_test_result_test_analyte_method",
        ),
        sa.CheckConstraint(
            "(analyte = 'other') = (length(other_name) > 0)", name="other_name_for_other"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    test_id: Mapped[int] = mapped_column(sa.ForeignKey("drug_test.id"))
    analyte: Mapped[Analyte] = mapped_column(str_enum(Analyte, "drug_test_analyte", 20))
    other_name: Mapped[str] = mapped_column(
        sa.String(OTHER_ANALYTE_MAX), default="", server_default=""
    )
    result: Mapped[ResultValue] = mapped_column(str_enum(ResultValue, "drug_test_result_value", 16))
    method: Mapped[ResultMethod] = mapped_column(str_enum(ResultMethod, "drug_test_method", 16))
    entered_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    entered_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    test: Mapped[DrugTest] = relationship(back_populates="results")
    entered_by: Mapped[User] = relationship()

    @property
    def analyte_label(self) -> str:
        return self.other_name if self.analyte == Analyte.OTHER else Analyte(self.analyte).label


class RandomTestDraw(Base):
    """A site's random draw for one site-local day: made on that day (never before), with
    the seed recorded so the draw can be reproduced and checked. One per site and day."""

    __tablename__ = "random_test_draw"
    __table_args__ = (
        sa.UniqueConstraint("site_id", "draw_on", name="uq_random_test_draw_site_id_draw_on"),
        sa.CheckConstraint("length(seed) > 0", name="seed_not_empty"),
        sa.CheckConstraint("eligible_count >= 0", name="eligible_count_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("site.id"))
    draw_on: Mapped[dt.date]
    seed: Mapped[str] = mapped_column(sa.String(SEED_MAX))
    eligible_count: Mapped[int]
    drawn_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The user whose page made the draw; NULL when the scheduled command made it.
    drawn_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))

    selections: Mapped[list[RandomTestSelection]] = relationship(
        back_populates="draw", order_by="RandomTestSelection.id"
    )


class RandomTestSelection(Base):
    """A patient picked by a day's draw. ``probability``: the chance the draw gave this
    patient (per mille), kept to show the draw was fair."""

    __tablename__ = "random_test_selection"
    __table_args__ = (
        sa.UniqueConstraint(
            "draw_id", "patient_id", name="uq_random_test_selection_draw_id_patient_id"
        ),
        sa.CheckConstraint("probability BETWEEN 1 AND 1000", name="probability_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    draw_id: Mapped[int] = mapped_column(sa.ForeignKey("random_test_draw.id"))
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"), index=True)
    probability: Mapped[int]

    draw: Mapped[RandomTestDraw] = relationship(back_populates="selections")
    patient: Mapped[Patient] = relationship()
