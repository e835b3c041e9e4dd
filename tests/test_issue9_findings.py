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
