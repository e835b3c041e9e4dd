"""Drug tests read back (issue 13; DOMAIN.md "Medication for opioid use disorder", the drug
test rule): the results that count (a definitive result supersedes the presumptive one),
the missing-own-medication finding (possible diversion), the positives other than the
patient's own medication (for the take-home review list), a patient's test history.

Reads only: nothing here writes. ``clinic.medications.drug_tests`` re-exports these names.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.medications.drug_test_models import (
    Analyte,
    DrugTest,
    DrugTestResult,
    ResultMethod,
    ResultValue,
)
from clinic.medications.models import Medication, MedicationOrder
from clinic.patients import common
from clinic.patients.models import Patient

HISTORY_PAGE_SIZE = 25
CHART_TESTS = 5
# The listed analytes in the order a panel shows them (``other`` last, by name).
PANEL = tuple(a for a in Analyte if a is not Analyte.OTHER)
_PANEL_ORDER = {analyte.value: index for index, analyte in enumerate(Analyte)}
OWN_ANALYTE = {
    Medication.METHADONE: Analyte.METHADONE,
    Medication.BUPRENORPHINE: Analyte.BUPRENORPHINE,
    Medication.BUPRENORPHINE_NALOXONE: Analyte.BUPRENORPHINE,
    Medication.XR_BUPRENORPHINE: Analyte.BUPRENORPHINE,
}


@dataclass(frozen=True)
class Effective:
    """An analyte's result that counts: the definitive one if any, else the presumptive.
    ``presumptive``: the presumptive result a definitive one superseded (None when there
    was none, or when this IS the presumptive result)."""

    analyte: str
    other_name: str
    result: str
    method: str
    presumptive: str | None = None

    @property
    def label(self) -> str:
        return self.other_name if self.analyte == Analyte.OTHER else Analyte(self.analyte).label

    @property
    def overturned(self) -> bool:
        return self.presumptive is not None and self.presumptive != self.result


@dataclass(frozen=True)
class Finding:
    """A negative effective result for the patient's own medication: possible diversion."""

    test_id: int
    analyte: str

    @property
    def message(self) -> str:
        return (
            f"{Analyte(self.analyte).label} negative: the patient's own medication "
            "(possible diversion)."
        )


@dataclass(frozen=True)
class Positive:
    """A positive effective result for anything but the patient's own medication."""

    patient_id: int
    test_id: int
    collected_at: dt.datetime
    collected_on: dt.date
    analyte: str
    other_name: str
    method: str

    @property
    def label(self) -> str:
        return self.other_name if self.analyte == Analyte.OTHER else Analyte(self.analyte).label


def test_for(user: User, test_id: int) -> DrugTest | None:
    """A test by id, only if its patient is within the user's reach (their sites, or a
    live break-glass grant; ``patients.common.patient_for``)."""
    test = db.session.get(DrugTest, test_id)
    if test is None or common.patient_for(user, test.patient_id) is None:
        return None
    return test


test_for.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def effective_results(tests: Iterable[DrugTest]) -> dict[int, list[Effective]]:
    """Per test id, per analyte, the result that counts: the definitive one if any, else
    the presumptive one — in panel order (others last, by name). No query when the
    tests' results are loaded (``selectinload``)."""
    return {test.id: _effective(test.results) for test in tests}


def _effective(results: Iterable) -> list[Effective]:
    by_analyte: dict[tuple[str, str], dict[str, str]] = {}
    names: dict[tuple[str, str], str] = {}  # an "other" name's first spelling
    for r in results:
        key = (str(r.analyte), r.other_name.casefold())
        names.setdefault(key, r.other_name)
        by_analyte.setdefault(key, {})[str(r.method)] = str(r.result)
    shown = []
    for key, methods in by_analyte.items():
        analyte, other_name = key[0], names[key]
        if ResultMethod.DEFINITIVE.value in methods:
            shown.append(
                Effective(
                    analyte,
                    other_name,
                    methods[ResultMethod.DEFINITIVE.value],
                    ResultMethod.DEFINITIVE.value,
                    methods.get(ResultMethod.PRESUMPTIVE.value),
                )
            )
        else:
            shown.append(
                Effective(
                    analyte,
                    other_name,
                    methods[ResultMethod.PRESUMPTIVE.value],
                    ResultMethod.PRESUMPTIVE.value,
                )
            )
    return sorted(shown, key=lambda e: (_PANEL_ORDER.get(e.analyte, 99), e.other_name.casefold()))


class _OrderRow(NamedTuple):
    id: int
    patient_id: int
    medication: str
    start_on: dt.date
    end_on: dt.date | None
    replaces_id: int | None


