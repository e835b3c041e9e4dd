"""Attacks on issue 12's promise, "an unconsented disclosure is impossible" (task X12): every
route to a disclosure at the service and by raw SQL, on both engines (over HTTP:
``test_aftercare_attacks_http``; the directory's CSV: ``test_aftercare_attacks_input``).
Each test names the attack; those that got through before the fix say so in their
docstring."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.aftercare import consents, referrals, support
from clinic.aftercare.consent_models import Consent, RestrictionRequest, SupportPerson
from clinic.aftercare.referral_models import Disclosure, Referral, ReferralStatus
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.patients.models import Enrollment, Patient
from tests.test_aftercare_consents import ac as ac_fixture  # noqa: F401
from tests.test_aftercare_consents import count_consents
from tests.test_aftercare_referrals import (
    _count,
    _send,
    _status_of,
    _today,
    make_consent,
    make_referral,
)
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


def _refused_send(app, ids, referral_id) -> str:
    with pytest.raises(consents.DisclosureRefused) as refused:
        _send(app, ids, referral_id)
    assert _count(app, Disclosure) == 0
    assert _status_of(app, referral_id) == "draft"
    return refused.value.message


def _sql(app, statement: str, **params) -> None:
    with app.app_context():
        try:
            db.session.execute(sa.text(statement), params)
            db.session.commit()
        finally:
            db.session.rollback()


def test_renaming_a_support_person_after_the_consent_refuses_the_send(app, ids):
    """Got through: a consent names a support person by id, so renaming the row (another
    person now) kept the old consent covering whoever the row names."""
    make_consent(app, ids, person=ids["person"], recipient_name="Rita Sister (family)")
    with app.test_request_context():
        person = db.session.get(SupportPerson, ids["person"])
        support.edit_support_person(
            person,
            actor=db.session.get(User, ids["staff"]),
            data=support.SupportPersonInput(name="Bob Stranger", relationship="friend"),
            version=person.version,
        )
        db.session.commit()
    referral_id = make_referral(app, ids, person=ids["person"])
    assert "Rita Sister" in _refused_send(app, ids, referral_id)


def test_a_new_phone_number_of_the_same_support_person_keeps_the_consent(app, ids):
    make_consent(app, ids, person=ids["person"], recipient_name="Rita Sister (family)")
    with app.test_request_context():
        person = db.session.get(SupportPerson, ids["person"])
        support.edit_support_person(
            person,
            actor=db.session.get(User, ids["staff"]),
            data=support.SupportPersonInput(
                name="Rita Sister", relationship="family", phone="(217) 555-0101"
            ),
            version=person.version,
        )
        db.session.commit()
    referral_id = make_referral(app, ids, person=ids["person"])
    assert _send(app, ids, referral_id)


def test_renaming_a_resource_after_the_consent_refuses_the_send(app, ids):
    """Got through: the directory row the consent named could become another house."""
    make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(app, ids, resource=ids["home"])
    _sql(
        app,
        "UPDATE aftercare_resource SET name = 'Other House' WHERE id = :id",
        id=ids["home"],
    )
    assert "Harbor House" in _refused_send(app, ids, referral_id)


def test_archiving_a_resource_after_the_draft_refuses_the_send(app, ids):
    """Got through: a draft to a resource archived afterwards was still sent."""
    make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(app, ids, resource=ids["home"])
    _sql(app, "UPDATE aftercare_resource SET active = false WHERE id = :id", id=ids["home"])
    _refused_send(app, ids, referral_id)


def test_changing_a_resources_kind_out_of_the_consents_class_refuses_the_send(app, ids):
    make_consent(app, ids, recipient_class="residences", recipient_name="Residences")
    referral_id = make_referral(app, ids, resource=ids["home"])
    _sql(
        app,
        "UPDATE aftercare_resource SET kind = 'peer_support', narr_level = NULL, beds_total = NULL,"
        " beds_available = NULL, beds_confirmed_on = NULL WHERE id = :id",
        id=ids["home"],
    )
    _refused_send(app, ids, referral_id)


def test_a_class_that_does_not_include_the_resource_kind_is_refused(app, ids):
    make_consent(app, ids, recipient_class="support_groups", recipient_name="Groups")
    referral_id = make_referral(app, ids, resource=ids["home"])
    _refused_send(app, ids, referral_id)


def test_archiving_a_support_person_after_the_draft_refuses_the_send(app, ids):
    make_consent(app, ids, person=ids["person"], recipient_name="Rita Sister (family)")
    referral_id = make_referral(app, ids, person=ids["person"])
    with app.test_request_context():
        person = db.session.get(SupportPerson, ids["person"])
        support.archive_support_person(
            person, actor=db.session.get(User, ids["staff"]), version=person.version
        )
        db.session.commit()
    _refused_send(app, ids, referral_id)


def test_another_patients_consent_does_not_cover(app, ids, make_patient):
    other = make_patient("Olga", "Other")
    make_consent(app, ids, resource=ids["home"], patient_id=other)
    referral_id = make_referral(app, ids, resource=ids["home"])
    _refused_send(app, ids, referral_id)


@pytest.mark.parametrize(
    "overrides",
    [
        {"kind": "counseling_notes"},
        {
            "kind": "tpo",
            "purpose": "tpo",
            "expiry_kind": "none",
            "expires_on": None,
            "redisclosure_statement": "May be redisclosed as HIPAA permits",
        },
        {"purpose": "care_coordination"},
    ],
    ids=["counseling notes", "tpo", "other purpose"],
)
def test_a_consent_of_another_kind_or_purpose_does_not_cover_a_referral(app, ids, overrides):
    make_consent(app, ids, resource=ids["home"], **overrides)
    referral_id = make_referral(app, ids, resource=ids["home"])
    _refused_send(app, ids, referral_id)


def test_a_consent_signed_with_a_future_date_by_sql_is_not_in_force(app, ids):
    today = _today(app, ids["patient_id"])
    make_consent(
        app,
        ids,
        resource=ids["home"],
        signed_on=today + dt.timedelta(days=1),
        expires_on=today + dt.timedelta(days=30),
    )
    referral_id = make_referral(app, ids, resource=ids["home"])
    assert "not in force" in _refused_send(app, ids, referral_id)


def test_a_consent_expiring_today_still_covers_and_yesterday_does_not(app, ids):
    today = _today(app, ids["patient_id"])
    earlier = today - dt.timedelta(days=10)
    make_consent(app, ids, resource=ids["home"], signed_on=earlier, expires_on=today)
    first = make_referral(app, ids, resource=ids["home"])
    assert _send(app, ids, first)
    yesterday_only = make_referral(app, ids, resource=ids["strict"])
    make_consent(
        app,
        ids,
        resource=ids["strict"],
        recipient_name="Abstinence Lodge",
        signed_on=earlier,
        expires_on=today - dt.timedelta(days=1),
    )
    assert "expired" in _refused_send_keep(app, ids, yesterday_only)


def _refused_send_keep(app, ids, referral_id) -> str:
    before = _count(app, Disclosure)
    with pytest.raises(consents.DisclosureRefused) as refused:
        _send(app, ids, referral_id)
    assert _count(app, Disclosure) == before
    assert _status_of(app, referral_id) == "draft"
    return refused.value.message


def test_an_end_of_treatment_consent_stops_at_discharge(app, ids):
    today = _today(app, ids["patient_id"])
    make_consent(
        app,
        ids,
        resource=ids["home"],
        expiry_kind="event",
        expires_on=None,
        expiry_event="End of treatment",
        signed_on=today - dt.timedelta(days=5),
    )
    referral_id = make_referral(app, ids, resource=ids["home"])
    with app.app_context():
        for enrollment in db.session.scalars(
            sa.select(Enrollment).where(Enrollment.patient_id == ids["patient_id"])
        ):
            if enrollment.discharged_on is None:
                enrollment.discharged_on = today - dt.timedelta(days=1)
                enrollment.discharge_reason = 1
        db.session.commit()
    assert "end of treatment" in _refused_send(app, ids, referral_id)


def test_a_restriction_refuses_and_a_lifted_one_no_longer_does(app, ids):
    today = _today(app, ids["patient_id"])
    make_consent(app, ids, resource=ids["home"])
    with app.app_context():
        restriction = RestrictionRequest(
            patient_id=ids["patient_id"],
            recipient_class="residences",
            details="Not to any house",
            requested_on=today - dt.timedelta(days=2),
            recorded_by_id=ids["staff"],
        )
        db.session.add(restriction)
        db.session.commit()
        restriction_id = restriction.id
    referral_id = make_referral(app, ids, resource=ids["home"])
    _refused_send(app, ids, referral_id)
    with app.app_context():
        restriction = db.session.get(RestrictionRequest, restriction_id)
        restriction.lifted_on = today
        restriction.lift_reason = "The patient changed her mind, in writing"
        restriction.lifted_by_id = ids["staff"]
        restriction.lifted_at = dt.datetime.now(dt.UTC)
        db.session.commit()
    assert _send(app, ids, referral_id)


@pytest.mark.parametrize("target", ["sent", "accepted", "placed", "waitlisted", "declined"])
def test_a_draft_never_leaves_draft_but_by_sending(app, ids, target):
    make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(app, ids, resource=ids["home"])
    with app.test_request_context():
        referral = db.session.get(Referral, referral_id)
        with pytest.raises(DomainError):
            referrals.change_status(
                referral,
                actor=db.session.get(User, ids["staff"]),
                to_status=target,
                note=None,
                version=referral.version,
            )
    with pytest.raises(sa.exc.IntegrityError):
        _sql(app, "UPDATE referral SET status = :s WHERE id = :id", s=target, id=referral_id)
    assert _status_of(app, referral_id) == "draft"
    assert _count(app, Disclosure) == 0


def _insert_disclosure(app, ids, referral_id: int, consent_id: int, **overrides) -> None:
    with app.app_context():
        referral = db.session.get(Referral, referral_id)
        values = {
            "patient_id": referral.patient_id,
            "referral_id": referral.id,
            "resource_id": referral.resource_id,
            "support_person_id": referral.support_person_id,
            "recipient_name": "Harbor House",
            "description": "Everything",
            "purpose": "aftercare_referral",
            "consent_id": consent_id,
            "disclosed_by_id": ids["staff"],
            "disclosed_at": dt.datetime.now(dt.UTC),
            "disclosed_on": _today(app, ids["patient_id"]),
        }
    values.update(overrides)
    columns = ", ".join(values)
    params = ", ".join(f":{k}" for k in values)
    _sql(app, f"INSERT INTO part2_disclosure ({columns}) VALUES ({params})", **values)


def _revoked_consent(app, ids, _make_patient=None) -> int:
    consent_id = make_consent(app, ids, resource=ids["home"])
    with app.app_context():
        consent = db.session.get(Consent, consent_id)
        consent.revoked_on = consent.signed_on
        consent.revocation_method = "Signed letter"
        consent.revoked_by_id = ids["staff"]
        consent.revoked_at = dt.datetime.now(dt.UTC)
        db.session.commit()
    return consent_id


def _expired_consent(app, ids, _make_patient=None) -> int:
    today = _today(app, ids["patient_id"])
    return make_consent(
        app,
        ids,
        resource=ids["home"],
        signed_on=today - dt.timedelta(days=30),
        expires_on=today - dt.timedelta(days=1),
    )


def _other_patients_consent(app, ids, make_patient) -> int:
    other = make_patient("Olga", "Other")
    return make_consent(app, {**ids, "patient_id": other}, resource=ids["home"])


def _other_recipient_consent(app, ids, _make_patient=None) -> int:
    return make_consent(app, ids, resource=ids["strict"], recipient_name="Abstinence Lodge")


def _wrong_class_consent(app, ids, _make_patient=None) -> int:
    return make_consent(app, ids, recipient_class="support_groups", recipient_name="Groups")


def _counseling_notes_consent(app, ids, _make_patient=None) -> int:
    return make_consent(app, ids, resource=ids["home"], kind="counseling_notes")


def _other_purpose_consent(app, ids, _make_patient=None) -> int:
    return make_consent(app, ids, resource=ids["home"], purpose="care_coordination")


def _future_consent(app, ids, _make_patient=None) -> int:
    today = _today(app, ids["patient_id"])
    return make_consent(app, ids, resource=ids["home"], signed_on=today + dt.timedelta(days=2))


BAD_CONSENTS = {
    "revoked": _revoked_consent,
    "expired": _expired_consent,
    "another patient's": _other_patients_consent,
    "naming another resource": _other_recipient_consent,
    "of a class without the kind": _wrong_class_consent,
    "for counseling notes": _counseling_notes_consent,
    "for another purpose": _other_purpose_consent,
    "signed later": _future_consent,
}


@pytest.mark.parametrize("case", list(BAD_CONSENTS))
def test_the_database_refuses_a_disclosure_no_consent_covers(app, ids, make_patient, case):
    """Got through: a disclosure row inserted by SQL under any consent id, then the referral
    moved to "sent" (its trigger asked only that a disclosure exist)."""
    consent_id = BAD_CONSENTS[case](app, ids, make_patient)
    referral_id = make_referral(app, ids, resource=ids["home"])
    with pytest.raises(sa.exc.IntegrityError, match="part2_disclosure_consented"):
        _insert_disclosure(app, ids, referral_id, consent_id)
    assert _count(app, Disclosure) == 0


def test_the_database_refuses_a_disclosure_that_is_not_its_referrals(app, ids):
    """Got through: a disclosure's patient or recipient need not be its referral's."""
    consent_id = make_consent(app, ids, resource=ids["strict"], recipient_name="x")
    referral_id = make_referral(app, ids, resource=ids["home"])
    with pytest.raises(sa.exc.IntegrityError, match="part2_disclosure_consented"):
        _insert_disclosure(app, ids, referral_id, consent_id, resource_id=ids["strict"])


def test_the_database_takes_a_disclosure_a_consent_covers(app, ids):
    consent_id = make_consent(app, ids, recipient_class="residences", recipient_name="R")
    referral_id = make_referral(app, ids, resource=ids["home"])
    _insert_disclosure(app, ids, referral_id, consent_id)
    assert _count(app, Disclosure) == 1


@pytest.mark.parametrize(
    "assignment",
    ["resource_id = :other", "patient_id = :patient", "purpose = 'care_coordination'"],
)
def test_a_referrals_patient_recipient_and_purpose_never_change_by_sql(
    app, ids, make_patient, assignment
):
    """Got through: after the consent check (or the sending), the referral's recipient or
    patient could be changed by an UPDATE, and the accounting no longer matched it."""
    make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(app, ids, resource=ids["home"])
    _send(app, ids, referral_id)
    other_patient = make_patient("Olga", "Other")
    with pytest.raises(sa.exc.IntegrityError, match="referral_recipient_fixed"):
        _sql(
            app,
            f"UPDATE referral SET {assignment} WHERE id = :id",
            other=ids["strict"],
            patient=other_patient,
            id=referral_id,
        )
    with app.app_context():
        referral = db.session.get(Referral, referral_id)
        assert (referral.resource_id, referral.patient_id) == (
            ids["home"],
            ids["patient_id"],
        )


def test_a_bare_status_update_to_sent_is_refused_by_the_database(app, ids):
    make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(app, ids, resource=ids["home"])
    with pytest.raises(sa.exc.IntegrityError):
        _sql(app, "UPDATE referral SET status = 'sent' WHERE id = :id", id=referral_id)
    assert _status_of(app, referral_id) == ReferralStatus.DRAFT


def test_a_consent_revoked_while_sending_is_refused_by_the_database_and_explained(
    app, ids, monkeypatch
):
    """The service read the consent before another desk's revocation committed: the
    database's check refuses the disclosure, and the re-check says why."""
    from clinic.aftercare import disclosures
    from clinic.aftercare.referral_forms import SendForm
    from clinic.aftercare.referral_views import SEND_REFUSALS
    from clinic.web import save

    consent_id = _revoked_consent(app, ids)
    referral_id = make_referral(app, ids, resource=ids["home"])
    real = consents.check_disclosure
    stale = iter([True])

    def read_before_the_revocation(patient, **kwargs):
        if next(stale, False):
            return db.session.get(Consent, consent_id)
        return real(patient, **kwargs)

    monkeypatch.setattr(consents, "check_disclosure", read_before_the_revocation)
    with app.test_request_context(method="POST"):
        referral = db.session.get(Referral, referral_id)
        actor = db.session.get(User, ids["staff"])
        outcome = save(
            SendForm(formdata=None),
            lambda: disclosures.send(referral, actor=actor, version=referral.version),
            refusals=SEND_REFUSALS,
        )
        assert not outcome.saved
        assert "revoked" in outcome.error.message
    assert _count(app, Disclosure) == 0
    assert _status_of(app, referral_id) == "draft"


