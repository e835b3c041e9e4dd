"""Referrals and disclosures (issue 12): sending a referral is a disclosure that needs an
active consent covering the recipient and purpose, with no restriction forbidding it;
each disclosure is recorded once, append-only, and listed in the accounting (42 CFR 2.25)
whatever becomes of the consent; the status path is the DOMAIN's, in the service and in
the database; the pages are the staff's, read-only for clinicians, out of reach for other
sites."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from clinic.aftercare import consents, disclosures, referrals
from clinic.aftercare.consent_models import PART2_NOTICE, Consent, RestrictionRequest, SupportPerson
from clinic.aftercare.models import AftercareResource
from clinic.aftercare.referral_models import Disclosure, Referral, ReferralEvent, ReferralStatus
from clinic.audit.models import AuditEvent
from clinic.errors import ConflictError, DomainError
from clinic.extensions import db
from clinic.patients.models import Patient
from clinic.sites.time import site_today
from tests.conftest import ON_POSTGRES, login

HIDDEN_RE = re.compile(r'<input[^>]*?name="(submission_token|version)"[^>]*?value="([^"]*)"')


def _today(app, patient_id: int) -> dt.date:
    with app.app_context():
        return site_today(db.session.get(Patient, patient_id).site)


def make_resources(app) -> dict[str, int]:
    """A sober-living home accepting methadone with two beds free, and a halfway house that
    does not take MOUD (ids)."""
    with app.app_context():
        home = AftercareResource(
            name="Harbor House",
            kind="recovery_residence",
            narr_level="II",
            city="Springfield",
            accepts_moud="yes",
            accepts_methadone="yes",
            beds_total=6,
            beds_available=2,
            beds_confirmed_on=dt.date(2026, 11, 25),
            gender_served="all",
        )
        strict = AftercareResource(
            name="Abstinence Lodge",
            kind="halfway_house",
            city="Springfield",
            accepts_moud="no",
            accepts_methadone="no",
            beds_total=4,
            beds_available=1,
            beds_confirmed_on=dt.date(2026, 11, 25),
            gender_served="all",
        )
        db.session.add_all([home, strict])
        db.session.commit()
        return {"home": home.id, "strict": strict.id}


@pytest.fixture
def aftercare(app, records, make_user):
    """``make_resources``, a support person of the ``records`` patient and a staff member
    (ids)."""
    staff = make_user("staff", full_name="Sam Staff")
    resources = make_resources(app)
    with app.app_context():
        person = SupportPerson(
            patient_id=records["patient_id"],
            name="Rita Sister",
            relationship_kind="family",
            can_offer_housing=True,
            created_by_id=staff,
        )
        db.session.add(person)
        db.session.commit()
        return {**records, **resources, "staff": staff, "person": person.id}


def make_consent(app, ids, *, resource=None, person=None, recipient_class=None, **overrides):
    """A specific-disclosure consent of the ``ids`` patient, signed yesterday, expiring in
    90 days, for aftercare referral (column values; the consent service is E1's)."""
    today = _today(app, ids["patient_id"])
    with app.app_context():
        patient = db.session.get(Patient, ids["patient_id"])
        values = {
            "patient_id": patient.id,
            "patient_name": f"{patient.first_name} {patient.last_name}",
            "kind": "specific_disclosure",
            "program_id": ids["program_id"],
            "program_name": "Methadone maintenance",
            "information_description": "That I am in treatment, and my medication",
            "resource_id": resource,
            "support_person_id": person,
            "recipient_class": recipient_class,
            "recipient_name": "Harbor House" if resource else "Rita Sister",
            "purpose": "aftercare_referral",
            "purpose_text": "Placement in recovery housing",
            "right_to_revoke": "In writing, at the front desk",
            "expiry_kind": "date",
            "expires_on": today + dt.timedelta(days=90),
            "signature_method": "electronic",
            "electronic_signature_name": "Jo Smith",
            "signed_on": today - dt.timedelta(days=1),
            "recorded_by_id": ids["staff"],
        }
        values.update(overrides)
        consent = Consent(**values)
        db.session.add(consent)
        db.session.commit()
        return consent.id


def make_referral(app, ids, *, resource=None, person=None, reason="Needs housing on discharge"):
    from clinic.accounts.models import User

    with app.test_request_context():
        referral = referrals.create_referral(
            db.session.get(Patient, ids["patient_id"]),
            actor=db.session.get(User, ids["staff"]),
            resource_id=resource if person is None else None,
            support_person_id=person,
            reason=reason,
        )
        db.session.commit()
        return referral.id


def _send(app, ids, referral_id):
    from clinic.accounts.models import User

    with app.test_request_context():
        referral = db.session.get(Referral, referral_id)
        disclosure = disclosures.send(
            referral, actor=db.session.get(User, ids["staff"]), version=referral.version
        )
        db.session.commit()
        return disclosure.id


def _count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def _status_of(app, referral_id) -> str:
    with app.app_context():
        return db.session.get(Referral, referral_id).status


def _revoke(app, consent_id, on: dt.date) -> None:
    with app.app_context():
        consent = db.session.get(Consent, consent_id)
        consent.revoked_on = on
        consent.revocation_method = "Signed letter at the front desk"
        consent.revoked_by_id = consent.recorded_by_id
        consent.revoked_at = dt.datetime.now(dt.UTC)
        db.session.commit()


def _restrict(app, ids, *, resource) -> None:
    with app.app_context():
        db.session.add(
            RestrictionRequest(
                patient_id=ids["patient_id"],
                resource_id=resource,
                details="Do not tell Harbor House anything",
                requested_on=_today(app, ids["patient_id"]) - dt.timedelta(days=1),
                recorded_by_id=ids["staff"],
            )
        )
        db.session.commit()


# The ways a send is refused: each sets up the consents (or their absence) for Harbor House.
def _no_consent(app, ids):
    pass


def _revoked(app, ids):
    _revoke(app, make_consent(app, ids, resource=ids["home"]), _today(app, ids["patient_id"]))


def _expired(app, ids):
    today = _today(app, ids["patient_id"])
    make_consent(
        app,
        ids,
        resource=ids["home"],
        signed_on=today - dt.timedelta(days=60),
        expires_on=today - dt.timedelta(days=1),
    )


def _other_recipient(app, ids):
    make_consent(app, ids, resource=ids["strict"], recipient_name="Abstinence Lodge")


def _restricted(app, ids):
    make_consent(app, ids, resource=ids["home"])
    _restrict(app, ids, resource=ids["home"])


REFUSALS = {
    "without consent": _no_consent,
    "after revocation": _revoked,
    "after expiry": _expired,
    "to a different recipient": _other_recipient,
    "against a restriction": _restricted,
}


# --- the service -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(REFUSALS))
def test_sending_is_refused_without_an_active_consent_for_that_recipient(app, aftercare, case):
    REFUSALS[case](app, aftercare)
    referral_id = make_referral(app, aftercare, resource=aftercare["home"])
    with pytest.raises(consents.DisclosureRefused) as refused:
        _send(app, aftercare, referral_id)
    assert refused.value.message
    assert _count(app, Disclosure) == 0
    assert _status_of(app, referral_id) == "draft"
    assert _count(app, ReferralEvent, ReferralEvent.to_status == "sent") == 0


def test_sending_with_consent_records_exactly_one_disclosure_under_it(app, aftercare):
    consent_id = make_consent(app, aftercare, resource=aftercare["home"])
    referral_id = make_referral(app, aftercare, resource=aftercare["home"])
    disclosure_id = _send(app, aftercare, referral_id)
    with app.app_context():
        disclosure = db.session.get(Disclosure, disclosure_id)
        assert disclosure.consent_id == consent_id
        assert disclosure.recipient_name == "Harbor House"
        assert disclosure.referral_id == referral_id
        assert disclosure.disclosed_by_id == aftercare["staff"]
        assert disclosure.purpose == "aftercare_referral"
        # What was disclosed is what the consent describes, never more (42 CFR 2.31(a)(3)).
        assert disclosure.description == "That I am in treatment, and my medication"
        events = db.session.scalars(
            sa.select(AuditEvent.action).where(AuditEvent.entity_type == "part2_disclosure")
        ).all()
        assert events == ["disclose"]
    assert _status_of(app, referral_id) == "sent"
    assert _count(app, Disclosure) == 1
    # Sending again: refused, still one disclosure.
    with pytest.raises(DomainError):
        _send(app, aftercare, referral_id)
    assert _count(app, Disclosure) == 1


def test_a_support_person_is_referred_under_a_support_network_consent(app, aftercare):
    make_consent(
        app,
        aftercare,
        recipient_class="support_network",
        recipient_name="The people in my support network",
    )
    referral_id = make_referral(app, aftercare, person=aftercare["person"])
    _send(app, aftercare, referral_id)
    assert _status_of(app, referral_id) == "sent"


def test_the_accounting_lists_a_disclosure_also_after_the_consent_is_revoked(app, aftercare):
    consent_id = make_consent(app, aftercare, resource=aftercare["home"])
    referral_id = make_referral(app, aftercare, resource=aftercare["home"])
    disclosure_id = _send(app, aftercare, referral_id)
    _revoke(app, consent_id, _today(app, aftercare["patient_id"]))
    with app.app_context():
        patient = db.session.get(Patient, aftercare["patient_id"])
        rows = disclosures.accounting(patient)
        assert [d.id for d in rows] == [disclosure_id]
        assert rows[0].consent.revoked_on is not None
        # Older than 3 years: not in the accounting.
        later = _today(app, aftercare["patient_id"]) + dt.timedelta(days=3 * 366)
        assert disclosures.accounting(patient, on=later) == []
    # A new referral to the same home is now refused.
    second = make_referral(app, aftercare, resource=aftercare["home"])
    with pytest.raises(consents.DisclosureRefused):
        _send(app, aftercare, second)


def test_disclosures_and_status_events_cannot_be_changed_or_deleted_by_sql(app, aftercare):
    make_consent(app, aftercare, resource=aftercare["home"])
    referral_id = make_referral(app, aftercare, resource=aftercare["home"])
    _send(app, aftercare, referral_id)
    statements = [
        "UPDATE part2_disclosure SET recipient_name = 'Someone else'",
        "DELETE FROM part2_disclosure",
        "UPDATE referral_event SET note = 'rewritten'",
        "DELETE FROM referral_event",
        "DELETE FROM referral",
    ]
    with app.app_context():
        for statement in statements:
            with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
                conn.execute(sa.text(statement))
    assert _count(app, Disclosure) == 1
    assert _count(app, ReferralEvent) == 2


def test_bad_transitions_are_refused_by_the_service(app, aftercare):
    from clinic.accounts.models import User

    referral_id = make_referral(app, aftercare, resource=aftercare["home"])
    with app.test_request_context():
        referral = db.session.get(Referral, referral_id)
        actor = db.session.get(User, aftercare["staff"])
        for target in ("sent", "placed", "accepted", "nonsense", None):
            with pytest.raises(DomainError) as refused:
                referrals.change_status(
                    referral, actor=actor, to_status=target, note=None, version=referral.version
                )
            assert refused.value.field == "status"
        with pytest.raises(ConflictError):
            referrals.change_status(
                referral, actor=actor, to_status="closed", note=None, version=referral.version + 1
            )
        referrals.change_status(
            referral, actor=actor, to_status="closed", note="Patient moved", version=1
        )
        db.session.commit()
        with pytest.raises(DomainError):
            referrals.change_status(
                referral, actor=actor, to_status="placed", note=None, version=referral.version
            )
    assert _status_of(app, referral_id) == "closed"


def test_the_status_path_is_followed_to_placement(app, aftercare):
    from clinic.accounts.models import User

    make_consent(app, aftercare, resource=aftercare["home"])
    referral_id = make_referral(app, aftercare, resource=aftercare["home"])
    _send(app, aftercare, referral_id)
    with app.test_request_context():
        referral = db.session.get(Referral, referral_id)
        actor = db.session.get(User, aftercare["staff"])
        for target in ("waitlisted", "accepted", "placed"):
            referrals.change_status(
                referral, actor=actor, to_status=target, note=f"{target}.", version=referral.version
            )
            db.session.commit()
        pairs = [(e.from_status, e.to_status) for e in referrals.history(referral)]
    assert pairs == [
        (None, "draft"),
        ("draft", "sent"),
        ("sent", "waitlisted"),
        ("waitlisted", "accepted"),
        ("accepted", "placed"),
    ]


def test_bad_transitions_are_refused_by_the_database(app, aftercare):
    referral_id = make_referral(app, aftercare, resource=aftercare["home"])
    refused = [
        f"UPDATE referral SET status = 'placed' WHERE id = {referral_id}",
        # "sent" only with its disclosure on record
        f"UPDATE referral SET status = 'sent' WHERE id = {referral_id}",
        "INSERT INTO referral_event (referral_id, from_status, to_status, actor_id, occurred_at)"
        f" VALUES ({referral_id}, 'draft', 'placed', {aftercare['staff']}, CURRENT_TIMESTAMP)",
        "INSERT INTO referral (patient_id, resource_id, reason, purpose, status, created_by_id,"
        " created_at, status_changed_at, version) VALUES"
        f" ({aftercare['patient_id']}, {aftercare['home']}, 'x', 'aftercare_referral', 'sent',"
        f" {aftercare['staff']}, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)",
        # both recipients at once
        f"UPDATE referral SET support_person_id = {aftercare['person']} WHERE id = {referral_id}",
        # an allowed move, but without its event: the status is its latest event's
        f"UPDATE referral SET status = 'closed' WHERE id = {referral_id}",
        # an event out of step with the referral's status (it is a draft)
        "INSERT INTO referral_event (referral_id, from_status, to_status, actor_id, occurred_at)"
        f" VALUES ({referral_id}, 'sent', 'closed', {aftercare['staff']}, CURRENT_TIMESTAMP)",
        # a second creation event
        "INSERT INTO referral_event (referral_id, from_status, to_status, actor_id, occurred_at)"
        f" VALUES ({referral_id}, NULL, 'draft', {aftercare['staff']}, CURRENT_TIMESTAMP)",
    ]
    with app.app_context():
        for statement in refused:
            with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
                conn.execute(sa.text(statement))
        with db.engine.begin() as conn:  # an allowed move, after its event, goes through
            conn.execute(
                sa.text(
                    "INSERT INTO referral_event (referral_id, from_status, to_status, actor_id,"
                    f" occurred_at) VALUES ({referral_id}, 'draft', 'closed', {aftercare['staff']},"
                    " CURRENT_TIMESTAMP)"
                )
            )
            conn.execute(sa.text(f"UPDATE referral SET status = 'closed' WHERE id = {referral_id}"))
    assert _status_of(app, referral_id) == "closed"


def test_a_residence_that_does_not_take_methadone_is_a_warning_not_a_refusal(
    app, aftercare, make_user, make_order
):
    prescriber = make_user("clinician", is_prescriber=True)
    make_order(
        aftercare["enrollment_id"], prescriber, start_on=_today(app, aftercare["patient_id"])
    )
    with app.app_context():
        patient = db.session.get(Patient, aftercare["patient_id"])
        strict = db.session.get(AftercareResource, aftercare["strict"])
        home = db.session.get(AftercareResource, aftercare["home"])
        assert referrals.moud_warnings(patient, strict) == [
            "Abstinence Lodge does not accept residents on MOUD."
        ]
        assert referrals.moud_warnings(patient, home) == []
    make_referral(app, aftercare, resource=aftercare["strict"])  # still allowed


def test_an_inactive_resource_or_another_patients_support_person_is_refused(
    app, aftercare, make_patient
):
    from clinic.accounts.models import User

    other = make_patient("Ann", "Other")
    with app.test_request_context():
        db.session.get(AftercareResource, aftercare["home"]).active = False
        db.session.commit()
        actor = db.session.get(User, aftercare["staff"])
        with pytest.raises(DomainError) as refused:
            referrals.create_referral(
                db.session.get(Patient, aftercare["patient_id"]),
                actor=actor,
                resource_id=aftercare["home"],
                reason="x",
            )
        assert refused.value.field == "resource_id"
        with pytest.raises(DomainError) as refused:
            referrals.create_referral(
                db.session.get(Patient, other),
                actor=actor,
                support_person_id=aftercare["person"],
                reason="x",
            )
        assert refused.value.field == "support_person_id"
    assert _count(app, Referral) == 0


# --- over HTTP -------------------------------------------------------------------------------


@pytest.fixture
def staff(app, aftercare, username_of):
    client = app.test_client()
    assert login(client, username_of(aftercare["staff"])).status_code == 302
    return client


def _hidden(html: str) -> dict:
    return dict(HIDDEN_RE.findall(html))


def _post_form(client, url: str, data: dict, *, page: str | None = None):
    html = client.get(page or url).get_data(as_text=True)
    fields = _hidden(html)
    fields.update(data)
    return client.submit(url, fields, form_url=page or url)


@pytest.mark.parametrize("case", list(REFUSALS))
def test_sending_over_http_is_refused_with_the_reason_and_nothing_saved(
    app, aftercare, staff, case
):
    REFUSALS[case](app, aftercare)
    referral_id = make_referral(app, aftercare, resource=aftercare["home"])
    url = f"/aftercare/referrals/{referral_id}/send"
    page = staff.get(url)
    assert page.status_code == 200
    assert 'data-testid="send-refused"' in page.get_data(as_text=True)
    # A POST anyway (a form kept open, a crafted request): refused, with the reason.
    token = staff.csrf_token(url)
    response = staff.post(
        url,
        data={
            "csrf_token": token,
            "version": "1",
            "submission_token": "x" * 32,
            "description": "Everything",
        },
    )
    assert response.status_code == 400
    assert "This referral cannot be sent." in response.get_data(as_text=True)
    assert _count(app, Disclosure) == 0
    assert _status_of(app, referral_id) == "draft"


def test_the_whole_flow_over_http_send_packet_placement_and_accounting(app, aftercare, staff):
    make_consent(app, aftercare, resource=aftercare["home"])
    pid = aftercare["patient_id"]
    new_url = f"/aftercare/patients/{pid}/referrals/new?kind=recovery_residence&methadone=y&beds=y"
    page = staff.get(new_url).get_data(as_text=True)
    assert "Harbor House" in page and "Abstinence Lodge" not in page
    response = _post_form(
        staff,
        new_url,
        {"recipient": f"resource-{aftercare['home']}", "reason": "Housing after discharge"},
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    referral_url = response.headers["Location"]
    referral_id = int(referral_url.rsplit("/", 1)[1])
    send_url = f"/aftercare/referrals/{referral_id}/send"
    page = staff.get(send_url).get_data(as_text=True)
    assert 'data-testid="send-consent"' in page
    # The description offered is the consent's own, not a broader one.
    assert "That I am in treatment, and my medication</textarea>" in page
    html = staff.get(send_url).get_data(as_text=True)
    fields = _hidden(html)
    fields["description"] = "Name, that she is in treatment, her medication."
    first = staff.submit(send_url, fields)
    assert first.status_code == 302
    assert first.headers["Location"].endswith(f"/referrals/{referral_id}/packet")
    again = staff.submit(send_url, fields)  # a double click: the same form once more
    assert again.status_code == 302
    assert _count(app, Disclosure) == 1
    packet = staff.get(f"/aftercare/referrals/{referral_id}/packet").get_data(as_text=True)
    assert PART2_NOTICE[:60] in packet
    assert 'data-testid="consent-scope"' in packet
    for target in ("accepted", "placed"):
        response = _post_form(
            staff,
            f"/aftercare/referrals/{referral_id}/status",
            {"status": target, "note": f"Now {target}"},
            page=referral_url,
        )
        assert response.status_code == 302, response.get_data(as_text=True)
    assert _status_of(app, referral_id) == "placed"
    accounting = staff.get(f"/aftercare/patients/{pid}/disclosures")
    body = accounting.get_data(as_text=True)
    assert accounting.status_code == 200
    assert "Harbor House" in body and "her medication" in body
    with app.app_context():
        actions = set(
            db.session.scalars(
                sa.select(AuditEvent.action).where(AuditEvent.patient_id == pid)
            ).all()
        )
    assert {"create", "disclose", "print", "export", "view", "update"} <= actions


def test_a_bad_status_change_over_http_is_refused_next_to_the_field(app, aftercare, staff):
    referral_id = make_referral(app, aftercare, resource=aftercare["home"])
    url = f"/aftercare/referrals/{referral_id}"
    response = _post_form(
        staff, f"/aftercare/referrals/{referral_id}/status", {"status": "placed"}, page=url
    )
    assert response.status_code == 400
    assert _status_of(app, referral_id) == "draft"
    response = _post_form(
        staff,
        f"/aftercare/referrals/{referral_id}/status",
        {"status": "closed", "note": "bad\x00note"},
        page=url,
    )
    assert response.status_code == 400
    assert "control or invisible" in response.get_data(as_text=True)
    assert _status_of(app, referral_id) == "draft"


def test_bad_input_on_a_new_referral_keeps_the_rest_and_saves_nothing(app, aftercare, staff):
    url = f"/aftercare/patients/{aftercare['patient_id']}/referrals/new"
    cases = [
        ({"recipient": f"resource-{aftercare['home']}", "reason": "bad\x00reason"}, "control"),
        ({"recipient": f"resource-{aftercare['home']}", "reason": "x" * 1001}, "1000"),
        ({"recipient": "resource-99999999999999", "reason": "Keep me"}, "Keep me"),
        ({"recipient": "resource-2147483648", "reason": "Keep me"}, "Keep me"),
        ({"recipient": f"person-{aftercare['person']}x", "reason": "Keep me"}, "Keep me"),
        (
            {
                "recipient": f"resource-{aftercare['home']}",
                "reason": "Keep me",
                "follow_up_on": "2001-01-01",
            },
            "Keep me",
        ),
        ({"reason": "Keep me"}, "Choose a resource"),
    ]
    for data, shown in cases:
        response = _post_form(staff, url, data)
        assert response.status_code == 400, data
        assert shown in response.get_data(as_text=True), data
    assert _count(app, Referral) == 0
    # The directory's filters: bad ones are ignored; a NUL is refused at the edge (400),
    # never a 500.
    long_text = "x" * 200
    assert staff.get(f"{url}?q={long_text}&kind=nonsense&beds=y").status_code == 200
    assert staff.get(f"{url}?q=%00bad").status_code == 400


def test_a_residence_not_taking_the_patients_medication_asks_for_confirmation(
    app, aftercare, staff, make_user, make_order
):
    prescriber = make_user("clinician", is_prescriber=True)
    make_order(
        aftercare["enrollment_id"], prescriber, start_on=_today(app, aftercare["patient_id"])
    )
    url = f"/aftercare/patients/{aftercare['patient_id']}/referrals/new"
    data = {"recipient": f"resource-{aftercare['strict']}", "reason": "Only bed in town"}
    response = _post_form(staff, url, data)
    assert response.status_code == 400
    assert 'data-testid="moud-warning"' in response.get_data(as_text=True)
    assert _count(app, Referral) == 0
    response = _post_form(staff, url, {**data, "confirm_moud": "y"})
    assert response.status_code == 302
    assert _count(app, Referral) == 1


def test_other_sites_patients_and_referrals_are_not_found(
    app, aftercare, make_site, make_user, username_of
):
    make_consent(app, aftercare, resource=aftercare["home"])
    referral_id = make_referral(app, aftercare, resource=aftercare["home"])
    east = make_site("EAST")
    outsider = make_user("staff", site_ids=[east])
    client = app.test_client()
    login(client, username_of(outsider))
    pid = aftercare["patient_id"]
    for url in (
        f"/aftercare/patients/{pid}/referrals",
        f"/aftercare/patients/{pid}/referrals/new",
        f"/aftercare/patients/{pid}/disclosures",
        f"/aftercare/referrals/{referral_id}",
        f"/aftercare/referrals/{referral_id}/send",
        f"/aftercare/referrals/{referral_id}/packet",
    ):
        assert client.get(url).status_code == 404, url
    token = client.csrf_token("/")
    response = client.post(
        f"/aftercare/referrals/{referral_id}/send",
        data={"csrf_token": token, "version": "1", "submission_token": "y" * 32},
    )
    assert response.status_code == 404
    assert _count(app, Disclosure) == 0
    with app.app_context():
        denied = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "access_denied", AuditEvent.user_id == outsider)
        )
    assert denied >= 7


