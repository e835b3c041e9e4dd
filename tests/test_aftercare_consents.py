"""Support network, 42 CFR 2.31 consents, revocation, restriction requests (§2.26) and the
disclosure check (issue 12, task E1): every element required by the field and by the
database, a signed consent never changed (triggers on both engines), revocation and lifting
written once, ``check_disclosure`` refusing every disclosure no active consent covers."""

from __future__ import annotations

import datetime as dt
import re
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from clinic.extensions import db
from tests.conftest import login
from tests.test_audit_report import count_statements

PURPOSE = "aftercare_referral"


# --- fixtures ---------------------------------------------------------------------------------


def make_resource(app, name: str, kind: str = "recovery_residence") -> int:
    from clinic.aftercare.models import AftercareResource

    with app.app_context():
        resource = AftercareResource(name=name, kind=kind)
        if kind == "support_group":
            resource.support_group_type = "na"
        db.session.add(resource)
        db.session.commit()
        return resource.id


@pytest.fixture
def ac(app, site, make_site, make_user, make_program, make_patient, make_enrollment):
    """A MAIN patient in treatment with a support person; two resources; staff, a
    clinician, an administrator; a patient of another site."""
    from clinic.accounts.models import User
    from clinic.aftercare import support
    from clinic.patients.models import Patient
    from clinic.sites.time import site_today

    east = make_site("EAST", "East Side Clinic")
    program = make_program("Intensive outpatient", kind="office_buprenorphine")
    patient = make_patient("Dana", "Reyes")
    enrollment = make_enrollment(patient, program, admitted_on=dt.date(2026, 1, 5))
    other = make_patient("Luis", "Ruiz", site_id=east)
    staff = make_user("staff", "sam.staff", full_name="Sam Staff")
    home = make_resource(app, "Harbor House")
    clinic_care = make_resource(app, "Lakeside Outpatient", "outpatient_care")
    with app.test_request_context():
        actor = db.session.get(User, staff)
        person = support.add_support_person(
            db.session.get(Patient, patient),
            actor=actor,
            data=support.SupportPersonInput(
                name="Maria Reyes", relationship="family", can_offer_housing=True
            ),
        )
        db.session.commit()
        today = site_today(db.session.get(Patient, patient).site)
        person_id = person.id
    return SimpleNamespace(
        east=east,
        program=program,
        patient=patient,
        enrollment=enrollment,
        other=other,
        staff=staff,
        home=home,
        clinic_care=clinic_care,
        person=person_id,
        today=today,
    )


def consent_input(ac, **overrides):
    from clinic.aftercare.consents import ConsentInput

    values = {
        "kind": "specific_disclosure",
        "program_id": ac.program,
        "information_description": "Enrollment in treatment and current medication",
        "recipient_type": "resource",
        "resource_id": ac.home,
        "support_person_id": None,
        "recipient_class": None,
        "purpose": PURPOSE,
        "purpose_text": "Placement in a recovery residence",
        "right_to_revoke": "In writing, at the front desk.",
        "expiry_kind": "date",
        "expires_on": ac.today + dt.timedelta(days=90),
        "expiry_event": None,
        "signature_method": "paper",
        "paper_scan_reference": "SCAN-2026-0114",
        "electronic_signature_name": None,
        "signed_on": ac.today,
        "redisclosure_statement": None,
    }
    values.update(overrides)
    return ConsentInput(**values)


def record(app, ac, **overrides) -> int:
    from clinic.accounts.models import User
    from clinic.aftercare import consents
    from clinic.patients.models import Patient

    with app.test_request_context():
        consent = consents.record_consent(
            db.session.get(Patient, ac.patient),
            actor=db.session.get(User, ac.staff),
            data=consent_input(ac, **overrides),
        )
        db.session.commit()
        return consent.id


def check(app, ac, *, resource=None, person=None, purpose=PURPOSE, on=None, notes=False):
    """check_disclosure's consent id, or the refusal's message."""
    from clinic.aftercare.consent_models import SupportPerson
    from clinic.aftercare.consents import DisclosureRefused, Recipient, check_disclosure
    from clinic.aftercare.models import AftercareResource
    from clinic.patients.models import Patient

    with app.app_context():
        recipient = Recipient(
            resource=db.session.get(AftercareResource, resource) if resource else None,
            support_person=db.session.get(SupportPerson, person) if person else None,
        )
        try:
            return check_disclosure(
                db.session.get(Patient, ac.patient),
                recipient=recipient,
                purpose=purpose,
                on=on or ac.today,
                counseling_notes=notes,
            ).id
        except DisclosureRefused as refused:
            return refused.message


@pytest.fixture
def staff_client(app, ac, username_of):
    client = app.test_client()
    assert login(client, username_of(ac.staff)).status_code == 302
    return client


