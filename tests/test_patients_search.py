"""Search results that tell people apart: age and date of birth, sex, site, programs and
their status, the phone's last four digits; one match opens the chart; "no match" carries
what was typed into the registration form; a page of 50 in a fixed number of queries."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from clinic.audit.models import AuditEvent
from clinic.extensions import db
from clinic.patients import admissions
from clinic.patients.search import RegistrationPrefill, registration_prefill
from tests.test_patients_enrollment import count_statements

CHICAGO = ZoneInfo("America/Chicago")


def today() -> dt.date:
    return dt.datetime.now(CHICAGO).date()


def age(born: dt.date) -> int:
    now = today()
    return now.year - born.year - ((now.month, now.day) < (born.month, born.day))


def result_rows(html: str) -> list[str]:
    """Each result row's text, tags stripped and spaces collapsed."""
    rows = re.findall(r'<tr data-testid="patient-row">(.*?)</tr>', html, re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", row).split()) for row in rows]


@pytest.fixture
def two_torres(make_patient, make_program, make_enrollment, make_site):
    """Two "Torres, Ana" born the same day: one at MAIN in the methadone program, one
    at EAST discharged from an outpatient program."""
    east = make_site("EAST")
    born = dt.date(1991, 7, 30)
    main_ana = make_patient("Ana", "Torres", date_of_birth=born, phone="+13125550147")
    east_ana = make_patient(
        "Ana",
        "Torres",
        date_of_birth=born,
        site_id=east,
        sex_at_birth="intersex",
        phone="+17735550199",
    )
    otp = make_program("Methadone maintenance")
    make_enrollment(main_ana, otp, admitted_on=dt.date(2026, 1, 5))
    outpatient = make_program("Outpatient", "outpatient", site_id=east)
    enrollment = make_enrollment(east_ana, outpatient, admitted_on=dt.date(2026, 1, 5))
    return {"main": main_ana, "east": east_ana, "east_enrollment": enrollment, "born": born}


def test_results_show_what_tells_two_people_apart(app, client_as, two_torres):
    from clinic.accounts.models import User
    from clinic.patients.models import Enrollment

    with app.app_context():
        enrollment = db.session.get(Enrollment, two_torres["east_enrollment"])
        admissions.discharge(
            enrollment,
            actor=User(id=None, username="setup", all_sites=True),
            discharged_on=dt.date(2026, 3, 2),
            reason=1,
            expected_version=enrollment.version,
        )
        db.session.commit()
    admin = client_as("admin", all_sites=True)
    response = admin.get("/patients/", query_string={"q": "torres"})
    assert response.status_code == 200
    main_row, east_row = sorted(result_rows(response.get_data(as_text=True)))
    years = age(two_torres["born"])
    assert main_row == (
        f"Torres, Ana 30 Jul 1991 ({years}) Female MAIN "
        "Methadone maintenance: active since 5 Jan 2026 ending …0147 MAIN-000001"
    )
    assert east_row == (
        f"Torres, Ana 30 Jul 1991 ({years}) Intersex EAST "
        "Discharged 2 Mar 2026 (Outpatient) ending …0199 EAST-000001"
    )


def test_a_patient_never_admitted_and_without_phone(client_as, make_patient):
    make_patient("Ana", "Torres")
    make_patient("Ann", "Torres")
    html = client_as("staff").get("/patients/?q=torres").get_data(as_text=True)
    for row in result_rows(html):
        assert "Not enrolled" in row
        assert row.split(" Not enrolled ")[1].startswith("— MAIN-")


@pytest.mark.parametrize("role", ["staff", "clinician", "admin"])
def test_one_match_opens_the_chart(app, client_as, make_patient, role):
    make_patient("Jo", "Torres")
    only = make_patient("Jo", "Smith")
    client = client_as(role)
    response = client.get("/patients/", query_string={"q": "smi"})
    assert response.status_code == 302
    assert response.headers["Location"] == f"/patients/{only}"
    # Two matches: the list.
    assert client.get("/patients/?q=jo").status_code == 200


def test_the_list_of_everyone_does_not_jump_to_the_only_patient(client_as, make_patient):
    only = make_patient("Jo", "Smith")
    response = client_as("staff").get("/patients/")
    assert response.status_code == 200
    assert f'href="/patients/{only}"' in response.get_data(as_text=True)


def test_one_match_on_a_later_page_is_not_a_jump(client_as, make_patient):
    first = make_patient("Jo", "Smith")
    second = make_patient("Al", "Smith")
    # The page after the first Smith holds one patient, but it is not the whole list:
    # the list, not a redirect.
    response = client_as("staff").get(f"/patients/?q=smith&after={first}")
    assert response.status_code == 200
    assert f'href="/patients/{second}"' in response.get_data(as_text=True)
    assert f'href="/patients/{first}"' not in response.get_data(as_text=True)


def test_an_old_page_link_is_the_first_page(client_as, make_patient):
    make_patient("Jo", "Smith")
    make_patient("Al", "Smith")
    # ?page= (bookmarks of the numbered pager) is ignored: the first page.
    response = client_as("staff").get("/patients/?q=smith&page=2")
    assert response.status_code == 200
    assert "2 in all." in response.get_data(as_text=True)


def test_a_search_that_opens_a_chart_is_recorded_without_its_terms(app, client_as, make_patient):
    only = make_patient("Jo", "Smith")
    staff = client_as("staff")
    with app.app_context():
        before = db.session.scalar(sa.select(sa.func.max(AuditEvent.id))) or 0
    chart = staff.get("/patients/?q=Smith", follow_redirects=True)
    assert chart.status_code == 200
    with app.app_context():
        events = list(
            db.session.scalars(
                sa.select(AuditEvent).where(AuditEvent.id > before).order_by(AuditEvent.id)
            )
        )
        summary = [(e.entity_type, e.patient_id) for e in events]
        details = [e.details or "" for e in events]
    assert summary == [("patient_list", None), ("patient", only)]
    assert '"searched":true' in details[0] and '"results":1' in details[0]
    assert not any("Smith" in d or "smith" in d for d in details)


# --- "No patient matches ... Register" -------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("torres", RegistrationPrefill(last_name="Torres")),
        ("ana torres", RegistrationPrefill(first_name="Ana", last_name="Torres")),
        ("Torres, Ana", RegistrationPrefill(first_name="Ana", last_name="Torres")),
        ("torres,ana", RegistrationPrefill(first_name="Ana", last_name="Torres")),
        ("Ana de la Cruz", RegistrationPrefill(first_name="Ana", last_name="de la Cruz")),
        ("ana McDonald", RegistrationPrefill(first_name="ana", last_name="McDonald")),
        ("ana de la cruz", RegistrationPrefill(first_name="Ana", last_name="De La Cruz")),
        ("1991-07-30", RegistrationPrefill(date_of_birth=dt.date(1991, 7, 30))),
        ("07/30/1991", RegistrationPrefill(date_of_birth=dt.date(1991, 7, 30))),
        (
            "ana torres 1991-07-30",
            RegistrationPrefill("Ana", "Torres", dt.date(1991, 7, 30)),
        ),
        ("MAIN-000042", RegistrationPrefill()),
        ("", RegistrationPrefill()),
        ("   ", RegistrationPrefill()),
        ("1991-02-30", RegistrationPrefill(last_name="1991-02-30")),
    ],
)
def test_what_was_searched_for_goes_to_the_right_fields(typed, expected):
    assert registration_prefill(typed) == expected


