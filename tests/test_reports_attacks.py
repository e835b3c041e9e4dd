"""Attacks on the report framework and the first reports (issue 14): hostile filters,
small cells that could be read back from an export, chart labels that are not plain text,
an organisation-wide administrator's day, and hand-checked numbers on a tricky clinic
(transfers and readmissions on the census day, two programs, a patient registered at
another site than the program's)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
import time_machine

from clinic.extensions import db
from clinic.patients.models import Enrollment, Patient
from clinic.reports import admissions, census, charts, retention
from clinic.reports.core import (
    SMALL_CELL_TEXT,
    Chart,
    ChartKind,
    Column,
    Kind,
    Table,
    export_rows,
    suppressed,
)
from clinic.reports.filters import ReportFilters

D = dt.date
NOT_OTP = {
    "take_home_cap_days_0_14": None,
    "take_home_cap_days_15_30": None,
    "take_home_cap_days_31_plus": None,
}


def enroll(patient, program, admitted, discharged=None, reason=None, *, came=None) -> int:
    enrollment = Enrollment(
        patient_id=patient,
        program_id=program,
        admitted_on=admitted,
        asam_edition="3",
        asam_level="OTP",
        discharged_on=discharged,
        discharge_reason=reason,
        transferred_from_id=came,
    )
    db.session.add(enrollment)
    db.session.flush()
    return enrollment.id


ON = D(2026, 3, 15)
MARCH = (D(2026, 3, 1), D(2026, 3, 31))


def scope(site_ids, *, on=ON, start=MARCH[0], end=MARCH[1], **kw):
    values = {
        "site_ids": tuple(site_ids),
        "program_id": None,
        "medications": None,
        "date_from": start,
        "date_to": end,
        "on": on,
        "today": D(2026, 11, 29),
        "single_site": len(site_ids) == 1,
    }
    values.update(kw)
    return ReportFilters(**values)


def _csv(response) -> list[list[str]]:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


# --- hostile filters --------------------------------------------------------------------------


@pytest.mark.parametrize("slug", ["census", "admissions", "retention", "teds"])
@pytest.mark.parametrize("program", ["99999999999999999999", "abc", "-1", "1e3", " 1"])
def test_a_nonsense_program_with_a_site_is_refused_next_to_the_field(
    client_as, site, make_program, slug, program
):
    make_program()
    admin = client_as("admin")
    for suffix in ("", "/print", "/export.csv"):
        response = admin.get(f"/reports/{slug}{suffix}?site={site}&program={program}")
        assert response.status_code == 400, (suffix, program)
        assert "Not a valid choice" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("slug", "query", "field"),
    [
        ("retention", "date_from=2000-01-01", "date_from"),
        ("admissions", "date_to=2999-12-31", "date_to"),
        ("teds", "date_to=2999-12-31", "date_to"),
    ],
)
def test_a_period_longer_than_five_years_is_refused_when_one_end_is_left_empty(
    client_as, slug, query, field
):
    admin = client_as("admin")
    response = admin.get(f"/reports/{slug}?{query}")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert re.search(rf'id="{field}-error"[^>]*>\s*Choose a period of at most 5 years', html)
    assert admin.get(f"/reports/{slug}/export.csv?{query}").status_code == 400


def test_the_five_year_edge_is_exact(client_as):
    admin = client_as("admin")
    base = "/reports/admissions?date_from=2026-01-01&date_to="
    assert admin.get(base + "2030-12-31").status_code == 200  # five years to the day
    assert admin.get(base + "2031-01-01").status_code == 400  # five years and a day
    leap = "/reports/admissions?date_from=2028-02-29&date_to="
    assert admin.get(leap + "2033-02-28").status_code == 200
    assert admin.get(leap + "2033-03-01").status_code == 400


def test_repeated_and_unknown_parameters_read_the_first_value_only(
    client_as, site, make_site, make_program
):
    other = make_site("OTHR")
    admin = client_as("admin")
    response = admin.get(f"/reports/census?site={site}&site={other}&colour=red")
    assert response.status_code == 200
    assert admin.get(f"/reports/census?site={other}&site={site}").status_code == 400


# --- charts -----------------------------------------------------------------------------------


def test_a_dollar_sign_in_a_chart_label_is_drawn_as_text(app, client_as, make_program):
    svg = charts.render_svg(
        Chart(ChartKind.BAR, r"Fees $\foo$", [r"Fee $\frac$ a", "$x$"], [("$y$", [1, 2])])
    )
    assert r"$\frac$" in svg and "$x$" in svg
    make_program(r"Sliding fee $\sum$ program")
    assert client_as("admin").get("/reports/census").status_code == 200


# --- small cells ------------------------------------------------------------------------------


def test_a_percentage_of_a_large_denominator_does_not_give_away_a_small_count():
    table = Table(
        "t",
        "T",
        [
            Column("n", "N", Kind.COUNT),
            Column("all", "All", Kind.COUNT),
            Column("p", "P", Kind.PERCENT, of="all"),
        ],
        [],
    )
    # 3 of 15 is 20.0 %: with 15 shown, 20.0 % says 3.
    assert suppressed(table, {"n": 3, "all": 15, "p": 20.0}, enabled=True) == [
        SMALL_CELL_TEXT,
        15,
        SMALL_CELL_TEXT,
    ]
    assert suppressed(table, {"n": 12, "all": 15, "p": 80.0}, enabled=True) == [12, 15, 80.0]
    assert suppressed(table, {"n": 0, "all": 15, "p": 0.0}, enabled=True) == [0, 15, 0.0]


@pytest.fixture
def two_site_admin(app, site, make_site, make_program, make_patient, client_as):
    """MAIN: 20 patients in its OTP (4 of them discharged dropped out on 2026-03-10, 16
    completing on 2026-03-12); EAST: 3 patients in its OTP. Census day 2026-03-11."""
    east = make_site("EAST")
    main_otp = make_program("Main methadone")
    east_otp = make_program("East methadone", site_id=east)
    people = [make_patient(f"P{i}", "Many", intake_date=D(2025, 1, 1)) for i in range(20)]
    few = [make_patient(f"E{i}", "Few", site_id=east, intake_date=D(2025, 1, 1)) for i in range(3)]
    with app.app_context():
        for i, p in enumerate(people):
            enroll(p, main_otp, D(2026, 1, 5), D(2026, 3, 10 if i < 4 else 12), 2 if i < 4 else 1)
        for p in few:
            enroll(p, east_otp, D(2026, 1, 5))
        db.session.commit()
    return client_as("admin", site_ids=[site, east])


def test_a_total_is_suppressed_only_where_it_gives_a_small_count_back():
    columns = [Column("name", "Name"), Column("n", "N", Kind.COUNT)]

    def exported(*values, total):
        rows = [{"name": str(i), "n": v} for i, v in enumerate(values)]
        table = Table("t", "T", columns, rows, total={"name": "All", "n": total})
        return [r[1] for r in export_rows(table, enabled=True)]

    # One small cell among large ones: the total minus the others is that cell.
    assert exported(40, 3, total=43) == [40, SMALL_CELL_TEXT, SMALL_CELL_TEXT]
    # Two small cells adding up to 3: the total would say "1 and 2".
    assert exported(40, 1, 2, total=43) == [40, SMALL_CELL_TEXT, SMALL_CELL_TEXT, SMALL_CELL_TEXT]
    # Two small cells adding up to 16: the total says no small count.
    assert exported(40, 10, 6, total=56) == [40, SMALL_CELL_TEXT, SMALL_CELL_TEXT, 56]
    assert exported(40, 12, total=52) == [40, 12, 52]
    assert [
        r[1]
        for r in export_rows(
            Table("t", "T", columns, [{"name": "a", "n": 3}], total={"name": "All", "n": 3}),
            enabled=False,
        )
    ] == [3, 3]


def test_a_small_count_is_not_given_away_by_the_total_row(app, two_site_admin):
    app.config["SUPPRESS_SMALL_CELLS"] = True
    rows = _csv(two_site_admin.get("/reports/census/export.csv?table=by-site&on=2026-03-10"))
    assert rows[1:] == [
        ["Main Street Clinic (MAIN)", "20"],
        ["Site EAST (EAST)", SMALL_CELL_TEXT],
        ["All sites", SMALL_CELL_TEXT],
    ]


def test_a_discharge_share_does_not_give_away_a_small_count(app, two_site_admin, site):
    app.config["SUPPRESS_SMALL_CELLS"] = True
    rows = _csv(
        two_site_admin.get(
            "/reports/admissions/export.csv?table=discharges"
            f"&site={site}&date_from=2026-03-01&date_to=2026-03-31"
        )
    )
    by_code = {r[0]: r for r in rows[1:]}
    assert by_code["1"][2:5] == ["16", "20", "80.0"]
    assert by_code["2"][2:5] == [SMALL_CELL_TEXT, "20", SMALL_CELL_TEXT]
    # Four dropped out on the same day: their average and median stay are each one's.
    assert by_code["2"][5:7] == [SMALL_CELL_TEXT, SMALL_CELL_TEXT]
    assert by_code["1"][5:7] == ["66.0", "66.0"]
    assert by_code["3"][2:7] == ["0", "20", "0.0", "", ""]


def test_a_measure_over_a_small_count_is_suppressed_with_it():
    table = Table(
        "t",
        "T",
        [Column("n", "N", Kind.COUNT), Column("m", "Average", Kind.NUMBER, of="n")],
        [{"n": 1, "m": 37.0}, {"n": 30, "m": 12.5}],
        total={"n": 31, "m": 13.3},
    )
    assert export_rows(table, enabled=True) == [
        [SMALL_CELL_TEXT, SMALL_CELL_TEXT],
        [30, 12.5],
        [SMALL_CELL_TEXT, SMALL_CELL_TEXT],
    ]


# --- an organisation-wide administrator's day -------------------------------------------------


def test_an_organisation_wide_administrator_counts_on_the_sites_day_not_utcs(
    app, site, make_patient, make_program, client_as
):
    """21:00 on 2026-03-18 in Chicago is already 2026-03-19 in UTC: the census of an
    administrator of no site of their own is still the 18th's, when a patient
    discharged that day is still in treatment."""
    program = make_program()
    patient = make_patient()
    with app.app_context():
        enroll(patient, program, D(2026, 1, 5), D(2026, 3, 18), 1)
        db.session.commit()
    with time_machine.travel(dt.datetime(2026, 3, 19, 2, 0, tzinfo=dt.UTC), tick=True):
        admin = client_as("admin", site_ids=[], all_sites=True)
        html = admin.get("/reports/census").get_data(as_text=True)
    assert "On 2026-03-18" in html
    assert 'value="2026-03-19"' not in html


# --- hand-checked numbers on a tricky clinic --------------------------------------------------


@pytest.fixture
def tricky(app, site, make_site, make_program, make_patient):
    """MAIN (OTP, IOP) and EAST (OTP); census day 2026-03-15.

    - A: OTP from 01-05, transferred to IOP on 03-15 (IOP continues until 05-01).
    - B: OTP 01-05 .. 03-15 discharged (dropped out), readmitted to the OTP on 03-15.
    - C: in the OTP and the IOP at once from 02-01 (two programs).
    - R: registered at EAST, treated in MAIN's OTP from 03-01.
    - X: entered in error, in the OTP from 03-01.
    - Y: discharged from the OTP on 03-14 (the day before).
    - Z: EAST's OTP from 03-01 (another site)."""
    east = make_site("EAST")
    otp = make_program("Methadone maintenance")
    iop = make_program("Intensive outpatient", "intensive_outpatient", **NOT_OTP)
    east_otp = make_program("East methadone", site_id=east)
    p = {n: make_patient(n, "Tricky", intake_date=D(2025, 1, 1)) for n in "ABCXY"}
    p["R"] = make_patient("R", "Tricky", site_id=east, intake_date=D(2025, 1, 1))
    p["Z"] = make_patient("Z", "Tricky", site_id=east, intake_date=D(2025, 1, 1))
    with app.app_context():
        a = enroll(p["A"], otp, D(2026, 1, 5), D(2026, 3, 15), 4)
        enroll(p["A"], iop, D(2026, 3, 15), D(2026, 5, 1), 1, came=a)
        enroll(p["B"], otp, D(2026, 1, 5), D(2026, 3, 15), 2)
        enroll(p["B"], otp, D(2026, 3, 15))
        enroll(p["C"], otp, D(2026, 2, 1))
        enroll(p["C"], iop, D(2026, 2, 1))
        enroll(p["R"], otp, D(2026, 3, 1))
        enroll(p["X"], otp, D(2026, 3, 1))
        error = db.session.get(Patient, p["X"])
        error.entered_in_error_at = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
        error.entered_in_error_reason = "registered twice"
        enroll(p["Y"], otp, D(2026, 1, 5), D(2026, 3, 14), 1)
        enroll(p["Z"], east_otp, D(2026, 3, 1))
        db.session.commit()
    return {"site": site, "east": east, "otp": otp, "iop": iop, "east_otp": east_otp, **p}