def form_data(ac, **overrides) -> dict:
    data = {
        "kind": "specific_disclosure",
        "program_id": str(ac.program),
        "information_description": "Enrollment in treatment and current medication",
        "recipient_type": "resource",
        "resource_id": str(ac.home),
        "support_person_id": "",
        "recipient_class": "",
        "purpose": PURPOSE,
        "purpose_text": "Placement in a recovery residence",
        "right_to_revoke": "In writing, at the front desk.",
        "expiry_kind": "date",
        "expires_on": (ac.today + dt.timedelta(days=90)).isoformat(),
        "expiry_event": "",
        "signature_method": "paper",
        "paper_scan_reference": "SCAN-2026-0114",
        "electronic_signature_name": "",
        "signed_on": ac.today.isoformat(),
        "redisclosure_statement": "",
    }
    data.update(overrides)
    return data


def post_consent(client, ac, **overrides):
    url = f"/aftercare/patients/{ac.patient}/consents/new"
    html = client.get(url).get_data(as_text=True)
    token = re.search(r'name="submission_token"[^>]*value="([^"]+)"', html).group(1)
    data = {"submission_token": token, **form_data(ac, **overrides)}
    return client.submit(url, data)


def count_consents(app) -> int:
    from clinic.aftercare.consent_models import Consent

    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(Consent))


def field_error(html: str, field: str) -> str:
    match = re.search(rf'id="{field}-error"[^>]*>([^<]*)<', html)
    return match.group(1) if match else ""


# --- recording over HTTP --------------------------------------------------------------------


def test_staff_record_a_consent_and_see_it_active(app, ac, staff_client):
    response = post_consent(staff_client, ac)
    assert response.status_code == 302, response.get_data(as_text=True)
    page = staff_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Active" in page and "Harbor House" in page
    assert "42 CFR part 2" in page  # the §2.32 notice
    listing = staff_client.get(f"/aftercare/patients/{ac.patient}/consents").get_data(as_text=True)
    assert 'data-state="active"' in listing


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", ""),
        ("program_id", ""),
        ("information_description", "   "),
        ("recipient_type", ""),
        ("resource_id", ""),
        ("purpose", ""),
        ("purpose_text", ""),
        ("right_to_revoke", ""),
        ("expiry_kind", ""),
        ("expires_on", ""),
        ("signature_method", ""),
        ("paper_scan_reference", ""),
        ("signed_on", ""),
    ],
)
def test_a_blank_element_is_refused_by_its_field_and_the_rest_kept(
    app, ac, staff_client, field, value
):
    response = post_consent(staff_client, ac, **{field: value})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert field_error(html, field), f"no error next to {field}"
    assert "Placement in a recovery residence" in html or field == "purpose_text"
    assert count_consents(app) == 0


def test_electronic_signature_needs_the_typed_name(app, ac, staff_client):
    response = post_consent(
        staff_client, ac, signature_method="electronic", paper_scan_reference=""
    )
    assert response.status_code == 400
    assert field_error(response.get_data(as_text=True), "electronic_signature_name")


def test_tpo_consent_needs_its_redisclosure_statement_and_may_have_no_expiry(app, ac, staff_client):
    tpo = {"kind": "tpo", "purpose": "tpo", "expiry_kind": "none", "expires_on": ""}
    response = post_consent(staff_client, ac, **tpo)
    assert field_error(response.get_data(as_text=True), "redisclosure_statement")
    response = post_consent(staff_client, ac, **tpo, redisclosure_statement="May be redisclosed.")
    assert response.status_code == 302
    assert count_consents(app) == 1


def test_only_a_tpo_consent_may_have_no_expiry(app, ac, staff_client):
    response = post_consent(staff_client, ac, expiry_kind="none", expires_on="")
    assert response.status_code == 400
    assert "Only a TPO consent" in field_error(response.get_data(as_text=True), "expiry_kind")


def test_an_expiry_before_the_signature_is_refused(app, ac, staff_client):
    before = (ac.today - dt.timedelta(days=1)).isoformat()
    response = post_consent(staff_client, ac, expires_on=before)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "before the signature date" in field_error(html, "expires_on")
    assert count_consents(app) == 0


def test_a_signature_in_the_future_is_refused(app, ac, staff_client):
    tomorrow = (ac.today + dt.timedelta(days=1)).isoformat()
    response = post_consent(staff_client, ac, signed_on=tomorrow)
    assert "future" in field_error(response.get_data(as_text=True), "signed_on")


@pytest.mark.parametrize(
    "field", ["information_description", "purpose_text", "paper_scan_reference"]
)
def test_nul_bytes_are_refused_by_the_field(app, ac, staff_client, field):
    response = post_consent(staff_client, ac, **{field: "Placement\x00 in"})
    assert response.status_code == 400
    assert field_error(response.get_data(as_text=True), field)
    assert count_consents(app) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("program_id", "99999999999999999999"),
        ("resource_id", "-1"),
        ("support_person_id", "abc"),
        ("information_description", "x" * 5000),
        ("expires_on", "99999-01-01"),
    ],
)
def test_bad_input_never_500(app, ac, staff_client, field, value):
    overrides = {field: value}
    if field == "support_person_id":
        overrides["recipient_type"] = "support_person"
    response = post_consent(staff_client, ac, **overrides)
    assert response.status_code == 400
    assert count_consents(app) == 0