def test_clinicians_read_referrals_but_cannot_send_them(app, aftercare, client_as):
    make_consent(app, aftercare, resource=aftercare["home"])
    referral_id = make_referral(app, aftercare, resource=aftercare["home"])
    clinician = client_as("clinician")
    page = clinician.get(f"/aftercare/referrals/{referral_id}")
    assert page.status_code == 200
    assert "Send the referral" not in page.get_data(as_text=True)
    chart = clinician.get(f"/patients/{aftercare['patient_id']}").get_data(as_text=True)
    assert 'data-testid="referrals-section"' in chart and "Harbor House" in chart
    assert clinician.get(f"/aftercare/referrals/{referral_id}/send").status_code == 403
    token = clinician.csrf_token("/")
    response = clinician.post(
        f"/aftercare/referrals/{referral_id}/send",
        data={"csrf_token": token, "version": "1", "submission_token": "z" * 32},
    )
    assert response.status_code == 403
    assert _count(app, Disclosure) == 0


def test_the_packet_waits_for_the_referral_to_be_sent(app, aftercare, staff):
    referral_id = make_referral(app, aftercare, resource=aftercare["home"])
    response = staff.get(f"/aftercare/referrals/{referral_id}/packet")
    assert response.status_code == 302
    with app.app_context():
        printed = db.session.scalar(
            sa.select(sa.func.count()).select_from(AuditEvent).where(AuditEvent.action == "print")
        )
    assert printed == 0


