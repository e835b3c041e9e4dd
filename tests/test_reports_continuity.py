"""Continuity of pharmacotherapy (issue 14, NQF #3175): a hand-built dose ledger with known
episodes — a 7-day gap bridged and an 8-day gap breaking, a switch of medication, a
take-home supply bridging a gap, monthly and 4-weekly injections, a reversed dose, a
transfer between programs, a patient entered in error and another site's doses — and the
exact figures the director sends to the state."""

from __future__ import annotations

import datetime as dt

import pytest

from clinic.medications.models import DoseKind
from clinic.reports import continuity
from clinic.reports.core import REPORTS
from tests.reports_ledger import each_day, filters_for, table
from tests.reports_ledger import ledger as ledger
from tests.statements import statement_count

D = dt.date


# --- the ledger of the main tests --------------------------------------------------------
# Period: January to March 2025; today: 31 Dec 2025 (every episode is measurable).
PERIOD = {"date_from": D(2025, 1, 1), "date_to": D(2025, 3, 31), "today": D(2025, 12, 31)}
START = D(2025, 1, 6)


@pytest.fixture
def world(ledger):
    """The patients of the module docstring; returns ids. Episodes starting in the period
    (all at MAIN unless said):

    - seven: 6 Jan .. 31 Jan, 7 days without a dose, 8 Feb .. 4 Jul: one episode of 180.
    - eight: the same with 8 days without: 26 days (Jan) and 146 days (Feb).
    - switch: methadone 6 Jan .. 31 Mar, 3 days, buprenorphine 4 Apr .. 10 Jul: 186.
    - bottles: observed 6-10 Jan, ten take-home bottles (handed out on 10 Jan) for
      11-20 Jan, observed 21 Jan .. 5 Jul: 181 days.
    - monthly: XR buprenorphine on 6 Jan (31 days: to 5 Feb), 7 days, then 13 Feb, 16 Mar,
      16 Apr, 17 May, 17 Jun (to 17 Jul): 193 days.
    - four_weekly: XR naltrexone once on 3 Mar, every 4 weeks: 28 days (program B).
    - reversed: like seven, but the dose of 8 Feb is reversed: 26 (Jan) and 152 days (Feb).
    - transfer: methadone in program A from 6 Jan, transferred to program B on 1 Mar,
      dosed there until 4 Jul: one episode of 180 started in A.
    - restart: dosed 20 Dec 2024 .. 1 Feb (starts before the period), then 1-20 Mar: 20.
    - in error: 180 days from 6 Jan, entered in error: nothing.
    - east: 180 days from 6 Jan at the EAST site: not in MAIN's figures.
    Missed and held rows (covering nothing) sit in the gaps.
    """
    a = ledger.program("Program A")
    b = ledger.program("Program B")
    ids = {"A": a, "B": b}

    def methadone_patient(program=a):
        patient, enrollment = ledger.patient(program)
        return patient, enrollment, ledger.order(enrollment)

    _, _, order = methadone_patient()
    ledger.observed(order, each_day(START, D(2025, 1, 31)) + each_day(D(2025, 2, 8), D(2025, 7, 4)))
    ledger.not_given(order, D(2025, 2, 3), DoseKind.MISSED)
    ledger.not_given(order, D(2025, 2, 4), DoseKind.HELD)

    _, _, order = methadone_patient()
    ledger.observed(order, each_day(START, D(2025, 1, 31)) + each_day(D(2025, 2, 9), D(2025, 7, 4)))

    _, enrollment, order = methadone_patient()
    ledger.observed(order, each_day(START, D(2025, 3, 31)))
    bup = ledger.order(enrollment, "buprenorphine_naloxone", dose="16", start_on=D(2025, 4, 4))
    ledger.observed(bup, each_day(D(2025, 4, 4), D(2025, 7, 10)))

    _, _, order = methadone_patient()
    ledger.observed(order, each_day(START, D(2025, 1, 10)))
    ledger.bottles(order, D(2025, 1, 10), each_day(D(2025, 1, 11), D(2025, 1, 20)))
    ledger.observed(order, each_day(D(2025, 1, 21), D(2025, 7, 5)))

    _, enrollment = ledger.patient(a)
    xr = ledger.order(enrollment, "xr_buprenorphine", schedule="monthly", dose="300")
    ledger.injection(
        xr, [START, D(2025, 2, 13), D(2025, 3, 16), D(2025, 4, 16), D(2025, 5, 17), D(2025, 6, 17)]
    )

    _, enrollment = ledger.patient(b)
    xrn = ledger.order(enrollment, "xr_naltrexone", schedule="every_4_weeks", dose="380")
    ledger.injection(xrn, D(2025, 3, 3))

    _, _, order = methadone_patient()
    ledger.observed(order, each_day(START, D(2025, 1, 31)))
    (mistake,) = ledger.observed(order, D(2025, 2, 8))
    ledger.reverse(mistake)
    ledger.observed(order, each_day(D(2025, 2, 9), D(2025, 7, 10)))

    patient, enrollment, order = methadone_patient()
    ids["transfer_patient"] = patient
    ledger.observed(order, each_day(START, D(2025, 2, 28)))
    moved = ledger.transfer(enrollment, b, D(2025, 3, 1))
    order_b = ledger.order(moved, start_on=D(2025, 3, 1))
    ledger.observed(order_b, each_day(D(2025, 3, 1), D(2025, 7, 4)))

    _, _, order = methadone_patient()
    ledger.observed(order, each_day(D(2024, 12, 20), D(2025, 2, 1)))
    ledger.observed(order, each_day(D(2025, 3, 1), D(2025, 3, 20)))

    patient, _, order = methadone_patient()
    ledger.observed(order, each_day(START, D(2025, 7, 4)))
    ledger.entered_in_error(patient)

    east = ledger.make_site("EAST")
    ids["east"] = east
    east_program = ledger.program("East OTP", site_id=east)
    _, enrollment = ledger.patient(east_program, site_id=east)
    order = ledger.order(enrollment)
    ledger.observed(order, each_day(START, D(2025, 7, 4)))
    return ids