def _rows(table, key):
    return {r[key]: r["patients"] for r in table.rows}


def test_census_by_hand_on_the_tricky_clinic(app, tricky):
    with app.app_context():
        result = census.compute(scope([tricky["site"]]))
        by_program, _, _, by_site, _ = result.tables
        # OTP: B (discharged and readmitted the same day: once), C, R. A left by transfer.
        # IOP: A (transferred in), C. Total: A, B, C, R.
        assert _rows(by_program, "program") == {
            "Methadone maintenance": 3,
            "Intensive outpatient": 2,
        }
        assert by_site.total["patients"] == 4
        only_otp = census.compute(scope([tricky["site"]], program_id=tricky["otp"]))
        assert only_otp.tables[0].total["patients"] == 3
        both = census.compute(scope([tricky["site"], tricky["east"]]))
        assert _rows(both.tables[3], "site") == {
            "Main Street Clinic (MAIN)": 4,
            "Site EAST (EAST)": 1,
        }
        assert both.tables[3].total["patients"] == 5


def test_admissions_by_hand_on_the_tricky_clinic(app, tricky):
    with app.app_context():
        result = admissions.compute(scope([tricky["site"]]))
        table, discharges = result.tables
        # March at MAIN: A's transfer in (IOP), B's readmission (OTP), R new (OTP).
        rows = {r["program"]: r for r in table.rows}
        assert (
            rows["Methadone maintenance"]["new"],
            rows["Methadone maintenance"]["readmission"],
        ) == (1, 1)
        assert rows["Intensive outpatient"]["transfer"] == 1
        assert table.total["total"] == 3
        # Discharges: A transferred (4) 69 days, B dropped out (2) 69 days, Y completed (1) 68.
        by_code = {r["code"]: r for r in discharges.rows}
        assert [by_code[c]["discharges"] for c in (1, 2, 4)] == [1, 1, 1]
        assert discharges.total["discharges"] == 3
        assert discharges.total["median"] == 69.0
        assert discharges.total["average"] == round((69 + 69 + 68) / 3, 1)


