"""The report framework (clinic/reports/core.py, filters.py, charts.py, views.py): filters
scoped to the user's sites, small-cell suppression in exports, charts as SVG with a text
alternative, CSV escaping, and the audit of every view, print and export."""

from __future__ import annotations

import base64
import csv
import dataclasses
import datetime as dt
import io
import json
import re

import pytest
import sqlalchemy as sa

from clinic.audit.models import AuditEvent
from clinic.extensions import db
from clinic.reports import charts
from clinic.reports.core import (
    REPORTS,
    SMALL_CELL_TEXT,
    Chart,
    ChartKind,
    Column,
    FilterName,
    Kind,
    Report,
    ReportResult,
    Table,
    percent,
    register_report,
    suppressed,
)
from clinic.reports.filters import MedicationGroup, last_twelve_months, quarter_to_date

SLUG = "zz-framework-check"
SEEN: list = []


def _compute(filters) -> ReportResult:
    SEEN.append(filters)
    table = Table(
        "by_site",
        "Patients by site",
        [
            Column("site", "Site"),
            Column("patients", "Patients", Kind.COUNT),
            Column("share", "Share", Kind.PERCENT, of="patients"),
            Column("average", "Average days", Kind.NUMBER),
        ],
        [
            {"site": '=HYPERLINK("x")', "patients": 5, "share": 16.7, "average": 3.25},
            {"site": "North", "patients": 25, "share": 83.3, "average": None},
        ],
        total={"site": "Total", "patients": 30, "share": 100.0, "average": 2.0},
    )
    other = Table("empty", "Nothing here", [Column("x", "X")], [], empty="No rows at all.")
    return ReportResult(
        [table, other],
        Chart(ChartKind.BAR, "Patients by site", ["South", "North"], [("Patients", [5, 25])]),
        notes=["Counted on the day."],
        files={"extra-file": (["A", "B"], [["+1", 2]])},
    )


@pytest.fixture
def check_report():
    SEEN.clear()
    report = register_report(
        Report(
            slug=SLUG,
            title="Framework check",
            summary="A report used by the framework's tests.",
            filters=frozenset(
                {FilterName.SITE, FilterName.PROGRAM, FilterName.MEDICATION, FilterName.PERIOD}
            ),
            compute=_compute,
            default_period=quarter_to_date,
            order=999,
        )
    )
    yield report
    REPORTS.pop(SLUG, None)


