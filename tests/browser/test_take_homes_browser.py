"""Take-homes on a Wednesday (SCENARIOS.md, issue 13) in Chromium.

A clinician opens the take-home review of a patient 35 days into treatment (random tests
negative, attendance 97 %), sees the evidence beside the six criteria and asks — from the
keyboard only — for weekend take-homes; a prescriber approves it, then records and
approves at once a week's supply for a family trip. On Friday a nurse follows
"Take-home bottles" from the dosing screen, dispenses, prints the label sheet; at the next
visit she records the returns with one bottle missing: the incident is on the chart and
the decision on the review list. A patient on day 12 asking for 10 days is refused with
the cap beside the field, the rest of the form kept. A nurse records the random test of
today's draw; staff see "Tests due" and "Call-backs", never a result. An administrator
sets the label details and a holiday on the site calendar. Every page passes axe with no
violation of any impact.
"""

# ruff: noqa: F811 (the fixtures imported from tests.take_home_helpers)
from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa
import time_machine
from playwright.sync_api import expect

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.medications import drug_test_draw, drug_tests, ledger
from clinic.medications.drug_test_models import DrugTest, DrugTestResult
from clinic.medications.drug_tests import ResultRow
from clinic.medications.take_home_models import (
    CRITERIA,
    BottleReturn,
    DiversionIncident,
    TakeHomeDecision,
)
from clinic.sites.models import Site
from tests.browser.test_patients_browser import load, sign_in, sign_out
from tests.take_home_helpers import (  # noqa: F401 (fixtures)
    CHICAGO,
    NOW,
    TODAY,
    make_world,
    site_noon,
)

SATURDAY = TODAY + dt.timedelta(days=3)  # TODAY is a Wednesday
TRIP = TODAY + dt.timedelta(days=5)  # the Monday after: 7 days, to the next Sunday
FRIDAY_NOON = NOW + dt.timedelta(days=2)
NEXT_VISIT_NOON = NOW + dt.timedelta(days=12)  # the Monday after the trip
DOSE_MG = "40"


@pytest.fixture
def ui(ui):
    """Every page of issue 13 passes axe with no violation of any impact."""
    plain = ui.check
    ui.check = lambda *, all_impacts=True: plain(all_impacts=True)
    return ui


def at(day: dt.date, hour: int = 9) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), CHICAGO).astimezone(dt.UTC)


def human(day: dt.date) -> str:
    return f"{day:%d %b %Y}"


@pytest.fixture
def wednesday(app, site, site_noon, make_world, make_user, username_of):
    """Day 35 of the patient's treatment at MAIN (closed on Sundays): observed doses on
    every open day but one, a random urine test three days ago (negative, methadone
    positive); a nurse (clinician who may dispense)."""
    made = make_world(day=35)
    nurse = make_user("clinician", may_dispense=True, full_name="Nora Nurse")
    made.ids["nurse"] = nurse
    with app.test_request_context():
        actor = db.session.get(User, nurse)
        skipped = False
        for n in range(35, 0, -1):
            day = TODAY - dt.timedelta(days=n)
            if day.isoweekday() == 7:
                continue  # closed
            if n == 20 and not skipped:
                skipped = True  # one open day missed
                continue
            ledger.record_dose(made.patient, actor=actor, amount_mg=DOSE_MG, now=at(day))
            db.session.commit()
        test = drug_tests.record_test(
            made.patient,
            actor=made.user("clinician"),
            collected_at=at(TODAY - dt.timedelta(days=3)),
            specimen="urine",
            observed=True,
            reason="random",
            temperature_in_range=True,
            adulteration_suspected=False,
        )
        drug_tests.record_results(
            test,
            [
                ResultRow("fentanyl", "negative", "presumptive"),
                ResultRow("opioids", "negative", "presumptive"),
                ResultRow("cocaine", "negative", "presumptive"),
                ResultRow("methadone", "positive", "presumptive"),
            ],
            actor=made.user("clinician"),
        )
        db.session.commit()
    made.usernames = {key: username_of(made.ids[key]) for key in ("clinician", "prescriber")}
    made.usernames["nurse"] = username_of(nurse)
    made.usernames["staff"] = username_of(made.ids["staff"])
    made.usernames["admin"] = username_of(made.ids["admin"])
    made.patient_name = "Smith, Jo"
    return made


def press(ui, locator) -> None:
    """Focus ``locator`` and press Enter: the page it loads is checked with axe."""
    locator.focus()
    load(ui, lambda: ui.page.keyboard.press("Enter"))
    ui.check()


def type_into(page, locator, text: str) -> None:
    locator.focus()
    page.keyboard.type(text)


