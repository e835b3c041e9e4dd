"""Programs, admission, discharge, transfer and the 42 CFR 8.12 deadlines: through the
pages where possible, plus the database's own guard (one active enrollment per patient and
program) and query counts of the chart and the worklist."""

from __future__ import annotations

import datetime as dt
import html as html_text
import re
from contextlib import contextmanager
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.patients import admissions, common, milestones, program_settings, registry
from clinic.patients.models import (
    AsamEdition,
    CarePlanReview,
    DischargeReason,
    Enrollment,
    Patient,
    Program,
    ProgramKind,
)
from tests.test_patients_registry import send

CHICAGO = ZoneInfo("America/Chicago")
SETUP = {"id": None, "username": "setup", "all_sites": True}


def today() -> dt.date:
    return dt.datetime.now(CHICAGO).date()


def days_ago(n: int) -> dt.date:
    return today() - dt.timedelta(days=n)


def field_error(html: str, field: str) -> str:
    match = re.search(rf'id="{field}-error"[^>]*>([^<]*)<', html)
    return match.group(1) if match else ""


def enrollments(app, patient_id: int | None = None) -> list[Enrollment]:
    with app.app_context():
        query = sa.select(Enrollment).order_by(Enrollment.id)
        if patient_id is not None:
            query = query.where(Enrollment.patient_id == patient_id)
        found = list(db.session.scalars(query))
        db.session.expunge_all()
        return found


def programs(app) -> list[Program]:
    with app.app_context():
        found = list(db.session.scalars(sa.select(Program).order_by(Program.id)))
        db.session.expunge_all()
        return found


# --- programs (administrators) --------------------------------------------------------------


def program_form(site_id: int, **overrides) -> dict:
    data = {
        "site_id": str(site_id),
        "name": "Methadone maintenance",
        "kind": "methadone_otp",
        "active": "y",
        "care_plan_review_days": "90",
        "take_home_cap_days_0_14": "7",
        "take_home_cap_days_15_30": "14",
        "take_home_cap_days_31_plus": "28",
    }
    data.update(overrides)
    return data


def test_admin_creates_and_edits_a_program(app, client_as, site):
    admin = client_as("admin")
    created = send(admin, "/admin/programs/new", program_form(site, take_home_cap_days_0_14="5"))
    assert created.status_code == 302
    [program] = programs(app)
    assert (program.name, program.site_id, program.take_home_cap_days_0_14) == (
        "Methadone maintenance",
        site,
        5,
    )
    assert "Methadone maintenance" in admin.get("/admin/programs/").get_data(as_text=True)

    url = f"/admin/programs/{program.id}/edit"
    edited = send(admin, url, program_form(site, name="MMT", care_plan_review_days="30"))
    assert edited.status_code == 302
    [program] = programs(app)
    assert (program.name, program.care_plan_review_days) == ("MMT", 30)


@pytest.mark.parametrize(
    ("field", "value", "limit"),
    [
        ("take_home_cap_days_0_14", "8", 7),
        ("take_home_cap_days_15_30", "15", 14),
        ("take_home_cap_days_31_plus", "29", 28),
    ],
)
def test_take_home_caps_above_federal_are_refused(app, client_as, site, field, value, limit):
    admin = client_as("admin")
    refused = send(admin, "/admin/programs/new", program_form(site, **{field: value}))
    assert refused.status_code == 200
    assert f"and {limit}" in field_error(refused.get_data(as_text=True), field)
    assert programs(app) == []

    send(admin, "/admin/programs/new", program_form(site))
    [program] = programs(app)
    url = f"/admin/programs/{program.id}/edit"
    refused = send(admin, url, program_form(site, name="Renamed", **{field: value}))
    assert refused.status_code == 200
    assert field_error(refused.get_data(as_text=True), field)
    [program] = programs(app)
    assert program.name == "Methadone maintenance"
    assert getattr(program, field) == limit