def test_another_patients_support_person_is_refused(app, ac, staff_client, make_patient):
    from clinic.accounts.models import User
    from clinic.aftercare import support
    from clinic.patients.models import Patient

    stranger = make_patient("Ann", "Other")
    with app.test_request_context():
        person = support.add_support_person(
            db.session.get(Patient, stranger),
            actor=db.session.get(User, ac.staff),
            data=support.SupportPersonInput(name="Bo Other", relationship="friend"),
        )
        db.session.commit()
        person_id = person.id
    response = post_consent(
        staff_client,
        ac,
        recipient_type="support_person",
        resource_id="",
        support_person_id=str(person_id),
    )
    assert response.status_code == 400
    assert count_consents(app) == 0


def test_a_double_submit_records_one_consent(app, ac, staff_client):
    url = f"/aftercare/patients/{ac.patient}/consents/new"
    html = staff_client.get(url).get_data(as_text=True)
    token = re.search(r'name="submission_token"[^>]*value="([^"]+)"', html).group(1)
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)
    data = {"submission_token": token, "csrf_token": csrf, **form_data(ac)}
    first = staff_client.post(url, data=data)
    second = staff_client.post(url, data=data)
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    assert count_consents(app) == 1


def test_a_changed_consent_is_a_new_one_prefilled_from_the_old(app, ac, staff_client):
    old = record(app, ac)
    page = staff_client.get(
        f"/aftercare/patients/{ac.patient}/consents/new?based_on={old}"
    ).get_data(as_text=True)
    assert 'data-testid="based-on"' in page
    assert "Placement in a recovery residence" in page
    assert "SCAN-2026-0114" not in page  # the signature is never copied
    response = post_consent(staff_client, ac, based_on_id=str(old), purpose_text="Placement")
    assert response.status_code == 302
    assert count_consents(app) == 2


# --- the database refuses what the service refuses -----------------------------------------


def _row(app, ac) -> dict:
    from clinic.accounts.models import User  # noqa: F401

    return {
        "patient_id": ac.patient,
        "patient_name": "Dana Reyes",
        "kind": "specific_disclosure",
        "program_id": ac.program,
        "program_name": "Intensive outpatient",
        "information_description": "Enrollment",
        "resource_id": ac.home,
        "support_person_id": None,
        "recipient_class": None,
        "recipient_name": "Harbor House",
        "purpose": PURPOSE,
        "purpose_text": "Placement",
        "right_to_revoke": "In writing",
        "expiry_kind": "date",
        "expires_on": ac.today + dt.timedelta(days=30),
        "expiry_event": None,
        "signature_method": "paper",
        "paper_scan_reference": "SCAN-1",
        "electronic_signature_name": None,
        "signed_on": ac.today,
        "redisclosure_statement": None,
        "based_on_id": None,
        "recorded_by_id": ac.staff,
        "recorded_at": dt.datetime.now(dt.UTC),
    }


def _insert(app, row: dict) -> None:
    from clinic.aftercare.consent_models import Consent

    with app.app_context():
        try:
            db.session.execute(sa.insert(Consent.__table__).values(**row))
            db.session.commit()
        finally:
            db.session.rollback()


def test_a_valid_raw_row_is_accepted(app, ac):
    _insert(app, _row(app, ac))
    assert count_consents(app) == 1


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("patient_name", ""),
        ("program_name", ""),
        ("information_description", ""),
        ("recipient_name", ""),
        ("purpose_text", ""),
        ("right_to_revoke", ""),
        ("paper_scan_reference", ""),
        ("patient_id", None),
        ("program_id", None),
        ("purpose", None),
        ("signed_on", None),
        ("recorded_by_id", None),
        ("resource_id", None),  # no recipient at all
        ("expires_on", None),  # dated, without its date
        ("paper_scan_reference", None),  # paper, without its scan
        ("expiry_kind", "none"),  # no expiry on a non-TPO consent
        ("recipient_class", "residences"),  # two recipients
        ("purpose", "tpo"),  # a TPO purpose on a specific consent
    ],
)
def test_the_database_refuses_a_consent_missing_an_element(app, ac, column, value):
    row = _row(app, ac)
    row[column] = value
    with pytest.raises(sa.exc.IntegrityError):
        _insert(app, row)
    assert count_consents(app) == 0


def test_the_database_refuses_an_expiry_before_the_signature(app, ac):
    row = _row(app, ac)
    row["expires_on"] = ac.today - dt.timedelta(days=1)
    with pytest.raises(sa.exc.IntegrityError, match="expires_after_signature"):
        _insert(app, row)


