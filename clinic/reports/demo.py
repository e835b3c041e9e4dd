"""Demo history for the reports (issue 14), for ``flask seed-demo`` after the other demos:
about 120 past and current patients over the last two years at both demo sites, so the
census, retention cohorts, continuity of pharmacotherapy (180 days and more of dose
ledger), admissions and discharges by TEDS-D reason, counseling attendance and dosing
reports have history to count.

Deterministic: a fixed random seed, dates relative to the site's today. What it holds:

- admissions spread over 24 months, discharges with every TEDS-D reason (1 completed ..
  7 other; lengths of stay of exactly 89, 90 and 180 days among them), readmissions (a new
  admission after a discharge), transfers between programs (``admissions.transfer``: the
  old enrollment discharged with reason 4, the new one ``transferred_from_id``);
- medication orders (methadone with a dose change, buprenorphine-naloxone, XR naltrexone
  every 4 weeks, a switch from methadone to buprenorphine-naloxone);
- the dose ledger over the enrollments: doses Monday to Saturday (the sites are closed on
  Sundays), a few missed days, some 3-10 day gaps, doses stopping before a drop-out's
  discharge, injections every 4 weeks (some late), weekend take-home bottles (Saturday and
  Sunday, dispensed on Friday) for some stable methadone patients under an approved
  decision;
- therapy sessions over the last 13 weeks at the main site (individual and family
  sessions every other week: attended, late, no-show, cancelled; one entered in error);
- drug tests every three to six weeks over the enrollments (a presumptive panel: more
  positives in the first 60 days; methadone or buprenorphine as prescribed);
- a year of aftercare referrals, each sent under a consent and taken to its outcome
  (``clinic.reports.demo_referrals``);
- a patient entered in error, with an enrollment, orders and doses (every report excludes
  them).

Patients, enrollments and orders go through the domain services (their rules and audit
events). Ledger rows, take-home decisions and bottles and the sessions are written in
bulk (a service per row would take minutes), each batch with one audit event naming what
was written; the rows carry what the services would (1304.24(a): substance, strength,
dosage form, dispenser, site, order); they are written by ``clinic.reports.demo_activity``.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.medications import orders
from clinic.patients import admissions, milestones, registry
from clinic.patients.models import DischargeReason, Program, ProgramKind
from clinic.reports import demo_referrals
from clinic.reports.demo_activity import (
    DrugTestWriter,
    Episode,
    LedgerWriter,
    Person,
    SessionWriter,
)
from clinic.reports.filters import quarter_to_date
from clinic.sites.models import Site
from clinic.sites.time import site_today

SEED = 14
PATIENTS = {"MAIN": 84, "EAST": 36}
HISTORY_DAYS = 730
FIRST_NAMES = (  # noqa: SIM905 (a list of words)
    "Aaron Beth Carlos Dana Eli Fatima Gabe Hana Ivan Jada Kyle Lena Marco Nia Omar Paula "
    "Quinn Rosa Sean Tara Uma Victor Wendy Xavier Yara Zack Brianna Devon Elena Felix"
).split()
LAST_NAMES = (  # noqa: SIM905 (a list of words)
    "Adams Baker Clark Diaz Evans Foster Garcia Hughes Irwin Jensen Khan Lopez Morgan "
    "Novak Ortiz Patel Quinlan Reyes Sanders Turner Underwood Vargas Walsh Young "
    "Zimmerman Bell Coleman Dunn Ellis Fisher Grant Hayes Ingram Jordan Keller Lambert "
    "Mason Nolan Owens Price"
).split()
# TEDS-D reasons given in turn to the discharges (4, transferred, also comes from the
# transfers); every reason appears in the first seven.
REASON_CYCLE = (1, 2, 3, 4, 5, 6, 7, 2, 1, 2, 7, 1, 3, 2, 5, 1, 2, 7)
EXACT_STAYS = (89, 90, 180)  # the retention edges: discharged on day 89, 90 and 180
ASAM = {
    ProgramKind.METHADONE_OTP: ("3", "OTP"),
    ProgramKind.OFFICE_BUPRENORPHINE: ("4", "1.0"),
    ProgramKind.XR_NALTREXONE: ("3", "1"),
    ProgramKind.INTENSIVE_OUTPATIENT: ("3", "2.1"),
}
OPIOIDS = ("heroin", "fentanyl", "fentanyl", "prescription_opioids")
STIMULANTS = ("alcohol", "methamphetamine", "cocaine")
ENTERED_IN_ERROR_REASON = "Registered twice by mistake: the same person as another record."


class _History(LedgerWriter, SessionWriter, DrugTestWriter):
    def __init__(
        self,
        site: Site,
        east: Site,
        *,
        actor: User,
        prescriber: User,
        nurse: User,
        counselors: list[User],
    ):
        self.rng = random.Random(SEED)  # noqa: S311 (demo data, not a secret)
        self.counselors = counselors
        self.today = site_today(site)
        self.yesterday = self.today - dt.timedelta(days=1)
        self.actor, self.prescriber, self.nurse = actor, prescriber, nurse
        self.sites = {"MAIN": site, "EAST": east}
        self.programs = {
            code: {
                p.kind: p
                for p in db.session.scalars(
                    sa.select(Program).where(Program.site_id == s.id).order_by(Program.id)
                )
            }
            for code, s in self.sites.items()
        }
        self.reasons = iter(REASON_CYCLE * 20)

    # --- the plan (pure Python: the same every run) ---------------------------------------

    def plan(self) -> list[Person]:
        people = []
        for code, count in PATIENTS.items():
            for n in range(count):
                people.append(self._person(code, n, count))
        # Edges named by the issue, on fixed patients of the main site.
        main = [p for p in people if p.site.code == "MAIN"]
        for person, stay in zip(main[10:13], EXACT_STAYS, strict=True):
            episode = person.episodes[0]
            episode.admitted_on = min(episode.admitted_on, self.today - dt.timedelta(days=260))
            episode.discharged_on = episode.admitted_on + dt.timedelta(days=stay)
            episode.reason = DischargeReason.COMPLETED
            del person.episodes[1:]
        wrong = main[40]
        program = self.programs["MAIN"][ProgramKind.METHADONE_OTP]
        wrong.entered_in_error, wrong.take_homes, wrong.gap = True, False, None
        wrong.episodes = [
            Episode(
                program,
                self.today - dt.timedelta(days=120),
                discharged_on=self.today - dt.timedelta(days=20),
                reason=DischargeReason.OTHER,
            )
        ]
        self._transfers(main)
        return people

    def _person(self, code: str, n: int, count: int) -> Person:
        rng = self.rng
        site = self.sites[code]
        programs = self.programs[code]
        if code == "EAST":
            kind = ProgramKind.METHADONE_OTP
        else:
            kind = rng.choices(list(ASAM), weights=(45, 25, 15, 15))[0]
        days_ago = max(3, int(HISTORY_DAYS * (count - n - rng.random()) / count))
        person = Person(site)
        admitted = self.today - dt.timedelta(days=days_ago)
        while admitted < self.today:
            episode = Episode(programs[kind], admitted)
            person.episodes.append(episode)
            stay = rng.choice((rng.randint(5, 60), rng.randint(60, 300), rng.randint(200, 800)))
            end = admitted + dt.timedelta(days=stay)
            if end >= self.today:
                break
            episode.discharged_on = end
            episode.reason = next(self.reasons)
            # A drop-out, a terminated or an incarcerated patient may come back.
            back = end + dt.timedelta(days=rng.randint(20, 150))
            if episode.reason not in (2, 3, 5) or rng.random() < 0.5 or back > self.yesterday:
                break
            admitted = back
        if kind is ProgramKind.METHADONE_OTP:
            first = person.episodes[0]
            if n % 11 == 4 and self._length(first) > 120:
                first.switch_on = first.admitted_on + dt.timedelta(days=60)
            person.take_homes = n % 4 == 1
        if n % 7 == 3:
            first = person.episodes[0]
            if self._length(first) > 40:
                start = first.admitted_on + dt.timedelta(days=rng.randint(15, 30))
                person.gap = (start, rng.randint(3, 10))
        return person

    def _length(self, episode: Episode) -> int:
        return ((episode.discharged_on or self.today) - episode.admitted_on).days

    def _transfers(self, main: list[Person]) -> None:
        """Two transfers: methadone (OTP) to office-based buprenorphine, intensive
        outpatient to the OTP; the first program's enrollment ends on the transfer day."""
        programs = self.programs["MAIN"]
        moves = (
            (ProgramKind.METHADONE_OTP, ProgramKind.OFFICE_BUPRENORPHINE),
            (ProgramKind.INTENSIVE_OUTPATIENT, ProgramKind.METHADONE_OTP),
        )
        for source, target in moves:
            for person in main[20:]:
                episode = person.episodes[-1]
                if (
                    episode.program.kind is source
                    and episode.discharged_on is None
                    and episode.switch_on is None
                    and self._length(episode) > 100
                    and not person.entered_in_error
                ):
                    episode.transfer_to = programs[target]
                    episode.discharged_on = (
                        episode.admitted_on + dt.timedelta(days=50)
                        if source is ProgramKind.METHADONE_OTP
                        # In this quarter's admissions (the report's default period),
                        # on its first day too: never before the quarter began.
                        else max(self.today - dt.timedelta(days=20), quarter_to_date(self.today)[0])
                    )
                    episode.reason = DischargeReason.TRANSFERRED
                    break

    # --- through the services ---------------------------------------------------------------

    def enroll(self, people: list[Person]) -> None:
        rng = self.rng
        counselors = self.counselors
        for n, person in enumerate(people):
            first = person.episodes[0]
            opioid = first.program.kind is not ProgramKind.INTENSIVE_OUTPATIENT
            person.patient = registry.register_patient(
                actor=self.actor,
                site=person.site,
                confirm_duplicate=True,
                data=registry.Demographics(
                    first_name=rng.choice(FIRST_NAMES),
                    last_name=rng.choice(LAST_NAMES),
                    date_of_birth=dt.date(rng.randint(1962, 2003), rng.randint(1, 12), 15),
                    sex_at_birth=rng.choice(("female", "male")),
                    primary_substance=rng.choice(OPIOIDS if opioid else STIMULANTS),
                    intake_date=first.admitted_on - dt.timedelta(days=rng.randint(0, 3)),
                    city="Riverside" if person.site.code == "MAIN" else "Eastside",
                    state="NY",
                ),
            )
            counselor = counselors[n % len(counselors)] if person.site.code == "MAIN" else None
            for episode in person.episodes:
                self._episode(person, episode, counselor)

    def _episode(self, person: Person, episode: Episode, counselor: User | None) -> None:
        edition, level = ASAM[episode.program.kind]
        if episode.enrollment is None:
            episode.enrollment = admissions.admit(
                person.patient,
                episode.program,
                actor=self.actor,
                admitted_on=episode.admitted_on,
                asam_edition=edition,
                asam_level=level,
                primary_counselor=counselor,
            )
        enrollment = episode.enrollment
        done = episode.admitted_on + dt.timedelta(days=3)
        if done <= (episode.discharged_on or self.today):
            milestones.record_milestones(
                enrollment,
                actor=self.actor,
                values=dict.fromkeys(milestones.MILESTONES, done),
                expected_version=enrollment.version,
            )
            review = self.today - dt.timedelta(days=self.rng.randint(5, 60))
            if episode.discharged_on is None and review > done:
                milestones.record_care_plan_review(enrollment, actor=self.actor, reviewed_on=review)
        self._orders(episode)
        if episode.discharged_on is None:
            return
        if episode.transfer_to is not None:
            edition, level = ASAM[episode.transfer_to.kind]
            after = Episode(episode.transfer_to, episode.discharged_on)
            after.enrollment = admissions.transfer(
                enrollment,
                episode.transfer_to,
                actor=self.actor,
                on=episode.discharged_on,
                asam_edition=edition,
                asam_level=level,
                primary_counselor=counselor,
                expected_version=enrollment.version,
            )
            person.episodes.append(after)  # enrolled from here on (the loop reaches it)
            return
        admissions.discharge(
            enrollment,
            actor=self.actor,
            reason=episode.reason,
            discharged_on=episode.discharged_on,
            expected_version=enrollment.version,
        )

    def _orders(self, episode: Episode) -> None:
        """The episode's orders, written on its admission day (before a discharge, which
        ends them through the discharge listener)."""
        start = episode.admitted_on
        kind = episode.program.kind
        enrollment = episode.enrollment
        prescriber = self.prescriber
        if kind is ProgramKind.METHADONE_OTP:
            order = orders.start_order(enrollment, actor=prescriber, data=_methadone("30", start))
            titrated = start + dt.timedelta(days=7)
            if titrated <= min(episode.discharged_on or self.today, self.today):
                dose = str(self.rng.choice((60, 70, 80, 90)))
                order = orders.change_dose(
                    order, actor=prescriber, data=_methadone(dose, titrated, reason="Titration")
                )
            if episode.switch_on is not None:
                orders.switch_medication(
                    order, actor=prescriber, data=_bup(episode.switch_on, "Prefers buprenorphine")
                )
        elif kind is ProgramKind.OFFICE_BUPRENORPHINE:
            orders.start_order(enrollment, actor=prescriber, data=_bup(start, "Maintenance"))
        elif kind is ProgramKind.XR_NALTREXONE:
            orders.start_order(
                enrollment,
                actor=prescriber,
                data=orders.OrderInput(
                    medication="xr_naltrexone",
                    product_form="injection",
                    strength="380 mg",
                    dose_mg="380",
                    schedule="every_4_weeks",
                    start_on=start,
                    last_opioid_use_on=start - dt.timedelta(days=10),
                    reason="Opioid-free induction",
                ),
            )

    def mark_entered_in_error(self, people: list[Person]) -> None:
        for person in people:
            if person.entered_in_error:
                registry.mark_entered_in_error(
                    person.patient,
                    actor=self.actor,
                    reason=ENTERED_IN_ERROR_REASON,
                    expected_version=person.patient.version,
                )