# --- the dashboard ---------------------------------------------------------------------------


class StatementCounter:
    def __init__(self, engine) -> None:
        self.engine = engine
        self.count = 0

    def __call__(self, *args, **kwargs) -> None:
        self.count += 1

    def __enter__(self):
        sa.event.listen(self.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self)


def _statements(app, client, url: str) -> int:
    with app.app_context():
        engine = db.engine
    with StatementCounter(engine) as counter:
        response = client.get(url)
    assert response.status_code == 200
    return counter.count


def _bulk_referrals(app, ids, make_patient, count: int) -> None:
    """``count`` patients, each with a consent expiring soon and a referral due today."""
    from clinic.accounts.models import User

    today = _today(app, ids["patient_id"])
    patient_ids = [make_patient(f"Bulk{n}", "Patient") for n in range(count)]
    for patient_id in patient_ids:
        make_consent(
            app,
            {**ids, "patient_id": patient_id},
            resource=ids["home"],
            expires_on=today + dt.timedelta(days=10),
        )
    with app.test_request_context():
        actor = db.session.get(User, ids["staff"])
        for patient_id in patient_ids:
            referral = referrals.create_referral(
                db.session.get(Patient, patient_id),
                actor=actor,
                resource_id=ids["home"],
                reason="Bulk",
                follow_up_on=today,
            )
            disclosures.send(referral, actor=actor, version=referral.version)
        db.session.commit()


