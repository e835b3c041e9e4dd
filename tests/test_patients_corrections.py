"""Enrollment corrections (counselor, level of care, admission date, a mistaken discharge):
audited, with a reason, kept as append-only history; and edit conflicts that can be
resolved: the record's values now beside the user's, the second save goes through."""

from __future__ import annotations

import datetime as dt
import html as html_text
import re
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.audit.models import AuditEvent
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.forms import CONTROL_CHARACTER_MESSAGE
from clinic.patients import admissions, common, milestones
from clinic.patients import corrections as correction_rules
from clinic.patients.forms import RELOAD_MESSAGE
from clinic.patients.models import Enrollment, EnrollmentCorrection, Patient, Program
from clinic.web import CONFLICT_MESSAGE
from tests.test_patients_registry import field_error, hidden_fields, send

CHICAGO = ZoneInfo("America/Chicago")
SETUP = {"id": None, "username": "setup", "all_sites": True}


def today() -> dt.date:
    return dt.datetime.now(CHICAGO).date()


def days_ago(n: int) -> dt.date:
    return today() - dt.timedelta(days=n)


def top_error(html: str) -> str:
    match = re.search(r'<div class="alert alert-danger" role="alert"[^>]*>([^<]*)</div>', html)
    return html_text.unescape(match.group(1)) if match else ""


def corrections(app) -> list[EnrollmentCorrection]:
    with app.app_context():
        found = list(
            db.session.scalars(sa.select(EnrollmentCorrection).order_by(EnrollmentCorrection.id))
        )
        db.session.expunge_all()
        return found


def enrollment(app, enrollment_id: int) -> Enrollment:
    with app.app_context():
        found = db.session.get(Enrollment, enrollment_id)
        db.session.expunge_all()
        return found


@pytest.fixture
def enrolled(make_user, make_patient, make_program, make_enrollment) -> dict[str, int]:
    counselor = make_user("clinician", full_name="Casey Counselor")
    other = make_user("clinician", full_name="Robin Other")
    patient = make_patient()  # intake 2026-01-05
    program = make_program()
    enrollment_id = make_enrollment(patient, program, admitted_on=days_ago(20))
    return {
        "patient": patient,
        "program": program,
        "enrollment": enrollment_id,
        "counselor": counselor,
        "other": other,
    }


def correction(enrolled, **overrides) -> dict:
    data = {
        "primary_counselor_id": str(enrolled["counselor"]),
        "level_of_care": "3:OTP",
        "admitted_on": days_ago(20).isoformat(),
        "reason": "Counselor assigned at intake meeting.",
    }
    data.update(overrides)
    return data


def url(enrolled, what: str = "correct") -> str:
    return f"/patients/enrollments/{enrolled['enrollment']}/{what}"


# --- corrections -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["clinician", "admin"])
def test_counselor_level_and_admission_date_corrected_with_history(app, client_as, enrolled, role):
    client = client_as(role)
    response = send(
        client,
        url(enrolled),
        correction(
            enrolled,
            level_of_care="3:2.1",
            admitted_on=days_ago(21).isoformat(),
            reason="Admission was the day before; IOP level agreed.",
        ),
    )
    assert response.status_code == 302
    after = enrollment(app, enrolled["enrollment"])
    assert (after.primary_counselor_id, after.asam_level, after.admitted_on) == (
        enrolled["counselor"],
        "2.1",
        days_ago(21),
    )
    rows = corrections(app)
    assert [(c.field.value, c.old_value, c.new_value) for c in rows] == [
        ("primary_counselor", None, "Casey Counselor"),
        ("level_of_care", "OTP (ASAM 3rd ed.)", "2.1 (ASAM 3rd ed.)"),
        ("admitted_on", days_ago(20).isoformat(), days_ago(21).isoformat()),
    ]
    assert {c.reason for c in rows} == {"Admission was the day before; IOP level agreed."}
    assert {c.corrected_by_id for c in rows} == {client.user_id}
    chart = client.get(f"/patients/{enrolled['patient']}").get_data(as_text=True)
    history = chart.split('data-testid="corrections"', 1)[1].split("</table>", 1)[0]
    assert "Casey Counselor" in history and "Admission was the day before" in history
    with app.app_context():
        event = db.session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.entity_type == "enrollment", AuditEvent.action == "update")
            .order_by(AuditEvent.id.desc())
        ).first()
        assert event.user_id == client.user_id
        assert event.patient_id == enrolled["patient"]
        assert "primary_counselor" in event.details and "admitted_on" in event.details
        assert "Admission was the day before" not in event.details  # the reason stays in the row


