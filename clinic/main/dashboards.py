"""Each role's home page, as a dashboard (issue 14, "Home pages"): counts and short lists
that link to the full list pages.

One function per role (``clinician_dashboard``, ``staff_dashboard``, ``admin_dashboard``)
returns a small dataclass; the home page renders one tile per field that is not None. A
field is None when the user lacks the permission of the page the tile links to (the
tile is not shown at all), so a tile never promises a list the user cannot open.

Rules:

- **Reuse.** Counts come from the owning domain's public reading and service functions
  (therapy ``reading``, medications ``worklists`` / ``reviews`` / ``drug_test_schedule``
  / ``take_home_reading`` / ``call_backs``, patients ``milestones``, aftercare
  ``referrals``, audit ``review``, accounts ``services``), never from their views. Where
  a domain has no public function for a count (the census, this month's admissions and
  discharges, today's random-test selections not yet collected, take-home decisions
  awaiting approval, locked-out accounts) the query is written here, small and grouped.
- **Site scope.** Everything counted lies at the user's sites (``visible_site_ids``:
  every site for an organisation-wide administrator); another site's records are never
  counted.
- **Days.** Each site's own day (``site_today``) where a list is per site; the user's
  day (``user_today``: their first site's) where the owning domain's page uses it.
- **Statements.** A constant number of SQL statements per dashboard, whatever the number
  of patients, sessions or referrals (the dosing review reads each of the user's sites
  once: constant for a user's sites; tests/test_dashboards.py counts them).
- **Privacy.** Nothing here selects note text; staff tiles carry no medication detail
  (patients' names and dates only); the items are the first ``SHOWN`` of each list.

Reads only: nothing here writes or records an audit event. The page records one ``view``
per patient it names (``shown_patients``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from clinic.accounts import services as account_services
from clinic.accounts.models import User
from clinic.aftercare import referrals
from clinic.aftercare.referral_models import ReferralStatus
from clinic.audit import review as audit_review
from clinic.audit.reading import AuditScope
from clinic.db import utcnow
from clinic.extensions import db
from clinic.medications import call_backs, drug_test_schedule, take_home_reading, worklists
from clinic.medications.drug_test_models import DrugTest, RandomTestDraw, RandomTestSelection
from clinic.patients import milestones
from clinic.patients.common import visible_site_ids
from clinic.patients.models import Enrollment, Patient, Program
from clinic.reports.census import in_treatment
from clinic.reports.sql import date_param
from clinic.security import Permission, Role
from clinic.sites.models import Site
from clinic.sites.time import site_today, user_today, user_zone
from clinic.therapy import reading as therapy_reading

SHOWN = 5  # items listed on a tile: the home page never renders a long list
# Lists read with a cap: a count at the cap shows as "N or more" (``Listed.capped``).
LIST_CAP = 100
CONSENT_EXPIRY_DAYS = 30


@dataclass(frozen=True)
class Listed:
    """A count and the first few of its items (at most ``SHOWN``). ``capped``: the list
    was read with a cap and reached it, so ``count`` is a lower bound."""

    count: int
    items: tuple = ()
    capped: bool = False


def _listed(rows: Sequence, *, cap: int | None = None) -> Listed:
    capped = cap is not None and len(rows) >= cap
    count = min(len(rows), cap) if cap is not None else len(rows)
    return Listed(count=count, items=tuple(rows[:SHOWN]), capped=capped)


# --- items (what a tile lists: ids, names, dates; never note text or dose details) -------------


@dataclass(frozen=True)
class SessionItem:
    session_id: int
    local_start: dt.datetime  # in the session's site's time zone
    kind: str
    group_name: str | None
    attendee_count: int
    status: str
    unrecorded: bool  # planned and already started


@dataclass(frozen=True)
class NoteItem:
    note_id: int
    session_id: int
    session_starts_at: dt.datetime
    group: bool
    late: bool


@dataclass(frozen=True)
class PatientItem:
    """A patient on a short list, with one short fact ("4 missed days", "due 3 Dec")."""

    patient: Patient
    fact: str


@dataclass(frozen=True)
class GrantItem:
    grant_id: int
    clinician_name: str
    site_code: str
    granted_at: dt.datetime


@dataclass(frozen=True)
class UserItem:
    user_id: int
    full_name: str
    username: str
    locked_until: dt.datetime


@dataclass(frozen=True)
class CensusRow:
    site_code: str
    program_id: int
    program_name: str
    patients: int


# --- tiles made of several counts ---------------------------------------------------------------


@dataclass(frozen=True)
class CaseloadAlerts:
    """The clinician's caseload (active enrollments whose primary counselor they are, at
    their sites) and what needs attention in it, as counts of patients (deadlines: of
    deadlines)."""

    patients: int
    missed_doses: int  # patients with 1 or more missed days up to yesterday
    tests_due: int  # maintenance patients behind on random tests (42 CFR 8.12(f)(6))
    deadlines_due: int  # deadlines due within a week or overdue (42 CFR 8.12(f))
    no_recent_session: int  # no attended session for 30 days (or never)

    @property
    def alerts(self) -> int:
        return self.missed_doses + self.tests_due + self.deadlines_due + self.no_recent_session


@dataclass(frozen=True)
class TakeHomeTile:
    reviews: Listed  # decisions due for review, or with a finding since the last one
    awaiting_approval: int | None  # None: the user may not approve (not a prescriber)


@dataclass(frozen=True)
class ReferralCounts:
    by_status: tuple[tuple[ReferralStatus, int], ...]

    @property
    def open(self) -> int:
        return sum(n for status, n in self.by_status if not status.final)

    @property
    def total(self) -> int:
        return sum(n for _, n in self.by_status)


@dataclass(frozen=True)
class Census:
    on: dt.date  # the user's day (each site counted on its own day)
    rows: tuple[CensusRow, ...]

    @property
    def total(self) -> int:
        return sum(r.patients for r in self.rows)


@dataclass(frozen=True)
class MonthFlow:
    month: dt.date  # the first day of the month (the user's)
    admissions: int
    discharges: int


# --- the dashboards -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClinicianDashboard:
    today: dt.date
    sessions: Listed | None = None
    unsigned_notes: Listed | None = None
    cosign_waiting: int | None = None
    dosing_review: Listed | None = None
    caseload: CaseloadAlerts | None = None
    take_homes: TakeHomeTile | None = None
    call_backs: Listed | None = None


@dataclass(frozen=True)
class StaffDashboard:
    today: dt.date
    referrals: ReferralCounts | None = None
    follow_ups: Listed | None = None
    consents_expiring: Listed | None = None
    tests_today: Listed | None = None
    call_backs: Listed | None = None


@dataclass(frozen=True)
class AdminDashboard:
    today: dt.date
    census: Census | None = None
    month: MonthFlow | None = None
    break_glass: Listed | None = None
    locked_users: Listed | None = None
    reports: bool = False


Dashboard = ClinicianDashboard | StaffDashboard | AdminDashboard


def dashboard_for(user: User, *, now: dt.datetime | None = None) -> Dashboard:
    """The dashboard of the user's role."""
    if user.role == Role.CLINICIAN:
        return clinician_dashboard(user, now=now)
    if user.role == Role.ADMIN:
        return admin_dashboard(user, now=now)
    return staff_dashboard(user, now=now)


