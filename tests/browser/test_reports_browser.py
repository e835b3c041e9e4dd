"""The reports and the administrator's Friday (SCENARIOS.md, issue 14) in Chromium.

On the demo data (``flask seed-demo``: two years of history at both sites) the director
checks the census by program and medication from the home page's census tile, this
quarter's admissions and discharges by reason, 90/180-day retention for last year's
cohorts; downloads the continuity-of-pharmacotherapy figures as CSV; opens the counseling
report's print layout; and from the dashboard's tile reviews and acknowledges the week's
one emergency (break-glass) access with its reason.

Then every report of the index, each opened by its link: its chart is an image that
decodes, with a text alternative naming its kind; its tables have headers and rows; its
first CSV downloads with the table's header row and data; its print layout shows the
same scope without the filters. Changing a filter changes the scope line (and the CSV
link keeps it); a refused filter shows its message next to the field, the other filters
kept. Every page passes axe.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
import sqlalchemy as sa
from flask.cli import FlaskGroup
from playwright.sync_api import expect

from clinic.accounts.services import create_user
from clinic.cli import DEMO_BREAK_GLASS_REASON
from clinic.extensions import db
from clinic.reports.core import REPORTS
from clinic.sites.models import Site
from clinic.sites.time import site_today
from tests.browser.test_patients_browser import load, sign_in
from tests.conftest import PASSWORD

ALT_KIND = re.compile(r"^(Bar chart|Stacked bar chart|Line chart): \S")
BREAK_GLASS_REASON = DEMO_BREAK_GLASS_REASON  # seed-demo's one emergency access


@pytest.fixture
def friday(app):
    """The demo data, a director of both sites (known password) and this week's one
    emergency access (seed-demo's: the demo prescriber, of MAIN only, opened an EAST
    patient's chart)."""
    cli = FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)
    result = app.test_cli_runner().invoke(cli, args=["seed-demo"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        sites = list(db.session.scalars(sa.select(Site).order_by(Site.code)))
        director = create_user(
            actor=None,
            username="director",
            full_name="Dana Director",
            role="admin",
            password=PASSWORD,
            sites=sites,
        )
        director.all_sites, director.sites = True, []  # as the demo's director
        db.session.commit()
        today = min(site_today(s) for s in sites)
        site_names = {s.code: f"{s.name} ({s.code})" for s in sites}
    return {"today": today, "sites": site_names}


def follow(ui, locator):
    """Click ``locator`` (a link or a submit button) and check the page it loads."""
    load(ui, locator.click)
    ui.check()
    return ui.page


def scope_of(page) -> str:
    return page.get_by_test_id("report-scope").inner_text()


def to_reports(ui, title: str):
    """From any report page (or its print layout), back to the index, then into ``title``."""
    page = ui.page
    if not page.url.rstrip("/").endswith("/reports"):
        follow(
            ui,
            page.get_by_role("navigation", name="Main navigation").get_by_role(
                "link", name="Reports"
            ),
        )
    item = page.locator(".list-group-item").filter(has=page.get_by_text(title, exact=True))
    follow(ui, item)
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    return page


def expect_chart(page) -> str:
    """The chart: an image that decoded, whose text alternative names its kind."""
    chart = page.get_by_test_id("report-chart")
    expect(chart).to_have_attribute("alt", ALT_KIND)
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-testid=report-chart]');"
        " return i && i.complete && i.naturalWidth > 0 && i.naturalHeight > 0 }"
    )
    return chart.get_attribute("alt")


def page_header(table) -> list[str]:
    return [t.strip() for t in table.locator("thead th").all_inner_texts()]


def download_csv(page, link) -> tuple[str, list[list[str]]]:
    with page.expect_download() as info:
        link.click()
    download = info.value
    with open(download.path(), encoding="utf-8") as f:
        text = f.read()
    return download.suggested_filename, list(csv.reader(io.StringIO(text)))