def _events(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        return list(
            db.session.scalars(
                sa.select(AuditEvent)
                .where(AuditEvent.action == action, AuditEvent.entity_type == "report")
                .order_by(AuditEvent.seq)
            )
        )


def test_percent_and_small_cells():
    assert percent(1, 3) == 33.3
    assert percent(0, 0) is None
    assert percent(None, 4) is None
    table = Table(
        "t",
        "T",
        [
            Column("n", "N", Kind.COUNT),
            Column("p", "P", Kind.PERCENT, of="n"),
            Column("q", "Q", Kind.PERCENT),
            Column("m", "M", Kind.NUMBER),
        ],
        [],
    )
    assert suppressed(table, {"n": 10, "p": 50.0, "q": 1.0, "m": 5}, enabled=True) == [
        SMALL_CELL_TEXT,
        SMALL_CELL_TEXT,
        1.0,
        5,
    ]
    # Zero is not a small cell (nothing to re-identify), 11 is not either.
    assert suppressed(table, {"n": 0, "p": None, "q": None, "m": 1}, enabled=True) == [
        0,
        None,
        None,
        1,
    ]
    assert suppressed(table, {"n": 11, "p": 100.0, "q": 2.0, "m": 3}, enabled=True) == [
        11,
        100.0,
        2.0,
        3,
    ]
    assert suppressed(table, {"n": 3, "p": 5.0, "q": 2.0, "m": 3}, enabled=False) == [
        3,
        5.0,
        2.0,
        3,
    ]


def test_default_periods():
    assert quarter_to_date(dt.date(2026, 11, 29)) == (dt.date(2026, 10, 1), dt.date(2026, 11, 29))
    assert quarter_to_date(dt.date(2026, 3, 31)) == (dt.date(2026, 1, 1), dt.date(2026, 3, 31))
    assert last_twelve_months(dt.date(2026, 11, 29)) == (
        dt.date(2025, 11, 1),
        dt.date(2026, 10, 31),
    )
    assert last_twelve_months(dt.date(2026, 1, 1)) == (dt.date(2025, 1, 1), dt.date(2025, 12, 31))


def test_medication_groups_hold_every_product():
    groups = [MedicationGroup.members(g) for g in MedicationGroup.LABELS]
    assert sum(len(g) for g in groups) == 6
    assert [m.value for m in MedicationGroup.members("naltrexone")] == [
        "naltrexone",
        "xr_naltrexone",
    ]


def test_chart_is_deterministic_svg_with_a_text_alternative():
    chart = Chart(
        ChartKind.LINE,
        "Retention by cohort",
        ["Day 0", "Day 30", "Day 90"],
        [("2026-01", [100.0, 80.0, None]), ("2026-02", [100.0, 75.5, 60.0])],
        percent=True,
    )
    svg = charts.render_svg(chart)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "<script" not in svg
    assert charts.render_svg(chart) == svg
    alt = charts.alt_text(chart)
    assert alt.startswith("Line chart: Retention by cohort.")
    assert "2026-02: Day 0 100.0 %, Day 30 75.5 %, Day 90 60.0 %" in alt
    assert "Day 90 no value" in alt
    url = charts.data_url(svg)
    assert base64.b64decode(url.split(",", 1)[1]).decode() == svg
    for kind in (ChartKind.BAR, ChartKind.STACKED_BAR):
        bars = Chart(kind, "Bars", ["A", "B"], [("x", [1, 2]), ("y", [3, None])])
        assert "<svg" in charts.render_svg(bars)
    assert charts.alt_text(Chart(ChartKind.BAR, "Empty", [], [])) == "Bar chart: Empty. No data."


def test_long_charts_say_the_rest_is_in_the_table():
    categories = [f"C{i}" for i in range(30)]
    alt = charts.alt_text(Chart(ChartKind.BAR, "Many", categories, [("", list(range(30)))]))
    assert "C23 23" in alt and "C24" not in alt and "and 6 more in the table" in alt


def test_report_page_shows_tables_chart_and_notes(app, client_as, check_report):
    admin = client_as("admin")
    page = admin.get(f"/reports/{SLUG}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-testid="report-chart"' in html and "data:image/svg+xml;base64," in html
    assert 'alt="Bar chart: Patients by site. South 5, North 25."' in html
    assert "16.7 %" in html and "3.2" in html and "No rows at all." in html
    assert "Counted on the day." in html
    assert f"/reports/{SLUG}/export.csv?table=by_site" in html
    assert f"/reports/{SLUG}/print" in html
    index = admin.get("/reports/").get_data(as_text=True)
    assert "Framework check" in index
    views = _events(app, "view")
    assert [e.entity_id for e in views] == [SLUG]
    details = json.loads(views[0].details)
    assert details["report"] == SLUG and details["from"] and details["to"]


def test_print_layout_is_recorded_as_print(app, client_as, check_report):
    admin = client_as("admin")
    html = admin.get(f"/reports/{SLUG}/print?medication=methadone").get_data(as_text=True)
    assert "data-print" in html and "Show</button>" not in html
    assert "Methadone" in html
    (event,) = _events(app, "print")
    assert json.loads(event.details)["medication"] == "methadone"


def test_csv_export_escapes_formulas_and_is_audited(app, client_as, check_report):
    admin = client_as("admin")
    response = admin.get(f"/reports/{SLUG}/export.csv?table=by_site")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert (
        "attachment; filename=zz-framework-check-by_site-"
        in response.headers["Content-Disposition"]
    )
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["Site", "Patients", "Share", "Average days"]
    assert rows[1] == ['\'=HYPERLINK("x")', "5", "16.7", "3.25"]
    assert rows[-1] == ["Total", "30", "100.0", "2.0"]
    (event,) = _events(app, "export")
    details = json.loads(event.details)
    assert details["file"] == "zz-framework-check-by_site" and details["rows"] == 3
    assert details["suppressed"] is False
    extra = admin.get(f"/reports/{SLUG}/export.csv?file=extra-file").get_data(as_text=True)
    assert extra.splitlines() == ["A,B", "'+1,2"]
    assert admin.get(f"/reports/{SLUG}/export.csv?table=nope").status_code == 404
    assert admin.get(f"/reports/{SLUG}/export.csv?file=nope").status_code == 404


def test_suppression_writes_small_counts_as_under_eleven(app, client_as, check_report):
    app.config["SUPPRESS_SMALL_CELLS"] = True
    admin = client_as("admin")
    rows = list(
        csv.reader(io.StringIO(admin.get(f"/reports/{SLUG}/export.csv").get_data(as_text=True)))
    )
    assert rows[1][1:3] == [SMALL_CELL_TEXT, SMALL_CELL_TEXT]
    assert rows[2][1:3] == ["25", "83.3"]
    (event,) = _events(app, "export")
    assert json.loads(event.details)["suppressed"] is True


def test_filters_default_to_the_users_sites(app, client_as, make_site, check_report, site):
    other = make_site("OTHR")
    admin = client_as("admin", site_ids=[site, other])
    assert admin.get(f"/reports/{SLUG}").status_code == 200
    assert SEEN[-1].site_ids == tuple(sorted((site, other)))
    assert SEEN[-1].single_site is False
    assert admin.get(f"/reports/{SLUG}?site={other}").status_code == 200
    assert SEEN[-1].site_ids == (other,) and SEEN[-1].single_site is True


def test_a_site_outside_the_users_sites_is_refused_next_to_the_field(
    app, client_as, make_site, check_report
):
    other = make_site("OTHR")
    admin = client_as("admin")
    response = admin.get(f"/reports/{SLUG}?site={other}&date_from=2026-01-01")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert re.search(r'id="site-error"[^>]*>\s*Not a valid choice', html)
    assert 'value="2026-01-01"' in html  # the user's other input is kept
    assert SEEN == []
    assert admin.get(f"/reports/{SLUG}/export.csv?site={other}").status_code == 400
    assert _events(app, "export") == []


def test_a_program_of_another_site_is_refused(
    app, client_as, make_site, make_program, check_report, site
):
    other = make_site("OTHR")
    admin = client_as("admin", site_ids=[site, other])
    program = make_program(site_id=other)
    response = admin.get(f"/reports/{SLUG}?site={site}&program={program}")
    assert response.status_code == 400
    assert "This program is not at the chosen site." in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("date_from=2026-05-01&date_to=2026-04-30", "The To date is before the From date"),
        ("date_from=2020-01-01&date_to=2026-01-01", "Choose a period of at most 5 years."),
        ("date_from=1999-12-31", "Enter a date from 2000-01-01"),
        ("date_to=not-a-date", "Enter a valid date."),
        ("medication=aspirin", "Not a valid choice"),
        ("program=99999999999", "Not a valid choice"),
    ],
)
def test_bad_filters_are_refused_with_a_message(client_as, check_report, query, message):
    response = client_as("admin").get(f"/reports/{SLUG}?{query}")
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert SEEN == []