def _sql(app, statement: str, **params) -> None:
    with app.app_context():
        try:
            db.session.execute(sa.text(statement), params)
            db.session.commit()
        finally:
            db.session.rollback()


@pytest.mark.parametrize(
    "assignment",
    [
        "information_description = 'Everything'",
        "recipient_name = 'Someone else'",
        "expires_on = :later",
        "signed_on = signed_on",  # unchanged: allowed below
        "purpose_text = 'Other'",
    ],
)
def test_a_signed_consent_is_never_updated_by_sql(app, ac, assignment):
    consent_id = record(app, ac)
    if assignment == "signed_on = signed_on":
        _sql(app, f"UPDATE part2_consent SET {assignment} WHERE id = :id", id=consent_id)
        return
    with pytest.raises(sa.exc.IntegrityError, match="part2_consent_immutable"):
        _sql(
            app,
            f"UPDATE part2_consent SET {assignment} WHERE id = :id",
            id=consent_id,
            later=ac.today + dt.timedelta(days=400),
        )


def test_a_consent_is_never_deleted_by_sql(app, ac):
    consent_id = record(app, ac)
    with pytest.raises(sa.exc.IntegrityError, match="part2_consent_no_delete"):
        _sql(app, "DELETE FROM part2_consent WHERE id = :id", id=consent_id)
    assert count_consents(app) == 1


def test_support_people_and_restrictions_are_never_deleted_by_sql(app, ac):
    with pytest.raises(sa.exc.IntegrityError, match="support_person_no_delete"):
        _sql(app, "DELETE FROM support_person WHERE id = :id", id=ac.person)
    from clinic.accounts.models import User
    from clinic.aftercare import restrictions
    from clinic.patients.models import Patient

    with app.test_request_context():
        restriction = restrictions.record_restriction(
            db.session.get(Patient, ac.patient),
            actor=db.session.get(User, ac.staff),
            purpose=None,
            recipient_type="anyone",
            resource_id=None,
            support_person_id=None,
            recipient_class=None,
            details="Nothing to anyone.",
            requested_on=ac.today,
        )
        db.session.commit()
        restriction_id = restriction.id
    with pytest.raises(sa.exc.IntegrityError, match="disclosure_restriction_no_delete"):
        _sql(app, "DELETE FROM disclosure_restriction WHERE id = :id", id=restriction_id)
    assert "restriction is in force" in check(app, ac, resource=ac.home)


# --- revocation ---------------------------------------------------------------------------------


def revoke(app, ac, consent_id: int, on=None):
    from clinic.accounts.models import User
    from clinic.aftercare import consents
    from clinic.aftercare.consent_models import Consent

    with app.test_request_context():
        consents.revoke_consent(
            db.session.get(Consent, consent_id),
            actor=db.session.get(User, ac.staff),
            revoked_on=on or ac.today,
            method="Signed letter handed in",
        )
        db.session.commit()


def test_revocation_is_written_once(app, ac):
    from clinic.errors import DomainError

    consent_id = record(app, ac)
    revoke(app, ac, consent_id)
    with pytest.raises(DomainError, match="already revoked"):
        revoke(app, ac, consent_id)
    with pytest.raises(sa.exc.IntegrityError, match="part2_consent_immutable"):
        _sql(
            app,
            "UPDATE part2_consent SET revocation_method = 'Phone call' WHERE id = :id",
            id=consent_id,
        )
    with pytest.raises(sa.exc.IntegrityError, match="part2_consent_immutable"):
        _sql(
            app,
            "UPDATE part2_consent SET revoked_on = NULL, revocation_method = NULL, "
            "revoked_by_id = NULL, revoked_at = NULL WHERE id = :id",
            id=consent_id,
        )


def test_a_revocation_is_all_or_nothing_in_the_database(app, ac):
    consent_id = record(app, ac)
    with pytest.raises(sa.exc.IntegrityError, match="revocation_complete"):
        _sql(app, "UPDATE part2_consent SET revoked_on = signed_on WHERE id = :id", id=consent_id)


def test_staff_revoke_over_http_with_a_confirmation(app, ac, staff_client):
    consent_id = record(app, ac)
    url = f"/aftercare/consents/{consent_id}/revoke"
    page = staff_client.get(url)
    assert 'data-testid="confirm"' in page.get_data(as_text=True)
    refused = staff_client.submit(
        url, {"revoked_on": ac.today.isoformat(), "revocation_method": ""}
    )
    assert refused.status_code == 400
    assert field_error(refused.get_data(as_text=True), "revocation_method")
    before = (ac.today - dt.timedelta(days=1)).isoformat()
    refused = staff_client.submit(url, {"revoked_on": before, "revocation_method": "Letter"})
    assert "before the consent was signed" in field_error(
        refused.get_data(as_text=True), "revoked_on"
    )
    done = staff_client.submit(
        url, {"revoked_on": ac.today.isoformat(), "revocation_method": "Letter"}
    )
    assert done.status_code == 302
    detail = staff_client.get(f"/aftercare/consents/{consent_id}").get_data(as_text=True)
    assert 'data-testid="revocation"' in detail and "Revoked" in detail
    again = staff_client.get(url)
    assert again.status_code == 302  # already revoked: back to the consent