def test_the_dashboard_runs_a_constant_number_of_statements(app, aftercare, staff, make_patient):
    _bulk_referrals(app, aftercare, make_patient, 2)
    staff.get("/aftercare/dashboard")  # warm up
    small = _statements(app, staff, "/aftercare/dashboard")
    _bulk_referrals(app, aftercare, make_patient, 8)
    large = _statements(app, staff, "/aftercare/dashboard")
    html = staff.get("/aftercare/dashboard").get_data(as_text=True)
    assert 'data-status="sent">10<' in html
    assert "Harbor House" in html  # a residence with beds that takes MOUD
    assert "Abstinence Lodge" not in html
    assert small == large, (small, large)
    with app.app_context():
        views = db.session.scalar(
            sa.select(sa.func.count(sa.distinct(AuditEvent.patient_id))).where(
                AuditEvent.action == "view", AuditEvent.entity_type == "aftercare_dashboard"
            )
        )
    assert views == 10


def test_a_patients_referral_list_and_accounting_run_constant_statements(
    app, aftercare, staff, make_patient
):
    make_consent(app, aftercare, resource=aftercare["home"])
    pid = aftercare["patient_id"]
    for _ in range(2):
        _send(app, aftercare, make_referral(app, aftercare, resource=aftercare["home"]))
    staff.get(f"/aftercare/patients/{pid}/referrals")
    small = _statements(app, staff, f"/aftercare/patients/{pid}/referrals")
    small_acc = _statements(app, staff, f"/aftercare/patients/{pid}/disclosures")
    for _ in range(6):
        _send(app, aftercare, make_referral(app, aftercare, resource=aftercare["home"]))
    assert _statements(app, staff, f"/aftercare/patients/{pid}/referrals") == small
    assert _statements(app, staff, f"/aftercare/patients/{pid}/disclosures") == small_acc