def test_staff_cannot_correct(app, client_as, enrolled):
    staff = client_as("staff")
    assert staff.get(url(enrolled)).status_code == 403
    response = staff.submit(url(enrolled), correction(enrolled), form_url="/patients/")
    assert response.status_code == 403
    assert corrections(app) == []


def test_another_sites_clinician_gets_not_found(app, client_as, enrolled, make_site):
    east = make_site("EAST")
    clinician = client_as("clinician", site_ids=[east])
    assert clinician.get(url(enrolled)).status_code == 404
    response = clinician.submit(url(enrolled), correction(enrolled), form_url="/patients/")
    assert response.status_code == 404
    assert corrections(app) == []


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("", "This field is required."),
        ("too short", "Field must be between 10 and 500 characters long."),
        ("x" * 501, "Field must be between 10 and 500 characters long."),
        ("Wrong counselor\x00 picked", CONTROL_CHARACTER_MESSAGE),
    ],
)
def test_a_correction_needs_a_reason(app, client_as, enrolled, reason, message):
    response = send(client_as("clinician"), url(enrolled), correction(enrolled, reason=reason))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html_text.unescape(field_error(html, "reason")) == message
    # The other entries are kept.
    assert re.search(rf'<option selected value="{enrolled["counselor"]}">', html) or re.search(
        rf'<option value="{enrolled["counselor"]}" selected>', html
    )
    assert corrections(app) == []


@pytest.mark.parametrize("reason", ["ten chars!", "y" * 500])
def test_a_reason_at_the_edges_is_accepted(app, client_as, enrolled, reason):
    response = send(client_as("clinician"), url(enrolled), correction(enrolled, reason=reason))
    assert response.status_code == 302
    assert [c.reason for c in corrections(app)] == [reason]


def test_the_service_checks_the_reason_too(app, enrolled):
    with app.app_context():
        record = db.session.get(Enrollment, enrolled["enrollment"])
        for reason, message in [
            ("short", correction_rules.CORRECTION_REASON_MESSAGE),
            ("Tab\u202eflipped text here", CONTROL_CHARACTER_MESSAGE),
        ]:
            with pytest.raises(DomainError) as error:
                correction_rules.correct_enrollment(
                    record,
                    actor=User(**SETUP),
                    reason=reason,
                    expected_version=record.version,
                    primary_counselor=None,
                    asam_edition="3",
                    asam_level="OTP",
                    admitted_on=days_ago(19),
                )
            assert (error.value.message, error.value.field) == (message, "reason")


def test_nothing_changed_is_said_on_top(app, client_as, enrolled):
    response = send(
        client_as("clinician"), url(enrolled), correction(enrolled, primary_counselor_id="0")
    )
    assert response.status_code == 200
    assert top_error(response.get_data(as_text=True)) == correction_rules.NOTHING_TO_CORRECT_MESSAGE
    assert corrections(app) == []


def test_a_new_counselor_must_be_an_active_clinician_of_the_site(
    app, client_as, enrolled, make_user
):
    staff_member = make_user("staff", full_name="Front Desk")
    response = send(
        client_as("clinician"),
        url(enrolled),
        correction(enrolled, primary_counselor_id=str(staff_member)),
    )
    assert response.status_code == 200
    assert (
        field_error(response.get_data(as_text=True), "primary_counselor_id")
        == "Not a valid choice."
    )
    assert corrections(app) == []


def _record_exam(app, enrolled, on: dt.date) -> None:
    with app.app_context():
        record = db.session.get(Enrollment, enrolled["enrollment"])
        milestones.record_milestones(
            record,
            actor=User(**SETUP),
            values={"medical_exam_on": on},
            expected_version=record.version,
        )
        db.session.commit()