def test_control_characters_in_a_filter_are_refused_at_the_edge(client_as, check_report):
    assert client_as("admin").get(f"/reports/{SLUG}?date_from=%00").status_code == 400
    assert SEEN == []


def test_an_unknown_report_is_not_found(client_as):
    admin = client_as("admin")
    assert admin.get("/reports/no-such-report").status_code == 404
    assert admin.get("/reports/no-such-report/export.csv").status_code == 404


@pytest.mark.parametrize("role", ["staff", "clinician"])
def test_only_administrators_read_reports(client_as, check_report, role):
    user = client_as(role)
    for url in (
        "/reports/",
        f"/reports/{SLUG}",
        f"/reports/{SLUG}/print",
        f"/reports/{SLUG}/export.csv",
    ):
        assert user.get(url).status_code == 403
    assert SEEN == []


def test_an_organisation_wide_administrator_counts_every_site(
    app, client_as, make_site, check_report, site
):
    other = make_site("OTHR")
    admin = client_as("admin", site_ids=[], all_sites=True)
    assert admin.get(f"/reports/{SLUG}").status_code == 200
    assert SEEN[-1].site_ids == tuple(sorted((site, other)))
    assert admin.get(f"/reports/{SLUG}?site={other}").status_code == 200
    assert SEEN[-1].site_ids == (other,)