def test_retention_by_hand_on_the_tricky_clinic(app, tricky):
    with app.app_context():
        result = retention.compute(scope([tricky["site"]], start=D(2026, 1, 1), end=D(2026, 3, 31)))
        rows = {r["cohort"]: r for r in result.tables[0].rows}
        # January: A (episode OTP -> IOP ends 05-01: day 116), B (ends 03-15: day 69), Y
        # (ends 03-14: day 68). At 90 days: A only.
        assert rows["2026-01"]["admitted"] == 3
        assert rows["2026-01"]["retained_30"] == 3
        assert rows["2026-01"]["retained_90"] == 1
        # February: C twice (two programs, two episodes); March: B's readmission and R.
        assert rows["2026-02"]["admitted"] == 2
        assert rows["2026-03"]["admitted"] == 2
        only_iop = retention.compute(
            scope(
                [tricky["site"]], start=D(2026, 1, 1), end=D(2026, 3, 31), program_id=tricky["iop"]
            )
        )
        assert only_iop.tables[0].total["admitted"] == 1  # C's IOP; A's transfer is no admission


def test_the_survey_counts_a_patient_on_two_buprenorphine_products_once(
    app, site, make_program, make_patient, make_user
):
    """The national survey asks for patients: G is in the office-based program on
    buprenorphine and in intensive outpatient on buprenorphine-naloxone on the same day."""
    from tests.test_reports_census import order

    bup = make_program("Office buprenorphine", "office_buprenorphine", **NOT_OTP)
    iop = make_program("Intensive outpatient", "intensive_outpatient", **NOT_OTP)
    prescriber = make_user("clinician", is_prescriber=True)
    patient = make_patient("G", "Twice", intake_date=D(2025, 1, 1))
    with app.app_context():
        order(enroll(patient, bup, D(2026, 2, 1)), prescriber, "buprenorphine", D(2026, 2, 1))
        order(
            enroll(patient, iop, D(2026, 2, 1)),
            prescriber,
            "buprenorphine_naloxone",
            D(2026, 2, 1),
        )
        db.session.commit()
        survey = census.compute(scope([site])).tables[4]
    assert {r["substance"]: r["patients"] for r in survey.rows} == {
        "Methadone": 0,
        "Buprenorphine (all products)": 1,
    }