@pytest.mark.parametrize(
    ("admitted_on", "message"),
    [
        (lambda: today() + dt.timedelta(days=1), "The admission date is in the future."),
        (
            lambda: dt.date(2026, 1, 4),
            "The admission date is before the patient's intake date (5 Jan 2026).",
        ),
        (
            lambda: days_ago(9),
            # {exam} is filled in when the test runs: a date taken at collection was
            # the day before when the site's midnight fell between the two.
            "The admission date is after the medical examination recorded on {exam}.",
        ),
        (lambda: dt.date(1979, 1, 1), "The admission date is before the date of birth."),
    ],
)
def test_a_corrected_admission_date_obeys_the_date_rules(
    app, client_as, enrolled, admitted_on, message
):
    _record_exam(app, enrolled, days_ago(10))
    response = send(
        client_as("clinician"),
        url(enrolled),
        correction(enrolled, admitted_on=admitted_on().isoformat()),
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    exam = common.format_day(days_ago(10))
    assert html_text.unescape(field_error(html, "admitted_on")) == message.format(exam=exam)
    assert 'value="Counselor assigned at intake meeting."' in html or (
        "Counselor assigned at intake meeting." in html
    )
    assert enrollment(app, enrolled["enrollment"]).admitted_on == days_ago(20)
    assert corrections(app) == []


def test_the_admission_may_move_up_to_the_first_milestone(app, client_as, enrolled):
    _record_exam(app, enrolled, days_ago(10))
    response = send(
        client_as("clinician"),
        url(enrolled),
        correction(enrolled, admitted_on=days_ago(10).isoformat()),
    )
    assert response.status_code == 302
    assert enrollment(app, enrolled["enrollment"]).admitted_on == days_ago(10)


def test_the_database_refuses_an_admission_after_a_milestone(app, enrolled):
    _record_exam(app, enrolled, days_ago(10))
    with app.app_context(), pytest.raises(sa.exc.IntegrityError) as error:
        db.session.execute(
            sa.update(Enrollment)
            .where(Enrollment.id == enrolled["enrollment"])
            .values(admitted_on=days_ago(9))
        )
    assert "exam_after_admission" in str(error.value)


def test_an_enrollment_that_began_with_a_transfer_keeps_its_date(
    app, client_as, enrolled, make_program
):
    iop = make_program("Intensive outpatient", "intensive_outpatient")
    with app.app_context():
        old = db.session.get(Enrollment, enrolled["enrollment"])
        new = admissions.transfer(
            old,
            db.session.get(Program, iop),
            actor=User(**SETUP),
            on=days_ago(5),
            asam_edition="3",
            asam_level="2.1",
            primary_counselor=None,
            expected_version=old.version,
        )
        db.session.commit()
        new_id = new.id
    response = send(
        client_as("clinician"),
        f"/patients/enrollments/{new_id}/correct",
        {
            "primary_counselor_id": "0",
            "level_of_care": "3:2.1",
            "admitted_on": days_ago(6).isoformat(),
            "reason": "Typed the wrong day.",
        },
    )
    assert response.status_code == 200
    assert field_error(response.get_data(as_text=True), "admitted_on") == html_text.escape(
        correction_rules.TRANSFER_ADMISSION_MESSAGE
    ).replace("&#x27;", "&#39;")
    # ...and the old enrollment's discharge (a transfer) cannot be undone.
    undo = send(
        client_as("clinician"),
        f"/patients/enrollments/{enrolled['enrollment']}/undo-discharge",
        {"reason": "Transferred by mistake."},
        form_url=url(enrolled),  # an ended enrollment's correction page holds the form
    )
    assert undo.status_code == 200
    assert top_error(undo.get_data(as_text=True)) == correction_rules.UNDO_TRANSFER_MESSAGE
    assert corrections(app) == []


# --- append-only -------------------------------------------------------------------------------


def test_corrections_cannot_be_changed_nor_removed(app, client_as, enrolled):
    send(client_as("clinician"), url(enrolled), correction(enrolled))
    [row] = corrections(app)
    for statement in (
        sa.update(EnrollmentCorrection).values(reason="Rewritten history"),
        sa.delete(EnrollmentCorrection),
    ):
        with app.app_context(), pytest.raises(sa.exc.IntegrityError) as error:
            db.session.execute(statement)
        assert "enrollment_correction_append_only" in str(error.value)
    assert corrections(app)[0].reason == row.reason


# --- undoing a discharge -------------------------------------------------------------------------


def _discharge(app, enrollment_id: int, on: dt.date) -> None:
    with app.app_context():
        record = db.session.get(Enrollment, enrollment_id)
        admissions.discharge(
            record, actor=User(**SETUP), discharged_on=on, reason=2, expected_version=record.version
        )
        db.session.commit()


def test_a_mistaken_discharge_is_undone_with_its_history(app, client_as, enrolled):
    _discharge(app, enrolled["enrollment"], days_ago(3))
    client = client_as("clinician")
    chart = client.get(f"/patients/{enrolled['patient']}").get_data(as_text=True)
    assert f'href="{url(enrolled)}">Undo discharge…</a>' in chart
    page = client.get(url(enrolled)).get_data(as_text=True)
    assert "Dropped out (left against advice)" in page
    assert f'action="{url(enrolled, "undo-discharge")}"' in page
    response = send(
        client,
        url(enrolled, "undo-discharge"),
        {"reason": "Wrong patient discharged."},
        form_url=url(enrolled),
    )
    assert response.status_code == 302
    after = enrollment(app, enrolled["enrollment"])
    assert after.active and after.discharge_reason is None
    [row] = corrections(app)
    assert (row.field.value, row.old_value, row.new_value, row.reason) == (
        "discharge",
        f"{days_ago(3).isoformat()}: Dropped out (left against advice)",
        None,
        "Wrong patient discharged.",
    )
    # Active again: nothing to undo; a form sent again is answered without a form.
    again = client.submit(
        url(enrolled, "undo-discharge"),
        {"reason": "Wrong patient discharged."},
        form_url=url(enrolled),
    )
    assert again.status_code == 200
    body = again.get_data(as_text=True)
    assert 'data-testid="read-only"' in body and 'name="reason"' not in body
    assert len(corrections(app)) == 1


def test_undo_refused_when_readmitted_since(app, client_as, enrolled, make_enrollment):
    _discharge(app, enrolled["enrollment"], days_ago(3))
    make_enrollment(enrolled["patient"], enrolled["program"], admitted_on=days_ago(1))
    response = send(
        client_as("clinician"),
        url(enrolled, "undo-discharge"),
        {"reason": "Wrong patient discharged."},
        form_url=url(enrolled),
    )
    assert response.status_code == 200
    assert top_error(response.get_data(as_text=True)) == correction_rules.UNDO_READMITTED_MESSAGE
    assert corrections(app) == []


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("", "This field is required."),
        ("Wrong one\u202e discharged", CONTROL_CHARACTER_MESSAGE),
    ],
)
def test_undo_needs_a_reason(app, client_as, enrolled, reason, message):
    _discharge(app, enrolled["enrollment"], days_ago(3))
    response = send(
        client_as("clinician"),
        url(enrolled, "undo-discharge"),
        {"reason": reason},
        form_url=url(enrolled),
    )
    assert response.status_code == 200
    assert html_text.unescape(field_error(response.get_data(as_text=True), "reason")) == message
    assert not enrollment(app, enrolled["enrollment"]).active
    assert corrections(app) == []