def test_expiry_is_read_on_the_sites_day_not_utcs(app, ids):
    """9 pm in Chicago is already tomorrow in UTC: a consent expiring today (site-local)
    still covers, and the disclosure is dated the site's day."""
    import time_machine

    with time_machine.travel(dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.UTC), tick=True):
        site_day = dt.date(2026, 11, 29)
        assert _today(app, ids["patient_id"]) == site_day
        make_consent(
            app,
            ids,
            resource=ids["home"],
            signed_on=site_day - dt.timedelta(days=9),
            expires_on=site_day,
        )
        referral_id = make_referral(app, ids, resource=ids["home"])
        disclosure_id = _send(app, ids, referral_id)
        with app.app_context():
            assert db.session.get(Disclosure, disclosure_id).disclosed_on == site_day
        make_consent(
            app,
            ids,
            resource=ids["strict"],
            recipient_name="Abstinence Lodge",
            signed_on=site_day - dt.timedelta(days=9),
            expires_on=site_day - dt.timedelta(days=1),
        )
        late = make_referral(app, ids, resource=ids["strict"])
        with pytest.raises(consents.DisclosureRefused):
            _send(app, ids, late)


def _as(app, user_id: int, action):
    with app.test_request_context():
        actor = db.session.get(User, user_id)
        try:
            return action(actor)
        finally:
            db.session.rollback()