def shown_patients(board: Dashboard) -> list[Patient]:
    """The patients a dashboard names (each once, in tile order): the page records one
    ``view`` audit event for each."""
    seen: dict[int, Patient] = {}
    for value in vars(board).values():
        listed = value.reviews if isinstance(value, TakeHomeTile) else value
        if isinstance(listed, Listed):
            for item in listed.items:
                if isinstance(item, PatientItem):
                    seen.setdefault(item.patient.id, item.patient)
    return list(seen.values())


def _sites(user: User) -> list[Site]:
    """The sites in the user's scope (every site for an organisation-wide administrator):
    one statement."""
    query = sa.select(Site).order_by(Site.code)
    ids = visible_site_ids(user)
    if ids is not None:
        query = query.where(Site.id.in_(ids or {-1}))
    return list(db.session.scalars(query))


def _short(day: dt.date) -> str:
    return f"{day.day} {day:%b %Y}"


# --- clinicians ---------------------------------------------------------------------------------


def clinician_dashboard(user: User, *, now: dt.datetime | None = None) -> ClinicianDashboard:
    """Today's sessions (the user's own, their site's day), their unsigned notes and the
    notes waiting for their co-signature, the dosing review list (3 or more missed days
    unreviewed, DOMAIN.md), caseload alerts, take-home reviews due and call-backs due.

    Statements: two for the sessions and notes, one more for co-signatures, the sites,
    eight per site for the dosing screen, three for the caseload, a constant few for its
    deadlines and one for its tests, four or so for the take-home reviews, one for the
    decisions awaiting approval and one for the call-backs."""
    now = now or utcnow()
    today = user_today(user, now)
    board: dict[str, Any] = {}
    if user.can(Permission.SESSIONS_RECORD):
        schedule = [
            e for e in therapy_reading.day_schedule(user, today, now=now) if not e.entered_in_error
        ]
        board["sessions"] = _listed(
            [
                SessionItem(
                    session_id=e.session_id,
                    local_start=e.local_start,
                    kind=e.kind,
                    group_name=e.group_name,
                    attendee_count=e.attendee_count,
                    status=e.status,
                    unrecorded=e.unrecorded,
                )
                for e in schedule
            ]
        )
        unsigned = therapy_reading.unsigned_notes(user)
        board["unsigned_notes"] = _listed(
            [
                NoteItem(n.note_id, n.session_id, n.session_starts_at, n.group, n.late)
                for n in unsigned
            ],
            cap=therapy_reading.QUEUE_LIMIT,
        )
        board["cosign_waiting"] = len(therapy_reading.cosign_queue(user))
    screen_rows: list[worklists.ScreenRow] = []
    if user.can(Permission.MEDICATION_READ):
        screen_rows = _dosing_screens(user, now)
        review = [r for r in screen_rows if r.missed.needs_review]
        # The dosing review list's order (clinic.medications.reviews.review_list).
        review.sort(key=lambda r: (-r.missed.count, r.patient.last_key, r.patient.id))
        board["dosing_review"] = _listed(
            [PatientItem(r.patient, _days(r.missed.unreviewed_count, "missed day")) for r in review]
        )
    if user.can(Permission.SESSIONS_RECORD):
        board["caseload"] = _caseload_alerts(user, today, now, screen_rows)
    if user.can(Permission.TAKE_HOMES_READ):
        statuses = take_home_reading.review_list(user, now)
        board["take_homes"] = TakeHomeTile(
            reviews=_listed([_take_home_item(s) for s in statuses]),
            awaiting_approval=(
                _awaiting_approval(user) if user.can(Permission.TAKE_HOMES_APPROVE) else None
            ),
        )
    if user.can(Permission.TESTS_DUE):
        board["call_backs"] = _call_backs(user, today)
    return ClinicianDashboard(today=today, **board)


