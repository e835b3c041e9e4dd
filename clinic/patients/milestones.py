"""The 42 CFR 8.12(f) deadlines of an opioid treatment program's enrollment: medical
examination, assessment and initial care plan within 14 days of admission, periodic
care-plan reviews; how a deadline is worded, recording the milestones and reviews, and the
deadline worklist of the user's sites.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from clinic.accounts.models import User
from clinic.audit import AuditAction
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.patients.common import (
    REVIEW_EXISTS_MESSAGE,
    audit_patient,
    check_version,
    format_day,
    refuse_if_entered_in_error,
    scoped,
)
from clinic.patients.models import (
    CarePlanReview,
    Enrollment,
    Patient,
)
from clinic.sites.time import site_today

DEADLINE_DAYS = 14  # 42 CFR 8.12(f)(2) and (f)(4), 2024 revision
DUE_SOON_DAYS = 7


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def deadline_wording(due_on: dt.date, today: dt.date, done_on: dt.date | None = None) -> str:
    """How a deadline reads, from the site's ``today``:

    - done: "done 3 Feb 2026", or "done 3 Feb 2026, late (due 19 Jan 2026)" when recorded
      after its deadline;
    - due today: "due today";
    - ahead: "due tomorrow (27 Jan 2026)", "due in 2 days (28 Jan 2026)";
    - past: "overdue since 25 Jan 2026 (1 day)", "overdue since 26 Jan 2026 (307 days)":
      the deadline's day, and how many days ago it was."""
    if done_on is not None:
        if done_on > due_on:
            return f"done {format_day(done_on)}, late (due {format_day(due_on)})"
        return f"done {format_day(done_on)}"
    ahead = (due_on - today).days
    if ahead == 0:
        return "due today"
    if ahead == 1:
        return f"due tomorrow ({format_day(due_on)})"
    if ahead > 1:
        return f"due in {_days(ahead)} ({format_day(due_on)})"
    return f"overdue since {format_day(due_on)} ({_days(-ahead)})"


@dataclass
class Deadline:
    name: str
    due_on: dt.date
    done_on: dt.date | None
    today: dt.date

    @property
    def status(self) -> str:
        if self.done_on is not None:
            return "done"
        if self.due_on < self.today:
            return "overdue"
        if (self.due_on - self.today).days <= DUE_SOON_DAYS:
            return "due"
        return "upcoming"

    @property
    def late(self) -> bool:
        """Recorded after its deadline."""
        return self.done_on is not None and self.done_on > self.due_on

    @property
    def wording(self) -> str:
        return deadline_wording(self.due_on, self.today, self.done_on)

    @property
    def badge(self) -> str | None:
        """The word of the wording a page shows as a badge: "overdue", "due", "late";
        None for a deadline met in time."""
        if self.done_on is not None:
            return "late" if self.late else None
        return "overdue" if self.status == "overdue" else "due"

    @property
    def parts(self) -> tuple[str, str | None, str]:
        """The wording split around its badge word, (before, badge, after), so a page
        shows each word once ("overdue" in the badge, " since 26 Jan 2026 (1 day)" after
        it) and a screen reader reads the one sentence."""
        wording = self.wording
        if self.badge is None or self.badge not in wording:
            return wording, None, ""
        before, word, after = wording.partition(self.badge)
        return before, word, after


def deadlines(enrollment: Enrollment, today: dt.date | None = None) -> list[Deadline]:
    """The deadlines of an enrollment, by its program's kind.

    An opioid treatment program (42 CFR 8.12(f)): medical examination and psychosocial
    assessment / initial care plan within 14 days of admission. Other kinds (office-based
    buprenorphine, naltrexone, outpatient, intensive outpatient) are not under 8.12 and
    have no admission deadline here; their dates may still be recorded. Every kind: once
    an initial care plan is recorded, reviews at the program's interval (the state's rule,
    a per-program setting, DOMAIN.md)."""
    today = today or site_today(enrollment.patient.site)
    items = []
    if enrollment.program.kind.is_otp:
        first_due = enrollment.admitted_on + dt.timedelta(days=DEADLINE_DAYS)
        items = [
            Deadline("Medical examination", first_due, enrollment.medical_exam_on, today),
            Deadline("Psychosocial assessment", first_due, enrollment.assessment_on, today),
            Deadline("Initial care plan", first_due, enrollment.care_plan_on, today),
        ]
    if enrollment.active and enrollment.care_plan_on is not None:
        last = max([enrollment.care_plan_on, *(r.reviewed_on for r in enrollment.reviews)])
        interval = dt.timedelta(days=enrollment.program.care_plan_review_days)
        items.append(Deadline("Care-plan review", last + interval, None, today))
    return items


def open_deadlines(enrollment: Enrollment, today: dt.date | None = None) -> list[Deadline]:
    if not enrollment.active:
        return []
    return [d for d in deadlines(enrollment, today) if d.status in ("due", "overdue")]


MILESTONES = ("medical_exam_on", "assessment_on", "care_plan_on")
NOTHING_TO_SAVE_MESSAGE = "Nothing to save: enter a date."


