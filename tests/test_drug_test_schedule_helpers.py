"""Helpers of the random-testing tests (tests/test_drug_test_schedule*.py): a site with
maintenance patients, random tests written straight to the table (the tests' own service
is another module's), and many patients at once for the statement counts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from clinic.extensions import db
from clinic.medications.drug_test_models import DrugTest
from clinic.patients.models import Enrollment, Patient
from clinic.sites.models import Site
from clinic.sites.time import site_today

LONG_AGO = dt.date(2024, 1, 2)


@dataclass
class Schedule:
    app: object
    site: int
    other_site: int
    otp: int  # methadone OTP program at MAIN
    bupe: int  # office-based buprenorphine at MAIN
    naltrexone: int
    outpatient: int
    other_otp: int  # methadone OTP at EAST
    clinician: int
    today: dt.date

    def add_test(
        self,
        patient_id: int,
        on: dt.date,
        *,
        reason: str = "random",
        in_error: bool = False,
        selection_id: int | None = None,
    ) -> int:
        """A test collected at noon UTC of ``on`` (no results)."""
        patient = db.session.get(Patient, patient_id)
        test = DrugTest(
            patient_id=patient_id,
            site_id=patient.site_id,
            collected_at=dt.datetime.combine(on, dt.time(12), tzinfo=dt.UTC),
            collected_on=on,
            specimen="urine",
            observed=True,
            reason=reason,
            collected_by_id=self.clinician,
            temperature_in_range=True,
            recorded_by_id=self.clinician,
            selection_id=selection_id,
        )
        db.session.add(test)
        db.session.flush()
        if in_error:
            test.entered_in_error_at = dt.datetime.now(dt.UTC)
            test.entered_in_error_by_id = self.clinician
            test.entered_in_error_reason = "wrong patient"
        db.session.commit()
        return test.id

    def days_ago(self, days: int) -> dt.date:
        return self.today - dt.timedelta(days=days)


@pytest.fixture(name="schedule")
def schedule_fixture(app, site, make_site, make_program, make_user) -> Schedule:
    """MAIN and EAST open every day (the tests run on any weekday), their programs."""
    east = make_site("EAST")
    with app.app_context():
        for site_id in (site, east):
            db.session.get(Site, site_id).closed_weekdays = ""
        db.session.commit()
        today = site_today(db.session.get(Site, site))
    return Schedule(
        app=app,
        site=site,
        other_site=east,
        otp=make_program("Methadone"),
        bupe=make_program("Buprenorphine", kind="office_buprenorphine", **NO_CAPS),
        naltrexone=make_program("Naltrexone", kind="xr_naltrexone", **NO_CAPS),
        outpatient=make_program("Outpatient", kind="outpatient", **NO_CAPS),
        other_otp=make_program("East methadone", site_id=east),
        clinician=make_user("clinician", username="collector"),
        today=today,
    )


NO_CAPS = {
    "take_home_cap_days_0_14": None,
    "take_home_cap_days_15_30": None,
    "take_home_cap_days_31_plus": None,
}


@pytest.fixture(name="admitted")
def admitted_fixture(schedule, make_patient, make_enrollment):
    """``admitted(days_ago, program=None, **patient fields) -> patient id``: a patient
    admitted that many days before today (MAIN's methadone program by default)."""
    counter = iter(range(1, 10_000))

    def make(days: int, program: int | None = None, *, site_id: int | None = None) -> int:
        n = next(counter)
        patient = make_patient(
            "Pat", f"Person{n:04d}", intake_date=LONG_AGO, site_id=site_id or schedule.site
        )
        make_enrollment(patient, program or schedule.otp, admitted_on=schedule.days_ago(days))
        return patient

    return make


def insert_patients(site_id: int, program_id: int, admissions: list[dt.date]) -> list[int]:
    """Patients admitted to ``program_id`` on the given days, written in bulk (no audit,
    no registry: for the statement counts only). Returns their ids."""
    first = db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(Patient.id), 0))) or 0
    rows = [
        {
            "site_id": site_id,
            "mrn": f"BULK-{first + i:07d}",
            "first_name": "Bulk",
            "last_name": f"Patient{i:05d}",
            "first_key": "bulk",
            "last_key": f"patient{i:05d}",
            "date_of_birth": dt.date(1980, 1, 1),
            "sex_at_birth": "female",
            "primary_substance": "fentanyl",
            "intake_date": LONG_AGO,
        }
        for i in range(len(admissions))
    ]
    db.session.execute(sa.insert(Patient), rows)
    ids = list(
        db.session.scalars(
            sa.select(Patient.id).where(Patient.mrn.like("BULK-%")).order_by(Patient.id)
        )
    )[-len(admissions) :]
    db.session.execute(
        sa.insert(Enrollment),
        [
            {
                "patient_id": pid,
                "program_id": program_id,
                "admitted_on": on,
                "asam_edition": "3",
                "asam_level": "OTP",
            }
            for pid, on in zip(ids, admissions, strict=True)
        ],
    )
    db.session.commit()
    return ids
