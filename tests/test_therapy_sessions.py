"""Planning and recording therapy sessions (issue 11): the rules at their edges, a weekly
group planned in one step, a group recorded in one pass (all or nothing)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from clinic.audit.models import AuditEvent
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.patients.models import Enrollment
from clinic.sites.models import Site
from clinic.therapy import sessions
from clinic.therapy.models import (
    ProgressNote,
    SessionAttendee,
    SessionStatus,
    TherapySession,
)
from clinic.therapy.sessions import AttendeeRecord, SessionPlan
from clinic.web import constraint_name
from tests.test_therapy_helpers import hours_ago, plan, therapy_fixture  # noqa: F401


def a_plan(clinic, **changes) -> SessionPlan:
    values = {
        "site_id": clinic.site,
        "starts_at": hours_ago(2),
        "duration_minutes": 60,
        "kind": "group",
        "modality": "relapse_prevention",
        "setting": "in_person",
        "patient_ids": clinic.patients[:3],
        "group_name": "Tuesday relapse prevention",
    }
    values.update(changes)
    return SessionPlan(**values)


def refusal(clinic, actor=None, **changes) -> DomainError:
    with pytest.raises(DomainError) as refused:
        sessions.plan_session(
            actor=clinic.user(actor or clinic.dan), plan=a_plan(clinic, **changes)
        )
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TherapySession)) == 0
    return refused.value


@pytest.mark.parametrize("minutes", [1, 600])
def test_a_duration_of_1_to_600_minutes_is_planned(therapy, minutes):
    session = sessions.plan_session(
        actor=therapy.user(therapy.dan), plan=a_plan(therapy, duration_minutes=minutes)
    )
    db.session.commit()
    assert session.duration_minutes == minutes
    assert session.status == SessionStatus.PLANNED
    assert [a.patient_id for a in session.attendees] == therapy.patients[:3]
    assert [a.position for a in session.attendees] == [1, 2, 3]


@pytest.mark.parametrize("minutes", [0, -5, 601, 2000, None])
def test_a_duration_of_0_or_2000_minutes_is_refused(therapy, minutes):
    error = refusal(therapy, duration_minutes=minutes)
    assert error.field == "duration_minutes"


def test_the_database_refuses_a_duration_outside_1_to_600(therapy):
    session = plan(therapy, therapy.patients[:1], kind="individual")
    db.session.commit()
    for value in (0, 601):
        with pytest.raises(sa.exc.IntegrityError):
            db.session.execute(
                sa.text("UPDATE therapy_session SET duration_minutes = :v WHERE id = :id"),
                {"v": value, "id": session.id},
            )
        db.session.rollback()


def test_an_attendee_at_another_site_is_refused(therapy):
    error = refusal(therapy, patient_ids=[therapy.patients[0], therapy.other_site_patient])
    assert error.field == "patient_ids"
    assert "enrollment" in error.message


def test_an_attendee_without_an_enrollment_is_refused(therapy):
    assert refusal(therapy, patient_ids=[therapy.unenrolled_patient]).field == "patient_ids"


def test_an_attendee_not_yet_admitted_on_the_session_day_is_refused(therapy):
    # Patients were admitted on 2026-01-05: a session the day before is refused.
    before = dt.datetime(2026, 1, 4, 16, 0, tzinfo=dt.UTC)
    assert refusal(therapy, starts_at=before).field == "patient_ids"


def test_an_attendee_discharged_before_the_session_is_refused(therapy):
    enrollment = db.session.scalar(
        sa.select(Enrollment).where(Enrollment.patient_id == therapy.patients[0])
    )
    enrollment.discharged_on = dt.date.today() - dt.timedelta(days=10)
    enrollment.discharge_reason = 1
    db.session.commit()
    assert refusal(therapy, patient_ids=therapy.patients[:1]).field == "patient_ids"


def test_a_site_that_is_not_the_clinicians_is_refused(therapy):
    assert refusal(therapy, site_id=therapy.other_site).field == "site_id"


@pytest.mark.parametrize("role", ["admin", "staff"])
def test_administrators_and_staff_cannot_plan_sessions(therapy, role):
    actor = therapy.admin if role == "admin" else therapy.staff
    assert "clinicians" in refusal(therapy, actor=actor).message


def test_twenty_attendees_are_the_most(therapy, make_patient, make_enrollment):
    extra = []
    for i in range(13):
        patient = make_patient("Extra", f"Person{chr(65 + i)}")
        make_enrollment(patient, therapy.program)
        extra.append(patient)
    twenty_one = therapy.patients + extra
    assert len(twenty_one) == 21
    assert refusal(therapy, patient_ids=twenty_one).field == "patient_ids"
    session = sessions.plan_session(
        actor=therapy.user(therapy.dan), plan=a_plan(therapy, patient_ids=twenty_one[:20])
    )
    assert len(session.attendees) == 20


def test_the_database_refuses_a_21st_attendee_and_a_repeated_patient(therapy):
    session = plan(therapy, therapy.patients[:2])
    db.session.commit()
    enrollment = session.attendees[0].enrollment_id
    for patient, position in ((therapy.patients[2], 21), (therapy.patients[0], 3)):
        db.session.add(
            SessionAttendee(
                session_id=session.id,
                patient_id=patient,
                enrollment_id=enrollment,
                position=position,
            )
        )
        with pytest.raises(sa.exc.IntegrityError):
            db.session.flush()
        db.session.rollback()


def test_an_individual_session_has_exactly_one_attendee(therapy):
    error = refusal(therapy, kind="individual", group_name=None, patient_ids=therapy.patients[:2])
    assert error.field == "patient_ids"
    assert refusal(therapy, kind="individual", patient_ids=therapy.patients[:1]).field == (
        "group_name"
    )


def test_a_repeated_attendee_and_no_attendee_are_refused(therapy):
    assert refusal(therapy, patient_ids=[therapy.patients[0]] * 2).field == "patient_ids"
    assert refusal(therapy, patient_ids=[]).field == "patient_ids"


def test_a_double_submit_plans_one_session(therapy):
    starts_at = hours_ago(1)
    plan(therapy, therapy.patients[:1], starts_at=starts_at)
    error = refusal_after_first(therapy, starts_at)
    assert error.field == "starts_at"


def refusal_after_first(therapy, starts_at):
    with pytest.raises(DomainError) as refused:
        plan(therapy, therapy.patients[1:2], starts_at=starts_at)
    return refused.value


def test_planning_is_audited_with_ids_only(therapy):
    session = plan(therapy, therapy.patients[:2], group_name="Tuesday relapse prevention")
    db.session.commit()
    events = list(db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq)))
    created = [e for e in events if e.entity_type in ("therapy_session", "session_attendee")]
    assert {e.patient_id for e in created} == {None, *therapy.patients[:2]}
    assert all("Tuesday" not in (e.details or "") for e in created)
    assert created[0].entity_id == str(session.id)


# --- a weekly group ---------------------------------------------------------------------


def test_a_weekly_group_is_planned_in_one_step_at_the_same_local_time(therapy):
    # 2026-10-27 18:00 in Chicago (CDT), then across the change to CST on 2026-11-01.
    first = dt.datetime(2026, 10, 27, 18, 0, tzinfo=ZoneInfo("America/Chicago"))
    planned = sessions.plan_weekly_group(
        actor=therapy.user(therapy.dan),
        plan=a_plan(therapy, starts_at=first.astimezone(dt.UTC)),
        weeks=3,
    )
    db.session.commit()
    local = [s.starts_at.astimezone(ZoneInfo("America/Chicago")) for s in planned]
    assert [(t.month, t.day, t.hour) for t in local] == [(10, 27, 18), (11, 3, 18), (11, 10, 18)]
    assert len({s.series_key for s in planned}) == 1
    assert all(len(s.attendees) == 3 for s in planned)


@pytest.mark.parametrize("weeks", [0, 27, None])
def test_a_weekly_group_of_0_or_27_weeks_is_refused(therapy, weeks):
    with pytest.raises(DomainError) as refused:
        sessions.plan_weekly_group(
            actor=therapy.user(therapy.dan), plan=a_plan(therapy), weeks=weeks
        )
    assert refused.value.field == "weeks"


def test_a_weekly_series_that_clashes_plans_nothing(therapy):
    start = hours_ago(2)
    # A week later on the site's clock (a week of UTC missed it across a DST change).
    site = db.session.get(Site, therapy.site)
    plan(therapy, therapy.patients[:1], starts_at=sessions.weekly_starts(site, start, 2)[1])
    db.session.commit()
    with pytest.raises(DomainError) as refused:
        sessions.plan_weekly_group(
            actor=therapy.user(therapy.dan), plan=a_plan(therapy, starts_at=start), weeks=4
        )
    db.session.rollback()
    assert refused.value.field == "starts_at"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TherapySession)) == 1


def test_an_individual_session_does_not_recur(therapy):
    with pytest.raises(DomainError) as refused:
        sessions.plan_weekly_group(
            actor=therapy.user(therapy.dan),
            plan=a_plan(
                therapy, kind="individual", group_name=None, patient_ids=therapy.patients[:1]
            ),
            weeks=2,
        )
    assert refused.value.field == "kind"


# --- recording ----------------------------------------------------------------------------


def seven_person_group(therapy):
    return plan(therapy, therapy.patients[:7], group_name="Tuesday relapse prevention")


def lines(therapy, *, no_show: int = 6, notes: bool = True) -> list[AttendeeRecord]:
    result = []
    for i, patient in enumerate(therapy.patients[:7]):
        if i == no_show:
            result.append(AttendeeRecord(patient, "no_show", None, None))
        else:
            note = f"Line for attendee {i}: engaged, shared a coping plan." if notes else None
            result.append(AttendeeRecord(patient, "attended", 60, note))
    return result


def test_a_seven_person_group_with_one_no_show_is_recorded_and_signed_in_one_pass(therapy):
    session = seven_person_group(therapy)
    db.session.commit()
    recorded = sessions.record_session(
        session,
        actor=therapy.user(therapy.dan),
        attendees=lines(therapy),
        group_note="The group practised refusal skills and urge surfing.",
        sign=True,
    )
    db.session.commit()
    assert session.status == SessionStatus.RECORDED
    attendance = {a.patient_id: (a.attendance, a.minutes_attended) for a in session.attendees}
    assert attendance[therapy.patients[6]] == ("no_show", None)
    assert attendance[therapy.patients[0]] == ("attended", 60)
    notes = list(db.session.scalars(sa.select(ProgressNote)))
    assert len(notes) == 7  # the group note and six attendees' lines
    assert all(n.signed and len(n.text_sha256) == 64 and not n.late for n in notes)
    assert recorded.group_note_id is not None
    assert set(recorded.attendee_note_ids) == set(therapy.patients[:6])


def test_a_session_in_the_future_cannot_be_recorded_as_attended(therapy):
    session = plan(therapy, therapy.patients[:2], starts_at=hours_ago(-3))
    db.session.commit()
    for attendance in ("attended", "late", "left_early"):
        with pytest.raises(DomainError) as refused:
            sessions.record_session(
                session,
                actor=therapy.user(therapy.dan),
                attendees=[
                    AttendeeRecord(therapy.patients[0], "cancelled_by_clinic"),
                    AttendeeRecord(therapy.patients[1], attendance, 30),
                ],
            )
        assert refused.value.field == "attendees-1-attendance"
        db.session.rollback()
    # Cancelling ahead of time is fine.
    sessions.record_session(
        session,
        actor=therapy.user(therapy.dan),
        attendees=[AttendeeRecord(p, "cancelled_by_clinic") for p in therapy.patients[:2]],
    )
    db.session.commit()
    assert session.recorded


@pytest.mark.parametrize(
    ("attendance", "minutes", "ok"),
    [
        ("attended", 60, True),
        ("attended", 61, False),
        ("late", 1, True),
        ("late", 0, False),
        ("left_early", None, False),
        ("no_show", 0, True),
        ("no_show", 5, False),
        ("cancelled_by_patient", None, True),
        ("cancelled_by_patient", 1, False),
    ],
)
def test_minutes_attended_lie_within_the_duration_and_absences_have_none(
    therapy, attendance, minutes, ok
):
    session = plan(therapy, therapy.patients[:1], kind="individual")
    db.session.commit()
    line = [AttendeeRecord(therapy.patients[0], attendance, minutes)]
    if ok:
        sessions.record_session(session, actor=therapy.user(therapy.dan), attendees=line)
        db.session.commit()
        assert session.attendees[0].minutes_attended == minutes
    else:
        with pytest.raises(DomainError) as refused:
            sessions.record_session(session, actor=therapy.user(therapy.dan), attendees=line)
        assert refused.value.field == "attendees-0-minutes"


@pytest.mark.parametrize(
    ("attendance", "minutes"),
    [("attended", None), ("attended", 0), ("no_show", 10), ("cancelled_by_clinic", 1)],
)
def test_the_database_refuses_minutes_that_do_not_fit_the_attendance(therapy, attendance, minutes):
    session = plan(therapy, therapy.patients[:1], kind="individual")
    db.session.commit()
    with pytest.raises(sa.exc.IntegrityError):
        db.session.execute(
            sa.text(
                "UPDATE session_attendee SET attendance = :a, minutes_attended = :m "
                "WHERE session_id = :s"
            ),
            {"a": attendance, "m": minutes, "s": session.id},
        )
    db.session.rollback()


def test_a_bad_line_saves_nothing_of_the_recording(therapy):
    session = seven_person_group(therapy)
    db.session.commit()
    bad = lines(therapy)
    bad[3] = AttendeeRecord(therapy.patients[3], "attended", 60, "text with a NUL \x00 byte")
    with pytest.raises(DomainError) as refused:
        sessions.record_session(
            session, actor=therapy.user(therapy.dan), attendees=bad, group_note="Fine.", sign=True
        )
    assert refused.value.field == "attendees-3-note"
    db.session.rollback()
    db.session.expire_all()
    assert db.session.get(TherapySession, session.id).status == SessionStatus.PLANNED
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ProgressNote)) == 0
    assert all(a.attendance is None for a in db.session.get(TherapySession, session.id).attendees)


def test_every_planned_attendee_is_recorded_and_walk_ins_are_checked(therapy):
    session = plan(therapy, therapy.patients[:2])
    db.session.commit()
    dan = therapy.user(therapy.dan)
    with pytest.raises(DomainError, match="every planned attendee"):
        sessions.record_session(
            session, actor=dan, attendees=[AttendeeRecord(therapy.patients[0], "attended", 60)]
        )
    with pytest.raises(DomainError) as refused:
        sessions.record_session(
            session,
            actor=dan,
            attendees=[
                AttendeeRecord(therapy.patients[0], "attended", 60),
                AttendeeRecord(therapy.patients[1], "attended", 60),
                AttendeeRecord(therapy.other_site_patient, "attended", 60),
            ],
        )
    assert refused.value.field == "attendees"
    db.session.rollback()
    sessions.record_session(
        session,
        actor=dan,
        attendees=[AttendeeRecord(p, "attended", 45) for p in therapy.patients[:3]],
    )
    db.session.commit()
    assert [a.position for a in session.attendees] == [1, 2, 3]


def test_only_the_sessions_clinician_records_it_and_only_once(therapy):
    session = plan(therapy, therapy.patients[:1], kind="individual")
    db.session.commit()
    line = [AttendeeRecord(therapy.patients[0], "attended", 60)]
    with pytest.raises(DomainError, match="session's clinician"):
        sessions.record_session(session, actor=therapy.user(therapy.cotherapist), attendees=line)
    sessions.record_session(session, actor=therapy.user(therapy.dan), attendees=line)
    db.session.commit()
    with pytest.raises(DomainError, match="already recorded"):
        sessions.record_session(session, actor=therapy.user(therapy.dan), attendees=line)


def test_an_individual_session_has_no_group_note(therapy):
    session = plan(therapy, therapy.patients[:1], kind="individual")
    db.session.commit()
    with pytest.raises(DomainError) as refused:
        sessions.record_session(
            session,
            actor=therapy.user(therapy.dan),
            attendees=[AttendeeRecord(therapy.patients[0], "attended", 60)],
            group_note="Group text",
        )
    assert refused.value.field == "group_note"


def test_a_session_is_found_only_at_the_users_sites(therapy, make_user):
    session = plan(therapy, therapy.patients[:1], kind="individual")
    db.session.commit()
    east = make_user("clinician", site_ids=[therapy.other_site])
    assert sessions.session_for(therapy.user(therapy.cotherapist), session.id) is session
    assert sessions.session_for(therapy.user(east), session.id) is None
    assert sessions.session_for(therapy.user(east), 10**6) is None


def test_the_database_keeps_minutes_within_the_duration_whichever_is_written_last(therapy):
    session = plan(therapy, therapy.patients[:1], kind="individual", duration=50)
    sessions.record_session(
        session,
        actor=therapy.user(therapy.dan),
        attendees=[AttendeeRecord(therapy.patients[0], "attended", 50)],
    )
    db.session.commit()
    for statement in (
        "UPDATE session_attendee SET minutes_attended = 51 WHERE session_id = :id",
        "UPDATE therapy_session SET duration_minutes = 49 WHERE id = :id",
    ):
        with pytest.raises(sa.exc.IntegrityError) as refused:
            db.session.execute(sa.text(statement), {"id": session.id})
        assert constraint_name(refused.value) == "session_attendee_minutes_within_duration"
        db.session.rollback()
    db.session.execute(
        sa.text("UPDATE therapy_session SET duration_minutes = 50 WHERE id = :id"),
        {"id": session.id},
    )
    db.session.rollback()