def answer_criteria(page, *, keyboard: bool) -> None:
    for _name, label in CRITERIA:
        group = page.get_by_role("group", name=label)
        met = group.get_by_role("checkbox", name="Met")
        note = group.get_by_role("textbox")
        if keyboard:
            met.focus()
            page.keyboard.press("Space")
            type_into(page, note, f"{label}: checked today.")
        else:
            met.check()
            note.fill(f"{label}: checked today.")


def test_wednesday_take_homes_bottles_and_returns(ui, app, wednesday):
    made = wednesday
    patient_id = made.ids["patient"]

    # The administrator keeps the site's calendar: the label details and a holiday.
    page = sign_in(ui, made.usernames["admin"])
    press(ui, page.get_by_role("link", name="Site calendar"))
    expect(page.get_by_role("heading", name="Main Street Clinic (MAIN): calendar")).to_be_visible()
    page.get_by_label("Address (printed on bottle labels)").fill(
        "12 Main Street, Springfield, IL 62701"
    )
    page.get_by_label("Phone (printed on bottle labels)").fill("217-555-0123")
    press(ui, page.get_by_role("button", name="Save label details"))
    page.get_by_label("Day", exact=True).fill("2026-04-03")
    page.get_by_label("Name", exact=True).fill("Good Friday")
    press(ui, page.get_by_role("button", name="Add the holiday"))
    expect(page.get_by_test_id("holiday-table")).to_contain_text("Good Friday")
    sign_out(ui)

    page = sign_in(ui, made.usernames["clinician"])

    # The clinician opens the chart, then the take-home review: the evidence.
    ui.goto(f"/patients/{patient_id}")
    press(ui, page.get_by_role("link", name="Take-home review", exact=True))
    expect(page.get_by_role("heading", name="Take-home review")).to_be_visible()
    expect(page.get_by_test_id("attendance-percent")).to_have_text("97 %")
    tests = page.get_by_test_id("evidence-tests")
    expect(tests).to_contain_text(human(TODAY - dt.timedelta(days=3)))
    expect(tests).to_contain_text("Fentanyl: negative")
    expect(tests.locator(".text-danger")).to_have_count(0)  # methadone: its own medication
    expect(tests).to_contain_text("Methadone: positive (own medication)")
    # The evidence is beside each criterion it supports.
    expect(page.get_by_role("group", name=CRITERIA[0][1])).to_contain_text(
        "no positive result other than the patient"
    )
    expect(page.get_by_role("group", name=CRITERIA[1][1])).to_contain_text("97 %")

    # Weekend take-homes, from the keyboard only: a weekly schedule, Saturday and Sunday.
    weekly = page.get_by_role("radio", name="Weekly schedule")
    weekly.focus()
    page.keyboard.press("Space")
    expect(weekly).to_be_checked()
    type_into(page, page.get_by_label("First take-home day"), SATURDAY.strftime("%m%d%Y"))
    for day in ("Saturday", "Sunday"):
        page.get_by_role("checkbox", name=day).focus()
        page.keyboard.press("Space")
    answer_criteria(page, keyboard=True)
    type_into(page, page.get_by_label("Safe-storage education given on"), TODAY.strftime("%m%d%Y"))
    press(ui, page.get_by_role("button", name="Record the decision"))
    expect(page.get_by_text("it awaits a prescriber's approval")).to_be_visible()
    expect(page.get_by_test_id("awaiting-approval")).to_be_visible()
    decision_url = page.url
    sign_out(ui)

    # The prescriber approves it, then asks for the trip's 7 days, approved at once.
    # The prescriber finds it on the review list, awaiting approval.
    page = sign_in(ui, made.usernames["prescriber"])
    press(ui, page.get_by_role("link", name="Take-home reviews"))
    pending = page.get_by_test_id("take-home-pending-table")
    expect(pending).to_contain_text(made.patient_name)
    press(ui, pending.get_by_role("link", name=re.compile("^Approve or decline")))
    assert page.url == decision_url
    press(ui, page.get_by_role("button", name="Approve"))
    expect(page.get_by_text("Decision approved.")).to_be_visible()
    press(ui, page.get_by_role("link", name="Take-home review", exact=True))
    page.get_by_label("First take-home day").fill(TRIP.isoformat())
    page.get_by_label("Number of days (a run of days)").fill("7")
    answer_criteria(page, keyboard=False)
    page.get_by_label("Safe-storage education given on").fill(TODAY.isoformat())
    page.get_by_label("Approve now (prescriber)").check()
    press(ui, page.get_by_role("button", name="Record the decision"))
    expect(page.get_by_text("Take-home decision recorded and approved.")).to_be_visible()
    expect(page.get_by_test_id("decision-cap")).to_contain_text("cap 28 days")
    sign_out(ui)

    # Friday: the nurse doses the patient, then dispenses the 9 bottles (Sat to the Sunday
    # after the trip) from the dosing screen.
    with time_machine.travel(FRIDAY_NOON, tick=True):
        page = sign_in(ui, made.usernames["nurse"])
        ui.goto(f"/dosing/patients/{patient_id}/dose")
        press(ui, page.get_by_role("link", name="Take-home bottles"))
        expect(page.get_by_role("heading", name="Take-home bottles")).to_be_visible()
        # Each day with its weekday: the weekend is easy to find.
        expect(page.get_by_label(f"Sat {human(SATURDAY)}")).to_be_visible()
        boxes = page.get_by_role("checkbox", name=re.compile(r"^\w{3} \d\d \w{3} \d{4}$"))
        # Sat, Sun, the trip (Mon to Sun), then the weekends after: the first 9.
        expect(boxes).to_have_count(11)
        # Without the confirmation: refused, the days kept.
        for n in range(9):
            boxes.nth(n).check()
        press(ui, page.get_by_role("button", name="Dispense the bottles"))
        expect(page.get_by_text("Confirm the bottles with the patient").first).to_be_visible()
        expect(boxes.first).to_be_checked()
        page.get_by_label("I have checked the bottles and the days with the patient").check()
        press(ui, page.get_by_role("button", name="Dispense the bottles"))
        expect(page.get_by_text("Dispensed 9 take-home bottles: print the labels.")).to_be_visible()

        # The label sheet: one label per bottle, everything the label must say.
        labels = page.get_by_test_id("bottle-label")
        expect(labels).to_have_count(9)
        first = labels.first
        for text in (
            "Main Street Clinic",
            "12 Main Street, Springfield, IL 62701",
            "(217) 555-0123",
            "MRN",
            "Methadone",
            f"{DOSE_MG} mg",
            f"Take on Saturday {human(SATURDAY)}",
            "Bottle 1 of 9",
        ):
            expect(first).to_contain_text(text)
        expect(labels.last).to_contain_text("Bottle 9 of 9")
        expect(first.locator(".bottle-label-warnings li").first).to_be_visible()
        page.emulate_media(media="print")
        expect(page.locator("nav").first).to_be_hidden()
        expect(page.get_by_role("button", name="Print")).to_be_hidden()
        expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
        expect(first).to_be_visible()
        page.emulate_media(media="screen")
        # The call-back worklist: take-homes start tomorrow, no call-back due yet.
        press(ui, page.get_by_role("link", name="Call-backs"))
        expect(page.get_by_text("No patient is due a call-back.")).to_be_visible()

    # The next visit, the Monday after the trip: 9 bottles due back, one missing.
    with time_machine.travel(NEXT_VISIT_NOON, tick=True):
        page = sign_in(ui, made.usernames["nurse"])
        ui.goto(f"/patients/{patient_id}")
        press(ui, page.get_by_role("link", name="Check the bottles due back"))
        groups = page.get_by_role("group", name=re.compile(r"^Bottle \d+ for "))
        expect(groups).to_have_count(9)
        for n in range(9):
            choice = "Not returned" if n == 4 else "Returned empty"
            groups.nth(n).get_by_role("radio", name=choice).check()
        press(ui, page.get_by_role("button", name="Record the returns"))
        # A finding needs a note: refused, the choices kept.
        note = page.get_by_label("Note")
        expect(note).to_have_attribute("aria-invalid", "true")
        expect(page.get_by_text("Describe what was found").first).to_be_visible()
        expect(groups.nth(4).get_by_role("radio", name="Not returned")).to_be_checked()
        note.fill("Says the bottle was left at her sister's.")
        press(ui, page.get_by_role("button", name="Record the returns"))
        expect(
            page.get_by_text("1 bottle not returned or tampered, a diversion incident is on")
        ).to_be_visible()

        ui.goto(f"/patients/{patient_id}")
        expect(page.get_by_test_id("diversion-incidents")).to_contain_text("sister")
        ui.goto("/take-homes/review-list")
        listed = page.get_by_test_id("take-home-review-table")
        expect(listed).to_contain_text(made.patient_name)
        expect(listed).to_contain_text("Bottle finding since the decision")
        expect(page.get_by_test_id("take-home-pending-empty")).to_be_visible()
        # 9 bottles taken home: the patient is due a call-back (twice a year).
        press(ui, page.get_by_role("link", name="Call-backs"))
        expect(page.locator("main")).to_contain_text(made.patient_name)

    with app.app_context():
        decisions = db.session.scalars(sa.select(TakeHomeDecision)).all()
        assert len(decisions) == 2
        assert all(d.approved_by_id == made.ids["prescriber"] for d in decisions)
        assert db.session.scalar(sa.select(sa.func.count()).select_from(BottleReturn)) == 9
        assert db.session.scalar(sa.select(sa.func.count()).select_from(DiversionIncident)) == 1


