"""What trying issue 9's pages in a browser found: the audit viewer's "several patients
match" list had links at 3.85:1 on the blue notice (axe color-contrast, serious)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.browser.test_audit_browser import sign_in


@pytest.fixture
def namesakes(site, make_site, make_patient):
    east = make_site("EAST", "Eastside Recovery Center")
    born = dt.date(1991, 7, 30)
    make_patient("Ana", "Torres", date_of_birth=born)
    make_patient("Ana", "Torres", date_of_birth=born, site_id=east)


def test_audit_viewer_patient_choices_pass_axe(ui, make_user, username_of, namesakes):
    admin = make_user("admin", all_sites=True)
    page = sign_in(ui, username_of(admin))
    ui.goto("/admin/audit/?patient=torres", all_impacts=True)
    choices = page.get_by_test_id("filter-notice").get_by_role("link")
    assert choices.count() == 2
    choices.first.click()
    ui.check(all_impacts=True)
    assert "patient=MAIN-" in page.url
