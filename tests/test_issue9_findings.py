"""What trying issue 9's pages as a new user and as an attacker found, each as a test:

- under emergency access the chart offered "Admit to a program", "Correct…", "Discharge"
  and the other change buttons, every one a 403: the access is read-only, so the chart
  offers none of them;
- a search of only punctuation or symbols ("%", "*", "_") listed every patient, and the
  audit viewer's patient filter offered all of them as "several patients match";
- the patient access report said "Viewed the record" where a clinician or the front desk
  saw only the site and MRN (emergency-access search, duplicate check at registration).
"""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest

from clinic.audit import display
from tests.test_patients_registry import send

BORN = dt.date(1991, 7, 30)
REASON = "Unconscious at the EAST emergency room"
CHANGE_LINKS = ("/admit", "/edit", "/entered-in-error", "/correct", "/transfer", "/discharge")


def words_of(response) -> str:
    page = html.unescape(response.get_data(as_text=True))
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def patient_links(response, patient_id: int, enrollment_id: int) -> set[str]:
    page = response.get_data(as_text=True)
    links = set(re.findall(rf'href="(/patients/{patient_id}/[^"]*)"', page))
    links |= set(re.findall(rf'href="(/patients/enrollments/{enrollment_id}/[^"]*)"', page))
    return links


@pytest.fixture
def east(app, site, make_site, make_patient, make_program, make_enrollment):
    east_site = make_site("EAST", "Eastside Recovery Center")
    patient = make_patient("Ana", "Torres", date_of_birth=BORN, site_id=east_site)
    program = make_program(site_id=east_site)
    enrollment = make_enrollment(patient, program)
    return {"site": east_site, "patient": patient, "enrollment": enrollment}


def mrn_of(app, patient_id: int) -> str:
    from clinic.extensions import db
    from clinic.patients.models import Patient

    with app.app_context():
        return db.session.get(Patient, patient_id).mrn


# --- emergency access is read-only: the chart offers nothing to change ----------------------


def test_emergency_access_chart_offers_no_change_buttons(app, east, client_as):
    patient, enrollment = east["patient"], east["enrollment"]
    # At the patient's own site the same role sees the buttons (the test can fail).
    local = client_as("clinician", site_ids=[east["site"]]).get(f"/patients/{patient}")
    assert {link.rsplit("/", 1)[-1] for link in patient_links(local, patient, enrollment)} >= {
        "admit",
        "correct",
        "transfer",
        "discharge",
        "deadlines",
    }
    clinician = client_as("clinician")  # works at MAIN only
    granted = send(
        clinician, "/patients/break-glass", {"mrn": mrn_of(app, patient), "reason": REASON}
    )
    assert granted.status_code == 302
    chart = clinician.get(f"/patients/{patient}")
    assert chart.status_code == 200
    assert "You opened this record with emergency access." in words_of(chart)
    assert patient_links(chart, patient, enrollment) == set()
    for label in ("Admit to a program", "Correct…", "Transfer", "Discharge"):
        assert f">{label}</a>" not in chart.get_data(as_text=True)
    # And each of those pages is refused anyway.
    for path in CHANGE_LINKS[:3]:
        assert clinician.get(f"/patients/{patient}{path}").status_code == 403
    for path in CHANGE_LINKS[3:]:
        assert clinician.get(f"/patients/enrollments/{enrollment}{path}").status_code == 403


def test_an_administrator_with_all_sites_still_sees_the_change_buttons(app, east, client_as):
    admin = client_as("admin", all_sites=True)
    chart = admin.get(f"/patients/{east['patient']}")
    assert "emergency access" not in words_of(chart)
    assert f'href="/patients/enrollments/{east["enrollment"]}/correct"' in chart.get_data(
        as_text=True
    )


# --- a search of only symbols finds nobody ---------------------------------------------------