def test_the_print_layout_says_when_who_and_that_it_is_confidential(client_as, check_report):
    html = (
        client_as("admin", full_name="Dana Director")
        .get(f"/reports/{SLUG}/print")
        .get_data(as_text=True)
    )
    assert re.search(r"Printed \d{4}-\d{2}-\d{2} \d{2}:\d{2} \S+ by Dana Director", html)
    assert "42 CFR Part 2" in html


def test_a_chart_with_nothing_to_draw_is_left_out(client_as, check_report, monkeypatch):
    def empty(filters):
        result = _compute(filters)
        result.chart = Chart(ChartKind.BAR, "Nothing", ["A", "B"], [("x", [0, None])])
        return result

    monkeypatch.setitem(REPORTS, SLUG, dataclasses.replace(REPORTS[SLUG], compute=empty))
    html = client_as("admin").get(f"/reports/{SLUG}").get_data(as_text=True)
    assert 'data-testid="report-chart"' not in html
    assert "Patients by site" in html  # the tables are still there


def test_reports_run_without_jit_on_postgresql(app, check_report):
    from clinic.reports.core import run
    from clinic.reports.filters import ReportFilters

    with app.app_context():
        day = dt.date(2026, 1, 1)
        run(REPORTS[SLUG], ReportFilters((), None, None, day, day, day, day, False))
        if db.session.get_bind().dialect.name == "postgresql":
            assert db.session.execute(sa.text("SHOW jit")).scalar() == "off"
            assert db.session.execute(sa.text("SHOW work_mem")).scalar() == "64MB"
            db.session.rollback()
            assert db.session.execute(sa.text("SHOW work_mem")).scalar() != "64MB"


def test_patients_a_report_names_get_an_audit_event_each(
    app, client_as, check_report, monkeypatch, make_patient, site
):
    ana, ben = make_patient("Ana", "Named"), make_patient("Ben", "Named")

    def naming(filters):
        result = _compute(filters)
        result.named_patients = {"by_site": [(ana, site), (ben, site)], "extra-file": [(ana, site)]}
        return result

    monkeypatch.setitem(REPORTS, SLUG, dataclasses.replace(REPORTS[SLUG], compute=naming))
    admin = client_as("admin")
    admin.get(f"/reports/{SLUG}")
    admin.get(f"/reports/{SLUG}/print")
    admin.get(f"/reports/{SLUG}/export.csv?table=empty")  # names nobody
    admin.get(f"/reports/{SLUG}/export.csv?file=extra-file")
    for action, patients in (("view", [ana, ben]), ("print", [ana, ben]), ("export", [ana])):
        events = _events(app, action)
        assert sorted(e.patient_id for e in events if e.patient_id) == sorted(patients), action
        assert all(e.entity_id == SLUG for e in events)