def test_a_clinician_or_another_sites_staff_cannot_send_at_the_service(
    app, ids, make_user, make_site
):
    """Got through: ``disclosures.send`` and ``referrals.create_referral`` trusted the view's
    permission check; called by a clinician or by staff of another site, they disclosed."""
    from clinic.aftercare import disclosures

    make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(app, ids, resource=ids["home"])
    clinician = make_user("clinician")
    outsider = make_user("staff", site_ids=[make_site("EAST")])
    for user_id in (clinician, outsider):

        def send(actor):
            referral = db.session.get(Referral, referral_id)
            return disclosures.send(referral, actor=actor, version=referral.version)

        def create(actor):
            return referrals.create_referral(
                db.session.get(Patient, ids["patient_id"]),
                actor=actor,
                resource_id=ids["home"],
                reason="Housing",
            )

        def close(actor):
            referral = db.session.get(Referral, referral_id)
            return referrals.change_status(
                referral, actor=actor, to_status="closed", note=None, version=referral.version
            )

        for action in (send, create, close):
            with pytest.raises(DomainError):
                _as(app, user_id, action)
    assert _count(app, Disclosure) == 0
    assert _count(app, Referral) == 1
    assert _status_of(app, referral_id) == "draft"


def test_a_patient_entered_in_error_is_not_referred_or_disclosed(app, ids):
    """Got through: a record marked entered in error (a wrong or duplicate person) could
    still be referred and its referral sent."""
    from clinic.aftercare import disclosures

    make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(app, ids, resource=ids["home"])
    _sql(
        app,
        "UPDATE patient SET entered_in_error_at = :now, entered_in_error_by_id = :by,"
        " entered_in_error_reason = 'Duplicate' WHERE id = :id",
        now=dt.datetime.now(dt.UTC),
        by=ids["staff"],
        id=ids["patient_id"],
    )

    def send(actor):
        referral = db.session.get(Referral, referral_id)
        return disclosures.send(referral, actor=actor, version=referral.version)

    with pytest.raises(DomainError):
        _as(app, ids["staff"], send)
    assert _count(app, Disclosure) == 0