def test_day_12_asking_for_10_days_is_refused_with_the_cap(
    ui, app, site_noon, make_world, username_of
):
    made = make_world(day=12)
    page = sign_in(ui, username_of(made.ids["prescriber"]))
    ui.goto(f"/take-homes/patients/{made.ids['patient']}")
    page.get_by_label("First take-home day").fill(TODAY.isoformat())
    days = page.get_by_label("Number of days (a run of days)")
    days.fill("10")
    answer_criteria(page, keyboard=False)
    page.get_by_label("Safe-storage education given on").fill(TODAY.isoformat())
    page.get_by_label("Approve now (prescriber)").check()
    press(ui, page.get_by_role("button", name="Record the decision"))
    expect(days).to_have_attribute("aria-invalid", "true")
    error = page.locator(f"#{days.get_attribute('id')}-error")
    expect(error).to_contain_text("cap: 7")
    # Everything else typed is kept.
    expect(days).to_have_value("10")
    expect(page.get_by_label("First take-home day")).to_have_value(TODAY.isoformat())
    expect(page.get_by_role("group", name=CRITERIA[2][1]).get_by_role("textbox")).to_have_value(
        f"{CRITERIA[2][1]}: checked today."
    )
    expect(page.get_by_label("Approve now (prescriber)")).to_be_checked()
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(TakeHomeDecision)) == 0