def test_take_home_cap_above_federal_refused_by_the_service(app, site):
    with app.app_context():
        from clinic.sites.models import Site

        settings = program_settings.ProgramSettings(
            name="X",
            kind="methadone_otp",
            active=True,
            care_plan_review_days=90,
            take_home_cap_days_0_14=7,
            take_home_cap_days_15_30=14,
            take_home_cap_days_31_plus=29,
        )
        with pytest.raises(DomainError, match="at most 28") as error:
            program_settings.create_program(
                actor=User(**SETUP), site=db.session.get(Site, site), settings=settings
            )
        assert error.value.field == "take_home_cap_days_31_plus"


def test_duplicate_program_name_at_a_site_is_refused(app, client_as, site, make_site):
    east = make_site("EAST")
    admin = client_as("admin", all_sites=True)
    assert send(admin, "/admin/programs/new", program_form(site)).status_code == 302
    refused = send(admin, "/admin/programs/new", program_form(site, name="methadone MAINTENANCE"))
    assert refused.status_code == 200
    assert "already has a program with that name" in field_error(
        refused.get_data(as_text=True), "name"
    )
    # The same name at another site is fine.
    assert send(admin, "/admin/programs/new", program_form(east)).status_code == 302
    assert send(admin, "/admin/programs/new", program_form(site, name="IOP")).status_code == 302
    iop = next(p for p in programs(app) if p.name == "IOP")
    refused = send(admin, f"/admin/programs/{iop.id}/edit", program_form(site))
    assert "already has a program with that name" in field_error(
        refused.get_data(as_text=True), "name"
    )
    assert sorted((p.site_id, p.name) for p in programs(app)) == sorted(
        [(site, "Methadone maintenance"), (east, "Methadone maintenance"), (site, "IOP")]
    )


@pytest.mark.parametrize("role", ["staff", "clinician"])
def test_only_admins_manage_programs(app, client_as, make_program, site, role):
    program_id = make_program()
    client = client_as(role)
    assert client.get("/admin/programs/").status_code == 403
    assert client.get("/admin/programs/new").status_code == 403
    assert client.get(f"/admin/programs/{program_id}/edit").status_code == 403
    # POSTs with a valid CSRF token: the permission is what refuses them.
    token = client.csrf_token("/patients/")
    for url, name in [
        ("/admin/programs/new", "Another program"),
        (f"/admin/programs/{program_id}/edit", "Renamed"),
    ]:
        refused = client.post(url, data={**program_form(site, name=name), "csrf_token": token})
        assert refused.status_code == 403, url
    assert [p.name for p in programs(app)] == ["Methadone maintenance"]


# --- admission ---------------------------------------------------------------------------


def admit_form(program_id: int, **overrides) -> dict:
    data = {
        "program_id": str(program_id),
        "admitted_on": today().isoformat(),
        "level_of_care": "3:OTP",
        "primary_counselor_id": "0",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(("role", "level"), [("clinician", "3:OTP"), ("admin", "4:1.0")])
def test_clinician_and_admin_admit(app, client_as, make_patient, make_program, role, level):
    patient_id = make_patient()
    program_id = make_program()
    client = client_as(role)
    url = f"/patients/{patient_id}/admit"
    response = send(client, url, admit_form(program_id, level_of_care=level))
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/patients/{patient_id}")
    [enrollment] = enrollments(app)
    edition, level_name = level.split(":")
    assert enrollment.asam_edition == AsamEdition(edition)
    assert enrollment.asam_level == level_name
    assert enrollment.admitted_on == today()
    assert enrollment.active and enrollment.created_by_id == client.user_id


def test_staff_cannot_admit(app, client_as, make_patient, make_program):
    patient_id = make_patient()
    program_id = make_program()
    staff = client_as("staff")
    url = f"/patients/{patient_id}/admit"
    assert staff.get(url).status_code == 403
    token = staff.csrf_token(f"/patients/{patient_id}")
    assert staff.post(url, data={**admit_form(program_id), "csrf_token": token}).status_code == 403
    assert enrollments(app) == []


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"level_of_care": "4:OTP"}, "level_of_care", "Not a valid choice."),
        ({"level_of_care": "3:1.0"}, "level_of_care", "Not a valid choice."),
        ({"level_of_care": ""}, "level_of_care", "This field is required."),
        ({"admitted_on": "FUTURE"}, "admitted_on", "The admission date is in the future."),
        (
            {"admitted_on": "1970-01-01"},
            "admitted_on",
            "The admission date is before the date of birth.",
        ),
        ({"admitted_on": "2026-02-30"}, "admitted_on", "Not a valid date value."),
        ({"program_id": "0"}, "program_id", "This field is required."),
    ],
)
def test_bad_admission_is_refused(
    app, client_as, make_patient, make_program, overrides, field, message
):
    if overrides.get("admitted_on") == "FUTURE":
        overrides = {"admitted_on": (today() + dt.timedelta(days=1)).isoformat()}
    patient_id = make_patient()
    program_id = make_program()
    client = client_as("clinician")
    data = {**admit_form(program_id), **overrides}
    response = send(client, f"/patients/{patient_id}/admit", data)
    assert response.status_code == 200
    assert html_text.unescape(field_error(response.get_data(as_text=True), field)) == message
    assert enrollments(app) == []