def test_two_disclosures_of_one_referral_are_refused_by_the_database(app, aftercare):
    make_consent(app, aftercare, resource=aftercare["home"])
    referral_id = make_referral(app, aftercare, resource=aftercare["home"])
    disclosure_id = _send(app, aftercare, referral_id)
    with app.app_context():
        first = db.session.get(Disclosure, disclosure_id)
        copy = {
            c.name: getattr(first, c.key) for c in Disclosure.__table__.columns if c.name != "id"
        }
        with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
            conn.execute(sa.insert(Disclosure.__table__).values(**copy))
    assert _count(app, Disclosure) == 1


def referral_route_records(app, records: dict[str, int]) -> dict[str, int]:
    """A draft referral of the ``records`` patient to a resource of the directory (the
    referral endpoints' ``referral_id``, for the walks over every endpoint)."""
    with app.test_request_context():
        resource = AftercareResource(
            name="Matrix House",
            kind="recovery_residence",
            accepts_moud="yes",
            accepts_methadone="unknown",
            gender_served="all",
        )
        db.session.add(resource)
        db.session.flush()
        from clinic.accounts.models import User

        referral = referrals.create_referral(
            db.session.get(Patient, records["patient_id"]),
            actor=db.session.get(User, records["user_id"]),
            resource_id=resource.id,
            reason="Matrix referral",
        )
        db.session.commit()
        return {"referral_id": referral.id}