def test_the_director_s_friday_and_every_report(ui, app, friday):
    page = sign_in(ui, "director")
    today = friday["today"]

    # --- Friday, in order ------------------------------------------------------------
    # The census tile links to the census: by program and by medication, today.
    census_tile = page.locator("#dashboard .card").filter(has_text="Census today")
    expect(census_tile).to_contain_text("active enrollments")
    follow(ui, census_tile.get_by_role("link", name="Open the census report"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Census")
    expect(page.get_by_test_id("report-scope")).to_have_text(
        f"On {today.isoformat()} · all my sites (2)"
    )
    by_program = page.get_by_role("table", name="Patients in treatment by program")
    by_medication = page.get_by_role("table", name="Patients in treatment by medication")
    expect(by_program.locator("tbody tr").first).to_be_visible()
    expect(by_medication.locator("tbody tr", has_text="Methadone")).to_be_visible()
    # Methadone patients only: the scope says so; no other medication is counted.
    page.get_by_label("Medication", exact=True).select_option(label="Methadone")
    follow(ui, page.get_by_role("button", name="Show"))
    expect(page.get_by_test_id("report-scope")).to_have_text(
        f"On {today.isoformat()} · all my sites (2) · Methadone"
    )
    expect(page.get_by_label("Medication", exact=True)).to_have_value("methadone")
    expect(by_medication.locator("tbody tr").first).to_contain_text("Methadone")
    others = re.compile("buprenorphine|naltrexone", re.I)
    expect(by_medication.locator("tbody tr", has_text=others)).to_have_count(0)

    # This quarter's admissions and discharges by TEDS reason: the default period.
    to_reports(ui, "Admissions and discharges")
    quarter_start = dt.date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    expect(page.get_by_test_id("report-scope")).to_have_text(
        f"{quarter_start.isoformat()} to {today.isoformat()} · all my sites (2)"
    )
    discharges = page.get_by_role("table", name=re.compile("Discharges", re.I))
    expect(discharges.locator("thead")).to_contain_text("Reason for discharge")
    expect(discharges.locator("tbody tr", has_text="Treatment completed")).to_be_visible()

    # 90/180-day retention for last year's cohorts: January to December of last year.
    to_reports(ui, "Retention")
    page.get_by_label("From", exact=True).fill(f"{today.year - 1}-01-01")
    page.get_by_label("To", exact=True).fill(f"{today.year - 1}-12-31")
    follow(ui, page.get_by_role("button", name="Show"))
    expect(page.get_by_test_id("report-scope")).to_have_text(
        f"{today.year - 1}-01-01 to {today.year - 1}-12-31 · all my sites (2)"
    )
    cohorts = page.get_by_test_id("report-table-cohorts")
    header = page_header(cohorts)
    assert "Retained at 90 days" in header and "Retained at 180 days" in header
    months = cohorts.locator("tbody tr td:first-child").all_inner_texts()
    assert months and all(m.startswith(f"{today.year - 1}-") for m in months), months
    expect_chart(page)

    # The continuity-of-pharmacotherapy figures as CSV, for the state.
    to_reports(ui, "Continuity of pharmacotherapy")
    link = page.get_by_role("link", name=re.compile(r"^CSV: ")).first
    name, rows = download_csv(page, link)
    assert name.startswith("continuity-") and name.endswith(".csv"), name
    assert "Share with 180 days or more" in rows[0]
    assert len(rows) >= 2 and all(len(r) == len(rows[0]) for r in rows), rows

    # The counseling no-show report, printed for the staff meeting.
    to_reports(ui, "Counseling attendance and no-shows")
    scope = scope_of(page)
    follow(ui, page.get_by_role("link", name="Print layout"))
    expect(page.get_by_test_id("report-scope")).to_have_text(scope)
    expect(page.get_by_role("table", name=re.compile("by clinician", re.I))).to_contain_text(
        "No-show rate"
    )
    expect(page.get_by_role("form", name="Report filters")).to_have_count(0)
    page.emulate_media(media="print")
    expect(page.get_by_role("button", name="Print")).to_be_hidden()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    page.emulate_media(media="null")

    # The audit trail: this week's one emergency access, its reason, acknowledged.
    follow(ui, page.get_by_role("link", name="clinic", exact=True))
    tile = page.locator("#dashboard .card").filter(has_text="Emergency accesses to review")
    expect(tile).to_contain_text("1 emergency access to acknowledge")
    follow(ui, tile.get_by_role("link", name="Open the emergency access review"))
    row = page.get_by_role("row").filter(has_text=BREAK_GLASS_REASON)
    expect(row).to_have_count(1)
    follow(ui, row.get_by_role("link", name=re.compile("^Review")))
    page.get_by_label("Appropriate: the reason justified the access").check()
    page.get_by_label(re.compile("^I reviewed this access")).check()
    follow(ui, page.get_by_role("button", name="Acknowledge"))
    expect(page.get_by_text("Acknowledged: the review's outcome is recorded.")).to_be_visible()
    follow(ui, page.get_by_role("link", name="clinic", exact=True))
    expect(tile).to_contain_text("No emergency accesses to acknowledge.")

    # --- Every report, by its link on the index --------------------------------------
    follow(ui, page.get_by_role("link", name="Open the reports"))
    titles = [r.title for r in sorted(REPORTS.values(), key=lambda r: (r.order, r.title))]
    expect(page.locator(".list-group-item .fw-semibold")).to_have_text(titles)
    for report in sorted(REPORTS.values(), key=lambda r: (r.order, r.title)):
        to_reports(ui, report.title)
        assert page.url.endswith(f"/reports/{report.slug}"), page.url
        expect_chart(page)
        tables = page.locator("table.report-table")
        assert tables.count() >= 1, report.slug
        for table in tables.all():
            header = page_header(table)
            assert header and all(header), (report.slug, header)
            for body_row in table.locator("tbody tr").all()[:3]:
                assert body_row.locator("td").count() == len(header), report.slug
        first = tables.first
        expect(first.locator("tbody tr").first).to_be_visible()
        name, rows = download_csv(page, page.get_by_role("link", name=re.compile(r"^CSV: ")).first)
        assert name.startswith(f"{report.slug}-") and name.endswith(".csv"), name
        assert rows[0] == page_header(first), (report.slug, rows[0])
        assert len(rows) >= 2 and rows[1] and rows[1][0], (report.slug, rows[:2])
        scope = scope_of(page)
        follow(ui, page.get_by_role("link", name="Print layout"))
        assert page.url.split("?")[0].endswith(f"/reports/{report.slug}/print"), page.url
        expect(page.get_by_test_id("report-scope")).to_have_text(scope)
        expect(page.get_by_role("form", name="Report filters")).to_have_count(0)
        expect(page.get_by_test_id("report-chart")).to_have_attribute("alt", ALT_KIND)

    # --- A filter changes the scope; a refused filter is explained by its field -------
    to_reports(ui, "Referrals and consents")
    before = scope_of(page)
    page.get_by_label("Site", exact=True).select_option(label=friday["sites"]["EAST"])
    follow(ui, page.get_by_role("button", name="Show"))
    after = scope_of(page)
    assert after != before and after.endswith(friday["sites"]["EAST"]), (before, after)
    csv_link = page.get_by_role("link", name=re.compile(r"^CSV: ")).first
    expect(csv_link).to_have_attribute("href", re.compile(r"[?&]site=\d+"))
    # The demo's referrals are all at MAIN: EAST has nothing to chart, so no chart is drawn.
    expect(page.get_by_test_id("report-chart")).to_have_count(0)
    expect(page.get_by_text("No referrals were created in this period.")).to_be_visible()

    page.get_by_label("From", exact=True).fill(f"{today.year}-03-31")
    page.get_by_label("To", exact=True).fill(f"{today.year}-03-01")
    follow(ui, page.get_by_role("button", name="Show"))
    date_to = page.get_by_label("To", exact=True)
    expect(date_to).to_have_attribute("aria-invalid", "true")
    expect(date_to).to_have_accessible_description(re.compile("The To date is before the From"))
    expect(page.get_by_label("From", exact=True)).to_have_value(f"{today.year}-03-31")
    expect(page.get_by_label("From", exact=True)).not_to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Site", exact=True)).to_have_value(re.compile(r"^\d+$"))
    expect(page.get_by_test_id("report-chart")).to_have_count(0)