def _orders_of(patient_ids: Iterable[int], until: dt.date) -> dict[int, list[_OrderRow]]:
    """The orders of these patients started on or before ``until`` (one statement);
    an order ended before it started (cancelled) is left out."""
    ids = sorted(set(patient_ids))
    if not ids:
        return {}
    rows = db.session.execute(
        sa.select(
            MedicationOrder.id,
            MedicationOrder.patient_id,
            MedicationOrder.medication,
            MedicationOrder.start_on,
            MedicationOrder.end_on,
            MedicationOrder.replaces_id,
        ).where(
            MedicationOrder.patient_id.in_(ids),
            MedicationOrder.start_on <= until,
            sa.or_(
                MedicationOrder.end_on.is_(None), MedicationOrder.end_on >= MedicationOrder.start_on
            ),
        )
    ).all()
    by_patient: dict[int, list[_OrderRow]] = {}
    for row in rows:
        by_patient.setdefault(row.patient_id, []).append(_OrderRow(*row))
    return by_patient


def own_analytes(orders: Sequence[_OrderRow], day: dt.date) -> set[str]:
    """The analytes of the patient's own MOUD medication on ``day``: the orders in force
    that day (not replaced by a change started on or before it — the dosing screen's rule,
    ``dose_day.orders_in_force``), else the order that ended most recently. An order counts
    from the day after its start: a test on the first day is collected before the first
    dose (an induction's intake test is negative for it). Naltrexone has none (it is not
    an opioid)."""
    started = [o for o in orders if o.start_on < day]
    replaced = {o.replaces_id for o in started if o.replaces_id is not None}
    in_force = [
        o for o in started if (o.end_on is None or o.end_on >= day) and o.id not in replaced
    ]
    if not in_force and started:
        in_force = [max(started, key=lambda o: (o.end_on or o.start_on, o.start_on, o.id))]
    own = set()
    for order in in_force:
        analyte = OWN_ANALYTE.get(Medication(order.medication))
        if analyte is not None:
            own.add(analyte.value)
    return own


def findings(tests: Sequence[DrugTest]) -> dict[int, list[Finding]]:
    """Per test id, its findings: a NEGATIVE effective result for the patient's own
    medication (DOMAIN.md: "a finding (possible diversion)"). Tests entered in error have
    none. One statement (the patients' orders), with the tests' results loaded."""
    live = [t for t in tests if t.entered_in_error_at is None]
    if not live:
        return {}
    orders = _orders_of((t.patient_id for t in live), max(t.collected_on for t in live))
    found: dict[int, list[Finding]] = {}
    for test in live:
        own = own_analytes(orders.get(test.patient_id, []), test.collected_on)
        for effective in _effective(test.results):
            if effective.analyte in own and effective.result == ResultValue.NEGATIVE.value:
                found.setdefault(test.id, []).append(Finding(test.id, effective.analyte))
    return found


def _utc(instant: dt.datetime) -> dt.datetime:
    return instant.astimezone(dt.UTC) if instant.tzinfo else instant.replace(tzinfo=dt.UTC)


