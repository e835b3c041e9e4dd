"""Demo therapy sessions and notes for ``flask seed-demo`` (after the patients demo, whose
enrollments name the primary counselors: Dan, the demo counselor, and Maria, the nurse).

A week of Dan's work at the demo site, as SCENARIOS.md's Tuesday tells it: a weekly
relapse-prevention group of seven (one no-show) recorded in one pass a week ago and
planned again today, individual sessions, signed notes, a draft still to sign, a note
signed late, an addendum and an SUD counseling note; one individual session planned for
today, not yet recorded. A trainee (Chris) under Dan's supervision: one note co-signed,
one waiting on Dan's co-signature queue. Dan's caseload flags one patient (no attended
session for 30 days and more).

Everything goes through the services, so the audit trail, hashes and late flags are
right; ``flask seed-demo`` runs this once, on an empty database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.patients.models import Enrollment, Patient
from clinic.sites.models import Site
from clinic.sites.time import site_today
from clinic.therapy import counseling, notes, sessions
from clinic.therapy.models import ProgressNote

GROUP_NAME = "Relapse prevention group"
# The group's members (demo patients by last name); the no-show has had no attended
# session for five weeks, so Dan's caseload flags her.
GROUP = ["Smith", "Torres", "Brown", "Nguyen", "Johnson", "O'Connor", "Davis"]
NO_SHOW = "O'Connor"
LATE_ARRIVAL = "Johnson"


@dataclass
class Seeded:
    sessions: int = 0
    notes: int = 0


def _patients(site: Site) -> dict[str, int]:
    """The site's patients with an active enrollment, by last name."""
    rows = db.session.execute(
        sa.select(Patient.last_name, Patient.id)
        .join(Enrollment, Enrollment.patient_id == Patient.id)
        .where(Patient.site_id == site.id, Enrollment.discharged_on.is_(None))
    )
    return {row.last_name: row.id for row in rows}