def test_staff_cannot_undo_a_discharge(app, client_as, enrolled):
    _discharge(app, enrolled["enrollment"], days_ago(3))
    staff = client_as("staff")
    response = staff.submit(
        url(enrolled, "undo-discharge"),
        {"reason": "Wrong patient discharged."},
        form_url="/patients/",
    )
    assert response.status_code == 403
    assert not enrollment(app, enrolled["enrollment"]).active


def test_an_ended_enrollment_offers_no_correction_inputs(app, client_as, enrolled):
    _discharge(app, enrolled["enrollment"], days_ago(3))
    client = client_as("clinician")
    for what in ("correct", "discharge", "transfer"):
        html = client.get(url(enrolled, what)).get_data(as_text=True)
        assert "ended on" in html, what
        assert 'name="admitted_on"' not in html and 'name="discharged_on"' not in html
        # The one change left: undoing the discharge (its form on the correction page).
        expected = url(enrolled, "undo-discharge") if what == "correct" else url(enrolled)
        assert expected in html, what
    chart = client.get(f"/patients/{enrolled['patient']}").get_data(as_text=True)
    assert "Correct…" not in chart and "Undo discharge…" in chart


# --- edit conflicts that can be resolved --------------------------------------------------------


def test_a_correction_conflict_shows_the_current_values_and_the_second_save_goes_through(
    app, client_as, enrolled
):
    first, second = client_as("clinician"), client_as("clinician")
    page = second.get(url(enrolled)).get_data(as_text=True)  # opened before the first saves
    stale = hidden_fields(page, url(enrolled), same_page=True)
    assert send(first, url(enrolled), correction(enrolled)).status_code == 302

    mine = {
        **stale,
        **correction(
            enrolled,
            primary_counselor_id=str(enrolled["other"]),
            reason="Robin took over the caseload.",
        ),
    }
    refused = second.post(url(enrolled), data=mine)
    assert refused.status_code == 200
    html = refused.get_data(as_text=True)
    assert top_error(html) == CONFLICT_MESSAGE
    table = html.split('data-testid="conflict"', 1)[1].split("</table>", 1)[0]
    assert re.search(r"Primary counselor</th><td>Casey Counselor</td><td>Robin Other", table)
    assert corrections(app)[-1].new_value == "Casey Counselor"

    # The form now carries the record's version: saving again goes through.
    again = hidden_fields(html, url(enrolled), same_page=True)
    assert again["version"] == "2"
    saved = second.post(url(enrolled), data={**mine, "version": again["version"]})
    assert saved.status_code == 302
    assert enrollment(app, enrolled["enrollment"]).primary_counselor_id == enrolled["other"]