@pytest.mark.parametrize("text", ["%", "_", "*", "%%", "' --"])
def test_a_search_of_only_symbols_finds_nobody(app, site, make_patient, client_as, text):
    make_patient("Ana", "Torres")
    make_patient("Jo", "Smith")
    staff = client_as("staff")
    assert len(re.findall(r'href="/patients/\d+">', staff.get("/patients/").text)) == 2
    response = staff.get("/patients/", query_string={"q": text})
    assert response.status_code == 200
    assert not re.findall(r'href="/patients/\d+">', response.get_data(as_text=True))
    assert f"No patient matches “{text}”." in words_of(response)


def test_a_name_search_still_finds_by_the_start_of_names(app, site, make_patient, client_as):
    """The counterpart: words with letters still search as before."""
    make_patient("Ana", "Torres")
    make_patient("Jo", "Smith")
    staff = client_as("staff")
    for text in ("tor", "tor%", "%tor", "ana tor"):
        response = staff.get("/patients/", query_string={"q": text})
        assert response.status_code == 302, text
    assert staff.get("/patients/", query_string={"q": "   "}).status_code == 200


def test_audit_viewer_patient_filter_of_symbols_matches_no_patient(
    app, site, make_patient, client_as
):
    make_patient("Ana", "Torres")
    make_patient("Jo", "Smith")
    admin = client_as("admin")
    response = admin.get("/admin/audit/", query_string={"patient": "%"})
    assert response.status_code == 200
    page = words_of(response)
    assert "Several patients match" not in page
    assert "No patient at your sites matches “%”." in page


# --- the access report says what was disclosed, not "viewed the record" ----------------------


def test_site_and_mrn_only_disclosures_read_as_such():
    for entity_type in ("duplicate_warning", "break_glass_lookup"):
        words = display.describe("view", entity_type, {"shown": ["site", "mrn"]})
        assert words.startswith("Saw only the site and MRN"), words
    assert display.describe("view", "patient", {}) == "Viewed the record"


def test_access_report_lists_an_emergency_search_as_site_and_mrn_only(app, east, client_as):
    clinician = client_as("clinician")
    found = send(
        clinician,
        "/patients/break-glass/find",
        {"name": "Torres", "date_of_birth": BORN.isoformat()},
    )
    assert mrn_of(app, east["patient"]) in words_of(found)
    admin = client_as("admin", all_sites=True)
    report = words_of(admin.get(f"/admin/audit/patients/{east['patient']}"))
    assert "Saw only the site and MRN (emergency-access search)" in report
    assert "Viewed the record" not in report


# --- every wrong field says so in the same answer --------------------------------------------


def test_phone_and_zip_errors_show_with_the_missing_fields_in_one_answer(app, site, client_as):
    """A wrong phone and ZIP were only reported after the required fields were filled in:
    a second round trip. Now every field's message comes back at once."""
    from tests.test_patients_registry import field_error

    staff = client_as("staff")
    response = send(
        staff,
        "/patients/new",
        {
            "first_name": "Val",
            "last_name": "Check",
            "date_of_birth": "1990-01-01",
            "intake_date": "2026-01-05",
            "sex_at_birth": "",
            "phone": "call me maybe",
            "emergency_contact_phone": "12",
            "postal_code": "ABCDE",
        },
    )
    assert response.status_code == 200
    page = html.unescape(response.get_data(as_text=True))
    assert field_error(page, "sex_at_birth") == "This field is required."
    for field in ("phone", "emergency_contact_phone"):
        assert field_error(page, field) == (
            "Enter a phone number with its area code, for example (312) 555-0147."
        )
    assert field_error(page, "postal_code") == (
        "Enter a 5-digit ZIP code, or ZIP+4 such as 60601-1234."
    )
    assert page.count("Enter a 5-digit ZIP code") == 1  # once, next to the field
    assert 'value="call me maybe"' in page  # the input is kept


# --- the tester's leftovers (P2): double clicks on edit forms, deadline badges, open
# --- emergency accesses, dates as people read them, US states, a refused hidden site,
# --- an empty deadlines form ---------------------------------------------------------------

