"""Attacks on issue 12 over HTTP (task X12): other sites' ids, clinicians, replayed and
double-submitted forms, each §2.31 element's bad input, the accounting of disclosures and
the log. Shared helpers: ``test_aftercare_attacks``."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from clinic.aftercare.consent_models import Consent, RestrictionRequest, SupportPerson
from clinic.aftercare.referral_models import Disclosure
from clinic.extensions import db
from clinic.patients.models import Patient
from tests.test_aftercare_consents import ac as ac_fixture  # noqa: F401
from tests.test_aftercare_consents import count_consents, field_error, post_consent
from tests.test_aftercare_referrals import _count, _status_of, _today, make_consent, make_referral
from tests.test_aftercare_referrals import aftercare as aftercare_fixture  # noqa: F401


@pytest.fixture
def ids(aftercare_fixture):  # noqa: F811
    """``test_aftercare_referrals.aftercare``: a patient, two residences, a support person,
    staff (ids)."""
    return aftercare_fixture


@pytest.fixture
def ac(ac_fixture):  # noqa: F811
    """``test_aftercare_consents.ac``: a patient in treatment, resources, staff (ids)."""
    return ac_fixture


@pytest.fixture
def desk(app, ids, username_of):
    """A client signed in as the ``ids`` staff member."""
    from tests.conftest import login

    client = app.test_client()
    assert login(client, username_of(ids["staff"])).status_code == 302
    return client


def _restriction(app, ids) -> int:
    with app.app_context():
        restriction = RestrictionRequest(
            patient_id=ids["patient_id"],
            resource_id=ids["strict"],
            details="Nothing to the lodge",
            requested_on=_today(app, ids["patient_id"]) - dt.timedelta(days=1),
            recorded_by_id=ids["staff"],
        )
        db.session.add(restriction)
        db.session.commit()
        return restriction.id


def _denied_events(app, user_id: int) -> int:
    from clinic.audit.models import AuditEvent

    with app.app_context():
        return db.session.scalar(
            sa.select(sa.func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "access_denied", AuditEvent.user_id == user_id)
        )


def test_another_sites_staff_get_404_and_access_denied_on_every_patient_page(
    app, ids, make_site, make_user, username_of
):
    """Every aftercare page that loads a patient's record, by GET and by POST, for staff of
    another site: 404, an access_denied event each, and nothing changed."""
    from tests.conftest import login

    consent_id = make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(app, ids, resource=ids["home"])
    restriction_id = _restriction(app, ids)
    values = {
        "patient_id": ids["patient_id"],
        "consent_id": consent_id,
        "referral_id": referral_id,
        "restriction_id": restriction_id,
        "support_person_id": ids["person"],
    }
    outsider = make_user("staff", site_ids=[make_site("EAST")])
    client = app.test_client()
    login(client, username_of(outsider))
    token = client.csrf_token("/")
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/aftercare/") or not set(rule.arguments) & set(values):
            continue
        url = rule.rule
        for name in rule.arguments:
            url = url.replace(f"<int:{name}>", str(values[name]))
        for method in sorted(rule.methods & {"GET", "POST"}):
            before = _denied_events(app, outsider)
            if method == "GET":
                response = client.get(url)
            else:
                response = client.post(
                    url,
                    data={
                        "csrf_token": token,
                        "version": "1",
                        "submission_token": "z" * 32,
                        "status": "accepted",
                        "revoked_on": _today(app, ids["patient_id"]).isoformat(),
                        "revocation_method": "Letter",
                        "name": "Eve",
                        "relationship": "friend",
                    },
                )
            assert response.status_code == 404, (method, url, response.status_code)
            assert "Harbor House" not in response.get_data(as_text=True)
            assert _denied_events(app, outsider) == before + 1, (method, url)
            checked += 1
    assert checked >= 20
    with app.app_context():
        assert db.session.get(Consent, consent_id).revoked_on is None
        assert db.session.get(SupportPerson, ids["person"]).name == "Rita Sister"
    assert _status_of(app, referral_id) == "draft"
    assert _count(app, Disclosure) == 0


def test_a_clinician_cannot_revoke_send_or_change_anything(app, ids, client_as):
    consent_id = make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(app, ids, resource=ids["home"])
    clinician = client_as("clinician")
    token = clinician.csrf_token("/")
    assert clinician.get(f"/aftercare/consents/{consent_id}").status_code == 200
    for url in (
        f"/aftercare/consents/{consent_id}/revoke",
        f"/aftercare/referrals/{referral_id}/send",
        f"/aftercare/referrals/{referral_id}/status",
        f"/aftercare/support-people/{ids['person']}/edit",
        f"/aftercare/patients/{ids['patient_id']}/consents/new",
        f"/aftercare/patients/{ids['patient_id']}/disclosures",
    ):
        response = clinician.post(
            url,
            data={
                "csrf_token": token,
                "version": "1",
                "submission_token": "c" * 32,
                "revoked_on": _today(app, ids["patient_id"]).isoformat(),
                "revocation_method": "Letter",
                "status": "closed",
            },
        )
        assert response.status_code in (403, 405), (url, response.status_code)
    with app.app_context():
        assert db.session.get(Consent, consent_id).revoked_on is None
    assert _status_of(app, referral_id) == "draft"


@pytest.mark.parametrize("target", ["sent", "accepted", "placed"])
def test_the_status_form_never_sends_a_draft(app, ids, desk, target):
    """The status form, posted with "sent" (or a later status) for a draft, even with a
    consent on file: refused next to the field, nothing disclosed."""
    from tests.test_aftercare_referrals import _post_form

    make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(app, ids, resource=ids["home"])
    response = _post_form(
        desk,
        f"/aftercare/referrals/{referral_id}/status",
        {"status": target, "note": "Called them"},
        page=f"/aftercare/referrals/{referral_id}",
    )
    assert response.status_code == 400
    assert _status_of(app, referral_id) == "draft"
    assert _count(app, Disclosure) == 0


def test_replaying_the_send_form_discloses_once(app, ids, desk):
    """The same send form posted twice (a double click, the back button), then again with a
    fresh page's token: one disclosure."""
    from tests.test_aftercare_referrals import _hidden

    make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(app, ids, resource=ids["home"])
    url = f"/aftercare/referrals/{referral_id}/send"
    html = desk.get(url).get_data(as_text=True)
    fields = {**_hidden(html), "csrf_token": desk.csrf_token(url), "description": "Name"}
    first = desk.post(url, data=fields)
    second = desk.post(url, data=fields)
    assert first.status_code == second.status_code == 302
    assert second.headers["Location"] == first.headers["Location"]
    third = desk.post(url, data={**fields, "submission_token": "n" * 32})
    assert third.status_code == 302
    assert _count(app, Disclosure) == 1