def input_value(html: str, name: str) -> str | None:
    match = re.search(rf'<input\b[^>]*\bname="{name}"[^>]*>', html)
    assert match, name
    value = re.search(r'\bvalue="([^"]*)"', match.group(0))
    return value.group(1) if value else None


def test_no_match_links_to_registration_with_the_name_typed(client_as, make_patient):
    make_patient("Jo", "Smith")
    staff = client_as("staff")
    html = staff.get("/patients/?q=ana+torres").get_data(as_text=True)
    assert 'data-testid="no-match"' in html
    link = re.search(r'href="(/patients/new\?[^"]+)"', html).group(1)
    assert link == "/patients/new?q=ana+torres"
    form = staff.get(link).get_data(as_text=True)
    assert input_value(form, "first_name") == "Ana"
    assert input_value(form, "last_name") == "Torres"
    assert not input_value(form, "date_of_birth")


def test_a_date_of_birth_searched_for_goes_to_its_field(client_as):
    form = client_as("staff").get("/patients/new?q=1991-07-30").get_data(as_text=True)
    assert input_value(form, "date_of_birth") == "1991-07-30"
    assert not input_value(form, "first_name")
    assert not input_value(form, "last_name")


def test_clinicians_see_no_register_link(client_as, make_patient):
    make_patient("Jo", "Smith")
    html = client_as("clinician").get("/patients/?q=torres").get_data(as_text=True)
    assert "No patient matches “torres”." in html
    assert "/patients/new" not in html


def test_a_name_searched_for_is_escaped_and_bounded(client_as):
    typed = "<b>x</b> " + "a" * 300
    staff = client_as("staff")
    html = staff.get("/patients/", query_string={"q": typed}).get_data(as_text=True)
    assert "<b>x</b>" not in html
    form = staff.get("/patients/new", query_string={"q": typed}).get_data(as_text=True)
    assert len(input_value(form, "last_name")) <= 80


# --- query count ------------------------------------------------------------------------


def test_a_page_of_50_results_takes_as_many_queries_as_a_page_of_2(
    app, client_as, make_patient, make_program, make_enrollment
):
    programs = [make_program(), make_program("IOP", "intensive_outpatient")]
    client = client_as("staff")

    def add(start: int, stop: int) -> None:
        for i in range(start, stop):
            patient = make_patient(f"Ana{i}", "Torres", phone=f"+1312555{i:04d}")
            make_enrollment(patient, programs[i % 2])

    def statements() -> int:
        with count_statements(app) as executed:
            response = client.get("/patients/?q=torres")
            assert response.status_code == 200
        return len(executed), len(result_rows(response.get_data(as_text=True)))

    add(0, 2)
    two, listed = statements()
    assert listed == 2
    add(2, 60)
    fifty, listed = statements()
    assert listed == 50
    assert fifty == two
