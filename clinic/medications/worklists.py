"""The dosing window's lists: the dosing screen (the patients due today at a site, each
with the day's dose, hold, flags and missed days) and the injections overdue or due soon —
each in a constant number of statements, whatever the number of patients.

Rules (DOMAIN.md, "Medication for opioid use disorder"; issue 10): who is due follows the
orders in force (``dose_day.orders_in_force``); who may be dosed follows the ledger's
refusals (21 CFR 1304.24 records; 42 CFR 8.12 clinical review after missed days).

Reads only: nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import aliased, contains_eager

from clinic.db import utcnow
from clinic.extensions import db
from clinic.medications.dose_day import (
    DAILY_SCHEDULES,
    GIVEN_KINDS,
    DoseDue,
    last_injections,
    next_injection_due,
    orders_in_force,
)
from clinic.medications.missed import DayFacts, MissedDays, day_facts
from clinic.medications.models import (
    MG_QUANTUM,
    DoseEntry,
    FlagCategory,
    MedicationHold,
    MedicationOrder,
    PatientFlag,
    Schedule,
)
from clinic.pagination import Cursor, KeysetPage, OrderKey, list_page
from clinic.patients.models import Enrollment, Patient, Program
from clinic.sites.models import Site
from clinic.sites.time import site_today


@dataclass
class ScreenRow:
    """One patient due on the dosing screen."""

    patient: Patient
    due: DoseDue
    last_given: dt.date | None
    hold: MedicationHold | None
    flags: list[PatientFlag]
    unacknowledged: list[PatientFlag]
    missed: MissedDays
    today: dt.date

    @property
    def initials(self) -> str:
        return (self.patient.first_name[:1] + self.patient.last_name[:1]).upper()

    @property
    def days_since(self) -> int | None:
        return (self.today - self.last_given).days if self.last_given else None

    @property
    def review_needed(self) -> bool:
        """Missed days await a clinician's review: no dose until then (a split's second
        portion, after a first given today, is not held back)."""
        return self.missed.needs_review and not self.due.given

    @property
    def can_dose(self) -> bool:
        return (
            not self.due.done
            and self.hold is None
            and not self.unacknowledged
            and not self.review_needed
        )


def _due_orders(site: Site, day: dt.date) -> sa.Select:
    """The daily and split orders in force on ``day`` of the site's patients in an active
    enrollment. The enrollment's program is at the site too (admission requires it): that
    condition lets the database start from the site's active enrollments (the index on
    (program_id, discharged_on)) rather than read every order of the network."""
    site_programs = sa.select(Program.id).where(Program.site_id == site.id)
    return (
        orders_in_force(day, daily=True)
        .join(MedicationOrder.patient)
        .join(MedicationOrder.enrollment)
        .where(
            Patient.site_id == site.id,
            Patient.entered_in_error_at.is_(None),
            Enrollment.program_id.in_(site_programs),
            Enrollment.discharged_on.is_(None),
        )
    )


def _matching(query: sa.Select, matching: sa.Select | None) -> sa.Select:
    if matching is None:
        return query
    ids = matching.with_only_columns(Patient.id).order_by(None)
    return query.where(MedicationOrder.patient_id.in_(ids))


def _screen_rows(orders: list[MedicationOrder], facts: DayFacts, day: dt.date) -> list[ScreenRow]:
    rows = []
    for order in orders:
        pid = order.patient_id
        flags = facts.flags.get(pid, [])
        hold = next((h for h in facts.holds.get(pid, []) if h.in_force_on(day)), None)
        rows.append(
            ScreenRow(
                patient=order.patient,
                due=DoseDue(order, facts.given_today.get(pid, [])),
                last_given=facts.last_given.get(pid),
                hold=hold,
                flags=flags,
                unacknowledged=[
                    f
                    for f in flags
                    if f.category == FlagCategory.WARNING and f.id not in facts.acknowledged
                ],
                missed=facts.missed(order, day),
                today=day,
            )
        )
    return rows


def dosing_screen(
    site: Site, day: dt.date, *, matching: sa.Select | None = None
) -> list[ScreenRow]:
    """Every patient due at ``site`` on ``day`` (active daily and split orders), each with
    today's dose and what is left of it, the last dose, hold, flags and missed days: eight
    statements whatever the number of patients, but rows read in proportion to them — the
    dosing screen itself shows a page at a time (``dosing_screen_page``); this whole list
    serves the review list and the dashboards. ``matching``: a patient search (a SELECT of
    patients, ``clinic.patients.search.search_patients``) narrowing the list.

    Sorted: patients still to dose first, those dosed fully today at the bottom, by name
    within each group (SCENARIOS.md asks for arrival order: that needs a check-in, which the
    clinic does not record yet)."""
    orders_query = _matching(_due_orders(site, day), matching)
    orders = list(
        db.session.scalars(
            orders_query.options(contains_eager(MedicationOrder.patient))
            .order_by(None)
            .order_by(
                Patient.last_key,
                Patient.first_key,
                Patient.id,
                MedicationOrder.start_on.desc(),
                MedicationOrder.id.desc(),
            )
        ).unique()
    )
    seen: set[int] = set()
    unique_orders = []
    for order in orders:  # one row per patient: its newest order in force
        if order.patient_id not in seen:
            seen.add(order.patient_id)
            unique_orders.append(order)
    if not unique_orders:
        return []
    ids_query = orders_query.with_only_columns(MedicationOrder.patient_id).order_by(None)
    facts = day_facts(ids_query, day, ZoneInfo(site.timezone))
    rows = _screen_rows(unique_orders, facts, day)
    rows.sort(key=lambda r: r.due.done)  # stable: by name within each group
    return rows


# --- the dosing screen, a page at a time -----------------------------------------------

# The most patients one page of the dosing screen shows.
SCREEN_PAGE_SIZE = 50
# Half the ledger's quantum (0.01 mg): a split's portions reach its dose when their sum
# is within it — exact on PostgreSQL (NUMERIC), safe on SQLite (which sums REALs).
_HALF_QUANTUM = sa.literal(MG_QUANTUM / 2, sa.Numeric(8, 3))


def _newest_order_in_force(day: dt.date) -> sa.ColumnElement[bool]:
    """The order of the row is the patient's newest daily or split order in force on
    ``day`` (start, then id: as ``orders_in_force`` sorts them) — no newer one exists.
    One row per patient, on both engines (no DISTINCT ON)."""
    newer = aliased(MedicationOrder)
    successor = aliased(MedicationOrder)
    return ~sa.exists().where(
        newer.patient_id == MedicationOrder.patient_id,
        newer.schedule.in_(DAILY_SCHEDULES),
        newer.start_on <= day,
        sa.or_(newer.end_on.is_(None), newer.end_on >= day),
        ~sa.exists().where(successor.replaces_id == newer.id, successor.start_on <= day),
        sa.or_(
            newer.start_on > MedicationOrder.start_on,
            sa.and_(newer.start_on == MedicationOrder.start_on, newer.id > MedicationOrder.id),
        ),
    )


def done_today(day: dt.date) -> sa.ScalarSelect:
    """1 when the patient of the row's order (``MedicationOrder``) is fully dosed on
    ``day``, else 0 — ``DoseDue.done`` in SQL: a daily order, any dose given
    (``GIVEN_KINDS``) and not reversed; a split order, two portions given or the
    order's dose reached. One correlated subquery (the ledger's unique
    (patient_id, dispensed_on, slot) index finds the day's rows).

    "Not reversed" is a count of the row's reversals (one probe of the reversal index a
    row), not NOT EXISTS: PostgreSQL planned NOT EXISTS as a merge anti join that read the
    network's whole reversal index for every patient already dosed today (0.22 ms each:
    180 ms for the dosing screen of a site with 744 patients due, late in the day; 14 ms
    with the count, bench/README.md)."""
    given = aliased(DoseEntry)
    reversal = aliased(DoseEntry)
    portions = sa.func.count(given.id)
    given_mg = sa.func.coalesce(sa.func.sum(given.amount_mg), 0)
    split = MedicationOrder.schedule == Schedule.SPLIT
    done = sa.case(
        (
            sa.and_(
                split, sa.or_(portions >= 2, given_mg > MedicationOrder.dose_mg - _HALF_QUANTUM)
            ),
            1,
        ),
        (sa.and_(sa.not_(split), portions >= 1), 1),
        else_=0,
    )
    return (
        sa.select(done)
        .where(
            given.patient_id == MedicationOrder.patient_id,
            given.dispensed_on == day,
            given.kind.in_(GIVEN_KINDS),
            sa.select(sa.func.count()).where(reversal.reverses_id == given.id).scalar_subquery()
            == 0,
        )
        .correlate(MedicationOrder)
        .scalar_subquery()
    )


@dataclass
class ScreenPage:
    """One page of the dosing screen: its ``rows`` (at most ``SCREEN_PAGE_SIZE``), the
    keyset page they came from (``has_prev``, ``has_next``, the boundary patient ids)
    and the counts of the whole list (the filter applied): still to dose, dosed."""

    rows: list[ScreenRow]
    keyset: KeysetPage
    to_dose: int
    dosed: int

    @property
    def total(self) -> int:
        return self.to_dose + self.dosed


def screen_order(done: sa.ColumnElement) -> list[OrderKey]:
    """The screen's order: still to dose first (``done``: ``done_today``'s column of the
    statement), then by last name, first name, patient id (the unique tiebreak)."""
    return [
        OrderKey(done),
        OrderKey(Patient.last_key),
        OrderKey(Patient.first_key),
        OrderKey(Patient.id),
    ]


def dosing_screen_page(
    site: Site,
    day: dt.date,
    *,
    matching: sa.Select | None = None,
    cursor: Cursor | None = None,
    per_page: int = SCREEN_PAGE_SIZE,
) -> ScreenPage:
    """The page of the dosing screen after or before ``cursor`` (a patient id of the
    list; None, or an id not in it: the first page) — the rows of ``dosing_screen``, in
    its order, ``per_page`` at a time: (done today, last name key, first name key,
    patient id), one row per patient (its newest order in force) chosen in SQL.
    ``matching``: a patient search narrowing the list.

    Nine statements whatever the number of patients due and the depth of the page (one
    when nobody is due): the list's keys, the page's orders and patients, the seven of
    ``missed.day_facts`` for the page's patients only. The keys are three integers a
    patient due at the site today (the order's id, the patient's, done or not), sorted
    by the database and paged here (``list_page``): "done today" is a subquery for
    every patient due, which the order needs anyway, so one pass gives the page and the
    counts (a keyset page in SQL and a separate count computed it twice: 2 x 14 ms for
    744 patients due at one site of the benchmark's network)."""
    query = _matching(_due_orders(site, day), matching).order_by(None)
    query = query.where(_newest_order_in_force(day))
    done = done_today(day).label("done")  # computed once, sorted on by its name
    keys = db.session.execute(
        query.with_only_columns(MedicationOrder.id, Patient.id, done).order_by(
            *(key.forward().order_by() for key in screen_order(done))
        )
    ).all()
    keyset = list_page(keys, lambda key: key[1], cursor=cursor, per_page=per_page)
    dosed = sum(1 for key in keys if key[2])
    orders: list[MedicationOrder] = []
    rows: list[ScreenRow] = []
    if keyset.rows:
        by_id = {
            o.id: o
            for o in db.session.scalars(
                sa.select(MedicationOrder)
                .join(MedicationOrder.patient)
                .options(contains_eager(MedicationOrder.patient))
                .where(MedicationOrder.id.in_([key[0] for key in keyset.rows]))
            )
        }
        orders = [by_id[key[0]] for key in keyset.rows]
        facts = day_facts([o.patient_id for o in orders], day, ZoneInfo(site.timezone))
        rows = _screen_rows(orders, facts, day)
    keyset = replace(keyset, rows=orders)
    return ScreenPage(rows=rows, keyset=keyset, to_dose=len(keys) - dosed, dosed=dosed)


@dataclass
class InjectionRow:
    patient: Patient
    order: MedicationOrder
    last: dt.date | None
    due_on: dt.date
    today: dt.date

    @property
    def overdue(self) -> bool:
        return self.due_on < self.today

    @property
    def days_overdue(self) -> int:
        return max((self.today - self.due_on).days, 0)


def _visible(query: sa.Select, site_ids: set[int] | None) -> sa.Select:
    if site_ids is not None:
        query = query.where(Patient.site_id.in_(site_ids or {-1}))
    return query


def injections_due(
    site_ids: set[int] | None, *, now: dt.datetime | None = None, within_days: int = 7
) -> list[InjectionRow]:
    """Active injection orders at the sites (None: all) whose next injection is overdue or
    due within ``within_days`` days (site-local), soonest first: three statements."""
    # Orders in force today or later: the sites' days differ by a day at most around
    # the UTC date, so the query keeps what may be in force and each row is checked with
    # its site's own day below.
    earliest = (now or utcnow()).date() - dt.timedelta(days=1)
    successor = aliased(MedicationOrder)
    query = _visible(
        sa.select(MedicationOrder)
        .join(MedicationOrder.patient)
        .where(
            sa.or_(MedicationOrder.end_on.is_(None), MedicationOrder.end_on >= earliest),
            MedicationOrder.schedule.not_in(DAILY_SCHEDULES),
            Patient.entered_in_error_at.is_(None),
            ~sa.exists().where(
                successor.replaces_id == MedicationOrder.id,
                successor.start_on <= MedicationOrder.end_on,
            ),
        ),
        site_ids,
    )
    orders = list(
        db.session.scalars(
            query.options(contains_eager(MedicationOrder.patient).selectinload(Patient.site))
        ).unique()
    )
    if not orders:
        return []
    last = last_injections(query.with_only_columns(MedicationOrder.patient_id))
    rows = []
    for order in orders:
        today = site_today(order.patient.site, now)
        if order.start_on > today + dt.timedelta(days=within_days):
            continue
        if order.end_on is not None and order.end_on < today:
            continue
        due_on = next_injection_due(order, last.get(order.patient_id))
        if due_on <= today + dt.timedelta(days=within_days):
            rows.append(
                InjectionRow(order.patient, order, last.get(order.patient_id), due_on, today)
            )
    rows.sort(key=lambda r: (r.due_on, r.patient.last_key, r.patient.id))
    return rows