def test_level_must_belong_to_its_edition_in_the_service(app, make_patient, make_program):
    patient_id = make_patient()
    program_id = make_program()
    with app.app_context(), pytest.raises(DomainError, match=r"not a level of the ASAM 4th"):
        admissions.admit(
            db.session.get(Patient, patient_id),
            db.session.get(Program, program_id),
            actor=User(**SETUP),
            admitted_on=today(),
            asam_edition="4",
            asam_level="OTP",
            primary_counselor=None,
        )


def test_admission_with_counselor_shows_on_the_chart(
    app, client_as, make_user, make_patient, make_program
):
    counselor = make_user("clinician", full_name="Casey Counselor")
    patient_id = make_patient()
    program_id = make_program("Methadone maintenance")
    client = client_as("clinician")
    response = send(
        client,
        f"/patients/{patient_id}/admit",
        admit_form(
            program_id, admitted_on=days_ago(30).isoformat(), primary_counselor_id=counselor
        ),
    )
    assert response.status_code == 302
    [enrollment] = enrollments(app)
    assert enrollment.primary_counselor_id == counselor

    html = client.get(f"/patients/{patient_id}").get_data(as_text=True)
    summary = html.split("Active programs", 1)[1].split("</dd>", 1)[0]
    assert "Methadone maintenance" in summary
    assert "OTP (ASAM 3rd ed.)" in summary
    assert "counselor Casey Counselor" in summary
    alert = html.split('data-testid="alerts"', 1)[1].split("</div>", 1)[0]
    assert "Overdue:" in alert
    assert "Medical examination" in alert and "Initial care plan" in alert
    due = days_ago(30) + dt.timedelta(days=14)
    assert f"overdue since {common.format_day(due)} (16 days)" in alert


def test_chart_has_no_overdue_alert_for_a_new_admission(
    client_as, make_patient, make_program, make_enrollment
):
    patient_id = make_patient()
    make_enrollment(patient_id, make_program(), admitted_on=today())
    html = client_as("clinician").get(f"/patients/{patient_id}").get_data(as_text=True)
    assert 'data-testid="alerts"' not in html
    assert "OTP (ASAM 3rd ed.)" in html


def test_second_active_admission_to_a_program_is_refused(
    app, client_as, make_patient, make_program, make_enrollment
):
    patient_id = make_patient()
    program_id = make_program()
    make_enrollment(patient_id, program_id, admitted_on=days_ago(10))
    client = client_as("clinician")
    response = send(client, f"/patients/{patient_id}/admit", admit_form(program_id))
    assert response.status_code == 200
    assert "already enrolled in this program" in field_error(
        response.get_data(as_text=True), "program_id"
    )
    assert len(enrollments(app)) == 1
    # Another program is fine.
    other = make_program("Intensive outpatient", "intensive_outpatient")
    assert send(client, f"/patients/{patient_id}/admit", admit_form(other)).status_code == 302
    assert len(enrollments(app)) == 2