ALREADY_SENT = "This form had already been sent: it was saved once."
CONFLICT = "Someone else changed this record"


def days_ago(n: int) -> dt.date:
    from tests.test_patients_registry import today

    return today() - dt.timedelta(days=n)


@pytest.fixture
def ward(app, site, make_user, make_patient, make_program, make_enrollment):
    """A patient in an OTP program (admitted 30 days ago), a second program to transfer
    to, a patient whose enrollment ended, and a staff account to edit."""
    from clinic.accounts.models import User
    from clinic.extensions import db
    from clinic.patients import admissions
    from clinic.patients.models import Enrollment

    program = make_program()
    other_program = make_program("Intensive outpatient", kind="intensive_outpatient")
    patient = make_patient()
    enrollment = make_enrollment(patient, program, admitted_on=days_ago(30))
    ended_patient = make_patient("Ana", "Torres", date_of_birth=BORN)
    ended = make_enrollment(ended_patient, program, admitted_on=days_ago(30))
    with app.app_context():
        row = db.session.get(Enrollment, ended)
        admissions.discharge(
            row,
            actor=User(id=None, username="setup", all_sites=True),
            discharged_on=days_ago(2),
            reason=1,
            expected_version=row.version,
        )
        db.session.commit()
    return {
        "site": site,
        "program": program,
        "other_program": other_program,
        "patient": patient,
        "enrollment": enrollment,
        "ended": ended,
        "ended_patient": ended_patient,
        "staff": make_user("staff", full_name="Sam Front"),
    }


def _row(app, model, row_id: int):
    from clinic.extensions import db

    with app.app_context():
        found = db.session.get(model, row_id)
        db.session.expunge(found)
        return found


def _enrollments_of(app, patient_id: int) -> int:
    import sqlalchemy as sa

    from clinic.extensions import db
    from clinic.patients.models import Enrollment

    with app.app_context():
        return db.session.scalar(
            sa.select(sa.func.count()).where(Enrollment.patient_id == patient_id)
        )


def _edit_case(name: str, ward: dict) -> tuple[str, dict, object]:
    """The page, what the user types, and what the saved state is after one save."""
    from clinic.accounts.models import User
    from clinic.patients.models import Enrollment, Patient, Program
    from tests.test_patients_registry import edit_form

    e, p = ward["enrollment"], ward["patient"]
    today = days_ago(0).isoformat()
    if name == "demographics":
        return (
            f"/patients/{p}/edit",
            edit_form(city="Springfield", intake_date="2026-01-05"),
            lambda app: _row(app, Patient, p).version == 2,
        )
    if name == "correction":
        return (
            f"/patients/enrollments/{e}/correct",
            {
                "primary_counselor_id": "0",
                "level_of_care": "3:OTP",
                "admitted_on": days_ago(29).isoformat(),
                "reason": "The admission date was typed wrong.",
            },
            lambda app: _row(app, Enrollment, e).admitted_on == days_ago(29),
        )
    if name == "discharge":
        return (
            f"/patients/enrollments/{e}/discharge",
            {"discharged_on": today, "reason": "1"},
            lambda app: _row(app, Enrollment, e).discharged_on == days_ago(0),
        )
    if name == "transfer":
        return (
            f"/patients/enrollments/{e}/transfer",
            {
                "program_id": str(ward["other_program"]),
                "admitted_on": today,
                "level_of_care": "3:2.1",
                "primary_counselor_id": "0",
            },
            lambda app: _enrollments_of(app, p) == 2,
        )
    if name == "deadlines":
        return (
            f"/patients/enrollments/{e}/deadlines",
            {"medical_exam_on": days_ago(20).isoformat()},
            lambda app: _row(app, Enrollment, e).version == 2,
        )
    if name == "entered_in_error":
        ended_patient = ward["ended_patient"]  # no active enrollment left
        return (
            f"/patients/{ended_patient}/entered-in-error",
            {"reason": "Registered twice by mistake."},
            lambda app: _row(app, Patient, ended_patient).entered_in_error,
        )
    if name == "undo_discharge":
        ended = ward["ended"]
        return (
            f"/patients/enrollments/{ended}/undo-discharge",
            {"reason": "Discharged the wrong patient."},
            lambda app: _row(app, Enrollment, ended).discharged_on is None,
        )
    if name == "program":
        program = ward["program"]
        return (
            f"/admin/programs/{program}/edit",
            {
                "name": "Methadone maintenance (main)",
                "kind": "methadone_otp",
                "active": "y",
                "care_plan_review_days": "90",
            },
            lambda app: _row(app, Program, program).version == 2,
        )
    if name == "user":
        staff = ward["staff"]
        return (
            f"/admin/users/{staff}/edit",
            {
                "full_name": "Sam Front-Desk",
                "email": "",
                "role": "staff",
                "sites": str(ward["site"]),
            },
            lambda app: _row(app, User, staff).profile_version == 2,
        )
    raise AssertionError(name)


