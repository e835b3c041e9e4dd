"""Nothing typed is lost on the patient pages (issue 9): a form sent after the session
timed out comes back, after the SAME user signs in again, with what was typed — the page
no longer overwrites it with the record's values or today's date — and never for anyone
else (the mechanism: ``clinic.accounts.drafts``; its own tests: test_accounts_drafts.py)."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import time_machine

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.patients import admissions
from clinic.patients.models import Enrollment
from tests.conftest import CSRF_RE, login

RESTORED_MESSAGE = "Your entries were kept while you signed in again."
TYPED_REASON = "Typed before the session ended, kept across sign-in"


def frozen_now() -> dt.datetime:
    return dt.datetime(2026, 11, 29, 15, 0, tzinfo=dt.UTC)  # 09:00 in Chicago


@dataclass
class Case:
    role: str
    url: Callable[[dict], str]
    typed: Callable[[dict], dict]
    shown: tuple[str, ...]  # what the restored page must contain (HTML)


def _discharged(app, enrollment_id: int) -> None:
    with app.app_context():
        enrollment = db.session.get(Enrollment, enrollment_id)
        admissions.discharge(
            enrollment,
            actor=User(id=None, username="setup", all_sites=True),
            discharged_on=dt.date(2026, 11, 1),
            reason=1,
            expected_version=enrollment.version,
        )
        db.session.commit()


CASES = {
    "register": Case(
        "staff",
        lambda r: "/patients/new",
        lambda r: {"first_name": "Rosalind", "last_name": "Quetzal", "intake_date": "2026-11-20"},
        ('value="Rosalind"', 'value="Quetzal"', 'value="2026-11-20"'),
    ),
    "edit": Case(
        "staff",
        lambda r: f"/patients/{r['patient']}/edit",
        lambda r: {
            "version": "1",
            "site_id": str(r["site"]),
            "first_name": "Rosalind",
            "last_name": "Quetzal",
            "date_of_birth": "1980-04-02",
            "phone": "(312) 555-0199",
            "postal_code": "60601",
        },
        ('value="Rosalind"', 'value="Quetzal"', 'value="(312) 555-0199"'),
    ),
    "admit": Case(
        "clinician",
        lambda r: f"/patients/{r['patient']}/admit",
        lambda r: {
            "program_id": str(r["iop"]),
            "admitted_on": "2026-11-20",
            "level_of_care": "3:2.1",
        },
        ('value="2026-11-20"', 'selected value="3:2.1"'),
    ),
    "transfer": Case(
        "clinician",
        lambda r: f"/patients/enrollments/{r['enrollment']}/transfer",
        lambda r: {
            "version": "1",
            "program_id": str(r["iop"]),
            "admitted_on": "2026-11-21",
            "level_of_care": "3:2.5",
        },
        ('value="2026-11-21"', 'selected value="3:2.5"'),
    ),
    "discharge": Case(
        "clinician",
        lambda r: f"/patients/enrollments/{r['enrollment']}/discharge",
        lambda r: {"version": "1", "discharged_on": "2026-11-22", "reason": "3"},
        ('value="2026-11-22"', 'selected value="3"'),
    ),
    "deadlines": Case(
        "clinician",
        lambda r: f"/patients/enrollments/{r['enrollment']}/deadlines",
        lambda r: {"version": "1", "medical_exam_on": "2026-01-09", "assessment_on": "2026-01-12"},
        ('value="2026-01-09"', 'value="2026-01-12"'),
    ),
    "care-plan review": Case(
        "clinician",
        lambda r: f"/patients/enrollments/{r['enrollment']}/reviews",
        lambda r: {"reviewed_on": "2026-11-15"},
        ('value="2026-11-15"',),
    ),
    "correct": Case(
        "clinician",
        lambda r: f"/patients/enrollments/{r['enrollment']}/correct",
        lambda r: {
            "version": "1",
            "primary_counselor_id": "0",
            "level_of_care": "3:3.1",
            "admitted_on": "2026-01-06",
            "reason": TYPED_REASON,
        },
        ('value="2026-01-06"', TYPED_REASON),
    ),
    "undo discharge": Case(
        "clinician",
        lambda r: f"/patients/enrollments/{r['enrollment']}/undo-discharge",
        lambda r: {"version": "2", "reason": TYPED_REASON},
        (TYPED_REASON,),
    ),
}


@pytest.fixture
def records(site, make_patient, make_program, make_enrollment) -> dict:
    patient = make_patient()
    program = make_program()
    return {
        "site": site,
        "patient": patient,
        "program": program,
        "iop": make_program("Intensive outpatient", "intensive_outpatient"),
        "enrollment": make_enrollment(patient, program),
    }


def _token(browser, url: str) -> str:
    page = browser.get(url)
    assert page.status_code == 200, url
    match = CSRF_RE.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {url}"
    return match.group(1)


def _send_after_timeout(app, case: Case, records: dict, username: str):
    """The user opens the page, types, and sends the form 15 minutes later (idle timeout):
    kept, and the browser sent to the sign-in page."""
    browser = app.test_client()
    assert login(browser, username).status_code == 302
    url = case.url(records)
    token = _token(browser, url)
    return browser, url, token


@pytest.mark.parametrize("name", list(CASES))
def test_form_sent_after_the_session_ended_comes_back_filled_for_the_same_user(
    app, make_user, username_of, records, name
):
    case = CASES[name]
    if name == "undo discharge":
        _discharged(app, records["enrollment"])
    username = username_of(make_user(case.role))
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser, url, token = _send_after_timeout(app, case, records, username)
        clock.move_to(start + dt.timedelta(minutes=15))
        sent = browser.post(url, data={"csrf_token": token, **case.typed(records)})
        assert sent.status_code == 303, sent.get_data(as_text=True)
        assert sent.headers["Location"] == f"/login?next={url}"

        back = login(browser, username, url=sent.headers["Location"])
        assert back.status_code == 302
        assert back.headers["Location"] == url
        response = browser.get(url)
        assert response.status_code == 200
        page = html.unescape(response.get_data(as_text=True))
        assert RESTORED_MESSAGE in page
        for expected in case.shown:
            assert expected in page, expected
        # Shown once: the next visit shows the record again.
        again = html.unescape(browser.get(url).get_data(as_text=True))
        assert RESTORED_MESSAGE not in again
        assert case.shown[0] not in again


@pytest.mark.parametrize("name", list(CASES))
def test_form_kept_for_one_user_is_never_shown_to_another(
    app, make_user, username_of, records, name
):
    case = CASES[name]
    if name == "undo discharge":
        _discharged(app, records["enrollment"])
    username = username_of(make_user(case.role))
    colleague = username_of(make_user(case.role))
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser, url, token = _send_after_timeout(app, case, records, username)
        clock.move_to(start + dt.timedelta(minutes=15))
        sent = browser.post(url, data={"csrf_token": token, **case.typed(records)})
        assert sent.status_code == 303

        back = login(browser, colleague, url=sent.headers["Location"])
        assert back.status_code == 302
        page = html.unescape(browser.get(url).get_data(as_text=True))
        assert RESTORED_MESSAGE not in page
        for expected in case.shown:
            assert expected not in page, expected