# --- the disclosure check ---------------------------------------------------------------------


def test_a_matching_consent_allows_the_disclosure(app, ac):
    consent_id = record(app, ac)
    assert check(app, ac, resource=ac.home) == consent_id


def test_another_recipient_is_refused(app, ac):
    record(app, ac)
    assert "No consent on file names Lakeside Outpatient" in check(app, ac, resource=ac.clinic_care)
    assert "No consent on file names Maria Reyes" in check(app, ac, person=ac.person)


def test_another_purpose_is_refused(app, ac):
    record(app, ac)
    assert "does not cover" in check(app, ac, resource=ac.home, purpose="care_coordination")


def test_a_revoked_consent_allows_no_new_disclosure(app, ac):
    consent_id = record(app, ac, signed_on=ac.today - dt.timedelta(days=5))
    revoke(app, ac, consent_id)
    assert "was revoked" in check(app, ac, resource=ac.home)
    # Before the revocation date, the consent was in force (the accounting stays true).
    assert check(app, ac, resource=ac.home, on=ac.today - dt.timedelta(days=1)) == consent_id


def test_an_expired_consent_is_refused(app, ac):
    record(
        app,
        ac,
        signed_on=ac.today - dt.timedelta(days=100),
        expires_on=ac.today - dt.timedelta(days=10),
    )
    assert "expired on" in check(app, ac, resource=ac.home)


def test_an_end_of_treatment_consent_expires_at_discharge(app, ac):
    from clinic.aftercare import consents
    from clinic.aftercare.consent_models import Consent
    from clinic.patients.models import Enrollment

    consent_id = record(
        app,
        ac,
        signed_on=ac.today - dt.timedelta(days=20),
        expiry_kind="event",
        expires_on=None,
        expiry_event="End of treatment",
    )
    assert check(app, ac, resource=ac.home) == consent_id
    with app.app_context():
        enrollment = db.session.get(Enrollment, ac.enrollment)
        enrollment.discharged_on = ac.today - dt.timedelta(days=2)
        enrollment.discharge_reason = 1
        db.session.commit()
    assert "expired at the end of treatment" in check(app, ac, resource=ac.home)
    assert check(app, ac, resource=ac.home, on=ac.today - dt.timedelta(days=3)) == consent_id
    with app.app_context():
        state = consents.consent_state(db.session.get(Consent, consent_id), ac.today)
        assert state == consents.ConsentState.EXPIRED


def test_a_transfer_is_not_the_end_of_treatment(app, ac, make_program, make_enrollment):
    from clinic.patients.models import Enrollment

    consent_id = record(
        app,
        ac,
        signed_on=ac.today - dt.timedelta(days=20),
        expiry_kind="event",
        expires_on=None,
        expiry_event="End of treatment",
    )
    moved_on = ac.today - dt.timedelta(days=2)
    with app.app_context():
        enrollment = db.session.get(Enrollment, ac.enrollment)
        enrollment.discharged_on = moved_on
        enrollment.discharge_reason = 1
        db.session.commit()
    make_enrollment(ac.patient, make_program("Methadone maintenance"), admitted_on=moved_on)
    assert check(app, ac, resource=ac.home) == consent_id


def test_a_consent_signed_later_does_not_cover_an_earlier_day(app, ac):
    record(app, ac)
    assert "not in force yet" in check(
        app, ac, resource=ac.home, on=ac.today - dt.timedelta(days=1)
    )


def test_a_restriction_request_forbids_what_a_consent_allows_until_lifted(app, ac):
    from clinic.accounts.models import User
    from clinic.aftercare import restrictions
    from clinic.aftercare.consent_models import RestrictionRequest
    from clinic.patients.models import Patient

    consent_id = record(app, ac)
    with app.test_request_context():
        restriction = restrictions.record_restriction(
            db.session.get(Patient, ac.patient),
            actor=db.session.get(User, ac.staff),
            purpose=None,
            recipient_type="class",
            resource_id=None,
            support_person_id=None,
            recipient_class="residences",
            details="No residence is to hear about my treatment.",
            requested_on=ac.today,
        )
        db.session.commit()
        restriction_id = restriction.id
    assert "restriction is in force" in check(app, ac, resource=ac.home)
    with pytest.raises(sa.exc.IntegrityError, match="disclosure_restriction_immutable"):
        _sql(
            app,
            "UPDATE disclosure_restriction SET details = 'x' WHERE id = :id",
            id=restriction_id,
        )
    with app.test_request_context():
        restrictions.lift_restriction(
            db.session.get(RestrictionRequest, restriction_id),
            actor=db.session.get(User, ac.staff),
            lifted_on=ac.today,
            reason="The patient withdrew it.",
        )
        db.session.commit()
    assert check(app, ac, resource=ac.home) == consent_id
    with pytest.raises(sa.exc.IntegrityError, match="disclosure_restriction_immutable"):
        _sql(
            app,
            "UPDATE disclosure_restriction SET lift_reason = 'x' WHERE id = :id",
            id=restriction_id,
        )