def _enrollment(patient_id, program_id, **values) -> Enrollment:
    return Enrollment(
        patient_id=patient_id,
        program_id=program_id,
        admitted_on=values.pop("admitted_on", days_ago(5)),
        asam_edition=AsamEdition.THIRD,
        asam_level="OTP",
        **values,
    )


def test_database_refuses_a_second_active_enrollment(
    app, make_patient, make_program, make_enrollment
):
    patient_id = make_patient()
    program_id = make_program()
    make_enrollment(patient_id, program_id, admitted_on=days_ago(10))
    with app.app_context():
        db.session.add(_enrollment(patient_id, program_id))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.flush()
        db.session.rollback()
    assert len(enrollments(app)) == 1


def test_database_allows_readmission_after_discharge(
    app, make_patient, make_program, make_enrollment
):
    patient_id = make_patient()
    program_id = make_program()
    first = make_enrollment(patient_id, program_id, admitted_on=days_ago(20))
    with app.app_context():
        old = db.session.get(Enrollment, first)
        old.discharged_on = days_ago(10)
        old.discharge_reason = DischargeReason.DROPPED_OUT.value
        db.session.add(_enrollment(patient_id, program_id, admitted_on=days_ago(5)))
        db.session.commit()
        # ...and still only one of them may be active.
        db.session.add(_enrollment(patient_id, program_id, admitted_on=days_ago(1)))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.flush()
        db.session.rollback()
    found = enrollments(app, patient_id)
    assert [e.active for e in found] == [False, True]


def test_readmission_through_the_form(app, client_as, make_patient, make_program, make_enrollment):
    patient_id = make_patient()
    program_id = make_program()
    first = make_enrollment(patient_id, program_id, admitted_on=days_ago(20))
    client = client_as("clinician")
    discharged = send(
        client,
        f"/patients/enrollments/{first}/discharge",
        {"discharged_on": days_ago(10).isoformat(), "reason": "2", "version": "1"},
    )
    assert discharged.status_code == 302
    readmitted = send(
        client,
        f"/patients/{patient_id}/admit",
        admit_form(program_id, admitted_on=days_ago(2).isoformat()),
    )
    assert readmitted.status_code == 302
    assert [(e.active, e.admitted_on) for e in enrollments(app)] == [
        (False, days_ago(20)),
        (True, days_ago(2)),
    ]


# --- discharge ---------------------------------------------------------------------------


@pytest.fixture
def enrolled(make_patient, make_program, make_enrollment) -> dict[str, int]:
    patient_id = make_patient()
    program_id = make_program()
    enrollment_id = make_enrollment(patient_id, program_id, admitted_on=days_ago(20))
    return {"patient": patient_id, "program": program_id, "enrollment": enrollment_id}


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            {"discharged_on": "BEFORE", "reason": "1"},
            "discharged_on",
            "The discharge date is before the admission date (ADMITTED).",
        ),
        (
            {"discharged_on": "FUTURE", "reason": "1"},
            "discharged_on",
            "The discharge date is in the future.",
        ),
        ({"discharged_on": "TODAY", "reason": ""}, "reason", "This field is required."),
        ({"discharged_on": "TODAY", "reason": "9"}, "reason", "Not a valid choice."),
        ({"discharged_on": "", "reason": "1"}, "discharged_on", "This field is required."),
    ],
)
def test_bad_discharge_is_refused(app, client_as, enrolled, data, field, message):
    dates = {
        "BEFORE": days_ago(21).isoformat(),
        "FUTURE": (today() + dt.timedelta(days=1)).isoformat(),
        "TODAY": today().isoformat(),
    }
    data = {k: dates.get(v, v) for k, v in data.items()}
    message = message.replace("ADMITTED", common.format_day(days_ago(20)))
    client = client_as("clinician")
    response = send(
        client,
        f"/patients/enrollments/{enrolled['enrollment']}/discharge",
        {**data, "version": "1"},
    )
    assert response.status_code == 200
    assert field_error(response.get_data(as_text=True), field) == message
    [enrollment] = enrollments(app)
    assert enrollment.active and enrollment.discharge_reason is None


