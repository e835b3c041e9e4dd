"""The dosing report (issue 14): doses given out by medication and day, methadone per
patient-day in 20 mg bins, the take-home share and the missed-dose rate, on a hand-built
ledger with known answers — split doses summed, take-home bottles, a reversal, a held
dose, a stop-dose hold lifted in the evening, a discharge, a patient entered in error and
another site's doses."""

from __future__ import annotations

import datetime as dt

import pytest

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.medications.models import DoseKind, MedicationHold
from clinic.patients import admissions
from clinic.patients.models import Enrollment
from clinic.reports import dosing
from clinic.sites.models import Site, SiteClosure
from tests.reports_ledger import Ledger, each_day, filters_for, table
from tests.reports_ledger import ledger as ledger
from tests.statements import statement_count

D = dt.date
FIRST, LAST = D(2025, 3, 1), D(2025, 3, 10)
PERIOD = {"date_from": FIRST, "date_to": LAST, "today": D(2025, 3, 11)}
ORDERED = D(2025, 2, 1)


def hold(ledger: Ledger, patient_id: int, placed_at: dt.datetime, lifted_at: dt.datetime) -> None:
    with ledger.app.app_context():
        db.session.add(
            MedicationHold(
                patient_id=patient_id,
                reason="Intoxicated at the window.",
                placed_by_id=ledger.nurse,
                placed_at=placed_at,
                lifted_at=lifted_at,
                lifted_by_id=ledger.nurse,
                lift_reason="Reassessed.",
            )
        )
        db.session.commit()


def calendar(ledger: Ledger, site_id: int, closed_weekdays: str, holidays=()) -> None:
    """The site's closed weekdays (ISO digits, "" for open every day) and holidays."""
    with ledger.app.app_context():
        db.session.get(Site, site_id).closed_weekdays = closed_weekdays
        for day in holidays:
            db.session.add(
                SiteClosure(
                    site_id=site_id, closed_on=day, name="Holiday", created_by_id=ledger.nurse
                )
            )
        db.session.commit()


def discharge(ledger: Ledger, enrollment: int, on: dt.date) -> None:
    with ledger.app.app_context():
        row = db.session.get(Enrollment, enrollment)
        admissions.discharge(
            row,
            actor=db.session.get(User, ledger.nurse),
            discharged_on=on,
            reason=1,
            expected_version=row.version,
        )
        db.session.commit()