EDIT_FORMS = [
    "demographics",
    "correction",
    "discharge",
    "transfer",
    "deadlines",
    "entered_in_error",
    "undo_discharge",
    "program",
    "user",
]


@pytest.mark.parametrize("name", EDIT_FORMS)
def test_a_double_click_on_an_edit_form_saves_once_and_shows_the_saved_page(
    app, client_as, ward, name
):
    from tests.test_patients_registry import hidden_fields

    url, typed, saved = _edit_case(name, ward)
    client = client_as("admin")
    page = client.get(url)
    assert page.status_code == 200
    fields = hidden_fields(page.get_data(as_text=True), url, same_page=True)
    assert len(fields.get("submission_token", "")) >= 16  # the edit form carries its token
    data = {**fields, **typed}

    first = client.post(url, data=data)
    assert first.status_code == 302, words_of(first)
    second = client.post(url, data=data)  # the double click
    assert second.status_code == 302, words_of(second)
    assert second.headers["Location"] == first.headers["Location"]
    shown = words_of(client.get(second.headers["Location"]))
    assert ALREADY_SENT in shown
    assert CONFLICT not in shown
    assert saved(app)


def test_an_edit_form_without_its_token_still_saves_once(app, client_as, ward):
    """The token is optional on an edit (the version refuses a repeat): a form sent
    without it is saved, and its repeat meets the version check, nothing saved twice."""
    from clinic.patients.models import Patient
    from tests.test_patients_registry import hidden_fields

    url, typed, _ = _edit_case("demographics", ward)
    client = client_as("staff")
    fields = hidden_fields(client.get(url).get_data(as_text=True), url, same_page=True)
    del fields["submission_token"]
    data = {**fields, **typed}
    assert client.post(url, data=data).status_code == 302
    repeat = client.post(url, data=data)
    assert repeat.status_code == 200 and CONFLICT in words_of(repeat)
    assert _row(app, Patient, ward["patient"]).version == 2


def test_an_edit_sent_again_after_a_conflict_goes_through_with_the_same_token(app, client_as, ward):
    """The token is stored only when its form saved: the conflict's second save (same
    page, same token, the record's new version) is not taken for a repeat."""
    from clinic.patients.models import Patient
    from tests.test_patients_registry import hidden_fields

    url, typed, _ = _edit_case("demographics", ward)
    mine, theirs = client_as("staff"), client_as("admin")
    mine_fields = hidden_fields(mine.get(url).get_data(as_text=True), url, same_page=True)
    theirs_fields = hidden_fields(theirs.get(url).get_data(as_text=True), url, same_page=True)
    assert theirs.post(url, data={**theirs_fields, **typed, "city": "Chicago"}).status_code == 302
    refused = mine.post(url, data={**mine_fields, **typed})
    assert refused.status_code == 200 and CONFLICT in words_of(refused)
    again = hidden_fields(refused.get_data(as_text=True), url, same_page=True)
    assert again["submission_token"] == mine_fields["submission_token"]
    assert again["version"] == "2"
    assert mine.post(url, data={**again, **typed}).status_code == 302
    assert _row(app, Patient, ward["patient"]).city == "Springfield"