def test_a_send_page_opened_before_the_revocation_is_refused_when_posted(app, ids, desk):
    from tests.test_aftercare_referrals import _hidden

    consent_id = make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(app, ids, resource=ids["home"])
    url = f"/aftercare/referrals/{referral_id}/send"
    html = desk.get(url).get_data(as_text=True)
    fields = {**_hidden(html), "csrf_token": desk.csrf_token(url), "description": "Name"}
    with app.app_context():
        consent = db.session.get(Consent, consent_id)
        consent.revoked_on = _today(app, ids["patient_id"])
        consent.revocation_method = "Letter"
        consent.revoked_by_id = ids["staff"]
        consent.revoked_at = dt.datetime.now(dt.UTC)
        db.session.commit()
    response = desk.post(url, data=fields)
    assert response.status_code == 400
    assert "revoked" in response.get_data(as_text=True)
    assert _count(app, Disclosure) == 0


def test_revoking_twice_is_refused_without_a_500(app, ids, desk):
    from tests.test_aftercare_referrals import _post_form

    consent_id = make_consent(app, ids, resource=ids["home"])
    url = f"/aftercare/consents/{consent_id}/revoke"
    data = {"revoked_on": _today(app, ids["patient_id"]).isoformat(), "revocation_method": "A"}
    assert _post_form(desk, url, data).status_code == 302
    again = _post_form(desk, url, {**data, "revocation_method": "B"})
    assert again.status_code in (302, 400)
    with app.app_context():
        assert db.session.get(Consent, consent_id).revocation_method == "A"


@pytest.fixture
def consent_desk(app, ac, username_of):
    from tests.conftest import login

    client = app.test_client()
    assert login(client, username_of(ac.staff)).status_code == 302
    return client


ELEMENTS = {
    "information_description": {},
    "purpose_text": {},
    "right_to_revoke": {},
    "paper_scan_reference": {},
    "electronic_signature_name": {"signature_method": "electronic", "paper_scan_reference": ""},
    "expiry_event": {"expiry_kind": "event", "expires_on": ""},
    "redisclosure_statement": {"kind": "tpo", "purpose": "tpo", "expiry_kind": "none"},
}


BAD_VALUES = {
    "blank": "",
    "whitespace": " \t  ",
    "NUL": "Placement\x00",
    "escape": "Placement \x1b[2J",
    "bidi override": "Placement \u202e",
    "100 KB": "x" * 100_000,
}


@pytest.mark.parametrize("value", list(BAD_VALUES))
@pytest.mark.parametrize("element", list(ELEMENTS))
def test_a_bad_consent_element_is_refused_by_its_field_and_the_rest_kept(
    app, ac, consent_desk, element, value
):
    if element == "expiry_event" and value in ("blank", "whitespace"):
        pytest.skip("a blank event is the end of treatment, the default")
    overrides = {**ELEMENTS[element], element: BAD_VALUES[value]}
    if element != "information_description":
        overrides["information_description"] = "Kept: my enrollment"
    else:
        overrides["purpose_text"] = "Kept: placement"
    response = post_consent(consent_desk, ac, **overrides)
    html = response.get_data(as_text=True)
    assert response.status_code == 400, (element, value)
    assert field_error(html, element), (element, value)
    assert "Kept: " in html
    assert count_consents(app) == 0