def record_milestones(
    enrollment: Enrollment,
    *,
    actor: User,
    values: dict[str, dt.date | None],
    expected_version: int | None,
) -> list[str]:
    """Record when the examination, assessment and initial care plan were done (42 CFR
    8.12(f)): each between the admission and the discharge (or today). The initial care
    plan also comes before its reviews and stays while reviews are recorded. The same
    rules hold from the other side (discharge) and in the database (CHECKs, a trigger).
    A form with no date, for an enrollment with none recorded, is refused: there is
    nothing to save (saying "saved" would mislead). Returns the fields changed."""
    refuse_if_entered_in_error(enrollment.patient)
    check_version(enrollment.version, expected_version)
    if all(values.get(name) is None for name in MILESTONES) and all(
        getattr(enrollment, name) is None for name in MILESTONES
    ):
        raise DomainError(NOTHING_TO_SAVE_MESSAGE)
    today = site_today(enrollment.patient.site)
    first_review = db.session.scalar(
        sa.select(sa.func.min(CarePlanReview.reviewed_on)).where(
            CarePlanReview.enrollment_id == enrollment.id
        )
    )
    changed = []
    for name in MILESTONES:
        value = values.get(name)
        if value is not None and value < enrollment.admitted_on:
            raise DomainError(
                f"That is before the admission date ({format_day(enrollment.admitted_on)}).",
                field=name,
            )
        if value is not None and value > today:
            raise DomainError("That date is in the future.", field=name)
        if (
            value is not None
            and enrollment.discharged_on is not None
            and value > enrollment.discharged_on
        ):
            raise DomainError(
                f"That is after the discharge date ({format_day(enrollment.discharged_on)}).",
                field=name,
            )
        if name == "care_plan_on" and first_review is not None:
            if value is None:
                raise DomainError(
                    "Care-plan reviews are recorded: the initial care plan date stays.",
                    field=name,
                )
            if value > first_review:
                raise DomainError(
                    f"That is after the first care-plan review ({format_day(first_review)}).",
                    field=name,
                )
        if getattr(enrollment, name) != value:
            setattr(enrollment, name, value)
            changed.append(name)
    if changed:
        db.session.flush()
        audit_patient(
            enrollment.patient,
            AuditAction.UPDATE,
            "enrollment",
            enrollment.id,
            actor=actor,
            details={"fields": changed},
        )
    return changed


def record_care_plan_review(
    enrollment: Enrollment, *, actor: User, reviewed_on: dt.date
) -> CarePlanReview:
    """A periodic care-plan review (42 CFR 8.12(f)(4)): after the initial care plan, not
    after the discharge nor in the future, once a day per enrollment (the unique
    constraint ``uq_care_plan_review_enrollment_id_reviewed_on``; the dates also a
    trigger)."""
    refuse_if_entered_in_error(enrollment.patient)
    if enrollment.care_plan_on is None:
        raise DomainError("Record the initial care plan first.", field="reviewed_on")
    if reviewed_on < enrollment.care_plan_on:
        raise DomainError("A review cannot come before the initial care plan.", field="reviewed_on")
    if reviewed_on > site_today(enrollment.patient.site):
        raise DomainError("That date is in the future.", field="reviewed_on")
    if enrollment.discharged_on is not None and reviewed_on > enrollment.discharged_on:
        raise DomainError(
            f"That is after the discharge date ({format_day(enrollment.discharged_on)}).",
            field="reviewed_on",
        )
    exists = db.session.scalar(
        sa.select(CarePlanReview.id).where(
            CarePlanReview.enrollment_id == enrollment.id,
            CarePlanReview.reviewed_on == reviewed_on,
        )
    )
    if exists is not None:
        raise DomainError(REVIEW_EXISTS_MESSAGE, field="reviewed_on")
    review = CarePlanReview(
        enrollment_id=enrollment.id, reviewed_on=reviewed_on, recorded_by_id=actor.id
    )
    db.session.add(review)
    db.session.flush()
    db.session.refresh(enrollment, ["reviews"])
    audit_patient(
        enrollment.patient, AuditAction.CREATE, "care_plan_review", review.id, actor=actor
    )
    return review


@dataclass
class WorklistItem:
    enrollment: Enrollment
    deadline: Deadline


def deadline_worklist(user: User, *, counselor_only: bool = False) -> list[WorklistItem]:
    """Active enrollments at the user's sites with a deadline due within a week or past."""
    query = (
        sa.select(Enrollment)
        .join(Enrollment.patient)
        .where(Enrollment.discharged_on.is_(None), Patient.entered_in_error_at.is_(None))
        .options(
            selectinload(Enrollment.patient).selectinload(Patient.site),
            selectinload(Enrollment.program),
            selectinload(Enrollment.reviews),
            selectinload(Enrollment.primary_counselor),
        )
    )
    query = scoped(query, user)
    if counselor_only:
        query = query.where(Enrollment.primary_counselor_id == user.id)
    items = [
        WorklistItem(enrollment, deadline)
        for enrollment in db.session.scalars(query)
        for deadline in open_deadlines(enrollment)
    ]
    items.sort(key=lambda i: (i.deadline.due_on, i.enrollment.patient.last_key))
    return items
