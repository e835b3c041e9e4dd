"""The 8-random-tests-a-year rule (42 CFR 8.12(f)(6): "at least eight random drug abuse
tests per year, per patient in maintenance treatment"; issue 13, "Drug tests").

Who the rule covers (``MAINTENANCE_KINDS``): patients not entered in error with an active
enrollment (not discharged, admitted on or before the day) in a **methadone OTP** or an
**office-based buprenorphine** program. 8.12(f)(6) is written for OTP maintenance; we apply
it to office-based buprenorphine as well, because it is opioid-agonist maintenance too and
testing a patient more than required is the safe error (testing fewer is a finding).
Extended-release naltrexone (an antagonist: not opioid maintenance treatment) and
outpatient / intensive outpatient programs (no medication) are excluded.

Counting (``compliance``):

- **Done**: the patient's tests with ``reason == 'random'``, not entered in error, collected
  in the **last 12 months** — the 365 site-local days ending today (``today - 364`` to
  ``today``) — and on or after the start of the **current admission**: a readmitted
  patient starts again from the readmission (tests of an earlier episode do not count,
  and the requirement is pro-rated from the new admission). With two active maintenance
  enrollments at once, the earlier admission counts (the longer time in treatment).
- **Required so far**: ``floor(8 * min(days, 365) / 365)`` where ``days = today -
  admitted_on``. A test falls due each eighth of a year (45.625 days): a patient admitted
  today or 45 days ago needs none yet, one admitted 46 days ago needs 1, 364 days ago 7,
  365 days ago or more 8. (A ceiling would put every patient behind on their second day.)
- **Behind**: required so far > done. The worklist lists them.

The day's random draw and its selection probability: ``clinic.medications.drug_test_draw``
(``draw_for_today``, also reachable from here).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from clinic.extensions import db
from clinic.medications.drug_test_models import DrugTest, TestReason
from clinic.pagination import Cursor, KeysetPage, OrderKey, keyset_page
from clinic.patients.models import Enrollment, Patient, Program, ProgramKind
from clinic.sites.models import Site

TESTS_PER_YEAR = 8
YEAR_DAYS = 365
MAINTENANCE_KINDS = (ProgramKind.METHADONE_OTP, ProgramKind.OFFICE_BUPRENORPHINE)
WORKLIST_PER_PAGE = 50
# ?sort= keys of the worklist -> what they sort by (see ``worklist``).
WORKLIST_SORTS = ("behind", "name", "last", "admitted")


def days_for(count: int) -> int:
    """The days in treatment after which ``count`` random tests are required (the smallest
    ``d`` with ``floor(8 d / 365) >= count``): 0, 46, 92, 137, 183, 229, 274, 320, 365."""
    return -(-YEAR_DAYS * count // TESTS_PER_YEAR)


def required_on(admitted_on: dt.date, day: dt.date) -> int:
    """Random tests required by ``day`` (site-local) for a patient admitted on
    ``admitted_on``: ``floor(8 * min(days, 365) / 365)``, 0 before the admission."""
    days = min(max((day - admitted_on).days, 0), YEAR_DAYS)
    return TESTS_PER_YEAR * days // YEAR_DAYS


def window_start(today: dt.date) -> dt.date:
    """The first day of the 12 months ending ``today`` (365 days, today included)."""
    return today - dt.timedelta(days=YEAR_DAYS - 1)


@dataclass(frozen=True)
class Compliance:
    """One maintenance patient's random tests: ``done`` in the last 12 months of the
    current admission (from ``admitted_on``), ``required`` so far, ``last_on`` the latest
    of them (site-local date, None without any)."""

    patient_id: int
    admitted_on: dt.date
    done: int
    required: int
    last_on: dt.date | None

    @property
    def behind(self) -> int:
        """Tests missing to be compliant today (0 when compliant)."""
        return max(self.required - self.done, 0)

    @property
    def due(self) -> bool:
        return self.behind > 0


# A site-local day: one for every site, or each site's own (site id -> day; sites on
# either side of the date line, e.g. Pacific/Honolulu and Pacific/Kiritimati, are always
# a day apart). A site missing from the mapping has no day: its patients are left out.
Days = dt.date | Mapping[int, dt.date]


def _on_day(days: Days, site: sa.ColumnElement, make: Callable[[dt.date], Any]) -> Any:
    """``make(day)`` for each site's day: a condition, or a CASE over the sites for a
    value (``make`` returns a non-boolean). A handful of distinct days at most."""
    if isinstance(days, dt.date):
        return make(days)
    groups: dict[dt.date, list[int]] = {}
    for site_id, day in days.items():
        groups.setdefault(day, []).append(site_id)
    return [(site.in_(ids), make(day)) for day, ids in sorted(groups.items())]


def _where_on_day(days: Days, site: sa.ColumnElement, make) -> sa.ColumnElement:
    made = _on_day(days, site, make)
    if not isinstance(made, list):
        return made
    return sa.or_(*(sa.and_(cond, value) for cond, value in made)) if made else sa.false()


def maintenance_starts(
    today: Days, *, site_ids: Collection[int] | None = None, patient_ids=None
) -> sa.Subquery:
    """A subquery (``patient_id``, ``site_id``, ``admitted_on``): each patient in
    maintenance treatment on ``today`` (see the module docstring; ``Days``: one day, or
    each site's) and the start of their current admission. ``site_ids``: the patients'
    sites (None: every site); ``patient_ids``: ids or a SELECT of ids narrowing them."""
    query = (
        sa.select(
            Enrollment.patient_id.label("patient_id"),
            Patient.site_id.label("site_id"),
            sa.func.min(Enrollment.admitted_on).label("admitted_on"),
        )
        .join(Program, Program.id == Enrollment.program_id)
        .join(Patient, Patient.id == Enrollment.patient_id)
        .where(
            Program.kind.in_([k.value for k in MAINTENANCE_KINDS]),
            Enrollment.discharged_on.is_(None),
            _where_on_day(today, Patient.site_id, lambda day: Enrollment.admitted_on <= day),
            Patient.entered_in_error_at.is_(None),
        )
        .group_by(Enrollment.patient_id, Patient.site_id)
    )
    if site_ids is not None:
        query = query.where(Patient.site_id.in_(list(site_ids) or [-1]))
    if patient_ids is not None:
        query = query.where(Enrollment.patient_id.in_(patient_ids))
    return query.subquery("maintenance")


def _random_tests(starts: sa.Subquery, today: Days) -> sa.Subquery:
    """Per patient of ``starts``: the random tests counted today (``done``) and the latest
    (``last_on``)."""
    return (
        sa.select(
            DrugTest.patient_id.label("patient_id"),
            sa.func.count(DrugTest.id).label("done"),
            sa.func.max(DrugTest.collected_on).label("last_on"),
        )
        .join(starts, starts.c.patient_id == DrugTest.patient_id)
        .where(
            DrugTest.reason == TestReason.RANDOM,
            DrugTest.entered_in_error_at.is_(None),
            _where_on_day(
                today,
                starts.c.site_id,
                lambda day: DrugTest.collected_on.between(window_start(day), day),
            ),
            DrugTest.collected_on >= starts.c.admitted_on,
        )
        .group_by(DrugTest.patient_id)
        .subquery("random_tests")
    )


def _required_column(admitted_on: sa.ColumnElement, today: dt.date) -> sa.ColumnElement:
    """``required_on`` in SQL, without date arithmetic (which differs between engines):
    the admission compared with the day each further test falls due."""
    whens = [
        (admitted_on <= today - dt.timedelta(days=days_for(count)), count)
        for count in range(TESTS_PER_YEAR, 0, -1)
    ]
    return sa.case(*whens, else_=0)


def _compliance_select(starts: sa.Subquery, today: Days) -> sa.Select:
    tests = _random_tests(starts, today)
    done = sa.func.coalesce(tests.c.done, 0)
    required = _on_day(
        today, starts.c.site_id, lambda day: _required_column(starts.c.admitted_on, day)
    )
    if isinstance(required, list):
        required = sa.case(*required, else_=0) if required else sa.literal(0)
    return (
        sa.select(
            Patient,
            starts.c.admitted_on,
            done.label("done"),
            required.label("required"),
            tests.c.last_on,
        )
        .join(starts, starts.c.patient_id == Patient.id)
        .outerjoin(tests, tests.c.patient_id == Patient.id)
    )


def _row(row: Any) -> Compliance:
    return Compliance(
        patient_id=row[0].id,
        admitted_on=row.admitted_on,
        done=row.done,
        required=row.required,
        last_on=row.last_on,
    )


def compliance(patients: Site | Iterable[Patient | int], today: dt.date) -> dict[int, Compliance]:
    """The random-test compliance on ``today`` (site-local) of the maintenance patients of
    a site, or of the given patients (objects or ids): patient id -> ``Compliance``.
    Patients not in maintenance treatment that day are absent. One SQL statement."""
    if isinstance(patients, Site):
        starts = maintenance_starts(today, site_ids=[patients.id])
    else:
        ids = [p if isinstance(p, int) else p.id for p in patients]
        starts = maintenance_starts(today, patient_ids=ids or [-1])
    rows = db.session.execute(_compliance_select(starts, today))
    return {c.patient_id: c for c in map(_row, rows)}


@dataclass(frozen=True)
class WorklistRow:
    patient: Patient
    compliance: Compliance


@dataclass
class WorklistPage:
    """One page of the worklist: ``items`` (``WorklistRow``s, in order), whether pages come
    before and after it (``keyset``: its cursors), and the sort it was made with."""

    items: list[WorklistRow]
    keyset: KeysetPage
    sort_key: str
    sort_desc: bool


def worklist(
    site_ids: Collection[int] | None,
    today: Days,
    *,
    sort: str = "behind",
    descending: bool = True,
    cursor: Cursor | None = None,
    per_page: int | None = None,
) -> WorklistPage:
    """The maintenance patients of ``site_ids`` (None: every site) falling behind on
    ``today`` (one day, or each site's own: ``Days``; required so far > done; 42 CFR
    8.12(f)(6)), one page of them, each with
    done / required and the last random test. ``sort``: ``behind`` (tests missing),
    ``name``, ``last`` (last random test, none last), ``admitted`` (an unknown key is
    ``behind``); ties by name then id, so pages never overlap. ``cursor``: the page after
    or before a patient of the list (keyset, ``clinic.pagination.keyset_page``: no OFFSET,
    no count; a patient not on the list is the first page). One SQL statement whatever
    the number of patients."""
    if sort not in WORKLIST_SORTS:
        sort = "behind"
    base = _compliance_select(maintenance_starts(today, site_ids=site_ids), today)
    columns = {c.name: c for c in base.selected_columns if c.name}
    behind = columns["required"] - columns["done"]
    key = {
        "behind": behind,
        "name": Patient.last_key,
        "last": columns["last_on"],
        "admitted": columns["admitted_on"],
    }[sort]
    order = [
        OrderKey(key, descending),
        OrderKey(Patient.last_key),
        OrderKey(Patient.first_key),
        OrderKey(Patient.id),
    ]
    size = per_page or WORKLIST_PER_PAGE
    page = keyset_page(base.where(behind > 0), order, cursor=cursor, per_page=size)
    return WorklistPage(
        items=[WorklistRow(row[0], _row(row)) for row in page.rows],
        keyset=page,
        sort_key=sort,
        sort_desc=descending,
    )


def draw_for_today(site: Site, *, actor=None, now: dt.datetime | None = None):
    """The site's random draw for today: ``clinic.medications.drug_test_draw.draw_for_today``."""
    from clinic.medications import drug_test_draw

    return drug_test_draw.draw_for_today(site, actor=actor, now=now)