def test_a_crafted_post_without_the_version_is_still_refused(app, client_as, enrolled):
    response = send(
        client_as("clinician"), url(enrolled), {**correction(enrolled), "version": None}
    )
    assert response.status_code == 200
    assert top_error(response.get_data(as_text=True)) == RELOAD_MESSAGE
    assert corrections(app) == []


def test_a_demographics_conflict_can_be_resolved(app, client_as, make_patient, site):
    patient_id = make_patient("Ann", "Lee", city="Springfield")
    first, second = client_as("staff"), client_as("staff")
    edit = f"/patients/{patient_id}/edit"
    stale = hidden_fields(second.get(edit).get_data(as_text=True), edit, same_page=True)
    base = {
        "site_id": str(site),
        "first_name": "Ann",
        "last_name": "Lee",
        "date_of_birth": "1980-04-02",
        "sex_at_birth": "female",
        "primary_substance": "fentanyl",
        "intake_date": "2026-01-05",
    }
    assert send(first, edit, {**base, "city": "Shelbyville"}).status_code == 302

    mine = {**stale, **base, "city": "Springfield", "state": "IL"}
    refused = second.post(edit, data=mine)
    html = refused.get_data(as_text=True)
    assert top_error(html) == CONFLICT_MESSAGE
    table = html.split('data-testid="conflict"', 1)[1].split("</table>", 1)[0]
    assert re.search(r"City</th><td>Shelbyville</td><td>Springfield", table)
    assert 'value="IL"' in html  # the user's entries are kept

    again = hidden_fields(html, edit, same_page=True)
    saved = second.post(edit, data={**mine, "version": again["version"]})
    assert saved.status_code == 302
    with app.app_context():
        patient = db.session.get(Patient, patient_id)
        assert (patient.city, patient.state) == ("Springfield", "IL")


@pytest.mark.parametrize("what", ["discharge", "deadlines"])
def test_enrollment_form_conflicts_rearm_the_version(app, client_as, enrolled, what):
    first, second = client_as("clinician"), client_as("clinician")
    page_url = url(enrolled, what)
    stale = hidden_fields(second.get(page_url).get_data(as_text=True), page_url, same_page=True)
    assert send(first, url(enrolled), correction(enrolled)).status_code == 302
    data = (
        {"discharged_on": today().isoformat(), "reason": "1"}
        if what == "discharge"
        else {"medical_exam_on": days_ago(2).isoformat()}
    )
    refused = second.post(page_url, data={**stale, **data})
    html = refused.get_data(as_text=True)
    assert top_error(html) == CONFLICT_MESSAGE
    again = hidden_fields(html, page_url, same_page=True)
    assert again["version"] == "2"
    assert second.post(page_url, data={**again, **data}).status_code == 302