def _days(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _dosing_screens(user: User, now: dt.datetime) -> list[worklists.ScreenRow]:
    """Every patient due a daily dose today at the user's sites (each site's own day),
    with their missed days: the dosing screen of each site (eight statements a site)."""
    rows: list[worklists.ScreenRow] = []
    for site in _sites(user):
        rows.extend(worklists.dosing_screen(site, site_today(site, now)))
    return rows


def _caseload_alerts(
    user: User, today: dt.date, now: dt.datetime, screen_rows: Iterable[worklists.ScreenRow]
) -> CaseloadAlerts:
    caseload = therapy_reading.caseload(user, today=today, timezone=user_zone(user).key, now=now)
    ids = {row.patient_id for row in caseload}
    deadlines = milestones.deadline_worklist(user, counselor_only=True)
    compliance = drug_test_schedule.compliance(sorted(ids), today) if ids else {}
    return CaseloadAlerts(
        patients=len(ids),
        missed_doses=len(
            {r.patient.id for r in screen_rows if r.patient.id in ids and r.missed.count}
        ),
        tests_due=sum(1 for c in compliance.values() if c.due),
        deadlines_due=len(deadlines),
        no_recent_session=sum(1 for row in caseload if row.flagged),
    )


def _take_home_item(status: take_home_reading.DecisionStatus) -> PatientItem:
    if status.review_due_on is not None:
        fact = f"review due {_short(status.review_due_on)}"
    else:
        fact = "review due"
    if status.reasons:
        fact = status.reasons[0]
    return PatientItem(status.decision.patient, fact)


def _awaiting_approval(user: User) -> int:
    """How many take-home decisions wait for a prescriber at the user's sites (the review
    list's worklist, ``take_home_reading.awaiting_approval``): one statement."""
    pending = take_home_reading.awaiting_approval(user).order_by(None).subquery()
    return db.session.scalar(sa.select(sa.func.count()).select_from(pending)) or 0


def _call_backs(user: User, today: dt.date) -> Listed:
    rows = call_backs.call_backs_due(visible_site_ids(user), today)
    return _listed(
        [
            PatientItem(
                r.patient,
                "call-back under way"
                if r.open_call_back_id
                else f"{r.done} of {r.required} call-backs done",
            )
            for r in rows
        ]
    )


# --- staff --------------------------------------------------------------------------------------


def staff_dashboard(user: User, *, now: dt.datetime | None = None) -> StaffDashboard:
    """Referrals by status, follow-ups due (today or past), consents expiring within 30
    days (a new consent is needed before the next disclosure, 42 CFR 2.31), today's
    random tests not yet collected, and call-backs due: a statement or two each."""
    now = now or utcnow()
    today = user_today(user, now)
    board: dict[str, Any] = {}
    if user.can(Permission.REFERRALS_MANAGE):
        counts = referrals.counts_by_status(user)
        board["referrals"] = ReferralCounts(tuple((s, counts.get(s, 0)) for s in ReferralStatus))
        due = referrals.follow_ups_due(user, today, limit=LIST_CAP)
        board["follow_ups"] = _listed(
            [PatientItem(r.patient, f"follow-up {_short(r.follow_up_on)}") for r in due],
            cap=LIST_CAP,
        )
        expiring = referrals.consents_expiring(
            user, today, days=CONSENT_EXPIRY_DAYS, limit=LIST_CAP
        )
        board["consents_expiring"] = _listed(
            [PatientItem(c.patient, f"expires {_short(c.expires_on)}") for c in expiring],
            cap=LIST_CAP,
        )
    if user.can(Permission.TESTS_DUE):
        board["tests_today"] = _tests_today(user, now)
        board["call_backs"] = _call_backs(user, today)
    return StaffDashboard(today=today, **board)


def _tests_today(user: User, now: dt.datetime) -> Listed:
    """Patients picked by today's random draw at the user's sites (each site's own day)
    whose test is not collected yet, by name. The drug-test pages read the draws site by
    site; this is one statement for every site, written here: the sites, then the
    selections."""
    sites = _sites(user)
    if not sites:
        return Listed(0)
    on_day = sa.or_(
        *(
            sa.and_(RandomTestDraw.site_id == s.id, RandomTestDraw.draw_on == site_today(s, now))
            for s in sites
        )
    )
    collected = sa.exists().where(
        DrugTest.selection_id == RandomTestSelection.id, DrugTest.entered_in_error_at.is_(None)
    )
    patients = list(
        db.session.scalars(
            sa.select(Patient)
            .join(RandomTestSelection, RandomTestSelection.patient_id == Patient.id)
            .join(RandomTestDraw, RandomTestDraw.id == RandomTestSelection.draw_id)
            .where(on_day, ~collected, Patient.entered_in_error_at.is_(None))
            .order_by(Patient.last_key, Patient.first_key, Patient.id)
        )
    )
    return _listed([PatientItem(p, "not collected yet") for p in patients])


# --- administrators -----------------------------------------------------------------------------


def admin_dashboard(user: User, *, now: dt.datetime | None = None) -> AdminDashboard:
    """Today's census (active enrollments by site and program), this month's admissions
    and discharges, emergency accesses to acknowledge, accounts locked out, and whether
    the reports are open to the user. Five statements at most."""
    now = now or utcnow()
    today = user_today(user, now)
    board: dict[str, Any] = {}
    if user.can(Permission.REPORTS_READ):  # the census and the month link to the reports
        sites = _sites(user)
        days = {s.id: site_today(s, now) for s in sites}
        if days and not user.sites:
            # No site of their own (their day is UTC's): the sites' earliest day, so an
            # evening in America is not already tomorrow's, or next month's.
            today = min(days.values())
        board["census"] = Census(on=today, rows=tuple(census(days)))
        admissions, discharges = month_flow(days)
        board["month"] = MonthFlow(today.replace(day=1), admissions, discharges)
    if user.can(Permission.AUDIT_READ):
        grants = audit_review.break_glass_grants(AuditScope.of(user), limit=LIST_CAP)
        board["break_glass"] = _listed(
            [
                GrantItem(g.grant.id, g.clinician.full_name, g.site.code, g.grant.granted_at)
                for g in grants
            ],
            cap=LIST_CAP,
        )
    if user.can(Permission.USERS_MANAGE):
        board["locked_users"] = _locked_users(user, now)
    board["reports"] = user.can(Permission.REPORTS_READ)
    return AdminDashboard(today=today, **board)


def _per_site(days: dict[int, dt.date], make) -> sa.ColumnElement[bool]:
    """``make(day)`` for each site's own day, ORed: (site = s AND condition on s's day)."""
    if not days:
        return sa.false()
    return sa.or_(*(sa.and_(Program.site_id == sid, make(day)) for sid, day in days.items()))


def census(days: dict[int, dt.date]) -> list[CensusRow]:
    """Patients in treatment on each site's day at these sites (site id -> its day), by
    site and program, largest first, by the census report's rule
    (``clinic.reports.census.in_treatment``: the discharge day counts, a transfer that day
    counts in the new program only); patients entered in error are not counted. One
    grouped statement."""
    rows = db.session.execute(
        sa.select(
            Site.code,
            Program.id,
            Program.name,
            sa.func.count(sa.distinct(Enrollment.patient_id)),
        )
        .select_from(Enrollment)
        .join(Program, Program.id == Enrollment.program_id)
        .join(Site, Site.id == Program.site_id)
        .join(Patient, Patient.id == Enrollment.patient_id)
        .where(
            Patient.entered_in_error_at.is_(None),
            _per_site(days, lambda day: in_treatment(date_param(day))),
        )
        .group_by(Site.code, Program.id, Program.name)
        .order_by(
            sa.func.count(sa.distinct(Enrollment.patient_id)).desc(),
            Site.code,
            Program.name,
            Program.id,
        )
    )
    return [CensusRow(code, pid, name, count) for code, pid, name, count in rows]


def _month(day: dt.date) -> tuple[dt.date, dt.date]:
    first = day.replace(day=1)
    return first, (first + dt.timedelta(days=32)).replace(day=1)


def month_flow(days: dict[int, dt.date]) -> tuple[int, int]:
    """(admissions, discharges) in the current month of each site's day (site id -> its
    day), at those sites, patients entered in error left out. One statement."""

    def within(column):
        return lambda day: sa.and_(column >= _month(day)[0], column < _month(day)[1])

    admitted = _per_site(days, within(Enrollment.admitted_on))
    discharged = _per_site(days, within(Enrollment.discharged_on))
    row = db.session.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(sa.case((admitted, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((discharged, 1), else_=0)), 0),
        )
        .select_from(Enrollment)
        .join(Program, Program.id == Enrollment.program_id)
        .join(Patient, Patient.id == Enrollment.patient_id)
        .where(Patient.entered_in_error_at.is_(None), sa.or_(admitted, discharged))
    ).one()
    return int(row[0]), int(row[1])


def _locked_users(user: User, now: dt.datetime) -> Listed:
    """Accounts the administrator may see that are locked out now (too many failed
    sign-ins), soonest unlock last: one statement. The accounts service lists users but
    has no lock filter, so the condition is added here."""
    locked = list(
        db.session.scalars(
            account_services.visible_users_query(user)
            .where(User.locked_until > now)
            .order_by(User.locked_until.desc(), User.id)
            .limit(LIST_CAP)
        )
    )
    return _listed(
        [UserItem(u.id, u.full_name, u.username, u.locked_until) for u in locked], cap=LIST_CAP
    )
