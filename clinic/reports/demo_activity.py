"""The bulk half of the reports' demo history (``clinic.reports.demo``): the dose ledger,
weekend take-home bottles under their decisions, and the counseling sessions, written as
rows (a service per row would take minutes) with one audit event per batch.

The rows carry what the services would write: a ledger row its substance, strength,
dosage form, dispenser, site and order (21 CFR 1304.24(a)); a take-home bottle its
dispensing under an approved decision; a session attendee the enrollment they attend
under. The mixins read the history's state (``rng``, ``today``, ``sites``, ``nurse``...).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
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
from clinic.medications.models import DoseEntry, DoseKind, Medication, MedicationOrder
from clinic.medications.take_home_models import TakeHomeDecision, TakeHomeDispensing
from clinic.patients.models import Enrollment, Patient, Program, ProgramKind
from clinic.sites.models import Site
from clinic.therapy.models import (
    Attendance,
    Modality,
    SessionAttendee,
    SessionKind,
    SessionSetting,
    SessionStatus,
    TherapySession,
)

SESSION_WEEKS = 13
# The chance of a positive result by analyte: in the first 60 days of an episode, after.
POSITIVITY = {
    Analyte.FENTANYL: (0.35, 0.10),
    Analyte.OPIOIDS: (0.20, 0.06),
    Analyte.COCAINE: (0.10, 0.05),
    Analyte.AMPHETAMINES: (0.06, 0.03),
    Analyte.BENZODIAZEPINES: (0.05, 0.03),
}
TAKE_HOME_NOTE = "Stable in treatment; criteria reviewed with the patient."
CRITERIA = ("substance_use", "attendance", "behaviour", "diversion", "storage", "other")
MODALITIES = (
    Modality.CBT,
    Modality.MOTIVATIONAL_INTERVIEWING,
    Modality.CONTINGENCY_MANAGEMENT,
    Modality.RELAPSE_PREVENTION,
    Modality.COMMUNITY_REINFORCEMENT,
)
ATTENDANCE = (
    (Attendance.ATTENDED, 70),
    (Attendance.LATE, 5),
    (Attendance.LEFT_EARLY, 3),
    (Attendance.NO_SHOW, 12),
    (Attendance.CANCELLED_BY_PATIENT, 6),
    (Attendance.CANCELLED_BY_CLINIC, 4),
)


@dataclass
class Episode:
    """One enrollment as planned: days from admission, how it ends (None: still
    enrolled), what comes next (a transfer to another program kind, a readmission)."""

    program: Program
    admitted_on: dt.date
    discharged_on: dt.date | None = None
    reason: int | None = None
    transfer_to: Program | None = None
    switch_on: dt.date | None = None  # methadone → buprenorphine-naloxone on this day
    enrollment: Enrollment | None = None
    last_dose: dt.date | None = None


@dataclass
class Person:
    site: Site
    episodes: list[Episode] = field(default_factory=list)
    gap: tuple[dt.date, int] | None = None  # a run of days without a dose
    take_homes: bool = False
    entered_in_error: bool = False
    patient: Patient | None = None


def _utc(site: Site, day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), ZoneInfo(site.timezone)).astimezone(dt.UTC)


class LedgerWriter:
    """The dose ledger and the weekend take-home bottles of the planned episodes."""

    def ledger(self, people: list[Person]) -> int:
        """Dose ledger rows for every episode with orders; returns how many."""
        rng = self.rng
        rows: list[dict] = []
        bottles: list[tuple[Person, Episode, MedicationOrder, dt.date]] = []
        by_patient = {p.patient.id: p for p in people}
        enrollment_episode = {
            e.enrollment.id: e for p in people for e in p.episodes if e.enrollment is not None
        }
        found = db.session.scalars(
            sa.select(MedicationOrder)
            .where(MedicationOrder.patient_id.in_(list(by_patient)))
            .order_by(MedicationOrder.patient_id, MedicationOrder.start_on, MedicationOrder.id)
        )
        days: dict[int, dict[dt.date, MedicationOrder]] = {}
        for order in found:
            episode = enrollment_episode[order.enrollment_id]
            end = min(order.end_on or self.yesterday, self.yesterday)
            if episode.last_dose is None:
                episode.last_dose = self._last_dose(episode)
            end = min(end, episode.last_dose)
            day = order.start_on
            plan = days.setdefault(order.patient_id, {})
            while day <= end:
                plan[day] = order  # a later order (transfer day) takes the day
                day += dt.timedelta(days=1)
        for patient_id, plan in days.items():
            person = by_patient[patient_id]
            last_injection: dt.date | None = None
            for day, order in sorted(plan.items()):
                episode = enrollment_episode[order.enrollment_id]
                end = episode.last_dose or self.yesterday
                medication = Medication(order.medication)
                if medication.is_injection:
                    due = last_injection is None or day >= last_injection + dt.timedelta(
                        days=28 + (12 if rng.random() < 0.08 else rng.randint(0, 3))
                    )
                    if due:
                        rows.append(self._row(person, order, day, DoseKind.INJECTION))
                        last_injection = day
                    continue
                if day.isoweekday() == 7 or rng.random() < 0.04:
                    continue  # closed on Sundays; a missed day now and then
                if person.gap and 0 <= (day - person.gap[0]).days < person.gap[1]:
                    continue
                weekend = self._take_home_days(person, episode, medication, day)
                if weekend and day.isoweekday() == 6:
                    continue  # Saturday: the bottle dispensed on Friday
                rows.append(self._row(person, order, day, DoseKind.OBSERVED))
                if weekend and day.isoweekday() == 5 and day + dt.timedelta(days=2) <= end:
                    bottles.append((person, episode, order, day))
        self._bottles(bottles, rows)
        for chunk in range(0, len(rows), 5000):
            db.session.execute(sa.insert(DoseEntry), rows[chunk : chunk + 5000])
        for site in self.sites.values():
            record(
                AuditAction.CREATE,
                actor=self.nurse,
                entity_type="dose_entry",
                site_id=site.id,
                details={
                    "demo": "reports history",
                    "rows": sum(1 for r in rows if r["site_id"] == site.id),
                },
            )
        return len(rows)

    def _last_dose(self, episode: Episode) -> dt.date:
        if episode.discharged_on is None:
            return self.yesterday
        if episode.reason in (2, 3, 5, 6):  # stopped coming before the discharge
            return max(
                episode.admitted_on,
                episode.discharged_on - dt.timedelta(days=self.rng.randint(3, 10)),
            )
        return episode.discharged_on

    def _take_home_days(self, person: Person, episode: Episode, medication, day) -> bool:
        start = self._take_home_start(person, episode, medication)
        return start is not None and day >= start

    def _take_home_start(self, person: Person, episode: Episode, medication) -> dt.date | None:
        """Weekend take-homes from day 90 of a stable methadone patient's first episode,
        for a patient still enrolled at least 30 days after (decided within the last 75
        days for a current patient: not yet due for review)."""
        if not person.take_homes or episode is not person.episodes[0]:
            return None
        if medication is not Medication.METHADONE:
            return None
        start = episode.admitted_on + dt.timedelta(days=90)
        if episode.discharged_on is None:
            start = max(start, self.today - dt.timedelta(days=75))
        if ((episode.discharged_on or self.yesterday) - start).days < 30:
            return None
        return start

    def _row(self, person: Person, order: MedicationOrder, day: dt.date, kind: DoseKind, **values):
        at = dt.datetime.combine(day, dt.time(7), ZoneInfo(person.site.timezone))
        at += dt.timedelta(minutes=self.rng.randint(0, 600))
        row = {
            "kind": kind,
            "patient_id": order.patient_id,
            "site_id": person.site.id,
            "order_id": order.id,
            "medication": order.medication,
            "substance": Medication(order.medication).substance,
            "strength": order.strength,
            "dosage_form": order.product_form,
            "dispensed_on": day,
            "dispensed_at": at.astimezone(dt.UTC),
            "amount_mg": order.dose_mg,
            "slot": 1,
            "dispenser_id": self.nurse.id,
            "station": "Window 1" if person.site.code == "MAIN" else "East window",
            "lot": None,
            "injection_site": None,
            "take_on": None,
            "bottle_number": None,
            "dispensing_id": None,
        }
        if kind is DoseKind.INJECTION:
            row.update(lot=f"XRN-{day:%y%m}", injection_site="gluteal_left")
        row.update(values)
        return row

    def _bottles(self, fridays, rows: list[dict]) -> None:
        """Approved weekend decisions ("67": Saturday and Sunday; the Sunday a closed day
        outside the cap) and, each Friday, a dispensing of two bottles."""
        decisions: dict[int, TakeHomeDecision] = {}
        for person, episode, order, _friday in fridays:
            if episode.enrollment.id in decisions:
                continue
            start = self._take_home_start(person, episode, Medication.METHADONE)
            program = episode.program
            ended = episode.discharged_on
            day = (start - episode.admitted_on).days
            decision = TakeHomeDecision(
                patient_id=order.patient_id,
                site_id=person.site.id,
                enrollment_id=episode.enrollment.id,
                order_id=order.id,
                medication=Medication.METHADONE,
                schedule_kind="weekly",
                weekdays="67",
                start_on=start,
                treatment_day=day,
                cap_days=program.take_home_cap_days_31_plus,
                counted_days=1,
                storage_education_on=start,
                recorded_by_id=self.nurse.id,
                recorded_at=_utc(person.site, start - dt.timedelta(days=1), 11),
                approved_by_id=self.prescriber.id,
                approved_at=_utc(person.site, start - dt.timedelta(days=1), 15),
                ended_on=ended,
                ended_by_id=self.prescriber.id if ended else None,
                ended_at=_utc(person.site, ended, 16) if ended else None,
                end_reason="Discharged" if ended else None,
                **{f"{name}_met": True for name in CRITERIA},
                **{f"{name}_note": TAKE_HOME_NOTE for name in CRITERIA},
            )
            db.session.add(decision)
            decisions[episode.enrollment.id] = decision
        db.session.flush()
        dispensings = [
            TakeHomeDispensing(
                patient_id=order.patient_id,
                site_id=person.site.id,
                decision_id=decisions[episode.enrollment.id].id,
                order_id=order.id,
                dispensed_on=friday,
                dispensed_at=_utc(person.site, friday, 9),
                dispenser_id=self.nurse.id,
                bottle_count=2,
            )
            for person, episode, order, friday in fridays
        ]
        db.session.add_all(dispensings)
        db.session.flush()
        for (person, _episode, order, friday), dispensing in zip(fridays, dispensings, strict=True):
            for number in (1, 2):
                rows.append(
                    self._row(
                        person,
                        order,
                        friday,
                        DoseKind.TAKE_HOME,
                        slot=None,
                        take_on=friday + dt.timedelta(days=number),
                        bottle_number=number,
                        dispensing_id=dispensing.id,
                    )
                )
        if decisions:
            record(
                AuditAction.CREATE,
                actor=self.nurse,
                entity_type="take_home_dispensing",
                details={
                    "demo": "reports history",
                    "decisions": len(decisions),
                    "dispensings": len(dispensings),
                },
            )


class SessionWriter:
    """The counseling sessions of the main site's last weeks."""

    def sessions(self, people: list[Person], clinicians: list[User]) -> int:
        """The main site's last 13 weeks of counseling: each enrolled patient an individual
        or family session every two weeks (with their primary counselor, some with the
        trainee; the demo's weekly group is the therapy demo's); attendance drawn from
        ``ATTENDANCE``. Returns how many."""
        site = self.sites["MAIN"]
        enrolled = [
            (p.patient.id, e)
            for p in people
            if p.site is site and not p.entered_in_error
            for e in p.episodes
        ]
        by_id = {u.id: u for u in clinicians}
        made: list[TherapySession] = []
        day = self.today - dt.timedelta(weeks=SESSION_WEEKS)
        while day < self.today:
            active: dict[int, Episode] = {}
            for patient_id, episode in enrolled:
                if episode.admitted_on <= day and (
                    episode.discharged_on is None or episode.discharged_on >= day
                ):
                    active[patient_id] = episode
            if day.isoweekday() <= 5:
                hours: dict[int, int] = {}
                for patient_id, episode in active.items():
                    # Every other week, on the patient's own weekday.
                    week = (day - self.today).days // 7
                    if day.isoweekday() != patient_id % 5 + 1 or week % 2 != patient_id % 2:
                        continue
                    counselor = by_id.get(episode.enrollment.primary_counselor_id, clinicians[0])
                    if patient_id % 5 == 0:
                        counselor = clinicians[-1]  # the trainee
                    hour = hours.get(counselor.id, 9)
                    if hour > 16:
                        continue
                    hours[counselor.id] = hour + 1
                    family = (week // 2 + patient_id) % 4 == 0
                    kind = SessionKind.FAMILY if family else SessionKind.INDIVIDUAL
                    made.append(self._session(counselor, day, hour, patient_id, episode, kind))
            day += dt.timedelta(days=1)
        wrong = made[0]
        wrong.entered_in_error_at = wrong.recorded_at + dt.timedelta(hours=1)
        wrong.entered_in_error_reason = "Recorded on the wrong day: planned again."
        wrong.entered_in_error_by_id = wrong.clinician_id
        db.session.add_all(made)
        db.session.flush()
        record(
            AuditAction.CREATE,
            actor=self.actor,
            entity_type="therapy_session",
            site_id=site.id,
            details={"demo": "reports history", "sessions": len(made)},
        )
        return len(made)

    def _session(
        self, clinician: User, day, hour: int, patient_id: int, episode: Episode, kind
    ) -> TherapySession:
        rng = self.rng
        site = self.sites["MAIN"]
        family = kind is SessionKind.FAMILY
        minutes = 60 if family else 50
        starts = _utc(site, day, hour) + dt.timedelta(minutes=15)
        session = TherapySession(
            clinician_id=clinician.id,
            site_id=site.id,
            starts_at=starts,
            duration_minutes=minutes,
            kind=kind,
            modality=Modality.COMMUNITY_REINFORCEMENT if family else rng.choice(MODALITIES),
            setting=SessionSetting.VIDEO if rng.random() < 0.2 else SessionSetting.IN_PERSON,
            status=SessionStatus.RECORDED,
            recorded_at=starts + dt.timedelta(minutes=minutes + 30),
            recorded_by_id=clinician.id,
            created_at=starts - dt.timedelta(days=2),
            created_by_id=clinician.id,
        )
        attendance = rng.choices([a for a, _w in ATTENDANCE], [w for _a, w in ATTENDANCE])[0]
        attended = {
            Attendance.ATTENDED: minutes,
            Attendance.LATE: minutes - 15,
            Attendance.LEFT_EARLY: minutes - 20,
        }.get(attendance)
        session.attendees.append(
            SessionAttendee(
                patient_id=patient_id,
                enrollment_id=episode.enrollment.id,
                position=1,
                attendance=attendance,
                minutes_attended=attended,
            )
        )
        return session


class DrugTestWriter:
    """Drug tests over the planned episodes: a urine test every three to six weeks on an
    open day (a random draw's test or a scheduled one), with a presumptive panel."""

    def drug_tests(self, people: list[Person]) -> int:
        rng = self.rng
        tests: list[DrugTest] = []
        for person in people:
            for episode in person.episodes:
                end = min(episode.discharged_on or self.yesterday, self.yesterday)
                day = episode.admitted_on + dt.timedelta(days=rng.randint(1, 7))
                while day <= end:
                    if day.isoweekday() != 7:
                        tests.append(self._drug_test(person, episode, day))
                    day += dt.timedelta(days=rng.randint(21, 45))
        db.session.add_all(tests)
        db.session.flush()
        for site in self.sites.values():
            record(
                AuditAction.CREATE,
                actor=self.nurse,
                entity_type="drug_test",
                site_id=site.id,
                details={
                    "demo": "reports history",
                    "tests": sum(1 for t in tests if t.site_id == site.id),
                },
            )
        return len(tests)

    def _drug_test(self, person: Person, episode: Episode, day: dt.date) -> DrugTest:
        rng = self.rng
        collected = _utc(person.site, day, 8) + dt.timedelta(minutes=rng.randint(0, 480))
        early = (day - episode.admitted_on).days < 60
        test = DrugTest(
            patient_id=person.patient.id,
            site_id=person.site.id,
            collected_at=collected,
            collected_on=day,
            specimen=Specimen.URINE,
            observed=rng.random() < 0.7,
            reason=TestReason.RANDOM if rng.random() < 0.75 else TestReason.SCHEDULED,
            collected_by_id=self.nurse.id,
            temperature_in_range=True,
            recorded_by_id=self.nurse.id,
            recorded_at=collected + dt.timedelta(hours=1),
        )
        values = {
            analyte: rng.random() < (first if early else later)
            for analyte, (first, later) in POSITIVITY.items()
        }
        kind = episode.program.kind
        on_methadone = kind is ProgramKind.METHADONE_OTP and (
            episode.switch_on is None or day < episode.switch_on
        )
        values[Analyte.METHADONE] = on_methadone and rng.random() < 0.97
        values[Analyte.BUPRENORPHINE] = (
            kind is ProgramKind.OFFICE_BUPRENORPHINE
            or (episode.switch_on is not None and day >= episode.switch_on)
        ) and rng.random() < 0.95
        for analyte, positive in values.items():
            test.results.append(
                DrugTestResult(
                    analyte=analyte,
                    other_name="",
                    result=ResultValue.POSITIVE if positive else ResultValue.NEGATIVE,
                    method=ResultMethod.PRESUMPTIVE,
                    entered_by_id=self.nurse.id,
                    entered_at=test.recorded_at,
                )
            )
        return test