def test_the_demo_refers_in_every_status_with_disclosures(app, aftercare, make_patient, site):
    from clinic.accounts.models import User
    from clinic.aftercare import referral_demo
    from clinic.sites.models import Site

    make_consent(app, aftercare, resource=aftercare["home"])
    for n in range(8):
        patient_id = make_patient(f"Demo{n}", "Patient")
        make_consent(app, {**aftercare, "patient_id": patient_id}, resource=aftercare["home"])
    with app.app_context():
        created = referral_demo.seed(
            db.session.get(Site, site), staff=db.session.get(User, aftercare["staff"])
        )
        db.session.commit()
        statuses = set(db.session.scalars(sa.select(Referral.status)).all())
    assert created >= 9
    assert statuses == {s.value for s in ReferralStatus}
    assert _count(app, Disclosure) == len(referral_demo.PATHS)


def test_two_staff_sending_at_once_store_one_disclosure_and_the_second_is_told(app, aftercare):
    """The second sender's page was opened before the first sent: the database's unique
    index refuses the second disclosure, and the re-check tells why."""
    from clinic.accounts.models import User
    from clinic.aftercare.referral_forms import SendForm
    from clinic.aftercare.referral_views import SEND_REFUSALS
    from clinic.web import save

    make_consent(app, aftercare, resource=aftercare["home"])
    referral_id = make_referral(app, aftercare, resource=aftercare["home"])
    other = None
    with app.test_request_context(method="POST"):
        referral = db.session.get(Referral, referral_id)  # the second sender's view of it
        actor = db.session.get(User, aftercare["staff"])
        assert referral.status == "draft"
        with app.app_context():  # the first sender, in a session of their own
            first = db.session.get(Referral, referral_id)
            disclosures.send(
                first, actor=db.session.get(User, aftercare["staff"]), version=first.version
            )
            db.session.commit()
        form = SendForm(formdata=None)
        outcome = save(
            form,
            lambda: disclosures.send(referral, actor=actor, version=1),
            refusals=SEND_REFUSALS,
        )
        assert not outcome.saved
        other = outcome.error.message
    assert other == disclosures.ALREADY_SENT
    assert _count(app, Disclosure) == 1
    assert _count(app, ReferralEvent, ReferralEvent.to_status == "sent") == 1