def _old_disclosure(app, ids, consent_id: int, on: dt.date, patient_id: int | None = None) -> int:
    with app.app_context():
        disclosure = Disclosure(
            patient_id=patient_id or ids["patient_id"],
            resource_id=ids["home"],
            recipient_name=f"Harbor House on {on.isoformat()}",
            description="Name and treatment",
            purpose="aftercare_referral",
            consent_id=consent_id,
            disclosed_by_id=ids["staff"],
            disclosed_at=dt.datetime.combine(on, dt.time(15), dt.UTC),
            disclosed_on=on,
        )
        db.session.add(disclosure)
        db.session.commit()
        return disclosure.id


def test_the_accounting_is_complete_for_three_years_and_only_this_patients(
    app, ids, desk, make_patient
):
    from clinic.aftercare import disclosures
    from clinic.audit.models import AuditEvent

    today = _today(app, ids["patient_id"])
    since = disclosures.accounting_since(today)
    consent_id = make_consent(
        app,
        ids,
        resource=ids["home"],
        signed_on=since - dt.timedelta(days=30),
        expires_on=today + dt.timedelta(days=30),
    )
    _old_disclosure(app, ids, consent_id, since - dt.timedelta(days=1))
    _old_disclosure(app, ids, consent_id, since)
    _old_disclosure(app, ids, consent_id, today)
    other = make_patient("Olga", "Other")
    other_consent = make_consent(
        app, {**ids, "patient_id": other}, resource=ids["home"], signed_on=today
    )
    _old_disclosure(app, ids, other_consent, today, patient_id=other)
    with app.app_context():  # revoked since: the disclosures made stay
        consent = db.session.get(Consent, consent_id)
        consent.revoked_on = today
        consent.revocation_method = "Letter"
        consent.revoked_by_id = ids["staff"]
        consent.revoked_at = dt.datetime.now(dt.UTC)
        db.session.commit()
    response = desk.get(f"/aftercare/patients/{ids['patient_id']}/disclosures")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert f"Harbor House on {since.isoformat()}" in html
    assert f"Harbor House on {today.isoformat()}" in html
    assert f"Harbor House on {(since - dt.timedelta(days=1)).isoformat()}" not in html
    assert html.count("Harbor House on ") == 2
    assert "data-print" in html
    with app.app_context():
        exports = db.session.scalars(
            sa.select(AuditEvent).where(
                AuditEvent.action == "export", AuditEvent.entity_type == "disclosure_accounting"
            )
        ).all()
    assert [e.patient_id for e in exports] == [ids["patient_id"]]


def test_nothing_the_patient_is_called_reaches_the_log(app, ids, desk, caplog):
    """The whole flow's log output holds no patient or support person name."""
    import logging

    caplog.set_level(logging.DEBUG)
    make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(app, ids, resource=ids["home"])
    with app.app_context():
        patient = db.session.get(Patient, ids["patient_id"])
        names = [patient.first_name, patient.last_name, "Rita Sister"]
    pid = ids["patient_id"]
    for url in (
        f"/aftercare/patients/{pid}/consents",
        f"/aftercare/patients/{pid}/support-network",
        f"/aftercare/referrals/{referral_id}",
        f"/aftercare/referrals/{referral_id}/send",
        f"/aftercare/patients/{pid}/disclosures",
        "/aftercare/dashboard",
    ):
        assert desk.get(url).status_code == 200, url
    from tests.test_aftercare_referrals import _hidden

    url = f"/aftercare/referrals/{referral_id}/send"
    fields = {**_hidden(desk.get(url).get_data(as_text=True)), "description": "Name"}
    assert desk.submit(url, fields).status_code == 302
    assert desk.get(f"/aftercare/referrals/{referral_id}/packet").status_code == 200
    for name in names:
        assert name not in caplog.text, name


def test_a_send_form_replayed_from_another_session_is_refused(app, ids, desk, client_as):
    """A send form (its CSRF token and submission key) captured from one session and posted
    from another signed-in session: refused, nothing disclosed."""
    from tests.test_aftercare_referrals import _hidden

    make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(app, ids, resource=ids["home"])
    url = f"/aftercare/referrals/{referral_id}/send"
    fields = {
        **_hidden(desk.get(url).get_data(as_text=True)),
        "csrf_token": desk.csrf_token(url),
        "description": "Name",
    }
    other = client_as("staff")
    response = other.post(url, data=fields)
    assert response.status_code == 400
    assert _count(app, Disclosure) == 0
    assert _status_of(app, referral_id) == "draft"
