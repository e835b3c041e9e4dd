"""The keyset pager (clinic/pagination.py) from a real browser: First, Previous and Next
walk the patient list with its search and sort kept, the missing links are disabled and
announced so, and every page passes axe with all impacts."""

from __future__ import annotations

import datetime as dt

from playwright.sync_api import expect

from clinic import pagination
from tests.conftest import PASSWORD


def test_the_pager_walks_the_patient_list_and_back(
    ui, make_patient, make_user, username_of, monkeypatch
):
    monkeypatch.setattr(pagination, "PER_PAGE", 4)
    for i in range(10):
        make_patient(f"Ana{i:02d}", "Smith", date_of_birth=dt.date(1970 + i, 1, 1))
    make_patient("Bo", "Jones")  # not found by the search
    username = username_of(make_user("staff"))
    page = ui.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    ui.check()

    page = ui.goto("/patients/?q=smith&sort=dob&dir=desc", all_impacts=True)
    rows = page.get_by_test_id("patient-row")
    pager = page.get_by_role("navigation", name="Pages of this list")
    expect(rows).to_have_count(4)
    expect(rows.first).to_contain_text("Ana09")  # the youngest first
    expect(pager.get_by_text("Previous")).to_have_attribute("aria-disabled", "true")
    expect(page.get_by_test_id("page-summary")).to_have_text("The first 4; more on the next page.")

    seen = []
    for expected_count in (4, 2):
        seen += rows.all_inner_texts()
        with page.expect_navigation():
            pager.get_by_role("link", name="Next").click()
        ui.check(all_impacts=True)
        expect(rows).to_have_count(expected_count)
    seen += rows.all_inner_texts()
    assert "q=smith" in page.url and "sort=dob" in page.url and "dir=desc" in page.url
    expect(pager.get_by_text("Next")).to_have_attribute("aria-disabled", "true")
    expect(page.get_by_test_id("page-summary")).to_have_text("2 on this page, the end of the list.")
    names = [text.split()[1] for text in seen]
    assert names == [f"Ana{i:02d}" for i in range(9, -1, -1)]  # each once, in order

    with page.expect_navigation():
        pager.get_by_role("link", name="Previous").click()
    ui.check(all_impacts=True)
    expect(rows.first).to_contain_text("Ana05")
    with page.expect_navigation():
        pager.get_by_role("link", name="First").click()
    ui.check(all_impacts=True)
    expect(rows.first).to_contain_text("Ana09")
    expect(pager.get_by_text("First")).to_have_attribute("aria-disabled", "true")