@pytest.mark.parametrize("role", ["staff", "clinician"])
@pytest.mark.parametrize("slug", ["census", "admissions", "retention", "teds"])
def test_clinicians_and_staff_open_no_report_url(client_as, role, slug):
    user = client_as(role)
    for suffix in ("", "/print", "/export.csv", "/export.csv?file=teds-admissions"):
        assert user.get(f"/reports/{slug}{suffix}").status_code == 403


def test_the_audit_of_a_teds_download_names_no_patient(app, tricky, client_as):
    import json

    import sqlalchemy as sa

    from clinic.audit.models import AuditEvent

    admin = client_as("admin")
    query = "date_from=2026-01-01&date_to=2026-03-31"
    assert admin.get(f"/reports/teds?{query}").status_code == 200
    assert admin.get(f"/reports/teds/print?{query}").status_code == 200
    records = _csv(admin.get(f"/reports/teds/export.csv?file=teds-admissions&{query}"))
    assert len(records) == 1 + 8  # A twice (OTP, IOP), B twice, C twice, R, Y; not X
    with app.app_context():
        events = list(
            db.session.scalars(
                sa.select(AuditEvent).where(
                    AuditEvent.entity_type == "report", AuditEvent.patient_id.is_(None)
                )
            )
        )
        # The export also records one event per patient its records name (no details).
        named = list(
            db.session.scalars(
                sa.select(AuditEvent).where(
                    AuditEvent.entity_type == "report", AuditEvent.patient_id.is_not(None)
                )
            )
        )
        with_mrns = {p.mrn for p in db.session.scalars(sa.select(Patient)) if p.mrn} | {"Tricky"}
    assert sorted(e.action for e in events) == ["export", "print", "view"]
    assert {e.action for e in named} == {"export"} and len(named) == 5  # A, B, C, R, Y
    assert all(json.loads(e.details) == {} for e in named)
    for event in events:
        details = json.loads(event.details)
        assert set(details) <= {
            "report",
            "sites",
            "program",
            "medication",
            "from",
            "to",
            "on",
            "file",
            "rows",
            "suppressed",
        }
        assert not any(mrn in event.details for mrn in with_mrns)


@pytest.mark.parametrize(
    ("slug", "query"),
    [
        ("admissions", "medication=aspirin"),
        ("census", "date_from=2026-05-01&date_to=2026-04-30"),
        ("census", "date_from=garbage"),
        ("teds", "on=2026-02-30"),
    ],
)
def test_a_filter_the_report_does_not_read_is_ignored_like_an_unknown_one(client_as, slug, query):
    """The form shows only the report's own filters: an error on another would be a 400
    with no message on the page."""
    admin = client_as("admin")
    assert admin.get(f"/reports/{slug}?{query}").status_code == 200
    assert admin.get(f"/reports/{slug}/export.csv?{query}").status_code == 200