# --- deadlines: the status word once, inside the sentence -------------------------------------


def _deadline_cells(page: str) -> list[str]:
    return [
        " ".join(re.sub(r"<[^>]+>", " ", html.unescape(cell)).split())
        for cell in re.findall(r"<li>(Medical examination: .*?)</li>", page)
        + re.findall(r"<td>([^<]*<span class=\"badge[^>]*>[^<]*</span>[^<]*)</td>", page)
    ]


def test_overdue_and_due_deadlines_read_once_on_the_chart_and_the_worklist(
    app, client_as, site, make_patient, make_program, make_enrollment
):
    program = make_program()
    late = make_patient("Ana", "Torres")
    soon = make_patient("Bea", "Lee")
    make_enrollment(late, program, admitted_on=days_ago(20))  # due 6 days ago
    make_enrollment(soon, program, admitted_on=days_ago(12))  # due in 2 days
    client = client_as("clinician")
    since = f"overdue since {_day(days_ago(6))} (6 days)"
    ahead = f"due in 2 days ({_day(days_ago(-2))})"

    chart = client.get(f"/patients/{late}").get_data(as_text=True)
    assert f"Medical examination: {since}" in words_of_html(chart)
    assert "overdue overdue" not in words_of_html(chart)
    assert re.search(r'<span class="badge text-bg-danger"[^>]*>overdue</span> since', chart)

    chart = client.get(f"/patients/{soon}").get_data(as_text=True)
    assert f"Medical examination: {ahead}" in words_of_html(chart)
    assert "due due" not in words_of_html(chart)

    worklist = words_of_html(client.get("/patients/deadlines").get_data(as_text=True))
    assert since in worklist and ahead in worklist
    assert "overdue overdue" not in worklist and "due due" not in worklist


def _day(day: dt.date) -> str:
    from clinic.patients.common import format_day

    return format_day(day)


def words_of_html(page: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html.unescape(page)).split())


def test_a_milestone_done_late_says_late_once_on_the_deadlines_page(
    app, client_as, site, make_patient, make_program, make_enrollment
):
    patient = make_patient()
    enrollment = make_enrollment(patient, make_program(), admitted_on=days_ago(30))
    client = client_as("clinician")
    url = f"/patients/enrollments/{enrollment}/deadlines"
    assert send(client, url, {"medical_exam_on": days_ago(10).isoformat()}).status_code == 302
    page = words_of_html(client.get(url).get_data(as_text=True))
    expected = f"done {_day(days_ago(10))}, late (due {_day(days_ago(16))})"
    assert expected in page
    assert "late) late" not in page and "late late" not in page


# --- an emergency access still open reads "Access ends" ------------------------------------


def _grant(app, clinician: int, patient: int, granted: dt.datetime) -> int:
    from clinic.audit.models import BreakGlassGrant
    from clinic.extensions import db

    with app.app_context():
        grant = BreakGlassGrant(
            user_id=clinician,
            patient_id=patient,
            reason=REASON,
            granted_at=granted,
            expires_at=granted + dt.timedelta(minutes=60),
        )
        db.session.add(grant)
        db.session.commit()
        return grant.id