def test_a_patients_referrals_sort_and_page_without_errors(app, aftercare, staff):
    first = make_referral(app, aftercare, resource=aftercare["home"])
    second = make_referral(app, aftercare, resource=aftercare["strict"])
    url = f"/aftercare/patients/{aftercare['patient_id']}/referrals"
    html = staff.get(url).get_data(as_text=True)
    assert html.index(f'data-referral-id="{second}"') < html.index(f'data-referral-id="{first}"')
    html = staff.get(f"{url}?sort=created&dir=desc").get_data(as_text=True)
    assert html.index(f'data-referral-id="{first}"') < html.index(f'data-referral-id="{second}"')
    for query in ("?page=abc", "?page=99999999999", "?sort=nonsense&dir=up", "?_external=1"):
        assert staff.get(url + query).status_code == 200, query


@pytest.mark.parametrize("field", ["description", "note"])
def test_control_characters_in_the_send_form_are_refused_and_nothing_is_disclosed(
    app, aftercare, staff, field
):
    from clinic.forms import CONTROL_CHARACTER_MESSAGE

    make_consent(app, aftercare, resource=aftercare["home"])
    referral_id = make_referral(app, aftercare, resource=aftercare["home"])
    url = f"/aftercare/referrals/{referral_id}/send"
    kept = "Name and that she is in treatment." if field == "note" else "Kept note."
    other = "note" if field == "description" else "description"
    response = _post_form(staff, url, {field: "bad\x00text", other: kept})
    assert response.status_code in (200, 400)  # shown again, not sent
    body = response.get_data(as_text=True)
    assert CONTROL_CHARACTER_MESSAGE in body
    assert kept in body  # the other input is kept
    assert _count(app, Disclosure) == 0
    assert _status_of(app, referral_id) == "draft"