def test_discharge(app, client_as, enrolled):
    client = client_as("clinician")
    response = send(
        client,
        f"/patients/enrollments/{enrolled['enrollment']}/discharge",
        {"discharged_on": days_ago(1).isoformat(), "reason": "1", "version": "1"},
    )
    assert response.status_code == 302
    [enrollment] = enrollments(app)
    assert not enrollment.active
    assert (enrollment.discharged_on, enrollment.discharge_reason) == (days_ago(1), 1)
    html = client.get(f"/patients/{enrolled['patient']}").get_data(as_text=True)
    assert "Treatment completed" in html
    assert "Active programs</dt>" in html
    summary = html.split("Active programs", 1)[1].split("</dd>", 1)[0]
    assert "None" in summary
    # A discharged enrollment cannot be discharged again: the page says it has ended...
    url = f"/patients/enrollments/{enrolled['enrollment']}/discharge"
    ended = client.get(url).get_data(as_text=True)
    assert f"ended on {common.format_day(days_ago(1))} (Treatment completed)" in ended
    assert 'name="discharged_on"' not in ended
    # ...and a form sent from a page opened before the discharge is refused.
    token = client.csrf_token(f"/patients/{enrolled['patient']}")
    again = client.post(
        url,
        data={
            "discharged_on": today().isoformat(),
            "reason": "2",
            "version": "2",
            "csrf_token": token,
        },
    )
    assert again.status_code == 409
    refused = again.get_data(as_text=True)
    assert f"ended on {common.format_day(days_ago(1))}" in refused
    assert 'name="discharged_on"' not in refused  # no input that would be refused again
    assert enrollments(app)[0].discharge_reason == 1


def test_staff_cannot_discharge_nor_transfer(app, client_as, enrolled, make_program):
    iop = make_program("Intensive outpatient", "intensive_outpatient")
    staff = client_as("staff")
    base = f"/patients/enrollments/{enrolled['enrollment']}"
    assert staff.get(f"{base}/discharge").status_code == 403
    assert staff.get(f"{base}/transfer").status_code == 403
    token = staff.csrf_token(f"/patients/{enrolled['patient']}")
    discharge = {"discharged_on": days_ago(1).isoformat(), "reason": "1", "version": "1"}
    transfer = {**admit_form(iop, admitted_on=days_ago(1).isoformat()), "version": "1"}
    for url, data in [(f"{base}/discharge", discharge), (f"{base}/transfer", transfer)]:
        assert staff.post(url, data={**data, "csrf_token": token}).status_code == 403, url
    [enrollment] = enrollments(app)
    assert enrollment.active and enrollment.version == 1


# --- transfer ----------------------------------------------------------------------------


def test_transfer_closes_the_old_enrollment_and_opens_the_new(
    app, client_as, enrolled, make_program
):
    iop = make_program("Intensive outpatient", "intensive_outpatient")
    client = client_as("clinician")
    on = days_ago(3)
    response = send(
        client,
        f"/patients/enrollments/{enrolled['enrollment']}/transfer",
        {**admit_form(iop, admitted_on=on.isoformat(), level_of_care="4:2.1"), "version": "1"},
    )
    assert response.status_code == 302
    old, new = enrollments(app)
    assert (old.discharged_on, old.discharge_reason) == (on, DischargeReason.TRANSFERRED.value)
    assert new.active and new.program_id == iop and new.admitted_on == on
    assert (new.asam_edition, new.asam_level) == (AsamEdition.FOURTH, "2.1")
    assert new.transferred_from_id == old.id