@pytest.mark.parametrize(
    "restriction",
    [
        {"resource_id": "home"},
        {"recipient_class": "residences"},
        {},
        {"purpose": "aftercare_referral"},
    ],
    ids=["the resource", "its class", "anyone", "the purpose"],
)
def test_the_database_refuses_a_disclosure_a_restriction_forbids(app, ids, restriction):
    """A restriction recorded at the front desk while another desk was sending: the
    database refuses the disclosure the service's check did not see."""
    consent_id = make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(app, ids, resource=ids["home"])
    values = {k: ids.get(v, v) for k, v in restriction.items()}
    with app.app_context():
        db.session.add(
            RestrictionRequest(
                patient_id=ids["patient_id"],
                details="Nothing to the house",
                requested_on=_today(app, ids["patient_id"]),
                recorded_by_id=ids["staff"],
                **values,
            )
        )
        db.session.commit()
    with pytest.raises(sa.exc.IntegrityError, match="part2_disclosure_consented"):
        _insert_disclosure(app, ids, referral_id, consent_id)


def test_a_restriction_for_another_recipient_or_purpose_lets_the_database_store_it(app, ids):
    consent_id = make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(app, ids, resource=ids["home"])
    with app.app_context():
        for values in (
            {"resource_id": ids["strict"]},
            {"recipient_class": "support_network"},
            {"purpose": "care_coordination"},
            {"support_person_id": ids["person"]},
        ):
            db.session.add(
                RestrictionRequest(
                    patient_id=ids["patient_id"],
                    details="Not them",
                    requested_on=_today(app, ids["patient_id"]),
                    recorded_by_id=ids["staff"],
                    **values,
                )
            )
        db.session.commit()
    _insert_disclosure(app, ids, referral_id, consent_id)
    assert _count(app, Disclosure) == 1


