"""Dispensing take-home bottles (clinic.medications.take_home_bottles): one ledger row per
bottle under an approved decision, the cap by time in treatment with clinic-closed days
outside it, uncovered days, bottles already out, reversal, the lock against a double
dispensing, the label sheet, and the first-day methadone total."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine

from clinic.accounts.models import User
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications import dose_day, holds, ledger, take_home_bottles
from clinic.medications.models import DoseEntry, DoseKind
from clinic.medications.take_home_models import TakeHomeDispensing
from clinic.patients.models import Patient
from clinic.sites.models import Site, SiteClosure
from clinic.sites.time import site_today
from tests.conftest import ON_POSTGRES
from tests.routes_bottles import make_decision

CHICAGO = ZoneInfo("America/Chicago")
WEDNESDAY = dt.date(2026, 3, 18)  # the site is closed on Sundays ("7")


@pytest.fixture(autouse=True)
def site_noon():
    with time_machine.travel(dt.datetime(2026, 3, 18, 17, 0, tzinfo=dt.UTC), tick=True):
        yield


class World:
    def __init__(self, ids: dict[str, int]) -> None:
        self.ids = ids

    @property
    def patient(self) -> Patient:
        return db.session.get(Patient, self.ids["patient"])

    @property
    def nurse(self) -> User:
        return db.session.get(User, self.ids["nurse"])

    @property
    def clinician(self) -> User:
        return db.session.get(User, self.ids["clinician"])

    @property
    def today(self) -> dt.date:
        return site_today(self.patient.site)

    def day(self, n: int) -> dt.date:
        return self.today + dt.timedelta(days=n)

    def decide(self, start: int = 1, days: int | None = 14, **kwargs):
        decision = make_decision(
            self.ids["patient"],
            start_on=self.day(start),
            days=days,
            user_id=self.ids["nurse"],
            **kwargs,
        )
        db.session.commit()
        return decision

    def dispense(self, *days: int, **kwargs) -> TakeHomeDispensing:
        dispensing = take_home_bottles.dispense_take_homes(
            self.patient,
            actor=kwargs.pop("actor", self.nurse),
            take_on_dates=[self.day(n) for n in days],
            **kwargs,
        )
        db.session.commit()
        return dispensing

    def refusal(self, *days: int, **kwargs) -> DomainError:
        with pytest.raises(DomainError) as refused:
            take_home_bottles.dispense_take_homes(
                self.patient,
                actor=kwargs.pop("actor", self.nurse),
                take_on_dates=[self.day(n) for n in days],
                **kwargs,
            )
        db.session.rollback()
        return refused.value


@pytest.fixture
def make_world(app, site, make_user, make_patient, make_program, make_enrollment, make_order):
    """A methadone patient ``in_treatment`` days after admission (an order from then), a
    dispenser and a clinician without the flag."""

    def make(*, in_treatment: int = 40, **order_fields) -> World:
        with app.app_context():
            today = site_today(db.session.get(Site, site))
        admitted = today - dt.timedelta(days=in_treatment)
        prescriber = make_user("clinician", is_prescriber=True)
        ids = {
            "prescriber": prescriber,
            "nurse": make_user("clinician", may_dispense=True),
            "clinician": make_user("clinician"),
            "patient": make_patient(),
        }
        ids["enrollment"] = make_enrollment(
            ids["patient"], make_program(f"OTP {uuid.uuid4().hex[:6]}"), admitted_on=admitted
        )
        fields = {
            "dose_mg": "60",
            "start_on": admitted,
            "justification": "Tolerance documented by the prescriber.",
            **order_fields,
        }
        ids["order"] = make_order(ids["enrollment"], prescriber, **fields)
        return World(ids)

    return make


@pytest.fixture
def world(app, make_world):
    made = make_world()
    with app.test_request_context():
        yield made


def bottles(patient_id: int) -> list[DoseEntry]:
    return list(
        db.session.scalars(
            sa.select(DoseEntry)
            .where(DoseEntry.patient_id == patient_id, DoseEntry.kind == DoseKind.TAKE_HOME)
            .order_by(DoseEntry.id)
        )
    )


# --- dispensing --------------------------------------------------------------------------


def test_a_dispensing_makes_one_ledger_row_per_bottle_with_the_1304_24_fields(world):
    assert world.today == WEDNESDAY
    world.decide()
    dispensing = world.dispense(1, 2, 3)
    rows = bottles(world.ids["patient"])
    assert dispensing.bottle_count == 3
    assert [r.bottle_number for r in rows] == [1, 2, 3]
    assert [r.take_on for r in rows] == [world.day(1), world.day(2), world.day(3)]
    for r in rows:
        assert r.amount_mg == Decimal("60")
        assert (r.substance, r.strength, r.dosage_form.value) == (
            "methadone",
            "10 mg/mL",
            "oral_liquid",
        )
        assert r.dispensed_on == world.today
        assert r.dispenser_id == world.ids["nurse"]
        assert r.dispensing_id == dispensing.id
        assert r.slot is None


def test_a_split_order_s_bottle_holds_the_day_s_total(app, make_world):
    made = make_world(
        dose_mg="80",
        schedule="split",
        split_first_mg="50",
        split_second_mg="30",
        justification="Tolerance documented by the prescriber.",
    )
    with app.test_request_context():
        made.decide()
        made.dispense(1)
        assert bottles(made.ids["patient"])[0].amount_mg == Decimal("80")


def test_a_count_from_tomorrow_dispenses_the_next_days(world):
    world.decide()
    dispensing = take_home_bottles.dispense_take_homes(world.patient, actor=world.nurse, count=2)
    db.session.commit()
    assert [b.take_on for b in take_home_bottles.dispensing_bottles(dispensing)] == [
        world.day(1),
        world.day(2),
    ]


def test_only_a_dispenser_dispenses(world):
    world.decide()
    assert world.refusal(1, actor=world.clinician).message == ledger.NOT_A_DISPENSER_MESSAGE


@pytest.mark.parametrize(
    ("days", "message"),
    [
        ((), take_home_bottles.CHOOSE_DAYS_MESSAGE),
        ((0,), take_home_bottles.DAY_NOT_AHEAD_MESSAGE),
        ((-1, 1), take_home_bottles.DAY_NOT_AHEAD_MESSAGE),
        ((29,), take_home_bottles.DAY_TOO_FAR_MESSAGE),
    ],
)
def test_take_on_days_must_be_ahead_and_within_28_days(world, days, message):
    world.decide(start=0, days=28)
    refused = world.refusal(*days)
    assert refused.message == message
    assert refused.field == "take_on"


def test_a_day_no_decision_covers_is_refused(world):
    world.decide(start=1, days=3)
    refused = world.refusal(1, 2, 3, 4)
    assert refused.message == take_home_bottles.NOT_COVERED_MESSAGE.format(
        day=take_home_bottles.format_day(world.day(4))
    )
    assert bottles(world.ids["patient"]) == []  # nothing half-saved


def test_an_unapproved_or_ended_decision_covers_nothing(world):
    make_decision(
        world.ids["patient"],
        start_on=world.day(1),
        days=5,
        user_id=world.ids["nurse"],
        approved=False,
    )
    db.session.commit()
    assert "no approved take-home decision" in world.refusal(1).message


def test_a_weekly_schedule_covers_its_weekdays_only(world):
    world.decide(start=1, days=None, weekdays="67")  # Saturday and Sunday
    world.dispense(3, 4)  # Sat 21, Sun 22 March
    assert "no approved" in world.refusal(2).message  # Friday


def test_no_bottles_under_a_hold(world):
    world.decide()
    hold = holds.place_hold(world.patient, actor=world.clinician, reason="Review", until_on=None)
    db.session.commit()
    assert hold.id is not None
    assert world.refusal(1).message == ledger.ON_HOLD_MESSAGE


def test_a_day_with_a_bottle_already_out_is_refused(world):
    world.decide()
    world.dispense(1, 2)
    refused = world.refusal(2, 3)
    assert "already has a bottle" in refused.message
    assert len(bottles(world.ids["patient"])) == 2


def test_the_page_count_of_bottles_out_detects_a_dispensing_meanwhile(world):
    world.decide()
    world.dispense(1)
    assert world.refusal(2, seen_in_hands=0).message == take_home_bottles.RACE_MESSAGE
    world.dispense(2, seen_in_hands=1)


# --- the cap (42 CFR 8.12(i)(3)) -----------------------------------------------------------


def test_day_12_allows_seven_days_and_refuses_eight_with_the_cap(app, make_world):
    made = make_world(in_treatment=12)
    with app.test_request_context():
        made.decide(start=1, days=14)
        # Wed 18 March: days 1..8 are Thu 19 .. Thu 26, Sunday 22 closed (not counted).
        refused = made.refusal(*range(1, 10))
        assert "More bottles than the decision allows" in refused.message
        assert "is 7" in refused.message and "days 0-14" in refused.message
        made.dispense(*range(1, 9))  # 8 bottles, 7 counted: Sunday is outside the cap
        assert len(bottles(made.ids["patient"])) == 8


def test_bottles_already_in_hand_count_towards_the_cap(app, make_world):
    made = make_world(in_treatment=12)
    with app.test_request_context():
        made.decide(start=1, days=14)
        made.dispense(1, 2, 3, 4, 5)  # Thu..Mon, Sunday closed: 4 counted
        assert "is 7" in made.refusal(6, 7, 8, 9).message  # 8 counted
        made.dispense(6, 7, 8)  # 7 counted


def test_a_holiday_is_outside_the_cap(app, make_world):
    made = make_world(in_treatment=12)
    with app.test_request_context():
        db.session.add(
            SiteClosure(
                site_id=made.patient.site_id,
                closed_on=made.day(2),
                name="Holiday",
                created_by_id=made.ids["nurse"],
            )
        )
        db.session.commit()
        made.decide(start=1, days=14)
        made.dispense(*range(1, 10))  # 9 bottles: the holiday and Sunday not counted


def test_day_15_allows_fourteen(app, make_world):
    made = make_world(in_treatment=15)
    with app.test_request_context():
        made.decide(start=1, days=28)
        assert "is 14" in made.refusal(*range(1, 18)).message  # 17 days, 2 Sundays: 15
        made.dispense(*range(1, 17))  # 16 days, 2 Sundays: 14


# --- reversal ------------------------------------------------------------------------------


def test_a_reversed_bottle_no_longer_counts_and_its_day_may_be_dispensed_again(world):
    world.decide()
    world.dispense(1, 2)
    bottle = bottles(world.ids["patient"])[0]
    assert bottle in ledger.reversible_doses(world.patient)
    with pytest.raises(DomainError) as no_reason:
        ledger.record_reversal(bottle, actor=world.nurse, reason=" ")
    assert no_reason.value.message == ledger.REVERSAL_REASON_MESSAGE
    db.session.rollback()
    ledger.record_reversal(bottle, actor=world.nurse, reason="Wrong day dispensed")
    db.session.commit()
    in_hands = take_home_bottles.bottles_in_hands(world.ids["patient"], world.today)
    assert [b.take_on for b in in_hands] == [world.day(2)]
    world.dispense(1)
    labels = take_home_bottles.labels(db.session.get(TakeHomeDispensing, bottle.dispensing_id))
    assert [label.reversed for label in labels] == [True, False]


# --- the first-day total (42 CFR 8.12(h)(3)(ii)) ------------------------------------------


def test_a_bottle_dispensed_on_the_first_methadone_day_counts_in_the_first_day_total(
    app, make_world
):
    made = make_world(in_treatment=0, dose_mg="30")
    with app.test_request_context():
        made.decide(start=1, days=3)
        made.dispense(1)
        ledger.record_dose(made.patient, actor=made.nurse, amount_mg="30")
        db.session.commit()
        assert dose_day.first_day_total_mg(made.patient, made.today) == Decimal("60")


# --- the lock ------------------------------------------------------------------------------


@pytest.mark.skipif(not ON_POSTGRES, reason="SQLite locks the whole database: no row locks")
def test_a_second_dispensing_waits_for_the_first(app, make_world):
    """The order row is locked by a dispensing until its commit: a second one (another
    nurse) waits for it, then sees its bottles — here it runs out of its lock timeout."""
    made = make_world()
    with app.test_request_context():
        made.decide()
        take_home_bottles.dispense_take_homes(
            made.patient, actor=made.nurse, take_on_dates=[made.day(1)]
        )  # not committed: in progress
        other = sa.create_engine(db.engine.url)
        try:
            with other.connect() as conn:
                conn.execute(sa.text("SET lock_timeout = '300ms'"))
                with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
                    conn.execute(
                        sa.text("SELECT id FROM medication_order WHERE id = :id FOR UPDATE"),
                        {"id": made.ids["order"]},
                    )
        finally:
            other.dispose()
        db.session.commit()
        assert len(bottles(made.ids["patient"])) == 1


# --- append-only --------------------------------------------------------------------------


def test_a_dispensing_is_never_changed_or_deleted(world):
    world.decide()
    dispensing = world.dispense(1)
    for statement in (
        "UPDATE take_home_dispensing SET bottle_count = 2",
        "DELETE FROM take_home_dispensing",
    ):
        with pytest.raises(sa.exc.IntegrityError, match="take_home_dispensing_append_only"):
            db.session.execute(sa.text(statement))
        db.session.rollback()
    assert db.session.get(TakeHomeDispensing, dispensing.id).bottle_count == 1


# --- the demo -------------------------------------------------------------------------------


def test_the_demo_dispenses_checks_a_missing_bottle_and_counts_a_call_back_once(world):
    from clinic.medications import take_home_bottle_demo
    from clinic.medications.take_home_models import BottleReturn, CallBack, DiversionIncident

    site = world.patient.site
    assert "No approved take-home decision" in take_home_bottle_demo.seed(
        site, nurse=world.nurse, clinician=world.clinician
    )
    world.decide(start=-5, days=20)
    message = take_home_bottle_demo.seed(site, nurse=world.nurse, clinician=world.clinician)
    db.session.commit()
    assert "missing bottle" in message and "call-back" in message
    again = take_home_bottle_demo.seed(site, nurse=world.nurse, clinician=world.clinician)
    assert "nothing changed" in again

    def total(model) -> int:
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))

    assert (total(TakeHomeDispensing), total(BottleReturn), total(DiversionIncident)) == (2, 2, 1)
    assert db.session.scalars(sa.select(CallBack)).one().outcome.value == "complete"


# --- more refusals, buprenorphine ----------------------------------------------------------


def test_buprenorphine_is_not_capped(app, make_world):
    made = make_world(
        in_treatment=12,
        medication="buprenorphine",
        product_form="sublingual_tablet",
        strength="8 mg",
        dose_mg="16",
    )
    with app.test_request_context():
        made.decide(start=1, days=20, medication="buprenorphine")
        dispensing = made.dispense(*range(1, 21))
        assert dispensing.bottle_count == 20
        rows = bottles(made.ids["patient"])
        assert {r.substance for r in rows} == {"buprenorphine"}
        assert take_home_bottles.warnings_for(rows[0].medication)[2].startswith(
            "Contains buprenorphine"
        )


def test_a_discharged_enrollment_gets_no_bottles(world):
    from clinic.patients import admissions
    from clinic.patients.models import Enrollment

    world.decide()
    enrollment = db.session.get(Enrollment, world.ids["enrollment"])
    admissions.discharge(
        enrollment,
        actor=world.clinician,
        discharged_on=world.today,
        reason=1,
        expected_version=enrollment.version,
    )
    db.session.commit()
    assert world.refusal(1).message == ledger.DISCHARGED_MESSAGE


def test_no_bottles_without_an_order_in_force_today(app, make_world):
    made = make_world(start_on=WEDNESDAY + dt.timedelta(days=1))  # the order starts tomorrow
    with app.test_request_context():
        made.decide()
        assert made.refusal(1).message == ledger.NO_ORDER_MESSAGE
        assert take_home_bottles.dispensing_plan(made.patient).refusal == ledger.NO_ORDER_MESSAGE


def test_the_plan_shows_the_covered_days_the_cap_and_the_days_in_hand(world):
    world.decide()
    world.dispense(1, 2)
    plan = take_home_bottles.dispensing_plan(world.patient)
    assert plan.order.id == world.ids["order"] and len(plan.days) == 14
    assert (plan.cap, plan.treatment_day, plan.counted_in_hands) == (28, 40, 2)
    assert [d.may_choose for d in plan.days[:3]] == [False, False, True]
    assert [d.closed for d in plan.days[:5]] == [False, False, False, True, False]