# Refused transfers through the form: tests/test_patients_integrity.py says which rule.


@pytest.mark.parametrize(
    ("program", "edition", "level", "message", "field"),
    [
        ("same", "3", "OTP", "Choose a different program.", "program_id"),
        ("other", "4", "OTP", "'OTP' is not a level of the ASAM 4th ed.", "asam_level"),
    ],
)
def test_refused_transfer_in_the_service_changes_nothing(
    app, enrolled, make_program, program, edition, level, message, field
):
    iop = make_program("Intensive outpatient", "intensive_outpatient")
    with app.app_context():
        enrollment = db.session.get(Enrollment, enrolled["enrollment"])
        target = db.session.get(Program, enrolled["program"] if program == "same" else iop)
        with pytest.raises(DomainError) as refused:
            admissions.transfer(
                enrollment,
                target,
                actor=User(**SETUP),
                on=today(),
                asam_edition=edition,
                asam_level=level,
                primary_counselor=None,
                expected_version=1,
            )
        assert refused.value.message.startswith(message)
        assert refused.value.field == field
        assert enrollment.active
        db.session.rollback()
    [enrollment] = enrollments(app)
    assert enrollment.active


# --- deadlines (service) -----------------------------------------------------------------


def _deadlines(admitted_on, today_, *, interval=90, reviews=(), kind="methadone_otp", **done):
    enrollment = Enrollment(
        admitted_on=admitted_on,
        program=Program(care_plan_review_days=interval, kind=ProgramKind(kind)),
        reviews=[CarePlanReview(reviewed_on=d) for d in reviews],
        **done,
    )
    return {d.name: d for d in milestones.deadlines(enrollment, today_)}


D = dt.date


@pytest.mark.parametrize(
    ("today_", "status"),
    [
        (D(2026, 1, 5), "upcoming"),
        (D(2026, 1, 11), "upcoming"),
        (D(2026, 1, 12), "due"),
        (D(2026, 1, 19), "due"),
        (D(2026, 1, 20), "overdue"),
    ],
)
def test_first_deadlines_are_14_days_after_admission(app, today_, status):
    with app.app_context():
        items = _deadlines(D(2026, 1, 5), today_)
    assert set(items) == {"Medical examination", "Psychosocial assessment", "Initial care plan"}
    for item in items.values():
        assert item.due_on == D(2026, 1, 19)
        assert item.status == status


def test_done_deadlines_and_care_plan_reviews(app):
    with app.app_context():
        items = _deadlines(
            D(2026, 1, 5),
            D(2026, 3, 1),
            medical_exam_on=D(2026, 1, 6),
            care_plan_on=D(2026, 1, 10),
        )
        assert items["Medical examination"].status == "done"
        assert items["Psychosocial assessment"].status == "overdue"
        assert items["Initial care plan"].status == "done"
        review = items["Care-plan review"]
        assert review.due_on == D(2026, 4, 10)  # care plan + 90 days
        assert review.status == "upcoming"

        items = _deadlines(
            D(2026, 1, 5),
            D(2026, 3, 1),
            interval=30,
            care_plan_on=D(2026, 1, 10),
            reviews=[D(2026, 2, 5), D(2026, 1, 30)],
        )
        review = items["Care-plan review"]
        assert review.due_on == D(2026, 3, 7)  # last review + 30 days
        assert review.status == "due"
        items = _deadlines(D(2026, 1, 5), D(2026, 3, 8), interval=30, care_plan_on=D(2026, 1, 10))
        assert items["Care-plan review"].due_on == D(2026, 2, 9)
        assert items["Care-plan review"].status == "overdue"
        # No review deadline before the initial care plan, nor after discharge.
        assert "Care-plan review" not in _deadlines(D(2026, 1, 5), D(2026, 3, 1))
        assert "Care-plan review" not in _deadlines(
            D(2026, 1, 5),
            D(2026, 3, 1),
            care_plan_on=D(2026, 1, 10),
            discharged_on=D(2026, 2, 1),
            discharge_reason=1,
        )