@pytest.fixture
def world(ledger):
    """1-10 March 2025 at MAIN (open every day: closed days are tested apart), today 11
    March:

    - daily: methadone 80 mg, observed every day but 4 March (nothing: missed) and 5 March
      (held): 8 doses, 9 expected days, 1 missed.
    - split: methadone 50 + 30 mg, both portions observed 1-3 and 10 March, six take-home
      bottles handed out on 3 March for 4-9 March: 4 observed doses, 6 bottles, 10
      expected days, none missed; 10 patient-days of 80 mg.
    - program B: methadone 45 mg observed 1-2 March, 3 March reversed, nothing after;
      a stop-dose hold placed 6 March 15:00 and lifted 8 March 20:00 (Chicago; 9 March
      02:00 UTC) holds 6 and 7 March: 2 doses, 8 expected days, 6 missed.
    - discharged: methadone 60 mg observed 1-5 March, discharged 6 March: 5 doses, 5
      expected days.
    - buprenorphine-naloxone 16 mg observed 1-10 March, two bottles handed out on 10
      March for 11-12 March: 10 doses, 2 bottles, 10 expected days.
    - an XR buprenorphine injection on 5 March (not a daily order: no expected days).
    - entered in error and the EAST site's patient: methadone every day, not counted.
    """
    calendar(ledger, ledger.site, "")
    a = ledger.program("Program A")
    b = ledger.program("Program B")
    ids = {"A": a, "B": b}

    _, enrollment = ledger.patient(a)
    order = ledger.order(enrollment, start_on=ORDERED)
    days = [d for d in each_day(FIRST, LAST) if d not in (D(2025, 3, 4), D(2025, 3, 5))]
    ledger.observed(order, days)
    ledger.not_given(order, D(2025, 3, 5), DoseKind.HELD)

    _, enrollment = ledger.patient(a)
    order = ledger.order(enrollment, split=("50", "30"), dose="80", start_on=ORDERED)
    for day in [*each_day(FIRST, D(2025, 3, 3)), LAST]:
        ledger.observed(order, day, mg="50")
        ledger.observed(order, day, mg="30")
    ledger.bottles(order, D(2025, 3, 3), each_day(D(2025, 3, 4), D(2025, 3, 9)))

    patient, enrollment = ledger.patient(b)
    order = ledger.order(enrollment, dose="45", start_on=ORDERED)
    ledger.observed(order, each_day(FIRST, D(2025, 3, 2)))
    (mistake,) = ledger.observed(order, D(2025, 3, 3))
    ledger.reverse(mistake)
    hold(
        ledger,
        patient,
        dt.datetime(2025, 3, 6, 21, 0, tzinfo=dt.UTC),
        dt.datetime(2025, 3, 9, 2, 0, tzinfo=dt.UTC),
    )

    _, enrollment = ledger.patient(a)
    order = ledger.order(enrollment, dose="60", start_on=ORDERED)
    ledger.observed(order, each_day(FIRST, D(2025, 3, 5)))
    discharge(ledger, enrollment, D(2025, 3, 6))

    _, enrollment = ledger.patient(a)
    order = ledger.order(enrollment, "buprenorphine_naloxone", dose="16", start_on=ORDERED)
    ledger.observed(order, each_day(FIRST, LAST))
    ledger.bottles(order, LAST, [D(2025, 3, 11), D(2025, 3, 12)])

    _, enrollment = ledger.patient(a)
    order = ledger.order(enrollment, "xr_buprenorphine", schedule="monthly", dose="300")
    ledger.injection(order, D(2025, 3, 5))

    patient, enrollment = ledger.patient(a)
    order = ledger.order(enrollment, start_on=ORDERED)
    ledger.observed(order, each_day(FIRST, LAST))
    discharge(ledger, enrollment, D(2025, 3, 11))
    ledger.entered_in_error(patient)

    east = ledger.make_site("EAST")
    calendar(ledger, east, "")
    ids["east"] = east
    _, enrollment = ledger.patient(ledger.program("East OTP", site_id=east), site_id=east)
    order = ledger.order(enrollment, start_on=ORDERED)
    ledger.observed(order, each_day(FIRST, LAST))
    return ids


def by_medication(result) -> dict[str, tuple]:
    keys = ("observed", "bottles", "injections", "doses", "take_home_share")
    keys += ("expected", "missed", "missed_rate")
    found = {
        row["medication"]: tuple(row[k] for k in keys)
        for row in table(result, "by_medication").rows
    }
    total = table(result, "by_medication").total
    if total is not None:
        found["total"] = tuple(total[k] for k in keys)
    return found


def distribution(result) -> dict[str, int]:
    return {
        r["bin"]: r["patient_days"] for r in table(result, "methadone").rows if r["patient_days"]
    }


def test_doses_take_home_share_and_missed_days_by_medication(app, site, world):
    with app.app_context():
        result = dosing.compute(filters_for([site], **PERIOD))
    assert by_medication(result) == {
        "Methadone": (19, 6, 0, 25, 24.0, 32, 7, 21.9),
        "Buprenorphine-naloxone": (10, 2, 0, 12, 16.7, 10, 0, 0.0),
        "Extended-release buprenorphine injection": (0, 0, 1, 1, 0.0, 0, 0, None),
        "total": (29, 8, 1, 38, 21.1, 42, 7, 16.7),
    }


def test_methadone_per_patient_day_sums_split_doses_and_counts_bottles(app, site, world):
    with app.app_context():
        result = dosing.compute(filters_for([site], **PERIOD))
    assert [r["bin"] for r in table(result, "methadone").rows] == [
        "0-19 mg",
        "20-39 mg",
        "40-59 mg",
        "60-79 mg",
        "80-99 mg",
        "100-119 mg",
        "120-139 mg",
        "140-159 mg",
        "160-179 mg",
        "180-199 mg",
        "200 mg or more",
    ]
    # daily 8 x 80, split 4 x (50 + 30) and 6 bottles of 80; 2 x 45; 5 x 60.
    assert distribution(result) == {"40-59 mg": 2, "60-79 mg": 5, "80-99 mg": 18}