@pytest.mark.parametrize(("started", "label"), [(10, "Access ends"), (120, "Access ended")])
def test_the_emergency_access_review_says_ends_while_the_access_lasts(
    app, client_as, make_user, east, started, label
):
    clinician = make_user("clinician", full_name="Dana Rivera")
    now = dt.datetime.now(dt.UTC)
    grant = _grant(app, clinician, east["patient"], now - dt.timedelta(minutes=started))
    admin = client_as("admin", all_sites=True)
    detail = admin.get(f"/admin/audit/break-glass/{grant}/acknowledge").get_data(as_text=True)
    assert re.search(rf'data-testid="access-end">{label}</dt>', detail)
    listed = words_of_html(admin.get("/admin/audit/break-glass").get_data(as_text=True))
    assert ("ends " if started == 10 else "ended ") in listed
    if started == 10:
        assert "Access ended" not in detail and "ended " not in listed


# --- dates of birth as the other pages write them ------------------------------------------


def test_dates_of_birth_read_30_jul_1991_in_the_header_and_the_duplicate_warning(
    app, client_as, site, make_patient
):
    from tests.test_patients_registry import patient_form

    patient = make_patient("Ana", "Torres", date_of_birth=BORN)
    client = client_as("staff")
    chart = client.get(f"/patients/{patient}").get_data(as_text=True)
    header = chart[chart.index("patient-header") :][:2000]
    assert "DOB 30 Jul 1991" in header and "1991-07-30" not in header
    warned = send(
        client,
        "/patients/new",
        patient_form(site, first_name="Ana", last_name="Torres", date_of_birth="1991-07-30"),
    )
    box = warned.get_data(as_text=True).split('data-testid="duplicates"', 1)[1]
    box = box.split("</div>", 1)[0]
    assert "born 30 Jul 1991" in box and "1991-07-30" not in box


def test_no_patient_or_audit_template_shows_a_raw_iso_date():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "templates"
    for folder in ("patients", "audit"):
        for template in (root / folder).rglob("*.html"):
            text = template.read_text()
            # ISO stays in form values and machine attributes, never in shown text.
            assert ".isoformat()" not in text, template
            assert 'strftime("%Y-%m-%d' not in text and 'strftime("%d %b' not in text, template


# --- the State field takes USPS codes -----------------------------------------------------


@pytest.mark.parametrize("code", ["IL", "il", "DC", "PR", "GU", "VI", "AS", "MP", "AA", "AE"])
def test_us_state_and_territory_codes_are_accepted_and_stored_upper_case(
    app, client_as, site, code
):
    from clinic.patients.models import Patient
    from tests.test_patients_registry import patient_form, patients

    response = send(client_as("staff"), "/patients/new", patient_form(site, state=code))
    assert response.status_code == 302, words_of(response)
    [patient] = patients(app)
    assert isinstance(patient, Patient) and patient.state == code.upper()


@pytest.mark.parametrize("typed", ["ZZ", "Illinois", "I L", "XX"])
def test_a_state_that_is_no_usps_code_is_refused_next_to_the_field(app, client_as, site, typed):
    from clinic.patients.contact import STATE_MESSAGE
    from tests.test_patients_registry import field_error, patient_form, patients

    response = send(client_as("staff"), "/patients/new", patient_form(site, state=typed))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert html.unescape(field_error(page, "state")) == STATE_MESSAGE
    assert f'value="{typed}"' in page and 'value="Springfield"' in page  # input kept
    assert patients(app) == []


def test_a_state_stored_before_the_check_stays_until_changed(app, client_as, site, make_patient):
    from clinic.extensions import db
    from clinic.patients.contact import STATE_MESSAGE
    from clinic.patients.models import Patient
    from tests.test_patients_registry import edit_form, field_error

    patient_id = make_patient()
    with app.app_context():
        db.session.get(Patient, patient_id).state = "Illinois"
        db.session.commit()
    client = client_as("staff")
    url = f"/patients/{patient_id}/edit"
    kept = send(client, url, edit_form(state="Illinois", city="Springfield"))
    assert kept.status_code == 302, words_of(kept)
    assert _row(app, Patient, patient_id).state == "Illinois"  # untouched
    changed = send(client, url, edit_form(state="Ilinois", city="Springfield"))
    assert html.unescape(field_error(changed.get_data(as_text=True), "state")) == STATE_MESSAGE
    assert send(client, url, edit_form(state="il")).status_code == 302
    assert _row(app, Patient, patient_id).state == "IL"