def test_another_sites_staff_cannot_record_revoke_or_edit_at_the_service(
    app, ac, make_user, make_site
):
    """Got through: the consent and support-network services checked the role, not the
    site: staff of another site could record a consent (then used for a disclosure),
    revoke one, or rename a support person, by calling the service."""
    from clinic.aftercare.consents import record_consent, revoke_consent
    from tests.test_aftercare_consents import consent_input
    from tests.test_aftercare_consents import record as record_as_staff

    consent_id = record_as_staff(app, ac)
    outsider = make_user("staff", site_ids=[make_site("WEST")])

    def record(actor):
        return record_consent(
            db.session.get(Patient, ac.patient), actor=actor, data=consent_input(ac)
        )

    def revoke(actor):
        return revoke_consent(
            db.session.get(Consent, consent_id), actor=actor, revoked_on=ac.today, method="Letter"
        )

    def rename(actor):
        person = db.session.get(SupportPerson, ac.person)
        return support.edit_support_person(
            person,
            actor=actor,
            data=support.SupportPersonInput(name="Eve", relationship="friend"),
            version=person.version,
        )

    def add(actor):
        return support.add_support_person(
            db.session.get(Patient, ac.patient),
            actor=actor,
            data=support.SupportPersonInput(name="Eve", relationship="friend"),
        )

    for action in (record, revoke, rename, add):
        with pytest.raises(DomainError):
            _as(app, outsider, action)
    assert count_consents(app) == 1
    with app.app_context():
        assert db.session.get(Consent, consent_id).revoked_on is None
        assert db.session.get(SupportPerson, ac.person).name == "Maria Reyes"