def counts(row) -> tuple:
    return (row["episodes"], row["pending"], row["measurable"], row["reached"], row["share"])


def test_continuity_by_medication_counts_every_edge(app, site, world):
    with app.app_context():
        result = continuity.compute(filters_for([site], **PERIOD))
    by_medication = table(result, "by_medication")
    rows = {row["medication"]: row for row in by_medication.rows}
    assert list(rows) == [
        "Methadone",
        "Extended-release buprenorphine injection",
        "Extended-release naltrexone injection",
    ]
    # seven, eight x2, switch, bottles, reversed x2, transfer, restart (March).
    assert counts(rows["Methadone"]) == (9, 0, 9, 4, 44.4)
    assert rows["Methadone"]["patients"] == 7
    assert counts(rows["Extended-release buprenorphine injection"]) == (1, 0, 1, 1, 100.0)
    assert counts(rows["Extended-release naltrexone injection"]) == (1, 0, 1, 0, 0.0)
    assert counts(by_medication.total) == (11, 0, 11, 5, 45.5)
    assert by_medication.total["patients"] == 9

    by_month = table(result, "by_month")
    assert [(r["month"], *counts(r)) for r in by_month.rows] == [
        ("2025-01", 7, 0, 7, 5, 71.4),
        ("2025-02", 2, 0, 2, 0, 0.0),
        ("2025-03", 2, 0, 2, 0, 0.0),
    ]
    lengths = {r["band"]: r["episodes"] for r in table(result, "by_length").rows}
    # 26, 26, 20 and the 4-weekly injection's 28 days; 146 and 152; 180, 180, 181, 186, 193.
    assert lengths == {"1 to 29 days": 4, "90 to 179 days": 2, "180 days or more": 5}
    assert result.chart is not None
    assert result.chart.categories == ["2025-01", "2025-02", "2025-03"]
    assert result.chart.series == [("180 days or more", [71.4, 0.0, 0.0])]
    assert result.notes


