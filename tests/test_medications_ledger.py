"""The dose ledger in the database: append-only (triggers on both engines), its CHECKs,
the dose slot that lets only one of two racing doses in, a row reversed at most once."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from clinic.extensions import db
from clinic.medications.models import DoseEntry, DoseKind
from clinic.web import constraint_name
from tests.conftest import ON_POSTGRES

DAY = dt.date(2026, 3, 2)


@pytest.fixture
def ledger(app, site, make_user, make_patient, make_program, make_enrollment, make_order):
    """A methadone order and the ids a ledger row needs; the test runs in an app context."""
    prescriber = make_user("clinician", is_prescriber=True)
    nurse = make_user("clinician", may_dispense=True)
    patient = make_patient()
    enrollment = make_enrollment(patient, make_program())
    order = make_order(enrollment, prescriber, dose_mg="40")
    with app.app_context():
        yield {"site": site, "nurse": nurse, "patient": patient, "order": order}


def row(ids, **values) -> DoseEntry:
    fields = {
        "kind": DoseKind.OBSERVED,
        "patient_id": ids["patient"],
        "site_id": ids["site"],
        "order_id": ids["order"],
        "medication": "methadone",
        "substance": "methadone",
        "strength": "10 mg/mL",
        "dosage_form": "oral_liquid",
        "dispensed_on": DAY,
        "dispensed_at": dt.datetime(2026, 3, 2, 14, 0, tzinfo=dt.UTC),
        "amount_mg": Decimal("40"),
        "slot": 1,
        "dispenser_id": ids["nurse"],
    }
    fields.update(values)
    return DoseEntry(**fields)


def refused_by(entry: DoseEntry) -> str | None:
    """Insert ``entry``; the name of the constraint that refused it (None: saved)."""
    db.session.add(entry)
    try:
        db.session.flush()
    except sa.exc.IntegrityError as error:
        db.session.rollback()
        return constraint_name(error)
    db.session.commit()
    return None


def saved(ids, **values) -> int:
    entry = row(ids, **values)
    assert refused_by(entry) is None
    return entry.id


@pytest.mark.parametrize(
    "statement", ["UPDATE dose_entry SET amount_mg = 1", "DELETE FROM dose_entry"]
)
def test_sql_update_and_delete_of_the_ledger_are_refused(ledger, statement):
    entry_id = saved(ledger)
    with pytest.raises(sa.exc.IntegrityError) as refused:
        db.session.execute(sa.text(statement))
    assert constraint_name(refused.value) == "dose_entry_append_only"
    db.session.rollback()
    assert db.session.get(DoseEntry, entry_id).amount_mg == Decimal("40")


def test_the_orm_cannot_edit_a_ledger_row(ledger):
    entry = db.session.get(DoseEntry, saved(ledger))
    entry.amount_mg = Decimal("45")
    with pytest.raises(sa.exc.IntegrityError):
        db.session.flush()
    db.session.rollback()


@pytest.mark.skipif(not ON_POSTGRES, reason="TRUNCATE is PostgreSQL's")
def test_truncate_of_the_ledger_is_refused_on_postgresql(ledger):
    saved(ledger)
    # CASCADE: past the foreign keys of the tables that refer to the ledger (take-home
    # dispensings and bottle checks), to the append-only triggers themselves.
    with pytest.raises(sa.exc.IntegrityError, match="append_only"):
        db.session.execute(sa.text("TRUNCATE dose_entry CASCADE"))
    db.session.rollback()


@pytest.mark.parametrize(
    ("values", "constraint"),
    [
        # Both CHECKs refuse these; which one an engine reports first depends on the table's
        # constraint order (SQLite rebuilds the table when a migration adds constraints).
        (
            {"amount_mg": Decimal("0")},
            ("ck_dose_entry_amount_given", "ck_dose_entry_amount_positive"),
        ),
        (
            {"amount_mg": Decimal("-5")},
            ("ck_dose_entry_amount_given", "ck_dose_entry_amount_positive"),
        ),
        ({"amount_mg": None}, "ck_dose_entry_amount_given"),
        ({"slot": None}, "ck_dose_entry_slot_for_given"),
        ({"slot": 0}, "ck_dose_entry_slot_positive"),
        (
            {"kind": DoseKind.MISSED, "slot": None, "reason": "no show"},
            "ck_dose_entry_no_amount_not_given",
        ),
        (
            {"kind": DoseKind.HELD, "slot": None, "amount_mg": None},
            "ck_dose_entry_reason_given",
        ),
        ({"kind": DoseKind.INJECTION}, "ck_dose_entry_injection_details"),
        ({"lot": "L1", "injection_site": "abdomen_left"}, "ck_dose_entry_injection_details"),
        ({"take_home_mg": Decimal("40")}, "ck_dose_entry_take_home_complete"),
    ],
)
def test_checks_refuse_incomplete_rows(ledger, values, constraint):
    expected = constraint if isinstance(constraint, tuple) else (constraint,)
    assert refused_by(row(ledger, **values)) in expected


def test_a_reversal_needs_the_row_it_reverses_and_a_reason(ledger):
    original = saved(ledger)
    reversal = {"kind": DoseKind.REVERSAL, "slot": None}
    assert refused_by(row(ledger, **reversal, reason="wrong patient")) == (
        "ck_dose_entry_reversal_reverses"
    )
    assert refused_by(row(ledger, **reversal, reverses_id=original)) == (
        "ck_dose_entry_reason_given"
    )
    assert refused_by(row(ledger, **reversal, reverses_id=original, reason="")) == (
        "ck_dose_entry_reason_given"
    )
    assert refused_by(row(ledger, **reversal, reverses_id=original, reason="wrong")) is None


def test_a_row_is_reversed_at_most_once(ledger):
    original = saved(ledger)
    reversal = {"kind": DoseKind.REVERSAL, "slot": None, "reverses_id": original}
    saved(ledger, **reversal, reason="wrong amount")
    assert refused_by(row(ledger, **reversal, reason="again")) == "uq_dose_entry_reverses_id"


def test_two_doses_in_the_same_slot_of_a_day_cannot_both_be_saved(ledger):
    saved(ledger)
    assert refused_by(row(ledger)) == "uq_dose_entry_patient_day_slot"
    # The next slot, another day, or a row without a slot (held) are fine.
    saved(ledger, slot=2)
    saved(ledger, dispensed_on=DAY + dt.timedelta(days=1))
    saved(ledger, kind=DoseKind.HELD, slot=None, amount_mg=None, reason="intoxicated")
    saved(ledger, kind=DoseKind.HELD, slot=None, amount_mg=None, reason="again")


def test_a_take_home_amount_comes_with_its_form(ledger):
    saved(ledger, take_home_mg=Decimal("80"), take_home_form="oral liquid, 2 bottles")
    assert refused_by(row(ledger, slot=2, take_home_mg=Decimal("0"), take_home_form="x")) == (
        "ck_dose_entry_take_home_amount"
    )
