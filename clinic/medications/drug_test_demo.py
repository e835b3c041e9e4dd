"""Demo drug tests for ``flask seed-demo`` (after the medication orders' demo, whose orders
decide each patient's own medication):

- Smith (methadone, in treatment over a year): nine random tests over the last 12 months,
  one presumptive cocaine positive that the laboratory confirms;
- Nguyen (buprenorphine-naloxone, about 4 months): four random tests, one presumptive
  fentanyl positive that the laboratory overturns (definitive negative);
- Torres (methadone, about 5 weeks): the admission's scheduled test, then a random test
  negative for methadone — the missing-own-medication finding (possible diversion).

Rows are written straight into the tables, as the dose ledger's demo does (the services
record "now"; these tests are in the past), collected by the demo nurse. Idempotent: a
site that already has drug tests gets none.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.medications.drug_test_models import (
    Analyte,
    DrugTest,
    DrugTestResult,
    ResultMethod,
    ResultValue,
    Specimen,
    TestReason,
)
from clinic.patients.models import Enrollment, Patient
from clinic.sites.models import Site
from clinic.sites.time import site_today

POS, NEG = ResultValue.POSITIVE, ResultValue.NEGATIVE
# last name -> (days ago, reason, {analyte: presumptive result}, {analyte: definitive})
PLAN: dict[str, list[tuple[int, TestReason, dict[Analyte, ResultValue], dict]]] = {
    "Smith": [
        (352, TestReason.RANDOM, {}, {}),
        (309, TestReason.RANDOM, {}, {}),
        (266, TestReason.RANDOM, {}, {}),
        (231, TestReason.RANDOM, {}, {}),
        (187, TestReason.RANDOM, {Analyte.COCAINE: POS}, {Analyte.COCAINE: POS}),
        (146, TestReason.RANDOM, {}, {}),
        (101, TestReason.RANDOM, {}, {}),
        (58, TestReason.RANDOM, {}, {}),
        (17, TestReason.RANDOM, {}, {}),
    ],
    "Nguyen": [
        (111, TestReason.RANDOM, {}, {}),
        (79, TestReason.RANDOM, {Analyte.FENTANYL: POS}, {Analyte.FENTANYL: NEG}),
        (44, TestReason.RANDOM, {}, {}),
        (9, TestReason.RANDOM, {}, {}),
    ],
    "Torres": [
        (35, TestReason.SCHEDULED, {Analyte.FENTANYL: POS, Analyte.METHADONE: NEG}, {}),
        (6, TestReason.RANDOM, {Analyte.METHADONE: NEG}, {}),
    ],
}
OWN = {"Smith": Analyte.METHADONE, "Nguyen": Analyte.BUPRENORPHINE, "Torres": Analyte.METHADONE}
POINT_OF_CARE = (
    Analyte.OPIOIDS,
    Analyte.FENTANYL,
    Analyte.METHADONE,
    Analyte.BUPRENORPHINE,
    Analyte.COCAINE,
    Analyte.AMPHETAMINES,
    Analyte.BENZODIAZEPINES,
    Analyte.CANNABIS,
)


def _patients(site: Site) -> dict[str, tuple[Patient, dt.date]]:
    """The site's patients of the plan with their first admission, by last name."""
    rows = db.session.execute(
        sa.select(Patient, sa.func.min(Enrollment.admitted_on))
        .join(Enrollment, Enrollment.patient_id == Patient.id)
        .where(Patient.site_id == site.id, Patient.last_name.in_(list(PLAN)))
        .group_by(Patient.id)
    ).all()
    return {patient.last_name: (patient, admitted) for patient, admitted in rows}


def seed(site: Site, *, nurse: User) -> int:
    """Drug tests for the demo patients at ``site``; returns the number of tests written
    (0 when the site already has tests)."""
    if db.session.scalar(sa.select(DrugTest.id).where(DrugTest.site_id == site.id).limit(1)):
        return 0
    zone = ZoneInfo(site.timezone)
    today = site_today(site)
    written = 0
    for name, (patient, admitted) in sorted(_patients(site).items()):
        for position, (days_ago, reason, presumptive, definitive) in enumerate(PLAN[name]):
            day = max(today - dt.timedelta(days=days_ago), admitted)
            local = dt.datetime.combine(day, dt.time(7, 40), zone)
            at = (local + dt.timedelta(minutes=23 * position)).astimezone(dt.UTC)
            test = DrugTest(
                patient_id=patient.id,
                site_id=site.id,
                collected_at=at,
                collected_on=day,
                specimen=Specimen.URINE,
                observed=position % 3 == 0,
                reason=reason,
                collected_by_id=nurse.id,
                temperature_in_range=True,
                adulteration_suspected=False,
                recorded_by_id=nurse.id,
                recorded_at=at + dt.timedelta(minutes=10),
            )
            db.session.add(test)
            db.session.flush()
            for analyte in POINT_OF_CARE:
                value = presumptive.get(analyte, POS if analyte is OWN[name] else NEG)
                db.session.add(_result(test, analyte, value, ResultMethod.PRESUMPTIVE, nurse, 1))
            db.session.add(
                _result(
                    test,
                    Analyte.ALCOHOL,
                    ResultValue.NOT_TESTED,
                    ResultMethod.PRESUMPTIVE,
                    nurse,
                    1,
                )
            )
            for analyte, value in definitive.items():
                db.session.add(_result(test, analyte, value, ResultMethod.DEFINITIVE, nurse, 96))
            written += 1
    db.session.flush()
    return written


def _result(test, analyte, value, method, nurse: User, hours: int) -> DrugTestResult:
    return DrugTestResult(
        test_id=test.id,
        analyte=analyte,
        result=value,
        method=method,
        entered_by_id=nurse.id,
        entered_at=test.collected_at + dt.timedelta(hours=hours),
    )


__all__ = ["seed"]