def test_the_service_refuses_a_state_that_is_no_code(app, site):
    from clinic.accounts.models import User
    from clinic.errors import DomainError
    from clinic.extensions import db
    from clinic.patients import registry
    from clinic.sites.models import Site

    with app.app_context():
        data = registry.Demographics(
            first_name="Ann",
            last_name="Lee",
            date_of_birth=dt.date(1990, 1, 2),
            sex_at_birth="female",
            primary_substance="heroin",
            intake_date=days_ago(0),
            state="ZZ",
        )
        with pytest.raises(DomainError) as refused:
            registry.register_patient(
                actor=User(id=None, username="setup", all_sites=True),
                site=db.session.get(Site, site),
                data=data,
            )
        assert refused.value.field == "state"


# --- a refused hidden site: on top of the form, in plain words -------------------------------


def test_a_tampered_hidden_site_is_refused_on_top_of_the_form_and_set_back(
    app, client_as, site, make_site
):
    from tests.test_patients_registry import hidden_fields, patient_form, patients

    other = make_site("EAST")
    client = client_as("staff", site_ids=[site])  # one site: the field is hidden
    page = client.get("/patients/new").get_data(as_text=True)
    assert f'type="hidden" name="site_id" value="{site}"' in page
    fields = hidden_fields(page, "/patients/new", same_page=True)
    refused = client.post("/patients/new", data={**fields, **patient_form(other)})
    assert refused.status_code == 200
    body = refused.get_data(as_text=True)
    top = re.search(r'<div class="alert alert-danger" role="alert"[^>]*>([^<]*)</div>', body)
    assert top and "The site of this form is not one of yours" in html.unescape(top.group(1))
    assert "Not a valid choice" not in body and "could not coerce" not in body
    assert 'value="Springfield"' in body  # the input is kept
    assert patients(app) == []
    # The form now carries the user's own site: sending it again registers.
    again = hidden_fields(body, "/patients/new", same_page=True)
    assert again["site_id"] == str(site)
    resent = client.post("/patients/new", data={**patient_form(site), **again})
    assert resent.status_code == 302
    assert [p.site_id for p in patients(app)] == [site]


def test_a_site_not_offered_is_refused_next_to_the_visible_choice(app, client_as, site, make_site):
    from tests.test_patients_registry import field_error, patient_form, patients

    other, third = make_site("EAST"), make_site("WEST")
    client = client_as("staff", site_ids=[site, other])  # several sites: a visible choice
    response = send(client, "/patients/new", patient_form(third))
    message = html.unescape(field_error(response.get_data(as_text=True), "site_id"))
    assert message == "The site of this form is not one of yours; choose the site again."
    assert patients(app) == []


# --- an empty deadlines form saves nothing and says so -------------------------------------


def test_an_empty_deadlines_form_says_there_is_nothing_to_save(
    app, client_as, make_patient, make_program, make_enrollment
):
    from clinic.patients.models import Enrollment

    enrollment = make_enrollment(make_patient(), make_program(), admitted_on=days_ago(30))
    client = client_as("clinician")
    url = f"/patients/enrollments/{enrollment}/deadlines"
    response = send(client, url, {})
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    top = re.search(r'<div class="alert alert-danger" role="alert"[^>]*>([^<]*)</div>', body)
    assert top and html.unescape(top.group(1)) == "Nothing to save: enter a date."
    assert "Dates saved." not in body
    assert _row(app, Enrollment, enrollment).version == 1
    # Dates recorded, then all cleared: that is a change, saved.
    assert send(client, url, {"medical_exam_on": days_ago(3).isoformat()}).status_code == 302
    assert send(client, url, {"medical_exam_on": ""}).status_code == 302
    assert _row(app, Enrollment, enrollment).medical_exam_on is None