def test_counseling_notes_need_their_own_consent(app, ac):
    general = record(app, ac)
    assert "consent of their own" in check(app, ac, resource=ac.home, notes=True)
    notes = record(app, ac, kind="counseling_notes", information_description="Counseling notes")
    assert check(app, ac, resource=ac.home, notes=True) == notes
    assert check(app, ac, resource=ac.home) == general


def test_a_class_consent_covers_its_kinds_only(app, ac):
    consent_id = record(
        app, ac, recipient_type="class", resource_id=None, recipient_class="residences"
    )
    assert check(app, ac, resource=ac.home) == consent_id
    assert "No consent on file" in check(app, ac, resource=ac.clinic_care)
    assert "No consent on file" in check(app, ac, person=ac.person)


def test_a_support_person_is_a_recipient_like_a_residence(app, ac):
    from clinic.accounts.models import User
    from clinic.aftercare import support
    from clinic.aftercare.consent_models import SupportPerson

    consent_id = record(
        app, ac, recipient_type="support_person", resource_id=None, support_person_id=ac.person
    )
    assert check(app, ac, person=ac.person) == consent_id
    with app.test_request_context():
        person = db.session.get(SupportPerson, ac.person)
        support.archive_support_person(
            person, actor=db.session.get(User, ac.staff), version=person.version
        )
        db.session.commit()
    assert "removed from the patient's support network" in check(app, ac, person=ac.person)


def test_the_disclosure_check_reads_two_statements(app, ac):
    from clinic.aftercare.consents import Recipient, check_disclosure
    from clinic.aftercare.models import AftercareResource
    from clinic.patients.models import Patient

    record(app, ac)
    record(app, ac, purpose_text="Another placement")
    with app.app_context():
        patient = db.session.get(Patient, ac.patient)
        recipient = Recipient(resource=db.session.get(AftercareResource, ac.home))
        with count_statements(app) as statements:
            check_disclosure(patient, recipient=recipient, purpose=PURPOSE, on=ac.today)
    assert len(statements) <= 2


def test_the_scope_summary_says_it_in_plain_words(app, ac):
    from clinic.aftercare.consent_models import Consent
    from clinic.aftercare.consents import consent_scope_summary

    consent_id = record(app, ac)
    with app.app_context():
        summary = consent_scope_summary(db.session.get(Consent, consent_id))
    assert "Dana Reyes" in summary and "Harbor House" in summary
    assert "Placement in a recovery residence" in summary and "revoke" in summary


# --- support network ------------------------------------------------------------------------


def test_staff_keep_the_support_network(app, ac, staff_client):
    url = f"/aftercare/patients/{ac.patient}/support-network/new"
    html = staff_client.get(url).get_data(as_text=True)
    token = re.search(r'name="submission_token"[^>]*value="([^"]+)"', html).group(1)
    bad = staff_client.submit(
        url,
        {"submission_token": token, "name": "", "relationship": "sponsor", "phone": "call me"},
    )
    assert bad.status_code == 400
    assert field_error(bad.get_data(as_text=True), "name")
    assert field_error(bad.get_data(as_text=True), "phone")
    good = staff_client.submit(
        url,
        {
            "submission_token": token,
            "name": "Jo Sponsor",
            "relationship": "sponsor",
            "phone": "(312) 555-0147",
            "can_offer_housing": "y",
        },
    )
    assert good.status_code == 302
    page = staff_client.get(f"/aftercare/patients/{ac.patient}/support-network")
    assert "Jo Sponsor" in page.get_data(as_text=True)


def test_editing_a_support_person_changed_meanwhile_shows_the_conflict(app, ac, staff_client):
    from clinic.aftercare.consent_models import SupportPerson

    url = f"/aftercare/support-people/{ac.person}/edit"
    html = staff_client.get(url).get_data(as_text=True)
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)
    version = re.search(r'name="version"[^>]*value="([^"]+)"', html).group(1)
    with app.app_context():
        db.session.get(SupportPerson, ac.person).notes = "Changed by someone else"
        db.session.commit()
    response = staff_client.post(
        url,
        data={
            "csrf_token": csrf,
            "version": version,
            "name": "Maria R.",
            "relationship": "family",
        },
    )
    assert response.status_code == 409
    assert 'data-testid="conflict"' in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(SupportPerson, ac.person).name == "Maria Reyes"