def test_doses_by_day_and_the_chart(app, site, world):
    with app.app_context():
        result = dosing.compute(filters_for([site], **PERIOD))
    rows = {(r["day"], r["medication"]): r for r in table(result, "by_day").rows}
    march = {n: D(2025, 3, n) for n in range(1, 11)}
    # 3 March: daily, split (two portions, one dose), discharged; the reversed one is
    # not counted; the six bottles handed out that day are.
    assert (
        rows[(march[3], "Methadone")]["observed"],
        rows[(march[3], "Methadone")]["bottles"],
    ) == (
        3,
        6,
    )
    assert rows[(march[4], "Methadone")]["doses"] == 1  # daily missed, split on bottles
    assert rows[(march[5], "Extended-release buprenorphine injection")]["injections"] == 1
    assert rows[(march[10], "Buprenorphine-naloxone")]["doses"] == 3
    assert next(iter(rows)) == (march[1], "Methadone")
    chart = result.chart
    assert chart.categories == [d.isoformat() for d in each_day(FIRST, LAST)]
    series = dict(chart.series)
    assert list(series) == [
        "Methadone",
        "Buprenorphine-naloxone",
        "Extended-release buprenorphine injection",
    ]
    assert series["Methadone"] == [4, 4, 9, 1, 1, 1, 1, 1, 1, 2]
    assert series["Extended-release buprenorphine injection"] == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]


def test_program_medication_and_site_filters(app, site, world):
    with app.app_context():
        program_b = dosing.compute(filters_for([site], program_id=world["B"], **PERIOD))
        bup = dosing.compute(filters_for([site], medication="buprenorphine", **PERIOD))
        east = dosing.compute(filters_for([world["east"]], **PERIOD))
    assert by_medication(program_b) == {
        "Methadone": (2, 0, 0, 2, 0.0, 8, 6, 75.0),
        "total": (2, 0, 0, 2, 0.0, 8, 6, 75.0),
    }
    assert distribution(program_b) == {"40-59 mg": 2}
    assert by_medication(bup) == {
        "Buprenorphine-naloxone": (10, 2, 0, 12, 16.7, 10, 0, 0.0),
        "Extended-release buprenorphine injection": (0, 0, 1, 1, 0.0, 0, 0, None),
        "total": (10, 2, 1, 13, 15.4, 10, 0, 0.0),
    }
    assert table(bup, "methadone").rows == []
    assert by_medication(east) == {
        "Methadone": (10, 0, 0, 10, 0.0, 10, 0, 0.0),
        "total": (10, 0, 0, 10, 0.0, 10, 0, 0.0),
    }


def test_bins_keep_their_bounds(app, site, ledger):
    """19.99 mg is in 0-19; 20 mg (also as 10.1 + 9.9) in 20-39; 199.99 in 180-199; a
    split of 150 + 50 in 200 or more. (The site is closed on Sundays, as by default: 2
    and 9 March are not expected dosing days — 8 expected, 6, 7, 8 and 10 March missed.)"""
    _, enrollment = ledger.patient(ledger.program())
    order = ledger.order(enrollment, split=("150", "50"), dose="200", start_on=ORDERED)
    ledger.observed(order, D(2025, 3, 1), mg="19.99")
    ledger.observed(order, D(2025, 3, 2), mg="20")
    ledger.observed(order, D(2025, 3, 3), mg="10.1")
    ledger.observed(order, D(2025, 3, 3), mg="9.9")
    ledger.observed(order, D(2025, 3, 4), mg="199.99")
    ledger.observed(order, D(2025, 3, 5), mg="150")
    ledger.observed(order, D(2025, 3, 5), mg="50")
    with app.app_context():
        result = dosing.compute(filters_for([site], **PERIOD))
    assert distribution(result) == {
        "0-19 mg": 1,
        "20-39 mg": 2,
        "180-199 mg": 1,
        "200 mg or more": 1,
    }
    assert by_medication(result)["Methadone"] == (5, 0, 0, 5, 0.0, 8, 4, 50.0)


