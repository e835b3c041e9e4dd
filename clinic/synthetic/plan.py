"""The per-patient plan: patients and their name tokens, enrollments (readmissions,
transfers), care-plan reviews and corrections, medication orders, take-home decisions and
reviews, holds, flags, support people, consents, restriction requests, referrals with their
events and disclosures. The orders to dose are handed to ``ledger.py`` as ``OrderSpec``s,
the enrollments to ``care.py``; audit events are collected in ``plan.events``.

The design of ``bench/reports.py``'s loader (issue 14), moved here and extended to every
table: one seeded ``random.Random`` walks the patients in id order, so a seed gives the
same rows on both engines.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from dataclasses import dataclass

from clinic.synthetic import names
from clinic.synthetic.consents import ConsentWriter
from clinic.synthetic.structure import PROGRAMS, Ids, SiteInfo

DAY = dt.timedelta(days=1)
# TEDS discharge reasons of an episode's last enrollment (4, transferred, is for transfers).
REASONS = ((1, 0.25), (2, 0.45), (3, 0.10), (5, 0.07), (6, 0.02), (7, 0.11))
SUBSTANCES = ("heroin", "fentanyl", "fentanyl", "prescription_opioids", "methamphetamine")
# medication -> (product form, strength)
PRODUCTS = {
    "methadone": ("oral_liquid", "10 mg/mL"),
    "buprenorphine_naloxone": ("sublingual_film", "8 mg/2 mg"),
    "xr_buprenorphine": ("injection", "300 mg/1.5 mL"),
    "naltrexone": ("tablet", "50 mg"),
    "xr_naltrexone": ("injection", "380 mg"),
}
CRITERIA_NOTES = ("Negative tests for 90 days", "Attends every scheduled visit", "Stable",
                  "No concern reported", "Lock box shown", "None")  # fmt: skip


@dataclass
class OrderSpec:
    """An order the ledger doses: its rows' constant parts and the run's facts."""

    id: int
    patient_id: int
    site: SiteInfo
    medication: str
    form: str
    strength: str
    dose: int
    split: tuple[int, int] | None
    schedule: str
    start: dt.date
    end: dt.date | None
    decision_id: int | None = None
    weekly: bool = False
    relapse_on: dt.date | None = None  # the first of ten missed days
    hold: tuple[dt.date, dt.date] | None = None  # held days (a stop-dose hold in force)
    review_open: bool = False  # a designed relapse reaching yesterday, awaiting review


@dataclass
class EnrollmentSpec:
    id: int
    patient_id: int
    site: SiteInfo
    kind: str
    admitted: dt.date
    discharged: dt.date | None
    counselor: int


def choose(rng: random.Random, weighted) -> object:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


class Plan:
    def __init__(self, *, ids: Ids, seed: int, today: dt.date, start: dt.date,
                 sites: list[SiteInfo], resources: list[tuple[int, str, str]]) -> None:  # fmt: skip
        self.rng = random.Random(seed)  # noqa: S311 (made-up data, reproducible by design)
        self.ids = ids
        self.today = today
        self.start = start
        self.sites = sites
        self.resources = resources
        self.rows: dict[str, list[tuple]] = defaultdict(list)
        self.events: list[tuple] = []  # (at, user, site, action, entity, id, patient, details)
        self.orders: list[OrderSpec] = []
        self.enrollments: list[EnrollmentSpec] = []
        self.active_daily: list[int] = []  # patients dosable today
        self.identities: set[tuple] = set()
        self.relapses = 0
        self.mrn = {s.id: 0 for s in sites}
        self.consents = ConsentWriter(self)

    def at(self, site: SiteInfo, day: dt.date, minutes: int) -> dt.datetime:
        return site.clock.at(day, minutes)

    def event(self, at, user, site, action, entity, entity_id, patient, details=None) -> None:
        self.events.append((at, user, site.id, action, entity, entity_id, patient, details))

    def add_patients(self, count: int) -> None:
        for n in range(count):
            self._patient(self.sites[n % len(self.sites)])

    # --- patients and episodes -----------------------------------------------------------

    def _episode_kind(self) -> str:
        return choose(self.rng, [(p[0], p[2]) for p in PROGRAMS])

    def _los(self, kind: str) -> int:
        mean = next(p[3] for p in PROGRAMS if p[0] == kind)
        return int(self.rng.expovariate(1 / mean)) + 1

    def _patient(self, site: SiteInfo) -> None:
        rng, today, start = self.rng, self.today, self.start
        pid = self.ids.next("patient")
        total_days = (today - start).days
        episodes: list[tuple[str, dt.date, dt.date | None]] = []
        kind = self._episode_kind()
        if rng.random() < 0.10:  # in treatment today
            tenure = min(int(rng.expovariate(1 / 330)) + 1, total_days)
            episodes.append((kind, today - dt.timedelta(days=tenure - 1), None))
        else:
            discharged = start + dt.timedelta(days=rng.randrange(30, total_days))
            admitted = max(start, discharged - dt.timedelta(days=self._los(kind) - 1))
            episodes.append((kind, admitted, discharged))
        if rng.random() < 0.15:  # a readmission: an earlier episode ended before this one
            before = episodes[0][1] - dt.timedelta(days=rng.randrange(14, 365))
            if before > start + dt.timedelta(days=30):
                earlier = self._episode_kind()
                first = max(start, before - dt.timedelta(days=self._los(earlier) - 1))
                episodes.insert(0, (earlier, first, before))
        intake = episodes[0][1] - dt.timedelta(days=rng.randrange(0, 15))
        born = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(19000))
        first, last, preferred = names.pick_name(rng)
        fk, lk = names.key(first), names.key(last)
        duplicate = (lk, fk, born) in self.identities  # same name and birthday: confirmed
        self.identities.add((lk, fk, born))
        in_error = rng.random() < 0.003
        self.mrn[site.id] += 1
        created = self.at(site, intake, 600 + rng.randrange(300))
        staff = site.staff[pid % len(site.staff)]
        city = ("Riverside", "Lakeview", "Springfield", "Dayton")[pid % 4]
        self.rows["patient"].append(
            (pid, site.id, f"{site.code}-{self.mrn[site.id]:06d}", first, last, preferred, fk, lk,
             names.key(preferred) if preferred else None, born,
             rng.choice(("female", "male", "male", "intersex", "unknown")),
             rng.choice((None, None, "Woman", "Man", "Non-binary")),
             f"+1312{rng.randrange(2000000, 9999999)}" if rng.random() < 0.8 else None,
             f"patient{pid}@mail.example" if rng.random() < 0.4 else None,
             f"{rng.randrange(1, 9999)} Elm Street" if rng.random() < 0.7 else None,
             city, "IL", f"{60600 + pid % 99:05d}", "Emergency Contact",
             f"+1773{rng.randrange(2000000, 9999999)}", rng.choice(("Mother", "Partner", "Friend")),
             rng.choice(SUBSTANCES), intake, f"SR-{pid:08d}" if rng.random() < 0.5 else None,
             created, staff, duplicate,
             created + dt.timedelta(days=1) if in_error else None,
             "Registered twice" if in_error else None, site.admin if in_error else None, 1)
        )  # fmt: skip
        for token in names.all_tokens(first, last, preferred):
            self.rows["patient_name_token"].append((pid, token))
        self.event(created, staff, site, "create", "patient", pid, pid)
        if in_error:
            self.event(created + dt.timedelta(days=1), site.admin, site, "update", "patient",
                       pid, pid, '{"entered_in_error":true}')  # fmt: skip
            return
        name = f"{first} {last}"
        program = site.programs[episodes[0][0]]
        if rng.random() < 0.30:
            self.consents.tpo(pid, name, site, program, episodes[0][1])
        if rng.random() < 0.15:
            self.consents.support_people(pid, site, intake)
        for kind, admitted, discharged in episodes:
            self._episode(pid, site, name, kind, admitted, discharged)

    def _episode(self, pid, site, name, kind, admitted, discharged) -> None:
        rng, today = self.rng, self.today
        length = ((discharged or today) - admitted).days + 1
        reason = None if discharged is None else choose(rng, REASONS)
        parts = [(kind, admitted, discharged, reason)]
        if length >= 45 and rng.random() < 0.05:  # transferred between programs
            moved = admitted + dt.timedelta(days=rng.randrange(14, length - 21))
            other = {"methadone_otp": "office_buprenorphine"}.get(kind, "methadone_otp")
            parts = [(kind, admitted, moved, 4), (other, moved, discharged, reason)]
        previous = None
        for n, (pkind, first, end, why) in enumerate(parts):
            eid = self.ids.next("enrollment")
            counselor = site.counselor(eid)
            self._enrollment(eid, pid, site, pkind, first, end, why, counselor, previous)
            # The orders of an enrollment followed by a transfer end the day before it.
            last = (end - DAY) if n < len(parts) - 1 else end
            if pkind != "intensive_outpatient" and (last is None or last >= first):
                self._orders(pid, site, eid, pkind, first, last)
            previous = eid
        if discharged is not None and reason in (1, 2) and rng.random() < 0.25:
            self.consents.referral(pid, site, name, site.programs[parts[-1][0]], discharged)
        elif discharged is None and rng.random() < 0.05:
            self.consents.referral(pid, site, name, site.programs[kind], today, open_=True)

    def _enrollment(self, eid, pid, site, kind, first, end, why, counselor, previous) -> None:
        rng, today = self.rng, self.today
        asam = next(p[4] for p in PROGRAMS if p[0] == kind)
        limit = min(end or today, today)

        def within(days: int) -> dt.date | None:
            day = first + dt.timedelta(days=days)
            return day if day <= limit else None

        exam = within(rng.randrange(0, 14))
        assessment = within(rng.randrange(0, 14))
        plan = within(rng.randrange(3, 14))
        created = self.at(site, first, 540 + rng.randrange(120))
        self.rows["enrollment"].append(
            (eid, pid, site.programs[kind], first, "3", asam, counselor, previous, end, why,
             exam, assessment, plan, created, site.admin, 1)
        )  # fmt: skip
        self.enrollments.append(EnrollmentSpec(eid, pid, site, kind, first, end, counselor))
        self.event(created, site.admin, site, "create", "enrollment", eid, pid)
        if end is not None:
            self.event(self.at(site, end, 900), site.admin, site, "update", "enrollment", eid,
                       pid, '{"fields":["discharge_reason","discharged_on"]}')  # fmt: skip
        if plan is not None and kind == "methadone_otp":
            day = plan + dt.timedelta(days=90)
            while day <= limit:
                self.rows["care_plan_review"].append(
                    (self.ids.next("care_plan_review"), eid, day, counselor,
                     self.at(site, day, 660))
                )  # fmt: skip
                day += dt.timedelta(days=90)
        if rng.random() < 0.02 or not self.rows["enrollment_correction"]:
            other = site.counselor(eid + 1)
            self.rows["enrollment_correction"].append(
                (self.ids.next("enrollment_correction"), eid, "primary_counselor",
                 f"Clinician {other}", f"Clinician {counselor}",
                 "Caseload rebalanced between counselors", site.admin,
                 self.at(site, limit, 700))
            )  # fmt: skip

    # --- orders, take-home decisions, holds and flags -------------------------------------

    def _medication(self, kind: str) -> str:
        r = self.rng.random()
        if kind == "methadone_otp":
            return "methadone"
        if kind == "office_buprenorphine":
            return "xr_buprenorphine" if r < 0.15 else "buprenorphine_naloxone"
        return "naltrexone" if r < 0.2 else "xr_naltrexone"

    def _dose(self, medication: str, first: bool) -> int:
        rng = self.rng
        if medication == "methadone":
            return rng.randrange(20, 51, 5) if first else rng.randrange(60, 121, 10)
        if medication == "buprenorphine_naloxone":
            return rng.choice((8, 12, 16, 16, 24))
        return {"xr_buprenorphine": 300, "naltrexone": 50, "xr_naltrexone": 380}[medication]

    def _orders(self, pid, site, eid, kind, start, last) -> None:
        rng, today = self.rng, self.today
        med = self._medication(kind)
        plan = [(med, self._dose(med, True))]
        change = None
        length = ((last or today) - start).days + 1
        if med in ("methadone", "buprenorphine_naloxone") and length > 50 and rng.random() < 0.65:
            change = start + dt.timedelta(days=rng.randrange(14, 46))
            if med == "methadone" and rng.random() < 0.06:  # switched to buprenorphine
                plan.append(("buprenorphine_naloxone", self._dose("buprenorphine_naloxone", 0)))
            else:
                plan.append((med, max(self._dose(med, False), plan[0][1])))
        previous = None
        for n, (medication, dose) in enumerate(plan):
            oid = self.ids.next("medication_order")
            begin = start if n == 0 else change
            end = (change - DAY) if n == 0 and change else last
            form, strength = PRODUCTS[medication]
            injection = form == "injection"
            split = None
            if medication == "methadone" and n > 0 and rng.random() < 0.08:
                split = (dose - 30, 30)
            schedule = ("every_4_weeks" if medication == "xr_naltrexone" else "monthly") \
                if injection else ("split" if split else "daily")  # fmt: skip
            prescriber = site.prescriber(oid)
            ended = end is not None
            created = self.at(site, begin, 480 + rng.randrange(60))
            self.rows["medication_order"].append(
                (oid, pid, eid, medication, form, strength, dose, schedule,
                 split[0] if split else None, split[1] if split else None, begin, end,
                 "ended" if ended else "active", prescriber,
                 "Dose change: withdrawal symptoms" if n else None, None,
                 begin - dt.timedelta(days=10) if "naltrexone" in medication else None,
                 previous if n else None,
                 ("Dose change" if n == 0 and change else "Discharged") if ended else None,
                 prescriber if ended else None,
                 self.at(site, end, 1080) if ended else None, created)
            )  # fmt: skip
            self.event(created, prescriber, site, "create", "medication_order", oid, pid)
            previous = oid
            spec = OrderSpec(oid, pid, site, medication, form, strength, dose, split, schedule,
                             begin, end)  # fmt: skip
            self.orders.append(spec)
            if injection:
                continue
            span = ((end or today) - begin).days
            if medication != "naltrexone":
                spec.weekly = n > 0 and rng.random() < (0.3 if medication == "methadone" else 0.5)
                spec.decision_id = self._decision(spec, eid, start)
            if end is None:
                self._designed(spec, eid)
            elif span > 30 and not spec.weekly and (rng.random() < 0.10 or not self.relapses):
                spec.relapse_on = begin + dt.timedelta(days=rng.randrange(span - 12))
                self.relapses += 1
            held = not self.rows["medication_hold"]
            if spec.relapse_on is None and span > 20 and (rng.random() < 0.03 or held):
                held = begin + dt.timedelta(days=rng.randrange(3, span - 10))
                spec.hold = (held, held + dt.timedelta(days=rng.randrange(2, 5)))
                self._hold(spec, held, spec.hold[1] + DAY)
            if rng.random() < 0.05:
                self._flag(spec, "info", "Prefers the afternoon window", cleared=False)
            elif rng.random() < 0.03:
                self._flag(spec, "warning", "Sedated at last visit: assess before dosing",
                           cleared=True)  # fmt: skip

    def _designed(self, spec: OrderSpec, eid: int) -> None:
        """An open daily order: dosable today, except a designed few (about 1 %)."""
        rng, today = self.rng, self.today
        r = rng.random()
        if r < 0.004:  # a live stop-dose hold placed yesterday, after dosing
            self._hold(spec, today - DAY, None)
        elif r < 0.007:
            self._flag(spec, "warning", "Check identification before dosing", cleared=False)
        elif r < 0.010 and (today - spec.start).days > 15 and not spec.weekly:
            spec.relapse_on = today - dt.timedelta(days=4)  # 4 missed days up to yesterday
            spec.review_open = True
        else:
            self.active_daily.append(spec.patient_id)
        earlier = (today - spec.start).days > 40 and r > 0.2 and not spec.review_open
        if earlier and rng.random() < 0.08:  # a relapse earlier in the order (reviewed)
            span = (today - spec.start).days - 25
            spec.relapse_on = spec.start + dt.timedelta(days=rng.randrange(span))

    def _hold(self, spec: OrderSpec, first: dt.date, lifted: dt.date | None) -> None:
        site = spec.site
        placed = self.at(site, first, 1020)
        hid = self.ids.next("medication_hold")
        self.rows["medication_hold"].append(
            (hid, spec.patient_id, "Stop-dose hold: intoxicated at the window", None,
             site.prescriber(hid), placed, self.at(site, lifted, 420) if lifted else None,
             site.prescriber(hid) if lifted else None,
             "Reassessed by the prescriber" if lifted else None)
        )  # fmt: skip
        self.event(placed, site.prescriber(hid), site, "create", "medication_hold", hid,
                   spec.patient_id)  # fmt: skip

    def _flag(self, spec: OrderSpec, category: str, text: str, *, cleared: bool) -> None:
        site, today = spec.site, self.today
        first = max(spec.start, today - dt.timedelta(days=20)) if not cleared else spec.start
        fid = self.ids.next("patient_flag")
        created = self.at(site, first, 450)
        clear_day = min(first + dt.timedelta(days=3), spec.end or today)
        self.rows["patient_flag"].append(
            (fid, spec.patient_id, category, text, site.prescriber(fid), created,
             self.at(site, clear_day, 1000) if cleared else None,
             site.prescriber(fid) if cleared else None)
        )  # fmt: skip
        if category == "warning":
            day = first
            while day <= min(clear_day, today - DAY):
                self.rows["flag_acknowledgement"].append(
                    (self.ids.next("flag_acknowledgement"), fid, spec.patient_id, day,
                     site.nurse(fid), self.at(site, day, 455))
                )  # fmt: skip
                day += DAY

    def _decision(self, spec: OrderSpec, eid: int, admitted: dt.date) -> int:
        """The take-home decision behind the order's bottles: the closed Sunday's bottle,
        or a weekly pick-up on Monday with bottles for Tuesday to Sunday."""
        rng, site = self.rng, spec.site
        did = self.ids.next("take_home_decision")
        methadone = spec.medication == "methadone"
        treatment_day = (spec.start - admitted).days
        cap = (7 if treatment_day < 15 else 14 if treatment_day < 31 else 28) if methadone else None
        weekdays = "234567" if spec.weekly else "7"
        recorded = self.at(site, spec.start, 600)
        prescriber = site.prescriber(did)
        ended = spec.end is not None
        criteria = [v for note in CRITERIA_NOTES for v in (True, note)]
        self.rows["take_home_decision"].append(
            (did, spec.patient_id, site.id, eid, spec.id,
             "methadone" if methadone else "buprenorphine", "weekly", spec.start, spec.end, None,
             weekdays, treatment_day, cap, 5 if spec.weekly else 0, *criteria, spec.start,
             site.counselor(did), recorded, prescriber, recorded + dt.timedelta(hours=1),
             None, None, None, spec.end, prescriber if ended else None,
             self.at(site, spec.end, 1080) if ended else None, "Order ended" if ended else None)
        )  # fmt: skip
        self.event(recorded, site.counselor(did), site, "create", "take_home_decision", did,
                   spec.patient_id)  # fmt: skip
        day = spec.start + dt.timedelta(days=90)
        while day <= min(spec.end or self.today, self.today):
            self.rows["take_home_review"].append(
                (self.ids.next("take_home_review"), did, day, "continue",
                 "Criteria still met; continue", prescriber, self.at(site, day, 700))
            )  # fmt: skip
            day += dt.timedelta(days=90)
        if spec.end is None and rng.random() < 0.03:  # awaiting a prescriber
            self._pending_decision(spec, eid, treatment_day, cap)
        return did

    def _pending_decision(self, spec, eid, treatment_day, cap) -> None:
        site, today = spec.site, self.today
        did = self.ids.next("take_home_decision")
        criteria = [v for note in CRITERIA_NOTES for v in (True, note)]
        self.rows["take_home_decision"].append(
            (did, spec.patient_id, site.id, eid, spec.id,
             "methadone" if spec.medication == "methadone" else "buprenorphine", "days",
             today + dt.timedelta(days=3), today + dt.timedelta(days=4), 2, None,
             treatment_day + (today - spec.start).days + 3, cap, 2, *criteria, today,
             site.counselor(did), self.at(site, today - DAY, 800), None, None, None, None,
             None, None, None, None, None)
        )  # fmt: skip


_CRITERIA = ", ".join(
    f"{name}_met, {name}_note"
    for name in ("substance_use", "attendance", "behaviour", "diversion", "storage", "other")
)
COLUMNS = {
    "patient": "id, site_id, mrn, first_name, last_name, preferred_name, first_key, last_key,"
    " preferred_key, date_of_birth, sex_at_birth, gender_identity, phone, email, address_line1,"
    " city, state, postal_code, emergency_contact_name, emergency_contact_phone,"
    " emergency_contact_relationship, primary_substance, intake_date, state_registry_id,"
    " created_at, created_by_id, duplicate_confirmed, entered_in_error_at,"
    " entered_in_error_reason, entered_in_error_by_id, version",
    "patient_name_token": "patient_id, token",
    "enrollment": "id, patient_id, program_id, admitted_on, asam_edition, asam_level,"
    " primary_counselor_id, transferred_from_id, discharged_on, discharge_reason,"
    " medical_exam_on, assessment_on, care_plan_on, created_at, created_by_id, version",
    "care_plan_review": "id, enrollment_id, reviewed_on, recorded_by_id, recorded_at",
    "enrollment_correction": "id, enrollment_id, field, old_value, new_value, reason,"
    " corrected_by_id, corrected_at",
    "medication_order": "id, patient_id, enrollment_id, medication, product_form, strength,"
    " dose_mg, schedule, split_first_mg, split_second_mg, start_on, end_on, status,"
    " prescriber_id, reason, justification, last_opioid_use_on, replaces_id, ended_reason,"
    " ended_by_id, ended_at, created_at",
    "medication_hold": "id, patient_id, reason, until_on, placed_by_id, placed_at, lifted_at,"
    " lifted_by_id, lift_reason",
    "patient_flag": "id, patient_id, category, text, created_by_id, created_at, cleared_at,"
    " cleared_by_id",
    "flag_acknowledgement": "id, flag_id, patient_id, acknowledged_on, acknowledged_by_id,"
    " acknowledged_at",
    "take_home_decision": "id, patient_id, site_id, enrollment_id, order_id, medication,"
    " schedule_kind, start_on, end_on, days, weekdays, treatment_day, cap_days, counted_days, "
    + _CRITERIA
    + ", storage_education_on, recorded_by_id, recorded_at, approved_by_id, approved_at,"
    " declined_by_id, declined_at, declined_reason, ended_on, ended_by_id, ended_at, end_reason",
    "take_home_review": "id, decision_id, reviewed_on, outcome, note, reviewed_by_id, reviewed_at",
}