def test_archiving_a_support_person_asks_first_and_keeps_them(app, ac, staff_client):
    url = f"/aftercare/support-people/{ac.person}/archive"
    assert 'data-testid="confirm"' in staff_client.get(url).get_data(as_text=True)
    html = staff_client.get(url).get_data(as_text=True)
    version = re.search(r'name="version"[^>]*value="([^"]+)"', html).group(1)
    assert staff_client.submit(url, {"version": version}).status_code == 302
    page = staff_client.get(f"/aftercare/patients/{ac.patient}/support-network")
    assert "Removed" in page.get_data(as_text=True)
    assert staff_client.get(f"/aftercare/support-people/{ac.person}/edit").status_code == 302


# --- restriction requests over HTTP -------------------------------------------------------


def test_staff_record_and_lift_a_restriction(app, ac, staff_client):
    from clinic.aftercare.consent_models import RestrictionRequest

    url = f"/aftercare/patients/{ac.patient}/restrictions/new"
    html = staff_client.get(url).get_data(as_text=True)
    token = re.search(r'name="submission_token"[^>]*value="([^"]+)"', html).group(1)
    bad = staff_client.submit(
        url,
        {
            "submission_token": token,
            "recipient_type": "",
            "resource_id": "",
            "support_person_id": "",
            "recipient_class": "",
            "purpose": "",
            "details": "Not my sister",
            "requested_on": ac.today.isoformat(),
        },
    )
    assert bad.status_code == 400
    assert field_error(bad.get_data(as_text=True), "recipient_type")
    assert "Not my sister" in bad.get_data(as_text=True)
    done = staff_client.submit(
        url,
        {
            "submission_token": token,
            "recipient_type": "support_person",
            "resource_id": "",
            "support_person_id": str(ac.person),
            "recipient_class": "",
            "purpose": "",
            "details": "Not my sister",
            "requested_on": ac.today.isoformat(),
        },
    )
    assert done.status_code == 302
    with app.app_context():
        restriction_id = db.session.scalar(sa.select(RestrictionRequest.id))
    assert "restriction is in force" in check(app, ac, person=ac.person)
    lift = f"/aftercare/restrictions/{restriction_id}/lift"
    assert 'data-testid="confirm"' in staff_client.get(lift).get_data(as_text=True)
    response = staff_client.submit(
        lift, {"lifted_on": ac.today.isoformat(), "reason": "Withdrawn by the patient"}
    )
    assert response.status_code == 302
    assert staff_client.get(lift).status_code == 302  # already lifted


# --- the printable form -------------------------------------------------------------------


def test_the_printable_form_is_prefilled_and_carries_the_notice(app, ac, staff_client):
    from clinic.audit.models import AuditEvent

    blank = staff_client.get(f"/aftercare/patients/{ac.patient}/consents/print")
    html = blank.get_data(as_text=True)
    assert blank.status_code == 200
    assert 'data-testid="signature-line"' in html and "42 CFR part 2" in html
    url = f"/aftercare/patients/{ac.patient}/consents/new"
    page = staff_client.get(url).get_data(as_text=True)
    token = re.search(r'name="submission_token"[^>]*value="([^"]+)"', page).group(1)
    filled = staff_client.submit(
        f"/aftercare/patients/{ac.patient}/consents/print",
        {"submission_token": token, **form_data(ac, signed_on="", paper_scan_reference="")},
        form_url=url,
    )
    html = filled.get_data(as_text=True)
    assert filled.status_code == 200
    assert "Harbor House" in html and "Placement in a recovery residence" in html
    assert count_consents(app) == 0  # printing saves nothing
    with app.app_context():
        prints = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "print", AuditEvent.patient_id == ac.patient)
        )
    assert prints == 2


# --- roles, scope, audit, query counts -----------------------------------------------------


def test_clinicians_read_consents_but_record_nothing(app, ac, client_as):
    consent_id = record(app, ac)
    clinician = client_as("clinician")
    assert clinician.get(f"/aftercare/patients/{ac.patient}/consents").status_code == 200
    assert clinician.get(f"/aftercare/consents/{consent_id}").status_code == 200
    assert clinician.get(f"/aftercare/patients/{ac.patient}/consents/new").status_code == 403
    assert clinician.get(f"/aftercare/consents/{consent_id}/revoke").status_code == 403
    assert clinician.get(f"/aftercare/support-people/{ac.person}/edit").status_code == 403
    chart = clinician.get(f"/patients/{ac.patient}").get_data(as_text=True)
    assert 'data-testid="consents-section"' in chart
    assert "Record a consent" not in chart
    assert "Maria Reyes" in chart


def test_staff_see_the_chart_section_with_links(app, ac, staff_client):
    record(app, ac)
    chart = staff_client.get(f"/patients/{ac.patient}").get_data(as_text=True)
    assert 'data-testid="consents-section"' in chart and "Record a consent" in chart