def test_filters_choose_episodes_by_their_first_day(app, site, world):
    """The medication and the program are those of the episode's first covered day: the
    switch counts under methadone only, the transfer under program A only."""
    with app.app_context():
        methadone = continuity.compute(filters_for([site], medication="methadone", **PERIOD))
        bup = continuity.compute(filters_for([site], medication="buprenorphine", **PERIOD))
        program_a = continuity.compute(filters_for([site], program_id=world["A"], **PERIOD))
        program_b = continuity.compute(filters_for([site], program_id=world["B"], **PERIOD))
        east = continuity.compute(filters_for([world["east"]], **PERIOD))
    assert counts(table(methadone, "by_medication").total) == (9, 0, 9, 4, 44.4)
    assert counts(table(bup, "by_medication").total) == (1, 0, 1, 1, 100.0)
    assert counts(table(program_a, "by_medication").total) == (10, 0, 10, 5, 50.0)
    assert counts(table(program_b, "by_medication").total) == (1, 0, 1, 0, 0.0)
    # The other site's patient is counted there, and only there.
    assert counts(table(east, "by_medication").total) == (1, 0, 1, 1, 100.0)


def test_an_episode_still_continuing_is_not_yet_measurable(app, site, ledger):
    """Today 1 Jul 2025, episodes from March: still going (last dose today, or 6 days
    ago) is not yet measurable; stopped 9 days ago, or in April, is measured as not
    continuous (a take-home bottle counts on its take-on day)."""
    program = ledger.program()
    plans = [
        (D(2025, 3, 20), D(2025, 7, 1)),  # continuing (dosed today)
        (D(2025, 3, 10), D(2025, 6, 25)),  # 6 days ago: fewer than 8 uncovered days
        (D(2025, 3, 10), D(2025, 6, 22)),  # 9 days ago: 8 uncovered days up to yesterday
        (D(2025, 3, 20), D(2025, 4, 10)),  # broke in April
    ]
    for first, last in plans:
        _, enrollment = ledger.patient(program)
        order = ledger.order(enrollment)
        ledger.observed(order, each_day(first, last))
    ledger.bottles(order, D(2025, 4, 10), [D(2025, 4, 11)])  # the 4th: one more day
    period = {"date_from": D(2025, 3, 1), "date_to": D(2025, 3, 31), "today": D(2025, 7, 1)}
    with app.app_context():
        result = continuity.compute(filters_for([site], **period))
    assert counts(table(result, "by_medication").total) == (4, 2, 2, 0, 0.0)
    assert {r["band"]: r["episodes"] for r in table(result, "by_length").rows} == {
        "1 to 29 days": 1,  # 20 Mar .. 11 Apr: 23 days
        "90 to 179 days": 1,  # 10 Mar .. 22 Jun: 105 days
    }


def test_a_gap_of_seven_days_exactly_is_bridged_at_the_edges_of_the_period(app, site, ledger):
    """An episode that started 9 days before the period and reaches into it through a gap
    of 7 days started before the period (not counted); one whose previous dose is 8 days
    further back starts in the period."""
    program = ledger.program()
    _, enrollment = ledger.patient(program)
    order = ledger.order(enrollment)
    ledger.observed(order, [D(2024, 12, 24), D(2025, 1, 1)])  # 7 days between: bridged
    _, enrollment = ledger.patient(program)
    order = ledger.order(enrollment)
    ledger.observed(order, [D(2024, 12, 23), D(2025, 1, 1)])  # 8 days between: new episode
    with app.app_context():
        result = continuity.compute(filters_for([site], **PERIOD))
    assert counts(table(result, "by_medication").total) == (1, 0, 1, 0, 0.0)