# --- deadlines (pages) ---------------------------------------------------------------------


def test_recording_milestones(app, client_as, enrolled):
    client = client_as("clinician")
    url = f"/patients/enrollments/{enrolled['enrollment']}/deadlines"
    page = client.get(url)
    assert page.status_code == 200
    assert "Medical examination" in page.get_data(as_text=True)

    refused = send(
        client,
        url,
        {
            "medical_exam_on": days_ago(21).isoformat(),
            "assessment_on": days_ago(5).isoformat(),
            "version": "1",
        },
    )
    assert refused.status_code == 200
    html = refused.get_data(as_text=True)
    assert "before the admission date" in field_error(html, "medical_exam_on")
    assert days_ago(5).isoformat() in html
    [enrollment] = enrollments(app)
    assert enrollment.medical_exam_on is None and enrollment.assessment_on is None

    future = send(
        client, url, {"care_plan_on": (today() + dt.timedelta(days=1)).isoformat(), "version": "1"}
    )
    assert "in the future" in field_error(future.get_data(as_text=True), "care_plan_on")

    saved = send(
        client,
        url,
        {
            "medical_exam_on": days_ago(20).isoformat(),
            "assessment_on": days_ago(5).isoformat(),
            "care_plan_on": days_ago(4).isoformat(),
            "version": "1",
        },
    )
    assert saved.status_code == 302
    [enrollment] = enrollments(app)
    assert (enrollment.medical_exam_on, enrollment.assessment_on, enrollment.care_plan_on) == (
        days_ago(20),
        days_ago(5),
        days_ago(4),
    )
    html = client.get(f"/patients/{enrolled['patient']}").get_data(as_text=True)
    assert 'data-testid="alerts"' not in html
    assert f"done {common.format_day(days_ago(20))}" in html


def test_care_plan_reviews_through_the_deadlines_page(app, client_as, enrolled):
    client = client_as("clinician")
    deadlines_url = f"/patients/enrollments/{enrolled['enrollment']}/deadlines"
    reviews_url = f"/patients/enrollments/{enrolled['enrollment']}/reviews"
    early = send(
        client, reviews_url, {"reviewed_on": days_ago(2).isoformat()}, form_url=deadlines_url
    )
    assert early.status_code == 400
    assert "initial care plan first" in field_error(early.get_data(as_text=True), "reviewed_on")

    send(client, deadlines_url, {"care_plan_on": days_ago(10).isoformat(), "version": "1"})
    before = send(
        client, reviews_url, {"reviewed_on": days_ago(11).isoformat()}, form_url=deadlines_url
    )
    assert before.status_code == 400
    assert "before the initial care plan" in field_error(
        before.get_data(as_text=True), "reviewed_on"
    )
    saved = send(
        client, reviews_url, {"reviewed_on": days_ago(2).isoformat()}, form_url=deadlines_url
    )
    assert saved.status_code == 302
    page = client.get(deadlines_url).get_data(as_text=True)
    assert common.format_day(days_ago(2) + dt.timedelta(days=90)) in page


def test_no_admission_on_a_record_entered_in_error(app, client_as, make_patient, make_program):
    patient_id = make_patient()
    program_id = make_program()
    with app.app_context():
        registry.mark_entered_in_error(
            db.session.get(Patient, patient_id),
            actor=User(**SETUP),
            reason="registered twice",
            expected_version=1,
        )
        db.session.commit()
    response = client_as("clinician").submit(
        f"/patients/{patient_id}/admit", admit_form(program_id)
    )
    assert response.status_code == 200
    assert "entered in error" in response.get_data(as_text=True)
    assert enrollments(app) == []