def test_days_the_site_is_closed_are_not_expected_dosing_days(app, site, ledger):
    """MAIN is closed on Sundays (2 and 9 March 2025) and on a holiday (Thursday 6 March);
    EAST is closed on Saturdays (1 and 8 March). A MAIN patient never dosed misses the 7
    open days of 1-10 March, not 10; a MAIN patient dosed on the closed Sunday (an
    exception) and on no other day misses 7 of 7; an EAST patient never dosed misses 8."""
    calendar(ledger, site, "7", holidays=[D(2025, 3, 6)])
    east = ledger.make_site("EAST")
    calendar(ledger, east, "6")
    program = ledger.program()
    _, enrollment = ledger.patient(program)
    ledger.order(enrollment, start_on=ORDERED)
    _, enrollment = ledger.patient(program)
    order = ledger.order(enrollment, start_on=ORDERED)
    ledger.observed(order, D(2025, 3, 2))
    _, enrollment = ledger.patient(ledger.program(site_id=east), site_id=east)
    ledger.order(enrollment, start_on=ORDERED)
    with app.app_context():
        main = dosing.compute(filters_for([site], **PERIOD))
        both = dosing.compute(filters_for([site, east], **PERIOD))
    assert by_medication(main)["Methadone"][5:] == (14, 14, 100.0)
    assert by_medication(both)["Methadone"][5:] == (22, 22, 100.0)


def test_nothing_to_count(app, site):
    with app.app_context():
        result = dosing.compute(filters_for([site], **PERIOD))
    assert [t.rows for t in result.tables] == [[], [], []]
    assert result.chart is None


def test_the_number_of_statements_does_not_grow_with_patients(app, site, ledger):
    program = ledger.program()

    def patients(n):
        for _ in range(n):
            _, enrollment = ledger.patient(program)
            order = ledger.order(enrollment, start_on=ORDERED)
            ledger.observed(order, each_day(FIRST, D(2025, 3, 4)))

    def statements() -> int:
        with app.app_context():
            return statement_count(lambda: dosing.compute(filters_for([site], **PERIOD)))

    patients(1)
    one = statements()
    patients(29)
    assert statements() == one == 4


# --- the pages -----------------------------------------------------------------------------
QUERY = "date_from=2025-03-01&date_to=2025-03-10"


def test_the_director_sees_the_dosing_report(app, world, client_as):
    admin = client_as("admin")
    page = admin.get(f"/reports/dosing?{QUERY}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-testid="report-chart"' in html
    assert 'data-testid="report-table-methadone"' in html
    assert "Missed-dose rate" in html
    assert "21.9 %" in html
    printed = admin.get(f"/reports/dosing/print?{QUERY}")
    assert printed.status_code == 200


def test_the_dosing_csv_and_its_small_cells(app, world, client_as):
    admin = client_as("admin")
    response = admin.get(f"/reports/dosing/export.csv?{QUERY}")
    assert response.status_code == 200
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0] == (
        "Medication,Observed doses,Take-home bottles,Injections,All doses given out,"
        "Take-home share,Expected dosing days,Missed days,Missed-dose rate"
    )
    assert lines[1] == "Methadone,19,6,0,25,24.0,32,7,21.9"
    assert lines[-1] == "All medications,29,8,1,38,21.1,42,7,16.7"
    app.config["SUPPRESS_SMALL_CELLS"] = True
    suppressed = admin.get(f"/reports/dosing/export.csv?{QUERY}").get_data(as_text=True)
    lines = suppressed.splitlines()
    # 24 % of 25 doses and 21.9 % of 32 days would give the 6 bottles and 7 days back.
    assert lines[1] == "Methadone,19,<11,0,25,<11,32,<11,<11"
    assert lines[3] == "Extended-release buprenorphine injection,0,0,<11,<11,<11,0,0,"
    days = admin.get(f"/reports/dosing/export.csv?{QUERY}&table=methadone").get_data(as_text=True)
    assert days.splitlines()[5] == "80-99 mg,18"
    assert days.splitlines()[3] == "40-59 mg,<11"


def test_bad_dosing_filters_are_refused(app, world, client_as):
    admin = client_as("admin")
    page = admin.get("/reports/dosing?date_from=2025-03-10&date_to=2025-03-01")
    assert page.status_code == 400
    assert "The To date is before the From date" in page.get_data(as_text=True)
    assert admin.get("/reports/dosing?medication=heroin").status_code == 400
    assert admin.get("/reports/dosing/export.csv?program=999999").status_code == 400