def test_the_default_period_ends_180_days_before_today():
    """Twelve whole months, the last ending at least 180 days before today: every episode
    starting in them has had its 180 days (the last 12 months would leave recent months
    with only their broken episodes measured)."""
    assert continuity.measurable_twelve_months(D(2026, 11, 29)) == (D(2025, 6, 1), D(2026, 5, 31))
    # 180 days before 28 Oct 2026 is 1 May 2026, not the end of a month: April is the last.
    assert continuity.measurable_twelve_months(D(2026, 10, 28)) == (D(2025, 5, 1), D(2026, 4, 30))
    # 180 days before 27 Oct 2026 is 30 April 2026: April still counts.
    assert continuity.measurable_twelve_months(D(2026, 10, 27)) == (D(2025, 5, 1), D(2026, 4, 30))
    assert continuity.measurable_twelve_months(D(2026, 10, 26)) == (D(2025, 4, 1), D(2026, 3, 31))
    assert REPORTS["continuity"].default_period is continuity.measurable_twelve_months
    assert any("180 days before today" in note for note in continuity.NOTES)


def test_nothing_to_count_shows_the_empty_tables(app, site):
    with app.app_context():
        result = continuity.compute(filters_for([site], **PERIOD))
    assert [t.rows for t in result.tables] == [[], [], []]
    assert table(result, "by_medication").total is None
    assert result.chart is None


def test_the_number_of_statements_does_not_grow_with_patients(app, site, ledger):
    program = ledger.program()

    def patients(n):
        for _ in range(n):
            _, enrollment = ledger.patient(program)
            order = ledger.order(enrollment)
            ledger.observed(order, each_day(D(2025, 1, 6), D(2025, 1, 12)))

    def statements() -> int:
        with app.app_context():
            return statement_count(lambda: continuity.compute(filters_for([site], **PERIOD)))

    patients(1)
    one = statements()
    patients(29)
    assert statements() == one == 1


# --- the pages -----------------------------------------------------------------------------
QUERY = "date_from=2025-01-01&date_to=2025-03-31"


def test_the_director_sees_the_report_with_its_chart(app, world, client_as):
    admin = client_as("admin")
    page = admin.get(f"/reports/continuity?{QUERY}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-testid="report-chart"' in html
    assert 'src="data:image/svg+xml' in html
    assert 'data-testid="report-table-by_medication"' in html
    assert "Not yet measurable" in html
    assert "44.4 %" in html
    printed = admin.get(f"/reports/continuity/print?{QUERY}")
    assert printed.status_code == 200
    assert "data-print" in printed.get_data(as_text=True)


def test_the_csv_for_the_state_and_its_small_cells(app, world, client_as):
    admin = client_as("admin")
    response = admin.get(f"/reports/continuity/export.csv?{QUERY}")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0] == (
        "Medication at start,Patients,Episodes started,"
        "Not yet measurable (still continuing),Measurable episodes,"
        "180 days or more continuous,Share with 180 days or more"
    )
    assert lines[1] == "Methadone,7,9,0,9,4,44.4"
    assert lines[-1] == "All medications,9,11,0,11,5,45.5"
    app.config["SUPPRESS_SMALL_CELLS"] = True
    suppressed = admin.get(f"/reports/continuity/export.csv?{QUERY}&table=by_month")
    lines = suppressed.get_data(as_text=True).splitlines()
    assert lines[1] == "2025-01,<11,0,<11,<11,<11"
    assert lines[2] == "2025-02,<11,0,<11,0,<11"


def test_bad_filters_are_refused_next_to_the_field(app, world, client_as):
    admin = client_as("admin")
    page = admin.get("/reports/continuity?date_from=2025-03-31&date_to=2025-01-01")
    assert page.status_code == 400
    assert "The To date is before the From date" in page.get_data(as_text=True)
    export = admin.get("/reports/continuity/export.csv?date_from=31/03/2025")
    assert export.status_code == 400
    assert "Enter a valid date." in export.get_data(as_text=True)
    other_site = admin.get(f"/reports/continuity?site={world['east']}&{QUERY}")
    assert other_site.status_code == 400
