"""Stop-dose holds and flags (issue 10): place, lift (with confirmation), one live hold per
patient (also in the database), holds in force by date, flags added and cleared, audited
without their text."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
import time_machine

from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications import holds
from clinic.medications.models import MedicationHold, PatientFlag


@pytest.fixture
def people(make_user, make_patient):
    return {"clinician": make_user("clinician"), "patient": make_patient()}


def _run(app, people, action):
    from clinic.accounts.models import User
    from clinic.patients.models import Patient

    with app.test_request_context():
        result = action(
            db.session.get(Patient, people["patient"]), db.session.get(User, people["clinician"])
        )
        db.session.commit()
        return getattr(result, "id", result)


def test_a_hold_until_lifted_is_in_force_and_a_second_is_refused(app, people):
    hold_id = _run(
        app, people, lambda p, u: holds.place_hold(p, actor=u, reason="Sedated", until_on=None)
    )
    with app.app_context():
        far = dt.date(2030, 1, 1)
        assert holds.holds_in_force([people["patient"]], far)[people["patient"]].id == hold_id
    with pytest.raises(DomainError, match="already on hold"):
        _run(app, people, lambda p, u: holds.place_hold(p, actor=u, reason="Again", until_on=None))


def test_a_dated_hold_ends_after_its_last_day_and_a_new_one_replaces_it(app, people):
    with app.app_context():
        from clinic.patients.models import Patient
        from clinic.sites.time import site_today

        today = site_today(db.session.get(Patient, people["patient"]).site)
    hold_id = _run(
        app, people, lambda p, u: holds.place_hold(p, actor=u, reason="r", until_on=today)
    )
    with app.app_context():
        assert holds.holds_in_force([people["patient"]], today)
        assert not holds.holds_in_force([people["patient"]], today + dt.timedelta(days=1))
    # The database still counts it as live until someone (or the next hold) closes it:
    # the next day (a hold is never edited, so time moves on instead of its date).
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(days=1)):
        new_id = _run(
            app, people, lambda p, u: holds.place_hold(p, actor=u, reason="n", until_on=None)
        )
    with app.app_context():
        assert db.session.get(MedicationHold, hold_id).lift_reason == "expired"
        assert new_id != hold_id


@pytest.mark.parametrize(
    ("reason", "until", "field"),
    [
        (" ", None, "reason"),
        ("r", dt.date(2000, 1, 1), "until_on"),
        ("r", dt.date(2099, 1, 1), "until_on"),
    ],
)
def test_bad_hold_input_is_refused_on_its_field(app, people, reason, until, field):
    with pytest.raises(DomainError) as caught:
        _run(app, people, lambda p, u: holds.place_hold(p, actor=u, reason=reason, until_on=until))
    assert caught.value.field == field


def test_lifting_needs_a_reason_and_happens_once(app, people):
    hold_id = _run(
        app, people, lambda p, u: holds.place_hold(p, actor=u, reason="r", until_on=None)
    )

    def lift(reason):
        def action(_patient, user):
            return holds.lift_hold(
                db.session.get(MedicationHold, hold_id), actor=user, reason=reason
            )

        return action

    with pytest.raises(DomainError) as caught:
        _run(app, people, lift(""))
    assert caught.value.field == "reason"
    _run(app, people, lift("Assessed: fine"))
    with pytest.raises(DomainError, match="already lifted"):
        _run(app, people, lift("again"))
    with app.app_context():
        assert holds.holds_in_force([people["patient"]], dt.date(2030, 1, 1)) == {}


def test_the_database_keeps_one_live_hold_per_patient(app, people):
    _run(app, people, lambda p, u: holds.place_hold(p, actor=u, reason="r", until_on=None))
    with app.app_context(), pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO medication_hold (patient_id, reason, placed_by_id, placed_at) "
                "SELECT patient_id, 'x', placed_by_id, placed_at FROM medication_hold"
            )
        )


def test_staff_and_admins_cannot_place_holds_or_flags(app, people, make_user):
    for role in ("staff", "admin"):
        other = {**people, "clinician": make_user(role)}
        with pytest.raises(DomainError, match="Only clinicians"):
            _run(app, other, lambda p, u: holds.place_hold(p, actor=u, reason="r", until_on=None))
        with pytest.raises(DomainError, match="Only clinicians"):
            _run(app, other, lambda p, u: holds.add_flag(p, actor=u, category="info", text="t"))


def test_flags_are_added_listed_warnings_first_and_cleared(app, people):
    from clinic.audit.models import AuditEvent

    info = _run(app, people, lambda p, u: holds.add_flag(p, actor=u, category="info", text="Early"))
    warning = _run(
        app, people, lambda p, u: holds.add_flag(p, actor=u, category="warning", text="Sedation")
    )
    with app.app_context():
        assert [f.id for f in holds.live_flags([people["patient"]])[people["patient"]]] == [
            warning,
            info,
        ]
        details = db.session.scalars(
            sa.select(AuditEvent.details).where(AuditEvent.entity_type == "patient_flag")
        ).all()
        assert details and not any("Sedation" in d for d in details)

    def clear(_patient, user):
        holds.clear_flag(db.session.get(PatientFlag, warning), actor=user)

    _run(app, people, clear)
    with pytest.raises(DomainError, match="already cleared"):
        _run(app, people, clear)
    with app.app_context():
        assert [f.id for f in holds.live_flags([people["patient"]])[people["patient"]]] == [info]


@pytest.mark.parametrize(
    ("category", "text", "field"), [("", "t", "category"), ("info", "  ", "text")]
)
def test_bad_flag_input_is_refused(app, people, category, text, field):
    with pytest.raises(DomainError) as caught:
        _run(app, people, lambda p, u: holds.add_flag(p, actor=u, category=category, text=text))
    assert caught.value.field == field


def test_hold_and_flag_pages(app, people, username_of):
    from tests.conftest import login

    client = app.test_client()
    login(client, username_of(people["clinician"]))
    base = f"/medications/patients/{people['patient']}"
    response = client.submit(f"{base}/holds/new", {"reason": "", "submission_token": "h" * 20})
    assert response.status_code == 400
    assert 'id="reason-error"' in response.get_data(as_text=True)
    response = client.submit(
        f"{base}/holds/new", {"reason": "Sedated", "submission_token": "h" * 20}
    )
    assert response.status_code == 302
    with app.app_context():
        hold_id = db.session.scalar(sa.select(MedicationHold.id))
    page = client.get(f"/medications/holds/{hold_id}/lift").get_data(as_text=True)
    assert "Lift the hold?" in page
    assert client.submit(f"/medications/holds/{hold_id}/lift", {"reason": "ok"}).status_code == 302
    response = client.submit(
        f"{base}/flags/new", {"category": "warning", "text": "Check", "submission_token": "f" * 20}
    )
    assert response.status_code == 302
    with app.app_context():
        flag_id = db.session.scalar(sa.select(PatientFlag.id))
    response = client.submit(f"/medications/flags/{flag_id}/clear", {}, form_url=base)
    assert response.status_code == 302
    with app.app_context():
        assert db.session.get(PatientFlag, flag_id).cleared_at is not None
        assert db.session.get(MedicationHold, hold_id).lifted_at is not None