def test_a_tpo_consent_never_covers_a_support_person(app, ids):
    """Got through: a referral to a support person with purpose "TPO" was sent under a TPO
    consent naming the support network. Family and friends are no treatment provider,
    payer or operation of the program: a TPO consent does not reach them (§2.33(b))."""
    from clinic.aftercare import disclosures

    consent_id = make_consent(
        app,
        ids,
        recipient_class="support_network",
        recipient_name="My support network",
        kind="tpo",
        purpose="tpo",
        expiry_kind="none",
        expires_on=None,
        redisclosure_statement="As HIPAA permits",
    )
    with app.test_request_context():
        referral = referrals.create_referral(
            db.session.get(Patient, ids["patient_id"]),
            actor=db.session.get(User, ids["staff"]),
            support_person_id=ids["person"],
            reason="A place to stay",
            purpose="tpo",
        )
        db.session.commit()
        referral_id = referral.id
    _refused_send(app, ids, referral_id)
    with pytest.raises(sa.exc.IntegrityError, match="part2_disclosure_consented"):
        _insert_disclosure(app, ids, referral_id, consent_id, purpose="tpo")
    assert disclosures  # the service refused first; the database refuses a raw row too


def test_an_end_of_treatment_consent_signed_after_discharge_is_refused(app, ac):
    """Got through: the patient was already discharged when signing an "end of treatment"
    consent; the event it waits for had happened, so it never expired and covered every
    disclosure until a later readmission ended."""
    from tests.test_aftercare_consents import record as record_as_staff

    with app.app_context():
        enrollment = db.session.get(Enrollment, ac.enrollment)
        enrollment.discharged_on = ac.today - dt.timedelta(days=3)
        enrollment.discharge_reason = 1
        db.session.commit()
    with pytest.raises(DomainError) as refused:
        record_as_staff(app, ac, expiry_kind="event", expires_on=None, expiry_event=None)
    assert refused.value.field == "expiry_kind"
    assert count_consents(app) == 0