@pytest.mark.skipif(not ON_POSTGRES, reason="SQLite locks the whole database: no row locks")
def test_a_revocation_waits_for_a_send_in_progress(app, aftercare):
    """Sending locks the patient's consents until its commit: a revocation arriving
    between the consent check and the commit waits (here: runs out of its lock timeout)
    instead of leaving a disclosure made under a consent revoked meanwhile."""
    from clinic.accounts.models import User

    consent_id = make_consent(app, aftercare, resource=aftercare["home"])
    referral_id = make_referral(app, aftercare, resource=aftercare["home"])
    with app.test_request_context():
        referral = db.session.get(Referral, referral_id)
        disclosures.send(
            referral, actor=db.session.get(User, aftercare["staff"]), version=referral.version
        )  # not committed yet: the send is in progress
        other = sa.create_engine(db.engine.url)
        try:
            with other.connect() as conn:
                conn.execute(sa.text("SET lock_timeout = '300ms'"))
                with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
                    conn.execute(
                        sa.text(
                            "UPDATE part2_consent SET revoked_on = signed_on, "
                            "revocation_method = 'In writing', revoked_by_id = recorded_by_id, "
                            "revoked_at = CURRENT_TIMESTAMP WHERE id = :id"
                        ),
                        {"id": consent_id},
                    )
        finally:
            other.dispose()
        db.session.commit()
    assert _count(app, Disclosure) == 1