def test_staff_cannot_record_milestones_nor_reviews(app, client_as, enrolled):
    url = f"/patients/enrollments/{enrolled['enrollment']}/deadlines"
    staff = client_as("staff")
    assert staff.get(url).status_code == 403
    token = staff.csrf_token(f"/patients/{enrolled['patient']}")
    milestones = {"medical_exam_on": days_ago(1).isoformat(), "version": "1"}
    assert staff.post(url, data={**milestones, "csrf_token": token}).status_code == 403
    review = {"reviewed_on": days_ago(1).isoformat(), "csrf_token": token}
    reviews_url = f"/patients/enrollments/{enrolled['enrollment']}/reviews"
    assert staff.post(reviews_url, data=review).status_code == 403
    [enrollment] = enrollments(app)
    assert enrollment.medical_exam_on is None


def test_worklist_lists_overdue_items_of_the_users_sites_only(
    app, client_as, make_site, make_patient, make_program, make_enrollment
):
    east = make_site("EAST")
    mine = make_patient("Ann", "Ours")
    theirs = make_patient("Bea", "Theirs", site_id=east)
    make_enrollment(mine, make_program(), admitted_on=days_ago(30))
    make_enrollment(theirs, make_program(site_id=east), admitted_on=days_ago(30))
    fresh = make_patient("Cat", "Fresh")
    make_enrollment(fresh, make_program("Other"), admitted_on=today())

    html = client_as("clinician").get("/patients/deadlines").get_data(as_text=True)
    assert "Ours, Ann" in html
    assert "overdue" in html
    assert common.format_day(days_ago(30) + dt.timedelta(days=14)) in html
    assert "Theirs, Bea" not in html
    assert "Fresh, Cat" not in html  # due in 14 days: not within the week

    east_html = (
        client_as("staff", site_ids=[east]).get("/patients/deadlines").get_data(as_text=True)
    )
    assert "Theirs, Bea" in east_html and "Ours, Ann" not in east_html


# --- query counts --------------------------------------------------------------------------


@contextmanager
def count_statements(app):
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def _statements_for(app, client, url: str) -> int:
    assert client.get(url).status_code == 200  # warm up
    with count_statements(app) as statements:
        response = client.get(url)
    assert response.status_code == 200
    return len(statements)


def test_worklist_query_count_does_not_grow(
    app, client_as, make_user, make_patient, make_program, make_enrollment
):
    counselor = make_user("clinician", full_name="Casey Counselor")
    # The OTP's patients have three 8.12 deadlines each; the IOP's none (not an OTP).
    program_ids = [make_program(), make_program("IOP", "intensive_outpatient")]
    client = client_as("clinician")

    def add(n: int, start: int) -> None:
        for i in range(start, start + n):
            patient_id = make_patient(f"P{i}", f"Patient{i}")
            enrollment_id = make_enrollment(
                patient_id, program_ids[i % 2], admitted_on=days_ago(30 + i)
            )
            with app.app_context():
                db.session.get(Enrollment, enrollment_id).primary_counselor_id = counselor
                db.session.commit()

    add(2, 0)
    two = _statements_for(app, client, "/patients/deadlines")
    assert client.get("/patients/deadlines").get_data(as_text=True).count("Casey Counselor") == 3
    add(8, 2)
    ten = _statements_for(app, client, "/patients/deadlines")
    assert client.get("/patients/deadlines").get_data(as_text=True).count("Casey Counselor") == 15
    assert 0 < ten == two


def test_chart_query_count_does_not_grow(
    app, client_as, make_patient, make_program, make_enrollment
):
    patient_id = make_patient()
    program_ids = [make_program(f"Program {i}") for i in range(10)]
    client = client_as("clinician")
    url = f"/patients/{patient_id}"
    for program_id in program_ids[:2]:
        make_enrollment(patient_id, program_id, admitted_on=days_ago(30))
    two = _statements_for(app, client, url)
    for program_id in program_ids[2:]:
        make_enrollment(patient_id, program_id, admitted_on=days_ago(30))
    ten = _statements_for(app, client, url)
    assert client.get(url).get_data(as_text=True).count('badge text-bg-success">Active') == 10
    assert 0 < ten == two