def unexpected_positives(
    patient_ids: Iterable[int],
    since: Mapping[int, dt.date | dt.datetime] | dt.date | dt.datetime,
) -> dict[int, list[Positive]]:
    """Per patient id, the positive effective results for anything other than the
    patient's own medication (``own_analytes`` on the collection day), in tests collected
    since ``since`` — one bound for all, or one per patient (a patient missing from the
    mapping is skipped): a date compares with the site-local ``collected_on`` (that day
    included), a datetime with the UTC ``collected_at`` (strictly after it). Tests entered
    in error are left out. Newest first. Two statements whatever the number of patients
    (the results with their tests, the orders; the second only when a result below was
    read). For the take-home review list ("a positive test after the decision", issue
    13) and the decision page.

    Read in SQL: each patient's tests from the Monday of the week of its bound on (the
    patients grouped by that week: one index range per patient on
    ``ix_drug_test_patient_collected``, whatever the spread of the bounds) and, of their
    results, only those that can decide a positive — the positives, the definitive
    results (one supersedes a positive presumptive result) and the ``other`` analytes
    (all of them, so that an other analyte keeps its first spelling); an analyte with
    only a negative presumptive result is not positive, read or not. The exact bound,
    the effective results (``_effective``) and the own medication are applied in Python
    to those rows. (A table of one bound per patient — ``VALUES`` — takes longer to
    compile than to run.)"""
    wanted = set(patient_ids)
    if isinstance(since, Mapping):
        bounds = {pid: bound for pid, bound in since.items() if pid in wanted}
    else:
        bounds = dict.fromkeys(wanted, since)
    if not bounds:
        return {}
    weeks: dict[tuple[bool, dt.date], list[int]] = {}
    for pid, bound in sorted(bounds.items()):
        day = _utc(bound).date() if isinstance(bound, dt.datetime) else bound
        monday = day - dt.timedelta(days=day.weekday())
        weeks.setdefault((isinstance(bound, dt.datetime), monday), []).append(pid)
    ranges = [
        sa.and_(
            DrugTest.patient_id.in_(ids),
            # midnight UTC of that Monday is not after the instant
            DrugTest.collected_at >= dt.datetime.combine(monday, dt.time(), dt.UTC)
            if instant
            else DrugTest.collected_on >= monday,
        )
        for (instant, monday), ids in sorted(weeks.items())
    ]
    rows = db.session.execute(
        sa.select(
            DrugTest.id,
            DrugTest.patient_id,
            DrugTest.collected_at,
            DrugTest.collected_on,
            DrugTestResult.analyte,
            DrugTestResult.other_name,
            DrugTestResult.result,
            DrugTestResult.method,
        )
        .join(DrugTestResult, DrugTestResult.test_id == DrugTest.id)
        .where(
            sa.or_(*ranges),
            DrugTest.entered_in_error_at.is_(None),
            sa.or_(
                DrugTestResult.result == ResultValue.POSITIVE.value,
                DrugTestResult.method == ResultMethod.DEFINITIVE.value,
                DrugTestResult.analyte == Analyte.OTHER.value,
            ),
        )
        .order_by(DrugTest.collected_at.desc(), DrugTest.id.desc(), DrugTestResult.id)
    ).all()
    tests: dict[int, tuple] = {}
    results: dict[int, list] = {}
    for row in rows:
        bound = bounds[row.patient_id]
        after = (
            row.collected_at > bound
            if isinstance(bound, dt.datetime)
            else row.collected_on >= bound
        )
        if not after:
            continue
        tests.setdefault(row.id, (row.patient_id, row.collected_at, row.collected_on))
        results.setdefault(row.id, []).append(row)
    if not tests:
        return {}
    orders = _orders_of({t[0] for t in tests.values()}, max(t[2] for t in tests.values()))
    positives: dict[int, list[Positive]] = {}
    for test_id, (patient_id, at, day) in tests.items():
        own = own_analytes(orders.get(patient_id, []), day)
        for effective in _effective(results[test_id]):
            if effective.result == ResultValue.POSITIVE.value and effective.analyte not in own:
                positives.setdefault(patient_id, []).append(
                    Positive(
                        patient_id,
                        test_id,
                        at,
                        day,
                        effective.analyte,
                        effective.other_name,
                        effective.method,
                    )
                )
    return positives


@dataclass
class HistoryPage:
    tests: list[DrugTest]
    effective: dict[int, list[Effective]]
    findings: dict[int, list[Finding]]
    next_cursor: int | None


def test_history(
    patient: Patient, *, before: int | None = None, limit: int = HISTORY_PAGE_SIZE
) -> HistoryPage:
    """The patient's tests, newest first (by collection time, then id), ``limit`` a page,
    by keyset — ``before``: the id of the last test of the previous page. With their
    results, who collected them, effective results and findings: four statements
    whatever the number of tests."""
    query = sa.select(DrugTest).where(DrugTest.patient_id == patient.id)
    if before is not None:
        cursor = (
            sa.select(DrugTest.collected_at)
            .where(DrugTest.id == before, DrugTest.patient_id == patient.id)
            .scalar_subquery()
        )
        # The first bound alone is what the index range starts from (the OR is only a
        # filter): without it a deep page reads every newer row first.
        query = query.where(
            DrugTest.collected_at <= cursor,
            sa.or_(
                DrugTest.collected_at < cursor,
                sa.and_(DrugTest.collected_at == cursor, DrugTest.id < before),
            ),
        )
    tests = list(
        db.session.scalars(
            query.options(
                selectinload(DrugTest.results),
                selectinload(DrugTest.collected_by),
            )
            .order_by(DrugTest.collected_at.desc(), DrugTest.id.desc())
            .limit(limit + 1)
        )
    )
    more = len(tests) > limit
    tests = tests[:limit]
    return HistoryPage(
        tests, effective_results(tests), findings(tests), tests[-1].id if more else None
    )


test_history.__test__ = False  # type: ignore[attr-defined]