class _Week:
    """Local times at the demo site, ``days`` from today."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.zone = ZoneInfo(site.timezone)
        self.today = site_today(site)

    def at(self, days: int, hour: int, minute: int = 0) -> dt.datetime:
        day = self.today + dt.timedelta(days=days)
        local = dt.datetime.combine(day, dt.time(hour, minute), tzinfo=self.zone)
        return local.astimezone(dt.UTC)


def _plan(
    site: Site,
    starts_at: dt.datetime,
    patient_ids: list[int],
    *,
    kind: str = "individual",
    modality: str = "cbt",
    setting: str = "in_person",
    minutes: int = 50,
    group_name: str | None = None,
) -> sessions.SessionPlan:
    return sessions.SessionPlan(
        site_id=site.id,
        starts_at=starts_at,
        duration_minutes=minutes,
        kind=kind,
        modality=modality,
        setting=setting,
        patient_ids=patient_ids,
        group_name=group_name,
    )


def _individual(
    site: Site,
    clinician: User,
    starts_at: dt.datetime,
    patient_id: int,
    note: str,
    *,
    sign: bool,
    seeded: Seeded,
    **plan_fields,
) -> ProgressNote:
    """An individual session planned, then recorded (attended) half an hour after it ended,
    with its note: signed then, or left a draft."""
    session = sessions.plan_session(
        actor=clinician, plan=_plan(site, starts_at, [patient_id], **plan_fields)
    )
    recorded = sessions.record_session(
        session,
        actor=clinician,
        attendees=[sessions.AttendeeRecord(patient_id, "attended", None, note)],
        sign=sign,
        now=session.ends_at + dt.timedelta(minutes=30),
    )
    seeded.sessions += 1
    seeded.notes += 1
    return db.session.get(ProgressNote, recorded.attendee_note_ids[patient_id])


def seed(site: Site, *, counselor: User, trainee: User, admin: User) -> Seeded:
    """Sessions and notes at ``site`` (see the module doc). ``trainee`` becomes a trainee
    supervised by ``counselor`` (``admin`` sets it)."""
    week = _Week(site)
    patients = _patients(site)
    seeded = Seeded()

    # Five weeks ago: the no-show's last attended session (her caseload flag).
    _individual(
        site,
        counselor,
        week.at(-35, 14),
        patients[NO_SHOW],
        "Reviewed coping skills for weekend cravings; agreed to join the weekly group.",
        sign=True,
        seeded=seeded,
    )

    # The weekly group: a week ago (recorded in one pass, one no-show), and today (planned).
    group_ids = [patients[name] for name in GROUP]
    last_week, _today = sessions.plan_weekly_group(
        actor=counselor,
        plan=_plan(
            site,
            week.at(-7, 10),
            group_ids,
            kind="group",
            modality="relapse_prevention",
            minutes=90,
            group_name=GROUP_NAME,
        ),
        weeks=2,
    )
    lines = []
    for name in GROUP:
        if name == NO_SHOW:
            lines.append(sessions.AttendeeRecord(patients[name], "no_show", None))
        elif name == LATE_ARRIVAL:
            lines.append(
                sessions.AttendeeRecord(
                    patients[name], "late", 75, "Arrived 15 minutes late; engaged once settled."
                )
            )
        else:
            lines.append(
                sessions.AttendeeRecord(
                    patients[name], "attended", None, "Participated; shared a recent trigger."
                )
            )
    recorded = sessions.record_session(
        last_week,
        actor=counselor,
        attendees=lines,
        group_note="Topic: high-risk situations and refusal skills. Role-play in pairs; "
        "each member wrote a personal warning-sign list.",
        sign=True,
        now=last_week.ends_at + dt.timedelta(minutes=45),
    )
    seeded.sessions += 2
    seeded.notes += 1 + len(recorded.attendee_note_ids)

    # Individual sessions of the week.
    signed = _individual(
        site,
        counselor,
        week.at(-6, 14),
        patients["Smith"],
        "Motivational interview on reducing use on weekends; he set two goals for the week.",
        sign=True,
        seeded=seeded,
        modality="motivational_interviewing",
    )
    # Next morning a typo is spotted: an addendum, the note itself unchanged.
    notes.add_addendum(
        signed,
        actor=counselor,
        text="Correction: the goals were set for the next two weeks, not one.",
        now=week.at(-5, 9),
    )
    counseling.add_counseling_note(
        signed.attendee,
        actor=counselor,
        text="My impressions: ambivalence about tapering is tied to his brother's relapse.",
        now=week.at(-6, 15),
    )
    late = _individual(
        site,
        counselor,
        week.at(-5, 11),
        patients["Nguyen"],
        "Video session: reviewed sleep routine and medication adherence.",
        sign=False,
        seeded=seeded,
        setting="video",
    )
    # Signed now, days after the session: more than the 72-hour limit, a late entry.
    notes.sign_note(late, actor=counselor)
    _individual(
        site,
        counselor,
        week.at(-1, 15),
        patients["Brown"],
        "First individual session: treatment goals and a safety plan (draft, to finish).",
        sign=False,
        seeded=seeded,
        modality="motivational_interviewing",
    )

    # The trainee: one note co-signed by the supervisor, one waiting for it.
    notes.set_trainee_supervisor(trainee, actor=admin, supervisor=counselor)
    cosigned = _individual(
        site,
        trainee,
        week.at(-4, 13),
        patients["Torres"],
        "Contingency management check-in: two negative tests this week, voucher earned.",
        sign=True,
        seeded=seeded,
        modality="contingency_management",
    )
    notes.cosign_note(cosigned, actor=counselor, now=week.at(-3, 9))
    _individual(
        site,
        trainee,
        week.at(-2, 13),
        patients["Johnson"],
        "Twelve-step facilitation: discussed finding a sponsor.",
        sign=True,
        seeded=seeded,
        modality="twelve_step_facilitation",
    )

    # Today: an individual session planned, not yet recorded.
    sessions.plan_session(
        actor=counselor,
        plan=_plan(site, week.at(0, 16), [patients["Hernandez"]]),
    )
    seeded.sessions += 1
    db.session.flush()
    return seeded
