"""The accessibility tours of the take-home and drug-test pages (issue 13): the records they
need (``take_home_clinic``, seeded through the services) and the pages each role meets,
walked by the tours of tests/browser/test_a11y_browser.py (which declares them in TOURS,
imports the fixture and defines the ``medication_clinic`` fixture it builds on)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


@pytest.fixture(name="take_home_clinic")
def take_home_clinic_fixture(app, site, make_user, medication_clinic):
    """On top of ``medication_clinic``: Ida, an administrator of both sites; the MAIN site
    open every day (so today has a random draw) with a holiday a month ahead; Ana Torres
    with a drug test (a presumptive result), a take-home decision approved from tomorrow
    (4 days), two bottles dispensed, a call-back awaiting its outcome, a later decision
    awaiting approval; Rita Paz with a bottle due back; today's draw."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from clinic.accounts.models import User
    from clinic.extensions import db
    from clinic.medications import call_backs, drug_tests, take_home_bottles
    from clinic.medications import take_home_decisions as decisions
    from clinic.medications.drug_test_draw import draw_for_today
    from clinic.medications.models import MedicationOrder
    from clinic.medications.take_home_models import CRITERIA
    from clinic.patients.models import Patient
    from clinic.sites import calendar
    from clinic.sites.models import Site
    from clinic.sites.time import site_today

    med = medication_clinic
    p = med.patients
    make_user("admin", "ida.admin", full_name="Ida Admin", site_ids=[site, med.clinic.east])
    with app.test_request_context():
        admin = db.session.get(User, med.clinic.admin)
        doctor = db.session.get(User, med.prescriber)
        nurse = db.session.get(User, med.nurse)
        ana = db.session.get(Patient, p.ana)
        main = ana.site
        today = site_today(main)
        calendar.set_closed_weekdays(main, actor=admin, weekdays="")
        calendar.add_holiday(
            main, actor=admin, closed_on=today + dt.timedelta(days=30), name="Founders' Day"
        )
        db.session.commit()
        draw = draw_for_today(db.session.get(Site, main.id), actor=admin)
        db.session.commit()
        test = drug_tests.record_test(
            ana,
            actor=nurse,
            collected_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
            specimen="urine",
            observed=True,
            reason="scheduled",
            temperature_in_range=True,
            adulteration_suspected=False,
        )
        drug_tests.record_results(
            test, [drug_tests.ResultRow("opioids", "negative", "presumptive")], actor=nurse
        )
        criteria = {n: decisions.Criterion(True, f"{label}: documented.") for n, label in CRITERIA}

        def decide(patient_id: int, order_id: int, start: int, days: int, **fields):
            when = fields.pop("now", None)
            return decisions.record_decision(
                db.session.get(Patient, patient_id),
                actor=doctor if fields.get("approve") else nurse,
                order=db.session.get(MedicationOrder, order_id),
                schedule_kind="days",
                start_on=today + dt.timedelta(days=start),
                days=days,
                criteria=criteria,
                storage_education_on=today - dt.timedelta(days=3),
                now=when,
                **fields,
            )

        # Rita Paz was given a bottle three days ago for the day after: it is due back.
        three_days_ago = dt.datetime.combine(
            today - dt.timedelta(days=3), dt.time(12), ZoneInfo(main.timezone)
        )
        decide(p.paz, med.orders.paz, -2, 1, approve=True, now=three_days_ago)
        db.session.commit()
        take_home_bottles.dispense_take_homes(
            db.session.get(Patient, p.paz), actor=nurse, count=1, now=three_days_ago
        )
        # Ana: four days approved from tomorrow, two bottles given; a later run awaits
        # approval.
        approved = decide(p.ana, med.orders.ana, 1, 4, approve=True)
        pending = decide(p.ana, med.orders.ana, 10, 2)
        db.session.commit()
        dispensing = take_home_bottles.dispense_take_homes(ana, actor=nurse, count=2)
        call_back = call_backs.start_call_back(ana, actor=nurse)
        db.session.commit()
        return SimpleNamespace(
            med=med,
            main=main.id,
            test=test.id,
            decision=approved.id,
            pending=pending.id,
            dispensing=dispensing.id,
            call_back=call_back.id,
            draw=draw.id,
        )