@pytest.fixture
def drawn(app, site, wednesday, monkeypatch):
    """Today's draw at MAIN, made through the service, with the patient selected (the
    ticket is forced below the chance: the draw itself is random)."""
    monkeypatch.setattr(drug_test_draw, "selected", lambda *args: True)
    with app.test_request_context():
        drug_test_draw.draw_for_today(db.session.get(Site, site), actor=None)
        db.session.commit()
    return wednesday


def test_a_nurse_records_todays_random_test_and_staff_see_no_result(ui, app, drawn):
    made = drawn
    patient_id = made.ids["patient"]
    page = sign_in(ui, made.usernames["nurse"])
    press(ui, page.get_by_role("link", name="Tests due"))
    press(ui, page.get_by_role("link", name="Today's random selection"))
    row = page.locator(f"tr[data-patient-id='{patient_id}']")
    press(ui, row.get_by_role("link", name=re.compile("^Record the test")))
    expect(page.get_by_test_id("selection")).to_be_visible()
    page.get_by_label("Collection time").fill("10:30")
    page.get_by_label("Specimen").select_option(label="Urine")
    page.get_by_label("Observed collection").select_option(index=1)
    page.get_by_label(re.compile("^Temperature in range")).select_option(index=1)
    press(ui, page.get_by_role("button", name="Record the collection"))
    expect(page.get_by_role("button", name="Save the results")).to_be_visible()
    page.get_by_label(re.compile("^Result: fentanyl$", re.I)).select_option("negative")
    page.get_by_label(re.compile("^Result: methadone$", re.I)).select_option("positive")
    press(ui, page.get_by_role("button", name="Save the results"))
    ui.goto("/drug-tests/schedule/today")
    expect(page.locator(f"tr[data-patient-id='{patient_id}']")).to_contain_text("Collected")
    sign_out(ui)

    with app.app_context():
        test = db.session.scalars(
            sa.select(DrugTest).where(DrugTest.selection_id.is_not(None))
        ).one()
        assert test.reason == "random" and test.collected_on == TODAY
        assert (
            db.session.scalar(
                sa.select(sa.func.count())
                .select_from(DrugTestResult)
                .where(DrugTestResult.test_id == test.id)
            )
            == 2
        )

    # Staff: "Tests due" and "Call-backs" in the menu; counts, never a result.
    page = sign_in(ui, made.usernames["staff"])
    nav = page.get_by_role("navigation").first
    expect(nav.get_by_role("link", name="Tests due")).to_be_visible()
    expect(nav.get_by_role("link", name="Call-backs")).to_be_visible()
    expect(nav.get_by_role("link", name="Take-home reviews")).to_have_count(0)
    press(ui, nav.get_by_role("link", name="Tests due"))
    press(ui, nav.get_by_role("link", name="Call-backs"))
    ui.goto("/drug-tests/schedule/today")
    expect(page.locator(f"tr[data-patient-id='{patient_id}']")).to_contain_text("Collected")
    ui.goto(f"/patients/{patient_id}")
    expect(page.get_by_test_id("random-testing-section")).to_be_visible()
    body = page.locator("main").inner_text()
    for secret in ("negative", "positive", "Take-home", "Results"):
        assert secret not in body, secret
    # The results themselves: refused.
    with app.app_context():
        test_id = db.session.scalar(sa.select(sa.func.max(DrugTest.id)))
    expect(page.get_by_test_id("drug-tests-section")).to_have_count(0)
    for url in (f"/drug-tests/{test_id}", f"/drug-tests/patients/{patient_id}"):
        assert page.request.get(ui.base_url + url).status == 403, url