def _methadone(dose: str, start_on: dt.date, **fields) -> orders.OrderInput:
    return orders.OrderInput(
        medication="methadone",
        product_form="oral_liquid",
        strength="10 mg/mL",
        dose_mg=dose,
        schedule="daily",
        start_on=start_on,
        **fields,
    )


def _bup(start_on: dt.date, reason: str) -> orders.OrderInput:
    return orders.OrderInput(
        medication="buprenorphine_naloxone",
        product_form="sublingual_film",
        strength="8 mg/2 mg",
        dose_mg="16",
        schedule="daily",
        start_on=start_on,
        reason=reason,
    )


@dataclass
class Seeded:
    patients: int
    enrollments: int
    doses: int
    sessions: int
    drug_tests: int
    referrals: int


def seed(
    site: Site,
    east: Site,
    *,
    prescriber: User,
    nurse: User,
    counselors: list[User],
    trainee: User,
    staff: User,
    actor: User,
) -> Seeded:
    """Add the reports' demo history at ``site`` and ``east`` (module docstring).
    ``actor`` (an administrator of both sites) registers, admits and discharges;
    ``prescriber`` writes the orders; ``nurse`` (who may dispense) is the ledger's
    dispenser; ``counselors`` are the primary counselors at ``site`` and run its sessions
    with ``trainee``; ``staff`` records consents and sends the past referrals
    (``clinic.reports.demo_referrals``). Flushes; the caller commits."""
    history = _History(
        site, east, actor=actor, prescriber=prescriber, nurse=nurse, counselors=counselors
    )
    people = history.plan()
    history.enroll(people)
    doses = history.ledger(people)
    sessions = history.sessions(people, [*counselors, trainee])
    tests = history.drug_tests(people)
    referred = demo_referrals.seed(
        site,
        staff=staff,
        patient_ids={p.patient.id for p in people if p.site is site and not p.entered_in_error},
        today=history.today,
        rng=history.rng,
    )
    history.mark_entered_in_error(people)
    db.session.flush()
    return Seeded(
        patients=len(people),
        enrollments=sum(len(p.episodes) for p in people),
        doses=doses,
        sessions=sessions,
        drug_tests=tests,
        referrals=referred,
    )


__all__ = ["Seeded", "seed"]