def test_another_sites_patient_and_records_are_not_found(app, ac, client_as, make_user):
    from clinic.audit.models import AuditEvent

    consent_id = record(app, ac)
    east_staff = client_as("staff", site_ids=[ac.east])
    for url in (
        f"/aftercare/patients/{ac.patient}/consents",
        f"/aftercare/patients/{ac.patient}/consents/new",
        f"/aftercare/patients/{ac.patient}/consents/print",
        f"/aftercare/patients/{ac.patient}/support-network",
        f"/aftercare/patients/{ac.patient}/support-network/new",
        f"/aftercare/patients/{ac.patient}/restrictions/new",
        f"/aftercare/consents/{consent_id}",
        f"/aftercare/consents/{consent_id}/revoke",
        f"/aftercare/support-people/{ac.person}/edit",
        f"/aftercare/support-people/{ac.person}/archive",
        "/aftercare/consents/99999999",
    ):
        assert east_staff.get(url).status_code == 404, url
    with app.app_context():
        denied = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "access_denied", AuditEvent.patient_id == ac.patient)
        )
    assert denied >= 10


def test_every_page_records_a_view(app, ac, staff_client):
    from clinic.audit.models import AuditEvent

    consent_id = record(app, ac)
    for url in (
        f"/aftercare/patients/{ac.patient}/consents",
        f"/aftercare/consents/{consent_id}",
        f"/aftercare/patients/{ac.patient}/support-network",
    ):
        with app.app_context():
            before = db.session.scalar(
                sa.select(sa.func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "view", AuditEvent.patient_id == ac.patient)
            )
        assert staff_client.get(url).status_code == 200
        with app.app_context():
            after = db.session.scalar(
                sa.select(sa.func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "view", AuditEvent.patient_id == ac.patient)
            )
        assert after == before + 1, url


def test_list_pages_use_a_constant_number_of_statements(app, ac, staff_client):
    def statements_for(url: str) -> int:
        with count_statements(app) as statements:
            assert staff_client.get(url).status_code == 200
        return len(statements)

    pages = (
        f"/aftercare/patients/{ac.patient}/consents",
        f"/patients/{ac.patient}",
        f"/aftercare/patients/{ac.patient}/support-network",
    )
    record(app, ac)
    first = [statements_for(url) for url in pages]
    for n in range(4):
        record(
            app, ac, recipient_type="support_person", resource_id=None, support_person_id=ac.person
        )
        record(app, ac, recipient_type="resource", resource_id=ac.clinic_care, purpose_text=f"n{n}")
    assert [statements_for(url) for url in pages] == first


# --- the authorization matrix's records --------------------------------------------------------


def consent_route_records(app, route_records: dict[str, int]) -> dict[str, int]:
    """The URL variables of the consent pages (tests/test_security_routes.py): a support
    person, a consent naming the matrix's resource and a restriction in force, all of the
    ``records`` patient, recorded by the matrix's staff user."""
    from clinic.accounts.models import User
    from clinic.aftercare import consents, restrictions, support
    from clinic.patients.models import Patient
    from clinic.sites.time import site_today

    with app.test_request_context():
        patient = db.session.get(Patient, route_records["patient_id"])
        actor = db.session.get(User, route_records["user_id"])
        today = site_today(patient.site)
        person = support.add_support_person(
            patient,
            actor=actor,
            data=support.SupportPersonInput(name="Matrix Sponsor", relationship="sponsor"),
        )
        ac = SimpleNamespace(
            program=route_records["program_id"], home=route_records["resource_id"], today=today
        )
        consent = consents.record_consent(patient, actor=actor, data=consent_input(ac))
        restriction = restrictions.record_restriction(
            patient,
            actor=actor,
            purpose=None,
            recipient_type="support_person",
            resource_id=None,
            support_person_id=person.id,
            recipient_class=None,
            details="Matrix restriction",
            requested_on=today,
        )
        db.session.commit()
        return {
            "support_person_id": person.id,
            "consent_id": consent.id,
            "restriction_id": restriction.id,
        }


def test_emergency_access_shows_the_chart_section_but_no_consent_page(app, ac, client_as):
    """A clinician of another site under a break-glass grant reads the chart (its consents
    section included, without links); every consent page is refused (403, recorded)."""
    from clinic.audit.models import BreakGlassGrant

    consent_id = record(app, ac)
    east_clinician = client_as("clinician", site_ids=[ac.east])
    with app.app_context():
        now = dt.datetime.now(dt.UTC)
        db.session.add(
            BreakGlassGrant(
                user_id=east_clinician.user_id,
                patient_id=ac.patient,
                reason="Overdose in the EAST waiting room",
                granted_at=now,
                expires_at=now + dt.timedelta(minutes=30),
            )
        )
        db.session.commit()
    chart = east_clinician.get(f"/patients/{ac.patient}")
    html = chart.get_data(as_text=True)
    assert chart.status_code == 200
    assert 'data-testid="consents-section"' in html
    assert f"/aftercare/patients/{ac.patient}/consents" not in html
    assert east_clinician.get(f"/aftercare/patients/{ac.patient}/consents").status_code == 403
    assert east_clinician.get(f"/aftercare/consents/{consent_id}").status_code == 403