def reading_pages(tour, th) -> None:
    """The take-home and drug-test pages a reader (clinician, admin) meets, with rows and
    empty."""
    p = th.med.patients
    other = th.med.clinic.other_ana
    tour.visit("/take-homes/review-list", "take-home review list, a decision to approve")
    tour.visit(f"/take-homes/patients/{p.ana}", "take-homes of a patient, one approved")
    tour.visit(f"/take-homes/patients/{other}", "take-homes of a patient, none")
    tour.visit(f"/take-homes/decisions/{th.decision}", "an approved decision")
    tour.visit(f"/take-homes/bottles/patients/{p.ana}", "bottles of a patient, two in hand")
    tour.visit(f"/take-homes/bottles/patients/{other}", "bottles of a patient, none")
    tour.visit(f"/take-homes/bottles/dispensings/{th.dispensing}/labels", "bottle labels")
    tour.visit(f"/drug-tests/patients/{p.ana}", "drug tests of a patient, one")
    tour.visit(f"/drug-tests/patients/{other}", "drug tests of a patient, none")
    tour.visit(f"/drug-tests/{th.test}", "a drug test and its result")


def due_pages(tour, th) -> None:
    """Who is due a test or a call-back and today's draw: every role."""
    tour.visit("/drug-tests/schedule/", "drug-test schedule worklist")
    tour.visit("/drug-tests/schedule/today", "today's random draws")
    tour.visit(f"/drug-tests/schedule/draws/{th.draw}", "today's draw at the site")
    tour.visit("/call-backs/", "call-backs, one open")


def nurse_pages(tour, th) -> None:
    """A dispensing clinician: record a test, its results, mark it in error; dispense, check
    returns, call a patient back and record the outcome; each form with its errors."""
    p = th.med.patients
    reading_pages(tour, th)
    due_pages(tour, th)
    tour.visit(f"/take-homes/patients/{p.sam}", "take-homes, the decision form")
    tour.submit("Record the decision", "decision with errors shown")
    tour.visit(f"/take-homes/decisions/{th.pending}", "a decision awaiting approval")
    tour.visit(f"/take-homes/decisions/{th.decision}", "a decision in force")
    tour.submit("Record the review", "review with errors shown")
    tour.visit(f"/drug-tests/patients/{p.ana}/new", "drug-test form")
    tour.submit(None, "drug test with errors shown")
    tour.visit(f"/drug-tests/{th.test}/results", "results form")
    tour.submit(None, "results with errors shown")
    tour.visit(f"/drug-tests/{th.test}/entered-in-error", "entered-in-error form")
    tour.submit(None, "entered in error with errors shown")
    tour.visit(f"/take-homes/bottles/patients/{p.ana}/dispense", "dispense form, two in hand")
    tour.submit("Dispense the bottles", "dispense with errors shown")
    tour.visit(f"/take-homes/bottles/patients/{p.sam}/dispense", "dispense: no decision")
    tour.visit(f"/take-homes/bottles/patients/{p.paz}/returns", "returns, a bottle due back")
    tour.submit("Record the returns", "returns with errors shown")
    tour.visit(f"/take-homes/bottles/patients/{p.ana}/returns", "returns, nothing due back")
    tour.visit(f"/call-backs/patients/{p.paz}/start", "call-back of a patient without bottles")
    tour.visit(f"/call-backs/{th.call_back}/outcome", "call-back outcome form")
    tour.submit(None, "call-back outcome with errors shown")
    tour.visit(f"/patients/{p.ana}", "chart with the take-home and drug-test sections")


def prescriber_pages(tour, th) -> None:
    """A prescriber: a decision awaiting approval, with the approve and decline forms."""
    tour.visit(f"/take-homes/decisions/{th.pending}", "approve or decline a decision")
    tour.submit("Decline", "decline with errors shown")


def admin_pages(tour, th) -> None:
    """An administrator of two sites: the site calendars (a form with errors) and the
    reading pages."""
    tour.visit("/admin/sites/calendar", "site calendars")
    tour.visit(f"/admin/sites/{th.main}/calendar", "a site's calendar with a holiday")
    tour.submit("Add the holiday", "holiday with errors shown")
    tour.visit(f"/admin/sites/{th.med.clinic.east}/calendar", "a site's calendar, no holiday")
    reading_pages(tour, th)
    due_pages(tour, th)
    tour.visit(f"/drug-tests/patients/{th.med.patients.ana}/new", "refused (403)", status=403)