def test_an_end_of_treatment_consent_signed_in_treatment_is_recorded(app, ac):
    from tests.test_aftercare_consents import record as record_as_staff

    assert record_as_staff(app, ac, expiry_kind="event", expires_on=None, expiry_event=None)


def test_a_discharge_dated_before_an_end_of_treatment_consent_ends_it(app, ids):
    """Got through: a discharge recorded later but dated before the consent's signature
    (the patient had left already) left the "end of treatment" consent in force for good:
    only a discharge on or after the signature counted."""
    today = _today(app, ids["patient_id"])
    make_consent(
        app,
        ids,
        resource=ids["home"],
        expiry_kind="event",
        expires_on=None,
        expiry_event="End of treatment",
        signed_on=today - dt.timedelta(days=2),
    )
    referral_id = make_referral(app, ids, resource=ids["home"])
    with app.app_context():
        for enrollment in db.session.scalars(
            sa.select(Enrollment).where(Enrollment.patient_id == ids["patient_id"])
        ):
            if enrollment.discharged_on is None:
                enrollment.discharged_on = today - dt.timedelta(days=5)
                enrollment.discharge_reason = 1
        db.session.commit()
    assert "end of treatment" in _refused_send(app, ids, referral_id)
    consent_id = db_consent_id(app, ids)
    with pytest.raises(sa.exc.IntegrityError, match="part2_disclosure_consented"):
        _insert_disclosure(app, ids, referral_id, consent_id)


def db_consent_id(app, ids) -> int:
    with app.app_context():
        return db.session.scalar(
            sa.select(Consent.id).where(Consent.patient_id == ids["patient_id"])
        )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE support_person SET patient_id = :other WHERE id = :id",
        "UPDATE support_person SET archived_at = NULL, archived_by_id = NULL WHERE id = :id",
    ],
    ids=["moved to another patient", "brought back"],
)
def test_a_support_persons_patient_and_archiving_never_change_by_sql(
    app, ids, make_patient, statement
):
    """Got through: a support person (whom a consent names by id) could be moved into
    another patient's network, or brought back after archiving, by an UPDATE."""
    other = make_patient("Olga", "Other")
    with app.test_request_context():
        person = db.session.get(SupportPerson, ids["person"])
        support.archive_support_person(
            person, actor=db.session.get(User, ids["staff"]), version=person.version
        )
        db.session.commit()
    with pytest.raises(sa.exc.IntegrityError, match="support_person_immutable"):
        _sql(app, statement, other=other, id=ids["person"])
    with app.app_context():
        person = db.session.get(SupportPerson, ids["person"])
        assert (person.patient_id, person.archived) == (ids["patient_id"], True)


def test_a_support_persons_details_still_change(app, ids):
    _sql(app, "UPDATE support_person SET phone = '+12175550101' WHERE id = :id", id=ids["person"])
